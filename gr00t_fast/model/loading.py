"""Strict, memory-efficient checkpoint loading from the official on-disk layout.

The network is built on the meta device and every tensor is read from safetensors straight into its
final dtype and device, so loading never holds two full copies of the weights. Every tensor lives in memory of its
own, read from the file (never a view of a memory-mapped file): rewriting the checkpoint folder under a running
policy changes nothing in it (`gr00t_fast.model.owned_weights`).
"""

import json
import re
from pathlib import Path
from typing import Callable, Collection

import torch
from torch.overrides import TorchFunctionMode

from gr00t_fast.model.config import Gr00tConfig
from gr00t_fast.model.deferred import DeferredWeights
from gr00t_fast.model.fusion import checkpoint_shapes, fuse_state_dict, fused_names, part_names
from gr00t_fast.model.gr00t import Gr00tN15
from gr00t_fast.model.owned_weights import OwnedSafetensors, WeightFileError
from gr00t_fast.model.precision import Precision, auto_cpu_precision

LEROBOT_PREFIX = "_groot_model."
EMBED_TOKENS = "backbone.eagle_model.language_model.model.embed_tokens.weight"
TIED_LM_HEAD = "backbone.eagle_model.language_model.lm_head.weight"
# Stored in official checkpoints but never used at inference.
_UNUSED = (
    re.compile(r"^backbone\.eagle_model\.vision_model\.vision_model\.head\."),  # SigLIP pooling head
    re.compile(r"^backbone\.eagle_model\.language_model\.lm_head\."),  # tied to embed_tokens
)
_LLM_LAYER = re.compile(r"^backbone\.eagle_model\.language_model\.model\.layers\.(\d+)\.")


class CheckpointError(ValueError):
    """The checkpoint on disk does not match the network its config describes."""


def weight_files(checkpoint_dir: Path) -> list[Path]:
    """`model.safetensors`, or the shards named by `model.safetensors.index.json`: regular files inside
    `checkpoint_dir` once symlinks are resolved (an index naming `../x`, `/etc/passwd` or a link out of the folder is
    refused, one line naming the index and the entry)."""
    index = checkpoint_dir / "model.safetensors.index.json"
    if index.is_file():
        names = index_shards(index)
    else:
        names = ["model.safetensors"]
    files = [inside(checkpoint_dir, name, index) for name in names]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise CheckpointError(f"missing weight files in {checkpoint_dir}: {', '.join(missing)}")
    not_files = [str(f) for f in files if not f.is_file()]
    if not_files:
        raise CheckpointError(f"weight files in {checkpoint_dir} that are not regular files: {', '.join(not_files)}")
    return files


