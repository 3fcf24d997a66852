"""Gr00tPolicy: Isaac-format observation dict in, `action.<key>` arrays out, like Isaac-GR00T's Gr00tPolicy.

A call is processor -> backend -> decode: `Processor` turns the observation into `ModelInputs`, the backend runs
the network, the processor maps the normalized actions back to the robot's units.
"""

from collections import deque

import numpy as np
import torch

from gr00t_fast.backends.base import Backend, StageClock, backend_reason
from gr00t_fast.model.precision import Precision
from gr00t_fast.model.rtc import RTC_CHUNK_KEY, RtcRequest
from gr00t_fast.policy.base import batch_observations
from gr00t_fast.policy.data_config import DataConfig
from gr00t_fast.policy.processor import Processor
from gr00t_fast.runtime.threads import cpu_threads
from gr00t_fast.runtime.torch_thread import torch_thread, use_device


SUB_STAGES = ("backbone", "action_head")  # parts of "model", where the backend splits it


class Timings:
    """Per-call stage timings (ms) and rolling statistics over the last `window` calls."""

    def __init__(self, window: int = 100):
        self.history: deque[dict[str, float]] = deque(maxlen=window)

    def record(self, stages: dict[str, float]) -> None:
        self.history.append({**stages, "total": stages["preprocess"] + stages["model"] + stages["postprocess"]})

    def clear(self) -> None:
        self.history.clear()

    def summary(self) -> dict:
        """{"count", "last", "mean", "p50", "p90", "max"}; each statistic maps stage -> ms."""
        if not self.history:
            return {"count": 0}
        stages = list(self.history[-1])
        table = np.array([[row.get(s, np.nan) for s in stages] for row in self.history])
        stats = {"mean": np.nanmean(table, 0), "p50": np.nanpercentile(table, 50, axis=0),
                 "p90": np.nanpercentile(table, 90, axis=0), "max": np.nanmax(table, 0)}
        out = {"count": len(self.history), "last": dict(self.history[-1])}
        out.update({name: dict(zip(stages, map(float, values))) for name, values in stats.items()})
        return out

    def report(self) -> str:
        """`summary()` as a table: one row per stage, its p50 / p90 / max / last call in milliseconds."""
        s = self.summary()
        if not s["count"]:
            return "get_action: no call timed yet"
        lines = [f"get_action, the last {s['count']} calls (ms)   p50      p90      max     last"]
        for stage in s["last"]:
            label = f"  of which {stage}" if stage in SUB_STAGES else stage
            lines.append(f"  {label:<28}" + "".join(f"{s[stat][stage]:9.1f}" for stat in ("p50", "p90", "max", "last")))
        return "\n".join(lines)


class NonFiniteActionError(RuntimeError):
    """The model produced NaN/inf actions, or decoding them did: they are never returned."""


