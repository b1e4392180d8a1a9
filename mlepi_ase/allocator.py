"""Keep freed memory in the process (glibc ``mallopt``): faster PyTorch on the CPU for graph models.

Why
---
On a CPU, PyTorch takes every tensor from the C library's ``malloc``.  glibc serves allocations above
the *mmap threshold* (128 KiB at start, raised dynamically up to 32 MiB) with fresh ``mmap`` pages and
returns freed memory at the top of the heap to the kernel once it exceeds the *trim threshold*.  A
HedgeNet model allocates and frees edge-sized tensors of 10–200 MB many times per call (messages of
E edges × 672 components in float32, and their gradients); each fresh page then costs a page fault
and a kernel zero-fill before PyTorch writes it.  For these workloads that costs about as much as the
arithmetic: measured on a 2-core CPU machine (one thread, ``benchmarks/bench_edge_tensor_product.py``,
``benchmarks/results/edge_tensor_product_cpu.json``), HedgeNet-Phonon with its fused edge tensor product takes
1.08× longer per training step (8 × 64 atoms, forces loss) and 1.62× longer per energy + forces call on 2304
atoms with glibc's defaults than with freed memory kept (with e3nn's product: 1.20× and 1.60×; with the
fused product's previous layout, which made more fresh edge-sized temporaries: 1.36× and 2.08×).

What
----
:func:`retain_freed_memory` sets, for the whole process, ``M_MMAP_THRESHOLD`` = 1 GiB (only larger
blocks are mapped afresh; where glibc refuses that value, its classic maximum of 32 MiB),
``M_TRIM_THRESHOLD`` ≈ 2 GiB (freed memory is kept up to that) and ``M_TOP_PAD`` = 1 GiB (the heap
grows in large steps).  The price is that the process does not give freed memory back to the system
(up to the trim threshold) until it ends, and blocks below 1 GiB come from the heap, where fragmentation
may raise the peak resident memory (not measured) — right for a command-line run or a training, less so for
a long-lived interactive session that also does other things.  The ``mlepi`` command calls it at start (set
``MLEPI_RETAIN_FREED_MEMORY=0`` to leave the C library's defaults); scripts may call it themselves.
It does nothing outside glibc (macOS, musl, Windows).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

__all__ = ["retain_freed_memory", "ENV_SWITCH"]

ENV_SWITCH = "MLEPI_RETAIN_FREED_MEMORY"
"""Environment variable: ``0`` / ``false`` / ``no`` keeps the C library's defaults in the ``mlepi`` command."""

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameter codes
MMAP_THRESHOLD = 2 ** 30
MMAP_THRESHOLD_FALLBACK = 32 * 2 ** 20  # glibc's limit before it allowed larger values
TRIM_THRESHOLD = 2 ** 31 - 1
TOP_PAD = 2 ** 30


def enabled_by_environment() -> bool:
    """False when :data:`ENV_SWITCH` is set to ``0``, ``false``, ``no`` or ``off``."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def retain_freed_memory(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD,
                        top_pad: int = TOP_PAD) -> bool:
    """Tell glibc's ``malloc`` to keep freed memory in this process (see the module docstring).

    Parameters
    ----------
    mmap_threshold, trim_threshold, top_pad
        Bytes; ``mallopt`` takes C ints (at most 2³¹ − 1).  An mmap threshold glibc refuses is replaced
        by :data:`MMAP_THRESHOLD_FALLBACK` when smaller.

    Returns
    -------
    bool
        True when all three settings were accepted; False outside glibc or when one was refused.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    values = (int(mmap_threshold), int(trim_threshold), int(top_pad))
    if not all(0 <= v < 2 ** 31 for v in values):
        raise ValueError(f"mallopt values must lie in [0, 2**31), got {values}")
    mmap_ok = bool(mallopt(_M_MMAP_THRESHOLD, values[0]))
    if not mmap_ok and values[0] > MMAP_THRESHOLD_FALLBACK:
        mmap_ok = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_FALLBACK))
    trim_ok = bool(mallopt(_M_TRIM_THRESHOLD, values[1]))
    pad_ok = bool(mallopt(_M_TOP_PAD, values[2]))
    return mmap_ok and trim_ok and pad_ok
