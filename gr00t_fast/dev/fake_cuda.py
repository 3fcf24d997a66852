"""The CUDA paths traced without a GPU: CPU tensors stay real, CUDA tensors are `FakeTensor`s (shapes, dtypes and
devices, no data, no memory), and everything a first GPU contact trips over is recorded or refused.

    with FakeCuda() as cuda:                 # needs a CUDA build of torch (2.14.1+cu130 here); no GPU, no driver
        model = fake_model(config, torch.bfloat16)
        with cuda.region("captured"):        # what a CUDA graph would capture: no host sync allowed inside
            actions = model(...)
    cuda.check()                             # raises TraceError listing every defect

`FakeCuda` is a dispatch mode in front of a `FakeTensorMode`: an op on real CPU tensors runs for real (the
tokenizer's mask, the RTC prefix checks, NumPy round trips keep their data), an op touching a CUDA tensor (or
creating one) runs in the fake mode, which raises on a CPU tensor meeting a CUDA one. It records

- host syncs: a CUDA tensor's value read on the host (`.item()`, `bool(t)`, `.tolist()`, `nonzero`, `.cpu()`, ...),
  with the source line that asked; inside a `region` they are defects, outside they are listed (`syncs`). A read
  returns a stand-in (True, 0, zeros) so that the host code after it runs on;
- host-to-device copies inside a region (a CUDA graph cannot capture a copy from pageable host memory);
- the dtypes of every matmul and attention (`matmuls`): in bf16 / fp16 a float32 one is a silent upcast;
- the bytes of live CUDA tensors (weights and activations), with the peak per region (`peak_bytes`).

The hardware calls that need a driver (streams, events, `torch.cuda.graph`, `set_device`, device properties) are
replaced while the mode is active by stand-ins that record what they are asked (`fake_cuda_runtime`): a
`torch.cuda.graph` capture becomes a region named "cuda-graph capture", its replay does nothing.
"""

from __future__ import annotations

import contextlib
import traceback
import weakref
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from unittest import mock

import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode, _push_mode
from torch.utils._pytree import tree_flatten, tree_map_only

aten = torch.ops.aten

__all__ = ["CAPTURE_REGION", "FakeCuda", "Record", "Region", "Sync", "TraceError", "fake_cuda_runtime"]
CAPTURE_REGION = "cuda-graph capture"
# ops that read a CUDA tensor's value on the host
SCALAR_READS = {aten._local_scalar_dense.default, aten.is_nonzero.default, aten.item.default, aten.equal.default,
                aten.allclose.default}
TRUTH_READS = {aten.is_nonzero.default, aten.equal.default, aten.allclose.default}  # answered True
SHAPE_READS = {aten.nonzero.default, aten.masked_select.default}  # their output's size is the data's
READS = SCALAR_READS | SHAPE_READS
COPIES = {aten._to_copy.default, aten.copy_.default, aten.to.device, aten.to.dtype_layout}
MATMULS = {aten.mm.default, aten.addmm.default, aten.bmm.default, aten.baddbmm.default, aten.matmul.default,
           aten.linear.default, aten._scaled_dot_product_flash_attention.default,
           aten._scaled_dot_product_efficient_attention.default, aten._scaled_dot_product_cudnn_attention.default,
           aten._scaled_dot_product_flash_attention_for_cpu.default, aten._int_mm.default, aten._scaled_mm.default,
           aten.convolution.default, aten.conv2d.default, aten.scaled_dot_product_attention.default}
TORCH_DIR = str(Path(torch.__file__).parent)


@contextlib.contextmanager
def fake_mode_off() -> Iterator[None]:
    """The fake mode beneath lifted for one op on real tensors."""
    mode = torch._C._unset_dispatch_mode(torch._C._TorchDispatchModeKey.FAKE)
    try:
        yield
    finally:
        if mode is not None:
            _push_mode(mode)


def copy_devices(func, tensors: list[torch.Tensor], flat: list) -> tuple[torch.device, torch.device]:
    """(source, destination) device of a copy op."""
    if func is aten.copy_.default:
        return tensors[1].device, tensors[0].device
    named = next((a for a in flat if isinstance(a, torch.device)), None)
    return tensors[0].device, named or tensors[0].device


class TraceError(AssertionError):
    """The trace found a defect: the message lists every one."""


@dataclass
class Sync:
    op: str
    where: str  # the gr00t_fast source line that asked for the value
    region: str | None


@dataclass
class Region:
    name: str
    peak_bytes: int = 0
    start_bytes: int = 0


