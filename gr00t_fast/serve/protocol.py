"""The Isaac-GR00T ZeroMQ wire format: message (de)serialization and request validation.

A request is a map `{"endpoint": str, "data": map, "api_token": str}`; a reply is the endpoint's result map or
`{"error": str}`. Three encodings exist upstream; every one is read, and a server replies in the one its request
came in:

- msgpack with .npy arrays (Isaac-GR00T N1.5, Sep 2025 - May 2026; the default here): numpy arrays travel as
  `{"__ndarray_class__": True, "as_npy": <np.save bytes>}` and modality configs as
  `{"__ModalityConfig_class__": True, "as_json": <json>}`. Arrays are decoded from the .npy bytes without pickle.
- msgpack with msgpack-numpy arrays (Isaac-GR00T main since 2026-05-07, its N1.6/N1.7 `PolicyClient`):
  `{b"nd": True, b"type": "<f4", b"kind": b"", b"shape": [...], b"data": <raw bytes>}` (keys as bytes or str;
  `nd: False` a numpy scalar), modality configs marked `__ModalityConfig__`. Decoded here without msgpack-numpy
  (whose decoder would unpickle an object array): plain dtypes only, the size checked against the shape.
- the legacy `torch.save` format (older Isaac-GR00T). Upstream decodes it with `torch.load(weights_only=False)`,
  i.e. a full pickle: whoever can send a message to such a server (or answer such a client) can run arbitrary code
  on it. Here it is off unless asked for, and decoded with `torch.load(weights_only=True)` plus an allowlist of
  the numpy reconstruction functions and plain dtypes only, so no arbitrary object can be built; the archive must
  be stored uncompressed, as torch.save writes it, so it never expands beyond its own size.

Object arrays are refused in every encoding. Every decode is bounded: strings (`MAX_STR_BYTES`), maps
(`MAX_MAP_KEYS`), lists (`MAX_LIST_ITEMS`), nesting (msgpack's own stack), array dimensions, archive entries; every
error text is cut to `MAX_ERROR_CHARS`. Before msgpack builds anything, `check_structure` walks the message's headers
(binary payloads skipped by their length) and refuses one that holds more than `MAX_OBJECTS` values or
`MAX_CONTAINERS` maps and lists: 50 MB of nested empty lists, under any byte limit, decoded to 4.5 GB in 20-33 s;
refused, they cost a few milliseconds and no memory. `request_token` then reads the top-level `api_token` without
decoding the rest, so a server checks the token before the message's payload is copied.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from typing import TYPE_CHECKING, Any

import msgpack
import numpy as np

if TYPE_CHECKING:  # the model's RTC imports torch: `serve --help` and the server's setup read none of it
    from gr00t_fast.model.rtc import RtcRequest

ENDPOINTS = ("ping", "kill", "get_action", "get_modality_config", "reset")  # reset: N1.6/N1.7 clients
LEGACY_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive
_NDARRAY = "__ndarray_class__"
_MODALITY_CONFIG = "__ModalityConfig_class__"  # N1.5's marker; NVIDIA's current client reads it too
MODALITY_CONFIG_MARKERS = (_MODALITY_CONFIG, "__ModalityConfig__")  # N1.5's, Isaac-GR00T main's
ARRAY_FORMATS = ("npy", "msgpack-numpy")  # how a msgpack message carries arrays: N1.5's .npy bytes, or main's
MAX_ARRAY_DIMS = 32
MAX_STR_BYTES = 64 * 1024  # an instruction, a key (the tokenizer bounds instructions further, in tokens)
MAX_MAP_KEYS = 1024  # keys per map (an observation has a handful)
MAX_LIST_ITEMS = 4096  # items per list (a batch of instructions)
MAX_ARCHIVE_ENTRIES = 4096  # files in a legacy torch.save archive
MAX_OBJECTS = 1 << 16  # values (keys, scalars, strings, bins, maps, lists) in one msgpack message; an observation
# has a few dozen (arrays travel as bin payloads), a batch of instructions up to MAX_LIST_ITEMS
MAX_CONTAINERS = 4096  # maps and lists in one message (each costs ~100 bytes and more once decoded)
MAX_ERROR_CHARS = 1000  # error replies and log lines quote at most this much
ERROR_MAP_FIELD = "error_map_ok"  # request field of clients that read {"error": ...} replies (gr00t-fast's)
ERROR_PREFIX = "gr00t-fast server error: "
RTC_FIELD = "rtc"  # optional get_action field (gr00t-fast): real-time chunking's prefix, delay and settings;
# the reply then holds the chunk's normalized actions under RTC_CHUNK_KEY (the next request's prefix comes from it)
RTC_INTS, RTC_FLOATS = ("inference_delay", "execution_horizon"), ("beta", "ramp")
TIMEOUT_FIELD = "timeout_ms"  # optional request field (gr00t-fast's client): how long its client waits for the reply


def bounded(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """`text` cut to `limit` characters (echoed input must not make replies or logs unbounded)."""
    return text if len(text) <= limit else f"{text[:limit]}... [{len(text) - limit} more characters]"


class ProtocolError(ValueError):
    """A message that does not follow the protocol (undecodable, wrong types, unknown endpoint, ...)."""


# --- numpy arrays as .npy bytes ---------------------------------------------------------------------------------


def array_to_npy(array: np.ndarray) -> bytes:
    """The .npy bytes of `array`, identical to upstream's `np.save(..., allow_pickle=False)`.

    Contiguous arrays are written as header + one copy of their memory (0.03 ms for a 640x480 frame, np.save
    2 ms); anything else goes through np.save.
    """
    buffer = io.BytesIO()
    if (array.flags.c_contiguous or array.flags.f_contiguous) and not array.dtype.hasobject:
        try:
            np.lib.format.write_array_header_1_0(buffer, np.lib.format.header_data_from_array_1_0(array))
            memory = array if array.flags.c_contiguous else array.T  # an F-ordered array's transpose is C-ordered
            return b"".join((buffer.getvalue(), memory.data))
        except ValueError:  # header too long for format 1.0 (huge structured dtypes): np.save picks 2.0
            buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)  # raises on object arrays
    return buffer.getvalue()


def npy_to_array(data: bytes) -> np.ndarray:
    """Decode .npy bytes without pickle, checking the declared size against the payload before allocating."""
    if not isinstance(data, bytes):
        raise ProtocolError(f"ndarray 'as_npy' must be bytes, got {type(data).__name__}")
    fp = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise ProtocolError(f"unsupported .npy version {version}; expected (1, 0) or (2, 0)")
    except ProtocolError:
        raise
    except Exception as e:
        raise ProtocolError(f"invalid .npy header: {e}") from None
    return _array(data, fp.tell(), dtype, shape, "F" if fortran_order else "C")


def _array(data: bytes, offset: int, dtype: np.dtype, shape: tuple[int, ...], order: str = "C") -> np.ndarray:
    """An array of its own from `data[offset:]`, once the declared dtype and shape are checked against its size."""
    if dtype.hasobject:
        raise ProtocolError(f"object arrays are not allowed (dtype {dtype})")
    count = math.prod(shape)
    payload = len(data) - offset
    if count * dtype.itemsize != payload:
        raise ProtocolError(f"array {tuple(shape)} {dtype} needs {count * dtype.itemsize} bytes, got {payload}")
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return flat.reshape(shape, order=order).copy(order="K")


def _field(entry: dict, name: str) -> Any:
    """`entry[name]` under a str or a bytes key (msgpack-numpy writes bytes keys)."""
    return entry[name] if name in entry else entry.get(name.encode())


def _plain_dtype(text: Any) -> np.dtype:
    """A msgpack-numpy array's dtype: a plain one named by its string (e.g. "<f4"), never object or structured."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    if not isinstance(text, str):
        raise ProtocolError(f"msgpack-numpy 'type' must be a dtype string such as '<f4', got {type(text).__name__}")
    try:
        dtype = np.dtype(text)
    except (TypeError, ValueError) as e:
        raise ProtocolError(bounded(f"msgpack-numpy 'type' {text!r} is not a numpy dtype ({e})")) from None
    if dtype.hasobject or dtype.kind == "V":
        raise ProtocolError(f"msgpack-numpy arrays of dtype {dtype} are refused (object arrays are pickled, "
                            "structured ones are no observation)")
    return dtype


