"""Open-loop evaluation on recorded datasets (`gr00t-fast eval`), above `policy/` as `control/` is: data flows one way,
dataset (`gr00t_fast.data`) -> observation -> policy -> actions -> metrics."""

from gr00t_fast.evaluation.compare import PATHS, compare_rows, path_options
from gr00t_fast.evaluation.metrics import episode_metrics, overall_metrics
from gr00t_fast.evaluation.open_loop import DEFAULT_STEPS, EpisodeRun, evaluate, inference_points

__all__ = ["DEFAULT_STEPS", "EpisodeRun", "PATHS", "compare_rows", "episode_metrics", "evaluate", "inference_points",
           "overall_metrics", "path_options"]
