"""Launching Triton Inference Server (through PyTriton, which ships the server binary) for a `FleetModel`: its
configuration (ports, dynamic batching, the access token), the interpreter environment its Python backend needs,
and the checks made before a model loads."""

from __future__ import annotations

import os
import socket
import sysconfig

from gr00t_fast.serve.fleet_model import MODEL_NAME, FleetModel, infer_function, triton_tensors

__all__ = ["check_ports_free", "free_port", "start_triton", "token_headers", "triton_environment"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now (Triton takes fixed ports: tests and benchmarks pick them this way)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def triton_environment() -> None:
    """Triton's Python backend stub links libpython: point it at this interpreter's (a pyenv or venv Python would
    otherwise pick up the system one and fail with "'_thread.RLock' object has no attribute '_recursion_count'")."""
    libdir = sysconfig.get_config_var("LIBDIR")
    paths = os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep)
    if libdir and libdir not in paths:
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join([libdir, *filter(None, paths)])


def token_headers(api_token: str | None, url: str) -> dict[str, str] | None:
    """The headers a Triton request to `url` carries when the fleet server was started with `api_token`
    (HTTP: `triton-access-token`; gRPC: `triton-grpc-protocol-triton-access-token`)."""
    from pytriton.client.auth import create_auth_headers

    return None if api_token is None else create_auth_headers(api_token, url.split(":", 1)[0])


def start_triton(fleet: FleetModel, *, max_batch: int = 16, max_queue_delay_ms: float = 5.0,
                 host: str = "127.0.0.1", grpc_port: int = 8001, http_port: int = 8000, metrics_port: int = 8002,
                 api_token: str | None = None):
    """Start Triton serving `fleet` as model `MODEL_NAME` (returns the running `pytriton.triton.Triton`). With
    `api_token`, inference (and PyTriton's protected endpoints) need it in a header (`token_headers`)."""
    from pytriton.model_config import DynamicBatcher, ModelConfig
    from pytriton.triton import DEFAULT_PROTECTED_ENDPOINTS, Triton, TritonConfig, TritonSecurityConfig

    triton_environment()
    inputs, outputs = triton_tensors(fleet.policy)
    security = None if api_token is None else TritonSecurityConfig(
        access_token=api_token, restricted_endpoints=[*DEFAULT_PROTECTED_ENDPOINTS, "inference"])
    triton = Triton(config=TritonConfig(grpc_address=host, grpc_port=grpc_port, http_address=host,
                                        http_port=http_port, metrics_address=host, metrics_port=metrics_port),
                    security_config=security)
    batcher = DynamicBatcher(max_queue_delay_microseconds=int(max_queue_delay_ms * 1000))
    triton.bind(MODEL_NAME, infer_function(fleet), inputs, outputs,
                config=ModelConfig(max_batch_size=max_batch, batcher=batcher), strict=False)
    triton.run()
    return triton


def check_ports_free(host: str, ports: list[int]) -> None:
    """OSError (one line) when one of Triton's ports is taken: said before the model loads, not after."""
    for port in ports:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            try:
                probe.bind((host, port))
            except OSError as e:
                raise OSError(f"cannot bind Triton to {host}:{port}: {e.strerror}") from None
