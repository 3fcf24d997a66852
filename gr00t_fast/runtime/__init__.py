"""Process-level concerns shared by every layer: the one torch thread every PyTorch call runs on
(`torch_thread`), its CPU threads on a shared machine (`threads`), heap trimming (`heap`), whole-or-absent writes
(`atomic`), the CPU's /proc/cpuinfo fields (`cpuinfo`), telling a Ctrl-C apart from an error (`interrupt`) and the
cache directory (`cache`, its folders made by one process at a time) and progress lines for long work (`progress`).
Nothing here imports another gr00t-fast package.

(`torch_thread`, the decorator, is `gr00t_fast.runtime.torch_thread.torch_thread`: the package attribute is the module.)
Names resolve on first use (`lazy`, as `gr00t_fast` and `gr00t_fast.policy` resolve theirs), so that
`gr00t_fast.runtime.interrupt` (the robot layer's) does not import torch."""

from gr00t_fast.runtime.lazy import lazy_names

_HOMES = {
    "cache_dir": "cache", "checkpoint_fingerprint": "cache", "locked": "cache", "sealed": "cache",
    "lazy_names": "lazy", "keep_freed_memory": "heap", "release_freed_memory": "heap",
    "raised_by_interrupt": "interrupt", "exit_if_busy": "torch_thread", "on_torch_thread": "torch_thread",
    "run_on_torch_thread": "torch_thread", "use_device": "torch_thread", "cpu_threads": "threads",
    "usable_cpus": "threads", "staged": "atomic", "write_atomic": "atomic", "cpuinfo_field": "cpuinfo",
    "cpuinfo_fields": "cpuinfo", "cpu_record": "cpuinfo", "CPU_FLAGS": "cpuinfo",
}
__all__ = sorted(_HOMES)

__getattr__ = lazy_names(__name__, _HOMES)
