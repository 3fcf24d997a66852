"""NVIDIA's own GR00T N1.5 pipeline (Isaac-GR00T's Gr00tPolicy, scripts/inference_service.py) driven from outside.

Run with the python of an environment where Isaac-GR00T is importable (`../shared/upstream/setup.sh` builds one);
it never imports gr00t-fast, and gr00t-fast never imports it: tests and `gr00t-fast bench ab` start it as a
subprocess. Cases come in an .npz: `spec` (JSON: [{"name", "data_config", "steps", optionally "embodiment_tag", "checkpoint"}]) and per case the observation
arrays `<name>/<key>` (the instruction as a str array) and the sampler's initial noise `<name>/noise` (B, horizon, action_dim), B = 1 for an unbatched observation.

  outputs CKPT IN.npz OUT.npz   per case: NVIDIA's model inputs (`<name>/eagle_input_ids`, `.../eagle_pixel_values`,
                                `.../state`, ...), normalized actions `<name>/action_pred`, actions `<name>/action.<key>`
  time CKPT IN.npz              serves timing requests for the first case: JSON lines on stdin
                                ({"reps": n}) -> JSON lines on stdout ({"times_ms", "stages_ms", "action",
                                "peak_rss_mb"}), after one ready line ({"load_s", "torch_threads", "dtype",
                                "peak_rss_mb"})
  serve CKPT NOISE.npy ARGS...  scripts/inference_service.py ARGS with the sampler's noise fixed to NOISE.npy
  eval CKPT SPEC.json OUT.npz   NVIDIA's dataset reader and open-loop evaluation on a LeRobot v2.x dataset
                                (`LeRobotSingleDataset`, `calc_mse_for_single_trajectory`), SPEC: {"dataset", "data_config",
                                "embodiment_tag" (default new_embodiment), "video_backend", "episodes", "steps", "action_horizon", "policy": "zero" (always zeros)
                                or "gr00t" (Gr00tPolicy; with "noise_seed", each call's noise drawn as gr00t-fast's
                                evaluation draws it, `SeededNoise`), "step_data": [[episode, index], ...]}; OUT:
                                `step/<episode>/<index>/<key>` (get_step_data), `mse/<episode>` and `seconds` (the
                                evaluation loop), with a seed `pred/<episode>/<point>/<key>` (each call's actions)

The initial noise is fixed the way NVIDIA's public reference data was made: the action head's one `torch.randn`
draw of shape (B, horizon, action_dim) per call returns the given array; every other step is NVIDIA's code.
Environment: GR00T_UPSTREAM_SRC (Isaac-GR00T source root); GR00T_COMPUTE_DTYPE defaults to float32 here (NVIDIA's
CPU default); bfloat16 casts NVIDIA's model to bf16 and runs its model call under CPU autocast (`cpu_autocast`).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path


def use_checkpoint_eagle(checkpoint: Path) -> None:
    """Point upstream at the checkpoint's Eagle folder, with upstream's remote-code modules beside its files (they
    are NVIDIA's code: linked from the source tree into a temporary folder, never written into the checkpoint)."""
    src = Path(os.environ["GR00T_UPSTREAM_SRC"])
    eagle = Path(tempfile.mkdtemp(prefix="upstream_eagle_"))
    atexit.register(shutil.rmtree, eagle, ignore_errors=True)
    for path in [*(checkpoint / "eagle2_hg_model").iterdir(), *(src / "gr00t/model/backbone/eagle2_hg_model").glob("*.py")]:
        (eagle / path.name).unlink(missing_ok=True)
        (eagle / path.name).symlink_to(path.resolve())
    os.environ["GR00T_EAGLE_PATH"] = str(eagle)
    os.environ.setdefault("GR00T_COMPUTE_DTYPE", "float32")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(src))


def fix_noise(noise_for) -> None:
    """Make `torch.randn(shape)` return `noise_for(shape)` (a numpy array) where that is not None."""
    import torch

    randn = torch.randn

    def fixed(*size, **kwargs):
        shape = tuple(kwargs.get("size") or (size[0] if len(size) == 1 and not isinstance(size[0], int) else size))
        noise = noise_for(shape)
        if noise is None:
            return randn(*size, **kwargs)
        return torch.from_numpy(noise).to(kwargs.get("device") or "cpu", kwargs.get("dtype") or torch.float32)

    torch.randn = fixed


