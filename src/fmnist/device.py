"""Where and how precisely the math runs: device, threads, autocast."""
from __future__ import annotations

import contextlib
import functools
import os
import sys
from typing import Callable, ContextManager

import torch

from .errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but torch sees no CUDA GPU; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"device={name!r}: use auto, cpu or cuda")
    return torch.device(name)


def usable_cores() -> int:
    """Cores this process may run on (respects taskset/cgroups, unlike os.cpu_count()), capped
    by OMP_NUM_THREADS where set: how a comparison's workers (and Ray's tasks) get their share."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    share = os.environ.get("OMP_NUM_THREADS", "")
    return max(1, min(cores, int(share))) if share.isdigit() and int(share) > 0 else cores


def cpu_name() -> str:
    """The CPU's model name ("AMD EPYC", "Intel(R) Xeon(R) ...") from /proc/cpuinfo on Linux,
    else what `platform` knows ("x86_64" at worst): benchmarks name the machine their figures
    come from, and two 2-core VMs of one cloud can differ 1.6x in speed."""
    import platform
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def check_threads(threads: int) -> int:
    """`threads`, refused when more than the cores this process may use."""
    cores = usable_cores()
    if threads > cores:
        raise ConfigError(f"threads={threads}: this process may use {cores} core(s); give "
                          f"--threads {cores} or fewer (0 = all of them)")
    return threads


def set_threads(threads: int = 0) -> int:
    """Use `threads` CPU threads for torch ops (0: every usable core); returns the number.
    Every command that computes starts here, so this also keeps freed memory for reuse
    (keep_freed_memory).

    More threads than cores only slows the math down and starves other processes (100,000
    crashed torch after seconds), so that is refused."""
    n = check_threads(threads) or usable_cores()
    torch.set_num_threads(n)
    keep_freed_memory()
    return n


# glibc's malloc gives big freed blocks back to the kernel: a block above its mmap threshold
# (128 KiB at first, rising to at most 32 MiB) is unmapped when freed, and free memory at the
# top of the heap beyond its trim threshold is released. torch on a CPU frees and allocates
# its batches and activations again at every step, so each step touches fresh pages, which
# the kernel must fault in and zero: ~2,000 page faults a step of the default cnn, ~100 of
# the fast MLP. Freed memory kept for reuse (what the jemalloc and tcmalloc settings advised
# for torch on CPUs do) removes them: the default run 0.93x the time (benchmarks/malloc.py);
# the price is that a process keeps its peak memory until it ends.
MMAP_THRESHOLD = 256 << 20  # bytes: smaller blocks come from the heap, and go back to it
TRIM_THRESHOLD = 1 << 30  # bytes of free memory at the heap's top kept, not released
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (<malloc.h>)


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse (see above), once a process.
    False where that cannot be done (not Linux, not glibc, or refused): nothing changes
    there but the speed."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):  # a C library without mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # an older glibc refuses a threshold above 32 MiB (its largest dynamic one): then 32 MiB
    kept = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) or mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    return bool(kept) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def cpu_has_fast_bf16() -> bool:
    """True on CPUs with bf16 instructions (AVX512-BF16 or AMX), where oneDNN runs bf16
    convolutions about 1.5x faster than fp32 (benchmarks/model_speed.py)."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these probes: play safe
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """auto: bf16 autocast on CUDA GPUs that support it and on CPUs with bf16 instructions;
    fp32 elsewhere (bf16 emulated in software would be slower than fp32)."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def uses_convolutions(model: torch.nn.Module) -> bool:
    return any(p.ndim == 4 for p in model.parameters())


def autocast_factory(precision: str, device: torch.device) -> Callable[[], ContextManager]:
    """A zero-argument factory of the autocast context for the forward pass."""
    if precision == "bf16":
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext
