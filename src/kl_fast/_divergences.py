"""js_div and kl_div_log: conversion, broadcasting, validation, then one kernel call."""
from __future__ import annotations

import math
from typing import Any, Callable, Literal, Optional, Sequence, overload

import numpy as np
import numpy.typing as npt

from . import _div_kernels, _kernels
from ._typing import (ArrayLike, ArrayT, Axis, F32Array, F32Result, F64Array, F64Result,
                      Float32Like, Float64Like, FloatResult, ScalarOr1D)
from ._api import (ReductionRows, apply_options, check_alone, combine_rows, deliver,
                   fsum_scaled, magnifies, overflow_shift, raise_bad_value, raw_tiny, reduction_rows,
                   scaled_by_max, times_power_of_two)
from ._validation import (
    as_real_array,
    flag,
    check_positive_scalar,
    check_scalar_axis,
    describe_bad,
    format_index,
    normalize_axes,
    resolve_threads,
    result_dtype,
    to_kernel_dtype,
)


def _describe_bad_log(value: float) -> str:
    return "NaN" if np.isnan(value) else f"+inf ({value!r})"


# kernel(p2, q2, res, status, normalize, check, n_threads) and find_bad(p_row, q_row)
_RowKernel = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool, bool, int], None]
_FindBad = Callable[[np.ndarray, np.ndarray], Optional[tuple[int, int, float]]]


def _js_beyond_range(kernel: _RowKernel, rows: ReductionRows, res: np.ndarray,
                     totals: np.ndarray, normalize: bool,
                     nt: int) -> tuple[np.ndarray, np.ndarray]:
    """(totals, shift): the reductions' totals (combine_rows of res[:, 0]) with
    those that are not finite redone on p and q times 2**-k (JS is homogeneous
    of degree 1 in the pair), and k for those (0 for the others), so that the
    divergence is the finished total times 2**shift."""
    over = ~np.isfinite(totals)
    k = overflow_shift(rows.p2.shape[1])
    in_over = over.reshape(-1, 1)
    p2, q2 = (np.ldexp(a, np.where(in_over, -k, 0).astype(np.intc)).astype(a.dtype, copy=False)
              for a in (rows.p2, rows.q2))
    scaled = np.empty_like(res)
    status = np.empty(res.shape[0], dtype=np.int8)
    kernel(p2, q2, scaled, status, normalize, False, nt)
    totals = np.where(over, combine_rows(scaled[:, 0], rows), totals)
    return totals, np.where(over, k, 0).astype(np.intc)


# ln 2 in two parts (fdlibm's): k * _LN2_HI is exact for |k| < 2**21
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10


def _log_scaled_row(lp: np.ndarray, lq: np.ndarray, lp0: tuple[float, float] = (0.0, 0.0),
                    lq0: tuple[float, float] = (0.0, 0.0)) -> tuple[float, int] | None:
    """(s, K) with sum exp(a) (a - b) = s 2**K, a = (lp - m) - l for the
    normaliser lp0 = (m, l) and b likewise, over the terms of finite lp (lq
    finite there; the normalisers the largest entry and the log of the sum of
    exponentials, _log_centred, or 0): each nonzero term taken as
    exp(r) m 2**(k + e) with a = k ln2 + r (Cody and Waite's reduction) and
    a - b = m 2**e (formed from the halves, one exponent up, where it
    overflows), the terms scaled by 2**-K for the largest k + e and added
    exactly (math.fsum).  None where some weight is beyond every range
    (a > 2**19 ln 2)."""
    (mp, lp_l), (mq, lq_l) = lp0, lq0
    with np.errstate(over="ignore", invalid="ignore"):
        a = (lp - mp) - lp_l
        d = a - ((lq - mq) - lq_l)
        halved = ~np.isfinite(d)
        d = np.where(halved, ((0.5 * lp - 0.5 * mp) - 0.5 * lp_l)
                     - ((0.5 * lq - 0.5 * mq) - 0.5 * lq_l), d)
    # smaller weights times any finite difference are 0, as are zero differences
    keep = (a > -7e5) & (d != 0.0)
    a, d, halved = a[keep], d[keep], halved[keep]
    if a.size == 0:
        return 0.0, 0
    if a.max() > 2.0**19 * _LN2_HI:
        return None
    k = np.rint(a / (_LN2_HI + _LN2_LO))
    r = (a - k * _LN2_HI) - k * _LN2_LO
    m, e = np.frexp(d)
    return fsum_scaled(np.exp(r) * m, k.astype(np.int64) + e + halved)


