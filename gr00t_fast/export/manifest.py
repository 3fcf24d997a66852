"""The manifest every artifact folder carries (`manifest.json`, written last, in the staging folder the whole export is
renamed from): which weights it was made from (`checkpoint_fingerprint`, by content), the options that shape it, and
every file with its size and sha256. A folder without a complete manifest is not a model; one made from other
weights is refused in one line naming both checkpoints (`check_artifacts`), and so is a file whose content is not the
one listed (a graph copied in from another export of the same size), so another checkpoint's graphs never drive an
arm. A file's digest is computed once per file identity (`runtime.cache.file_digest`: device, inode, size, mtime,
ctime, which a copy cannot keep), so a multi-GB graph is hashed on its first load only.

    write_manifest(folder, target="onnx", checkpoint=ckpt, options={"num_steps": 4})
    check_artifacts(folder, ("onnx", "int8"), ckpt)   # ArtifactMismatch / IncompleteArtifacts, one line each
"""

import json
from pathlib import Path
from typing import Any, Sequence

from gr00t_fast.runtime.atomic import write_atomic
from gr00t_fast.runtime.cache import checkpoint_fingerprint, file_digest

__all__ = ["ArtifactMismatch", "IncompleteArtifacts", "MANIFEST", "check_artifacts", "read_manifest", "write_manifest"]

MANIFEST = "manifest.json"
FORMAT = 3  # 1: no fingerprint, no file list; 2: files by size alone (before artifacts were checked by content)


class IncompleteArtifacts(ValueError):
    """A folder that is not a whole export: no manifest, an unreadable one, or files missing, of another size or of
    another content than listed."""


class ArtifactMismatch(ValueError):
    """Artifacts made from other weights (or for another backend) than the checkpoint being loaded."""


def file_entry(path: Path) -> dict[str, Any]:
    """A file's manifest entry: its size in bytes and the sha256 of its content."""
    return {"size": path.stat().st_size, "sha256": file_digest(path)}


def folder_files(folder: Path) -> dict[str, dict[str, Any]]:
    """Every file under `folder` but the manifest: its path relative to `folder` -> its `file_entry`."""
    return {p.relative_to(folder).as_posix(): file_entry(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def write_manifest(folder: str | Path, *, target: str, checkpoint: str | Path, options: dict[str, Any],
                   files: list[str] | None = None, fingerprint: str | None = None, **extra: Any) -> dict:
    """Write `folder/manifest.json` (atomically) for the artifacts in it, made by `target` from `checkpoint` with
    `options`; `files` (paths relative to `folder`; default: every file in it) are those a load needs. Returns the
    manifest."""
    from gr00t_fast import __version__

    folder = Path(folder)
    manifest = dict(format=FORMAT, target=target, checkpoint=str(checkpoint),
                    fingerprint=fingerprint or checkpoint_fingerprint(checkpoint), options=options,
                    gr00t_fast=__version__, **extra,
                    files=folder_files(folder) if files is None else {name: file_entry(folder / name) for name in files})
    write_atomic(folder / MANIFEST, json.dumps(manifest, indent=2).encode())
    return manifest


def read_manifest(folder: str | Path, hint: str = "re-export it") -> dict:
    """The manifest of a complete artifact folder; IncompleteArtifacts (one line ending in `hint`) when the folder
    has no readable manifest of this format, or a file it lists is missing, of another size (truncated) or of
    another content (replaced, copied in from another export)."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise IncompleteArtifacts(f"{folder} is not a folder of exported artifacts; {hint}")
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise IncompleteArtifacts(f"{folder} has no {MANIFEST}: not a complete export (an interrupted one, or not "
                                  f"made by gr00t-fast); {hint}") from None
    except (OSError, ValueError) as e:
        raise IncompleteArtifacts(f"{path} is unreadable ({e}); {hint}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or \
            not isinstance(manifest.get("files"), dict) or not isinstance(manifest.get("fingerprint"), str):
        raise IncompleteArtifacts(f"{path} is not a manifest of this gr00t-fast (format {FORMAT}, with the weights' "
                                  f"fingerprint and each file's size and sha256; older exports lack them); {hint}")
    for name, entry in manifest["files"].items():
        file = folder / name
        if not isinstance(entry, dict) or not {"size", "sha256"} <= set(entry):
            raise IncompleteArtifacts(f"{path}: the entry of {name} lacks its size and sha256; {hint}")
        if not file.is_file():
            raise IncompleteArtifacts(f"{folder}: {name}, listed in its {MANIFEST}, is missing; {hint}")
        if file.stat().st_size != entry["size"]:
            raise IncompleteArtifacts(f"{folder}: {name} has {file.stat().st_size} bytes, its {MANIFEST} says "
                                      f"{entry['size']} (truncated or replaced); {hint}")
        digest = file_digest(file)
        if digest != entry["sha256"]:
            raise IncompleteArtifacts(f"{folder}: {name} is not the file its {MANIFEST} lists (sha256 {digest[:16]}, "
                                      f"listed {str(entry['sha256'])[:16]}): replaced or copied in from another "
                                      f"export; {hint}")
    return manifest


def check_artifacts(folder: str | Path, exports: Sequence[str], checkpoint: str | Path, fingerprint: str | None = None,
                    runner: str = "this backend") -> dict:
    """The manifest of `folder` once it is complete, made by one of the `exports` (`gr00t-fast export` targets, those
    `runner` runs) from the weights of `checkpoint` (their `fingerprint`, computed when not given); else one line
    naming the folder, both checkpoints and the fix."""
    command = f"gr00t-fast export {exports[0]} --model_path {checkpoint} --out {folder}"
    manifest = read_manifest(folder, f"export it with `{command}`")
    if manifest["target"] not in exports:
        raise ArtifactMismatch(f"{folder} holds `export {manifest['target']}` artifacts, which {runner} does not run "
                               f"(it runs {' / '.join(exports)})")
    want = fingerprint or checkpoint_fingerprint(checkpoint)
    if manifest["fingerprint"] != want:
        raise ArtifactMismatch(f"{folder} was exported from {manifest['checkpoint']} (weights {manifest['fingerprint']})"
                               f", not from {checkpoint} (weights {want}): its actions would be another model's; "
                               f"re-export with `{command}`, or load the checkpoint it was made from")
    return manifest
