"""The fleet's Triton model: one policy for many robots, with Triton's dynamic batching (`gr00t-fast fleet serve`;
its launch is `serve/triton.py`, its ZeroMQ front `serve/fleet_front.py`, its command line `serve/cli.py`).

Triton (through PyTriton, which ships the server binary) queues the requests of every robot and hands the model
up to `--max_batch` of them at once, waiting at most `--max_queue_delay_ms` for more. `FleetModel` preprocesses
each request on its own (a malformed one gets its own error, the others still run), collates them into one batch
(prompts left-padded, the padding hidden from the action head: every row gets its unbatched actions), runs the
backend once and splits the actions. Real-time chunking runs per row: each request brings its own prefix and
delay (the ZeroMQ protocol's `rtc` map), guided, frozen and plain rows share the batch. The server keeps no
per-robot state that actions depend on: only the robot knows how much of its last chunk it has executed, so it
sends the rest as the prefix (the `rtc.normalized_action` output of its previous call, less the rows executed
since), and any replica can answer any request. A request's robot id names the robot in the log and in
`FleetModel.robots` (requests answered per robot).

Two ways in: Triton's own gRPC/HTTP endpoint (`tritonclient`, any language; inputs named like the observation
keys), and the Isaac-GR00T ZeroMQ protocol of `gr00t-fast serve` (`FleetFront`: the same ROUTER server, token and
limits, with many requests in flight, each forwarded to Triton), so existing robot clients connect unchanged.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from typing import Any

import numpy as np
import torch

from gr00t_fast.backends import BACKENDS, without_rtc
from gr00t_fast.model.inputs import ModelInputs, collate
from gr00t_fast.model.rtc import RTC_CHUNK_KEY, RtcRequest
from gr00t_fast.policy.policy import Gr00tPolicy
from gr00t_fast.runtime.torch_thread import torch_thread
from gr00t_fast.serve import protocol
from gr00t_fast.serve.server import bounded_stack

__all__ = ["ERROR", "GRAPH_BUCKETS", "MODEL_NAME", "NOISE", "ROBOT_ID", "RTC", "FleetModel", "infer_function",
           "request_observation", "request_rtc", "text_of", "triton_tensors"]

log = logging.getLogger("gr00t_fast.fleet")

MODEL_NAME = "gr00t"
ROBOT_ID = "robot_id"  # optional BYTES input: who asked (the log, `FleetModel.robots`); no state is kept under it
NOISE = "noise"  # optional FP32 input (horizon, max_action_dim): the sampler's initial sample (tests, replays)
RTC = "rtc"  # optional BYTES input: real-time chunking's request, msgpack of the ZeroMQ protocol's `rtc` map
ERROR = "error"  # BYTES output: empty, or why this request got no actions
MAX_ROBOTS = 4096  # robots counted in `FleetModel.robots` (least recently seen forgotten first)
# a backend compiling a graph per input shape (`Backend.prompt_step` > 1; cuda-graph captures one per bucket): batches
GRAPH_BUCKETS = (1, 2, 4, 8, 16, 32)  # padded up to one of these row counts ...
GRAPH_PROMPT_STEP = 64  # ... and prompts to a multiple of this many tokens, so that few graphs get compiled


class FleetModel:
    """Runs several requests (each one observation, batched or not) as one batch of the policy's backend."""

    def __init__(self, policy: Gr00tPolicy, noise: np.ndarray | None = None,
                 buckets: tuple[int, ...] | None = None, prompt_step: int = GRAPH_PROMPT_STEP):
        """`noise`: one fixed initial sample (horizon, max_action_dim) for every row without its own (tests and
        benchmarks, like `FixedNoisePolicy`); None draws it from the policy's generator. `buckets`: row counts a
        batch is padded up to (repeating its last row; with prompts padded to a multiple of `prompt_step`), by
        default `GRAPH_BUCKETS` for a backend that compiles a graph per input shape (`Backend.prompt_step` > 1),
        none otherwise. A backend that cannot batch prompts of different lengths (`Backend.isolates_padding`) is
        refused, naming those of the registry that can."""
        backend = policy.backend
        if not backend.isolates_padding:
            able = ", ".join(name for name, cls in BACKENDS.items() if cls.isolates_padding)
            raise ValueError(f"fleet serving batches prompts of different lengths, which backend {backend.name!r} "
                             f"cannot isolate; use one of: {able}")
        self.policy = policy
        # every backend compiling per input shape, not cuda-graph alone: compile (static shapes) compiles again for
        # each new row count and prompt length (a minute or more with Inductor) and fails past
        # `backends.compiled.MAX_COMPILED_SHAPES` of them, which Triton's 1..max_batch rows times the prompt lengths
        # would pass; the buckets bound both to a few shapes, at the price of computing the padding rows
        self.buckets = (GRAPH_BUCKETS if backend.prompt_step > 1 else ()) if buckets is None else buckets
        self.prompt_step = prompt_step
        self.noise = None if noise is None else torch.as_tensor(np.asarray(noise, np.float32))
        self.pad_id = policy.processor.tokenizer.pad_id
        self.robots: OrderedDict[str, int] = OrderedDict()  # robot id -> requests answered with actions
        self.batch_rows: Counter[int] = Counter()  # rows per model call -> how many calls

    def _answered(self, robot: str) -> None:
        self.robots[robot] = self.robots.pop(robot, 0) + 1  # most recently seen last
        while len(self.robots) > MAX_ROBOTS:
            self.robots.popitem(last=False)

    def _noise(self, noise: Any, inputs: ModelInputs) -> torch.Tensor:
        if noise is None and self.noise is not None:
            noise = self.noise.expand(inputs.batch_size, -1, -1) if inputs.batched else self.noise
        return self.policy._noise(noise, inputs.batched, inputs.batch_size)

    def collate(self, parts: list[ModelInputs], noise: torch.Tensor) -> tuple[ModelInputs, torch.Tensor]:
        """One batch of `parts`, padded to the next bucket (its last row repeated) when buckets are set."""
        rows = noise.shape[0]
        target = next((b for b in self.buckets if b >= rows), rows)
        if target == rows:
            return collate(parts, self.pad_id), noise
        length = max(p.input_ids.shape[1] for p in parts)
        batch = collate(parts, self.pad_id, -(-length // self.prompt_step) * self.prompt_step)
        fill, views = target - rows, batch.pixel_values.shape[0] // rows

        def grow(t: torch.Tensor, last: int = 1) -> torch.Tensor:
            return torch.cat([t, t[-last:].repeat(fill, *[1] * (t.dim() - 1))])

        mask = torch.ones_like(batch.input_ids) if batch.attention_mask is None else batch.attention_mask
        embodiment = batch.embodiment_id if isinstance(batch.embodiment_id, int) else grow(batch.embodiment_id)
        return (ModelInputs(grow(batch.input_ids), grow(mask), grow(batch.pixel_values, views), grow(batch.state),
                            embodiment, batched=True, isolate_padding=True), grow(noise))

    @torch_thread
    def __call__(self, observations: list[Any], noises: list[Any], robots: list[str | None],
                 rtcs: list[RtcRequest | Exception | None] | None = None) -> list[dict | str]:
        """Per request: its actions (as `Gr00tPolicy.get_action` returns them, with `RTC_CHUNK_KEY` for an rtc
        request), or a one-line error. `rtcs`: per request, real-time chunking's request (one observation) or None."""
        rtcs = [None] * len(observations) if rtcs is None else rtcs
        guided = any(isinstance(rtc, RtcRequest) and rtc.mode == "guided" for rtc in rtcs)
        with torch.no_grad() if guided else torch.inference_mode():  # guided RTC runs a VJP: no inference_mode
            return self._run(observations, noises, robots, rtcs)

    def _prepare(self, observation: Any, noise: Any, rtc: RtcRequest | Exception | None) -> tuple:
        """(inputs, noise, per-row rtc requests) of one request; raises what is wrong with it."""
        for problem in (observation, rtc):
            if isinstance(problem, Exception):
                raise problem
        inputs = self.policy.processor(observation)
        if rtc is not None:
            if not self.policy.backend.supports_rtc:
                raise ValueError(without_rtc(self.policy.backend.name))
            if inputs.batch_size != 1:
                raise ValueError(f"rtc continues one robot's chunk: send one observation, not a batch of "
                                 f"{inputs.batch_size}")
            rtc.check(self.policy.action_horizon, self.policy.processor.action_dim)
        return inputs, self._noise(noise, inputs), [rtc] * inputs.batch_size

    def _run(self, observations: list[Any], noises: list[Any], robots: list[str | None],
             rtcs: list[RtcRequest | Exception | None]) -> list[dict | str]:
        policy, results = self.policy, [None] * len(observations)
        parts = []
        for i, request in enumerate(zip(observations, noises, rtcs)):
            try:
                parts.append((i, *self._prepare(*request)))
            except Exception as e:  # noqa: BLE001 - a bad request fails alone
                results[i] = protocol.bounded(f"{type(e).__name__}: {e}")
                log.warning("request of robot %s rejected: %s", robots[i] or "(unnamed)", results[i])
        if not parts:
            return results
        start = time.monotonic()
        batch, noise = self.collate([inputs for _, inputs, _, _ in parts],
                                    torch.cat([noise for _, _, noise, _ in parts]))
        row_rtcs = [rtc for *_, rows in parts for rtc in rows]
        try:
            if any(rtc is not None for rtc in row_rtcs):
                row_rtcs += [None] * (noise.shape[0] - len(row_rtcs))  # bucket padding rows sample plainly
                pred = policy.backend.rtc(batch, noise, policy.denoising_steps, row_rtcs)
            else:
                pred = policy.backend(batch, noise, policy.denoising_steps)
        except Exception as e:  # noqa: BLE001 - the batch's requests all get the one line (Triton carries on)
            text = protocol.bounded(f"{type(e).__name__}: {e}")
            log.error("batch of %d requests failed: %s\n%s", len(parts), text, bounded_stack(e))
            return [text if r is None else r for r in results]
        latency_ms = (time.monotonic() - start) * 1e3
        self.batch_rows[pred.shape[0]] += 1
        pred = pred.to("cpu", torch.float32)  # one device-to-host copy for the batch, then per request on the host
        sizes = [inputs.batch_size for _, inputs, _, _ in parts]
        for (i, inputs, _, requests), rows in zip(parts, pred[: sum(sizes)].split(sizes)):  # bucket padding dropped
            if not bool(torch.isfinite(rows).all()):
                results[i] = "NonFiniteActionError: the model produced non-finite actions for this observation"
                continue
            results[i] = policy.processor.decode(rows, inputs.batched)
            if requests[0] is not None:  # the normalized chunk: the robot's next prefix comes from it
                chunk = rows[:, :, : policy.processor.action_dim].numpy()
                results[i][RTC_CHUNK_KEY] = chunk if inputs.batched else chunk[0]
            if robots[i] is not None:
                self._answered(robots[i])
        log.debug("batch of %d requests (%d rows): %.1f ms", len(parts), pred.shape[0], latency_ms)
        return results


# --- the Triton model: tensors named like the observation keys ------------------------------------------------------


def triton_tensors(policy: Gr00tPolicy) -> tuple[list, list]:
    """(inputs, outputs) of the Triton model, per row of a batch: cameras (1, H, W, 3) uint8, states (1, D) FP64,
    the instruction (1,) BYTES, optional robot id, noise and rtc request; actions (horizon, D) FP32, the normalized
    chunk (horizon, action dims) FP32 (zeros unless rtc was asked for) and an error (1,) BYTES."""
    from pytriton.model_config import Tensor

    config, dims = policy.data_config, policy.key_dims
    inputs = [Tensor(name=key, dtype=np.uint8, shape=(1, -1, -1, 3)) for key in config.video_keys]
    inputs += [Tensor(name=key, dtype=np.float64, shape=(1, dims[key])) for key in config.state_keys]
    inputs += [Tensor(name=config.language_key, dtype=bytes, shape=(1,)),
               Tensor(name=ROBOT_ID, dtype=bytes, shape=(1,), optional=True),
               Tensor(name=NOISE, dtype=np.float32, shape=(policy.action_horizon, policy.config.max_action_dim),
                      optional=True),
               Tensor(name=RTC, dtype=bytes, shape=(1,), optional=True)]
    outputs = [Tensor(name=key, dtype=np.float32, shape=(policy.action_horizon, dims[key]))
               for key in config.action_keys]
    chunk = Tensor(name=RTC_CHUNK_KEY, dtype=np.float32, shape=(policy.action_horizon, policy.processor.action_dim))
    return inputs, [*outputs, chunk, Tensor(name=ERROR, dtype=bytes, shape=(1,))]


def text_of(value: np.ndarray) -> str:
    """The string in a Triton BYTES tensor of one element."""
    item = value.reshape(-1)[0]
    return item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)


def request_observation(policy: Gr00tPolicy, request: Any) -> dict | Exception:
    """The batched observation a Triton request holds (B rows), or the reason it holds none."""
    config = policy.data_config
    try:
        observation = {key: request[key] for key in [*config.video_keys, *config.state_keys]}
        observation[config.language_key] = [text_of(row) for row in request[config.language_key]]
        return observation
    except KeyError as e:
        return ValueError(f"request misses input {e}")


def request_rtc(request: Any) -> RtcRequest | Exception | None:
    """The real-time chunking request a Triton request holds (its first row's), or why it is malformed."""
    if RTC not in request.data:
        return None
    try:
        return protocol.rtc_from_wire(protocol.unpack(request.data[RTC].reshape(-1)[0]))
    except Exception as e:  # noqa: BLE001 - reported as this request's error
        return ValueError(f"input {RTC!r}: {e}")


def infer_function(fleet: FleetModel):
    """The PyTriton inference callable: a list of requests in, one response each (errors in the ERROR output)."""
    policy = fleet.policy
    config, horizon = policy.data_config, policy.action_horizon

    def infer(requests: list) -> list[dict[str, np.ndarray]]:
        observations = [request_observation(policy, r) for r in requests]
        noises = [r.data.get(NOISE) for r in requests]
        robots = [text_of(r.data[ROBOT_ID]) if ROBOT_ID in r.data else None for r in requests]
        responses = []
        for request, result in zip(requests, fleet(observations, noises, robots, [request_rtc(r) for r in requests])):
            rows = len(next(iter(request.data.values())))
            empty = {k: np.zeros((rows, horizon, policy.key_dims[k]), np.float32) for k in config.action_keys}
            empty[RTC_CHUNK_KEY] = np.zeros((rows, horizon, policy.processor.action_dim), np.float32)
            if isinstance(result, str):
                responses.append({**empty, ERROR: np.full((rows, 1), result.encode(), dtype=object)})
            else:
                responses.append({**empty, **result, ERROR: np.full((rows, 1), b"", dtype=object)})
        return responses

    return infer
