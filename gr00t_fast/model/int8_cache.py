"""A `--quantize int8` load's layers kept for the next load of the same checkpoint: the int8 levels, scales and
smoothing of every converted layer and which layers stay in bfloat16, in one safetensors file of a cache folder
(`gr00t_fast.runtime.cache`). On a CPU the load measures its layers on 8 synthetic scenes (or the user's
observations) and fits every weight's rounding to them: minutes at full size (266 s on an Intel Xeon with its sample
calls one at a time, 511 s on an AVX2 EPYC with FBGEMM, batched, 2 threads). Read back, the policy's actions are the
same bits as the load that saved them.

The folder is keyed by what the layers depend on (`gr00t_fast.backends.pytorch.int8_cache_folder`): the checkpoint's
content, the model's config (the Eagle config's too), gr00t-fast's code (`code_digest`: every tunable of
`gr00t_fast.model.quantize` with it), torch's version, the engine, what kept layers run in, the model's dtype and the
sample calls by content (the user's observations, or the synthetic scenes), and whether FBGEMM timed each layer
(`Int8Engine.times_layers`: its verdicts are the saving load's). Not the thread count: GPTQ's float sums at
another count can round a few weights to the next level (tiny: 2 of 37 layers between 1 and 2 threads), so a read load
runs the layers of the load that saved them, bit for bit, which a fresh load on another thread count may not. A folder
holding a file it did not write is emptied and made again (`sealed`), and a file that does not fit the model is named
in one warning and made again. Read back, the layers take most of their time being packed again (FBGEMM: full size
32-35 s on an AVX2 EPYC, its packed form cannot be saved). `GR00T_FAST_INT8_CACHE=0` neither reads nor writes it.
A cache that cannot be written (a read-only file system, one baked into a container image) is read as it is where it
holds the file sealed for this key (`read_as_it_is`); with no file for this key (of any checkpoint), it is off for the
load, in one warning, and the checkpoint is not hashed for it. Read-only, digests are not remembered: each load hashes
the checkpoint's weight files again to find the folder, and the cache file to check its seal (about 1 GB/s), unless
the cache holds the digests of these very files.
"""

import json
import logging
import os
import stat
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from gr00t_fast.model.owned_weights import OwnedSafetensors, WeightFileError, write_streamed
from gr00t_fast.model.quantize import VERDICTS, Bf16Linear, QuantizedLinear, stack_linears
from gr00t_fast.model.swap import replace_layers
from gr00t_fast.runtime.cache import sealed, unsealed

__all__ = ["INT8_CACHE_ENV", "INT8_CACHE_FILE", "Int8CacheError", "int8_cache_enabled", "quantize_cached",
           "read_as_it_is", "read_layers", "save_layers"]

log = logging.getLogger(__name__)

INT8_CACHE_ENV = "GR00T_FAST_INT8_CACHE"
INT8_CACHE_FILE = "int8_layers.safetensors"
META_KEY = "gr00t_fast.int8"


class Int8CacheError(ValueError):
    """A cached file of int8 layers that does not fit the model (another layout, a damaged file)."""


def int8_cache_enabled() -> bool:
    """Whether loads read and write the int8 cache (`GR00T_FAST_INT8_CACHE`, default on; "0" off)."""
    value = os.environ.get(INT8_CACHE_ENV, "1")
    if value not in ("0", "1"):
        raise ValueError(f"{INT8_CACHE_ENV}={value!r}: expected 1 (read and write the int8 cache) or 0 (neither)")
    return value == "1"


