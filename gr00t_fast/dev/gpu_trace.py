"""Every CUDA path of the full-size N1.5 traced on fake CUDA (`gr00t_fast.dev.fake_cuda`): the policy built as
`load_policy` builds it, but with weights that are never materialized, called from real observations.

    folder = config_folder(tmp)                      # make-checkpoint --size full, without its 4.5 GB of weights
    with FakeCuda() as cuda:                         # on the torch thread (dispatch modes are per thread)
        policy = fake_policy(folder, torch.bfloat16, cuda)
        trace = trace_call(cuda, policy, lambda: policy.get_action(observation(policy)))
    trace.check()

A `Trace` holds what one call did: the backend's outputs (device, dtype, shape), the host syncs outside the model
call (each with its source line), the defects (syncs, host-to-device copies or float32 matmuls inside the model
call or a CUDA graph capture) and the bytes: weights, and the peak of live CUDA tensors during the model call.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from gr00t_fast.dev.fake_cuda import CAPTURE_REGION, FakeCuda, TraceError

__all__ = ["ALLOWED_SYNCS", "MODEL_CALL", "Trace", "config_folder", "fake_model", "fake_policy", "observation",
           "trace_call", "trace_compiled"]

MODEL_CALL = "model call"  # the region around every backend call (what the cuda-graph backend captures)
DEVICE = torch.device("cuda:0")
# host syncs a policy call makes outside the model call, each justified: anything else fails the trace
POLICY_COPY = "the actions' one device-to-host copy (the finite check and decoding run on it)"
FLEET_COPY = "the batch's actions copied to the host once (finite checks and decoding per request)"
ALLOWED_SYNCS = {(op, file): why for op in ("to.device", "_to_copy.default")
                 for file, why in (("policy.py", POLICY_COPY), ("fleet_model.py", FLEET_COPY))}


def config_folder(out: str | Path) -> Path:
    """A full-size checkpoint folder without weights (config, Eagle assets, metadata), written once."""
    from gr00t_fast.model.random_checkpoint import write_config

    out = Path(out)
    if not (out / "config.json").is_file():
        write_config(out, "full")
    return out


def fake_model(folder: Path, dtype: torch.dtype) -> torch.nn.Module:
    """The network of `folder` on fake CUDA in `dtype`, through the loader's own steps (meta build, checkpoint layout
    fused, assigned strictly): call inside a `FakeCuda`."""
    from gr00t_fast.model.config import Gr00tConfig
    from gr00t_fast.model.fusion import checkpoint_shapes, fuse_state_dict
    from gr00t_fast.model.loading import build_meta_model

    model = build_meta_model(Gr00tConfig.from_checkpoint(folder))
    state = {name: torch.empty(shape, device=DEVICE, dtype=dtype) for name, shape in checkpoint_shapes(model).items()}
    model.load_state_dict(fuse_state_dict(model, state), strict=True, assign=True)
    return model.eval().requires_grad_(False)


def fake_policy(folder: Path, dtype: torch.dtype, backend: str = "torch", quantize: str | None = None,
                data_config: str = "so100", **backend_options) -> Any:
    """`load_policy`'s steps on fake CUDA: model, quantization (its example call on a GPU included), processor, backend,
    `Gr00tPolicy`. The backend class is built directly: its GPU capability check would (rightly) refuse."""
    from gr00t_fast.backends import BACKENDS
    from gr00t_fast.policy.data_config import get_data_config
    from gr00t_fast.loading import quantize_model
    from gr00t_fast.policy.metadata import load_metadata
    from gr00t_fast.policy.policy import Gr00tPolicy
    from gr00t_fast.policy.processor import processor_for_model

    model = fake_model(folder, dtype)
    if quantize is not None:
        quantize_model(model, quantize)
    metadata = load_metadata(folder, "new_embodiment")
    config = get_data_config(data_config, metadata.modalities, metadata.source)
    processor = processor_for_model(model.config, config, metadata, model.device, model.dtype)
    return Gr00tPolicy(processor, BACKENDS[backend](model, **backend_options))


def observation(policy: Any, batch: int | None = None, instruction: str = "Pick up the red cube.",
                seed: int = 0) -> dict:
    """A real observation: uint8 frames at each camera's resolution, float64 state inside the statistics, an
    instruction; a batch of `batch` (its instructions of different lengths) when given."""
    rng = np.random.default_rng(seed)
    lead = (1,) if batch is None else (batch, 1)
    obs: dict[str, Any] = {key: rng.integers(0, 256, (*lead, h, w, 3), dtype=np.uint8)
                           for key, (w, h) in policy.video_resolution.items()}
    for key in policy.data_config.state_keys:
        lo, hi = policy.processor.state_min[key], policy.processor.state_max[key]
        obs[key] = lo + (hi - lo) * rng.uniform(0.25, 0.75, (*lead, lo.shape[0]))
    texts = [instruction] if batch is None else [instruction + " now" * i for i in range(batch)]
    obs[policy.data_config.language_key] = texts
    return obs


@dataclass
class Trace:
    """What one traced call did (see the module docstring)."""

    name: str
    dtype: torch.dtype
    outputs: list[tuple[str, str, tuple]] = field(default_factory=list)  # (device, dtype, shape) of model outputs
    syncs_outside: list[str] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    weights_bytes: int = 0
    peak_bytes: int = 0  # live CUDA bytes above the weights during the model call (or capture)
    result: Any = None

    def check(self, out_dtype: torch.dtype = torch.float32) -> None:
        """Raise TraceError unless: no defect, model outputs on cuda in `out_dtype`, only justified syncs outside."""
        problems = [f"{text} ({n}x)" if n > 1 else text for text, n in Counter(self.defects).items()]
        problems += [f"model output on {d} in {t} {s}, expected cuda:0 {out_dtype}" for d, t, s in self.outputs
                     if d != "cuda:0" or t != str(out_dtype)]
        if not self.outputs:
            problems.append("no model call was traced")
        problems += [f"unjustified host sync outside the model call: {s}" for s in self.syncs_outside
                     if justification(s) is None]
        if problems:
            raise TraceError(f"{self.name}: {len(problems)} defect(s) on fake CUDA:\n  " + "\n  ".join(problems))


def justification(sync: str) -> str | None:
    """Why a host sync outside the model call is needed (`ALLOWED_SYNCS`), None when it is not."""
    op, where = sync.split(" at ", 1)
    return ALLOWED_SYNCS.get((op, where.split(":")[0]))


def trace_call(cuda: FakeCuda, policy: Any, call: Callable[[], Any], name: str = "") -> Trace:
    """Run `call()` (a policy or fleet call) with every backend call of `policy` wrapped in the `MODEL_CALL` region;
    the weights are the live CUDA bytes before it."""
    backend = policy.backend
    trace = Trace(name, policy.dtype, weights_bytes=cuda.record.live_bytes)
    cuda.reset()

    def region(method: Callable) -> Callable:
        @functools.wraps(method)
        def wrapped(*args, **kwargs):
            with cuda.region(MODEL_CALL):
                out = method(*args, **kwargs)
            trace.outputs.append((str(out.device), str(out.dtype), tuple(out.shape)))
            return out
        return wrapped

    own = {name: getattr(backend, name) for name in ("__call__", "rtc")}
    backend.__class__ = type(f"Traced{type(backend).__name__}", (type(backend),),
                             {"__call__": region(own["__call__"].__func__), "rtc": region(own["rtc"].__func__)})
    try:
        trace.result = call()
    finally:
        backend.__class__ = type(backend).__mro__[1]
    return finish(cuda, trace)


def finish(cuda: FakeCuda, trace: Trace) -> Trace:
    """Fill `trace` with what the record holds (since the last `cuda.reset()`)."""
    record = cuda.record
    regions = [r for r in (record.regions.get(MODEL_CALL), record.regions.get(CAPTURE_REGION)) if r is not None]
    trace.peak_bytes = max((r.peak_bytes for r in regions), default=0)
    trace.syncs_outside = [f"{s.op} at {s.where}" for s in record.syncs if s.region is None]
    trace.defects = cuda.defects(trace.dtype)
    return trace


def trace_compiled(cuda: FakeCuda, backend_cls: type, policy: Any) -> tuple[list, Trace]:
    """The compile backend's whole call for one real observation traced by dynamo (`fullgraph=True`: a graph break
    raises) with a backend that keeps the FX graphs, under the fake mode alone (dynamo skips frames while another
    dispatch mode is active); then the graph run on fake CUDA inside a capture region. Returns (graphs, trace)."""
    from torch.utils._python_dispatch import _pop_mode_temporarily

    graphs: list = []

    def keep(gm: torch.fx.GraphModule, example_inputs: list) -> Callable:
        graphs.append((gm, example_inputs))
        return gm.forward

    with torch.inference_mode():
        inputs = policy.processor(observation(policy))
        noise = policy._noise(None, inputs.batched, inputs.batch_size)
        backend = backend_cls(policy.model, backend=keep, check=False)  # fake tensors: no values to compare
        with _pop_mode_temporarily():
            backend(inputs, noise, policy.denoising_steps)
        trace = Trace(f"compile {policy.dtype}", policy.dtype, weights_bytes=cuda.record.live_bytes)
        cuda.reset()
        with cuda.region(CAPTURE_REGION):
            out = graphs[0][0](*graphs[0][1])[0]
    trace.outputs.append((str(out.device), str(out.dtype), tuple(out.shape)))
    return [gm for gm, _ in graphs], finish(cuda, trace)
