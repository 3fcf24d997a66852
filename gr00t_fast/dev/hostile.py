"""Hostile ZeroMQ requests for the server's tests and benchmarks: messages whose decoding, not their size, is the
attack (`decode_bomb`)."""

from __future__ import annotations

import msgpack

__all__ = ["BOMB_KINDS", "decode_bomb"]

BOMB_KINDS = ("lists", "maps")
FANOUT = {"lists": 4096, "maps": 2048}  # items per container: within the protocol's per-list and per-map bounds


def decode_bomb(megabytes: float = 50, kind: str = "lists", api_token: str | None = None) -> bytes:
    """A get_action request of about `megabytes` MB whose observation value is a tree of empty containers: lists of
    4,096 lists of 4,096 empty lists (`kind` "lists"), or maps of 2,048 maps, each of 2,048 empty maps under distinct
    string keys ("maps"). Every container is within msgpack's per-container bounds; decoded, each empty one is a
    Python object of 56-64 bytes for its 1 byte on the wire."""
    if kind not in BOMB_KINDS:
        raise ValueError(f"kind must be one of {BOMB_KINDS}, got {kind!r}")
    packer, fanout = msgpack.Packer(), FANOUT[kind]
    if kind == "lists":
        leaf = packer.pack_array_header(fanout) + b"\x90" * fanout
        middle = packer.pack_array_header(fanout) + leaf * fanout
        header = packer.pack_array_header
    else:
        leaf = packer.pack_map_header(fanout) + b"".join(packer.pack(str(i)) + b"\x80" for i in range(fanout))
        middle = packer.pack_map_header(fanout) + b"".join(packer.pack(str(i)) + leaf for i in range(fanout))
        header = packer.pack_map_header
    count = max(1, round(megabytes * 1e6 / len(middle)))
    tree = header(count) + (middle * count if kind == "lists" else b"".join(packer.pack(str(i)) + middle
                                                                            for i in range(count)))
    request = {"endpoint": "get_action", **({"api_token": api_token} if api_token else {})}
    head = packer.pack_map_header(len(request) + 1) + b"".join(packer.pack(k) + packer.pack(v)
                                                              for k, v in request.items())
    return head + packer.pack("data") + packer.pack_map_header(1) + packer.pack("video.webcam") + tree
