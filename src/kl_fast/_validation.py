"""Conversion, validation and thread-count helpers shared by the public API."""
from __future__ import annotations

import math
import numbers
import operator
import os
from typing import Any, Iterable, Protocol, SupportsInt

import numpy as np

from . import _kernels
from ._div_kernels import flag as flag  # re-exported: the one definition is compiled

_REAL_KINDS = frozenset("biuf")


def check_real_dtype(dtype: np.dtype, name: str, func: str) -> None:
    """TypeError naming ``name`` unless ``dtype`` is a real numeric dtype."""
    if dtype.kind not in _REAL_KINDS:
        raise TypeError(
            f"{func}: {name} must hold real numbers, got an array of dtype "
            f"{dtype} (complex, object, string and time types are not supported)"
        )


def as_real_array(a: object, name: str, func: str, logs: str = "") -> np.ndarray:
    """``a`` as an ndarray of a real numeric dtype, else TypeError naming it.

    A masked array is refused: its mask would otherwise be silently ignored.
    ``logs``: "p" or "q" where a holds log-probabilities (see _check_float64_range)."""
    if type(a) is np.ndarray and a.dtype.kind in _REAL_KINDS and a.dtype.itemsize <= 8:
        return a    # the common case, taken as it is (every check below would pass it)
    if isinstance(a, np.ma.MaskedArray):
        # a zero probability is log 0 = -inf in log space
        fill = "-np.inf" if logs else "0"
        raise TypeError(
            f"{func}: {name} is a masked array, whose mask would be ignored; pass "
            f"{name}.filled({fill}) to count masked entries as probability zero, or drop "
            f"them with {name}.compressed()"
        )
    if type(a) is not np.ndarray and hasattr(a, "__dask_graph__"):
        _refuse_dask(name, func)
    try:
        arr = a if type(a) is np.ndarray else np.asarray(a)
    except ValueError as exc:   # a ragged nested sequence, above all
        raise ValueError(f"{func}: {name} is not an array of numbers ({exc})") from None
    if arr.dtype == object and arr.ndim == 0:
        # one number (a Python integer beyond int64, a Fraction): as a parameter is named
        v = real_scalar(arr.item())
        if v is not None and not math.isfinite(v) and not (logs == "p" and v < 0):
            raise ValueError(f"{func}: {name} must be finite, got {describe(arr.item())}")
    if arr.dtype == object:
        arr = _object_reals(arr, name, func, logs)
    check_real_dtype(arr.dtype, name, func)
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 8:
        _check_float64_range(arr, name, func, logs)
    return arr


# where a value the float64 kernels cannot hold lies, in the range errors
BEYOND_FLOAT64 = "beyond the float64 range (about 1.8e308)"
BELOW_FLOAT64 = "below the float64 range (about 4.9e-324)"


def _infinite(v: object) -> bool:
    """v is +-inf itself (float() of an integer or a longdouble beyond the
    float64 range is inf, or overflows, too)."""
    if isinstance(v, np.floating):
        return bool(np.isinf(v))
    return isinstance(v, float) and math.isinf(v)


def _object_reals(arr: np.ndarray, name: str, func: str, logs: str = "") -> np.ndarray:
    """An object array (of any shape, 0-d too) that holds only real numbers (NumPy
    holds a Python integer beyond int64, or a list mixing one with floats or
    Fractions, so) as the float64 array they round to.  A value that rounds to
    +-inf or a nonzero one that rounds to 0 is a ValueError naming it, as for a
    longdouble array (_check_float64_range, with its rules for logs).  Any
    other object array (bools, which the kernels' parameters refuse, None,
    Decimal, timedelta64, str, ...) is returned as it is: check_real_dtype
    refuses it."""
    flat = arr.ravel()
    if not all(isinstance(v, numbers.Real)
               and not isinstance(v, (bool, np.bool_, np.timedelta64)) for v in flat):
        return arr
    out = np.empty(arr.shape, dtype=np.float64)
    for i, v in enumerate(flat):
        try:
            f = float(v)
        except OverflowError:   # an integer or a Fraction beyond the float64 range
            f = math.inf if v > 0 else -math.inf
        big = math.isinf(f) and not _infinite(v) and not (logs == "p" and f < 0)
        small = f == 0.0 and v != 0 and not logs
        if big or small:
            at = f" at index {format_index(np.unravel_index(i, arr.shape))}" if arr.ndim else ""
            if big and isinstance(v, numbers.Rational):
                raise ValueError(f"{func}: {name} contains {describe(v)}{at and ','}{at}")
            shown = str(v) if isinstance(v, np.floating) else f"a nonzero {type(v).__name__}"
            where = BEYOND_FLOAT64 if big else BELOW_FLOAT64
            raise ValueError(f"{func}: {name} contains {shown}{at}, {where} that the kernels "
                             f"compute in")
        out.flat[i] = f
    return out


