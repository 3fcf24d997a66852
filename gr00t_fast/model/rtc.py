"""Real-time chunking (Black et al., "Real-Time Execution of Action Chunking Flow Policies", 2025) on N1.5's sampler.

A new chunk is generated while the previous one is still executing: its first `inference_delay` (d) rows will be
in the past when it arrives, and the rows after them should continue the previous chunk's plan. The previous
chunk's not yet executed actions (normalized, row 0 = the new chunk's first timestep) are the prefix target Y.
Conventions as N1.5's sampler: tau = k/N, tau=0 is noise, tau=1 is data, Euler step x <- x + v/N.

- `guided` (the paper's method): x <- x + (v + w g)/N with g the VJP of x1_hat = x + (1 - tau) v with respect to
  x applied to W * (Y - x1_hat), W the `soft_mask`, w = min(beta, (1 - tau)/tau * (tau^2 + (1 - tau)^2)/(1 - tau)^2).
  Autograd runs for that VJP only (the caller runs under `no_grad`, never `inference_mode`).
- `guided-identity`: the same update with the Jacobian of x1_hat taken as the identity, g = W * (Y - x1_hat): no
  backward pass. A trained policy's denoised estimate hardly depends on x where it is confident (the VJP then shrinks
  the correction to a fraction of the gap: `benchmarks/history.md` measures it); this variant pulls x1_hat itself.
  It is what LeRobot's RTC computes (`RTCProcessor.denoise_step` evaluates v before x requires grad, so its
  autograd correction is W * (Y - x1_hat)).
- `freeze` (no backward): the rows the prefix covers start at Y, the others at the noise, and every row moves with
  a*v, a = `freeze_ramp`: 0 on the d frozen rows (they stay Y), rising (1 - e^{-r t})/(1 - e^{-r}) from 0 over the
  overlap (those rows travel from Y toward the new chunk), 1 after it (the plain sampler). No row keeps noise: a
  row starting at the noise moves with the full velocity.

All three drive `FlowMatchingActionHead.sample` through its `step` hook; with an all-zero mask they are the plain
sampler.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from gr00t_fast.model.action_head import key_padding_mask

RTC_MODES = ("guided", "guided-identity", "freeze")
GUIDED_MODES = ("guided", "guided-identity")  # the modes with a guidance weight (beta) and the soft mask W
RTC_CHUNK_KEY = "rtc.normalized_action"  # result key of an rtc call: the chunk (horizon, action dims), normalized
MAX_PREFIX_ABS = 10.0  # a prefix beyond this is not normalized actions (units mixed up), not something to pull to


@dataclass(frozen=True)
class RtcRequest:
    """What the sampler needs to continue the previous chunk.

    prefix: (P, A) normalized actions the previous chunk still plans (row 0 = the new chunk's first timestep),
        P <= horizon, A <= max_action_dim (the embodiment's action dims; the padding dims are not guided).
    inference_delay: d, actions executed while this call runs; the new chunk's first d rows are discarded.
    execution_horizon: s, guidance covers rows i < horizon - s; None: horizon - P (all the prefix).
    beta: the guidance weight's ceiling (the guided modes); ramp: r of the `freeze` velocity ramp.
    """

    mode: str
    prefix: np.ndarray | torch.Tensor
    inference_delay: int
    execution_horizon: int | None = None
    beta: float = 5.0
    ramp: float = 6.0

    def check(self, horizon: int, max_action_dim: int) -> None:
        """Raise ValueError (one line naming the problem) unless the request fits a (horizon, max_action_dim) chunk."""
        if self.mode not in RTC_MODES:
            raise ValueError(f"rtc mode must be one of {RTC_MODES}, got {self.mode!r}")
        shape = tuple(getattr(self.prefix, "shape", ()))
        if len(shape) != 2 or shape[0] > horizon or shape[1] > max_action_dim or shape[0] and not shape[1]:
            raise ValueError(f"rtc prefix: expected shape (P <= {horizon}, A <= {max_action_dim}) normalized actions, "
                             f"received {shape or type(self.prefix).__name__}")
        prefix = torch.as_tensor(self.prefix)
        if not bool(torch.isfinite(prefix).all()):
            raise ValueError("rtc prefix contains non-finite values (NaN/inf)")
        if prefix.numel() and float(prefix.abs().max()) > MAX_PREFIX_ABS:
            raise ValueError(f"rtc prefix is normalized actions (the model's lie in [-1, 1]); |values| up to "
                             f"{MAX_PREFIX_ABS:g} are accepted, got {float(prefix.abs().max()):.3g}")
        for name, value in (("inference_delay", self.inference_delay), ("execution_horizon", self.execution_horizon)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                      or not 0 <= value <= horizon):
                raise ValueError(f"rtc {name} must be an integer in [0, {horizon}], got {value!r}")
        for name, value in (("beta", self.beta), ("ramp", self.ramp)):
            if not isinstance(value, (int, float, np.number)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"rtc {name} must be a finite number > 0, got {value!r}")

    def guided_rows(self, horizon: int) -> int:
        """H - s: the rows the prefix constrains (never beyond the prefix)."""
        s = horizon - len(self.prefix) if self.execution_horizon is None else self.execution_horizon
        return min(horizon - s, len(self.prefix))


def soft_mask(horizon: int, delay: int, execution_horizon: int) -> torch.Tensor:
    """W (horizon,): 1 for i < d; c_i (e^{c_i} - 1)/(e - 1), c_i = (H - s - i)/(H - s - d + 1) for d <= i < H - s;
    0 for i >= H - s."""
    i = torch.arange(horizon, dtype=torch.float64)
    end = horizon - execution_horizon
    c = (end - i) / max(end - delay + 1, 1)
    decay = c * torch.expm1(c) / math.expm1(1.0)
    return torch.where(i < delay, 1.0, torch.where(i < end, decay, 0.0)).float()


def freeze_ramp(horizon: int, delay: int, overlap_end: int, rate: float) -> torch.Tensor:
    """a (horizon,): 0 for i < d, (1 - e^{-r t})/(1 - e^{-r}) with t = (i - d)/(end - d) for d <= i < end (0 at the
    first executed row: the switch is continuous), 1 for i >= end."""
    i = torch.arange(horizon, dtype=torch.float64)
    t = (i - delay) / max(overlap_end - delay, 1)
    ramp = -torch.expm1(-rate * t) / -math.expm1(-rate)
    return torch.where(i < delay, 0.0, torch.where(i < overlap_end, ramp, 1.0)).float()


def guidance_weight(tau: float, beta: float | torch.Tensor) -> float | torch.Tensor:
    """min(beta, (1 - tau)/tau * (tau^2 + (1 - tau)^2)/(1 - tau)^2); beta at tau = 0 (`beta` a number or per row)."""
    if tau <= 0.0:
        return beta
    ceiling = (tau**2 + (1 - tau) ** 2) / (tau * (1 - tau))
    return beta.clamp(max=ceiling) if isinstance(beta, torch.Tensor) else min(beta, ceiling)


def rtc_sample(action_head: torch.nn.Module, backbone_features: torch.Tensor, state: torch.Tensor, embodiment_id,
               noise: torch.Tensor, num_steps: int, rtc: RtcRequest | Sequence[RtcRequest | None],
               attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """`action_head.get_action` continuing the prefix of `rtc`: (B, horizon, max_action_dim) float32 (B = noise's
    batch). `rtc`: one request for every row, or one per row (None: that row samples as the plain sampler, exactly),
    guided and frozen rows mixed. `attention_mask`: the batch's padding, hidden from the action head (as
    `get_action`'s)."""
    batch, horizon, max_dim = noise.shape
    requests = [rtc] * batch if isinstance(rtc, RtcRequest) else list(rtc)
    if len(requests) != batch:
        raise ValueError(f"rtc: {len(requests)} requests for a batch of {batch} rows")
    # per row: the prefix target Y, the guidance mask W and ceiling beta (guided), 1 where the Jacobian is taken as
    # the identity (guided-identity), the velocity scale a and the rows that start at Y (freeze)
    target = torch.zeros(noise.shape, dtype=torch.float32)
    weights, scale, beta = torch.zeros_like(target), torch.ones_like(target), torch.zeros(batch, 1, 1)
    from_prefix = torch.zeros(noise.shape, dtype=torch.bool)
    identity = torch.zeros(batch, 1, 1)
    for row, request in enumerate(requests):
        if request is None:
            continue
        request.check(horizon, max_dim)
        prefix = torch.as_tensor(request.prefix, dtype=torch.float32)
        rows, dims = prefix.shape
        target[row, :rows, :dims] = prefix
        end, delay = request.guided_rows(horizon), min(request.inference_delay, rows)
        if request.mode == "freeze":
            scale[row, :, :dims] = freeze_ramp(horizon, delay, end, request.ramp)[:, None]
            from_prefix[row, :end, :dims] = True
        else:
            weights[row, :, :dims] = soft_mask(horizon, delay, horizon - end)[:, None]
            beta[row], identity[row] = request.beta, float(request.mode == "guided-identity")
    target, weights, scale, beta, identity, from_prefix = (
        t.to(noise.device) for t in (target, weights, scale, beta, identity, from_prefix))
    dtype = action_head.future_tokens.weight.dtype
    padding = key_padding_mask(attention_mask, dtype)
    vl = action_head.encode_vl(backbone_features.to(dtype), padding)
    start = torch.where(from_prefix, target, noise.float())
    dt = 1.0 / num_steps
    modes = {request.mode for request in requests if request is not None}
    guided, vjp = bool(modes & set(GUIDED_MODES)), "guided" in modes

    def step(x, s, velocity):
        if not guided:
            return x + dt * (scale * velocity(x, s))
        tau = s / num_steps
        if vjp:
            with torch.enable_grad():  # the VJP of the denoised estimate: autograd for this alone
                x_in = x.detach().requires_grad_(True)
                v = velocity(x_in, s)
                x1_hat = x_in + (1 - tau) * v
                error = weights * (target - x1_hat.detach())
                (g,) = torch.autograd.grad(x1_hat, x_in, error * (1 - identity))
            v = v.detach()
        else:
            v = velocity(x, s)
            error, g = weights * (target - (x + (1 - tau) * v)), 0.0
        g = g + identity * error
        return x + dt * (scale * (v + guidance_weight(tau, beta) * g))

    return action_head.sample(vl, state, embodiment_id, start, num_steps, step=step, padding=padding)
