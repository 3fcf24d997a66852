"""MkDocs hook: the README (the site's home page), the benchmarks' page and log (`benchmarks/README.md`,
`benchmarks/history.md`) and their figures are published from where they live instead of being copied into `docs/`;
the README's links into `docs/` are made relative to the site."""

from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ("README.md", "benchmarks/README.md", "benchmarks/history.md", "benchmarks/results/**/*.png")


def on_files(files, config):
    for pattern in PUBLISHED:
        for path in sorted(ROOT.glob(pattern)):
            files.append(File(str(path.relative_to(ROOT)), str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri == "README.md":
        return markdown.replace("](docs/", "](")
    return markdown