def _log_centred(x: np.ndarray, normalize: bool) -> tuple[float, float]:
    """A row's normaliser as (m, log sum exp(x - m)) for m its largest entry:
    the kernels' m + log sum exp(x - m) in two parts, so that
    (x - m) - log sum exp(x - m) is not moved by the rounding of their sum;
    (0, 0) without normalize."""
    if not normalize:
        return 0.0, 0.0
    m = float(x.max())
    with np.errstate(over="ignore"):
        return m, float(np.log(np.sum(np.exp(x - m))))


def _log_beyond_range(rows: ReductionRows, totals: np.ndarray,
                      normalize: bool) -> tuple[np.ndarray, np.ndarray]:
    """(totals, shift) for kl_div_log: the reductions whose raw sum left the
    double range redone in scaled form (_log_scaled_row, with normalize on the
    inputs less their largest entries and the logs of their sums of
    exponentials, _log_centred), so that the divergence is the finished total
    times 2**shift; left as they are: rows made +inf by a term (a finite log_p
    meeting a -inf log_q) and rows holding NaN or +inf (check=False)."""
    flat = totals.reshape(-1).copy()
    shift = np.zeros(flat.shape, dtype=np.intc)
    over = np.flatnonzero(~np.isfinite(flat))
    p2 = rows.p2[over].astype(np.float64)
    q2 = rows.q2[over].astype(np.float64)
    keep = ~np.any((p2 > -np.inf) & (q2 == -np.inf), axis=1)
    keep &= np.all((p2 < np.inf) & (q2 < np.inf), axis=1)
    for i in np.flatnonzero(keep):
        r = over[i]
        scaled = _log_scaled_row(p2[i], q2[i], _log_centred(p2[i], normalize),
                                 _log_centred(q2[i], normalize))
        if scaled is not None:
            flat[r], shift[r] = scaled
    return flat.reshape(totals.shape), shift.reshape(totals.shape)


def _js_row_scaled(kernel: _RowKernel, p: np.ndarray, q: np.ndarray) -> tuple[float, int]:
    """(s, K) with the JS sum of float64 rows p, q = s 2**K: each element's
    term from p and q times 2**k, their larger into [1/2, 1) (JS is
    homogeneous of degree 1, so that is 2**k times the term, exactly), the
    terms added exactly on a common scale (math.fsum)."""
    k = np.where((p > 0) | (q > 0), -np.frexp(np.fmax(p, q))[1], 0).astype(np.intc)
    terms = np.empty((p.size, 3), dtype=np.float64)
    status = np.empty(p.size, dtype=np.int8)
    kernel(np.ldexp(p, k)[:, None], np.ldexp(q, k)[:, None], terms, status, False, False, 1)
    return fsum_scaled(terms[:, 0], -k)