def msgpack_numpy_to_array(entry: dict) -> np.ndarray | np.generic:
    """Decode one msgpack-numpy entry (`nd` true: an array; false: a numpy scalar) without pickle."""
    kind = _field(entry, "kind")
    if kind not in (None, b"", ""):
        raise ProtocolError(bounded(f"msgpack-numpy arrays of kind {kind!r} are refused (kind 'O' is a pickled "
                                    "object array)"))
    dtype, data = _plain_dtype(_field(entry, "type")), _field(entry, "data")
    if not isinstance(data, bytes):
        raise ProtocolError(f"msgpack-numpy 'data' must be bytes, got {type(data).__name__}")
    if not _field(entry, "nd"):
        return _array(data, 0, dtype, ())[()]
    shape = _field(entry, "shape")
    if (not isinstance(shape, (list, tuple)) or len(shape) > MAX_ARRAY_DIMS
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
        raise ProtocolError(bounded(f"msgpack-numpy 'shape' must be a list of at most {MAX_ARRAY_DIMS} sizes >= 0, "
                                    f"got {shape!r}"))
    return _array(data, 0, dtype, tuple(shape))


def array_to_msgpack_numpy(array: np.ndarray | np.generic) -> dict[bytes, Any]:
    """An array (or numpy scalar) as msgpack-numpy 0.4.8 writes it, bytes keys and all (its decoder looks for
    those)."""
    array = np.asarray(array)
    if array.dtype.hasobject or array.dtype.kind == "V":
        raise TypeError(f"cannot send an array of dtype {array.dtype} (object or structured)")
    data = np.ascontiguousarray(array).tobytes()
    return {b"nd": True, b"type": array.dtype.str, b"kind": b"", b"shape": list(array.shape), b"data": data}


# --- msgpack ----------------------------------------------------------------------------------------------------


def _encode_npy(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return {_NDARRAY: True, "as_npy": array_to_npy(obj)}
    if isinstance(obj, np.generic):  # numpy scalars travel as 0-d arrays
        return {_NDARRAY: True, "as_npy": array_to_npy(np.asarray(obj))}
    raise TypeError(f"cannot serialize {type(obj).__name__}")


def _encode_msgpack_numpy(obj: Any) -> Any:
    if isinstance(obj, (np.ndarray, np.generic)):
        return array_to_msgpack_numpy(obj)
    raise TypeError(f"cannot serialize {type(obj).__name__}")


_ENCODERS = {"npy": _encode_npy, "msgpack-numpy": _encode_msgpack_numpy}


def _decoder(seen: set[str] | None) -> Any:
    """msgpack's object hook: array and modality-config entries of every format; the array formats met go into
    `seen`."""

    met = set() if seen is None else seen

    def decode(obj: dict) -> Any:
        marker = next((m for m in MODALITY_CONFIG_MARKERS if m in obj or m.encode() in obj), None)
        if marker is not None:
            payload = _field(obj, "as_json")
            try:
                return json.loads(payload) if isinstance(payload, (str, bytes)) else dict(payload)
            except (TypeError, ValueError) as e:
                raise ProtocolError(f"invalid ModalityConfig entry: {e}") from None
        if _NDARRAY in obj:
            if "as_npy" not in obj:
                raise ProtocolError("ndarray entry without 'as_npy'")
            met.add("npy")
            return npy_to_array(obj["as_npy"])
        if b"nd" in obj or ("nd" in obj and "data" in obj):
            met.add("msgpack-numpy")
            return msgpack_numpy_to_array(obj)
        return obj

    return decode


# msgpack type byte -> (bytes of its length field, or of the value itself when `_FIXED`), for the variable ones
_SIZED = {0xc4: 1, 0xc5: 2, 0xc6: 4, 0xd9: 1, 0xda: 2, 0xdb: 4}  # bin8/16/32, str8/16/32: length, then payload
_FIXED = {0xc0: 0, 0xc2: 0, 0xc3: 0, 0xca: 4, 0xcb: 8, 0xcc: 1, 0xcd: 2, 0xce: 4, 0xcf: 8, 0xd0: 1, 0xd1: 2, 0xd2: 4,
          0xd3: 8}  # nil, false, true, float32/64, uint8-64, int8-64
_CONTAINERS = {0xdc: (2, 1), 0xdd: (4, 1), 0xde: (2, 2), 0xdf: (4, 2)}  # array16/32, map16/32: (length bytes, items)


def check_structure(data: bytes, max_objects: int = MAX_OBJECTS, max_containers: int = MAX_CONTAINERS) -> None:
    """Walk one msgpack message's headers without building any object, payloads skipped by their length:
    ProtocolError when it holds more than `max_objects` values or `max_containers` maps and lists, is cut short or
    uses ext types (never part of the protocol). Stops at the first bound exceeded: its cost is bounded by them, not
    by the message's size."""
    pos, remaining, objects, containers, size = 0, 1, 0, 0, len(data)
    while remaining:
        if pos >= size:
            raise ProtocolError(f"undecodable msgpack message: cut short ({remaining} more values declared)")
        byte = data[pos]
        pos += 1
        remaining -= 1
        objects += 1
        if byte <= 0x7f or byte >= 0xe0:  # positive / negative fixint
            continue
        if byte <= 0x9f:  # fixmap 0x80-0x8f, fixarray 0x90-0x9f
            count, items = byte & 0x0f, 2 if byte <= 0x8f else 1
        elif byte <= 0xbf:  # fixstr
            pos += byte & 0x1f
            count = None
        elif byte in _FIXED:
            pos += _FIXED[byte]
            count = None
        elif byte in _SIZED:
            width = _SIZED[byte]
            pos += width + int.from_bytes(data[pos:pos + width], "big")
            count = None
        elif byte in _CONTAINERS:
            width, items = _CONTAINERS[byte]
            count = int.from_bytes(data[pos:pos + width], "big")
            pos += width
        else:
            raise ProtocolError(f"undecodable msgpack message: type byte 0x{byte:02x} at offset {pos - 1} (ext types "
                                "are not part of the protocol)")
        if count is not None:
            containers += 1
            remaining += count * items
            if containers > max_containers:
                raise ProtocolError(f"message holds more than {max_containers} maps and lists; an observation has a "
                                    "few (its arrays travel as binary payloads)")
        if objects > max_objects:
            raise ProtocolError(f"message holds more than {max_objects} values; an observation has a few dozen (its "
                                "arrays travel as binary payloads)")
    if pos > size:
        raise ProtocolError(f"undecodable msgpack message: cut short ({pos - size} bytes of its last value missing)")
    if pos < size:
        raise ProtocolError(f"undecodable msgpack message: {size - pos} bytes after its end")


def request_token(data: bytes) -> str | None:
    """The `api_token` of a msgpack request, read without decoding anything else (the other values are skipped by
    msgpack's own parser); None when the message is no map or has no token, ProtocolError when the token is no
    string. Call after `check_structure`."""
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=max(len(data), 1), max_str_len=MAX_STR_BYTES,
                                max_map_len=MAX_MAP_KEYS, max_array_len=MAX_LIST_ITEMS, max_ext_len=0)
    unpacker.feed(data)
    try:
        for _ in range(unpacker.read_map_header()):
            if unpacker.unpack() == "api_token":
                token = unpacker.unpack()
                break
            unpacker.skip()
        else:
            return None
    except Exception:  # noqa: BLE001 - no map, or malformed: the full decode names what is wrong
        return None
    if not isinstance(token, str):
        raise ProtocolError(f"'api_token' must be a string, got {type(token).__name__}")
    return token


def pack(obj: Any, array_format: str = "npy") -> bytes:
    """msgpack-encode a message, numpy arrays as .npy entries (N1.5) or msgpack-numpy ones (`ARRAY_FORMATS`)."""
    return msgpack.packb(obj, default=_ENCODERS[array_format], use_bin_type=True)


def unpack(data: bytes, seen: set[str] | None = None, checked: bool = False) -> Any:
    """Decode a msgpack message within the size bounds, arrays in either format (the formats met are added to
    `seen`); anything malformed raises ProtocolError. `checked`: the caller has run `check_structure` on it."""
    if is_legacy(data):
        raise ProtocolError("the message is in the legacy torch.save format, not msgpack (legacy_format=True / "
                            "--policy_legacy_format talks to such a server)")
    if not checked:
        check_structure(data)
    try:
        return msgpack.unpackb(data, object_hook=_decoder(seen), raw=False, max_str_len=MAX_STR_BYTES,
                               max_map_len=MAX_MAP_KEYS, max_array_len=MAX_LIST_ITEMS, max_ext_len=0)
    except ProtocolError:
        raise
    except msgpack.StackError:
        raise ProtocolError("undecodable msgpack message: nested too deeply") from None
    except Exception as e:  # msgpack raises a zoo of types (ExtraData, FormatError, ValueError, ...)
        raise ProtocolError(bounded(f"undecodable msgpack message ({type(e).__name__}: {e})")) from None


def reply_format(seen: set[str]) -> str:
    """The array format to answer a request in: msgpack-numpy when it came so, else N1.5's .npy."""
    return "msgpack-numpy" if "msgpack-numpy" in seen else "npy"


def modality_config_to_wire(config: dict[str, Any]) -> dict[str, Any]:
    """Wrap each modality of a plain `get_modality_config()` dict as upstream's ModalityConfig entry.

    Upstream clients then get their `ModalityConfig` objects back; `unpack` turns the entries into plain dicts.
    """
    return {name: {_MODALITY_CONFIG: True, "as_json": json.dumps(cfg)} for name, cfg in config.items()}


# --- legacy torch.save --------------------------------------------------------------------------------------------


def _legacy_safe_globals() -> list:
    from numpy._core.multiarray import _reconstruct, scalar

    plain_dtypes = [type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDG"]
    # numpy 1.x pickles name numpy.core, numpy 2.x numpy._core: accept both spellings of the same functions.
    aliases = [(f, f"{module}.multiarray.{f.__name__}") for f in (_reconstruct, scalar) for module in ("numpy.core", "numpy._core")]
    return [*aliases, np.ndarray, np.dtype, *plain_dtypes]


def pack_legacy(obj: Any) -> bytes:
    """Encode a message in the legacy torch.save format (for old upstream peers)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def check_archive(data: bytes) -> None:
    """A legacy message must be a zip archive stored as torch.save writes it: uncompressed entries whose sizes add
    up to no more than the message, so decoding never expands it (a deflated entry could hold a memory bomb)."""
    try:
        entries = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise ProtocolError(f"legacy message is not a torch.save archive ({type(e).__name__}: {e})") from None
    if len(entries) > MAX_ARCHIVE_ENTRIES:
        raise ProtocolError(f"legacy archive has {len(entries)} entries, at most {MAX_ARCHIVE_ENTRIES} are accepted")
    compressed = [e.filename for e in entries if e.compress_type != zipfile.ZIP_STORED]
    if compressed:
        raise ProtocolError(f"legacy archive has compressed entries {bounded(str(compressed[:5]), 200)}; torch.save "
                            "stores them uncompressed, and compressed ones are refused (they could expand unbounded)")
    declared = sum(e.file_size for e in entries)
    if declared > len(data):
        raise ProtocolError(f"legacy archive declares {declared} bytes of content in a {len(data)}-byte message")


def unpack_legacy(data: bytes) -> Any:
    """Decode a legacy torch.save message with `weights_only=True` (no arbitrary objects are built)."""
    import torch

    if not is_legacy(data):
        raise ProtocolError("the message is msgpack, not the legacy torch.save format (drop legacy_format / "
                            "--policy_legacy_format for this server)")
    check_archive(data)
    message = _raising_reply_message(data)
    if message is not None:  # an error reply made for clients that do not read {"error": ...}
        return {"error": message}
    try:
        with torch.serialization.safe_globals(_legacy_safe_globals()):
            return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as e:
        # torch wraps the reason in advice paragraphs; keep the lines that state it
        advice = ("Weights only load failed", "Please file an issue", "Check the documentation")
        reason = " ".join(line.strip() for line in str(e).splitlines() if line.strip() and not line.startswith(advice))
        raise ProtocolError(bounded(f"rejected legacy torch.save message ({type(e).__name__}: {reason})")) from None


def is_legacy(data: bytes) -> bool:
    """Whether a raw message is in the legacy torch.save format."""
    return data[:4] == LEGACY_MAGIC


class _RaisingReply:
    """Unpickles as `operator.getitem({}, message)`: a KeyError carrying the message, raised inside the caller's
    `torch.load`. Legacy Isaac-GR00T clients (torch.save, June-Sept 2025) never look for an "error" key: they would
    fail later with `KeyError: 'action.single_arm'`; this way they fail at once, quoting the server's error."""

    def __init__(self, message: str):
        self.message = message

    def __reduce__(self):
        import operator

        return operator.getitem, ({}, self.message)


def _raising_reply_message(data: bytes) -> str | None:
    """The message of a `_RaisingReply` archive, read by parsing (never running) its pickle; None otherwise."""
    import pickletools

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            pickle_bytes = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
        ops = list(pickletools.genops(pickle_bytes))
    except Exception:  # noqa: BLE001 - not one of ours
        return None
    strings = [arg for _, arg, _ in ops if isinstance(arg, str)]
    if {"_operator", "getitem"} <= set(strings) or "_operator getitem" in strings:
        return next((text.removeprefix(ERROR_PREFIX) for text in strings if text.startswith(ERROR_PREFIX)), None)
    return None


def pack_legacy_error(message: str, error_map_ok: bool) -> bytes:
    """A legacy-format error reply: the plain `{"error": message}` map for clients that said they read it
    (`ERROR_MAP_FIELD` in the request, as gr00t-fast's client does), else one that raises in the client's
    `torch.load` with the message (see `_RaisingReply`)."""
    if error_map_ok:
        return pack_legacy({"error": message})
    return pack_legacy(_RaisingReply(ERROR_PREFIX + message))


def tcp_address(host: str, port: int) -> str:
    """ZeroMQ TCP address; port 0 means an ephemeral port (bind only); IPv6 hosts are bracketed."""
    host = f"[{host}]" if ":" in host else host
    return f"tcp://{host}:{port or '*'}"


# --- requests -----------------------------------------------------------------------------------------------------


def make_request(endpoint: str, data: dict[str, Any] | None = None, api_token: str | None = None,
                 error_map_ok: bool = False, timeout_ms: int | None = None) -> dict[str, Any]:
    """A request map as upstream clients send it (`data` and `api_token` only when given); `error_map_ok` adds the
    field that tells a gr00t-fast server this client reads `{"error": ...}` replies, `timeout_ms` how long the
    client waits (a gr00t-fast server drops the request unanswered past it; upstream servers ignore both)."""
    request: dict[str, Any] = {"endpoint": endpoint}
    if data is not None:
        request["data"] = data
    if api_token:
        request["api_token"] = api_token
    if error_map_ok:
        request[ERROR_MAP_FIELD] = True
    if timeout_ms is not None:
        request[TIMEOUT_FIELD] = timeout_ms
    return request


def validate_request(request: Any) -> tuple[str, dict[str, Any], str | None]:
    """Check a decoded request and return (endpoint, data, api_token).

    Like upstream, a missing endpoint means "get_action" and missing data an empty map.
    """
    if not isinstance(request, dict):
        raise ProtocolError(f"request must be a map, got {type(request).__name__}")
    endpoint = request.get("endpoint", "get_action")
    if not isinstance(endpoint, str):
        raise ProtocolError(f"'endpoint' must be a string, got {type(endpoint).__name__}")
    if endpoint not in ENDPOINTS:
        raise ProtocolError(f"unknown endpoint {endpoint!r}; expected one of {', '.join(ENDPOINTS)}")
    data = request.get("data")
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ProtocolError(f"'data' must be a map, got {type(data).__name__}")
    if not all(isinstance(key, str) for key in data):
        raise ProtocolError(f"'data' keys must be strings, got {sorted({type(k).__name__ for k in data})}")
    api_token = request.get("api_token")
    if api_token is not None and not isinstance(api_token, str):
        raise ProtocolError(f"'api_token' must be a string, got {type(api_token).__name__}")
    return endpoint, data, api_token


# --- real-time chunking -------------------------------------------------------------------------------------------


def rtc_to_wire(rtc: RtcRequest) -> dict[str, Any]:
    """The `RTC_FIELD` map of an `RtcRequest` (the prefix as a float32 array; unset fields left out)."""
    wire = {"mode": rtc.mode, "prefix": np.asarray(rtc.prefix, dtype=np.float32)}
    for name in (*RTC_INTS, *RTC_FLOATS):
        if (value := getattr(rtc, name)) is not None:
            wire[name] = value
    return wire


def rtc_from_wire(wire: Any) -> RtcRequest:
    """The `RtcRequest` of an `RTC_FIELD` map; ProtocolError for wrong types (shapes and values are checked by the
    policy against its chunk)."""
    if not isinstance(wire, dict):
        raise ProtocolError(f"'{RTC_FIELD}' must be a map, got {type(wire).__name__}")
    unknown = sorted(set(wire) - {"mode", "prefix", *RTC_INTS, *RTC_FLOATS}, key=str)
    if unknown:
        raise ProtocolError(bounded(f"'{RTC_FIELD}' has unknown fields {unknown}"))
    prefix = wire.get("prefix")
    if not isinstance(prefix, np.ndarray) or prefix.dtype.kind not in "fiu":
        raise ProtocolError(f"'{RTC_FIELD}.prefix' must be a numeric array, got {type(prefix).__name__}")
    if not isinstance(wire.get("mode"), str):
        raise ProtocolError(f"'{RTC_FIELD}.mode' must be a string, got {type(wire.get('mode')).__name__}")
    fields: dict[str, Any] = {}
    for name, types in [(n, (int,)) for n in RTC_INTS] + [(n, (int, float)) for n in RTC_FLOATS]:
        if name not in wire:
            continue
        value = wire[name]
        value = value.item() if isinstance(value, np.ndarray) and value.ndim == 0 else value
        if isinstance(value, bool) or not isinstance(value, types):
            kind = "an integer" if types == (int,) else "a number"
            raise ProtocolError(bounded(f"'{RTC_FIELD}.{name}' must be {kind}, got {value!r}"))
        fields[name] = value
    if "inference_delay" not in fields:
        raise ProtocolError(f"'{RTC_FIELD}' needs 'inference_delay'")
    from gr00t_fast.model.rtc import RtcRequest

    return RtcRequest(wire["mode"], prefix.astype(np.float32), **fields)
