"""`Policy`: the one contract between whatever computes actions and whatever uses them.

`Gr00tPolicy` (in-process), `PolicyClient` (a ZeroMQ server, the fleet's front included) implement it; the control
loop, the servers and the LeRobot plugin depend on it alone. Every call runs on the torch thread for in-process
policies (`gr00t_fast.runtime.torch_thread`), whichever thread makes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from gr00t_fast.policy.data_config import DataConfig

if TYPE_CHECKING:  # the contract names the model's RTC request; its users need not import torch
    from gr00t_fast.model.rtc import RtcRequest

__all__ = ["Policy", "batch_observations"]


@runtime_checkable
class Policy(Protocol):
    @property
    def action_horizon(self) -> int:
        """Actions in one chunk."""

    @property
    def data_config(self) -> DataConfig:
        """The observation keys it reads and the action keys it writes."""

    @property
    def video_resolution(self) -> dict[str, tuple[int, int]] | None:
        """Training (width, height) per video key, or None where unknown (a server resizes frames itself)."""

    @property
    def key_dims(self) -> dict[str, int] | None:
        """Width of each state and action key, or None where unknown (a server)."""

    def get_action(self, observation: dict[str, Any], *, noise: Any = None, denoising_steps: int | None = None,
                   rtc: RtcRequest | None = None) -> dict[str, np.ndarray]:
        """`action.<key>` arrays for an Isaac-GR00T observation dict; `rtc` continues the previous chunk."""

    def get_modality_config(self) -> dict[str, Any]:
        """The observation and action keys in Isaac-GR00T's `get_modality_config` form."""

    @property
    def noise_shape(self) -> tuple[int, int] | None:
        """(horizon, action dim) of the sampler's initial noise `get_action(noise=...)` takes per observation, or
        None where the policy draws its own (a server)."""

    def supports_rtc(self) -> bool:
        """Whether `get_action` takes `rtc` (real-time chunking)."""

    def state_warning(self, observation: dict[str, Any]) -> str | None:
        """A warning when the observation's state lies far outside what the policy was trained on, else None."""


def batch_observations(observations: list[dict]) -> dict[str, Any]:
    """Unbatched observations (T=1 each) as one batched observation (B, T, ...), instructions a list of B: what
    `get_action` takes for B robots at once."""
    first = observations[0]
    return {key: [o[key][0] for o in observations] if isinstance(first[key], list) else
            np.stack([o[key] for o in observations]) for key in first}