def _below_range(func: str, kernel: _RowKernel, rows: ReductionRows, totals: np.ndarray,
                 shift: np.ndarray | None, base: float) -> tuple[np.ndarray, np.ndarray | None]:
    """(totals, shift) for js_div and kl_div_log (normalize off) where base
    magnifies (|log(base)| < 1): the reductions whose total is below
    raw_tiny (0 included: their terms can underflow) and that hold an input
    whose terms may be subnormal (a p or q below raw_tiny; a finite log_p
    below its log) redone in float64 at full precision (_js_row_scaled,
    _log_scaled_row), so that the divergence is the finished total times
    2**shift; rows holding NaN or +inf (check=False) are left as they are."""
    tiny = raw_tiny(rows.p2.dtype == np.float32)
    flat = totals.reshape(-1)
    cand = np.flatnonzero(np.abs(flat) < tiny)
    if not magnifies(base, None) or cand.size == 0:
        return totals, shift
    parts = rows.p2.shape[0] // flat.size
    own = (cand[:, None] * parts + np.arange(parts)).reshape(-1)   # their rows, in order
    a_all = rows.p2[own].reshape(cand.size, parts, -1)
    b_all = rows.q2[own].reshape(cand.size, parts, -1)
    with np.errstate(invalid="ignore"):
        if func == "kl_div_log":
            small = (a_all > -np.inf) & (a_all < math.log(tiny))
            bad = np.isnan(a_all) | np.isnan(b_all) | (a_all == np.inf) | (b_all == np.inf)
        else:
            small = ((a_all > 0) & (a_all < tiny)) | ((b_all > 0) & (b_all < tiny))
            bad = ~(np.isfinite(a_all) & np.isfinite(b_all))
    redo = np.any(small, axis=(1, 2)) & ~np.any(bad, axis=(1, 2))
    if not redo.any():
        return totals, shift
    flat = flat.copy()
    sh = np.zeros(flat.shape, np.intc) if shift is None else shift.reshape(-1).copy()
    for c in np.flatnonzero(redo):
        a = a_all[c].astype(np.float64).reshape(-1)
        b = b_all[c].astype(np.float64).reshape(-1)
        scaled = (_log_scaled_row(a, b) if func == "kl_div_log"
                  else _js_row_scaled(kernel, a, b))
        if scaled is not None:
            flat[cand[c]], sh[cand[c]] = scaled
    return flat.reshape(totals.shape), sh.reshape(totals.shape)


def _reduce_rows(p: ArrayLike, q: ArrayLike, *, func: str, names: Sequence[str],
                 kernel: _RowKernel, find_bad: _FindBad, axis: Any, keepdims: bool,
                 base: Any, normalize: bool, out: np.ndarray | None, num_threads: Any,
                 check: bool, describe: Callable[[float], str], requirement: str,
                 zero_sum: Callable[[str, np.ndarray, bool], tuple[str, str]],
                 rescale_sums: bool = False) -> np.floating[Any] | np.ndarray:
    """Shared body of the row-kernel functions: returns the delivered result.

    ``kernel(p2, q2, res, status, normalize, check, n_threads)`` fills res[:, 0]
    with each row's value; ``zero_sum(name, res_row, is_p)`` returns (what is
    wrong, what is needed) for a row that cannot be normalised.  With
    ``rescale_sums`` (js_div), res[:, 1:] are the sums of p and q, and rows
    whose sums overflowed are redone scaled by powers of two, as are those
    whose value overflowed when ``base`` may bring it back into the range.
    """
    log_space = func == "kl_div_log"
    keepdims, normalize = flag(keepdims, "keepdims", func), flag(normalize, "normalize", func)
    check = flag(check, "check", func)
    p_in = as_real_array(p, names[0], func, logs="p" if log_space else "")
    q_in = as_real_array(q, names[1], func, logs="q" if log_space else "")
    if base is not None:
        base = check_positive_scalar(base, "base", func, allow_one=False)
    if check:
        # the public function (the compiled entry) of this kernel, for check_alone
        public = js_div if func == "js_div" else kl_div_log
        check_alone(public, p_in, q_in, 0.0 if func == "kl_div_log" else 1.0)
    dtype = result_dtype(p_in, q_in)
    pk = to_kernel_dtype(p_in, dtype)
    qk = to_kernel_dtype(q_in, dtype)
    ndim = max(pk.ndim, qk.ndim)
    shapes = (p_in.shape, q_in.shape)
    if ndim == 0:
        # Two scalars: the single term (axis=-1 and axis=None both mean "it").
        check_scalar_axis(axis, func)
        axes = None
        pk = pk.reshape(1)
        qk = qk.reshape(1)
    else:
        axes = normalize_axes(axis, ndim, func)
    rows = reduction_rows(pk, qk, axes=axes, func=func, names=names, shapes=shapes)
    nrows = rows.p2.shape[0]
    res = np.empty((nrows, 3), dtype=np.float64)
    status = np.empty(nrows, dtype=np.int8)
    work = _div_kernels.rows_work(func, nrows, rows.p2.shape[1])
    nt = resolve_threads(num_threads if ndim else 1, nrows, int(work), func)
    kernel(rows.p2, rows.q2, res, status, normalize, check, nt)
    if rescale_sums and normalize and nrows:
        # a sum overflowed: normalising is scale-invariant, so redo on the rows
        # scaled by powers of two (exactly) that keep their sums finite
        far = np.isinf(res[:, 1:])
        if far.any():
            p2 = scaled_by_max(rows.p2, (1,), far[:, :1])
            q2 = scaled_by_max(rows.q2, (1,), far[:, 1:])
            kernel(p2, q2, res, status, normalize, check, nt)
    if nrows and status.any():
        bad_rows = np.flatnonzero(status == 1)
        if check and bad_rows.size:
            r = int(bad_rows[0])
            found = find_bad(rows.p2[r], rows.q2[r])
            if found is not None:  # the kernel flags only rows that hold a bad value
                raise_bad_value(rows, r, found, func=func, names=names,
                                shapes=shapes if ndim else ((), ()),
                                describe=describe, requirement=requirement)
        r = int(np.flatnonzero(status >= 2)[0])
        is_p = status[r] == 2
        what, need = zero_sum(names[0] if is_p else names[1], res[r], is_p)
        where = (f" in the reduction at output index "
                 f"{format_index(np.unravel_index(r, rows.outer_shape))}") if rows.outer_shape else ""
        raise ValueError(f"{func}: normalize=True but {what}{where}; {need}")
    # a contiguous copy: a view of res would keep its (rows, 3) buffer alive
    value, shift = combine_rows(np.ascontiguousarray(res[:, 0]), rows), None
    if not np.all(np.isfinite(value)):
        # a raw sum beyond the range that base may bring back, or (kl_div_log
        # with normalize) whose weights were those of the rounded normalisers
        if base is not None and rescale_sums:
            value, shift = _js_beyond_range(kernel, rows, res, value, normalize, nt)
        elif func == "kl_div_log" and (base is not None or normalize):
            value, shift = _log_beyond_range(rows, value, normalize)
    if base is not None and not normalize:
        value, shift = _below_range(func, kernel, rows, value, shift, base)
    if base is not None:
        value = times_power_of_two(
            apply_options(value, None, None, normalize=False, base=base, dx=None), shift)
    elif shift is not None:
        value = times_power_of_two(value, shift)
    if keepdims and ndim:
        red = range(ndim) if axes is None else axes
        value = np.expand_dims(value, tuple(red))
    return deliver(value, out, dtype, func)


