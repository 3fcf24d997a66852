"""Serve a policy over the Isaac-GR00T ZeroMQ protocol (`server`), to many robots through Triton (`fleet_model`,
`triton`, `fleet_front`), the commands of both (`cli`), and the client side (`client`).

Names resolve on first use (`runtime.lazy`), so that `gr00t-fast serve --help` imports no torch."""

from gr00t_fast.runtime.lazy import lazy_names

_HOMES = {"PolicyClient": "client", "ServerError": "client", "ProtocolError": "protocol", "PolicyServer": "server"}
__all__ = sorted(_HOMES)

__getattr__ = lazy_names(__name__, _HOMES)
