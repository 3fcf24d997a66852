"""The GR00T N1.5 network in plain PyTorch, its inputs, its checkpoint loader and the random-checkpoint writer.

Names resolve on first use (`runtime.lazy`), so that the torch-free modules here (`model.config`, `model.hub`,
`model.provenance`) import no torch."""

from gr00t_fast.runtime.lazy import lazy_names

_HOMES = {
    "EMBODIMENT_IDS": "config", "Gr00tConfig": "config", "Gr00tN15": "gr00t", "ModelInputs": "inputs",
    "calibration_inputs": "inputs", "example_inputs": "inputs", "CheckpointError": "loading",
    "build_meta_model": "loading", "load_model": "loading",
    "Precision": "precision", "random_weights": "provenance", "RtcRequest": "rtc", "PromptTokenizer": "tokenizer",
}
__all__ = sorted(_HOMES)

__getattr__ = lazy_names(__name__, _HOMES)
