"""Build and run-time configuration: OpenMP, instruction set, threads."""
from __future__ import annotations

import os

from . import _kernels, _openmp
from ._validation import default_threads

# The kernels' instruction set is the best this CPU and build have, unless the
# environment names one: KL_FAST_ISA=baseline|avx2+fma|avx512 (any case; "avx2"
# means avx2+fma), or KL_FAST_FORCE_BASELINE=1, which keeps the portable kernels
# on any machine.  A name this machine cannot run, or the two variables asking for
# different paths, fails the import with the reason and the available paths.
_FORCE_BASELINE = os.environ.get("KL_FAST_FORCE_BASELINE", "0") not in ("", "0")
_ISA = os.environ.get("KL_FAST_ISA", "") or None


def select_isa(isa: str | None = None) -> str:
    """Choose the kernels' instruction set (the one table every compiled module
    calls through) by name ("baseline", "avx2+fma", "avx512"), or the default
    for this CPU when None; returns its name.  Switch before any work: a call
    running on another thread meanwhile may mix the two."""
    if isa is not None and not isinstance(isa, str):
        raise TypeError(f"select_isa: isa must be a name or None, got {isa!r}")
    return _kernels.select_isa(isa)


def requested_isa() -> str | None:
    """The path the environment asks for (None: the default), or ValueError
    when KL_FAST_ISA and KL_FAST_FORCE_BASELINE disagree."""
    isa = _ISA.lower() if _ISA else None
    isa = "avx2+fma" if isa == "avx2" else isa
    if _FORCE_BASELINE:
        if isa not in (None, "baseline"):
            raise ValueError(f"KL_FAST_ISA={_ISA!r} and KL_FAST_FORCE_BASELINE=1 ask for "
                             "different kernel paths")
        return "baseline"
    return isa


def _select_from_environment() -> None:
    try:
        select_isa(requested_isa())
    except ValueError as exc:
        raise RuntimeError(f"kl_fast: KL_FAST_ISA={_ISA!r}: {exc}") from None


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
        "requested_isa": requested_isa() or "default",
        "openmp": _kernels.openmp_enabled(),
        "default_threads": default_threads() if _kernels.openmp_enabled() else 1,
        "cpu_count": os.cpu_count(),
        "openmp_spincount": (f"GOMP_SPINCOUNT={_openmp.applied} set at load"
                             if _openmp.applied and _kernels.openmp_enabled()
                             else "as the environment set it"),
    }


def show_config() -> None:
    """Print which kernel path, OpenMP and thread count are in use."""
    for key, value in config().items():
        print(f"{key}: {value}")
