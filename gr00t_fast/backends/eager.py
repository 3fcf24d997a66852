"""`torch` backend: the model's own modules, eagerly, timed per part."""

import torch

from gr00t_fast.backends.base import Backend, StageClock
from gr00t_fast.model.inputs import ModelInputs


class TorchBackend(Backend):
    """Eager PyTorch: the backbone, then the action head, with the split between them marked."""

    name = "torch"

    def __call__(self, inputs: ModelInputs, noise: torch.Tensor, num_steps: int) -> torch.Tensor:
        clock = self.split = StageClock(self.device)
        clock.mark()
        features = self.model.backbone(inputs.input_ids, inputs.attention_mask, inputs.pixel_values)
        clock.mark()
        actions = self.model.action_head.get_action(features, inputs.state, inputs.embodiment_id, noise, num_steps)
        clock.mark()
        return actions
