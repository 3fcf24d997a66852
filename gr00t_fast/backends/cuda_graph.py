"""`cuda-graph` backend: the whole inference after preprocessing in one CUDA graph replay.

Vision tower, LLM, VL self-attention, every denoising step and the action decoder are captured once per
input signature (shapes of every tensor, embodiment id when it is an int, step count) into static buffers;
a call copies its inputs into those buffers and replays the graph: one launch instead of thousands, which
is where eager N1.5 spends most of its time on a GPU. A new signature (another batch size, camera count or
prompt length) captures a new graph; the most recent `max_graphs` are kept.
"""

import time
from collections import OrderedDict
from dataclasses import dataclass

import torch

from gr00t_fast.backends import missing_gpu_stack
from gr00t_fast.backends.base import Backend

ARG_NAMES = ("input_ids", "attention_mask", "pixel_values", "state", "embodiment_id", "noise")


@dataclass
class CapturedGraph:
    graph: torch.cuda.CUDAGraph
    inputs: dict[str, torch.Tensor]  # static input buffers, refilled before every replay
    output: torch.Tensor  # static output buffer, overwritten by every replay


def signature(args: dict, num_steps: int) -> tuple:
    """What a captured graph is specialized on: tensor shapes/dtypes, int embodiment ids, None masks, steps."""
    key = [num_steps]
    for name in ARG_NAMES:
        value = args[name]
        key.append((name, tuple(value.shape), value.dtype) if torch.is_tensor(value) else (name, value))
    return tuple(key)


class CudaGraphBackend(Backend):
    def __init__(self, model: torch.nn.Module, max_graphs: int = 8, warmup_iters: int = 2):
        missing_gpu_stack("backend 'cuda-graph'")
        super().__init__(model)
        if self.device.type != "cuda":
            raise ValueError(f"backend 'cuda-graph' needs the model on a CUDA device, it is on {self.device}")
        self.max_graphs, self.warmup_iters = max_graphs, warmup_iters
        self.graphs: OrderedDict[tuple, CapturedGraph] = OrderedDict()
        self.pool = torch.cuda.graph_pool_handle()  # one memory pool shared by every captured shape

    def run_model(self, args: dict, num_steps: int) -> torch.Tensor:
        return self.model(*(args[name] for name in ARG_NAMES), num_steps)

    @torch.inference_mode()
    def capture(self, args: dict, num_steps: int) -> CapturedGraph:
        static = {k: v.clone() if torch.is_tensor(v) else v for k, v in args.items()}
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):  # warm up off the default stream (allocator, cuBLAS workspaces, lazy init)
            for _ in range(self.warmup_iters):
                self.run_model(static, num_steps)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            output = self.run_model(static, num_steps)
        return CapturedGraph(graph, {k: v for k, v in static.items() if torch.is_tensor(v)}, output)

    @torch.inference_mode()
    def __call__(self, input_ids, attention_mask, pixel_values, state, embodiment_id, noise, num_steps) -> torch.Tensor:
        args = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values, state=state,
                    embodiment_id=embodiment_id, noise=noise)
        start = time.perf_counter()
        key = signature(args, num_steps)
        captured = self.graphs.get(key)
        if captured is None:
            captured = self.graphs[key] = self.capture(args, num_steps)
            if len(self.graphs) > self.max_graphs:
                self.graphs.popitem(last=False)
        else:
            self.graphs.move_to_end(key)
        for name, buffer in captured.inputs.items():
            buffer.copy_(args[name], non_blocking=True)
        captured.graph.replay()
        actions = captured.output.clone()
        self._sync()
        self.last_timings = {"graph": (time.perf_counter() - start) * 1e3}
        return actions
