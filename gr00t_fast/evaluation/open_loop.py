"""Open-loop evaluation on recorded episodes, as NVIDIA's `scripts/eval_policy.py` runs it (`calc_mse_for_single_
trajectory`): the policy is asked for a chunk every `action_horizon` steps on the recorded observation of that step,
and the chunk's first `action_horizon` actions are set against the recorded actions of the steps they cover.

Faster than NVIDIA's loop, same numbers: each episode's video is decoded once, in order, on a thread that reads the
next episodes while the policy runs, and the observations of a group of episodes go to the policy in batches of
`batch`, any episode and step together (open loop: each chunk starts from its own recorded observation), one
instruction in a batch (one prompt length). The sampler's noise is drawn per episode and inference point from
`noise_seed`, so paths compared on the same episodes (`--compare`) start from the same noise.
`ReadAhead` starts reading the first episodes as it is made: `gr00t-fast eval` makes it before the policy loads.

    runs = evaluate(policy, open_dataset("recordings"), episodes=[0, 1], steps=150)
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from gr00t_fast.data import DatasetError, RecordedDataset
from gr00t_fast.policy.base import batch_observations

__all__ = ["DEFAULT_STEPS", "EpisodeRun", "ReadAhead", "compared_keys", "episode_steps", "evaluate",
           "inference_points"]

DEFAULT_STEPS = 150  # NVIDIA's eval_policy.py default


@dataclass
class EpisodeRun:
    """One episode's evaluation: recorded and predicted actions and the recorded state, each (steps, dims) in the
    dataset's units, at the inference points `points`."""

    episode: int
    gt: np.ndarray
    pred: np.ndarray
    state: np.ndarray
    points: list[int]
    ms_per_observation: list[float] = field(default_factory=list)  # each call's time over the observations in it


def inference_points(steps: int, action_horizon: int) -> list[int]:
    """The steps at which the policy is asked for a chunk: 0, horizon, 2 x horizon, ... below `steps`."""
    return list(range(0, steps, action_horizon))


def episode_steps(dataset: RecordedDataset, episode: int, steps: int | None) -> int:
    """Steps evaluated in `episode`: `steps`, which must not exceed its length, or (None) NVIDIA's default 150 cut to
    the episode's length."""
    length = dataset.episode(episode).length
    if steps is None:
        return min(DEFAULT_STEPS, length)
    if not 1 <= steps <= length:
        raise DatasetError(f"{dataset.layout.root}: episode {episode} has {length} steps, --steps {steps} asks for "
                           f"{'more' if steps > length else 'none'} (leave --steps out for min({DEFAULT_STEPS}, its "
                           "length))")
    return steps


def _noise(policy: Any, seed: int, episode: int, point: int) -> np.ndarray | None:
    """The sampler's initial noise for one episode and inference point, or None for a policy that draws its own
    (a served one)."""
    shape = policy.noise_shape
    if shape is None:
        return None
    return np.random.default_rng([seed, episode, point]).standard_normal(shape).astype(np.float32)


def _load(dataset: RecordedDataset, episode: int, steps: int, action_horizon: int,
          modality_keys: Sequence[str]) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """An episode's observations at its inference points (frames decoded once), and its recorded actions and
    states over `steps`, concatenated over `modality_keys`."""
    points = inference_points(steps, action_horizon)
    records = dataset.steps(episode, points)
    gt = np.concatenate([np.concatenate([record[f"action.{key}"][:action_horizon] for key in modality_keys], axis=1)
                         for record in records])[:steps]
    columns = dataset.columns(episode)
    state_keys = [f"state.{key}" for key in modality_keys if f"state.{key}" in columns]
    state = np.concatenate([columns[key][:steps] for key in state_keys], axis=1) if state_keys else \
        np.zeros((steps, 0))
    observations = [{k: v for k, v in record.items() if not k.startswith("action.")} for record in records]
    return observations, gt, state


def compared_keys(dataset: RecordedDataset, modality_keys: Sequence[str] | None) -> list[str]:
    """The action keys compared (`single_arm`, ...): `modality_keys`, each an action of the data config, or all."""
    actions = [key.split(".", 1)[1] for key in dataset.data_config.action_keys]
    keys = list(modality_keys or actions)
    unknown = [key for key in keys if key not in actions]
    if unknown:
        raise ValueError(f"--modality_keys {unknown} are not actions of data config {dataset.data_config.name!r} "
                         f"({actions})")
    return keys


def _same_instruction(observations: dict[Any, dict], language: str) -> list[list[Any]]:
    """The keys of `observations` split by instruction, in order: one batch holds one prompt length. Left-padded to
    a longer one, a prompt's tokens move to other rotary positions, as in NVIDIA's batched calls, and its actions
    differ from its own call's (by degrees on the tiny checkpoint); rows of one instruction batch to their single
    calls' actions (to float32's rounding: ~1e-7 of the actions' range)."""
    batches: dict[str, list[Any]] = {}
    for i, observation in observations.items():
        batches.setdefault(observation[language][0], []).append(i)
    return list(batches.values())


