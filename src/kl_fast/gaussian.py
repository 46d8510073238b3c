"""The Gaussian on a grid: KL value, gradient and fitting (the public API).

q(mu, sigma) is the normalised Gaussian sampled on the grid x,
q_i = exp(-(x_i - mu)^2 / (2 sigma^2)) / sum_j exp(-(x_j - mu)^2 / (2 sigma^2)),
and every function here works with KL(p || q) = sum over p_i > 0 of
p_i log(p_i / q_i), log q_i evaluated analytically so the divergence stays
finite where q_i underflows.  This layer converts, checks, broadcasts and
allocates; the work is one call into ``_gaussian``.
"""
from __future__ import annotations

import enum
import math
import warnings
from typing import (Any, Generic, Literal, NoReturn, Optional, Sequence, TypeVar, Union, cast,
                    overload)

import numpy as np
import numpy.typing as npt

from . import _gaussian
from ._api import _as_rows, scaled_by_max
from ._typing import ArrayLike, F64Array, F64Result, Nested2D
from ._validation import (as_real_array, describe, flag, format_index, integer_or_none,
                          resolve_threads)


__all__ = ["gaussian_kl", "gaussian_kl_grad", "fit_gaussian", "GaussianFit", "FitStatus"]

_FLOAT32 = np.dtype(np.float32)
_FLOAT64 = np.dtype(np.float64)


# ---- conversion and checks ---------------------------------------------------------

