"""Client for any server speaking the Isaac-GR00T ZeroMQ protocol (gr00t-fast's or upstream's).

`PolicyClient` is policy-shaped (`get_action(obs) -> dict`, `get_modality_config()`), so code written against an
in-process policy drives a remote one unchanged. Unlike upstream's client, its timeout is real: a request without
a reply in `timeout_ms` raises TimeoutError and the REQ socket is replaced so that the next call works.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np
import zmq

from gr00t_fast.model.rtc import RTC_CHUNK_KEY, RtcRequest
from gr00t_fast.policy.data_config import DataConfig, from_modality_config
from gr00t_fast.serve import protocol


class ServerError(RuntimeError):
    """The server answered `{"error": ...}`."""


class PolicyClient:
    """A policy served over the Isaac-GR00T ZeroMQ protocol (`gr00t-fast serve`, `fleet serve`, NVIDIA's server), as
    a `gr00t_fast.policy.Policy`: its keys and chunk length come from the server's `get_modality_config`, asked once.
    """

    video_resolution = None  # the server resizes frames to its training resolution itself
    key_dims = None  # and checks the widths of the state keys

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 5555,
        timeout_ms: int = 15000,
        api_token: str | None = None,
        legacy_format: bool = False,
        robot_id: str | None = None,
        array_format: str = "npy",
    ):
        """`robot_id` names this robot in every get_action (a fleet server's log and per-robot request counts;
        without one the server goes by the connection, which a reconnect after a timeout changes). `array_format`:
        how msgpack carries arrays, "npy" (Isaac-GR00T N1.5's `inference_service.py`, the default) or
        "msgpack-numpy" (Isaac-GR00T main since May 2026); replies are read in either."""
        if array_format not in protocol.ARRAY_FORMATS:
            raise ValueError(f"array_format must be one of {protocol.ARRAY_FORMATS}, got {array_format!r}")
        self.array_format = array_format
        self.robot_id = robot_id
        self.address = protocol.tcp_address(host, port)
        self.timeout_ms = timeout_ms
        self.api_token = api_token
        self.legacy_format = legacy_format
        self.context = zmq.Context.instance()
        self.socket = self._connect()

    def _connect(self) -> zmq.Socket:
        socket = self.context.socket(zmq.REQ)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVTIMEO, self.timeout_ms)
        socket.setsockopt(zmq.SNDTIMEO, self.timeout_ms)
        socket.setsockopt(zmq.IPV6, int(self.address.startswith("tcp://[")))
        socket.connect(self.address)
        return socket

    def _reset(self) -> None:
        self.socket.close(linger=0)
        self.socket = self._connect()

    def call(self, endpoint: str, data: dict[str, Any] | None = None) -> Any:
        """Send one request and return the decoded reply; ServerError on an error reply, TimeoutError on none."""
        request = protocol.make_request(endpoint, data, self.api_token, error_map_ok=self.legacy_format,
                                        timeout_ms=self.timeout_ms)
        if self.robot_id is not None:
            request["robot_id"] = self.robot_id
        message = protocol.pack_legacy(request) if self.legacy_format else protocol.pack(request, self.array_format)
        try:
            self.socket.send(message)
            reply = self.socket.recv()
        except zmq.Again:
            self._reset()
            raise TimeoutError(f"no reply from {self.address} to {endpoint!r} within {self.timeout_ms} ms") from None
        except BaseException:  # a REQ socket interrupted between send and recv is stuck: replace it
            self._reset()
            raise
        response = protocol.unpack_legacy(reply) if self.legacy_format else protocol.unpack(reply)
        if isinstance(response, dict) and "error" in response:
            raise ServerError(f"Server error: {response['error']}")
        return response

    def ping(self) -> bool:
        """True when the server answers, False when it does not within the timeout (ServerError if it refuses)."""
        try:
            self.call("ping")
        except TimeoutError:
            return False
        return True

    @cached_property
    def data_config(self) -> DataConfig:
        return from_modality_config("remote", self.get_modality_config())

    @cached_property
    def action_horizon(self) -> int:
        return len(self.get_modality_config()["action"]["delta_indices"])

    noise_shape = None  # the server draws its own noise: the protocol carries none

    def supports_rtc(self) -> bool:
        """Real-time chunking travels in the msgpack format (a gr00t-fast server answers it; others refuse)."""
        return not self.legacy_format

    def state_warning(self, observation: dict[str, Any]) -> None:
        """The server, which knows the statistics, refuses a state far outside them."""
        return None

    def get_action(self, observation: dict[str, Any], *, noise: Any = None, denoising_steps: int | None = None,
                   rtc: RtcRequest | None = None) -> dict[str, np.ndarray]:
        """The server's actions; a reply that is not a map of finite arrays is an error, never an action.

        `rtc` (an `RtcRequest`) travels with the observation to a gr00t-fast server (real-time chunking). `noise`
        and `denoising_steps` are the server's to choose: the protocol carries neither."""
        if noise is not None or denoising_steps is not None:
            raise ValueError("noise and denoising_steps are not sent to a policy server (start it with "
                             "--denoising_steps instead)")
        if rtc is not None:
            if self.legacy_format:
                raise ValueError("rtc needs a gr00t-fast server in the msgpack format, not legacy_format")
            observation = {**observation, protocol.RTC_FIELD: protocol.rtc_to_wire(rtc)}
        action = self.call("get_action", observation)
        if not isinstance(action, dict):
            raise protocol.ProtocolError(f"get_action reply must be a map, got {type(action).__name__}")
        bad = [key for key, value in action.items()
               if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu" or not np.isfinite(value).all()]
        if bad:
            raise ServerError(f"get_action reply has non-numeric or non-finite actions in {sorted(bad)[:8]}")
        if rtc is not None and RTC_CHUNK_KEY not in action:
            raise ServerError(f"the server ignored rtc (its reply has no {RTC_CHUNK_KEY!r}): it is not a "
                              "gr00t-fast server with real-time chunking")
        return action

    def get_modality_config(self) -> dict[str, Any]:
        return self.call("get_modality_config")

    def kill_server(self) -> None:
        self.call("kill")

    def close(self) -> None:
        self.socket.close(linger=0)

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