# the public functions that kl_fast.dask mirrors
_DASK_FUNCTIONS = frozenset({"kl_div", "js_div", "kl_div_log", "kl_pairwise", "js_pairwise",
                             "kl_topk", "gaussian_kl", "gaussian_kl_grad", "fit_gaussian"})


def _refuse_dask(name: str, func: str) -> None:
    """TypeError for a Dask collection: computing it here would load it whole."""
    base = func.split(".")[0]
    # kl_fast.dask's Gaussian functions take their data (and mu, sigma) lazily, not
    # the grid, nor a fit's starts (checked when it is called)
    if base in _DASK_FUNCTIONS and name not in ("x", "mu0", "sigma0"):
        hint = f"use kl_fast.dask.{base} for a lazy result, or pass {name}.compute()"
    else:
        hint = f"pass {name}.compute() if it fits in memory"
    raise TypeError(f"{func}: {name} is a Dask collection, which this function would load "
                    f"whole into memory; {hint}")


def beyond_float64(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masks of an extended-precision array's finite values that the cast to
    float64 would turn into +-inf (beyond its range) and of its nonzero ones
    it would turn into 0 (at most half its smallest subnormal, 2**-1075)."""
    magnitude = np.abs(arr)
    big = np.isfinite(arr) & (magnitude > np.finfo(np.float64).max)
    small = (magnitude > 0) & (magnitude <= np.ldexp(np.ones((), arr.dtype), -1075))
    return big, small


def _check_float64_range(arr: np.ndarray, name: str, func: str, logs: str = "") -> None:
    """ValueError for a finite extended-precision value beyond the float64 range
    the kernels compute in (the cast would turn it into inf), or nonzero and
    below its smallest value (the cast would turn it into 0: a q > 0 into a
    zero, making the KL infinite).  Log-probabilities (``logs`` "p" or "q") may
    be tiny: a probability within 2**-1075 of 1, as the cast 0 says; and a
    log_p below -1.8e308 is a p that is 0 in any precision, as the cast -inf
    says (not a log_q: its term p (log_p - log_q) may be finite)."""
    big, small = beyond_float64(arr)
    if logs == "p":
        big &= arr > 0
    checks = [(big, BEYOND_FLOAT64)]
    if not logs:
        checks.append((small, BELOW_FLOAT64))
    for mask, where in checks:
        if mask.any():
            idx = tuple(int(i) for i in np.argwhere(mask)[0])
            what = (f"contains {str(arr[idx])} at index {format_index(idx)}" if arr.ndim
                    else f"is {str(arr[idx])}")
            raise ValueError(f"{func}: {name} {what}, {where} that the kernels compute in")


class HasDtype(Protocol):
    """An array of any kind (NumPy's, Dask's)."""

    @property
    def dtype(self) -> np.dtype: ...


def result_dtype(*arrays: HasDtype) -> np.dtype:
    """float32 when every input is float32 (in either byte order), else float64."""
    for a in arrays:
        if a.dtype.kind != "f" or a.dtype.itemsize != 4:
            return np.dtype(np.float64)
    return np.dtype(np.float32)


def to_kernel_dtype(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``a`` in ``dtype``, native byte order and aligned; no copy when it already is."""
    if a.dtype != dtype or not a.dtype.isnative:
        # (an extended-precision log_p below the float64 range becomes -inf, as meant)
        with np.errstate(over="ignore"):
            return a.astype(dtype)
    if not a.flags.aligned:
        return a.copy()
    return a


def real_scalar(value: Any) -> float | None:
    """value as a float where it is a real number (a Python or NumPy real, or a
    0-d array of one; not a bool), else None; +-inf for an integer beyond the
    float64 range.  float() alone would also parse strings and drop imaginary
    parts."""
    if isinstance(value, (bool, np.bool_, np.timedelta64)):   # (a NumPy integer subclass)
        return None
    if isinstance(value, np.ndarray):
        return float(value) if value.ndim == 0 and value.dtype.kind in "iuf" else None
    if isinstance(value, numbers.Real):
        try:
            return float(value)
        except OverflowError:   # an integer (or a Fraction) beyond the float64 range
            return math.inf if int(math.trunc(value)) > 0 else -math.inf
    return None


def describe(value: Any) -> str:
    """repr(value) for an error message; an integer beyond the float64 range by
    its size (its repr may run to thousands of digits)."""
    if isinstance(value, numbers.Rational) and not isinstance(value, (bool, np.integer)):
        whole = abs(int(math.trunc(value)))
        if whole > _LARGEST_FLOAT_INT:
            kind = "an integer" if isinstance(value, int) else f"a {type(value).__name__}"
            return f"{kind} of {len(str(whole))} digits, beyond the float64 range"
    return repr(value)


_LARGEST_FLOAT_INT = int(np.finfo(np.float64).max)


def check_positive_scalar(value: Any, name: str, func: str, *, allow_one: bool = True) -> float:
    v = real_scalar(value)
    if v is None:
        raise TypeError(f"{func}: {name} must be a real number, got {value!r}")
    if not (v > 0.0 and np.isfinite(v)) or (not allow_one and v == 1.0):
        extra = "" if allow_one else " and not 1"
        # (a positive value that float64, the kernels' precision, rounds to 0)
        zero = ", which is 0 in float64, the precision the kernels compute in" \
            if v == 0.0 and value > 0 else ""
        raise ValueError(f"{func}: {name} must be positive and finite{extra}, "
                         f"got {describe(value)}{zero}")
    return v


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# No call starts more threads than the process may run on: more would only contend,
# and a request in the thousands would make OpenMP abort the interpreter.
_CPU_COUNT = _usable_cpus()


def default_threads() -> int:
    """Threads used when num_threads is None: KL_FAST_NUM_THREADS, else all cores."""
    env = os.environ.get("KL_FAST_NUM_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"KL_FAST_NUM_THREADS must be a positive integer, got {env!r}") from None
        if n >= 1:
            return n
        raise ValueError(f"KL_FAST_NUM_THREADS must be a positive integer, got {env!r}")
    return _CPU_COUNT


# Below this many elements a thread team costs more than it saves, even awake
# (two threads against one on a hot team, rows of 10 to 1,000: 1.45-1.6x at
# 8,192 elements, 1.7-1.9x at 16,384; docs/core.md).
_PARALLEL_MIN_ELEMENTS = 1 << 13

_kernels.configure_threads(default_threads, _CPU_COUNT)
# A bad KL_FAST_NUM_THREADS fails the import, as a bad KL_FAST_ISA does: only calls
# that may use threads read it, so small calls would pass it unnoticed and large
# ones fail.  (Set later by the program, it is read by those calls.)
default_threads()


def integer_or_none(value: Any) -> int | None:
    """value as a Python int where it is an integer (Python's or NumPy's, or
    anything with __index__; a bool is not one, as for NumPy's axis), else None."""
    if isinstance(value, (bool, np.bool_)):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def resolve_threads(num_threads: Any, n_rows: int, n_elements: int, func: str) -> int:
    """Threads for n_rows rows of n_elements elements in all, by the compiled
    entries' rule (``_kernels.threads``): num_threads capped by the rows and
    CPUs; by default one below _PARALLEL_MIN_ELEMENTS, else all the default
    threads where waking them pays.  Explains a num_threads it cannot take."""
    chosen = _kernels.threads(num_threads, n_rows, n_elements, _PARALLEL_MIN_ELEMENTS)
    if chosen:
        return int(chosen)
    n = integer_or_none(num_threads)
    if n is None:
        raise TypeError(f"{func}: num_threads must be an integer or None, got {num_threads!r}")
    if n < 1:
        raise ValueError(f"{func}: num_threads must be >= 1, got {n}")
    # another integer type (numpy's), or one beyond a C long
    return int(_kernels.threads(min(n, _CPU_COUNT), n_rows, n_elements, _PARALLEL_MIN_ELEMENTS))


def check_scalar_axis(axis: Any, func: str) -> None:
    """Two scalars: axis -1 (the default; an integer of any type, as in
    normalize_axes), None, () and (-1,) mean their single term; any other axis
    is out of range for a 0-d array (normalize_axes explains it)."""
    if axis is None:
        return
    items = axis if isinstance(axis, tuple) else (axis,)
    values = [integer_or_none(a) for a in items]
    if not (values == [-1] or (isinstance(axis, tuple) and not values)):
        normalize_axes(axis, 0, func)


def normalize_axes(axis: Any, ndim: int, func: str) -> tuple[int, ...] | None:
    """Sorted tuple of non-negative axes, or None for all axes."""
    if axis is None:
        return None
    # as NumPy's reductions: an int or a tuple of ints (a list, a bool: TypeError)
    axes = axis if isinstance(axis, tuple) else (axis,)
    out = []
    for item in axes:
        ax = integer_or_none(item)
        if ax is None:
            raise TypeError(f"{func}: axis must be an integer, a tuple of integers or None, got {axis!r}")
        if not -ndim <= ax < ndim:
            raise np.exceptions.AxisError(ax, ndim, f"{func}: axis")
        out.append(ax % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{func}: repeated axis in {axis!r}")
    return tuple(sorted(out))


def format_index(idx: Iterable[SupportsInt]) -> str:
    ints = tuple(int(i) for i in idx)
    if len(ints) == 1:
        return f"[{ints[0]}]"
    return "[" + ", ".join(str(i) for i in ints) + "]"


def describe_bad(value: float) -> str:
    if np.isnan(value):
        return "NaN"
    if np.isinf(value):
        return f"an infinite value ({value!r})"
    return f"a negative value ({value!r})"


__all__ = [
    "check_real_dtype", "as_real_array", "result_dtype", "to_kernel_dtype", "check_positive_scalar",
    "real_scalar", "describe", "BEYOND_FLOAT64", "BELOW_FLOAT64",
    "default_threads", "resolve_threads", "normalize_axes", "format_index", "describe_bad",
    "_kernels",
]