# The overloads: ``out`` is returned as passed; Python numbers and flat lists give a
# float64 scalar; otherwise the dtype follows the inputs (float32 with float32 gives
# float32) and keepdims=True gives an array (at run time a 0-d input gives a scalar
# there, as NumPy's reductions do; the stubs say array).  The ignored overlaps are with the
# keepdims=True overload below them, which a call that matches both never reaches
# (float64 inputs with keepdims=True take the float64 keepdims=True overload above).
@overload
def js_div(p: ArrayLike, q: ArrayLike, *, axis: Axis = ..., keepdims: bool = ...,
           base: float | None = ..., normalize: bool = ..., out: ArrayT,
           num_threads: int | None = ..., check: bool = ...) -> ArrayT: ...

@overload
def js_div(p: ScalarOr1D, q: ScalarOr1D, *, axis: int | None = ..., keepdims: Literal[False] = ...,
           base: float | None = ..., normalize: bool = ..., out: None = ...,
           num_threads: int | None = ..., check: bool = ...) -> np.float64: ...

@overload
def js_div(p: Float32Like, q: Float32Like, *, axis: Axis = ..., keepdims: Literal[True],
           base: float | None = ..., normalize: bool = ..., out: None = ...,
           num_threads: int | None = ..., check: bool = ...) -> F32Array: ...

@overload
def js_div(p: Float32Like, q: Float32Like, *, axis: Axis = ..., keepdims: bool = ...,
           base: float | None = ..., normalize: bool = ..., out: None = ...,
           num_threads: int | None = ..., check: bool = ...) -> F32Result: ...

@overload
def js_div(p: Float64Like, q: ArrayLike, *, axis: Axis = ..., keepdims: Literal[True],
           base: float | None = ..., normalize: bool = ..., out: None = ...,
           num_threads: int | None = ..., check: bool = ...) -> F64Array: ...

