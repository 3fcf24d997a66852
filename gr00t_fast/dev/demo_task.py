"""A demo task for random-weight checkpoints: fit the action head to a scripted, two-mode SO-100 motion.

A random-weight policy's actions jump between joint limits from one step to the next, so nothing that depends on
motion being smooth (chunk-switch jumps, real-time chunking, tracking) can be judged with it. `fit_reach` trains the
action head (flow matching, as N1.5 is trained; backbone and VL self-attention frozen) on a scripted behaviour with the property that real
chunking policies have and that real-time chunking is made for: smooth chunks drawn from two modes. The arm swings
between two poses; near one it heads for the other, in between it picks either (50/50), so two chunks computed a
few steps apart may disagree. The task depends on the joint state alone: the DiT's cross-attention blocks get a zero
output projection (kept out of training), so the actions do not depend on the images or the instruction at all, and
any camera (a simulator's renders, random frames) gives the same motion.

    gr00t-fast make-checkpoint --size tiny --demo-task reach --out DIR
"""

import json
import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm import tqdm

from gr00t_fast.model.fusion import split_state_dict
from gr00t_fast.model.loading import load_model
from gr00t_fast.model.provenance import mark_random
from gr00t_fast.model.random_checkpoint import cached_checkpoint, save_shard
from gr00t_fast.policy.metadata import load_metadata
from gr00t_fast.runtime.threads import cpu_threads
from gr00t_fast.model.inputs import EXAMPLE_INSTRUCTION, example_inputs

POSES = np.array([[-40.0, -30.0, 40.0, 50.0, -30.0, 15.0],  # the two poses the arm swings between: five arm joints
                  [40.0, 10.0, 60.0, 70.0, 30.0, 70.0]])  # in degrees, then the gripper (0 closed - 100 open)
STEP = np.array([3.0] * 5 + [5.0])  # largest change per control step: degrees (arm), gripper units
NOISE_BETA, NOISE_S = (1.5, 1.0), 0.999  # N1.5's training-time sampling of tau (noise_beta_alpha/beta, noise_s)
SWITCH_WIDTH = 0.1  # how sharply the choice of pose turns from "the far one" (ends) to a coin flip (middle)
KEYS = ("single_arm", "gripper")
FIT_STEPS = 12000  # enough for two distinct modes in the middle of the swing (4000 left them blurred into one)


def reach_chunks(states: np.ndarray, horizon: int, rng: np.random.Generator) -> np.ndarray:
    """(B, 6) joint states -> (B, horizon, 6) scripted action chunks: straight toward one of the two poses at the
    speed limit of the slowest joint, then holding it. The far pose is chosen near either end, either one in the
    middle (the mode is drawn per chunk)."""
    a, b = POSES
    along = swing_position(states)
    to_b = rng.random(len(states)) < 1 / (1 + np.exp(-(0.5 - along) / SWITCH_WIDTH))
    goals = np.where(to_b[:, None], b, a)
    steps_needed = np.abs(goals - states) / STEP  # per joint; all joints arrive together
    progress = np.arange(1, horizon + 1)[None, :] / np.maximum(steps_needed.max(1, keepdims=True), 1e-6)
    return states[:, None] + np.minimum(progress, 1.0)[..., None] * (goals - states)[:, None]


def sample_states(n: int, rng: np.random.Generator) -> np.ndarray:
    """States around the segment between the two poses (and a little beyond), scattered by ~10 degrees, a quarter
    of them by ~30 (a robot starts off the segment: the simulation's rest pose is ~45 degrees from it)."""
    along = rng.uniform(-0.2, 1.2, (n, 1))
    scatter = np.where(rng.random((n, 1)) < 0.25, 30.0, 10.0)
    return POSES[0] + along * (POSES[1] - POSES[0]) + rng.normal(0.0, 1.0, (n, 6)) * scatter * np.r_[[1.0] * 5, 0.5]


def swing_observation(observation: dict, along: float) -> dict:
    """`observation` (an SO-100 one) with the joint state `along` of the way from pose A (0) to pose B (1)."""
    state = POSES[0] + along * (POSES[1] - POSES[0])
    return {**observation, "state.single_arm": state[None, :5], "state.gripper": state[None, 5:]}


