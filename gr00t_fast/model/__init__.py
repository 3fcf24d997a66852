"""The GR00T N1.5 network in plain PyTorch, and its checkpoint loader."""

from gr00t_fast.model.config import Gr00tConfig
from gr00t_fast.model.gr00t import Gr00tN15
from gr00t_fast.model.loading import CheckpointError, build_meta_model, load_model

__all__ = ["Gr00tConfig", "Gr00tN15", "CheckpointError", "build_meta_model", "load_model"]
