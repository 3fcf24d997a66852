"""Weights a model leaves on the meta device at load and reads from its checkpoint when a caller asks
(`load_model(..., defer=...)`): the model whose Linear layers are quantized as it loads (`gr00t_fast.model.quantize`)
never holds all of its float weights at once. Each layer is read when the sample call reaches it and emptied after
it ran (a layer the call runs twice, a DiT layer at every denoising step, is read twice), then read once more to be
converted. Full size, `--quantize int8` on a CPU with one example call (the default until 2026-11-27): a load peaks
at 4.8 GB for the 4.5 GB of weights it holds once loaded, against 10.0 GB with the float32 model read whole first
(`benchmarks/int8_load_memory.py`; the figures of benchmarks/README.md, "While `--quantize int8` loads"). The price is
reading them ~2.3x over (~20 GiB for an 8.9 GiB checkpoint): about the same load time where the page cache holds the
checkpoint (34-41 s against 39-41 s), unmeasured where it does not. With 8 calibration calls one at a time (before
the sample calls were batched, `gr00t_fast.backends.pytorch.sample_calls`) ~100 GiB: 5.2 GB against 12.1 GB, a load of
325 s against 262 s; with 4 synthetic scenes (the default from 2026-11-27 until that night;
Intel Xeon, 4.3 GB held): 5.4 GB against 11.7 GB, 228 s against 199 s; with 8 (the default since) 5.1 GB, 266 s,
read a layer at a time.
Each tensor is checked for NaN/inf at its first read, so a bad weight is named as the sample call reaches it.
"""

import weakref
from typing import Mapping

import torch
from torch import nn

from gr00t_fast.runtime.heap import release_freed_memory

__all__ = ["DeferredWeights"]


class DeferredWeights:
    """`model`'s tensors `names` (its own layout, each with its checkpoint names: a fused one's parts) read from the
    open checkpoint `tensors` (`gr00t_fast.model.loading.CheckpointTensors`) on demand: `fill(module)` reads the
    module's deferred parameters (a fused one from its parts, as the load fuses them), `empty(module)` returns them to
    the meta device; `close()` once every module that stays is filled for good (`pending` says which are not)."""

    def __init__(self, model: nn.Module, tensors, names: Mapping[str, tuple[str, ...]], device: torch.device,
                 dtype: torch.dtype):
        self.tensors, self.device, self.dtype = tensors, device, dtype
        # module -> {parameter: its checkpoint names}; weak: a module replaced (quantized) is freed with its entry
        self.owners: weakref.WeakKeyDictionary[nn.Module, dict[str, tuple[str, ...]]] = weakref.WeakKeyDictionary()
        for name, parts in names.items():
            module, _, parameter = name.rpartition(".")
            self.owners.setdefault(model.get_submodule(module), {})[parameter] = parts

    def __contains__(self, module: nn.Module) -> bool:
        return module in self.owners

    def pending(self) -> list[nn.Module]:
        """The modules holding a deferred parameter still on the meta device."""
        return [module for module, params in self.owners.items() if any(getattr(module, p).is_meta for p in params)]

    def fill(self, module: nn.Module) -> bool:
        """Read `module`'s deferred parameters that are on the meta device; whether any was."""
        empty = {p: parts for p, parts in self.owners.get(module, {}).items() if getattr(module, p).is_meta}
        for parameter, parts in empty.items():
            read = self.tensors.read(parts, self.device, self.dtype)
            tensor = torch.cat([read.pop(part) for part in parts]) if len(parts) > 1 else read[parts[0]]
            setattr(module, parameter, nn.Parameter(tensor, requires_grad=False))
        return bool(empty)

    def empty(self, module: nn.Module) -> None:
        """`module`'s deferred parameters back on the meta device, their memory (on a CPU) given back to the kernel:
        kept in the heap, the freed weights of the layers a call has run leave holes the next ones do not fit (full
        size, untrimmed: peaks of 4,993 to 5,865 MB run to run, up to 3 GB of it freed weights during the sample call;
        trimmed: 4,999 and 5,000 MB)."""
        for parameter in self.owners.get(module, {}):
            tensor = getattr(module, parameter)
            setattr(module, parameter, nn.Parameter(torch.empty_like(tensor, device="meta"), requires_grad=False))
        if self.device.type == "cpu":
            release_freed_memory()

    def close(self) -> None:
        """The checkpoint's files closed: nothing more can be read."""
        self.tensors.close()
