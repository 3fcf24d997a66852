"""`torch` backend: the model's own modules, eagerly, timed per part."""

from typing import Callable, Sequence

import torch

from gr00t_fast.backends.base import Backend, LoadRequest, StageClock
from gr00t_fast.backends.pytorch import PyTorchBackend, pack_model
from gr00t_fast.model.inputs import ModelInputs
from gr00t_fast.model.rtc import RtcRequest, rtc_sample


class TorchBackend(PyTorchBackend):
    """Eager PyTorch: the backbone, then the action head, with the split between them marked."""

    name = "torch"

    @classmethod
    def load(cls, model: torch.nn.Module, request: LoadRequest) -> Backend:
        """Quantized as asked, then its Linear layers packed for oneDNN where that pays (`pack_model`): `model`
        itself is changed, the caller's model included."""
        backend = super().load(model, request)
        pack_model(model)
        return backend

    def __call__(self, inputs: ModelInputs, noise: torch.Tensor, num_steps: int) -> torch.Tensor:
        mask = inputs.attention_mask if inputs.isolate_padding else None
        return self._run(inputs, lambda features: self.model.action_head.get_action(
            features, inputs.state, inputs.embodiment_id, noise, num_steps, attention_mask=mask))

    def rtc(self, inputs: ModelInputs, noise: torch.Tensor, num_steps: int,
            request: RtcRequest | Sequence[RtcRequest | None]) -> torch.Tensor:
        mask = inputs.attention_mask if inputs.isolate_padding else None
        return self._run(inputs, lambda features: rtc_sample(self.model.action_head, features, inputs.state,
                                                             inputs.embodiment_id, noise, num_steps, request, mask))

    def _run(self, inputs: ModelInputs, sample: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        clock = self.split = StageClock(self.device)
        clock.mark()
        features = self.model.backbone(inputs.input_ids, inputs.attention_mask, inputs.pixel_values)
        clock.mark()
        actions = sample(features)
        clock.mark()
        return actions