@overload
def js_div(p: ArrayLike, q: Float64Like, *, axis: Axis = ..., keepdims: Literal[True],
           base: float | None = ..., normalize: bool = ..., out: None = ...,
           num_threads: int | None = ..., check: bool = ...) -> F64Array: ...

@overload
def js_div(  # type: ignore[overload-overlap]
           p: Float64Like, q: ArrayLike, *, axis: Axis = ..., keepdims: bool = ...,
           base: float | None = ..., normalize: bool = ..., out: None = ...,
           num_threads: int | None = ..., check: bool = ...) -> F64Result: ...

@overload
def js_div(  # type: ignore[overload-overlap]
           p: ArrayLike, q: Float64Like, *, axis: Axis = ..., keepdims: bool = ...,
           base: float | None = ..., normalize: bool = ..., out: None = ...,
           num_threads: int | None = ..., check: bool = ...) -> F64Result: ...

@overload
def js_div(p: ArrayLike, q: ArrayLike, *, axis: Axis = ..., keepdims: Literal[True],
           base: float | None = ..., normalize: bool = ..., out: None = ...,
           num_threads: int | None = ..., check: bool = ...) -> F32Array | F64Array: ...

@overload
def js_div(p: ArrayLike, q: ArrayLike, *, axis: Axis = ..., keepdims: bool = ...,
           base: float | None = ..., normalize: bool = ..., out: None = ...,
           num_threads: int | None = ..., check: bool = ...) -> FloatResult: ...


def js_div(p: ArrayLike, q: ArrayLike, *, axis: Axis = -1, keepdims: bool = False,
           base: float | None = None, normalize: bool = False,
           out: npt.NDArray[Any] | None = None, num_threads: int | None = None,
           check: bool = True) -> np.floating[Any] | npt.NDArray[Any]:
    """Jensen-Shannon divergence JS(p, q) = KL(p || m) / 2 + KL(q || m) / 2, m = (p + q) / 2.

    Symmetric, finite and at most log(2) (1 bit with ``base=2``) for
    normalised inputs, up to rounding (disjoint supports, where it equals
    log(2), may give a few ulps more: at most 4 in the tests); zeros need no
    special care (m > 0 wherever p or q is).
    Equals ``scipy.spatial.distance.jensenshannon(p, q, base=base) ** 2`` for
    normalised rows.  One fused pass per row; near p == q it keeps full
    relative accuracy (the textbook formula loses it to cancellation), and
    elsewhere a pair term (of normal size) is within 4 eps of its exact value
    (2.7 measured; the textbook formula: 6.1).

    Parameters
    ----------
    p, q : array_like
        Non-negative finite values that broadcast together (as in kl_div).
        float32 with float32 gives float32, from float32 kernels (the terms in
        float, added in double: within 4 float32 eps of the result against
        mpmath, 3.4 measured where the pair terms' two logs cancel most, at
        |p - q| / (p + q) just above 1/2; with normalize, plus an absolute 2**-109 or
        so from the rounding of the sums' reciprocals, so that proportional
        rows may give 1.5e-33, not 0); any other real input computes in float64.
    axis : int, tuple of int or None, default -1
        Axis (or axes) summed over; None sums over everything.
    keepdims : bool, default False
        Keep the reduced axes as size-one dimensions.
    base : float, optional
        Logarithm base (2 gives bits); natural log when None.
    normalize : bool, default False
        Divide p and q by their sums along ``axis`` first (a zero sum is an error).
        scipy's ``jensenshannon`` always normalises.
    out : ndarray, optional
        Array of the result's shape to write into; it is returned.
    num_threads : int, optional
        Threads for the row loop (default: all cores for large inputs, and for
        mid-size ones where waking the idle threads pays, see docs/core.md); a
        single row of 8,192 elements or more is shared by the threads.  The
        result is bit-identical for every count.
    check : bool, default True
        Raise ValueError naming the array, value and index for a negative, NaN or
        infinite value (checked inside the kernel pass).  With False such input
        gives an unspecified result.

    Returns
    -------
    float or ndarray
        The divergence, of shape ``broadcast(p, q).shape`` without ``axis``.

    Examples
    --------
    >>> import kl_fast
    >>> float(kl_fast.js_div([1.0, 0.0], [0.0, 1.0], base=2))
    1.0
    >>> round(float(kl_fast.js_div([0.5, 0.5], [0.9, 0.1])), 6)
    0.101749
    >>> kl_fast.js_div([[1, 3], [2, 2]], [1, 1], normalize=True, base=2).round(6)
    array([0.048795, 0.      ])
    """
    return _reduce_rows(
        p, q, func="js_div", names=("p", "q"), kernel=_div_kernels.js_rows,
        find_bad=_kernels.find_bad, axis=axis, keepdims=keepdims, base=base,
        normalize=normalize, out=out, num_threads=num_threads, check=check,
        describe=describe_bad, rescale_sums=True,
        requirement="probabilities must be finite and non-negative",
        zero_sum=lambda name, row, is_p: (f"{name} sums to {float(row[1 if is_p else 2])!r}",
                                          "it must sum to a positive finite value"),
    )