def check_steps(steps) -> int:
    """A denoising step count: an integer >= 1."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"denoising_steps must be an integer >= 1, received {steps!r}")
    return int(steps)


class Gr00tPolicy:
    """A loaded GR00T N1.5 model behind a backend, with the official pre/post-processing of one data config."""

    def __init__(self, processor: Processor, backend: Backend, *, denoising_steps: int | None = None, seed: int = 0):
        self.processor = processor
        self.backend = backend
        self.model = backend.model
        self.config = self.model.config
        self.device = self.model.device
        self.dtype = self.model.dtype
        self.denoising_steps = check_steps(self.config.num_inference_timesteps if denoising_steps is None
                                           else denoising_steps)
        # the sampler's noise is drawn on the host and copied over (16x32 floats): the same seed gives the same
        # noise on every device, and no CUDA generator (driver state a trace without a GPU cannot make) is needed
        self.generator = torch.Generator().manual_seed(seed)
        self._timings = Timings()

    @property
    def precision(self) -> Precision | None:
        """What the network runs in and why (`gr00t_fast.model.precision`), as it is now (another backend built on
        the same model may have given back its packed layers)."""
        return self.model.precision

    @property
    def data_config(self) -> DataConfig:
        return self.processor.config

    @property
    def embodiment_tag(self) -> str:
        return self.processor.embodiment_tag

    @property
    def video_resolution(self) -> dict[str, tuple[int, int]]:
        """Training (W, H) per camera of the data config, from metadata.json."""
        return self.processor.video_resolution

    @property
    def key_dims(self) -> dict[str, int]:
        """Width of every state and action key (from metadata.json)."""
        return self.processor.key_dims

    @property
    def action_horizon(self) -> int:
        return self.config.action_horizon

    @property
    def noise_shape(self) -> tuple[int, int]:
        return self.action_horizon, self.config.max_action_dim

    def supports_rtc(self) -> bool:
        """Real-time chunking needs a backend that runs the sampler step by step (`torch`)."""
        return self.backend.supports_rtc

    def get_modality_config(self) -> dict:
        """modality -> {"delta_indices": [...], "modality_keys": [...]} (plain, serializable)."""
        return self.data_config.modality_config(self.action_horizon)

    @property
    def timings(self) -> dict:
        """Stage timings in ms (preprocess, model, postprocess, total; backbone / action_head when the backend
        splits them): the last call and mean/p50/p90/max over the last 100 calls; and the precision they were
        measured in ({"dtype", "requested", "reason", ...}) and the backend ({"name", "reason"}, and "fallback" where
        it runs other kernels than its own: `Backend.fallback`)."""
        precision = {} if self.precision is None else {"precision": self.precision.as_dict()}
        threads = {"threads": cpu_threads.as_dict()} if self.device.type == "cpu" else {}
        backend = {"name": self.backend.name, "reason": backend_reason(self.backend.name),
                   **({"fallback": self.backend.fallback} if self.backend.fallback else {})}
        return {**self._timings.summary(), **precision, "backend": backend, **threads}

    def timing_report(self) -> str:
        """`timings` to read: the stages in ms (preprocess: observation -> model inputs; backbone and action_head
        when the backend splits the model; postprocess: decoding and clipping; total), the precision and, on a
        CPU, the threads the last call ran with."""
        lines = [self._timings.report(), f"  precision: {self.precision}",
                 f"  backend: {backend_reason(self.backend.name)}"
                 + (f"; {self.backend.fallback}" if self.backend.fallback else "")]
        if self.device.type == "cpu":
            t = cpu_threads.as_dict()
            lines.append(f"  threads: {t['mode']}, {t['usable_cpus']} usable CPUs, the last call ran with {t['last']}")
        return "\n".join(lines)

    def _noise(self, noise, batched: bool, batch: int) -> torch.Tensor:
        shape = (self.action_horizon, self.config.max_action_dim)
        want = (batch, *shape) if batched else shape
        if noise is None:
            return torch.randn((batch, *shape), generator=self.generator, dtype=torch.float32).to(self.device)
        if not isinstance(noise, (np.ndarray, torch.Tensor)) or tuple(noise.shape) != want:
            got = tuple(noise.shape) if hasattr(noise, "shape") else type(noise).__name__
            raise ValueError(f"noise: expected shape {want}, received {got}")
        noise = torch.as_tensor(noise).to(self.device, torch.float32)
        return noise if batched else noise.unsqueeze(0)

    @torch_thread
    def get_action(self, observation: dict, *, noise=None, denoising_steps: int | None = None,
                   rtc: RtcRequest | None = None) -> dict[str, np.ndarray]:
        """Actions for one observation (`action.<key>` float32 (horizon, D)) or a batch ((B, horizon, D)).

        `noise`: the sampler's initial sample, (horizon, max_action_dim) or (B, horizon, max_action_dim).
        `denoising_steps` overrides the policy default for this call.
        `rtc`: continue the previous chunk (real-time chunking, one observation); its prefix is in the normalized
        space of the `RTC_CHUNK_KEY` (horizon, action dims) array that such a call adds to the result.
        The call runs on the process's one torch thread (`gr00t_fast.runtime.torch_thread`), whichever thread makes
        it: the caller waits for it there.
        """
        if rtc is not None:
            rtc.check(self.action_horizon, self.processor.action_dim)
        # guided RTC runs its own VJP: autograd must be available (no_grad), which inference_mode forbids
        with torch.no_grad() if rtc is not None and rtc.mode == "guided" else torch.inference_mode():
            return self._get_action(observation, noise, denoising_steps, rtc)

    def _get_action(self, observation: dict, noise, denoising_steps: int | None,
                    rtc: RtcRequest | None) -> dict[str, np.ndarray]:
        steps = self.denoising_steps if denoising_steps is None else check_steps(denoising_steps)
        use_device(self.device)
        if self.device.type == "cpu":
            cpu_threads.adapt()  # the CPUs other work leaves now (`gr00t_fast.runtime.threads`)
        clock = StageClock(self.device)
        clock.mark()
        inputs = self.processor(observation)
        if rtc is not None and inputs.batched:
            raise ValueError("rtc continues one robot's chunk: send one unbatched observation")
        noise = self._noise(noise, inputs.batched, inputs.batch_size)
        clock.mark()
        pred = self.backend(inputs, noise, steps) if rtc is None else self.backend.rtc(inputs, noise, steps, rtc)
        clock.mark()
        pred = pred.to("cpu", torch.float32)  # the one device-to-host copy: the checks and decoding run on the host
        if not bool(torch.isfinite(pred).all()):
            raise NonFiniteActionError(f"the model produced non-finite actions (NaN/inf) for this observation with "
                                       f"backend {self.backend.name!r}; nothing is returned")
        actions = self.processor.decode(pred, inputs.batched)
        bad = [key for key, value in actions.items() if not np.isfinite(value).all()]
        if bad:  # finite normalized actions can still overflow float32 when scaled by the statistics
            raise NonFiniteActionError(f"decoding the model's actions with the checkpoint's statistics gave "
                                       f"non-finite values (NaN/inf) in {bad}; nothing is returned")
        if rtc is not None:
            actions[RTC_CHUNK_KEY] = pred[0, :, : self.processor.action_dim].numpy()
        clock.mark()
        preprocess, model, postprocess = clock.elapsed_ms()
        self._timings.record({"preprocess": preprocess, "model": model, **self.backend.stage_ms(),
                              "postprocess": postprocess})
        return actions

    def state_warning(self, observation: dict) -> str | None:
        """A warning when the observation's state lies far outside the checkpoint's statistics (units mismatch)."""
        return self.processor.state_warning(observation)

    def dummy_observation(self) -> dict:
        """A valid unbatched observation: black frames at the training resolution, mid-range state (identity
        rotations)."""
        obs: dict = {}
        for key, (width, height) in self.video_resolution.items():
            obs[key] = np.zeros((1, height, width, 3), dtype=np.uint8)
        for key in self.data_config.state_keys:
            obs[key] = self.processor.neutral_state(key)[None, :].copy()
        obs[self.data_config.language_key] = ["warm up"]
        return obs

    @torch_thread
    def warmup(self, iterations: int = 3, batch: bool = False) -> None:
        """Run real calls so that lazy initialisation (allocator, kernels, caches) is paid before the first action;
        `batch` (a server that takes batches): a batch of 2 too where the backend compiles anew for the first batch
        and that code serves every batch (`Backend.compiles_batches_once`), so the first batch served does not."""
        obs = self.dummy_observation()
        for _ in range(iterations):
            self.get_action(obs)
        if batch and self.processor.bounds.max_batch > 1 and self.backend.compiles_batches_once:
            self.get_action(batch_observations([obs, obs]))
        self._timings.clear()
