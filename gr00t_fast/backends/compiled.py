"""`compile` backend: `torch.compile` of the backbone and of the whole hoisted sampler (all denoising steps).

Both are compiled with `fullgraph=True` (a graph break is an error, not a silent slowdown) and static shapes:
each new (batch, prompt length, cameras, steps) triggers one recompilation, then runs from the cache.
`mode="reduce-overhead"` adds CUDA graphs on a GPU; `backend="aot_eager"` skips Inductor (fast to compile,
used by the CPU tests to prove the graphs have no breaks).
"""

import torch

from gr00t_fast.backends.eager import TorchBackend

MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class CompiledBackend(TorchBackend):
    name = "compile"

    def __init__(self, model: torch.nn.Module, mode: str | None = None, backend: str = "inductor",
                 fullgraph: bool = True, dynamic: bool = False):
        super().__init__(model)
        if mode not in MODES:
            raise ValueError(f"compile mode {mode!r} is not one of {MODES}")
        if mode not in (None, "default") and backend != "inductor":
            raise ValueError(f"compile mode {mode!r} needs backend='inductor', got {backend!r}")
        opts = dict(backend=backend, fullgraph=fullgraph, dynamic=dynamic)
        if backend == "inductor":
            opts["mode"] = mode
        self.backbone = torch.compile(model.backbone, **opts)
        self.sample = torch.compile(model.action_head.get_action, **opts)
