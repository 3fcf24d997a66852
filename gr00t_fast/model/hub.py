"""Checkpoints named by a Hugging Face model id (`nvidia/GR00T-N1.5-3B`, a LeRobot user's `me/so100-groot`),
resolved by huggingface_hub: its cache (`HF_HUB_CACHE` / `HF_HOME`), `HF_HUB_OFFLINE`, its token handling
(`HF_TOKEN`, `hf auth login`) and its download progress bars. An existing local path always wins; a model id is a
snapshot folder, in Isaac-GR00T's layout or LeRobot's alike, and everything downstream reads it as a folder.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["HubError", "MODEL_ID", "resolve_checkpoint", "snapshot"]

MODEL_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # ORG/NAME, as the Hub spells repository ids


class HubError(ValueError):
    """A model id that is neither cached nor downloadable: one line naming the id, the revision and why."""


def resolve_checkpoint(model_path: str | Path, revision: str | None = None) -> Path:
    """`model_path` as a folder: a local path as it is (it wins over a model id of the same spelling), an
    `ORG/NAME` id as its huggingface_hub snapshot (cached, else downloaded; `revision` applies to it alone).
    Anything else is returned unchanged, for the loader to name what is wrong with it."""
    path = Path(model_path).expanduser()
    if path.exists() or not MODEL_ID.match(str(model_path)):
        return path
    return snapshot(str(model_path), revision, "--model_path")


def snapshot(repo_id: str, revision: str | None = None, what: str = "model") -> Path:
    """The local snapshot folder of `repo_id` at `revision` (default: main), downloaded when not cached and the
    machine is online; HubError, one line, when it cannot be had."""
    import huggingface_hub
    from huggingface_hub import constants, errors

    at = f"{repo_id} (revision {revision or 'main'})"
    try:
        return Path(huggingface_hub.snapshot_download(repo_id, revision=revision))
    except errors.GatedRepoError:
        why = "is gated: accept its terms on the Hub, then log in (`hf auth login` or HF_TOKEN)"
    except errors.RepositoryNotFoundError:
        why = "is no model on the Hugging Face Hub, or a private one (log in: `hf auth login` or HF_TOKEN)"
    except errors.RevisionNotFoundError:
        why = f"has no revision {revision!r} (a branch, tag or commit of the repository)"
    except (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled, OSError) as e:
        cache = constants.HF_HUB_CACHE
        if constants.HF_HUB_OFFLINE:
            why = f"is not in the Hugging Face cache ({cache}) and HF_HUB_OFFLINE is set: this machine is offline"
        else:
            reason = " ".join(str(e).split()).split(" An error happened")[0]
            why = f"is not in the Hugging Face cache ({cache}) and the Hub cannot be reached ({reason[:200]})"
    except errors.HfHubHTTPError as e:
        why = f"could not be downloaded ({' '.join(str(e).split())[:200]})"
    local = "" if what != "--model_path" else f"; no local folder {repo_id} either"
    raise HubError(f"{what} {at} {why}{local}") from None