# The overloads: ``out`` is returned as passed; Python numbers and flat lists give a
# float64 scalar; otherwise the dtype follows the inputs (float32 with float32 gives
# float32) and keepdims=True gives an array (at run time a 0-d input gives a scalar
# there, as NumPy's reductions do; the stubs say array).  The ignored overlaps are with the
# keepdims=True overload below them, which a call that matches both never reaches
# (float64 inputs with keepdims=True take the float64 keepdims=True overload above).
@overload
def kl_div_log(log_p: ArrayLike, log_q: ArrayLike, *, axis: Axis = ..., keepdims: bool = ...,
               base: float | None = ..., normalize: bool = ..., out: ArrayT,
               num_threads: int | None = ..., check: bool = ...) -> ArrayT: ...

@overload
def kl_div_log(log_p: ScalarOr1D, log_q: ScalarOr1D, *, axis: int | None = ...,
               keepdims: Literal[False] = ..., base: float | None = ..., normalize: bool = ...,
               out: None = ..., num_threads: int | None = ...,
               check: bool = ...) -> np.float64: ...

@overload
def kl_div_log(log_p: Float32Like, log_q: Float32Like, *, axis: Axis = ..., keepdims: Literal[True],
               base: float | None = ..., normalize: bool = ..., out: None = ...,
               num_threads: int | None = ..., check: bool = ...) -> F32Array: ...

@overload
def kl_div_log(log_p: Float32Like, log_q: Float32Like, *, axis: Axis = ..., keepdims: bool = ...,
               base: float | None = ..., normalize: bool = ..., out: None = ...,
               num_threads: int | None = ..., check: bool = ...) -> F32Result: ...

@overload
def kl_div_log(log_p: Float64Like, log_q: ArrayLike, *, axis: Axis = ..., keepdims: Literal[True],
               base: float | None = ..., normalize: bool = ..., out: None = ...,
               num_threads: int | None = ..., check: bool = ...) -> F64Array: ...

@overload
def kl_div_log(log_p: ArrayLike, log_q: Float64Like, *, axis: Axis = ..., keepdims: Literal[True],
               base: float | None = ..., normalize: bool = ..., out: None = ...,
               num_threads: int | None = ..., check: bool = ...) -> F64Array: ...

@overload
def kl_div_log(  # type: ignore[overload-overlap]
               log_p: Float64Like, log_q: ArrayLike, *, axis: Axis = ..., keepdims: bool = ...,
               base: float | None = ..., normalize: bool = ..., out: None = ...,
               num_threads: int | None = ..., check: bool = ...) -> F64Result: ...

@overload
def kl_div_log(  # type: ignore[overload-overlap]
               log_p: ArrayLike, log_q: Float64Like, *, axis: Axis = ..., keepdims: bool = ...,
               base: float | None = ..., normalize: bool = ..., out: None = ...,
               num_threads: int | None = ..., check: bool = ...) -> F64Result: ...

@overload
def kl_div_log(log_p: ArrayLike, log_q: ArrayLike, *, axis: Axis = ..., keepdims: Literal[True],
               base: float | None = ..., normalize: bool = ..., out: None = ...,
               num_threads: int | None = ..., check: bool = ...) -> F32Array | F64Array: ...