def cpu_autocast(policy) -> None:
    """NVIDIA's model call under `torch.autocast` on the CPU too, in the policy's compute dtype.

    Gr00tPolicy runs its model under `torch.autocast(device_type="cuda", dtype=COMPUTE_DTYPE)`: on a GPU that
    makes its bf16 default work (its bf16 action head and float32 Eagle backbone meet float32 inputs), on a CPU it
    does nothing, so a bf16 Gr00tPolicy fails there on its first mixed matmul. Here its call runs under the CPU's
    autocast, and the whole model is cast to the compute dtype first (CPU autocast leaves layer norms alone, and
    the CPU kernel refuses the float32 backbone's features with the action head's bf16 norm weights); in float32
    (NVIDIA's CPU default) nothing changes."""
    import torch

    dtype = getattr(torch, os.environ["GR00T_COMPUTE_DTYPE"])
    if dtype == torch.float32:
        return
    policy.model.to(dtype)  # from_pretrained(torch_dtype=...) leaves the Eagle backbone in float32
    call = policy._get_action_from_normalized_input

    def autocast_call(normalized_input):
        with torch.autocast(device_type="cpu", dtype=dtype):
            return call(normalized_input)

    policy._get_action_from_normalized_input = autocast_call


def load_cases(path: Path) -> list[dict]:
    """[{"name", "data_config", "steps", "observation", "noise"}] from a cases .npz."""
    import numpy as np

    data = np.load(path, allow_pickle=False)
    cases = json.loads(str(data["spec"]))
    for case in cases:
        prefix = case["name"] + "/"
        arrays = {k[len(prefix):]: data[k] for k in data.files if k.startswith(prefix)}
        case["noise"] = arrays.pop("noise").astype(np.float32)
        case["observation"] = {k: v.tolist() if v.dtype.kind == "U" else v for k, v in arrays.items()}
    return cases


class FixedNoise:
    """`torch.randn` of the shape of `self.noise` returns `self.noise` (set before each call), counting the draws
    in `self.drawn`; other draws are torch's."""

    def __init__(self):
        self.noise, self.drawn = None, 0
        fix_noise(self.draw)

    def draw(self, shape: tuple) -> object:
        """The call's noise for the action head's one draw of its shape."""
        if self.noise is None or shape != self.noise.shape:
            return None
        self.drawn += 1
        return self.noise


