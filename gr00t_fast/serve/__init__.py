"""Serve a policy over the Isaac-GR00T ZeroMQ protocol (`server`), to many robots through Triton (`fleet_model`,
`triton`, `fleet_front`), the commands of both (`cli`), and the client side (`client`)."""

from gr00t_fast.serve.client import PolicyClient, ServerError
from gr00t_fast.serve.protocol import ProtocolError
from gr00t_fast.serve.server import PolicyServer

__all__ = ["PolicyClient", "PolicyServer", "ProtocolError", "ServerError"]
