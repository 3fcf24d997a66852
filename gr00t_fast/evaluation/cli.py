"""`gr00t-fast eval`: open-loop evaluation of a checkpoint (or a served policy) on recorded episodes, NVIDIA's
`scripts/eval_policy.py` with its options under their names, on LeRobot v2.x (`meta/modality.json`) and v3.0
datasets read in place.

    gr00t-fast eval --model_path CKPT --dataset_path DATASET [--episodes 0 1] [--steps 150] [--action_horizon 16]
                    [--out results.json] [--save_arrays arrays.npz] [--plot DIR] [--compare reference default int8]
    gr00t-fast eval --policy_host HOST --policy_port 5555 --dataset_path DATASET      # a served policy
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

from gr00t_fast.cli_args import ArgumentParser, error_line, port, require, token
from gr00t_fast.control.outputs import output_error
from gr00t_fast.data import DatasetError, RecordedDataset, open_dataset
from gr00t_fast.evaluation.compare import PATHS, compare_rows, path_batch, path_modules, path_options
from gr00t_fast.evaluation.metrics import episode_metrics, overall_metrics
from gr00t_fast.evaluation.open_loop import EpisodeRun, ReadAhead, compared_keys, episode_steps, evaluate
from gr00t_fast.model.hub import HubError, resolve_checkpoint, resolve_dataset
from gr00t_fast.policy.bounds import IN_PROCESS_MAX_BATCH
from gr00t_fast.policy.config import add_policy_arguments, policy_config_from_args
from gr00t_fast.runtime.cpuinfo import cpu_record
from gr00t_fast.typed_config import camera_map

__all__ = ["build_parser", "main"]


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="gr00t-fast eval", description=__doc__.split("\n\n")[0] + " Every flag also takes "
                            "dashes (--dataset-path).")
    add_policy_arguments(parser, required_model=False)
    add = parser.add_argument
    add("--dataset_path", required=True, help="a LeRobot dataset folder (v2.0/v2.1 with meta/modality.json, or "
        "v3.0), or a Hugging Face dataset id ORG/NAME from the local cache")
    add("--dataset_revision", default=None, help="with a dataset id: its branch, tag or commit (default: main)")
    add("--episodes", nargs="+", default=None, help="episode indices to evaluate, 0 1 2 or 0,1,2 (default: all)")
    add("--steps", type=int, default=None, help="steps evaluated per episode (default: NVIDIA's 150, cut to the "
        "episode's length; more than an episode has is an error)")
    add("--action_horizon", type=int, default=16, help="steps between inferences, and actions compared per chunk")
    add("--modality_keys", nargs="+", default=None, help="action keys compared, e.g. single_arm gripper (default: "
        "every action key of the data config)")
    add("--camera_map", default=None, help="dataset camera -> the policy's video key, e.g. \"{front: webcam, wrist: "
        "wrist}\" (needed where the dataset's cameras do not match the data config's by count or name)")
    add("--batch", type=int, default=8, help="observations that go to the policy in one call, of any episode and "
        "step with one instruction, at most 32 (episodes are read that many at a time; a served policy and "
        "--compare tensorrt: 1)")
    add("--noise_seed", type=int, default=None, help="seeds the sampler's noise, drawn per episode and inference "
        "point (default 0; an in-process policy's: a server draws its own)")
    add("--compare", nargs="+", default=None, metavar="PATH", help=f"evaluate several paths on the same episodes and "
        f"noise and print one table: {', '.join(PATHS)} (steps<N> for any N); the reference is always included")
    add("--policy_host", default=None, help="evaluate the policy served at this host (gr00t-fast serve, or "
        "Isaac-GR00T's inference_service.py) instead of loading --model_path")
    add("--policy_port", type=port, default=5555, help="port of --policy_host")
    add("--policy_timeout_ms", type=int, default=60_000, help="how long a call to --policy_host may take")
    add("--api_token", type=token, default=None, help="the token --policy_host requires")
    add("--out", default=None, help="write every figure to this JSON file")
    add("--save_arrays", default=None, help="write gt/<episode>, pred/<episode>, state/<episode> ((steps, dims) "
        "each) to this .npz")
    add("--plot", default=None, help="write one figure per episode into this folder")
    return parser


def check_args(args: argparse.Namespace) -> None:
    """ValueError, one line, for flags out of range or combined wrongly (before anything is read)."""
    for flag in ("steps", "action_horizon", "batch"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ValueError(f"--{flag} must be >= 1, got {value}")
    if args.batch > IN_PROCESS_MAX_BATCH:
        raise ValueError(f"--batch {args.batch}: a policy call takes at most {IN_PROCESS_MAX_BATCH} observations")
    if args.policy_host is None and not args.model_path:
        raise ValueError("name the policy: --model_path CKPT, or --policy_host HOST for a served one")
    if args.episodes is not None:
        try:
            args.episodes = [int(part) for item in args.episodes for part in item.split(",") if part.strip()]
        except ValueError:
            raise ValueError(f"--episodes takes episode indices, e.g. --episodes 0 1 2 or --episodes 0,1,2; got "
                             f"{' '.join(args.episodes)!r}") from None
    if args.policy_host is not None and args.noise_seed is not None:
        raise ValueError("--noise_seed seeds an in-process policy's noise; a server draws its own (the protocol "
                         "carries none): leave it out with --policy_host")
    if args.policy_host is not None and args.compare:
        raise ValueError("--compare loads the checkpoint each way: give --model_path, not --policy_host")
    if args.policy_host is None:
        policy_config_from_args(args)  # the policy's own flags (--device, --calibration's file, ...) checked here
    elif args.quantize is not None or args.calibration is not None:
        raise ValueError("--quantize and --calibration load the checkpoint in-process: leave them out with "
                         "--policy_host (the server runs what it was started with)")
    for path in args.compare or ():  # every path's name and extra, before the first one runs
        runs = {"quantize": args.quantize, "backend": args.backend, **path_options(path)}  # the path as it loads
        if runs["quantize"] == "int8":  # one line where this CPU refuses int8
            from gr00t_fast.loading import check_quantize

            check_quantize("int8", args.device, runs["backend"])
        require(f"--compare {path}", *path_modules(path))
    for flag in ("out", "save_arrays"):
        if getattr(args, flag) and (error := output_error(f"--{flag}", getattr(args, flag))):
            raise ValueError(error)
    if args.plot and (error := output_error("--plot", Path(args.plot) / "episode_0.png")):
        raise ValueError(error)


def check_against_checkpoint(dataset: RecordedDataset, metadata: Any) -> None:
    """The dataset's widths and fps must be the checkpoint's (its metadata): one line naming the key otherwise."""
    for key, width in dataset.widths().items():
        stats = metadata.stats.get(key)
        if stats is not None and stats.dim != width:
            raise DatasetError(f"{dataset.source}: {key} has {width} values, the checkpoint's statistics have "
                               f"{stats.dim}")
    for key in dataset.data_config.video_keys:
        fps = ((metadata.modalities.get("video") or {}).get(key.split(".", 1)[1]) or {}).get("fps")
        if fps is not None and abs(float(fps) - dataset.fps) > 1e-6:
            raise DatasetError(f"{dataset.layout.root / 'meta' / 'info.json'}: recorded at {dataset.fps:g} fps, the "
                               f"checkpoint was trained at {float(fps):g} fps ({key}): its chunks cover another span "
                               "of time than the recording's")


def load(args: argparse.Namespace, options: dict[str, Any], warmup: bool,
         warmup_batch: bool = False) -> tuple[Any, str]:
    """The policy of `args` with `options` (a --compare path's), and how it runs as its load line says it
    (`loading.loaded_as`: its precision, int8 layers and engine, threads; the result file's `loaded_as`).
    `warmup`: its lazy initialisation paid before the first call is timed (--compare's ms/obs); `warmup_batch`: a
    batch's compile too, where its calls take batches (the int8 blocks compile once more for the first batch of 2 or
    more: 54 s of a full-size path's first call of 8 on the Zen 3, otherwise in its ms/obs). An evaluation alone
    times nothing, and its first call pays it instead (~0.3 s less of `gr00t-fast eval` at 48M than three warm-up
    calls)."""
    from gr00t_fast.loading import create_policy, loaded_as

    policy = create_policy(policy_config_from_args(args), warmup=warmup, warmup_batch=warmup_batch, announce=True,
                           **options)
    return policy, loaded_as(policy)


def prepare(args: argparse.Namespace) -> tuple[Any, RecordedDataset, list[int], Any]:
    """The served policy (or None), the dataset read for the policy's data config, the episodes, the checkpoint's
    metadata (or None): everything checked before any weights load."""
    require("gr00t-fast eval", "pyarrow", "av", *(["matplotlib"] if args.plot else []))
    dataset_path = resolve_dataset(args.dataset_path, args.dataset_revision)
    client = metadata = None
    if args.policy_host is not None:
        from gr00t_fast.serve.client import PolicyClient

        client = PolicyClient(args.policy_host, args.policy_port, timeout_ms=args.policy_timeout_ms,
                              api_token=args.api_token)
        data_config = client.data_config
    else:
        from gr00t_fast.policy.preflight import check_policy_inputs

        args.model_path = str(resolve_checkpoint(args.model_path, args.revision))
        data_config, metadata = check_policy_inputs(args.model_path, args.embodiment_tag, args.data_config)
    dataset = open_dataset(dataset_path, data_config, args.action_horizon, camera_map(args.camera_map) if args.camera_map else None)
    episodes = args.episodes if args.episodes is not None else dataset.episodes
    for episode in episodes:
        episode_steps(dataset, episode, args.steps)  # an episode out of range or too short: one line, now
    if metadata is not None:
        check_against_checkpoint(dataset, metadata)
    return client, dataset, list(episodes), metadata


def read_ahead(args, dataset, episodes, batch: int) -> ReadAhead:
    """The episodes read on a thread from now on (while the policy loads), `batch` episodes at a time."""
    return ReadAhead(dataset, episodes, args.steps, args.action_horizon, args.modality_keys, batch)


def run_path(args, policy, dataset, episodes, joints, batch: int,
             reads: ReadAhead | None = None) -> tuple[list[EpisodeRun], dict]:
    runs = evaluate(policy, dataset, episodes, args.steps, args.action_horizon, args.modality_keys, batch=batch,
                    noise_seed=0 if args.noise_seed is None else args.noise_seed, reads=reads)
    return runs, overall_metrics(runs, args.action_horizon, joints)


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
                     for row in rows)


def report(episode_rows: list[dict], overall: dict, joints: list[str]) -> str:
    rows = [["episode", "steps", "MSE (NVIDIA)", "MAE", "RMSE", "max |error|"]]
    for m in [*episode_rows, {**overall, "episode": "all"}]:
        rows.append([str(m["episode"]), str(m["steps"]), f"{m['mse']:.4g}", f"{m['mae']:.4g}", f"{m['rmse']:.4g}",
                     f"{m['max_abs']:.4g}"])
    lines = [table(rows), "", table([["joint", "MAE", "RMSE", "max |error|"]] + [
        [name, f"{j['mae']:.4g}", f"{j['rmse']:.4g}", f"{j['max_abs']:.4g}"]
        for name, j in overall["joints"].items()])]
    positions = ", ".join("-" if v is None else f"{v:.3g}" for v in overall["mae_by_position"])
    lines += ["", f"MAE by position in the chunk (0 = the observation's step): {positions}",
              "Units are the dataset's own (SO-100: degrees, the gripper 0-100); MSE in squared units. Open loop: "
              "each chunk starts from a recorded observation, so these are not success rates."]
    return "\n".join(lines)


def typed_command(argv: list[str]) -> str:
    """The command as typed, for its `--out` file: `--api_token`'s value hidden."""
    shown = [*argv]
    for i, arg in enumerate(argv):
        if arg.startswith(("--api_token=", "--api-token=")):
            shown[i] = arg.split("=", 1)[0] + "=***"
        elif arg in ("--api_token", "--api-token") and i + 1 < len(argv):
            shown[i + 1] = "***"
    return shlex.join(["gr00t-fast", "eval", *shown])


def load_average() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages; None where the OS does not give them."""
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def machine(args, load_before: list[float] | None) -> dict[str, Any]:
    """This process's machine, as its `--out` file records it: the CPU and its bf16 / int8 units (`cpu_record`, what
    the benchmarks page reads), its cores, the torch threads asked for (`threads_asked`; None: auto) and the load
    average before the run and as it ended. The policy's times are this machine's where it ran in-process; a served
    policy's are its server's (the file names this one `client_environment` then)."""
    return {**cpu_record(), "cores": os.cpu_count(), "threads_asked": args.threads,
            "load_average": {"before": load_before, "after": load_average()}}


def main(argv: list[str] | None = None) -> int:
    command = typed_command(sys.argv[1:] if argv is None else argv)
    load_before = load_average()
    args = build_parser().parse_args(argv)
    try:
        check_args(args)
        client, dataset, episodes, metadata = prepare(args)
        keys = compared_keys(dataset, args.modality_keys)
        joints = [name for key in keys for name in dataset.names(f"action.{key}")]
        print(f"dataset {dataset.layout.root} (LeRobot {dataset.layout.version}, {dataset.fps:g} fps, keys from "
              f"{dataset.source.name}): {len(episodes)} episode(s)", flush=True)
        results: dict[str, tuple[list[EpisodeRun], dict]] = {}
        loaded_as: dict[str, str] = {}
        if args.compare:
            for path in ["reference", *[p for p in dict.fromkeys(args.compare) if p != "reference"]]:
                print(f"--- {path} ---", flush=True)
                batch = path_batch(path, args.batch)
                policy, loaded_as[path] = load(args, path_options(path), warmup=True, warmup_batch=batch > 1)
                results[path] = run_path(args, policy, dataset, episodes, joints, batch)
                del policy
            main_path = next((p for p in ("default", *args.compare) if p in results), "reference")
        else:
            batch = args.batch if client is None else 1  # a served policy: one observation a request
            reads = read_ahead(args, dataset, episodes, batch)  # the first episodes decode while the policy loads
            if client is None:
                policy, loaded_as["policy"] = load(args, {}, warmup=False)
            else:
                policy = client
            results["policy"] = run_path(args, policy, dataset, episodes, joints, batch, reads)
            main_path = "policy"
        runs, overall = results[main_path]
        per_episode = [episode_metrics(run, args.action_horizon, joints) for run in runs]
        print(report(per_episode, overall, joints))
        where = "environment" if client is None else "client_environment"  # whose times these are (`machine`)
        summary: dict[str, Any] = {"command": command, where: machine(args, load_before),
                                   "dataset": str(dataset.layout.root), "version": dataset.layout.version,
                                   "model_path": args.model_path, "policy_host": args.policy_host,
                                   "episodes": episodes, "action_horizon": args.action_horizon,
                                   "modality_keys": keys, "joints": joints, "path": main_path,
                                   "loaded_as": loaded_as,
                                   "per_episode": per_episode, "overall": overall}
        if args.compare:
            rows = compare_rows(results, loaded_as)
            print()
            print(table([["path", "MSE (NVIDIA)", "MAE", "max |error|", "max |dev. from reference|", "ms/obs"]] + [
                [r["path"], f"{r['mse']:.4g}", f"{r['mae']:.4g}", f"{r['max_abs']:.4g}",
                 f"{r['max_deviation_from_reference']:.4g}", f"{r['ms_per_observation']:.1f}"] for r in rows]))
            summary["compare"] = rows
        write_outputs(args, summary, results, main_path, per_episode, joints)
    except (DatasetError, HubError, ValueError, OSError, RuntimeError, ImportError) as e:
        error_line("gr00t-fast eval", e)  # GR00T_FAST_DEBUG=1: with the traceback
        return 2
    except KeyboardInterrupt:
        print("gr00t-fast eval: interrupted", file=sys.stderr)
        return 130
    return 0


def write_outputs(args, summary: dict, results: dict, main_path: str, per_episode: list[dict],
                  joints: list[str]) -> None:
    runs = results[main_path][0]
    for flag in (args.out, args.save_arrays):
        if flag:
            Path(flag).parent.mkdir(parents=True, exist_ok=True)
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2))
        print(f"figures written to {args.out}")
    if args.save_arrays:
        arrays = {f"{name}/{run.episode}": getattr(run, name) for run in runs for name in ("gt", "pred", "state")}
        for path, (other, _) in results.items():
            if path != main_path:
                arrays.update({f"pred_{path}/{run.episode}": run.pred for run in other})
        np.savez(args.save_arrays, **arrays)
        print(f"arrays written to {args.save_arrays}")
    if args.plot:
        from gr00t_fast.evaluation.plot import plot_episode

        for run, metrics in zip(runs, per_episode):
            plot_episode(run, metrics, joints, Path(args.plot) / f"episode_{run.episode}.png")
        print(f"{len(runs)} figure(s) written to {args.plot}")
