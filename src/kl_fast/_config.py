"""Build and run-time configuration: OpenMP, instruction set, threads."""
from __future__ import annotations

import os

from . import _kernels, _openmp
from ._validation import default_threads

# The kernels' instruction set is the best this CPU and build have, unless the
# environment names one: KL_FAST_ISA=baseline|avx2+fma|avx512 (an unknown or
# unavailable name fails the import with the available ones), or
# KL_FAST_FORCE_BASELINE=1, which keeps the portable kernels on any machine.
_FORCE_BASELINE = os.environ.get("KL_FAST_FORCE_BASELINE", "0") not in ("", "0")
_ISA = os.environ.get("KL_FAST_ISA", "") or None


def select_isa(isa: str | bool | None = None) -> str:
    """Choose the kernels' instruction set (the one table every compiled module
    calls through) by name ("baseline", "avx2+fma", "avx512"); True means
    "baseline" and None or False the best available.  Returns its name."""
    if isinstance(isa, bool):
        isa = "baseline" if isa else None
    return _kernels.select_isa(isa)


def _select_from_environment() -> None:
    try:
        select_isa(True if _FORCE_BASELINE else _ISA)
    except ValueError as exc:
        raise ImportError(f"kl_fast: KL_FAST_ISA={_ISA!r}: {exc}") from None


_select_from_environment()


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
        "openmp_spincount": _openmp.applied or "as the environment set it",
    }


def show_config() -> None:
    """Print which kernel path, OpenMP and thread count are in use."""
    for key, value in config().items():
        print(f"{key}: {value}")
