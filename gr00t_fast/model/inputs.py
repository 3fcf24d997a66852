"""`ModelInputs`: everything the network takes for one call. The processor makes it, every backend consumes it."""

from dataclasses import dataclass, fields

import torch

EmbodimentId = torch.Tensor | int  # (B,) long tensor, or one Python int for the whole batch (no gather copy)


@dataclass
class ModelInputs:
    """One (possibly batched) call's inputs, on the model's device.

    `attention_mask` is None when no prompt is padded: the model then runs the plain causal path.
    """

    input_ids: torch.Tensor  # (B, L) int64 prompt tokens, left-padded with <|endoftext|>
    attention_mask: torch.Tensor | None  # (B, L) int64, 1 on prompt tokens, 0 on left padding
    pixel_values: torch.Tensor  # (B*V, 3, S, S) in [-1, 1], sample-major then camera, model dtype
    state: torch.Tensor  # (B, 1, max_state_dim) normalized and zero-padded, model dtype
    embodiment_id: EmbodimentId
    batched: bool = True  # the observation had a batch axis: actions keep it too

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
