"""`torch` backend: the model's own modules, eagerly, timed per part (an int8 model on a CPU with its transformer
blocks compiled: `gr00t_fast.backends.regional`)."""

import warnings
from dataclasses import replace
from typing import Callable, Sequence

import torch

from gr00t_fast.backends.base import Backend, LoadRequest, StageClock
from gr00t_fast.backends.pytorch import PyTorchBackend, pack_model
from gr00t_fast.backends.regional import (CompiledBlocks, blocks_compile, blocks_without_compiler,
                                          check_compile_blocks_env)
from gr00t_fast.model.inputs import ModelInputs
from gr00t_fast.model.quantize import transformer_blocks
from gr00t_fast.model.rtc import RtcRequest, rtc_sample


class TorchBackend(PyTorchBackend):
    """Eager PyTorch: the backbone, then the action head, with the split between them marked."""

    name = "torch"
    blocks: CompiledBlocks | None = None  # set by `load` where the int8 model's blocks compile

    def describe(self, precision: str) -> str:
        """The model's own `precision` alone: the default backend goes unnamed in the load line."""
        return precision

    @classmethod
    def configure(cls, request: LoadRequest) -> LoadRequest:
        """As `PyTorchBackend.configure`; a bad `GR00T_FAST_COMPILE_BLOCKS` is refused before any weight is read, and a
        missing C++ compiler, which leaves an int8 model's blocks eager, is said then (`blocks_without_compiler`)."""
        check_compile_blocks_env()
        request = super().configure(request)
        if line := blocks_without_compiler(request):
            warnings.warn(line, RuntimeWarning, stacklevel=2)
        return request

    @classmethod
    def load(cls, model: torch.nn.Module, request: LoadRequest) -> Backend:
        """Quantized as asked, then its Linear layers packed for oneDNN where that pays (`pack_model`), an int8 model's
        transformer blocks compiled on a CPU (`blocks_compile`): `model` itself is changed, the caller's model
        included."""
        backend = super().load(model, request)
        pack_model(model)
        if blocks_compile(model):
            backend.blocks = CompiledBlocks(transformer_blocks(model))
            if model.precision is not None:
                model.precision = replace(model.precision, compiled_blocks=len(backend.blocks.blocks))
        return backend

    @property
    def fallback(self) -> str | None:
        return None if self.blocks is None else self.blocks.fallback

    @property
    def compiles_batches_once(self) -> bool:
        """The compiled blocks: Dynamo specializes sizes of 1, so a batch of 2 compiles once for every batch."""
        return self.blocks is not None and self.blocks.on

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
        def call() -> torch.Tensor:
            clock = self.split = StageClock(self.device)
            clock.mark()
            features = self.model.backbone(inputs.input_ids, inputs.attention_mask, inputs.pixel_values)
            clock.mark()
            actions = sample(features)
            clock.mark()
            return actions

        if self.blocks is None:
            return call()
        # what Dynamo compiles anew for: a batch past 1 (it specializes sizes of 1), no_grad after inference_mode
        actions = self.blocks.run(call, key=(inputs.batch_size > 1, torch.is_inference_mode_enabled()))
        if self.blocks.fallback and self.model.precision is not None and self.model.precision.compiled_blocks:
            self.model.precision = replace(self.model.precision, compiled_blocks=0)  # reports say what runs
        return actions