def index_shards(index: Path) -> list[str]:
    """The shard names of a safetensors index, its JSON shape checked: {"weight_map": {tensor: file name}}."""
    try:
        content = json.loads(index.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{index} is not a valid safetensors index: {err}") from None
    if not isinstance(content, dict) or not isinstance(content.get("weight_map"), dict):
        found = type(content.get("weight_map") if isinstance(content, dict) else content).__name__
        raise CheckpointError(f'{index} is not a valid safetensors index: it needs "weight_map", a map of tensor name '
                              f"to file name (found {found})")
    for tensor, name in content["weight_map"].items():
        if not isinstance(name, str) or not name:
            raise CheckpointError(f"{index}: weight_map[{tensor!r}] must be a file name, got {name!r}")
    return sorted(set(content["weight_map"].values()))


def inside(checkpoint_dir: Path, name: str, index: Path) -> Path:
    """`checkpoint_dir / name` when it stays inside the folder after resolving symlinks (in a Hugging Face cache
    snapshot, `snapshots/<revision>/`, the repository's `blobs/` the snapshot links to count too), else
    CheckpointError."""
    folder = checkpoint_dir.resolve()
    path = (checkpoint_dir / name).resolve()
    roots = [folder]
    if checkpoint_dir.absolute().parent.name == "snapshots":  # huggingface_hub's cache layout
        roots.append(checkpoint_dir.absolute().parent.parent.resolve() / "blobs")
    if path == folder or not any(path.is_relative_to(root) for root in roots):
        where = f"{index} names {name!r}" if index.is_file() else f"{checkpoint_dir / name} is a link"
        raise CheckpointError(f"{where}, which is outside the checkpoint folder {folder}"
                              + (f" (it resolves to {path})" if not Path(name).is_absolute() else "")
                              + ": a checkpoint reads only files of its own folder")
    return checkpoint_dir / name


def is_unused(name: str, kept_llm_layers: int) -> bool:
    """Tensors skipped on purpose: SigLIP pooling head, lm_head, LLM layers beyond select_layer."""
    if any(p.match(name) for p in _UNUSED):
        return True
    layer = _LLM_LAYER.match(name)
    return layer is not None and int(layer.group(1)) >= kept_llm_layers


class CheckpointTensors:
    """A checkpoint's weight files held open until `close()`, every tensor's name and shape checked against the
    model's (`expected`, the checkpoint's layout) before any is read: one CheckpointError lists every missing,
    unexpected and wrongly shaped tensor. `read(names)` reads those tensors, each into memory of its own."""

    def __init__(self, checkpoint_dir: Path, expected: dict[str, torch.Size], kept_llm_layers: int):
        self.checkpoint_dir = checkpoint_dir
        self.files: list[OwnedSafetensors] = []
        self.where: dict[str, tuple[OwnedSafetensors, str]] = {}  # expected name -> (its file, its key there)
        self.finite: set[str] = set()  # the names read and found finite (a tensor read again is not checked again)
        unexpected, wrong_shape = [], []
        try:
            for path in weight_files(checkpoint_dir):
                f = OwnedSafetensors(path)
                self.files.append(f)
                keys = f.keys()
                names = {key.removeprefix(LEROBOT_PREFIX) for key in keys}
                for key in keys:
                    name = key.removeprefix(LEROBOT_PREFIX)
                    if name == TIED_LM_HEAD and EMBED_TOKENS not in names:
                        name = EMBED_TOKENS  # saved by its tied twin only (safetensors keeps one name of a shared tensor)
                    if name not in expected:
                        if not is_unused(name, kept_llm_layers):
                            unexpected.append(name)
                        continue
                    shape = f.shape(key)
                    if shape != tuple(expected[name]):
                        wrong_shape.append(f"{name}: checkpoint {list(shape)} vs model {list(expected[name])}")
                        continue
                    self.where[name] = (f, key)
        except WeightFileError as err:
            self.close()
            raise CheckpointError(str(err)) from None
        missing = sorted(set(expected) - set(self.where) - {w.split(":")[0] for w in wrong_shape})
        problems = [(f"{len(items)} {title}", items) for title, items in
                    (("missing", missing), ("unexpected", sorted(unexpected)), ("wrongly shaped", wrong_shape)) if items]
        if problems:
            self.close()
            raise CheckpointError(f"checkpoint {checkpoint_dir} does not match its config: "
                                  + "; ".join(f"{title} ({few(items)})" for title, items in problems))

    def close(self) -> None:
        """Every file closed (one that fails to close does not keep the others open)."""
        for f in self.files:
            try:
                f.close()
            except OSError:
                pass

    def read(self, names: Collection[str], device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """The tensors `names` (expected ones), in the files' order, cast to `dtype` on `device`; one CheckpointError
        names every one holding NaN or inf."""
        tensors: dict[str, torch.Tensor] = {}
        non_finite = []
        try:
            for name in [name for name in self.where if name in names]:
                f, key = self.where[name]
                tensor = f.tensor(key)
                if name not in self.finite and tensor.is_floating_point() and not all_finite(tensor):
                    non_finite.append(name)
                else:
                    self.finite.add(name)
                tensors[name] = tensor.to(device=device, dtype=dtype)
        except WeightFileError as err:
            raise CheckpointError(str(err)) from None
        if non_finite:
            raise CheckpointError(f"checkpoint {self.checkpoint_dir} has NaN/inf values in {len(non_finite)} "
                                  f"tensor(s): {few(sorted(non_finite))}")
        return tensors


def all_finite(tensor: torch.Tensor) -> bool:
    """Whether every element of a floating-point tensor is finite. A sum is finite only where every element is (NaN
    and inf survive any order of additions): one pass without a mask, ~25x faster than `isfinite(...).all()` on the
    weights; a sum that overflowed out of range is checked element by element. A float8 tensor (no sum, and no
    `isfinite` for e4m3 on a CPU) is checked as the float16 values it holds exactly."""
    tensor = tensor.half() if tensor.element_size() == 1 else tensor
    return bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all())


def is_complete(model: torch.nn.Module) -> bool:
    """Whether every weight of `model` is loaded (not a `load_model(..., only=...)` host with the rest on meta)."""
    return not any(tensor.is_meta for tensor in (*model.parameters(), *model.buffers()))


def few(items: list[str], shown: int = 3) -> str:
    """The first `shown` items and how many more: "a, b, c and 145 more"."""
    rest = len(items) - shown
    return ", ".join(items[:shown]) + (f" and {rest} more" if rest > 0 else "")


class _SkipInit(TorchFunctionMode):
    """Leaves out `torch.nn.init`'s fills while modules are built: a meta tensor holds no values to fill, and a meta
    `normal_` (nn.Embedding's) runs a Python decomposition that imports torch._dynamo, ~1 s of every load."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else kwargs["tensor"]
        return func(*args, **(kwargs or {}))


def build_meta_model(config: Gr00tConfig) -> Gr00tN15:
    """The network on the meta device: names and shapes without allocating memory (nor initializing weights)."""
    with torch.device("meta"), _SkipInit():
        return Gr00tN15(config)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device_dtype(device: str | torch.device | None, dtype: torch.dtype | str | None) -> tuple[torch.device, torch.dtype]:
    """The device (default CUDA when available) and dtype (default, and "auto": bfloat16 on CUDA, float32 on CPU) to
    load into; a ValueError names a device this torch cannot use or a dtype the model does not run in."""
    try:
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except (RuntimeError, TypeError):
        raise ValueError(f"device {device!r} is not a torch device (cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else "a CUDA build that sees no GPU"
        raise ValueError(f"device {str(device)!r}: torch {torch.__version__} is {build}; use --device=cpu")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device {str(device)!r}: gr00t-fast runs on cpu or cuda")
    if dtype is None or dtype == "auto":
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r} is not one of auto, {', '.join(DTYPES)}")
        dtype = DTYPES[dtype]
    if dtype not in DTYPES.values():
        raise ValueError(f"dtype {dtype} is not one of auto, {', '.join(DTYPES)}")
    return device, dtype


def load_model(
    path: str | Path,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    eagle_path: str | Path | None = None,
    only: Collection[str] | None = None,
    defer: Callable[[Gr00tN15], Collection[str]] | None = None,
    quantize: str | None = None,
) -> Gr00tN15:
    """Load a GR00T N1.5 checkpoint directory for inference (eval mode, no grad).

    `device` defaults to CUDA when available, `dtype` to bfloat16 on CUDA and float32 on CPU. `dtype="auto"`: the
    same on CUDA; on a CPU bfloat16 where it has bf16 units and the checkpoint is large enough for bf16 to pay
    (`gr00t_fast.model.precision`), decided before the weights are read. `model.precision` says what it runs in and
    why. `only`: read these tensors alone (unfused state-dict names), the rest stay on the meta device: the host of
    exported graphs (`gr00t_fast.model.graphs.GRAPH_HOST_TENSORS`) in the memory of what it runs (`is_complete`
    says which a model is). `defer`: the names (the model's layout) of the tensors to leave on the meta device,
    given the meta model, read when asked through `model.deferred_weights` (`gr00t_fast.model.deferred`), which keeps
    the checkpoint's files open until it is closed; every name and shape is checked at load all the same.
    `quantize`: the matmuls the backend will quantize ("int8", "fp8"): `dtype="auto"` on a CPU runs int8 in float32.
    """
    path = Path(path)
    device, load_dtype = resolve_device_dtype(device, dtype)
    config = Gr00tConfig.from_checkpoint(path, eagle_path)
    model = build_meta_model(config)
    if dtype == "auto" and device.type == "cpu":  # decided before any weight is read: they are read into it
        precision = auto_cpu_precision(sum(p.numel() for p in model.parameters()), quantize)
    else:
        why = "the default on " + device.type if dtype in (None, "auto") else "as requested"
        precision = Precision(load_dtype, "auto" if dtype == "auto" else str(load_dtype).removeprefix("torch."), why)
    if only is not None and defer is not None:
        raise ValueError("load_model takes only= or defer=, not both")
    fused = fused_names(model)
    deferred = {name: part_names(name, fused) for name in defer(model)} if defer is not None else {}
    strangers = sorted(set(deferred) - set(model.state_dict()))
    if strangers:
        raise ValueError(f"defer names tensors the model does not have: {few(strangers)}")
    unread = {part for parts in deferred.values() for part in parts}
    tensors = CheckpointTensors(path, checkpoint_shapes(model), config.llm.num_layers)
    try:
        state = tensors.read({name for name in tensors.where if name not in unread} if only is None else set(only),
                             device, precision.dtype)
        model.load_state_dict(fuse_state_dict(model, state) if only is None else state,
                              strict=only is None and not deferred, assign=True)
        del state  # the model holds every tensor now: nothing else may keep one alive
        model = model.eval().requires_grad_(False)
        model.precision = precision
        if deferred:
            model.deferred_weights = DeferredWeights(model, tensors, deferred, device, precision.dtype)
    except BaseException:
        tensors.close()
        raise
    if not deferred:
        tensors.close()
    return model
