"""`cuda-graph` backend: the whole inference after preprocessing in one CUDA graph replay.

Vision tower, LLM, VL self-attention, every denoising step and the action decoder are captured once per
input signature (shapes of every tensor, embodiment id when it is an int, step count) into static buffers;
a call copies its inputs into those buffers and replays the graph: one launch instead of thousands, which
is where eager N1.5 spends most of its time on a GPU. What is captured is the whole call compiled by Inductor
(`torch.compile` in its default mode: fused kernels, cuBLAS's GEMMs, no CUDA graphs of its own; comprehensive
padding off, `compiled.INDUCTOR_OPTIONS`) unless `compiled=False` (then the eager kernels). Each signature's first
replay is checked against the model's own kernels (`compiled.EagerCheck`): where they differ by more than the
arithmetic explains, it says so in one line and the graphs are captured from the eager kernels from then on. Not
max-autotune: on an H200 its GEMM search took 477 s on NVIDIA's tiny checkpoint and over 200 s at full size without
finishing either first call (`benchmarks/results/gpu`).
A new signature (another batch size, camera count or prompt length, which the processor pads to `prompt_step`
tokens of instruction) captures a new graph; the most recent `max_graphs` are kept.
"""

from collections import OrderedDict
from dataclasses import dataclass, fields

import torch

from gr00t_fast.backends.base import STATIC_PROMPT_STEP, cuda_missing
from gr00t_fast.backends.compiled import (EagerCheck, allow_compiled_shapes, inductor_options, signature,
                                          whole_call_args)
from gr00t_fast.backends.pytorch import PyTorchBackend
from gr00t_fast.model.inputs import ModelInputs


@dataclass
class CapturedGraph:
    graph: torch.cuda.CUDAGraph
    inputs: ModelInputs  # static input buffers, refilled before every replay
    noise: torch.Tensor
    output: torch.Tensor  # static output buffer, overwritten by every replay


def _clone(inputs: ModelInputs) -> ModelInputs:
    return ModelInputs(**{f.name: (v.clone() if torch.is_tensor(v := getattr(inputs, f.name)) else v)
                          for f in fields(inputs)})


class CudaGraphBackend(PyTorchBackend):
    name = "cuda-graph"
    prompt_step = STATIC_PROMPT_STEP

    @classmethod
    def missing(cls, device: torch.device) -> str | None:
        return cuda_missing(device)

    def __init__(self, model: torch.nn.Module, max_graphs: int = 8, warmup_iters: int = 2, compiled: bool = True):
        super().__init__(model)
        self.max_graphs, self.warmup_iters = max_graphs, warmup_iters
        if compiled:
            allow_compiled_shapes()
        self.whole_call = torch.compile(model, fullgraph=True, options=inductor_options()) if compiled else model
        self.graphs: OrderedDict[tuple, CapturedGraph] = OrderedDict()
        self.pool = torch.cuda.graph_pool_handle()  # one memory pool shared by every captured shape
        self.eager_check = EagerCheck(self.name, model)

    @property
    def fallback(self) -> str | None:
        return self.eager_check.fallback

    def run_model(self, inputs: ModelInputs, noise: torch.Tensor, num_steps: int) -> torch.Tensor:
        return self.whole_call(*whole_call_args(self.model, inputs, noise, num_steps))  # tables made before capture

    @torch.inference_mode()
    def capture(self, inputs: ModelInputs, noise: torch.Tensor, num_steps: int) -> CapturedGraph:
        with torch.cuda.device(self.device):  # the capture's side stream and pool on the model's device
            return self._capture(inputs, noise, num_steps)

    def _capture(self, inputs: ModelInputs, noise: torch.Tensor, num_steps: int) -> CapturedGraph:
        static, static_noise = _clone(inputs), noise.clone()
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):  # warm up off the default stream (allocator, cuBLAS workspaces, lazy init)
            for _ in range(self.warmup_iters):
                self.run_model(static, static_noise, num_steps)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        # thread_local: the policy captures on its own torch thread while other threads keep running CUDA work
        with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
            output = self.run_model(static, static_noise, num_steps)
        return CapturedGraph(graph, static, static_noise, output)

    @torch.inference_mode()
    def __call__(self, inputs: ModelInputs, noise: torch.Tensor, num_steps: int) -> torch.Tensor:
        key = signature(inputs, noise, num_steps)
        captured = self.graphs.get(key)
        if captured is None:
            captured = self.capture(inputs, noise, num_steps)
        else:
            self.graphs.move_to_end(key)
        for f in fields(inputs):
            buffer = getattr(captured.inputs, f.name)
            if torch.is_tensor(buffer):
                buffer.copy_(getattr(inputs, f.name), non_blocking=True)
        captured.noise.copy_(noise, non_blocking=True)
        captured.graph.replay()
        actions = captured.output.clone()
        if key not in self.graphs:  # kept once its first replay agrees with the model's own kernels (`EagerCheck`)
            if self.whole_call is not self.model:
                own = self.eager_check(key, actions, whole_call_args(self.model, captured.inputs, captured.noise,
                                                                     num_steps))
                if own is not None:
                    self.whole_call = self.model
                    self.graphs.clear()  # every graph held the compiled kernels
                    # a pool whose graphs are all gone cannot take another capture (torch 2.11 on an H100: an
                    # internal assert in the caching allocator, and the CUDA generator left mid-capture)
                    self.pool = torch.cuda.graph_pool_handle()
                    return own
            self.graphs[key] = captured
            if len(self.graphs) > self.max_graphs:
                self.graphs.popitem(last=False)
        return actions
