"""`FleetFront`: the Isaac-GR00T ZeroMQ protocol in front of the fleet's Triton model, so that existing robot clients
connect unchanged: `gr00t-fast serve`'s server (ROUTER, token, size and time limits) with many requests in flight,
each forwarded to Triton, which batches them."""

from __future__ import annotations

import threading
import warnings
from typing import Any

import numpy as np

from gr00t_fast.model.rtc import RTC_CHUNK_KEY
from gr00t_fast.policy.policy import Gr00tPolicy
from gr00t_fast.serve import protocol
from gr00t_fast.serve.fleet_model import ERROR, MODEL_NAME, ROBOT_ID, RTC, text_of
from gr00t_fast.serve.server import PolicyServer
from gr00t_fast.serve.triton import token_headers

__all__ = ["FleetFront", "triton_inputs"]


def triton_inputs(policy: Gr00tPolicy, observation: dict, robot: str) -> tuple[dict[str, np.ndarray], bool]:
    """A checked Isaac observation as Triton batch inputs (+ whether it was batched)."""
    batched, batch = policy.processor.check(observation)
    config = policy.data_config
    inputs = {key: np.ascontiguousarray(observation[key]).reshape(batch, *observation[key].shape[-4:])
              for key in config.video_keys}
    inputs.update({key: np.asarray(observation[key], np.float64).reshape(batch, 1, -1) for key in config.state_keys})
    texts = policy.processor.instructions(observation, batched, batch)
    inputs[config.language_key] = np.array([[t.encode()] for t in texts], dtype=object)
    inputs[ROBOT_ID] = np.full((batch, 1), robot.encode(), dtype=object)
    return inputs, batched


class FleetFront(PolicyServer):
    """`gr00t-fast serve`'s ZeroMQ server (ROUTER, token, size and time limits) forwarding every get_action to the
    Triton model, up to `concurrency` at once: Triton batches them."""

    def __init__(self, policy: Gr00tPolicy, triton_url: str, *, concurrency: int = 32, **server_options: Any):
        """`server_options`: `PolicyServer`'s; its `api_token` is also sent to Triton (see `start_triton`)."""
        self.clients: list = []  # all of them, closed with the server (also when it cannot bind)
        super().__init__(policy, concurrency=concurrency, **server_options)
        self.triton_url, self.headers = triton_url, token_headers(self.api_token, triton_url)
        self.local = threading.local()  # a pytriton ModelClient is not thread-safe: one per worker

    def infer(self, observation: dict[str, Any], robot: str) -> dict[str, np.ndarray]:
        from pytriton.client import ModelClient

        rtc = observation.pop(protocol.RTC_FIELD, None)
        inputs, batched = triton_inputs(self.policy, observation, robot)
        if rtc is not None:  # checked here (one line to the robot), carried to the batch as the protocol's map
            inputs[RTC] = np.array([[protocol.pack(protocol.rtc_to_wire(protocol.rtc_from_wire(rtc)))]], dtype=object)
        client = getattr(self.local, "client", None)
        if client is None:
            with warnings.catch_warnings():  # tritonclient.grpc applies the timeout to inference calls only: fine
                warnings.simplefilter("ignore")
                client = self.local.client = ModelClient(self.triton_url, MODEL_NAME,
                                                         inference_timeout_s=self.request_timeout_s)
            self.clients.append(client)
        result = client.infer_batch(**inputs, headers=self.headers)
        error = text_of(result.pop(ERROR))
        if error:
            raise ValueError(error)
        if rtc is None:
            result.pop(RTC_CHUNK_KEY)
        return result if batched else {key: value[0] for key, value in result.items()}

    def close(self, linger_ms: int = 0) -> None:
        super().close(linger_ms)
        for client in self.clients:
            client.close()
