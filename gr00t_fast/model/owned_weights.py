"""Read safetensors tensors into memory the process owns, one tensor at a time, never mapping the file.

`safetensors.safe_open` memory-maps the file: a CPU tensor it returns aliases the mapping, and a float32 model
loaded in float32 would keep running on the file's pages. Whoever rewrites the checkpoint folder then changes the
running policy: truncating a shard kills the process with SIGBUS on the next touch of a page, copying another
checkpoint over it silently gives different actions. Here safetensors still validates each file (its header,
offsets and size), and every tensor's bytes are read with ordinary file reads into a fresh buffer, so the loaded
weights never depend on the files again, peak memory grows by one tensor at most (no page of the file is mapped),
and a file that shrinks while it is read is a one-line error, not a signal.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError, safe_open

DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}


class WeightFileError(ValueError):
    """A safetensors file that cannot be read (corrupt, not safetensors, changed while it was read)."""


class OwnedSafetensors:
    """One open safetensors file until `close()`: its keys, shapes, and `tensor(key)` as a CPU tensor in memory of
    its own."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.file = open(path, "rb")  # first: a permission error is named as one, not as a corrupt file
        except OSError as err:
            raise WeightFileError(f"cannot read {path}: {(err.strerror or str(err)).lower()}") from None
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:  # validation only: no tensor is taken
                names = list(f.keys())
        except (SafetensorError, OSError) as err:
            self.file.close()
            raise WeightFileError(f"cannot read {path} (corrupt or not safetensors): {err}") from None
        try:
            (length,) = struct.unpack("<Q", self.file.read(8))
            header = json.loads(self.file.read(length))
            self.entries = {name: header[name] for name in names}
            self.metadata: dict[str, str] = header.get("__metadata__") or {}
        except (ValueError, KeyError, struct.error) as err:  # the file changed since safetensors checked it
            self.file.close()
            raise WeightFileError(f"cannot read {path} (changed while it was read?): {err!r}") from None
        self.data_start = 8 + length

    def close(self) -> None:
        self.file.close()

    def keys(self) -> list[str]:
        return list(self.entries)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self.entries[key]["shape"])

    def tensor(self, key: str) -> torch.Tensor:
        """The tensor `key`, read into a new buffer."""
        entry = self.entries[key]
        dtype = DTYPES.get(entry["dtype"])
        if dtype is None:
            raise WeightFileError(f"{self.path}: tensor {key!r} has dtype {entry['dtype']}, which torch cannot hold")
        begin, end = entry["data_offsets"]
        buffer = torch.empty(end - begin, dtype=torch.uint8)
        try:
            self.file.seek(self.data_start + begin)
            read = self.file.readinto(memoryview(buffer.numpy()))
        except OSError as err:
            raise WeightFileError(f"cannot read {self.path}: {err}") from None
        if read != end - begin:
            raise WeightFileError(f"cannot read {self.path}: tensor {key!r} ends after {read} of {end - begin} "
                                  "bytes (the file changed while it was read?)")
        shape = self.shape(key)
        return buffer.view(dtype).reshape(shape) if math.prod(shape) else torch.empty(shape, dtype=dtype)


def write_streamed(path: Path, layout: dict[str, tuple[torch.dtype, tuple[int, ...]]],
                   tensor: Callable[[str], torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """A safetensors file at `path` of the tensors `layout` names (name -> dtype, shape), each made by `tensor(name)`
    as it is written and dropped after: the writer holds one tensor at a time (`safetensors.torch.save_file` takes
    them all at once: at full size 1.5 GB of int8 levels unpacked beside their packed copies)."""
    codes = {dtype: code for code, dtype in DTYPES.items()}
    header: dict = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, (dtype, shape) in layout.items():
        size = math.prod(shape) * dtype.itemsize
        header[name] = {"dtype": codes[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the data 8-byte aligned, as safetensors writes it
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)) + encoded)
        for name, (dtype, shape) in layout.items():
            value = tensor(name).detach().cpu().contiguous()
            if value.dtype != dtype or tuple(value.shape) != tuple(shape):
                raise ValueError(f"{name}: made {value.dtype} {list(value.shape)}, declared {dtype} {list(shape)}")
            f.write(memoryview(value.reshape(-1).view(torch.uint8).numpy()))
            del value  # before the next is made
