"""Build and run-time configuration: OpenMP, instruction set, threads."""
from __future__ import annotations

import os

from . import _kernels
from ._validation import default_threads

# KL_FAST_FORCE_BASELINE=1 keeps the portable kernels even on an AVX2 machine.
_FORCE_BASELINE = os.environ.get("KL_FAST_FORCE_BASELINE", "0") not in ("", "0")


def select_isa(force_baseline: bool = False) -> str:
    """Choose the kernels' instruction set (the one table every compiled module
    calls through); returns its name ("baseline" or "avx2+fma")."""
    return _kernels.select_isa(force_baseline)


select_isa(_FORCE_BASELINE)


def openmp_enabled() -> bool:
    """True when the kernels were built with OpenMP, so rows run in parallel."""
    return _kernels.openmp_enabled()


def config() -> dict[str, object]:
    """The configuration as a dict (instruction set, OpenMP, threads)."""
    return {
        "kernel_isa": _kernels.current_isa(),
        "available_isas": ", ".join(_kernels.available_isas()),
        "force_baseline": _FORCE_BASELINE,
        "openmp": _kernels.openmp_enabled(),
        "default_threads": default_threads() if _kernels.openmp_enabled() else 1,
        "cpu_count": os.cpu_count(),
    }


def show_config() -> None:
    """Print which kernel path, OpenMP and thread count are in use."""
    for key, value in config().items():
        print(f"{key}: {value}")