@overload
def kl_div_log(log_p: ArrayLike, log_q: ArrayLike, *, axis: Axis = ..., keepdims: bool = ...,
               base: float | None = ..., normalize: bool = ..., out: None = ...,
               num_threads: int | None = ..., check: bool = ...) -> FloatResult: ...


def kl_div_log(log_p: ArrayLike, log_q: ArrayLike, *, axis: Axis = -1, keepdims: bool = False,
               base: float | None = None, normalize: bool = False,
               out: npt.NDArray[Any] | None = None, num_threads: int | None = None,
               check: bool = True) -> np.floating[Any] | npt.NDArray[Any]:
    """KL(p || q) from log-probabilities: sum over ``axis`` of exp(log_p) * (log_p - log_q).

    For log-softmax outputs and other log-space data, without leaving log space
    and without NaN at log(0): a term with log_p == -inf (zero probability)
    counts 0 whatever log_q is, and log_q == -inf where log_p is finite makes
    the divergence +inf, exactly as kl_div does for p == 0 and q == 0.  Terms
    stay exact where exp(log_p) under- or overflows.  A separate function rather
    than a ``log_input=`` flag on kl_div: the valid inputs differ (any real or
    -inf here, non-negative values there), and so do the errors.

    Parameters
    ----------
    log_p, log_q : array_like
        Real values or -inf that broadcast together; NaN and +inf are errors.
        float32 with float32 gives float32, from float32 kernels (exp as a float
        pair, the terms in double: within 1 float32 eps of the terms' size, or of
        float32's smallest normal where that is larger; 0.52 measured against
        mpmath); any other real input computes in float64.
    axis : int, tuple of int or None, default -1
        Axis (or axes) summed over; None sums over everything.
    keepdims : bool, default False
        Keep the reduced axes as size-one dimensions.
    base : float, optional
        Logarithm base (2 gives bits); natural log when None.
    normalize : bool, default False
        Normalise both inputs along ``axis`` first by subtracting their
        log-sum-exp (a row that is -inf everywhere is an error).
    out : ndarray, optional
        Array of the result's shape to write into; it is returned.
    num_threads : int, optional
        Threads for the row loop (default: all cores for large inputs, and for
        mid-size ones where waking the idle threads pays, see docs/core.md); a
        single row of 8,192 elements or more is shared by the threads.  The
        result is bit-identical for every count.
    check : bool, default True
        Raise ValueError naming the array, value and index for NaN or +inf
        (checked inside the kernel pass).  With False such input gives an
        unspecified result.

    Returns
    -------
    float or ndarray
        The divergence, of shape ``broadcast(log_p, log_q).shape`` without ``axis``.

    Examples
    --------
    >>> import numpy as np, kl_fast
    >>> round(float(kl_fast.kl_div_log(np.log([0.5, 0.5]), np.log([0.9, 0.1]))), 6)
    0.510826
    >>> float(kl_fast.kl_div_log([0.0, -np.inf], [-np.inf, 0.0]))
    inf
    >>> float(kl_fast.kl_div_log([-np.inf, 0.0], [-np.inf, -1.0]))
    1.0
    >>> logits = np.array([[2.0, 1.0, -np.inf], [0.0, 0.0, 0.0]])
    >>> kl_fast.kl_div_log(logits, [0.0, 0.0, 0.0], normalize=True).round(6)
    array([0.516409, 0.      ])
    """
    return _reduce_rows(
        log_p, log_q, func="kl_div_log", names=("log_p", "log_q"),
        kernel=_div_kernels.kl_log_rows, find_bad=_div_kernels.kl_log_find_bad, axis=axis,
        keepdims=keepdims, base=base, normalize=normalize, out=out, num_threads=num_threads,
        check=check, describe=_describe_bad_log,
        requirement="log-probabilities must be real numbers or -inf",
        zero_sum=lambda name, row, is_p: (f"{name} is -inf everywhere",
                                          "it must hold some probability"),
    )


# The public functions: compiled entries with these docstrings that compute
# every call whose layout needs no copy, and call the above for everything else.
js_div_python = js_div
js_div = _div_kernels.register_general("js_div", js_div_python)
kl_div_log_python = kl_div_log
kl_div_log = _div_kernels.register_general("kl_div_log", kl_div_log_python)
