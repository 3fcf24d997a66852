"""Open-loop evaluation on recorded datasets (`gr00t-fast eval`), above `policy/` as `control/` is: data flows one way,
dataset (`gr00t_fast.data`) -> observation -> policy -> actions -> metrics.

Names resolve on first use (`runtime.lazy`), so that `gr00t-fast eval --help` reads no dataset code."""

from gr00t_fast.runtime.lazy import lazy_names

_HOMES = {
    "PATHS": "compare", "compare_rows": "compare", "path_options": "compare", "episode_metrics": "metrics",
    "overall_metrics": "metrics", "DEFAULT_STEPS": "open_loop", "EpisodeRun": "open_loop", "evaluate": "open_loop",
    "inference_points": "open_loop", "ReadAhead": "open_loop",
}
__all__ = sorted(_HOMES)

__getattr__ = lazy_names(__name__, _HOMES)
