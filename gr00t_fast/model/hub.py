"""Checkpoints named by a Hugging Face model id (`nvidia/GR00T-N1.5-3B`, a LeRobot user's `me/so100-groot`),
resolved by huggingface_hub: its cache (`HF_HUB_CACHE` / `HF_HOME`), `HF_HUB_OFFLINE`, its token handling
(`HF_TOKEN`, `hf auth login`) and its download progress bars. An existing local path always wins; a model id is a
snapshot folder, in Isaac-GR00T's layout or LeRobot's alike, and everything downstream reads it as a folder.

A snapshot is read only once it is contained as huggingface_hub writes it (`check_snapshot`): the ref names a commit
hash, the snapshot is that commit's folder in the repository's cache, and every file in it resolves into the
repository's `blobs/`. A cache another user or a tampered download can write to would otherwise load a checkpoint
from anywhere under the id's name (`refs/main` holding `../../../../../tmp/x`), or follow a `config.json` or
tokenizer file symlinked out of the cache.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["HubError", "MODEL_ID", "UnsafeSnapshot", "check_snapshot", "resolve_checkpoint", "resolve_dataset",
           "snapshot"]

MODEL_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # ORG/NAME, as the Hub spells repository ids
COMMIT = re.compile(r"^[0-9a-f]{40}$")  # what a ref file holds and a snapshot folder is named


class HubError(ValueError):
    """A model id that is neither cached nor downloadable: one line naming the id, the revision and why."""


class UnsafeSnapshot(HubError):
    """A cached snapshot that is not contained in the cache as huggingface_hub writes it (`check_snapshot`)."""


def resolve_dataset(dataset_path: str | Path, revision: str | None = None) -> Path:
    """`dataset_path` as a folder: a local path as it is, an `ORG/NAME` dataset id as its huggingface_hub snapshot
    already in the local cache (never downloaded: a dataset can hold many GB of video; the same checks as
    `resolve_checkpoint`)."""
    path = Path(dataset_path).expanduser()
    if path.exists() or not MODEL_ID.match(str(dataset_path)):
        return path
    return snapshot(str(dataset_path), revision, "--dataset_path", repo_type="dataset", local_only=True)


def resolve_checkpoint(model_path: str | Path, revision: str | None = None, local_only: bool = False,
                       what: str = "--model_path") -> Path:
    """`model_path` as a folder: a local path as it is (it wins over a model id of the same spelling), an
    `ORG/NAME` id as its huggingface_hub snapshot (cached, else downloaded unless `local_only`: a checkpoint a network
    client names; `revision` applies to it alone; errors name it as `what`). Anything else is returned unchanged,
    for the loader to name what is wrong with it."""
    path = Path(model_path).expanduser()
    if path.exists() or not MODEL_ID.match(str(model_path)):
        return path
    return snapshot(str(model_path), revision, what, local_only=local_only)


def snapshot(repo_id: str, revision: str | None = None, what: str = "model", repo_type: str = "model",
             local_only: bool = False) -> Path:
    """The local snapshot folder of `repo_id` at `revision` (default: main), downloaded when not cached and the
    machine is online (never with `local_only`); HubError, one line, when it cannot be had. `repo_type` "dataset"
    for a dataset id."""
    import huggingface_hub
    from huggingface_hub import constants, errors

    at = f"{repo_id} (revision {revision or 'main'})"
    try:
        folder = Path(huggingface_hub.snapshot_download(repo_id, revision=revision, repo_type=repo_type,
                                                        local_files_only=local_only))
    except errors.GatedRepoError:
        why = "is gated: accept its terms on the Hub, then log in (`hf auth login` or HF_TOKEN)"
    except errors.RepositoryNotFoundError:
        why = "is no model on the Hugging Face Hub, or a private one (log in: `hf auth login` or HF_TOKEN)"
    except errors.RevisionNotFoundError:
        why = f"has no revision {revision!r} (a branch, tag or commit of the repository)"
    except (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled, OSError) as e:
        cache = constants.HF_HUB_CACHE
        if local_only:
            why = (f"is not in the Hugging Face cache ({cache}); {repo_type}s are read from the cache alone: "
                   f"`hf download {repo_id} --repo-type {repo_type}` first")
        elif constants.HF_HUB_OFFLINE:
            why = f"is not in the Hugging Face cache ({cache}) and HF_HUB_OFFLINE is set: this machine is offline"
        else:
            reason = " ".join(str(e).split()).split(" An error happened")[0]
            why = f"is not in the Hugging Face cache ({cache}) and the Hub cannot be reached ({reason[:200]})"
    except errors.HfHubHTTPError as e:
        why = f"could not be downloaded ({' '.join(str(e).split())[:200]})"
    else:
        problem = check_snapshot(folder, repo_id, revision, repo_type=repo_type)
        if problem is None:
            return folder
        raise UnsafeSnapshot(f"{what} {at}: refusing its cached snapshot, {problem}")
    local = "" if not what.startswith("--") else f"; no local folder {repo_id} either"
    raise HubError(f"{what} {at} {why}{local}") from None


def check_snapshot(folder: Path, repo_id: str, revision: str | None = None, cache: str | Path | None = None,
                   repo_type: str = "model") -> str | None:
    """What makes `folder` not a snapshot of `repo_id` as huggingface_hub caches one in `cache` (default: its
    HF_HUB_CACHE), or None: the ref of `revision` (a branch or tag; a commit names its folder itself) must hold a
    commit hash, `folder` must be that commit's folder under the repository's `snapshots/`, and every file in it must
    resolve into the repository's `blobs/` (symlinks, as huggingface_hub writes them) or be a file of the snapshot
    itself (where symlinks are unavailable)."""
    if cache is None:
        from huggingface_hub import constants

        cache = constants.HF_HUB_CACHE
    repo = Path(cache) / f"{repo_type}s--{repo_id.replace('/', '--')}"
    ref = repo / "refs" / (revision or "main")
    if not (revision and COMMIT.match(revision)) and ref.is_file():
        commit = ref.read_text(errors="replace").strip()
        if not COMMIT.match(commit):
            return f"its ref {ref} holds {commit[:80]!r}, not a commit hash"
    snapshots = (repo / "snapshots").resolve()
    real = folder.resolve()
    if real.parent != snapshots or not COMMIT.match(real.name):
        return f"{folder} resolves to {real}, not a commit's folder in {snapshots}"
    blobs = (repo / "blobs").resolve()
    for root, dirs, files in os.walk(real):
        for name in (*dirs, *files):
            entry = Path(root) / name
            target = entry.resolve()
            if not (target.is_relative_to(blobs) if entry.is_symlink() else target.is_relative_to(real)):
                return f"{entry.relative_to(real)} resolves to {target}, outside the cache's {blobs}"
    return None