class ReadAhead:
    """The episodes' observations read on a thread of their own, a group of `batch` episodes ahead of the policy
    (`_load`: each episode's frames at its inference points decoded once, its recorded actions and states); the
    first group is read from the moment it is made. Iterate for (group, its episodes read) in order."""

    def __init__(self, dataset: RecordedDataset, episodes: Sequence[int], steps: int | None = None,
                 action_horizon: int = 16, modality_keys: Sequence[str] | None = None, batch: int = 8):
        self.dataset, self.action_horizon = dataset, action_horizon
        self.keys = compared_keys(dataset, modality_keys)
        self.lengths = {episode: episode_steps(dataset, episode, steps) for episode in episodes}
        self.groups = [list(episodes[i:i + batch]) for i in range(0, len(episodes), batch)]
        self.reader = ThreadPoolExecutor(1, thread_name_prefix="gr00t-eval-read")
        self.pending = self.reader.submit(self.read, self.groups[0]) if self.groups else None

    def read(self, group: list[int]) -> list[tuple[list[dict], np.ndarray, np.ndarray]]:
        return [_load(self.dataset, e, self.lengths[e], self.action_horizon, self.keys) for e in group]

    def __iter__(self):
        try:
            for n, group in enumerate(self.groups):
                loaded = self.pending.result()
                self.pending = self.reader.submit(self.read, self.groups[n + 1]) if n + 1 < len(self.groups) else None
                yield group, loaded
        finally:
            self.reader.shutdown(cancel_futures=True)


def evaluate(policy: Any, dataset: RecordedDataset, episodes: Sequence[int], steps: int | None = None,
             action_horizon: int = 16, modality_keys: Sequence[str] | None = None, *, batch: int = 8,
             noise_seed: int = 0, denoising_steps: int | None = None, progress: bool = True,
             reads: ReadAhead | None = None) -> list[EpisodeRun]:
    """Evaluate `policy` on `episodes` of `dataset` (see the module): one `EpisodeRun` per episode, in order.
    `modality_keys`: the action keys compared (default: the data config's, e.g. single_arm and gripper); `batch`:
    observations per policy call, and episodes read at a time (at most what the policy takes a call: a served one
    what its server's --max_batch allows); `reads`: a `ReadAhead` of these very arguments made earlier (reading
    while the policy loaded), else one is made here."""
    if action_horizon > policy.action_horizon:
        raise ValueError(f"--action_horizon {action_horizon} exceeds the policy's chunk of {policy.action_horizon}")
    reads = reads or ReadAhead(dataset, episodes, steps, action_horizon, modality_keys, batch)
    keys, lengths = reads.keys, reads.lengths
    language = dataset.data_config.language_key
    total = sum(len(inference_points(lengths[e], action_horizon)) for e in episodes)
    runs = []
    with tqdm(total=total, desc="evaluating", unit="obs", disable=not progress) as bar:
        for group, loaded in reads:
            asked = {(i, k): observations[k] for i, (observations, _, _) in enumerate(loaded)
                     for k in range(len(observations))}
            preds: dict[tuple[int, int], np.ndarray] = {}
            times: dict[tuple[int, int], float] = {}
            for same in _same_instruction(asked, language):
                for rows in (same[n:n + batch] for n in range(0, len(same), batch)):
                    observation = batch_observations([asked[row] for row in rows])
                    noise = [_noise(policy, noise_seed, group[i], k * action_horizon) for i, k in rows]
                    options = {} if noise[0] is None else {"noise": np.stack(noise)}
                    start = time.perf_counter()
                    chunk = policy.get_action(observation, denoising_steps=denoising_steps, **options)
                    elapsed = (time.perf_counter() - start) * 1e3
                    predicted = np.concatenate([np.asarray(chunk[f"action.{key}"], dtype=np.float64).reshape(
                        len(rows), policy.action_horizon, -1)[:, :action_horizon] for key in keys], axis=2)
                    for row, chunk_row in zip(rows, predicted):
                        preds[row], times[row] = chunk_row, elapsed / len(rows)
                    bar.update(len(rows))
            for i, (episode, (observations, gt, state)) in enumerate(zip(group, loaded)):
                pred = np.concatenate([preds[i, k] for k in range(len(observations))])[:lengths[episode]]
                if not np.isfinite(pred).all():
                    raise ValueError(f"episode {episode}: the policy returned non-finite actions")
                runs.append(EpisodeRun(episode, gt, pred, state, inference_points(lengths[episode], action_horizon),
                                       [times[i, k] for k in range(len(observations))]))
    return runs