def sim_swing_observations(n: int, instructions: tuple[str, ...] = (EXAMPLE_INSTRUCTION,),
                           size: tuple[int, int] = (640, 480)) -> dict[str, np.ndarray]:
    """One batched `so100` observation of `n` samples along the swing (-0.2 to 1.2 of the way from pose A to B):
    the simulated SO-100's camera (MuJoCo, WIDTHxHEIGHT `size`) rendered with the arm at each state, the states, and
    the instructions in turn. Real renders, unlike NVIDIA's reference images: held-out data for `export int8
    --calibration` and its error (benchmarks/int8_calibration.py)."""
    from gr00t_fast.robot.config import SimCameraConfig, SimSO100Config
    from gr00t_fast.robot.sim import SimSO100

    states = POSES[0] + np.linspace(-0.2, 1.2, n)[:, None] * (POSES[1] - POSES[0])
    robot = SimSO100(SimSO100Config(cameras={"front": SimCameraConfig(width=size[0], height=size[1])}))
    robot.connect()
    try:
        frames = np.stack(list(robot.replay([robot.posed(s) for s in states], "front")))
    finally:
        robot.disconnect()
    states = states.astype(np.float32)[:, None]  # (n, T=1, 6)
    return {"video.webcam": frames[:, None], "state.single_arm": states[..., :5], "state.gripper": states[..., 5:],
            "annotation.human.task_description": np.array([instructions[i % len(instructions)] for i in range(n)])}


def swing_position(states: np.ndarray) -> np.ndarray:
    """(..., 6) joint states -> where their arm joints lie along the swing: 0 at pose A, 1 at pose B (projection)."""
    a, b = POSES[0, :5], POSES[1, :5]
    return ((states[..., :5] - a) @ (b - a)) / ((b - a) @ (b - a))


def turning_points(along: np.ndarray, hysteresis: float = 0.05) -> list[tuple[int, int]]:
    """Where the swing turns back: (step, the pose it was heading for: 1 for B at a maximum of `along`, 0 for A at a
    minimum) of every extreme followed by a move back of more than `hysteresis`."""
    turns: list[tuple[int, int]] = []
    extreme, rising = 0, None
    for k in range(1, len(along)):
        if rising is None:  # the first move sets the direction
            if abs(along[k] - along[0]) > hysteresis:
                rising, extreme = bool(along[k] > along[0]), k
        elif (along[k] > along[extreme]) == rising and along[k] != along[extreme]:
            extreme = k
        elif abs(along[k] - along[extreme]) > hysteresis:
            turns.append((extreme, int(rising)))
            rising, extreme = not rising, k
    return turns


def reach_outcome(states: np.ndarray, tolerance: float = 5.0) -> dict:
    """What a closed-loop run of the task did, from its measured joint states (N, 6): per pose of POSES the closest
    approach (the smallest largest arm-joint error over the run, degrees; the gripper's error at that step), the
    reaches (entries to within `tolerance` degrees on every arm joint) and the turns of the swing on its side (the
    turning points heading for that pose: the step, how far along the swing, the largest arm-joint error to the
    pose); the order of all reaches, the switches (a reach of the other pose than the last one reached) and the
    range of the swing (0 at A, 1 at B)."""
    arm = np.abs(states[:, None, :5] - POSES[None, :, :5]).max(-1)  # (N, 2)
    near = arm <= tolerance
    entered = near & ~np.vstack([np.zeros((1, len(POSES)), bool), near[:-1]])
    order = [int(pose) for _, pose in np.argwhere(entered)]
    along = swing_position(states)
    turns = turning_points(along)
    closest = arm.argmin(0)
    poses = [{"closest_arm_deg": float(arm[k, p]), "gripper_error": float(abs(states[k, 5] - POSES[p, 5])),
              "closest_step": int(k), "reaches": int(entered[:, p].sum()),
              "turns": [{"step": int(t), "along": float(along[t]), "arm_error_deg": float(arm[t, p])}
                        for t, side in turns if side == p]} for p, k in enumerate(closest)]
    return {"poses": poses, "reach_order": order, "switches": sum(a != b for a, b in zip(order, order[1:])),
            "tolerance_deg": tolerance, "swing": [float(along.min()), float(along.max())] if len(along) else []}


