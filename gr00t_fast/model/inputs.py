"""`ModelInputs`: everything the network takes for one call. The processor makes it, every backend consumes it."""

from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from gr00t_fast.model.config import EMBODIMENT_IDS, Gr00tConfig
from gr00t_fast.model.tokenizer import PromptTokenizer

EXAMPLE_INSTRUCTION = "Pick up the red cube and put it in the box."
INSTRUCTIONS = (  # the synthetic calls' (`calibration_inputs`)
    EXAMPLE_INSTRUCTION, "Place the block in the bowl.", "Fold the napkin in half.",
    "Open the drawer and take out the spoon.", "Stack the yellow cup on the blue plate.",
    "Move the pen to the left side of the table.",
)
EmbodimentId = torch.Tensor | int  # (B,) long tensor, or one Python int for the whole batch (no gather copy)


@dataclass
class ModelInputs:
    """One (possibly batched) call's inputs, on the model's device.

    `attention_mask` is None when no prompt is padded: the model then runs the plain causal path. Upstream lets a
    padded row's padding features reach the action head, so its actions differ from its unbatched call's;
    `isolate_padding` hides the padding from the action head too (the LLM already masks it, and RoPE is relative),
    so that every row gets its unbatched actions (the fleet server's batches of different robots).
    """

    input_ids: torch.Tensor  # (B, L) int64 prompt tokens, left-padded with <|endoftext|>
    attention_mask: torch.Tensor | None  # (B, L) int64, 1 on prompt tokens, 0 on left padding
    pixel_values: torch.Tensor  # (B*V, 3, S, S) in [-1, 1], sample-major then camera, model dtype
    state: torch.Tensor  # (B, 1, max_state_dim) normalized and zero-padded, model dtype
    embodiment_id: EmbodimentId
    batched: bool = True  # the observation had a batch axis: actions keep it too
    isolate_padding: bool = False  # padding hidden from the action head's attention too

    @property
    def batch_size(self) -> int:
        return self.input_ids.shape[0]

    def to(self, device: torch.device | str, dtype: torch.dtype) -> "ModelInputs":
        """A copy on `device` with the floating-point tensors in `dtype`."""
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if torch.is_tensor(value):
                value = value.to(device, dtype if value.is_floating_point() else value.dtype)
            moved[f.name] = value
        return ModelInputs(**moved)


def collate(parts: list[ModelInputs], pad_id: int, length: int = 0) -> ModelInputs:
    """One batch of several calls' inputs (e.g. different robots' observations), prompts left-padded with `pad_id`
    to the longest (or to `length`) and the padding isolated: every row's actions are those of its own call."""
    length = max(length, *(p.input_ids.shape[1] for p in parts))
    ids, masks = [], []
    for p in parts:
        pad = length - p.input_ids.shape[1]
        mask = torch.ones_like(p.input_ids) if p.attention_mask is None else p.attention_mask
        ids.append(F.pad(p.input_ids, (pad, 0), value=pad_id))
        masks.append(F.pad(mask, (pad, 0), value=0))
    mask = torch.cat(masks)
    # from the host's knowledge, not `mask.all()` (a device sync): the processor gives unpadded prompts no mask
    unpadded = all(p.attention_mask is None and p.input_ids.shape[1] == length for p in parts)
    embodiments = {p.embodiment_id for p in parts if isinstance(p.embodiment_id, int)}
    if len(embodiments) == 1 and all(isinstance(p.embodiment_id, int) for p in parts):
        embodiment: EmbodimentId = embodiments.pop()
    else:  # per-row ids: the per-embodiment layers gather each row's weights
        embodiment = torch.cat([torch.as_tensor(p.embodiment_id, device=mask.device).reshape(-1).expand(p.batch_size)
                                for p in parts])
    return ModelInputs(torch.cat(ids), None if unpadded else mask, torch.cat([p.pixel_values for p in parts]),
                       torch.cat([p.state for p in parts]), embodiment, batched=True, isolate_padding=True)


def example_inputs(
    config: Gr00tConfig,
    *,
    batch: int = 1,
    cameras: int = 1,
    instructions: list[str] | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[ModelInputs, torch.Tensor]:
    """Random `ModelInputs` with the exact N1.5 prompt layout (the checkpoint's tokenizer), and a noise sample.

    Pixels uniform in [-1, 1], normalized state in [-1, 1], embodiment `new_embodiment`. `instructions` (one per
    sample, left-padded when their lengths differ) overrides `batch`. For tests, exports and benchmarks.
    """
    texts = instructions or [EXAMPLE_INSTRUCTION] * batch
    batch = len(texts)
    ids, mask = PromptTokenizer.for_model(config)(texts, cameras)
    gen = torch.Generator().manual_seed(seed)
    size = config.image_size
    pixels = torch.rand(batch * cameras, 3, size, size, generator=gen) * 2 - 1
    state = torch.rand(batch, 1, config.max_state_dim, generator=gen) * 2 - 1
    noise = torch.randn(batch, config.action_horizon, config.max_action_dim, generator=gen)
    inputs = ModelInputs(ids, None if bool(mask.all()) else mask, pixels, state,
                         torch.full((batch,), EMBODIMENT_IDS["new_embodiment"], dtype=torch.long))
    return inputs.to(device, dtype), noise.to(device)


Sample = tuple[ModelInputs, torch.Tensor]  # model inputs and noise of one call


def scene(rng: np.random.Generator, size: int) -> torch.Tensor:
    """A smooth synthetic camera frame as SigLIP input, (3, size, size) in [-1, 1]: a two-colour gradient, a table
    band and a few flat boxes and shaded discs."""
    y, x = np.mgrid[0:size, 0:size][..., None] / size  # (size, size, 1) each
    low, high = rng.uniform(0, 255, (2, 3))
    image = low + (high - low) * (y * rng.uniform() + x * rng.uniform()) / 2
    image = np.where(y > rng.uniform(0.4, 0.7), rng.uniform(0, 255, 3), image)
    for _ in range(rng.integers(2, 6)):
        cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.03, 0.15)
        if rng.uniform() < 0.5:  # a box
            image = np.where((abs(y - cy) < r) & (abs(x - cx) < 1.5 * r), rng.uniform(0, 255, 3), image)
        else:  # a disc, darker toward its rim
            d = ((y - cy) ** 2 + (x - cx) ** 2) / r**2
            image = np.where(d < 1, rng.uniform(0, 255, 3) * (1 - 0.4 * d), image)
    return torch.from_numpy(image / 127.5 - 1).permute(2, 0, 1).float()


def calibration_inputs(config: Gr00tConfig, n: int, cameras: int = 1, seed: int = 0) -> list[Sample]:
    """`n` synthetic calls, what int8 is calibrated on without the user's observations (`export int8`'s graphs, the
    torch backends' `--quantize int8`): varied instructions, synthetic scenes as camera frames (not noise: noise
    frames give SigLIP and the LLM activations no camera frame gives), states and noise."""
    samples = []
    for i in range(n):
        inputs, noise = example_inputs(config, cameras=cameras, seed=seed + i,
                                       instructions=[INSTRUCTIONS[i % len(INSTRUCTIONS)]])
        rng = np.random.default_rng(seed + i)
        inputs.pixel_values = torch.stack([scene(rng, config.image_size) for _ in range(cameras)])
        samples.append((inputs, noise))
    return samples
