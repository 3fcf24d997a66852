"""Accelerated backends (compile, cuda-graph, onnxruntime, tensorrt) and the helpers they share.

Every backend is a callable `(input_ids, attention_mask, pixel_values, state, embodiment_id, noise, num_steps)
-> (B, horizon, max_action_dim)` registered in `gr00t_fast.backends.base`. `fidelity` compares any of them with the
fp32 eager model on the same inputs and noise; `example_inputs` builds such inputs from the real prompt layout.
"""

import importlib.util
import time
from typing import Callable

import torch

from gr00t_fast.policy.metadata import EMBODIMENT_IDS
from gr00t_fast.model.config import Gr00tConfig
from gr00t_fast.backends.base import Backend

DEFAULT_INSTRUCTION = "Pick up the red cube and put it in the box."
SO100_EMBODIMENT_ID = EMBODIMENT_IDS["new_embodiment"]

Inputs = dict[str, torch.Tensor | int]


def example_inputs(
    config: Gr00tConfig,
    *,
    batch: int = 1,
    cameras: int = 1,
    steps: int | None = None,
    instructions: list[str] | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Inputs:
    """Model inputs with the exact N1.5 prompt layout (tokenized with the checkpoint's Eagle tokenizer),
    random pixels in [-1, 1], random normalized state and noise: keyword arguments of any backend.
    `instructions` (one per sample, left-padded when their lengths differ) overrides `batch`."""
    from gr00t_fast.policy.tokenizer import PromptTokenizer

    tokenizer = PromptTokenizer.for_model(config)
    texts = instructions or [DEFAULT_INSTRUCTION] * batch
    batch = len(texts)
    input_ids, attention_mask = tokenizer(texts, cameras)
    gen = torch.Generator().manual_seed(seed)
    size = config.image_size
    pixels = torch.rand(batch * cameras, 3, size, size, generator=gen) * 2 - 1
    state = torch.rand(batch, 1, config.max_state_dim, generator=gen) * 2 - 1
    noise = torch.randn(batch, config.action_horizon, config.max_action_dim, generator=gen)
    return dict(
        input_ids=input_ids.to(device),
        attention_mask=attention_mask.to(device),
        pixel_values=pixels.to(device, dtype),
        state=state.to(device, dtype),
        embodiment_id=torch.full((batch,), SO100_EMBODIMENT_ID, dtype=torch.long, device=device),
        noise=noise.to(device),
        num_steps=steps or config.num_inference_timesteps,
    )


@torch.inference_mode()
def fidelity(backend: Callable[..., torch.Tensor], reference: Callable[..., torch.Tensor], inputs: Inputs) -> dict:
    """Max and mean absolute action difference of `backend` against `reference` (fp32 eager) on `inputs`."""
    got = backend(**inputs).float().cpu()
    want = reference(**{k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v
                        for k, v in inputs.items()}).float().cpu()
    if got.shape != want.shape:
        raise ValueError(f"backend returned actions of shape {tuple(got.shape)}, reference {tuple(want.shape)}")
    diff = (got - want).abs()
    return {"max_abs_diff": diff.max().item(), "mean_abs_diff": diff.mean().item()}


def missing_gpu_stack(what: str, needs_tensorrt: bool = False) -> None:
    """Raise a RuntimeError naming everything `what` lacks on this machine (TensorRT, a CUDA GPU)."""
    missing = []
    if needs_tensorrt and importlib.util.find_spec("tensorrt") is None:
        missing.append("TensorRT (the `tensorrt` Python package is not installed: pip install 'gr00t-fast[tensorrt]')")
    if not torch.cuda.is_available():
        build = f"torch {torch.__version__}" + (" is a CPU-only build" if torch.version.cuda is None else " sees no GPU")
        missing.append(f"a CUDA GPU ({build})")
    if missing:
        raise RuntimeError(f"{what} needs " + " and ".join(missing))


def merge_image_embeddings(
    token_embeddings: torch.Tensor, input_ids: torch.Tensor, image_embeds: torch.Tensor, image_token_index: int
) -> torch.Tensor:
    """Embedding lookup with every image-token position replaced, in order, by the projected patches."""
    embeds = torch.nn.functional.embedding(input_ids, token_embeddings)
    is_image = input_ids == image_token_index
    n_slots, n_patches = int(is_image.sum()), image_embeds.shape[0] * image_embeds.shape[1]
    if n_slots != n_patches:
        raise ValueError(f"prompt has {n_slots} image tokens but the cameras give {n_patches} patch embeddings")
    return embeds.masked_scatter(is_image.unsqueeze(-1), image_embeds.to(embeds.dtype))


def explicit_mask_and_ids(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, embodiment_id):
    """The exported graphs take an explicit (B, L) mask and a (B,) embodiment tensor: fill in None / an int."""
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
    if isinstance(embodiment_id, int):
        embodiment_id = torch.full((input_ids.shape[0],), embodiment_id, dtype=torch.long, device=input_ids.device)
    return mask, embodiment_id


class GraphBackend(Backend):
    """Runs the exported graphs in order: vision -> image/token merge -> llm -> vl -> sampler (N steps).

    Subclasses implement `run(graph, **inputs) -> output tensor` and `ensure_sampler(num_steps)`.
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__(model)
        self.config: Gr00tConfig = model.config
        self.token_embeddings = model.backbone.eagle_model.language_model.model.embed_tokens.weight

    def run(self, graph: str, **inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def ensure_sampler(self, num_steps: int) -> str:
        raise NotImplementedError

    def __call__(self, input_ids, attention_mask, pixel_values, state, embodiment_id, noise, num_steps) -> torch.Tensor:
        sampler = self.ensure_sampler(num_steps)
        mask, embodiment_id = explicit_mask_and_ids(input_ids, attention_mask, embodiment_id)
        start = time.perf_counter()
        image = self.run("vision", pixel_values=pixel_values)
        embeds = merge_image_embeddings(self.token_embeddings, input_ids, image, self.config.image_token_index)
        features = self.run("llm", inputs_embeds=embeds, attention_mask=mask)
        self._sync()
        mid = time.perf_counter()
        vl = self.run("vl", features=features)
        actions = self.run(sampler, vl_embeds=vl, state=state, embodiment_id=embodiment_id, noise=noise)
        self._sync()
        end = time.perf_counter()
        self.last_timings = {"backbone": (mid - start) * 1e3, "action_head": (end - mid) * 1e3}
        return actions