class Upstream(FixedNoise):
    """NVIDIA's Gr00tPolicy per data config, its three stages timed, the initial noise fixed per call."""

    def __init__(self, checkpoint: Path):
        super().__init__()
        self.checkpoint, self.policies = checkpoint, {}
        self.last: dict = {}

    def policy(self, data_config: str, steps: int, tag: str = "new_embodiment", checkpoint: str | None = None):
        """NVIDIA's Gr00tPolicy for `data_config` and embodiment `tag` on `checkpoint` (default: the runner's)."""
        from gr00t.experiment.data_config import DATA_CONFIG_MAP
        from gr00t.model.policy import Gr00tPolicy

        key = (data_config, tag, checkpoint)
        if key not in self.policies:
            dc = DATA_CONFIG_MAP[data_config]
            policy = Gr00tPolicy(model_path=checkpoint or str(self.checkpoint), embodiment_tag=tag, device="cpu",
                                 modality_config=dc.modality_config(), modality_transform=dc.transform())
            cpu_autocast(policy)
            for stage in ("apply_transforms", "_get_action_from_normalized_input", "_get_unnormalized_action"):
                setattr(policy, stage, self.timed(stage, getattr(policy, stage)))
            self.policies[key] = policy
        policy = self.policies[key]
        policy.denoising_steps = steps
        return policy

    def timed(self, stage: str, fn):
        def call(arg):
            start = time.perf_counter()
            out = fn(arg)
            self.last[stage] = ((time.perf_counter() - start) * 1e3, arg, out)
            return out

        return call

    def get_action(self, case: dict) -> dict:
        self.noise, self.last, self.drawn = case["noise"], {}, 0
        actions = self.policy(case["data_config"], case["steps"], case.get("embodiment_tag", "new_embodiment"),
                              case.get("checkpoint")).get_action(dict(case["observation"]))
        if self.drawn != 1:
            raise RuntimeError(f"{case['name']}: the action head drew {self.drawn} samples of the noise's shape "
                               f"{case['noise'].shape}, expected exactly 1")
        return actions

    def stages_ms(self) -> dict:
        names = {"apply_transforms": "preprocess", "_get_action_from_normalized_input": "model",
                 "_get_unnormalized_action": "postprocess"}
        return {names[k]: v[0] for k, v in self.last.items()}


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, MB (Linux reports ru_maxrss in kB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def outputs(checkpoint: Path, cases_path: Path, out_path: Path) -> None:
    import numpy as np
    import torch

    upstream, out = Upstream(checkpoint), {}
    for case in load_cases(cases_path):
        actions = upstream.get_action(case)
        inputs = upstream.last["_get_action_from_normalized_input"][1]
        for key, value in inputs.items():
            if isinstance(value, (torch.Tensor, np.ndarray)):
                out[f"{case['name']}/{key}"] = np.asarray(value.cpu() if isinstance(value, torch.Tensor) else value)
        out[f"{case['name']}/action_pred"] = upstream.last["_get_action_from_normalized_input"][2].cpu().numpy()
        out.update({f"{case['name']}/{k}": np.asarray(v) for k, v in actions.items()})
    np.savez(out_path, **out)


def serve_timing(checkpoint: Path, cases_path: Path) -> None:
    """Answer {"reps": n} lines with n timed get_action calls on the first case (stdout carries only replies)."""
    reply = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # upstream's prints go to stderr
    start = time.perf_counter()
    upstream, case = Upstream(checkpoint), load_cases(cases_path)[0]
    policy = upstream.policy(case["data_config"], case["steps"])
    import torch

    reply.write(json.dumps({"load_s": time.perf_counter() - start, "torch_threads": torch.get_num_threads(),
                            "dtype": str(next(policy.model.parameters()).dtype).removeprefix("torch."),
                            "peak_rss_mb": peak_rss_mb()}) + "\n")
    reply.flush()
    for line in sys.stdin:
        times, stages, action = [], [], None
        for _ in range(json.loads(line)["reps"]):
            start = time.perf_counter()
            action = upstream.get_action(case)
            times.append((time.perf_counter() - start) * 1e3)
            stages.append(upstream.stages_ms())
        reply.write(json.dumps({"times_ms": times, "stages_ms": stages, "peak_rss_mb": peak_rss_mb(),
                                "action": {k: v.tolist() for k, v in action.items()}}) + "\n")
        reply.flush()


def serve(checkpoint: Path, noise_path: Path, args: list[str]) -> None:
    import runpy

    import numpy as np

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # terminated like any server: clean up on the way out
    noise = np.load(noise_path).astype(np.float32)
    fix_noise(lambda shape: noise if shape == noise.shape else None)
    script = Path(os.environ["GR00T_UPSTREAM_SRC"]) / "scripts" / "inference_service.py"
    sys.argv = [str(script), *args]
    runpy.run_path(str(script), run_name="__main__")


class ZeroPolicy:
    """Answers every observation with zeros: NVIDIA's MSE then shows its ground truth alone."""

    def __init__(self, dims: dict[str, int], horizon: int):
        self.dims, self.horizon = dims, horizon

    def get_action(self, observation: dict) -> dict:
        import numpy as np

        return {key: np.zeros((self.horizon, dim)) for key, dim in self.dims.items()}


class SeededNoise(FixedNoise):
    """Gr00tPolicy whose sampler starts each call from the noise gr00t-fast's open-loop evaluation draws for it
    (`gr00t_fast.evaluation.open_loop`: numpy's `default_rng([seed, episode, point]).standard_normal((horizon,
    action_dim))`, `point` the call's first step, one call per `action_horizon` steps), so that both evaluations
    of the same episodes see the same noise. Exactly one draw of that shape per call, or the call fails."""

    def __init__(self, policy, seed: int, action_horizon: int):
        super().__init__()
        head = policy.model.action_head.config
        self.policy, self.seed, self.action_horizon = policy, seed, action_horizon
        self.shape = (1, head.action_horizon, head.action_dim)
        self.episode, self.calls = 0, 0
        self.chunks: dict = {}  # (episode, point) -> the actions NVIDIA's policy answered

    def start(self, episode: int) -> None:
        self.episode, self.calls = episode, 0

    def get_action(self, observation: dict) -> dict:
        import numpy as np

        point = self.calls * self.action_horizon
        rng = np.random.default_rng([self.seed, self.episode, point])
        self.noise, self.drawn = rng.standard_normal(self.shape[1:]).astype(np.float32)[None], 0
        actions = self.policy.get_action(observation)
        if self.drawn != 1:
            raise RuntimeError(f"episode {self.episode}, step {point}: the action head drew {self.drawn} samples of "
                               f"the noise's shape {self.shape}, expected exactly 1")
        self.calls += 1
        self.chunks[self.episode, point] = actions
        return actions


def dataset_eval(checkpoint: Path, spec_path: Path, out_path: Path) -> None:
    import numpy as np
    from gr00t.data.dataset import LeRobotSingleDataset
    from gr00t.experiment.data_config import DATA_CONFIG_MAP
    from gr00t.utils.eval import calc_mse_for_single_trajectory

    spec = json.loads(spec_path.read_text())
    config = DATA_CONFIG_MAP[spec["data_config"]]
    tag = spec.get("embodiment_tag", "new_embodiment")
    dataset = LeRobotSingleDataset(spec["dataset"], config.modality_config(), embodiment_tag=tag,
                                   video_backend=spec["video_backend"])
    arrays: dict = {}
    for episode, index in spec["step_data"]:
        for key, value in dataset.get_step_data(episode, index).items():
            arrays[f"step/{episode}/{index}/{key}"] = np.asarray(value)
    keys = [key.split(".", 1)[1] for key in config.action_keys]
    if spec["policy"] == "zero":
        step = dataset.get_step_data(spec["episodes"][0], 0)
        policy = ZeroPolicy({k: step[k].shape[1] for k in config.action_keys}, spec["action_horizon"])
    else:
        from gr00t.model.policy import Gr00tPolicy

        policy = Gr00tPolicy(model_path=str(checkpoint), embodiment_tag=tag, device="cpu",
                             modality_config=config.modality_config(), modality_transform=config.transform(),
                             denoising_steps=spec.get("denoising_steps"))
        cpu_autocast(policy)
        if "noise_seed" in spec:
            policy = SeededNoise(policy, spec["noise_seed"], spec["action_horizon"])
    start = time.perf_counter()
    for episode in spec["episodes"]:
        if isinstance(policy, SeededNoise):
            policy.start(episode)
        arrays[f"mse/{episode}"] = np.asarray(calc_mse_for_single_trajectory(
            policy, dataset, episode, modality_keys=keys, steps=spec["steps"], action_horizon=spec["action_horizon"],
            plot=False))
    arrays["seconds"] = np.asarray(time.perf_counter() - start)
    for (episode, point), chunk in getattr(policy, "chunks", {}).items():
        arrays.update({f"pred/{episode}/{point}/{key}": np.asarray(value) for key, value in chunk.items()})
    np.savez(out_path, **arrays)


def main(argv: list[str]) -> None:
    mode, checkpoint, rest = argv[0], Path(argv[1]), argv[2:]
    use_checkpoint_eagle(checkpoint)
    if mode == "outputs":
        outputs(checkpoint, Path(rest[0]), Path(rest[1]))
    elif mode == "time":
        serve_timing(checkpoint, Path(rest[0]))
    elif mode == "serve":
        serve(checkpoint, Path(rest[0]), rest[1:])
    elif mode == "eval":
        dataset_eval(checkpoint, Path(rest[0]), Path(rest[1]))
    else:
        raise SystemExit(f"unknown mode {mode!r}: outputs, time, serve or eval")


if __name__ == "__main__":
    main(sys.argv[1:])
