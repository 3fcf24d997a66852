"""Keep freed CPU memory in the process: glibc otherwise returns every large per-call buffer to the kernel (mmap /
heap trim) and the next call faults the pages back in: about 1,500 minor page faults per call on the tiny model,
30 with the heap kept (`M_MMAP_THRESHOLD` / `M_TRIM_THRESHOLD`, see mallopt(3)). CUDA memory is not affected."""

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEPT_BYTES = 1 << 30  # buffers up to 1 GiB come from (and return to) the heap; 1 GiB of free heap is kept


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse; False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, KEPT_BYTES)) and bool(libc.mallopt(M_TRIM_THRESHOLD, KEPT_BYTES))
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS, Windows)
        return False
