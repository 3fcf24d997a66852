"""Serve a policy over the Isaac-GR00T ZeroMQ protocol, and talk to such servers."""

from gr00t_fast.serve.client import PolicyClient, ServerError
from gr00t_fast.serve.protocol import ProtocolError
from gr00t_fast.serve.server import PolicyServer

__all__ = ["PolicyClient", "PolicyServer", "ProtocolError", "ServerError"]