def _threads(num_threads: Any, items: int, n: int, func: str, passes: float = 1.0) -> int:
    """Threads for `items` independent rows or parameter sets on a grid of n points,
    each taking `passes` passes over it (a fit: ``_gaussian.fit_passes``).

    Several items run in parallel (by default for large batches); a single item
    splits its grid into blocks over the threads, by default from
    ``_gaussian.SPLIT_MIN`` points (``_gaussian.row_threads``, the compiled
    entries' rule), in both cases where waking the threads pays for the work.
    Results are the same for every thread count.
    """
    work = items * n * passes
    if items > 1:
        return resolve_threads(num_threads, items, int(work), func)
    nt = _gaussian.row_threads(num_threads, n, work)
    # 0: not a plain int >= 1 -- another integer type, or a value to explain
    return nt or resolve_threads(num_threads, max(1, -(-n // _gaussian.BLOCK)), int(work), func)


def _describe(value: float) -> str:
    if np.isnan(value):
        return "NaN"
    if np.isinf(value):
        return f"an infinite value ({float(value)!r})"
    return f"a negative value ({float(value)!r})"


def _check_grid_shapes(p_shape: tuple[int, ...], x_shape: tuple[int, ...], func: str,
                       name: str = "p") -> None:
    """ValueError unless x is 1-D and as long as p's last axis."""
    if len(p_shape) == 0:
        raise ValueError(f"{func}: {name} must have at least one dimension (its last axis runs "
                         f"along the grid), got a scalar")
    if len(x_shape) != 1:
        raise ValueError(f"{func}: x must be a 1-D grid, got an array of shape {x_shape}")
    if x_shape[0] != p_shape[-1]:
        raise ValueError(f"{func}: x has {x_shape[0]} points but {name} has {p_shape[-1]} along "
                         f"its last axis (shape {p_shape}); they must match")


def _prepare(p: object, x: object, func: str, normalize: bool, num_threads: Any, *,
             name: str = "p", origin: Sequence[int] | None = None, passes: float = 1.0
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, ...], int, int]:
    """Rows of p as an (m, n) kernel array, x as float64, and the p-side sums.

    Returns (p2, xk, psums, batch_shape, n_threads, k): xk is the grid in units
    of 2**k (see _grid_exponent), psums are taken on it.  ``origin``: where p's
    batch starts in a larger array (p a block of it), for the index in errors.
    """
    p_in = as_real_array(p, name, func)
    x_in = as_real_array(x, "x", func)
    _check_grid_shapes(p_in.shape, x_in.shape, func, name)
    n = p_in.shape[-1]
    dtype = _FLOAT32 if p_in.dtype == _FLOAT32 else _FLOAT64
    if p_in.dtype != dtype or not p_in.dtype.isnative:
        pk = p_in.astype(dtype)
    elif not p_in.flags.aligned:
        pk = p_in.copy()
    else:
        pk = p_in
    # a copy unless x is already what the kernels load (ascontiguousarray would
    # pass an unaligned contiguous x through)
    xk = x_in if (x_in.dtype == _FLOAT64 and x_in.flags.c_contiguous and x_in.flags.aligned
                  and x_in.dtype.isnative) else x_in.astype(_FLOAT64, order="C")
    batch_shape = pk.shape[:-1]
    m = math.prod(batch_shape)
    p2 = _as_rows(pk, m, n)
    nt = _threads(num_threads, m, n, func, passes)
    k = 0
    if m == 0:
        psums = np.empty((0, 7), dtype=np.float64)
        bad = ~np.isfinite(xk)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{func}: x contains {_describe(xk[i])} at index [{i}]; "
                             f"the grid must be finite")
    else:
        k = _grid_exponent(xk)  # 0 for a grid with a non-finite value: reported below
        if k:
            xk = np.ldexp(xk, -k)
        p2, psums, status = _psums(p2, xk, normalize, nt)
        if status.any():
            _explain(status, p2, xk, batch_shape, func, name, origin, k)
    return p2, xk, psums, batch_shape, nt, k


# normalize: rows whose sum of p is beyond 2**20 or below 2**-20 are summed again scaled
_LOG2_SUM_REDO = 20
_MASS_MIN = math.ldexp(1.0, -_gaussian.MASS_SHIFT)


def _psums(p2: np.ndarray, xk: np.ndarray, normalize: bool,
           nt: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p2, psums, status): the p-side sums of the rows p2 on the grid xk.  With
    normalize, rows whose sums overflow or are tiny are first scaled by powers
    of two (exactly: normalising is scale-invariant), and the sums become those
    of p / sum(p) where every row is valid."""
    m = p2.shape[0]
    psums = np.empty((m, 7), dtype=np.float64)
    status = np.empty(m, dtype=np.int8)
    _gaussian.gaussian_psums_rows(p2, xk, psums, status, nt)
    # rows whose sums overflowed, or whose sum of p is below 2**-MASS_SHIFT (their
    # moments lose precision in subnormals)
    far = (status == _gaussian.P_OVERFLOW) | ((status == 0) & (psums[:, 1] < _MASS_MIN))
    if normalize and far.any():
        p2 = scaled_by_max(p2, (1,), far[:, None])
        _gaussian.gaussian_psums_rows(p2, xk, psums, status, nt)
    shift = np.zeros(m, dtype=np.intc)
    if normalize and not status.any():
        # p log p summed at a sum of p far from 1 cancels against log(sum p) below
        # (an error of eps |log sum p|): such rows' sums are taken again from p
        # times the power of two 2**-e that brings their sum into [1/2, 1), in
        # float64 (exact for float32 p; a float64 element rounded into the
        # subnormals weighs less than 2**-1021 of the sum).  The q pass reads p
        # itself, with the factor 1 / sum p.
        e = np.frexp(psums[:, 1])[1]
        redo = np.abs(e) > _LOG2_SUM_REDO
        if redo.any():
            shift[redo] = e[redo]
            sub = np.ldexp(p2[redo].astype(np.float64), -shift[redo, None])
            sub_sums = np.empty((sub.shape[0], 7), dtype=np.float64)
            sub_status = np.empty(sub.shape[0], dtype=np.int8)
            _gaussian.gaussian_psums_rows(sub, xk, sub_sums, sub_status, nt)
            psums[redo] = sub_sums
            status[redo] = sub_status
    if normalize and not status.any():
        total = psums[:, 1].copy()
        psums[:, 1] = 1.0
        psums[:, 2] /= total
        psums[:, 3] /= total
        psums[:, 4] = psums[:, 4] / total - np.log(total)
        psums[:, 5] = np.ldexp(1.0 / total, -shift)
        psums[:, 6] += _gaussian.P_NORMALIZED
    return p2, psums, status


# Grids whose largest |x| lies outside [2**-100, 2**100] are rescaled (see
# _grid_exponent); the compiled fast paths apply the same bounds to p's mean
# and standard deviation and leave such grids to this layer.
_GRID_MIN, _GRID_MAX = 2.0 ** -100, 2.0 ** 100


def _grid_exponent(xk: np.ndarray) -> int:
    """k with the grid x * 2**-k working in units near its own scale: 0 when
    the largest |x| is within [2**-100, 2**100] (or is 0), else its exponent.
    q depends on (x - mu) / sigma only, so with mu and sigma scaled alike the
    divergence is the same, to the bit, and no square under- or overflows."""
    top = float(np.max(np.abs(xk), initial=0.0))  # an empty grid: reported by _explain
    if not (0.0 < top <= np.finfo(np.float64).max) or _GRID_MIN <= top <= _GRID_MAX:
        return 0
    return math.frexp(top)[1]


def _explain(status: np.ndarray, p2: np.ndarray, xk: np.ndarray, batch_shape: tuple[int, ...],
             func: str, name: str, origin: Sequence[int] | None = None, k: int = 0) -> NoReturn:
    """Raise the error of the first row whose status is not P_OK (xk: the grid
    in units of 2**k)."""
    r = int(np.argmax(status != 0))
    code = int(status[r])
    row_idx = tuple(int(i) for i in np.unravel_index(r, batch_shape)) if batch_shape else ()
    if origin is not None:
        row_idx = tuple(i + o for i, o in zip(row_idx, origin))
    if code == _gaussian.P_BAD_X:
        i = int(np.argmax(~np.isfinite(xk)))
        raise ValueError(f"{func}: x contains {_describe(xk[i])} at index [{i}]; "
                         f"the grid must be finite")
    row = np.asarray(p2[r], dtype=np.float64)
    if code == _gaussian.P_BAD_P:
        j = int(np.argmax(~((row >= 0) & np.isfinite(row))))
        raise ValueError(f"{func}: {name} contains {_describe(row[j])} at index "
                         f"{format_index(row_idx + (j,))}; it must be finite and non-negative")
    where = f" at index {format_index(row_idx)}" if batch_shape else ""
    if code == _gaussian.P_ZERO and xk.size == 0:
        raise ValueError(f"{func}: the grid x is empty (and {name} has no values); "
                         f"it needs at least one point")
    if code == _gaussian.P_ZERO:
        raise ValueError(f"{func}: {name} is all zero{where}; it must have positive mass")
    j = int(np.argmax(row))
    span = f"{math.ldexp(float(np.min(xk)), k):g} to {math.ldexp(float(np.max(xk)), k):g}"
    raise ValueError(f"{func}: the sums of {name}{where} overflow ({name}'s largest value "
                     f"{row[j]:g} at index {format_index(row_idx + (j,))}, the grid spanning "
                     f"{span}: sum p, sum p log p or sum p (x - mean)**2 is beyond the double "
                     f"range); pass normalize=True (it rescales them) or rescale {name}")


def _param(value: object, name: str, func: str, *, positive: bool) -> np.ndarray:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{func}: {name} must be a real number, got {value!r}")
    a = as_real_array(value, name, func)
    if a.dtype == np.bool_:
        raise TypeError(f"{func}: {name} must hold real numbers, got an array of bool")
    if a.dtype != _FLOAT64 or not a.flags.aligned:
        # the kernels load float64 with aligned loads: an unaligned view (a slice of
        # a byte buffer, an array received over a network) is copied first
        a = a.astype(np.float64)
    ok = np.isfinite(a) & (a > 0) if positive else np.isfinite(a)
    if not ok.all():
        idx = tuple(int(i) for i in np.argwhere(~ok)[0])
        where = f" at index {format_index(idx)}" if a.ndim else ""
        what = "positive and finite" if positive else "finite"
        raise ValueError(f"{func}: {name} must be {what}, got {float(a[idx])!r}{where}")
    return a


def _scalar(value: Any, name: str, func: str, *, positive: bool) -> float:
    # a bool is neither float nor int by type: _param refuses it
    if type(value) is float or type(value) is int:
        try:
            v = float(value)
        except OverflowError:   # an integer beyond the float64 range
            what = "positive and finite" if positive else "finite"
            raise ValueError(f"{func}: {name} must be {what}, got {describe(value)}") from None
        if math.isfinite(v) and (v > 0 or not positive):
            return v
    a = _param(value, name, func, positive=positive)
    if a.ndim != 0:
        raise ValueError(f"{func}: {name} must be a scalar, got an array of shape {a.shape}")
    return float(a)


def _unwrap(a: np.ndarray, shape: tuple[int, ...]) -> np.float64 | np.ndarray:
    a = a.reshape(shape)
    return cast(np.float64, a[()]) if a.ndim == 0 else a


def _evaluate(p: ArrayLike, x: ArrayLike, mu: ArrayLike, sigma: ArrayLike, func: str,
              normalize: bool, num_threads: Any, want_grad: bool) -> Any:
    """gaussian_kl's value (want_grad False) or gaussian_kl_grad's triple."""
    p2, xk, psums, pbatch, _, k = _prepare(p, x, func, normalize, num_threads)
    out = _evaluate_prepared(p2, xk, psums, pbatch, k, mu, sigma, func, normalize, num_threads,
                             1 if want_grad else 0)
    return tuple(out) if want_grad else out[0]


_TINIEST = np.nextafter(0.0, 1.0)
_DBL_MIN = float(np.finfo(np.float64).tiny)

# values _evaluate_prepared returns per order: kl; + dmu, dsigma; + the Hessian's
# (mu, mu), (mu, sigma) and (sigma, sigma) entries
_N_OUT = (1, 3, 6)


def _evaluate_prepared(p2: np.ndarray, xk: np.ndarray, psums: np.ndarray,
                       pbatch: tuple[int, ...], k: int, mu: ArrayLike, sigma: ArrayLike,
                       func: str, normalize: bool, num_threads: Any,
                       order: int) -> list[np.float64 | np.ndarray]:
    """[kl] (order 0), [kl, dmu, dsigma] (1) or those and the Hessian's three
    entries (2), each of the broadcast shape of p's batch, mu and sigma, from
    the prepared rows of _prepare."""
    mu_a = _param(mu, "mu", func, positive=False)
    sigma_a = _param(sigma, "sigma", func, positive=True)
    try:
        shape = np.broadcast_shapes(pbatch, mu_a.shape, sigma_a.shape)
    except ValueError:
        raise ValueError(f"{func}: the batch shapes of p {pbatch} (its shape without the grid "
                         f"axis), mu {mu_a.shape} and sigma {sigma_a.shape} do not broadcast "
                         f"together") from None
    K = math.prod(shape)
    n = p2.shape[1]
    if pbatch == shape and p2.shape[0] == K:
        rows = np.arange(K, dtype=np.intp)
    else:
        rows = np.broadcast_to(np.arange(p2.shape[0], dtype=np.intp).reshape(pbatch), shape)
        rows = np.ascontiguousarray(rows).reshape(K)
    # mu and sigma in the grid's units (2**k, exact; inf or 0 beyond the range,
    # then redone below)
    mu_o = np.ascontiguousarray(np.broadcast_to(mu_a, shape)).reshape(K)
    sigma_o = np.ascontiguousarray(np.broadcast_to(sigma_a, shape)).reshape(K)
    with np.errstate(over="ignore", under="ignore"):
        mu_b, sigma_b = np.ldexp(mu_o, -k), np.ldexp(sigma_o, -k)
    # a sigma below the grid's units by more than the double range: q sits on the
    # grid points nearest mu at the smallest positive sigma already, and every
    # value is its limit (0 or +-inf, or the KL's constant part) there too
    sigma_b = np.maximum(sigma_b, _TINIEST)
    if n and xk.min() == xk.max():
        # a grid of one value: q is uniform on it for every (mu, sigma), so the
        # values are those at any of them and the derivatives 0
        mu_b[:] = xk[0]
        sigma_b[:] = 1.0
    nt = _threads(num_threads, K, n, func)
    out = _eval_kernel(p2, xk, psums, rows, mu_b, sigma_b, nt, order)
    # fine: the entries finite in the grid's units (beyond the range after the
    # scaling back below is the caller's true overflow, which no other units
    # would avoid); done: the evaluations all of whose entries are
    fine = np.isfinite(out) & np.isfinite(mu_b) & np.isfinite(sigma_b)
    if k < 0 and order:
        # the gradient in the units of a tiny grid is 2**k times the caller's: a
        # component below the normal range there (0 included: it may have
        # underflowed) may be an ordinary number in the caller's
        fine[1:3] &= ~(np.abs(out[1:3]) < _DBL_MIN)
    done = fine.all(axis=0)
    if k:
        with np.errstate(over="ignore", under="ignore"):
            out[1:3] = np.ldexp(out[1:3], -k)     # d/dmu, d/dsigma: units 2**-k
            out[3:] = np.ldexp(out[3:], -2 * k)   # second derivatives: 2**-2k
    narrow = sigma_b < _gaussian.SIGMA_NARROW
    for i in np.flatnonzero(~done | narrow):
        row = p2[rows[i]:rows[i] + 1]
        values = _in_sigma_units(row, np.ldexp(xk, k), mu_o[i], sigma_o[i], normalize, order)
        if values is not None:
            out[:, i] = _merge_units(out[:, i], fine[:, i], values, narrow[i])
    return [_unwrap(v, shape) for v in out]


def _merge_units(grid: np.ndarray, fine: np.ndarray, sigma_units: np.ndarray,
                 narrow: bool) -> np.ndarray:
    """One evaluation's values, entry by entry, from the grid's units (``grid``;
    ``fine`` where they are trusted) and sigma's: sigma's where the grid's are
    not trusted, and for a narrow sigma (squares near mu may underflow in the
    grid's units) wherever sigma's are finite.  Each entry is computed on its
    own, so a finite divergence in one unit system is kept beside a gradient
    entry that overflows in both."""
    take = ~fine | (np.isfinite(sigma_units) if narrow else False)
    return np.where(take, sigma_units, grid)


def _eval_kernel(p2: np.ndarray, xk: np.ndarray, psums: np.ndarray, rows: np.ndarray,
                 mu_b: np.ndarray, sigma_b: np.ndarray, nt: int, order: int) -> np.ndarray:
    """(_N_OUT[order], K) array of the kernel's values at the K parameter sets."""
    res = np.empty((rows.shape[0], 6 if order == 2 else 3))
    _gaussian.gaussian_eval(p2, xk, psums, rows, mu_b, sigma_b, res, order, nt)
    return np.ascontiguousarray(res[:, :_N_OUT[order]].T)


def _in_sigma_units(row: np.ndarray, xk: np.ndarray, mu: float, sigma: float, normalize: bool,
                    order: int) -> np.ndarray | None:
    """The values of _eval_kernel for one row at one (mu, sigma) far from the
    grid's scale (the sums in the grid's units overflowed), computed with x, mu
    and sigma in units of 2**s, s the exponent of sigma (exact); None where that
    fails too."""
    s = math.frexp(sigma)[1]
    with np.errstate(over="ignore", under="ignore"):
        x2 = np.ldexp(xk, -s)
    if not np.isfinite(x2).all():
        return None
    row, ps, status = _psums(row, x2, normalize, 1)
    if status.any():
        return None
    with np.errstate(over="ignore"):
        mu2, sigma2 = np.ldexp(np.array([mu, sigma]), -s)
    if not np.isfinite(mu2):
        return None
    out = _eval_kernel(row, x2, ps, np.zeros(1, dtype=np.intp), np.array([mu2]),
                       np.array([sigma2]), 1, order)[:, 0]
    with np.errstate(over="ignore", under="ignore"):
        out[1:3] = np.ldexp(out[1:3], -s)
        out[3:] = np.ldexp(out[3:], -2 * s)
    return out


# ---- value and gradient ------------------------------------------------------------

_Vector = Union[Sequence[float], Nested2D]  # lists of parameters: a batch
_Grad = tuple[np.float64, np.float64, np.float64]
_GradArrays = tuple[F64Array, F64Array, F64Array]


@overload
def gaussian_kl(p: Sequence[float], x: ArrayLike, mu: float, sigma: float, *,
                normalize: bool = ..., num_threads: int | None = ...) -> np.float64: ...

@overload
def gaussian_kl(p: Nested2D, x: ArrayLike, mu: ArrayLike, sigma: ArrayLike, *,
                normalize: bool = ..., num_threads: int | None = ...) -> F64Array: ...

@overload
def gaussian_kl(p: ArrayLike, x: ArrayLike, mu: _Vector, sigma: ArrayLike, *,
                normalize: bool = ..., num_threads: int | None = ...) -> F64Array: ...

@overload
def gaussian_kl(p: ArrayLike, x: ArrayLike, mu: ArrayLike, sigma: _Vector, *,
                normalize: bool = ..., num_threads: int | None = ...) -> F64Array: ...

@overload
def gaussian_kl(p: ArrayLike, x: ArrayLike, mu: ArrayLike, sigma: ArrayLike, *,
                normalize: bool = ..., num_threads: int | None = ...) -> F64Result: ...

def gaussian_kl(p: ArrayLike, x: ArrayLike, mu: ArrayLike, sigma: ArrayLike, *,
                normalize: bool = False, num_threads: int | None = None) -> F64Result:
    """KL(p || q) for the normalised Gaussian q(mu, sigma) sampled on the grid x.

    q_i = exp(-(x_i - mu)^2 / (2 sigma^2)) / Z with Z the sum of the numerators
    over the grid; terms with p_i == 0 count 0.  log q_i is evaluated
    analytically (a shifted log-sum-exp), so the result stays finite where q_i
    underflows, and mu far outside the grid or a tiny or huge sigma give no
    overflow or NaN (a sigma more than the double range below the grid gives
    each value its limit, 0 or +-inf).  The one exception: on a grid smaller
    than 2**-100, a mu beyond the double range both in the grid's units and
    in sigma's (|mu| above about 2**1024 times the grid's scale and sigma)
    gives NaN.

    Parameters
    ----------
    p : array_like, shape (..., n)
        Non-negative finite values on the grid (last axis); leading axes are a
        batch of rows.  float32 is read as is; other real input as float64.
    x : array_like, shape (n,)
        The grid: finite, any order, not necessarily uniform.
    mu, sigma : float or array_like
        Mean and standard deviation (sigma > 0, scipy's ``scale``).  Arrays are
        a batch of parameter sets; they broadcast with p's leading axes.
    normalize : bool, default False
        Divide p by its sum first (p is otherwise used as given, as in the
        tutorial where it sums to about 1000).
    num_threads : int, optional
        Threads (default: all cores for large batches of rows or parameter sets,
        and for a single row of at least 16,384 grid points, which is split
        into blocks over them, where waking the idle threads pays for the
        work, see docs/core.md).  Results do not depend on it.

    Returns
    -------
    float or ndarray
        float64, of the broadcast batch shape.

    Raises
    ------
    ValueError
        p negative, NaN, infinite or all zero; x empty, not 1-D, not finite or not
        matching p; mu not finite; sigma not positive and finite; without
        normalize, p whose sums on the grid overflow (p near the double range:
        normalize=True scales it).

    Examples
    --------
    >>> import numpy as np
    >>> import kl_fast
    >>> x = np.arange(-10, 10, 0.001)
    >>> p = np.exp(-x**2 / 8) / np.sqrt(8 * np.pi)    # N(0, 2) density on the grid
    >>> round(float(kl_fast.gaussian_kl(p, x, 0.0, 2.0)), 6)
    6907.750745
    >>> kl_fast.gaussian_kl(p, x, [0.0, 1.0], 2.0, normalize=True).round(4)  # ~ 1/8, as for densities
    array([0.   , 0.125])
    """
    normalize = normalize if normalize is False else flag(normalize, "normalize", "gaussian_kl")
    if not normalize:
        fast = _gaussian.kl_grad_1d(p, x, mu, sigma, False, num_threads)
        if fast is not None:
            return fast
    return cast(F64Result,
                _evaluate(p, x, mu, sigma, "gaussian_kl", normalize, num_threads, False))


@overload
def gaussian_kl_grad(p: Sequence[float], x: ArrayLike, mu: float, sigma: float, *,
                     normalize: bool = ..., num_threads: int | None = ...) -> _Grad: ...

@overload
def gaussian_kl_grad(p: Nested2D, x: ArrayLike, mu: ArrayLike, sigma: ArrayLike, *,
                     normalize: bool = ..., num_threads: int | None = ...) -> _GradArrays: ...

@overload
def gaussian_kl_grad(p: ArrayLike, x: ArrayLike, mu: _Vector, sigma: ArrayLike, *,
                     normalize: bool = ..., num_threads: int | None = ...) -> _GradArrays: ...

@overload
def gaussian_kl_grad(p: ArrayLike, x: ArrayLike, mu: ArrayLike, sigma: _Vector, *,
                     normalize: bool = ..., num_threads: int | None = ...) -> _GradArrays: ...

@overload
def gaussian_kl_grad(p: ArrayLike, x: ArrayLike, mu: ArrayLike, sigma: ArrayLike, *,
                     normalize: bool = ...,
                     num_threads: int | None = ...) -> _Grad | _GradArrays: ...

def gaussian_kl_grad(p: ArrayLike, x: ArrayLike, mu: ArrayLike, sigma: ArrayLike, *,
                     normalize: bool = False,
                     num_threads: int | None = None) -> _Grad | _GradArrays:
    """KL(p || q(mu, sigma)) and its gradient, in one pass over the grid.

    With d_i = x_i - mu, P = sum p and E_q the mean under q:
    dKL/dmu = (P E_q[d] - sum p d) / sigma^2 and
    dKL/dsigma = (P E_q[d^2] - sum p d^2) / sigma^3.
    Arguments as for :func:`gaussian_kl`.

    Returns
    -------
    (kl, d_mu, d_sigma)
        Scalars for scalar parameters and 1-D p; otherwise float64 arrays of
        the broadcast batch shape.

    Examples
    --------
    >>> import numpy as np
    >>> import kl_fast
    >>> x = np.arange(-10, 10, 0.001)
    >>> p = np.exp(-x**2 / 8) / np.sqrt(8 * np.pi)
    >>> kl, d_mu, d_sigma = kl_fast.gaussian_kl_grad(p, x, 1.0, 2.0, normalize=True)
    >>> round(float(kl), 4), round(float(d_mu), 4), round(float(d_sigma), 4)
    (0.125, 0.25, -0.125)
    """
    normalize = (normalize if normalize is False
                 else flag(normalize, "normalize", "gaussian_kl_grad"))
    if not normalize:
        fast = _gaussian.kl_grad_1d(p, x, mu, sigma, True, num_threads)
        if fast is not None:
            return fast
    return cast(Union[_Grad, _GradArrays],
                _evaluate(p, x, mu, sigma, "gaussian_kl_grad", normalize, num_threads, True))


# ---- fitting ------------------------------------------------------------------------

_STOP_MESSAGES = {
    _gaussian.FIT_CONVERGED: "converged: the relative gradient is below tol",
    _gaussian.FIT_RESOLVED: ("converged: sigma's part of the relative gradient is below tol, "
                             "and mu is the double nearest its optimum, to 1/64 of their "
                             "spacing (the doubles near mu are too coarse for mu's part to "
                             "reach tol)"),
    _gaussian.FIT_NONPOSITIVE: "stopped: the next gradient step would make {par} <= 0 (lower lr)",
    _gaussian.FIT_LINESEARCH: ("stopped: no Newton step lowers the KL any further (rounding "
                               "limit, or the optimum is at sigma -> 0 or infinity)"),
    _gaussian.FIT_DEGENERATE: ("no finite optimum: p has all its mass on one grid value, and the "
                               "KL decreases toward sigma -> 0"),
    _gaussian.FIT_SINGULAR: ("stopped: the Newton system is singular (q on one grid point, or "
                             "its curvature beyond the double range) and a wider sigma does not "
                             "lower the KL"),
    _gaussian.FIT_NONFINITE: "stopped: a gradient step left the finite range (lower lr)",
    _gaussian.FIT_INTERRUPTED: "interrupted",
    _gaussian.FIT_TWO_POINTS: ("no finite optimum: p has all its mass on two neighbouring grid "
                               "points, and the KL decreases toward sigma -> 0"),
    _gaussian.FIT_UNIFORM: ("no finite optimum: the KL decreases toward its limit as sigma -> "
                            "infinity, where q is uniform on the grid"),
    _gaussian.FIT_TILT: ("no finite optimum: p is spread at least as widely as any Gaussian on "
                         "the grid with its mean can be, and the KL decreases toward its limit "
                         "as sigma -> infinity with mu / sigma**2 fixed, where q is an "
                         "exponential tilt exp(a x) of the uniform distribution on the grid"),
}


# the statuses of a converged fit
_CONVERGED_CODES = (_gaussian.FIT_CONVERGED, _gaussian.FIT_RESOLVED)


def _message_table(method: str, parametrization: str) -> list[str]:
    par = "the variance" if parametrization == "variance" else "sigma"
    out = []
    for code in range(max(_STOP_MESSAGES) + 1):
        if code == _gaussian.FIT_MAXITER:
            out.append("stopped: max_iter Newton steps without reaching tol" if method == "newton"
                       else "stopped: all epochs run without reaching tol")
        elif code == _gaussian.FIT_NONFINITE and method == "newton":
            out.append("stopped: the optimum lies beyond the double range (on a grid near it)")
        else:
            out.append(_STOP_MESSAGES[code].format(par=par))
    return out


_MESSAGES = {(m, par): _message_table(m, par)
             for m in ("newton", "gd") for par in ("sigma", "variance")}


def _stop_message(texts: list[str], code: int, grad_rel: float, tol: float) -> str:
    """Why a fit stopped: texts[code] with its relative gradient against tol
    (none for p on one grid value, where the fit takes no step)."""
    if code == _gaussian.FIT_DEGENERATE:
        return texts[code]
    return f"{texts[code]} (relative gradient {grad_rel:.3g}, tol {tol:g})"


class FitStatus(enum.IntEnum):
    """Why a fit stopped (:attr:`GaussianFit.status`; ``GaussianFit.message``
    says it in words)."""
    CONVERGED = _gaussian.FIT_CONVERGED
    MAXITER = _gaussian.FIT_MAXITER
    NONPOSITIVE = _gaussian.FIT_NONPOSITIVE
    LINESEARCH = _gaussian.FIT_LINESEARCH
    DEGENERATE = _gaussian.FIT_DEGENERATE
    SINGULAR = _gaussian.FIT_SINGULAR
    NONFINITE = _gaussian.FIT_NONFINITE
    INTERRUPTED = _gaussian.FIT_INTERRUPTED
    TWO_POINTS = _gaussian.FIT_TWO_POINTS
    UNIFORM = _gaussian.FIT_UNIFORM
    TILT = _gaussian.FIT_TILT
    RESOLVED = _gaussian.FIT_RESOLVED


# The types of GaussianFit's fields: Python scalars for one fit, arrays for a batch.
_Real = TypeVar("_Real", bound=Union[float, F64Array])
_Int = TypeVar("_Int", bound=Union[int, npt.NDArray[np.intp]])
_Bool = TypeVar("_Bool", bound=Union[bool, npt.NDArray[np.bool_]])
_Str = TypeVar("_Str", bound=Union[str, npt.NDArray[np.object_]])


class GaussianFit(Generic[_Real, _Int, _Bool, _Str]):
    """Result of :func:`fit_gaussian`; arrays of the batch shape for a batch of rows.

    For type checkers the class is generic in the types of its fields: a
    single fit is ``GaussianFit[float, int, bool, str]``, a batch
    ``GaussianFit[NDArray[float64], NDArray[intp], NDArray[bool_], NDArray[object_]]``.

    Attributes
    ----------
    mu, sigma : float or ndarray
        The fitted mean and standard deviation (sigma is 0.0 only when p sits on
        one grid point, where no finite optimum exists).
    kl : float or ndarray
        KL(p || q(mu, sigma)) at the result.
    grad : tuple (d_mu, d_sigma)
        The gradient at the result.
    grad_rel : float or ndarray
        max(|d_mu| sigma^2 / L, |d_sigma| sigma^3 / L^2) / P, with P = sum p and
        L p's standard deviation on the grid: the scale-free size of the
        gradient that ``tol`` is compared with (see :func:`fit_gaussian`).
    nit : int or ndarray
        Newton steps or gradient-descent epochs taken.
    nfev : int or ndarray
        Kernel evaluations (one pass over the grid each).
    converged : bool or ndarray
        True when the fit stopped at an optimum because grad_rel < tol; False
        otherwise, also where grad_rel is below tol at a boundary of the family
        (p on two neighbouring grid points, or uniform: see ``status``).
    message : str or ndarray of str
        Why the iteration stopped, with the relative gradient against ``tol``
        (for a batch, built from ``status`` and ``grad_rel`` when first read).
    status : FitStatus or ndarray of int8
        Why the iteration stopped, as a code (the values of :class:`FitStatus`).
    history : dict of ndarray
        "kl", "mu", "sigma" and "variance" of the start (index 0) and of the
        state after each step; shape batch + (k,).  In a batch, rows that
        stopped earlier than others are padded with NaN after their last state
        (a batch keeps each row's states one after another, and builds the
        padded arrays when ``history`` is first read).  Empty when the fit ran
        with ``history=False``.
    method, parametrization : str
        As passed.
    """

    mu: _Real
    sigma: _Real
    kl: _Real
    grad: tuple[_Real, _Real]
    grad_rel: _Real
    nit: _Int
    nfev: _Int
    converged: _Bool
    method: str
    parametrization: str
    _message: _Str | None
    _tol: float
    _status: int | npt.NDArray[np.int8]
    _raw: F64Array | list[F64Array] | None
    _raw_variance: bool
    _history: dict[str, F64Array] | None

    __slots__ = ("mu", "sigma", "kl", "grad", "grad_rel", "nit", "nfev", "converged",
                 "method", "parametrization", "_message", "_tol", "_status", "_raw",
                 "_raw_variance", "_history")

    def __init__(self, *, mu: _Real, sigma: _Real, kl: _Real, grad: tuple[_Real, _Real],
                 grad_rel: _Real, nit: _Int, nfev: _Int, converged: _Bool, tol: float,
                 status: int | npt.NDArray[np.int8],
                 method: str, parametrization: str,
                 raw_history: F64Array | list[F64Array] | None = None,
                 raw_is_variance: bool = False) -> None:
        """The message is built from status, grad_rel and tol on first use.
        raw_history: one fit's (k, 3) states (kl, mu, sigma or
        variance), or a batch's states row after row, in parts
        (_fit_with_history)."""
        self.mu = mu
        self.sigma = sigma
        self.kl = kl
        self.grad = grad
        self.grad_rel = grad_rel
        self.nit = nit
        self.nfev = nfev
        self.converged = converged
        self.method = method
        self.parametrization = parametrization
        self._message = None
        self._tol = tol
        self._status = status
        # the dict is built on first use
        self._raw = raw_history
        self._raw_variance = raw_is_variance
        self._history = None

    @property
    def message(self) -> _Str:
        if self._message is None:
            texts = _MESSAGES[self.method, self.parametrization]
            if isinstance(self._status, np.ndarray):
                grad_rel = np.asarray(self.grad_rel)
                built = [_stop_message(texts, int(code), float(g), self._tol)
                         for code, g in zip(self._status.flat, grad_rel.flat)]
                self._message = cast(_Str, np.array(built, dtype=object).reshape(grad_rel.shape))
            else:
                self._message = cast(_Str, _stop_message(texts, self._status,
                                                         float(self.grad_rel), self._tol))
        return self._message

    @property
    def status(self) -> "FitStatus | npt.NDArray[np.int8]":
        if isinstance(self._status, np.ndarray):
            return self._status
        return FitStatus(self._status)

    @property
    def history(self) -> dict[str, F64Array]:
        if self._history is None:
            raw = self._raw
            if raw is None:
                self._history = {}
            else:
                if isinstance(raw, list):   # a batch: its states row after row
                    nit = np.asarray(self.nit)
                    h = _padded_history(raw, nit)
                    h = h.reshape(nit.shape + h.shape[1:])
                else:
                    h = raw
                par = h[..., 2]
                with np.errstate(over="ignore"):  # a variance beyond the range is inf
                    sigma, var = (np.sqrt(par), par) if self._raw_variance else (par, par * par)
                self._history = {"kl": h[..., 0], "mu": h[..., 1], "sigma": sigma,
                                 "variance": var}
        return self._history

    @property
    def variance(self) -> _Real:
        """sigma squared (the tutorial's variable; inf beyond the float64 range)."""
        with np.errstate(over="ignore"):
            v = np.square(self.sigma)
        return cast(_Real, v if np.ndim(v) else float(v))

    def __repr__(self) -> str:
        if np.ndim(self.mu) == 0:
            return (f"GaussianFit(mu={self.mu!r}, sigma={self.sigma!r}, kl={self.kl!r}, "
                    f"nit={self.nit}, nfev={self.nfev}, converged={self.converged}, "
                    f"message={self.message!r})")
        conv = np.asarray(self.converged)
        return (f"GaussianFit(batch of {conv.size} fits, shape {conv.shape}: {int(conv.sum())} "
                f"converged; method={self.method!r})")


def _count(value: Any, name: str, func: str) -> int:
    v = integer_or_none(value)
    if v is None:
        raise TypeError(f"{func}: {name} must be an integer, got {value!r}")
    if v < 0:
        raise ValueError(f"{func}: {name} must be >= 0, got {v}")
    if v > 10_000_000:
        raise ValueError(f"{func}: {name} must be at most 10,000,000, got {v}")
    return v


def _start(value: object, default: npt.ArrayLike | None, name: str, func: str, shape: tuple[int, ...],
           *, positive: bool) -> np.ndarray:
    if value is None:
        return np.ascontiguousarray(default)
    a = _param(value, name, func, positive=positive)
    try:
        b = np.broadcast_to(a, shape)
    except ValueError:
        raise ValueError(f"{func}: {name} of shape {a.shape} does not broadcast to the batch "
                         f"shape of p, {shape}") from None
    return np.ascontiguousarray(b).reshape(-1)


_Fit = GaussianFit[float, int, bool, str]
_FitBatch = GaussianFit[F64Array, npt.NDArray[np.intp], npt.NDArray[np.bool_],
                        npt.NDArray[np.object_]]


@overload
def fit_gaussian(p: Sequence[float], x: ArrayLike, *, method: Literal["newton", "gd"] = ...,
                 mu0: ArrayLike | None = ..., sigma0: ArrayLike | None = ...,
                 parametrization: Literal["sigma", "variance"] = ..., lr: float = ...,
                 epochs: int = ..., tol: float = ..., max_iter: int = ..., normalize: bool = ...,
                 history: bool = ..., num_threads: int | None = ...) -> _Fit: ...

@overload
def fit_gaussian(p: Nested2D, x: ArrayLike, *, method: Literal["newton", "gd"] = ...,
                 mu0: ArrayLike | None = ..., sigma0: ArrayLike | None = ...,
                 parametrization: Literal["sigma", "variance"] = ..., lr: float = ...,
                 epochs: int = ..., tol: float = ..., max_iter: int = ..., normalize: bool = ...,
                 history: bool = ..., num_threads: int | None = ...) -> _FitBatch: ...

@overload
def fit_gaussian(p: ArrayLike, x: ArrayLike, *, method: Literal["newton", "gd"] = ...,
                 mu0: ArrayLike | None = ..., sigma0: ArrayLike | None = ...,
                 parametrization: Literal["sigma", "variance"] = ..., lr: float = ...,
                 epochs: int = ..., tol: float = ..., max_iter: int = ..., normalize: bool = ...,
                 history: bool = ..., num_threads: int | None = ...) -> _Fit | _FitBatch: ...

def fit_gaussian(p: ArrayLike, x: ArrayLike, *, method: Literal["newton", "gd"] = "newton",
                 mu0: ArrayLike | None = None, sigma0: ArrayLike | None = None,
                 parametrization: Literal["sigma", "variance"] = "sigma", lr: float = 0.001,
                 epochs: int = 100, tol: float = 1e-9, max_iter: int = 50,
                 normalize: bool = False, history: bool = True,
                 num_threads: int | None = None) -> _Fit | _FitBatch:
    """Fit the grid Gaussian q(mu, sigma) to p by minimising KL(p || q).

    ``method="newton"`` (default) runs Newton's method in the natural
    parameters (mu / sigma^2, -1 / (2 sigma^2)), where the divergence is convex,
    from p's grid mean and standard deviation, with a backtracking line search;
    the optimum matches the grid moments of q to those of p.
    ``method="gd"`` is plain gradient descent with step ``lr`` for ``epochs``
    epochs, the tutorial's method; with ``parametrization="variance"`` it steps
    in the variance v = sigma^2 (the tutorial's variable, which it calls
    "sigma") and ``sigma0`` is a starting variance.

    Both stop as soon as the relative gradient drops below ``tol``: the
    mismatch of q's first two moments with p's, in units of p's standard
    deviation L on the grid, max(|dKL/dmu| sigma^2 / L, |dKL/dsigma| sigma^3 /
    L^2) / sum(p).  It does not shrink where sigma is far from the optimum
    (as the gradient itself does for a huge sigma).  Where the KL only
    approaches its infimum at a boundary of the family -- p on two neighbouring
    grid points (sigma -> 0), or q tending to the uniform distribution on the
    grid (sigma -> infinity), or for Newton to an exponential tilt exp(a x) of
    it (sigma -> infinity with mu / sigma^2 -> a: where p's grid variance is at
    least that tilt's with p's mean, status ``FitStatus.TILT``: once Newton's
    sigma is wider than the grid it ends at a point far along that tilt, sigma
    up to 2**26 times the grid's span and mu = c + a sigma**2, whose KL is the
    infimum's to rounding) -- the fit reports ``converged=False`` and says so.
    A gradient step that would make sigma (or the variance) <= 0 stops the run
    with ``converged=False`` and the last valid state; nothing is clipped and no
    NaN is produced.  Where the doubles near the optimum mu are too coarse for
    ``tol`` (a grid far from 0), Newton stops converged once mu is the double
    nearest its optimum and sigma's part of the gradient is below ``tol``
    (status ``FitStatus.RESOLVED``).

    Parameters
    ----------
    p : array_like, shape (..., n)
        Non-negative finite values on the grid; leading axes are a batch of rows,
        each fitted on its own.  float32 is read as is.
    x : array_like, shape (n,)
        The grid (finite).
    method : {"newton", "gd"}
    mu0, sigma0 : float or array_like, optional
        Start (broadcast to p's batch shape); default p's grid mean and standard
        deviation (variance for ``parametrization="variance"``).
    parametrization : {"sigma", "variance"}
        The variable of the gradient steps and of ``sigma0``.
    lr : float, default 0.001
        Gradient-descent step size.
    epochs : int, default 100
        Gradient-descent steps.  ``lr`` and ``epochs`` are read by ``method="gd"``
        only, ``max_iter`` by ``method="newton"`` only: another value given to
        the other method is ignored with a ``RuntimeWarning`` naming it.
    tol : float, default 1e-9
        Stop when the relative gradient is below it (0 never stops early).
    max_iter : int, default 50
        Newton steps.
    normalize : bool, default False
        Fit p / sum(p) (the optimum is the same; kl and the gradient scale).
    history : bool, default True
        Record (kl, mu, sigma) of the start and after every step.
    num_threads : int, optional
        Threads (default: all cores for a large batch of rows, and for a single
        row of at least 16,384 grid points, which is split into blocks over
        them, where waking the idle threads pays for the fit's passes, see
        docs/core.md).  Results do not depend on it.

    Returns
    -------
    GaussianFit

    Examples
    --------
    >>> import numpy as np
    >>> import kl_fast
    >>> x = np.arange(-10, 10, 0.001)
    >>> p = np.exp(-x**2 / 8) / np.sqrt(8 * np.pi)
    >>> fit = kl_fast.fit_gaussian(p, x)
    >>> abs(fit.mu) < 1e-9, round(fit.sigma, 9), round(fit.kl, 6), fit.converged
    (True, 2.0, 6907.750745, True)
    >>> gd = kl_fast.fit_gaussian(p, x, method="gd", parametrization="variance",
    ...                           mu0=0.0, sigma0=1.0, lr=0.001, epochs=100)
    >>> round(gd.variance, 7), round(gd.kl, 6), gd.converged
    (3.9675094, 6907.767417, False)
    """
    func = "fit_gaussian"
    normalize, history = flag(normalize, "normalize", func), flag(history, "history", func)
    variance, lr_v, tol_v, iters = _fit_options(method, parametrization, lr, tol, epochs,
                                                max_iter, func)
    newton = method == "newton"

    if not normalize:
        fast = _gaussian.fit_1d(p, x, newton, variance, mu0, sigma0, lr_v, iters, tol_v,
                                history, num_threads)
        if fast is not None:
            (mu, sigma, kl, d_mu, d_sigma, grad_rel), (nit, nfev, code), h = fast
            return GaussianFit(mu=mu, sigma=sigma, kl=kl, grad=(d_mu, d_sigma), grad_rel=grad_rel,
                               nit=nit, nfev=nfev, converged=code in _CONVERGED_CODES,
                               tol=tol_v, status=code, method=method,
                               parametrization=parametrization,
                               raw_history=h, raw_is_variance=variance and not newton)

    p2, xk, psums, shape, nt, k = _prepare(p, x, func, normalize, num_threads,
                                           passes=_gaussian.fit_passes(newton, iters))
    return _fit_prepared(p2, xk, psums, shape, nt, k, method=method, variance=variance,
                         mu0=mu0, sigma0=sigma0, lr=lr_v, tol=tol_v, iters=iters,
                         history=history, func=func)


# float64 values of the history buffer of one chunk of rows (2 MiB)
_HISTORY_CHUNK = 1 << 18


def _fit_with_history(p2: np.ndarray, xk: np.ndarray, psums: np.ndarray, mu0: np.ndarray,
                      par0: np.ndarray, fit_args: tuple[bool, bool, float, float, int, float],
                      out: np.ndarray, counts: np.ndarray, nt: int,
                      shift: Optional[np.ndarray]) -> list[np.ndarray]:
    """Fit every row into out and counts, and return the recorded states of all
    rows one after another, in parts of (states, 3) (one per chunk of rows, not
    joined: a copy of them all costs as much as recording them): row i's nit +
    1 states (nit = counts[i, 0]) follow row i - 1's.  Rows run in chunks whose
    (rows, iters + 1, 3) buffer stays small (2 MiB: the kernel's strided writes
    stay in cache); only the recorded states of each chunk are kept, so a batch
    whose rows mostly stop early keeps little where a few run to max_iter."""
    m, iters = p2.shape[0], fit_args[4]
    chunk = max(1, min(m, _HISTORY_CHUNK // (3 * (iters + 1))))
    buf = np.empty((chunk, iters + 1, 3))
    parts = []
    for a in range(0, m, chunk):
        b = min(m, a + chunk)
        _gaussian.gaussian_fit_rows(p2[a:b], xk, psums[a:b], mu0[a:b], par0[a:b], *fit_args,
                                    out[a:b], counts[a:b], buf[:b - a], nt,
                                    None if shift is None else shift[a:b])
        part = np.empty((int(counts[a:b, 0].sum()) + (b - a), 3))
        _gaussian.pack_states(buf[:b - a], counts[a:b], part)
        parts.append(part)
    return parts


def _padded_history(parts: list[np.ndarray], nit: np.ndarray) -> np.ndarray:
    """The states _fit_with_history recorded, as (m, max(nit) + 1, 3) with NaN
    after each row's last state."""
    nit = nit.reshape(-1)
    length = int(nit.max()) + 1 if nit.size else 1
    out = np.full((nit.size, length, 3), np.nan)
    out[np.arange(length) <= nit[:, None]] = np.concatenate(parts) if parts else np.empty((0, 3))
    return out


# the defaults of the options only one method uses (fit_gaussian's signature):
# another value given to the other method is ignored with a warning
_METHOD_DEFAULTS: dict[str, float] = {"lr": 0.001, "epochs": 100, "max_iter": 50}


def _fit_options(method: str, parametrization: str, lr: Any, tol: Any, epochs: Any,
                 max_iter: Any, func: str) -> tuple[bool, float, float, int]:
    """(variance, lr, tol, iters) of fit_gaussian's options, checked."""
    if method not in ("newton", "gd"):
        raise ValueError(f"{func}: method must be 'newton' or 'gd', got {method!r}")
    if parametrization not in ("sigma", "variance"):
        raise ValueError(f"{func}: parametrization must be 'sigma' or 'variance', "
                         f"got {parametrization!r}")
    newton = method == "newton"
    # every option is checked, also those the method does not use (a typo would
    # otherwise pass unnoticed)
    lr_v = _scalar(lr, "lr", func, positive=True)
    tol_v = _scalar(tol, "tol", func, positive=False)
    if tol_v < 0:
        raise ValueError(f"{func}: tol must be a non-negative scalar, got {tol!r}")
    epochs_v = _count(epochs, "epochs", func)
    max_iter_v = _count(max_iter, "max_iter", func)
    given = {"lr": lr_v, "epochs": epochs_v} if newton else {"max_iter": max_iter_v}
    ignored = [f"{k}={v!r}" for k, v in given.items() if v != _METHOD_DEFAULTS[k]]
    if ignored:
        other = "gd" if newton else "newton"
        warnings.warn(f"{func}: method={method!r} does not use {', '.join(ignored)} "
                      f"(used by method={other!r}) and ignores it", RuntimeWarning,
                      stacklevel=3)
    return (parametrization == "variance", 0.0 if newton else lr_v, tol_v,
            max_iter_v if newton else epochs_v)


def _scaled_tiny_mass(p2: np.ndarray, xk: np.ndarray, psums: np.ndarray,
                      nt: int) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """(p2, psums, shift) for a fit: rows not normalised whose sum of p is below
    2**-MASS_SHIFT (their sums, moments and gradient lose precision in the
    subnormals, and a fit stopped short of the optimum, reporting convergence)
    as p times 2**MASS_SHIFT, with their sums; shift is MASS_SHIFT on those rows
    and 0 elsewhere, or None when there is none.  The optimum is the same (the
    KL of c p is c times p's plus a constant); the inputs are not modified."""
    normalized = (psums[:, 6].astype(np.intp) & _gaussian.P_NORMALIZED) != 0
    tiny = (psums[:, 1] < _MASS_MIN) & ~normalized
    if not tiny.any():
        return p2, psums, None
    shift = np.where(tiny, _gaussian.MASS_SHIFT, 0).astype(np.intc)
    p2 = p2.astype(np.float64)   # a copy; float32 p cannot be that small
    p2[tiny] = np.ldexp(p2[tiny], _gaussian.MASS_SHIFT)
    psums = psums.copy()
    sub = np.empty((int(tiny.sum()), 7))
    status = np.empty(sub.shape[0], dtype=np.int8)
    _gaussian.gaussian_psums_rows(p2[tiny], xk, sub, status, nt)
    psums[tiny] = sub
    return p2, psums, shift


def _unscale_tiny_mass(out: np.ndarray, parts: list[np.ndarray], nit: np.ndarray,
                       shift: np.ndarray, P: np.ndarray) -> None:
    """The KL of the rows _scaled_tiny_mass scaled, back to p's: with p' =
    2**s p, KL(p || q) = 2**-s (KL(p' || q) - s log(2) sum p') (the gradient,
    2**-s times p''s, the caller scales).  The recorded states' KL too (parts:
    the states of all rows, nit[i] + 1 for row i, one row after another)."""
    def kl_back(kl: np.ndarray, s: np.ndarray, p_sum: np.ndarray) -> np.ndarray:
        back: np.ndarray = np.ldexp(kl - s * math.log(2.0) * p_sum, -s)
        return back

    tiny = shift != 0
    out[tiny, 2] = kl_back(out[tiny, 2], shift[tiny], P[tiny])
    if parts:
        states = nit.astype(np.intp) + 1
        row_shift = np.repeat(shift, states)
        row_sum = np.repeat(np.where(tiny, P, 0.0), states)
        start = 0
        for part in parts:
            stop = start + part.shape[0]
            moved = row_shift[start:stop] != 0
            part[moved, 0] = kl_back(part[moved, 0], row_shift[start:stop][moved],
                                     row_sum[start:stop][moved])
            start = stop


def _fit_prepared(p2: np.ndarray, xk: np.ndarray, psums: np.ndarray, shape: tuple[int, ...],
                  nt: int, k: int, *, method: str, variance: bool, mu0: Any, sigma0: Any,
                  lr: float, tol: float, iters: int, history: bool,
                  func: str) -> GaussianFit[Any, Any, Any, Any]:
    """fit_gaussian on the prepared rows of _prepare (options checked)."""
    newton = method == "newton"
    lr_v, tol_v = lr, tol
    parametrization = "variance" if variance else "sigma"
    # the kernels work in the grid's units of 2**k (k = 0 but for extreme grids):
    # mu, sigma and the steps scale exactly, the KL not at all
    m = p2.shape[0]
    p2, psums, shift = _scaled_tiny_mass(p2, xk, psums, nt)
    P = psums[:, 1]
    mean_off = psums[:, 2] / P
    default_mu = psums[:, 0] + mean_off
    default_var = np.maximum(psums[:, 3] / P - mean_off * mean_off, 0.0)
    gd_variance = variance and not newton
    # the defaults are in the grid's units already, a given start is not
    mu0_a = _start(mu0, default_mu, "mu0", func, shape, positive=False)
    if mu0 is not None:
        mu0_a = np.ldexp(mu0_a, -k)
    par0_a = _start(sigma0, default_var if gd_variance else np.sqrt(default_var), "sigma0",
                    func, shape, positive=True)
    if sigma0 is not None:
        if newton and variance:
            par0_a = np.sqrt(par0_a)
        par0_a = np.ldexp(par0_a, -2 * k if gd_variance else -k)

    out = np.empty((m, 6))
    counts = np.empty((m, 3), dtype=np.intc)
    # in the grid's units a step size may overflow: inf, and the first step
    # reports that it left the finite range
    with np.errstate(over="ignore"):
        lr_mu = float(np.ldexp(lr_v, -2 * k))
        lr_par = float(np.ldexp(lr_v, -4 * k if gd_variance else -2 * k))
    fit_args = (newton, variance, lr_mu, lr_par, iters, tol_v)
    parts: list[np.ndarray] = []
    if history:
        parts = _fit_with_history(p2, xk, psums, mu0_a, par0_a, fit_args, out, counts, nt,
                                  shift)
    else:
        _gaussian.gaussian_fit_rows(p2, xk, psums, mu0_a, par0_a, *fit_args, out, counts,
                                    np.empty((m, 0, 3)), nt, shift)
    if shift is not None:
        _unscale_tiny_mass(out, parts, counts[:, 0], shift, psums[:, 1])
    if k or shift is not None:
        # the gradient back to p's scale and the caller's units in one step (one
        # rounding where it lands in the subnormals)
        with np.errstate(over="ignore"):
            out[:, 3:5] = np.ldexp(out[:, 3:5], -k - (0 if shift is None else shift[:, None]))
    if k:
        # back to the caller's units; a fit that ran off (sigma -> infinity) may
        # leave the double range there: inf, as for an unscaled grid
        with np.errstate(over="ignore"):
            out[:, :2] = np.ldexp(out[:, :2], k)
            for part in parts:
                part[:, 1] = np.ldexp(part[:, 1], k)
                part[:, 2] = np.ldexp(part[:, 2], 2 * k if gd_variance else k)
        # an optimum found beyond the double range is not a converged fit
        off = np.isin(counts[:, 2], _CONVERGED_CODES) & ~np.all(np.isfinite(out[:, :2]), axis=1)
        counts[off, 2] = _gaussian.FIT_NONFINITE

    status = counts[:, 2]
    raw = parts if history else None

    if shape == ():
        code = int(status[0])
        return GaussianFit(
            mu=float(out[0, 0]), sigma=float(out[0, 1]), kl=float(out[0, 2]),
            grad=(float(out[0, 3]), float(out[0, 4])), grad_rel=float(out[0, 5]),
            nit=int(counts[0, 0]), nfev=int(counts[0, 1]),
            converged=code in _CONVERGED_CODES, tol=tol_v, status=code, method=method,
            parametrization=parametrization,
            raw_history=None if raw is None else _padded_history(raw, counts[:, 0])[0],
            raw_is_variance=variance and not newton)
    nit = counts[:, 0].astype(np.intp).reshape(shape)
    return GaussianFit(
        mu=out[:, 0].reshape(shape), sigma=out[:, 1].reshape(shape), kl=out[:, 2].reshape(shape),
        grad=(out[:, 3].reshape(shape), out[:, 4].reshape(shape)),
        grad_rel=out[:, 5].reshape(shape), nit=nit,
        nfev=counts[:, 1].astype(np.intp).reshape(shape),
        converged=np.isin(status, _CONVERGED_CODES).reshape(shape),
        tol=tol_v, status=status.astype(np.int8).reshape(shape),
        method=method, parametrization=parametrization, raw_history=raw,
        raw_is_variance=variance and not newton)
