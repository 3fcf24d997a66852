"""`torch` backend: the model's own modules, eagerly, timed per part."""

import torch

from gr00t_fast.backends.base import Backend, StageClock
from gr00t_fast.model.inputs import ModelInputs


class TorchBackend(Backend):
    """Eager PyTorch. `backbone` and `sample` are the two callables a call runs; `compile` swaps in compiled ones."""

    name = "torch"

    def __init__(self, model: torch.nn.Module):
        super().__init__(model)
        self.backbone = model.backbone
        self.sample = model.action_head.get_action

    def __call__(self, inputs: ModelInputs, noise: torch.Tensor, num_steps: int) -> torch.Tensor:
        clock = self.split = StageClock(self.device)
        clock.mark()
        features = self.backbone(inputs.input_ids, inputs.attention_mask, inputs.pixel_values)
        clock.mark()
        actions = self.sample(features, inputs.state, inputs.embodiment_id, noise, num_steps)
        clock.mark()
        return actions
