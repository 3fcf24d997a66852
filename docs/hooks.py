"""MkDocs hook: the benchmarks' log (`benchmarks/README.md`) and its figures are published from where they live,
beside the raw results, instead of being copied into `docs/`."""

from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ("benchmarks/README.md", "benchmarks/results/**/*.png")


def on_files(files, config):
    for pattern in PUBLISHED:
        for path in sorted(ROOT.glob(pattern)):
            files.append(File(str(path.relative_to(ROOT)), str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files
