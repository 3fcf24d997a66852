"""The C heap of a process that runs inference: freed memory kept for reuse between calls, within a bound, and given
back when the process idles.

glibc otherwise returns every large per-call buffer to the kernel (mmap / heap trim) and the next call faults the
pages back in: about 1,500 minor page faults per call on the tiny model, 30 with the heap kept (`M_MMAP_THRESHOLD` /
`M_TRIM_THRESHOLD`, see mallopt(3)). What is kept is bounded: at most `KEPT_BYTES` of free memory at the top of a heap,
two heaps (arenas) for all threads instead of eight per core, and `release_freed_memory` (malloc_trim) returns every
free page when a server idles. CUDA memory is not affected."""

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
MMAP_BYTES = 1 << 30  # buffers up to 1 GiB come from (and return to) the heap
KEPT_BYTES = 256 << 20  # free memory above this at the top of the heap goes back to the kernel at once
ARENAS = 2  # the torch thread and the rest (glibc's default: 8 per core, each with a heap of its own)


@functools.cache  # find_library runs ldconfig: once per process, not at every idle spell
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"))
    except (OSError, TypeError):
        return None


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse, within `KEPT_BYTES`; False where the C library is not
    glibc."""
    libc = _libc()
    try:
        return all(bool(libc.mallopt(option, value)) for option, value in
                   ((M_MMAP_THRESHOLD, MMAP_BYTES), (M_TRIM_THRESHOLD, KEPT_BYTES), (M_ARENA_MAX, ARENAS)))
    except AttributeError:  # not glibc (musl, macOS, Windows)
        return False


def release_freed_memory() -> bool:
    """Return every free page of every heap to the kernel (malloc_trim(0)): for a process that idles, and after each
    layer a load reads and frees (`gr00t_fast.model.deferred`, `gr00t_fast.model.swap`). False where the C library
    is not glibc."""
    libc = _libc()
    try:
        libc.malloc_trim(0)
        return True
    except AttributeError:
        return False
