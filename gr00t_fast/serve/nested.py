"""Isaac-GR00T N1.6/N1.7's request shape on the same ZeroMQ + msgpack transport, answered by an N1.5 model.

NVIDIA's current `PolicyClient` (`gr00t/policy/server_client.py` on Isaac-GR00T main) sends get_action as
`{"observation": {"video": {camera: uint8 (B, T, H, W, 3)}, "state": {key: float32 (B, T, D)},
"language": {key: [[str]] (B, 1)}}, "options": map or None}` (its server calls `handler(**data)`), expects
`[action, info]` back with `action = {key: float32 (B, T, D)}` (keys without the `action.` prefix), and adds a
`reset` endpoint (`{"options": ...}` -> info map). The N1.5 policy takes Isaac-GR00T N1.5's flat keys
(`video.<camera>`, `state.<key>`, the data config's language key) and returns `action.<key>`: `flat_observation`
and `nested_reply` map between the two through the served data config. A key given with its modality prefix (as
an N1.6 client builds from this server's N1.5 `get_modality_config`, whose keys carry it) is taken as it is.
"""

from __future__ import annotations

from typing import Any, Callable

from gr00t_fast.serve.protocol import ProtocolError, bounded

REQUEST_FIELDS = frozenset({"observation", "options"})
MODALITIES = ("video", "state", "language")


def is_nested(data: dict[str, Any]) -> bool:
    """Whether a get_action `data` map is an N1.6/N1.7 request (`observation` + `options`), not N1.5's flat
    observation."""
    return "observation" in data and set(data) <= REQUEST_FIELDS


def _flat_key(modality: str, key: str, expected: tuple[str, ...]) -> str:
    flat = key if key.startswith(f"{modality}.") else f"{modality}.{key}"
    if flat not in expected:
        names = ", ".join(k.removeprefix(f"{modality}.") for k in expected)
        raise ProtocolError(bounded(f"observation.{modality} has {key!r}; this N1.5 model takes {names}"))
    return flat


def _instructions(language: dict[str, Any]) -> list[str]:
    """N1.6's language map (one key, (B, 1) nested lists of str) -> B instructions."""
    if len(language) != 1:
        raise ProtocolError(bounded(f"observation.language must hold one instruction key, got {sorted(language)}"))
    (rows,) = language.values()
    if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) == 1 and isinstance(r[0], str)
                                             for r in rows):
        raise ProtocolError("observation.language: expected (B, 1) nested lists of strings, e.g. [['pick it up']]")
    return [row[0] for row in rows]


def flat_observation(data: dict[str, Any], data_config: Any) -> dict[str, Any]:
    """The N1.5 (batched) observation of an N1.6/N1.7 get_action request, in `data_config`'s keys."""
    observation = data["observation"]
    if not isinstance(observation, dict) or set(observation) != set(MODALITIES):
        got = sorted(observation) if isinstance(observation, dict) else type(observation).__name__
        raise ProtocolError(bounded(f"'observation' must be a map of {list(MODALITIES)}, got {got}"))
    for modality in MODALITIES:
        if not isinstance(observation[modality], dict):
            raise ProtocolError(f"observation.{modality} must be a map, got {type(observation[modality]).__name__}")
    flat: dict[str, Any] = {}
    for modality, expected in (("video", data_config.video_keys), ("state", data_config.state_keys)):
        for key, value in observation[modality].items():
            flat[_flat_key(modality, key, tuple(expected))] = value
    flat[data_config.language_key] = _instructions(observation["language"])
    return flat


def nested_reply(actions: dict[str, Any]) -> list[dict[str, Any]]:
    """N1.5's `action.<key>` (B, T, D) arrays -> N1.6's `[action, info]` (keys without the prefix)."""
    return [{key.removeprefix("action."): value for key, value in actions.items() if key.startswith("action.")}, {}]


def nested_encoder(encode: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    """`encode` for the reply of an N1.6/N1.7 get_action request."""
    return lambda actions: encode(nested_reply(actions))


__all__ = ["flat_observation", "is_nested", "nested_encoder", "nested_reply"]