def caller() -> str:
    """The innermost frame outside torch and this module (file:line function): the code that asked."""
    frames = [f for f in traceback.extract_stack()[:-1]
              if not f.filename.startswith(TORCH_DIR) and not f.filename.endswith("fake_cuda.py")]
    return f"{Path(frames[-1].filename).name}:{frames[-1].lineno} {frames[-1].name}" if frames else "?"


def is_cuda(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and t.device.type == "cuda"


def to_cuda(flat: list) -> bool:
    """Whether an op's arguments name a CUDA device (a factory or a copy onto it)."""
    return any(isinstance(a, torch.device) and a.type == "cuda" for a in flat)


@dataclass
class Record:
    syncs: list[Sync] = field(default_factory=list)
    copies_in: list[Sync] = field(default_factory=list)  # host-to-device copies inside a region
    matmuls: Counter = field(default_factory=Counter)  # (op, dtype, region) -> count
    live_bytes: int = 0
    peak_bytes: int = 0
    regions: dict[str, Region] = field(default_factory=dict)


class FakeCuda(TorchDispatchMode):
    """See the module docstring. Enter it on the thread that runs the policy (dispatch modes are per thread)."""

    def __init__(self):
        super().__init__()
        self.fake = FakeTensorMode(allow_non_fake_inputs=True)
        self.record = Record()
        self.active: list[Region] = []
        self._runtime: contextlib.ExitStack | None = None
        self._counted: set[int] = set()

    # ---------------------------------------------------------------------------------------- entering
    def __enter__(self):
        self._runtime = contextlib.ExitStack()
        self._runtime.enter_context(fake_cuda_runtime(self))
        self._runtime.enter_context(self.fake)  # beneath this mode: torch skips the driver's lazy init under it
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            self._runtime.close()

    @contextlib.contextmanager
    def region(self, name: str) -> Iterator[Region]:
        """Code that must not sync the host (what a CUDA graph captures); its peak live CUDA bytes are kept."""
        region = self.record.regions.setdefault(name, Region(name))
        region.start_bytes = self.record.live_bytes
        self.active.append(region)
        try:
            yield region
        finally:
            self.active.pop()

    def _fake(self, t: torch.Tensor) -> torch.Tensor:
        """A real (host) tensor as a fake one of the same data's shape, dtype and device."""
        return t if isinstance(t, FakeTensor) else self.fake.from_tensor(t)

    # -------------------------------------------------------------------------------------- dispatching
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flat, _ = tree_flatten((args, kwargs))
        tensors = [t for t in flat if isinstance(t, torch.Tensor)]
        onto_cuda = to_cuda(flat)
        if not any(isinstance(t, FakeTensor) for t in tensors) and not onto_cuda:
            with fake_mode_off():
                return func(*args, **kwargs)  # host work on real CPU tensors
        region = self.active[-1].name if self.active else None
        if func in READS and any(is_cuda(t) for t in tensors):
            return self._read(func, args, kwargs, region)
        if func in COPIES and tensors:
            src, dst = copy_devices(func, tensors, flat)
            if src.type == "cuda" and dst.type != "cuda":
                return self._read(func, args, kwargs, region)
            if src.type != "cuda" and dst.type == "cuda" and region is not None and tensors[-1].numel() > 1:
                self.record.copies_in.append(Sync(f"{func.__name__} host->device", caller(), region))
        if func in MATMULS:
            dtypes = tuple(str(t.dtype).removeprefix("torch.") for t in tensors[:2])
            where = caller() if "float32" in dtypes else ""  # an upcast is reported with its source line
            self.record.matmuls[(func.__name__.split(".")[0], dtypes, region, where)] += 1
        args, kwargs = tree_map_only(torch.Tensor, self._fake, (args, kwargs))
        out = func(*args, **kwargs)  # in the fake mode beneath
        self._count(out)
        return out

    def _read(self, func, args, kwargs, region):
        """A CUDA value read on the host: recorded, answered with a stand-in (True / 0, an empty result on the
        device, zeros of the shape on the host) so that the code after it runs on."""
        self.record.syncs.append(Sync(func.__name__, caller(), region))
        if func in SCALAR_READS:
            if func in TRUTH_READS or args[0].dtype == torch.bool:
                return True
            return 0.0 if args[0].dtype.is_floating_point else 0
        if func in SHAPE_READS:
            width = args[0].dim() if func is aten.nonzero.default else None
            shape, dtype = ((0, width), torch.long) if width is not None else ((0,), args[0].dtype)
            return torch.empty(shape, dtype=dtype, device=args[0].device)  # in the fake mode beneath
        if func is aten.copy_.default:  # into a host tensor: it keeps what it held
            return args[0]
        shaped = func(*args, **kwargs)  # the fake result's shape and dtype
        with fake_mode_off():
            return torch.zeros(shaped.shape, dtype=shaped.dtype)  # real, on the host

    def _count(self, out) -> None:
        """Live CUDA bytes: every new CUDA storage counted once, until it is freed."""
        for t in tree_flatten(out)[0]:
            if not is_cuda(t):
                continue
            storage = t.untyped_storage()
            key = id(storage)
            if key in self._counted:
                continue
            nbytes = storage.nbytes()
            self._counted.add(key)
            self.record.live_bytes += nbytes
            weakref.finalize(storage, self._free, key, nbytes)
            if self.record.live_bytes > self.record.peak_bytes:
                self.record.peak_bytes = self.record.live_bytes
            for region in self.active:
                region.peak_bytes = max(region.peak_bytes, self.record.live_bytes - region.start_bytes)

    def _free(self, key: int, nbytes: int) -> None:
        self._counted.discard(key)
        self.record.live_bytes -= nbytes

    # ---------------------------------------------------------------------------------------- checking
    def reset(self) -> None:
        """Forget the syncs, copies, matmuls and region peaks recorded so far (live bytes stay: they are live)."""
        rec = self.record
        rec.syncs.clear()
        rec.copies_in.clear()
        rec.matmuls.clear()
        for region in rec.regions.values():
            region.peak_bytes = 0

    def defects(self, dtype: torch.dtype | None = None) -> list[str]:
        """Every defect recorded: syncs and host-to-device copies inside a region, float32 matmuls when the model
        runs in `dtype` (bf16 / fp16)."""
        rec = self.record
        found = [f"host sync inside {s.region!r}: {s.op} at {s.where}" for s in rec.syncs if s.region]
        found += [f"host-to-device copy inside {s.region!r}: {s.op} at {s.where}" for s in rec.copies_in
                  if s.region == CAPTURE_REGION]
        if dtype in (torch.bfloat16, torch.float16):
            found += [f"{op} in {'/'.join(dtypes)} ({n}x) inside {region!r} in a {dtype} model at {where}"
                      for (op, dtypes, region, where), n in rec.matmuls.items()
                      if region and "float32" in dtypes]
        return found

    def check(self, dtype: torch.dtype | None = None) -> None:
        found = [f"{text} ({n}x)" if n > 1 else text for text, n in Counter(self.defects(dtype)).items()]
        if found:
            raise TraceError(f"{len(found)} defect(s) on fake CUDA:\n  " + "\n  ".join(found))


# ----------------------------------------------------------------------------------- the driver's stand-ins
class _Event:
    def __init__(self, *args, **kwargs):
        pass

    record = synchronize = wait = lambda self, *a, **k: None  # noqa: E731
    elapsed_time = lambda self, other: 0.0  # noqa: E731


class _Stream:
    cuda_stream = 0

    def __init__(self, *args, **kwargs):
        pass

    wait_stream = wait_event = synchronize = lambda self, *a, **k: None  # noqa: E731


class _Graph:
    """`torch.cuda.CUDAGraph`: nothing to replay (the captured region ran once, on fake tensors)."""

    replays = 0

    def replay(self) -> None:
        self.replays += 1


@contextlib.contextmanager
def fake_cuda_runtime(cuda: FakeCuda, device_name: str = "NVIDIA H100 80GB HBM3 (fake)",
                      capability: tuple[int, int] = (9, 0)) -> Iterator[None]:
    """The `torch.cuda` calls that need a driver, replaced while `cuda` is active: a graph capture becomes the region
    `CAPTURE_REGION`, `torch.cuda.synchronize` counts as a host sync, the device reads as an H100."""

    @contextlib.contextmanager
    def capture(graph, *args, **kwargs):
        with cuda.region(CAPTURE_REGION):
            yield

    def synchronize(device=None) -> None:
        region = cuda.active[-1].name if cuda.active else None
        cuda.record.syncs.append(Sync("torch.cuda.synchronize", caller(), region))

    patches = dict(
        set_device=lambda device: None, Event=_Event, Stream=_Stream, current_stream=lambda device=None: _Stream(),
        stream=lambda s: contextlib.nullcontext(), device=lambda d: contextlib.nullcontext(), CUDAGraph=_Graph,
        graph=capture, graph_pool_handle=lambda: (0, 0), synchronize=synchronize,
        get_device_capability=lambda device=None: capability, get_device_name=lambda device=None: device_name)
    with contextlib.ExitStack() as stack:
        for name, value in patches.items():
            stack.enter_context(mock.patch.object(torch.cuda, name, value))
        yield