def save_layers(model: nn.Module, counts: dict[str, int], file: Path) -> None:
    """`model`'s quantized layers (its `QuantizedLinear` levels, scales and 1 / smoothing; its `Bf16Linear` names)
    and `quantize_linears`' `counts` in `file` (safetensors), one layer's levels unpacked at a time, written beside it
    and renamed into place."""
    quantized, layout, layers = {}, {}, {}
    for name, layer in stack_linears(model).items():
        if isinstance(layer, QuantizedLinear):
            quantized[name] = layer
            out, inp = layer.out_features, layer.in_features
            layout[f"{name}.levels"], layout[f"{name}.scale"] = (layer.qdtype, (out, inp)), (torch.float32, (out, 1))
            if layer.inv_smooth is not None:
                layout[f"{name}.inv_smooth"] = (torch.float32, (inp,))
            layers[name] = {"mode": layer.mode, "fitted": layer.fitted}
        elif isinstance(layer, Bf16Linear):
            layers[name] = {"kept": "bfloat16"}

    unpacked: dict[str, tuple] = {}  # the layer being written's (levels, scale), unpacked once

    def tensor(key: str) -> torch.Tensor:
        name, _, part = key.rpartition(".")
        if part == "inv_smooth":
            return quantized[name].inv_smooth
        if name not in unpacked:
            unpacked.clear()
            unpacked[name] = quantized[name].levels()
        return unpacked[name][part == "scale"]

    partial = file.with_name(f".{file.name}.{os.getpid()}")
    try:
        write_streamed(partial, layout, tensor, {META_KEY: json.dumps({"counts": counts, "layers": layers})})
        os.replace(partial, file)
    finally:
        partial.unlink(missing_ok=True)


def read_layers(model: nn.Module, file: Path) -> dict[str, int]:
    """`model`'s layers as `save_layers` saved them in `file`; returns the counts saved with them. Every layer's
    name, shape and values are checked before any is replaced (Int8CacheError: the model is left as it was). The
    weights of the layers staying float are read from the checkpoint (`model.deferred_weights`, closed after)."""
    linears = stack_linears(model)
    try:
        f = OwnedSafetensors(file)
    except WeightFileError as err:
        raise Int8CacheError(str(err)) from None
    try:
        layers, counts, stored = _checked(f, linears)
    finally:
        f.close()
    linears.clear()
    deferred = getattr(model, "deferred_weights", None)

    def restored(layer: nn.Linear, name: str) -> nn.Module:
        if "kept" in layers[name]:
            if deferred is not None:
                deferred.fill(layer)
            return Bf16Linear(layer)
        quantized = QuantizedLinear(layer, layers[name]["mode"], stored=stored.pop(name))
        quantized.fitted = bool(layers[name].get("fitted"))
        return quantized

    try:
        for name in layers:  # each layer's levels freed as its own copy is packed
            replace_layers(model, [name], lambda layer, name=name: restored(layer, name))
        for layer in deferred.pending() if deferred is not None else ():
            deferred.fill(layer)
    finally:
        if deferred is not None:
            deferred.close()
            model.deferred_weights = None
    model.action_head.step_table_cache.clear()
    return counts


def _checked(f: OwnedSafetensors, linears: dict[str, nn.Module]) -> tuple[dict, dict, dict]:
    """The (layers, counts, {name: (levels, scale, inv_smooth)}) of an open cache file, or Int8CacheError naming
    what does not fit `linears` (the model's stack layers, by name)."""
    try:
        meta = json.loads(f.metadata[META_KEY])
        layers, counts = dict(meta["layers"]), dict(meta["counts"])
        decided = sum(int(counts.get(verdict, 0)) for verdict in VERDICTS)
        if not all(isinstance(how, dict) for how in layers.values()):
            raise TypeError("a layer's record is not a mapping")
    except (KeyError, TypeError, ValueError) as err:
        raise Int8CacheError(f"{f.path}: no readable {META_KEY} record ({type(err).__name__})") from None
    if decided != len(linears):
        raise Int8CacheError(f"{f.path}: its counts decide {decided} layers, this model's transformer stacks have "
                             f"{len(linears)}")
    stored = {}
    for name, how in layers.items():
        layer = linears.get(name)
        if type(layer) is not nn.Linear:
            raise Int8CacheError(f"{f.path}: {name!r} is not a float Linear layer of this model's transformer stacks")
        if "kept" in how:
            continue
        if how.get("mode") != "int8":
            raise Int8CacheError(f"{f.path}: layer {name!r} is not recorded as int8 ({how!r})")
        out, inp = layer.out_features, layer.in_features
        want = {"levels": ((out, inp), torch.int8), "scale": ((out, 1), torch.float32)}
        if f"{name}.inv_smooth" in f.entries:
            want["inv_smooth"] = ((inp,), torch.float32)
        try:
            parts = {part: f.tensor(f"{name}.{part}") for part in want}
        except (KeyError, WeightFileError) as err:
            raise Int8CacheError(f"{f.path}: layer {name!r} cannot be read ({err})") from None
        for part, (shape, dtype) in want.items():
            if parts[part].shape != shape or parts[part].dtype != dtype:
                raise Int8CacheError(f"{f.path}: {name}.{part} is {parts[part].dtype} {list(parts[part].shape)}, "
                                     f"this model's layer takes {dtype} {list(shape)}")
        for part in ("scale", "inv_smooth"):
            if part in parts and not (torch.isfinite(parts[part]).all() and (parts[part] > 0).all()):
                raise Int8CacheError(f"{f.path}: {name}.{part} holds values that are not finite and positive")
        stored[name] = (parts["levels"], parts["scale"], parts.get("inv_smooth"))
    return layers, counts, stored