def normalize(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Min-max to [-1, 1], as the processor normalizes states and decodes actions."""
    return 2 * (values - low) / (high - low) - 1


def min_max(meta, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """The SO-100 statistics of `kind` ("state" or "action"): arm joints then gripper, min and max."""
    return tuple(np.concatenate([getattr(meta.stats[f"{kind}.{key}"], m) for key in KEYS]) for m in ("min", "max"))


def fit_reach(checkpoint: str | Path, steps: int = FIT_STEPS, batch: int = 64, seed: int = 0,
              progress: bool = True, on_step: Callable[[], None] | None = None) -> dict:
    """Train the action head of the checkpoint in place on the reach task; returns {"loss": first, last}. `on_step`
    runs after each step (a caller can stop the fit there by raising)."""
    checkpoint = Path(checkpoint)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = load_model(checkpoint, device="cpu", dtype=torch.float32)
    config, head = model.config, model.action_head
    meta = load_metadata(checkpoint, "new_embodiment")
    (state_lo, state_hi), (action_lo, action_hi) = (min_max(meta, "state"), min_max(meta, "action"))
    blind = blind_to_vision_language(head)
    with torch.no_grad():  # any VL features will do: the DiT no longer reads them
        inputs, _ = example_inputs(config, batch=1, seed=seed, instructions=[EXAMPLE_INSTRUCTION])
        vl = head.encode_vl(model.backbone(inputs.input_ids, inputs.attention_mask, inputs.pixel_values))
    trained = [p for name, p in head.named_parameters()
               if not name.startswith(("vlln.", "vl_self_attention.")) and name not in blind]
    for p in trained:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(trained, lr=1e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=steps, pct_start=0.1)
    beta = torch.distributions.Beta(*NOISE_BETA)
    horizon, dims, emb = config.action_horizon, len(STEP), meta.embodiment_id
    losses = []
    bar = tqdm(range(steps), desc="fitting the reach task", unit="step", disable=not progress)
    for step in bar:
        cpu_threads.adapt()  # a busy machine: fewer threads, not 3x slower steps (`gr00t_fast.runtime.threads`)
        states = sample_states(batch, rng)
        chunks = normalize(reach_chunks(states, horizon, rng), action_lo, action_hi)
        state = torch.zeros(batch, 1, config.max_state_dim)
        state[:, 0, :dims] = torch.from_numpy(normalize(states, state_lo, state_hi)).float()
        actions = torch.zeros(batch, horizon, config.max_action_dim)
        actions[..., :dims] = torch.from_numpy(chunks).float()
        noise = torch.randn_like(actions)
        t = (NOISE_S - beta.sample((batch,))) / NOISE_S  # tau: 0 is noise, 1 is data
        noisy = (1 - t[:, None, None]) * noise + t[:, None, None] * actions
        buckets = (t * config.num_timestep_buckets).long()
        velocity = head.velocity(noisy, buckets, vl.expand(batch, -1, -1), state, emb)
        loss = (velocity - (actions - noise))[..., :dims].pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step()
        if step % 50 == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", refresh=False)
    head.step_table_cache.clear()
    write_action_head(checkpoint, model)
    mark_random(checkpoint, demo_task="reach (action head fitted to a scripted simulation motion)")
    return {"loss": [losses[0], float(np.mean(losses[-50:]))]}


def reach_checkpoint(size: str = "tiny") -> Path:
    """The demo task's fitted checkpoint of `size` (`make-checkpoint --size SIZE --demo-task reach`, seed 0),
    generated into the gr00t-fast cache on first use (about 10 min for tiny on 2 CPU cores)."""
    return cached_checkpoint(f"reach_{size}", size, finish=fit_reach)


def blind_to_vision_language(head: torch.nn.Module) -> set[str]:
    """Zero the output projection of the DiT's cross-attention blocks (the only path from the VL features to the
    actions); returns the names of every cross-attention parameter, to be kept out of training."""
    names = set()
    for i, block in enumerate(head.model.transformer_blocks):
        if block.cross:
            torch.nn.init.zeros_(block.attn1.to_out[0].weight)
            torch.nn.init.zeros_(block.attn1.to_out[0].bias)
            names |= {f"model.transformer_blocks.{i}.attn1.{name}" for name, _ in block.attn1.named_parameters()}
    return names


def write_action_head(checkpoint: Path, model: torch.nn.Module) -> None:
    """Overwrite the action head's tensors in the checkpoint's shards (official names, the shards' own dtype)."""
    trained = split_state_dict(model, {k: v.detach() for k, v in model.state_dict().items()
                                       if k.startswith("action_head.")})
    weight_map = json.loads((checkpoint / "model.safetensors.index.json").read_text())["weight_map"]
    missing = trained.keys() - weight_map.keys()
    if missing:  # checked before any shard is rewritten
        raise ValueError(f"{checkpoint}: the index has no shard for {sorted(missing)[:3]}")
    for shard in sorted(set(weight_map.values())):
        tensors = load_file(str(checkpoint / shard))
        for name in tensors.keys() & trained.keys():
            tensors[name] = trained[name].to(tensors[name].dtype).contiguous()
        save_shard(tensors, checkpoint / shard)
    readme = checkpoint / "DEMO_TASK.md"
    readme.write_text(f"Action head fitted to the scripted two-pose reach task of `{__name__}` (poses "
                      f"{POSES.tolist()}, {math.floor(STEP[0])} deg per step); backbone random, the DiT's "
                      "cross-attention output zeroed: the actions depend on the joint state alone.\n")
