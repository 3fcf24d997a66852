"""The GR00T N1.5 network in plain PyTorch, its inputs, its checkpoint loader and the random-checkpoint writer."""

from gr00t_fast.model.config import EMBODIMENT_IDS, Gr00tConfig
from gr00t_fast.model.gr00t import Gr00tN15
from gr00t_fast.model.inputs import ModelInputs, example_inputs
from gr00t_fast.model.loading import CheckpointError, build_meta_model, load_model
from gr00t_fast.model.precision import Precision
from gr00t_fast.model.provenance import random_weights
from gr00t_fast.model.rtc import RtcRequest
from gr00t_fast.model.tokenizer import PromptTokenizer

__all__ = ["EMBODIMENT_IDS", "CheckpointError", "Gr00tConfig", "Gr00tN15", "ModelInputs", "Precision", "PromptTokenizer",
           "RtcRequest", "build_meta_model", "example_inputs", "load_model", "random_weights"]