def quantize_cached(model: nn.Module, folder: Path, quantize: Callable[[], dict[str, int]]) -> tuple[dict, str]:
    """`model`'s layers read from `folder` where a load with the same key saved them (`read_layers`), else quantized
    by `quantize()` and saved there (`save_layers`); returns the layer counts and what the cache did ("read from
    ...", "saved to ...", or why it was not). A cache that cannot be made, locked or written costs the saving alone (one
    warning: the layers read or quantized are kept), and one that cannot be locked is still read where its sealed file
    fits (`read_as_it_is`: a read-only cache); a file that does not fit the model is named in one warning and made
    again. An error of the model's own load (the checkpoint) is raised as it is."""
    counts, done, busy, entered = None, None, False, False  # busy: the model is being changed (an error is the load's)
    try:
        with sealed(folder) as kept:  # a second process loading the same checkpoint waits, then reads
            entered, file = True, kept / INT8_CACHE_FILE  # locked: a failure from here is not read as it is
            if file.is_file():
                try:
                    busy = True
                    counts, done = read_layers(model, file), f"read from {kept}"
                except Int8CacheError as err:  # raised before any layer changed
                    busy = False
                    log.warning("int8 cache: %s; quantizing again", err)
                    file.unlink()
            if counts is None:
                busy = True
                counts = quantize()
                save_layers(model, counts, file)
                done = f"saved to {kept} for the next load"
        return counts, done
    except (OSError, ValueError) as err:
        if busy and counts is None:
            raise
        why = (err.strerror or str(err)).lower() if isinstance(err, OSError) else str(err)
        if counts is None and not entered and (counts := read_as_it_is(model, folder)) is not None:
            return counts, f"read from {folder} ({why}: read as it is)"
        log.warning("int8 cache %s not written (%s): the next load quantizes again", folder, why)
        return (quantize() if counts is None else counts), done or f"not saved ({why})"


def read_as_it_is(model: nn.Module, folder: Path) -> dict[str, int] | None:
    """The counts of `model`'s layers read from a cache folder this process cannot lock or write (a read-only file
    system, a cache baked into an image, another user's): where its file is the one the folder's seal records
    (`unsealed`) and fits the model (`read_layers`); else None, named in one warning where there was a file, and the
    model left as it was. Unlocked: no process writes there, and a file being replaced does not match its seal."""
    file = folder / INT8_CACHE_FILE
    try:  # `stat`, not `is_file`: newer Pythons' `is_file` says False for a folder this process may not enter
        if not stat.S_ISREG(file.stat().st_mode):
            return None
        reason = unsealed(folder)  # hashes the file where its digest is not remembered (1.6 GB at full size)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:  # a folder or file this process may not read (another user's cache)
        reason = f"it cannot be read ({(err.strerror or str(err)).lower()})"
    try:
        if reason is not None:
            raise Int8CacheError(f"{folder}: {reason}")
        return read_layers(model, file)
    except Int8CacheError as err:  # raised before any layer changed
        log.warning("int8 cache: %s; not read", err)
        return None
