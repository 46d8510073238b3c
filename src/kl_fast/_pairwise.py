"""All-pairs matrices: kl_pairwise (through a matrix product) and js_pairwise."""
from __future__ import annotations

import math
import os
from typing import Any, Callable, NamedTuple, Sequence, cast, overload

import numpy as np
import numpy.typing as npt

from . import _div_kernels, _kernels
from ._typing import ArrayLike, ArrayT, F32Array, F64Array, Float64Like
from ._api import (check_out, deliver, finish, kl_div, magnifies,
                   normalize_rescale, overflow_shift, raw_tiny, row_sums, scaled_by_max,
                   times_power_of_two)
from ._divergences import js_div
from ._validation import (
    as_real_array,
    flag,
    check_positive_scalar,
    resolve_threads,
    result_dtype,
    to_kernel_dtype,
)

_F64 = np.dtype(np.float64)
# Entries of the product form resolved from 0 by fewer error bounds than these
# are recomputed exactly (_div_kernels, where the compiled form reads them too).
_REFINE_FACTOR, _REFINE_RELATIVE = _div_kernels.REFINE_FACTOR, _div_kernels.REFINE_RELATIVE
# Rows per block are chosen so that a block of the result has about this many
# entries: the temporaries stay a few times that size whatever m is.
_BLOCK_ELEMENTS = 1 << 20
# products from which OpenBLAS runs on threads (whose workers then spin for about
# 100 ms: measured from 100 x 100 x 100, not at 64 x 64 x 64)
_BLAS_THREADED = 1 << 18
_EMPTY = np.empty(0, dtype=np.float64)


def _c(a: np.ndarray) -> np.ndarray:
    """a as a C-contiguous float64 array (itself when it is one)."""
    return np.ascontiguousarray(a, dtype=np.float64)


def _check_matrix_shape(shape: tuple[int, ...], name: str, func: str) -> None:
    if len(shape) != 2:
        raise ValueError(
            f"{func}: {name} must be a 2-D array with one distribution per row, "
            f"got shape {shape}"
        )


def _check_row_lengths(p_shape: tuple[int, ...], q_shape: tuple[int, ...], func: str) -> None:
    if q_shape[1] != p_shape[1]:
        raise ValueError(
            f"{func}: the rows of P (length {p_shape[1]}) and of Q (length "
            f"{q_shape[1]}) must have the same length"
        )


def _as_matrix(a: object, name: str, func: str) -> np.ndarray:
    arr = as_real_array(a, name, func)
    _check_matrix_shape(arr.shape, name, func)
    return arr


def _prepare(P: object, Q: object, func: str) -> tuple[np.ndarray, np.ndarray, np.dtype, bool]:
    """Validated 2-D inputs in the kernel dtype: (Pk, Qk, dtype, same)."""
    P_in = _as_matrix(P, "P", func)
    same = Q is None
    Q_in = P_in if same else _as_matrix(Q, "Q", func)
    _check_row_lengths(P_in.shape, Q_in.shape, func)
    dtype = result_dtype(P_in, Q_in)
    Pk = to_kernel_dtype(P_in, dtype)
    Qk = Pk if same else to_kernel_dtype(Q_in, dtype)
    return Pk, Qk, dtype, same


def _direct_out(out: np.ndarray | None, shape: tuple[int, int], dtype: np.dtype,
                inputs: Sequence[object], func: str) -> np.ndarray | None:
    """Check ``out`` (None, or an array for a result of this shape and dtype)
    and return it when the kernels can write the result into it as it is: the
    result is float64 and out a C-contiguous float64 array that may share no
    memory with an input.  Otherwise None: the result is made apart and
    ``deliver`` writes it."""
    if out is None:
        return None
    check_out(out, shape, dtype, func)
    if (dtype == _F64 and out.dtype == _F64 and out.flags.c_contiguous
            and not any(isinstance(a, np.ndarray) and np.may_share_memory(out, a)
                        for a in inputs)):
        return out
    return None


def _rows_against(A: np.ndarray, v: np.ndarray, names: tuple[str, str], func: str,
                  num_threads: Any, check: bool, want_sums: bool, row0: int = 0) -> np.ndarray:
    """row_sums(A, v) over the last axis, for a 2-D A and a 1-D v of its dtype: the
    kernel reached directly (row_sums' layout and error machinery cost tens of us,
    more than the pass itself on small matrices); row_sums explains a bad value,
    naming A and v by ``names``."""
    m, n = A.shape
    res = np.empty((m, 3), dtype=np.float64)
    status = np.empty(m, dtype=np.int8)
    nt = resolve_threads(num_threads, m, m * n, func)
    v = np.ascontiguousarray(v, dtype=A.dtype)
    # v repeated down the rows (stride 0), as np.broadcast_to would give it, at a tenth the cost
    rows_v = np.ndarray(A.shape, A.dtype, v, 0, (0, v.itemsize))
    _kernels.kl_rows(A, rows_v, res, status, check, nt, want_sums)
    if check and m and status.any():
        res, _ = row_sums(A, v, axes=(1,), func=func, num_threads=num_threads, check=check,
                          names=names, shapes=(A.shape, v.shape),
                          want_sums=want_sums, origins=((row0, 0), (0,)))
    return res


def _row_stats(A: np.ndarray, name: str, func: str, num_threads: Any, check: bool,
               row0: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(sum a*log(a), sum a) of each row: one kernel pass, with the fused check.

    ``row0``: the first row's index in a larger matrix (A a block of it), for errors.
    """
    # a row of ones, not one broadcast 1: a contiguous q needs no gathering
    ones = np.ones(A.shape[1], dtype=A.dtype)
    res = _rows_against(A, ones, (name, "ones"), func, num_threads, check, True, row0)
    return res[:, 0], res[:, 1]


def _check_sums(sums: np.ndarray, name: str, func: str, row0: int = 0) -> None:
    ok = (sums > 0) & (sums <= np.finfo(np.float64).max)
    if not np.all(ok):
        r = int(np.flatnonzero(~ok)[0])
        raise ValueError(
            f"{func}: normalize=True but row {row0 + r} of {name} sums to {float(sums[r])!r}; "
            f"it must sum to a positive finite value"
        )


def _far(sums: np.ndarray, dtype: np.dtype, tiny_too: bool) -> np.ndarray:
    """Row sums that overflowed and, with tiny_too, positive ones below the
    range of the kernels of ``dtype`` (2**-960, float32 2**-100)."""
    far: np.ndarray = np.isinf(sums)
    if tiny_too:
        far |= (sums > 0) & (sums < (2.0 ** -100 if dtype == np.float32 else 2.0 ** -960))
    return far


def _meets_zeros(P: np.ndarray, zero_cols: np.ndarray, Zq_T: np.ndarray) -> np.ndarray:
    """(rows of P, columns of Zq_T): where P_i has mass on a zero of Q_j, from
    the indicator product (Zq_T: Q's zeros in the columns zero_cols, transposed)."""
    return cast(np.ndarray, ((P[:, zero_cols] > 0).astype(np.float32) @ Zq_T) > 0)


def _zero_mass(P: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """(rows of P, rows of Q): where P_i has mass on a zero of Q_j (the
    divergence is +inf), by the indicator product over Q's zero columns."""
    q_zero = Q == 0
    zero_cols = np.flatnonzero(q_zero.any(axis=0))
    if not zero_cols.size:
        return np.zeros((P.shape[0], Q.shape[0]), dtype=bool)
    return _meets_zeros(P, zero_cols, q_zero[:, zero_cols].T.astype(np.float32))


def _mend_normalized(P0: np.ndarray, Q0: np.ndarray, P: np.ndarray, Q: np.ndarray,
                     res: np.ndarray, check: bool) -> None:
    """normalize: the entries of ``res`` that the product form or the scaling of
    rows by powers of two (P0, Q0 into P, Q) could not give, redone by kl_div from
    the original rows: those not finite (other than the +inf of P0_i's mass on a
    zero of Q0_j) and the pairs with a row that scaling rounded an element of
    below the normal range.  ``check``: the caller's (kl_div must not raise, with
    its own name and the row's index, for a value the caller was told not to check)."""
    redo = ~np.isfinite(res)
    if redo.any():
        redo &= ~_zero_mass(P0, Q0)
    redo |= _rounded_away(P0, P)[:, None] | _rounded_away(Q0, Q)[None, :]
    _by_row_function(kl_div, P0, Q0, redo, res, normalize=True, check=check)


def _by_row_function(fn: Callable[..., Any], P0: np.ndarray, Q0: np.ndarray, mask: np.ndarray,
                     res: np.ndarray, **options: Any) -> None:
    """res[i, j] = fn(P0[i], Q0[j], **options) where mask is set, in calls on
    the stacked pairs (copies of about 8 MB at a time)."""
    rows, cols = np.nonzero(mask)
    step = max(1, 2**20 // max(P0.shape[1], 1))
    for t in range(0, rows.size, step):
        r, c = rows[t:t + step], cols[t:t + step]
        res[r, c] = fn(P0[r], Q0[c], **options)


def _redo_unchecked(P0: np.ndarray, Q0: np.ndarray, res: np.ndarray, normalize: bool) -> None:
    """check=False: the pairs with a row holding a negative, NaN or infinite
    value get what kl_div gives them (NaN, mostly), as on the small path.
    The product form's centred logs count such a q as a zero, which gave
    finite numbers."""
    bad_p = ~np.all(np.isfinite(P0) & (P0 >= 0), axis=1)
    bad_q = ~np.all(np.isfinite(Q0) & (Q0 >= 0), axis=1)
    if bad_p.any() or bad_q.any():
        _by_row_function(kl_div, P0, Q0, bad_p[:, None] | bad_q[None, :], res,
                         normalize=normalize, check=False)


def _rounded_away(original: np.ndarray, scaled: np.ndarray) -> np.ndarray:
    """Per row: scaling by a power of two took an element below the normal range."""
    if scaled is original:
        return np.zeros(original.shape[0], dtype=bool)
    down = np.abs(scaled) < np.abs(original)
    return cast(np.ndarray, np.any(down & ~(np.abs(scaled) >= np.finfo(scaled.dtype).tiny), axis=1))


def _finite_sums(Pk: np.ndarray, Qk: np.ndarray, hp: np.ndarray, psum: np.ndarray,
                 hq: np.ndarray, qsum: np.ndarray, same: bool, func: str, num_threads: Any,
                 tiny_too: bool = True, near_one: bool = False) -> tuple[np.ndarray, ...]:
    """For normalize: rows whose sum is out of range (see _far) scaled by
    powers of two (exactly; normalising is scale-invariant) and their stats
    recomputed; with near_one also rows whose sum is outside [1/4, 4), their
    sum into [1/2, 1) (_sum_near_one); then the sums checked.  Returns (Pk, Qk,
    hp, psum, hq, qsum)."""
    if _far(psum, Pk.dtype, tiny_too).any():
        Pk = scaled_by_max(Pk, (1,), _far(psum, Pk.dtype, tiny_too)[:, None])
        hp, psum = _row_stats(Pk, "P", func, num_threads, False)
        if same:
            Qk, hq, qsum = Pk, hp, psum
    if not same and _far(qsum, Qk.dtype, tiny_too).any():
        Qk = scaled_by_max(Qk, (1,), _far(qsum, Qk.dtype, tiny_too)[:, None])
        hq, qsum = _row_stats(Qk, "Q", func, num_threads, False)
    if near_one:
        Pk, hp, psum = _sum_near_one(Pk, hp, psum, "P", func, num_threads)
        Qk, hq, qsum = (Pk, hp, psum) if same else _sum_near_one(Qk, hq, qsum, "Q", func,
                                                                  num_threads)
    _check_sums(psum, "P", func)
    if not same:
        _check_sums(qsum, "Q", func)
    return Pk, Qk, hp, psum, hq, qsum


def _sum_near_one(X: np.ndarray, h: np.ndarray, sums: np.ndarray, name: str, func: str,
                  num_threads: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, h, sums) with the rows whose finite positive sum is outside
    [1/sqrt(SUMS_APART), sqrt(SUMS_APART)) scaled by the power of two that takes
    it into [1/2, 1), and their stats recomputed: KL's product form finishes
    S/P + log(Q/P), which cancels where the sums of a pair are far apart
    (kl_div's rule: a factor SUMS_APART or more, 2).  Exact: rows whose scaling
    would take an element below the normal range keep their sums."""
    half = math.sqrt(_div_kernels.SUMS_APART)
    apart = np.isfinite(sums) & (sums > 0) & ((sums < 1.0 / half) | (sums >= half))
    if not apart.any():
        return X, h, sums
    e = np.frexp(np.where(apart, sums, 1.0))[1]
    # not where scaling down would take an element below the normal range
    with np.errstate(invalid="ignore"):
        least = np.min(np.where(X > 0, X, np.inf), axis=1, initial=np.inf)
    apart &= (e <= 0) | (np.ldexp(least, -np.maximum(e, 0)) >= np.finfo(X.dtype).tiny)
    if not apart.any():
        return X, h, sums
    X = np.ldexp(X, np.where(apart, -e, 0).astype(np.intc)[:, None]).astype(X.dtype, copy=False)
    h, sums = _row_stats(X, name, func, num_threads, False)
    return X, h, sums


def _resolve_base(base: Any, func: str) -> float | None:
    return None if base is None else check_positive_scalar(base, "base", func, allow_one=False)


class CentredLogs(NamedTuple):
    """The log matrix of the product form for the rows Q64: L = log(q / r) where
    q > 0 and 0 where q == 0, with r the column maxima of Q64 (1 where a column
    is all zero), so L <= 0 and sum p |L| = -P L^T.  Rows near one another give
    small L and a small rounding error in the product."""
    L: np.ndarray       # (k, n)
    r: np.ndarray       # (n,), positive and finite


def _centred_logs(Q64: np.ndarray, num_threads: Any, func: str) -> CentredLogs:
    Q64 = np.ascontiguousarray(Q64)
    r = _div_kernels.column_maxima(Q64)
    L = np.empty(Q64.shape, dtype=np.float64)
    nt = resolve_threads(num_threads, Q64.shape[0], Q64.size, func)
    _div_kernels.centred_log_rows(Q64, r, L, nt)
    return CentredLogs(L, r)


def _blas_env_threads() -> str:
    """The thread count the environment gave BLAS when NumPy loaded it, in
    OpenBLAS's order (OPENBLAS_NUM_THREADS, GOTO_NUM_THREADS, OMP_NUM_THREADS,
    where 0 counts as unset; NumPy's wheels carry OpenBLAS), then
    MKL_NUM_THREADS; "" where none is set."""
    for name in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS",
                 "MKL_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value and value != "0":
            return value
    return ""


# Read once, as BLAS read it when it loaded (NumPy is imported before this module);
# a limit set at run time (threadpoolctl's) is not seen.
_BLAS_ONE_THREAD = _blas_env_threads() == "1"
_div_kernels.configure_product(-1 if _BLAS_ONE_THREAD else _BLAS_THREADED,
                               _kernels.note_busy_core)


def _kl_matrix(Pk: np.ndarray, Qk: np.ndarray, hp: np.ndarray, psum: np.ndarray,
               qsum: np.ndarray, *, normalize: bool, num_threads: Any, func: str,
               refine: bool = True, bound: np.ndarray | None = None,
               out: np.ndarray | None = None, logs: CentredLogs | None = None,
               originals: tuple[np.ndarray, ...] | None = None) -> np.ndarray:
    """The (m, k) matrix of KL(P_i || Q_j), natural log, float64.

    With r > 0 any vector, KL(P_i || Q_j) = sum p log(p / r) - sum p log(q / r):
    the first term per row by the row kernel, minus the product P @ L.T of the
    centred logs L = log(Q / r) (_centred_logs), one product into ``out`` (a
    C-contiguous float64 (m, k) array that overlaps no input) or a new array,
    finished block by block.  Where the rows lie near r (near-duplicates) both terms are small,
    and so is the rounding error of their difference.  With ``bound`` (an (m,
    k) array) the a-priori bound on each product-form entry's absolute error is
    written there; ``refine=False`` skips the exact recomputation of the
    entries too close to zero (both for testing the bound).  ``logs``:
    _centred_logs of Qk, when the caller has it.
    """
    m, n = Pk.shape
    k = Qk.shape[0]
    if out is None:
        out = np.empty((m, k), dtype=np.float64)
    if m == 0 or k == 0:
        return out
    if n == 0:
        out.fill(0.0)
        if bound is not None:
            bound.fill(0.0)
        return out
    Q64 = np.asarray(Qk, dtype=np.float64)
    if logs is None:
        logs = _centred_logs(Q64, num_threads, func)
    LT = logs.L.T
    q_zero = Q64 == 0
    zero_cols = np.flatnonzero(q_zero.any(axis=0))
    # Indicator product: > 0 exactly where P_i has mass on a zero of Q_j.
    Zq_T = q_zero[:, zero_cols].T.astype(np.float32) if zero_cols.size else None
    del q_zero
    gamma = _div_kernels.product_gamma(n)
    # the per-row and per-column inputs of the one pass after the product,
    # C-contiguous float64 once (read with normalize only: the sums and their logs)
    if normalize:
        ps_c, qs_c = _c(psum), _c(qsum)
        log_ps, log_qs = np.log(ps_c), np.log(qs_c)
    else:
        ps_c = qs_c = log_ps = log_qs = _EMPTY
    block = max(1, min(m, _BLOCK_ELEMENTS // k))
    block_threads = resolve_threads(num_threads, min(m, block), min(m, block) * k, func)
    # one product for the whole matrix (a product per block packed L again each
    # time: 4,000 x 4,000, n = 256, 75 against 64 ms), after the rows' terms,
    # while BLAS's threads are still asleep
    # C order always: BLAS rounds a Fortran-order P's product differently, and the
    # result must not depend on the layout (the callers' rows are float64)
    P64 = np.ascontiguousarray(Pk, dtype=np.float64)
    starts = range(0, m, block)
    # Large finite inputs (about 1e300) overflow the product form (inf, or
    # inf - inf = NaN); every non-finite entry is recomputed by the row kernel
    # below, so the warnings are silenced, not the problem.
    with np.errstate(over="ignore", invalid="ignore"):
        terms = [_row_terms(P64[i0:i0 + block], hp[i0:i0 + block], logs, block_threads, func)
                 for i0 in starts]
        block_threads = _product(P64, LT, out, num_threads, block, func) or block_threads
        for (hr, h_abs), i0 in zip(terms, starts):
            i1 = min(m, i0 + block)
            ob = out[i0:i1]
            # zeroed pages that the finish touches only in a row with an entry to redo
            redo = np.zeros(ob.shape, dtype=np.uint8)
            # the raw KL hr - C (finished with normalize), its error bound and
            # the entries that bound cannot resolve from 0, in one pass
            redo_rows = _div_kernels.product_form_finish(
                ob, hr, h_abs, ps_c[i0:i1], qs_c, log_ps[i0:i1], log_qs, normalize,
                gamma, max(_REFINE_FACTOR, _REFINE_RELATIVE / gamma), redo,
                None if bound is None else bound[i0:i1],
                block_threads)
            if Zq_T is not None:
                infinite = _meets_zeros(Pk[i0:i1], zero_cols, Zq_T)
                ob[infinite] = np.inf
                if redo_rows:
                    redo[infinite] = 0
            if not refine or not redo_rows:
                continue
            # Recompute exactly what the product form cannot resolve: entries within
            # _REFINE_FACTOR bounds of 0, and non-finite ones (overflow, bad input).
            redo_mask = redo.view(np.bool_)
            rows, cols = np.nonzero(redo_mask)
            if rows.size:
                rows = rows.astype(np.intp, copy=False) + i0
                cols = np.ascontiguousarray(cols, dtype=np.intp)
                ob[redo_mask] = _kl_pairs_exact(Pk, Qk, psum, qsum, rows, cols, normalize,
                                                num_threads, func, originals)
    return out


def _row_terms(P64: np.ndarray, hp: np.ndarray, logs: CentredLogs, threads: int,
               func: str) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a block of C-contiguous float64 rows: sum p log(p / r)
    (kl_div's row kernel against r), and the scale of the product form's
    rounding errors (_div_kernels.error_scales; hp: the rows' sum p log p)."""
    hr = _c(_rows_against(P64, logs.r, ("P", "r"), func, threads, False, False)[:, 0])
    h_abs = np.array(hp, dtype=np.float64)
    _div_kernels.error_scales(P64, logs.r, h_abs)
    return hr, h_abs


def _product(P64: np.ndarray, LT: np.ndarray, out: np.ndarray, num_threads: Any, block: int,
             func: str) -> int:
    """out = P64 @ LT through BLAS (the caller silences overflow).  Where BLAS
    runs it on threads, which spin on after it, the rule is told the core is
    busy: returns the threads a block then gets (our next calls by default keep
    to one), else 0."""
    np.matmul(P64, LT, out=out)                                       # C = P L^T
    if P64.shape[0] * LT.shape[1] * P64.shape[1] <= _BLAS_THREADED or _BLAS_ONE_THREAD:
        return 0
    _kernels.note_busy_core()
    rows = min(out.shape[0], block)
    return resolve_threads(num_threads, rows, rows * LT.shape[1], func)


def _kl_pairs_exact(Pk: np.ndarray, Qk: np.ndarray, psum: np.ndarray, qsum: np.ndarray,
                    rows: np.ndarray, cols: np.ndarray, normalize: bool, num_threads: Any,
                    func: str, originals: tuple[np.ndarray, ...] | None) -> np.ndarray:
    """kl_div of the pairs (P[rows], Q[cols]) by its row kernel.  With
    normalize and ``originals`` (P, Q and their sums before rows were scaled
    by powers of two), from the original rows, so each value is kl_div's bit
    for bit; the pairs kl_div itself redoes on rescaled inputs (sums far apart
    or out of range) by kl_div."""
    if normalize and originals is not None:
        Pk, Qk, psum, qsum = originals
    res = np.empty((rows.size, 3), dtype=np.float64)
    nt = resolve_threads(num_threads, rows.size, rows.size * Pk.shape[1], func)
    _div_kernels.kl_pairs(Pk, Qk, rows, cols, res, nt)
    res[:, 1], res[:, 2] = psum[rows], qsum[cols]
    vals = finish(res[:, 0], res[:, 1], res[:, 2], normalize=normalize, base=None, dx=None,
                  func=func)
    if normalize and originals is not None:
        far = normalize_rescale(res, False)
        if far.any():
            vals[far] = kl_div(Pk[rows[far]], Qk[cols[far]], normalize=True, check=False)
    return vals


def _kl_beyond_range(Pk: np.ndarray, Qk: np.ndarray, res: np.ndarray,
                     psum: np.ndarray) -> np.ndarray | None:
    """For base: the entries of ``res`` (the raw matrix) whose raw sum left the
    range, for kl_div to redo (_api.kl_beyond_range), or None when there are
    none.  Only rows summing above DBL_MAX / 1500 can overflow (|log(p/q)| <=
    1455); the entries made infinite by a zero of Q under P[i] > 0 stay inf."""
    big = np.flatnonzero(psum > _div_kernels.PRODUCT_BIG)
    if not big.size:
        return None     # (the common case: no pass over the matrix)
    over = np.zeros(res.shape, dtype=bool)
    over[big] = ~np.isfinite(res[big])
    some = np.flatnonzero(over.any(axis=1))
    if some.size:
        over[some] &= ~_zero_mass(Pk[some], Qk)
    return over if over.any() else None


def _small_entries(P0: np.ndarray, Q0: np.ndarray, res: np.ndarray, base: float,
                   js: bool = False) -> None:
    """The entries of ``res`` (divided by log(base)) whose raw sum is below
    raw_tiny but not 0, of a row of P (for JS: or of Q) holding a value > 0 as
    small, where base magnifies them (their subnormal terms kept few bits):
    kl_div's (js_div's) value of the pair, in place, as the row functions redo
    them (_api.kl_below_range, _divergences._below_range)."""
    log_base = math.log(base)
    tiny = raw_tiny(P0.dtype == np.float32)
    if not magnifies(base, None):
        return
    small_p = np.any((P0 > 0) & (P0 < tiny), axis=1)
    small_q = np.any((Q0 > 0) & (Q0 < tiny), axis=1) if js else np.zeros(Q0.shape[0], bool)
    if not (small_p.any() or small_q.any()):
        return
    raw = res * log_base
    mask = (np.abs(raw) < tiny) & (small_p[:, None] | small_q[None, :])
    if not js:
        mask &= raw != 0    # kl_div's exact 0 is a sum of zero terms (its _raw_too_small)
    _by_row_function(js_div if js else kl_div, P0, Q0, mask, res, base=base, check=False)


# The overloads: ``out`` is returned as passed, else the dtype follows the inputs
# (float32 with float32 gives float32).  mypy takes NumPy's scalar types, which are
# not final, for overlapping: a float32 array never matches the float64 overload.
@overload
def kl_pairwise(P: ArrayLike, Q: ArrayLike | None = ..., *, base: float | None = ...,
                normalize: bool = ..., out: ArrayT, num_threads: int | None = ...,
                check: bool = ...) -> ArrayT: ...

@overload
def kl_pairwise(  # type: ignore[overload-overlap]
                P: F32Array, Q: F32Array | None = ..., *, base: float | None = ...,
                normalize: bool = ..., out: None = ..., num_threads: int | None = ...,
                check: bool = ...) -> F32Array: ...

@overload
def kl_pairwise(P: Float64Like, Q: ArrayLike | None = ..., *, base: float | None = ...,
                normalize: bool = ..., out: None = ..., num_threads: int | None = ...,
                check: bool = ...) -> F64Array: ...

@overload
def kl_pairwise(P: ArrayLike, Q: Float64Like, *, base: float | None = ...,
                normalize: bool = ..., out: None = ..., num_threads: int | None = ...,
                check: bool = ...) -> F64Array: ...

@overload
def kl_pairwise(P: ArrayLike, Q: ArrayLike | None = ..., *, base: float | None = ...,
                normalize: bool = ..., out: None = ..., num_threads: int | None = ...,
                check: bool = ...) -> F32Array | F64Array: ...

def kl_pairwise(P: ArrayLike, Q: ArrayLike | None = None, *, base: float | None = None,
                normalize: bool = False, out: npt.NDArray[Any] | None = None,
                num_threads: int | None = None, check: bool = True) -> npt.NDArray[Any]:
    """All-pairs Kullback-Leibler matrix: entry [i, j] is KL(P[i] || Q[j]).

    Same semantics as ``kl_div(P[i], Q[j])`` for every pair (a term with p == 0
    counts 0; p > 0 where q == 0 makes the entry +inf), computed as the
    entropy term minus the matrix product ``P @ log(Q).T`` through NumPy's BLAS,
    block by block (memory grows with the (m, k) result, never with m * k * n).
    Where P[i] has mass on a zero of Q[j] the entry is exactly +inf; no NaN
    arises from 0 * log(0).

    Accuracy: the product form is centred on the columns' maxima r of Q
    (``sum p log(p/r)`` minus ``P @ log(Q/r).T``); its absolute error is bounded
    by about n * eps * S, S = sum p |log(q/r)| + sum |p log p| + sum p |log r|.
    Entries within 2**24 such error bounds of zero or below 2**-12 * S (pairs of
    near-duplicate rows, the diagonal of ``kl_pairwise(P)``), and any non-finite
    ones, are recomputed by kl_div's exact row kernel, so they equal
    ``kl_div(P[i], Q[j], ...)``; every other entry has a relative error below
    min(2**-24, 2**12 * n * eps) by that bound, and in practice near
    1e-13 * (sum p*|log q|) / KL.  Small inputs (m * k * (n + 16) up to
    2**12, where the row kernel is the faster) are computed pair by pair by the
    row kernel, so every entry equals ``kl_div(P[i], Q[j], ...)`` (in float64).
    For full accuracy on every entry of a large input use
    ``kl_div(P[:, None], Q[None])`` (O(m k n) work, no (m, k, n) temporary).

    Parameters
    ----------
    P : array_like, shape (m, n)
        Rows of non-negative finite values (distributions, histograms, counts).
    Q : array_like, shape (k, n), optional
        Rows to compare against; None compares P with itself (all pairs in P).
    base : float, optional
        Logarithm base (2 gives bits); natural log when None.
    normalize : bool, default False
        Divide every row by its sum first (a row summing to zero is an error).
    out : ndarray, shape (m, k), optional
        Where to put the result (any dtype the result casts to under
        "same_kind"); it is returned.  A C-contiguous float64 ``out`` receives
        the float64 result directly, without a temporary.
    num_threads : int, optional
        Threads for the row kernels.  The matrix product runs on NumPy's BLAS,
        with its own threads; by default the row kernels run on one thread
        beside them (two thread pools on the same cores slow each other down).
        The result does not depend on num_threads.
    check : bool, default True
        Raise ValueError naming the matrix, value and index for a negative, NaN
        or infinite value (checked inside the kernel pass over each row).

    Returns
    -------
    ndarray, shape (m, k)
        float32 when P and Q are float32, else float64.

    Examples
    --------
    >>> import numpy as np, kl_fast
    >>> P = np.array([[0.5, 0.5], [0.9, 0.1], [1.0, 0.0]])
    >>> kl_fast.kl_pairwise(P).round(6)
    array([[0.      , 0.510826,      inf],
           [0.368064, 0.      ,      inf],
           [0.693147, 0.105361, 0.      ]])
    >>> kl_fast.kl_pairwise(P, [[0.0, 1.0]], base=2)
    array([[inf],
           [inf],
           [inf]])
    """
    func = "kl_pairwise"
    normalize, check = flag(normalize, "normalize", func), flag(check, "check", func)
    Pk, Qk, dtype, same = _prepare(P, Q, func)
    if Pk is not P or (not same and Qk is not Q):
        # converted here (a subclass, extended precision, objects): a small input
        # is computed pair by pair, as the compiled entry does for the others
        small = _div_kernels.fast_path(func, Pk, None if same else Qk, base=base,
                                       normalize=normalize, out=out, num_threads=num_threads,
                                       check=check)
        if small is not None:
            return cast(np.ndarray, small)
    if num_threads is None:
        # one thread pool at a time: BLAS has the cores for the product, and its
        # threads, still spinning after it, slow a second pool down (measured:
        # 1000 x 1000 x 100 took 5.9-7.9 ms with two threads of ours, 4.4 with one)
        num_threads = 1
    base = _resolve_base(base, func)
    direct = _direct_out(out, (Pk.shape[0], Qk.shape[0]), dtype, (P, Q, Pk, Qk), func)
    if dtype != _F64:
        # float32 input is computed in float64 throughout and rounded once at the end
        Pk = Pk.astype(np.float64)
        Qk = Pk if same else Qk.astype(np.float64)
    hp, psum = _row_stats(Pk, "P", func, num_threads, check)
    hq, qsum = (hp, psum) if same else _row_stats(Qk, "Q", func, num_threads, check)
    P0, Q0, originals = Pk, Qk, (Pk, Qk, psum, qsum)
    if normalize:
        Pk, Qk, hp, psum, hq, qsum = _finite_sums(Pk, Qk, hp, psum, hq, qsum, same, func,
                                                  num_threads, near_one=True)
    res = _kl_matrix(Pk, Qk, hp, psum, qsum, normalize=normalize,
                     num_threads=num_threads, func=func, out=direct, originals=originals)
    if not check:
        _redo_unchecked(P0, Q0, res, normalize)
    if normalize:
        _mend_normalized(P0, Q0, Pk, Qk, res, check)
    # entries whose raw sum left the range: the negative terms, or base, may
    # bring them back (kl_div redoes such a pair on scaled rows)
    over = _kl_beyond_range(Pk, Qk, res, psum) if not normalize else None
    if base is not None:
        with np.errstate(over="ignore"):  # beyond the range: inf
            res /= math.log(base)
    if over is not None:
        _by_row_function(kl_div, Pk, Qk, over, res, base=base, check=False)
    if base is not None and not normalize:
        _small_entries(P0, Q0, res, base)
    return res if direct is not None else cast(np.ndarray, deliver(res, out, dtype, func))


# The overloads: ``out`` is returned as passed, else the dtype follows the inputs
# (float32 with float32 gives float32).  mypy takes NumPy's scalar types, which are
# not final, for overlapping: a float32 array never matches the float64 overload.
@overload
def js_pairwise(P: ArrayLike, Q: ArrayLike | None = ..., *, base: float | None = ...,
                normalize: bool = ..., out: ArrayT, num_threads: int | None = ...,
                check: bool = ...) -> ArrayT: ...

@overload
def js_pairwise(  # type: ignore[overload-overlap]
                P: F32Array, Q: F32Array | None = ..., *, base: float | None = ...,
                normalize: bool = ..., out: None = ..., num_threads: int | None = ...,
                check: bool = ...) -> F32Array: ...

@overload
def js_pairwise(P: Float64Like, Q: ArrayLike | None = ..., *, base: float | None = ...,
                normalize: bool = ..., out: None = ..., num_threads: int | None = ...,
                check: bool = ...) -> F64Array: ...

@overload
def js_pairwise(P: ArrayLike, Q: Float64Like, *, base: float | None = ...,
                normalize: bool = ..., out: None = ..., num_threads: int | None = ...,
                check: bool = ...) -> F64Array: ...

@overload
def js_pairwise(P: ArrayLike, Q: ArrayLike | None = ..., *, base: float | None = ...,
                normalize: bool = ..., out: None = ..., num_threads: int | None = ...,
                check: bool = ...) -> F32Array | F64Array: ...

def js_pairwise(P: ArrayLike, Q: ArrayLike | None = None, *, base: float | None = None,
                normalize: bool = False, out: npt.NDArray[Any] | None = None,
                num_threads: int | None = None, check: bool = True) -> npt.NDArray[Any]:
    """All-pairs Jensen-Shannon matrix: entry [i, j] is JS(P[i], Q[j]).

    Each entry equals ``js_div(P[i], Q[j], ...)`` bit for bit (the same fused
    row kernel, run over all pairs in parallel).  JS has no matrix-product form
    (log((p + q) / 2) couples the pair), so the work is O(m k n).  With Q None
    the matrix is symmetric and only its upper triangle is computed.  Equals
    ``scipy.spatial.distance.cdist(P, Q, "jensenshannon") ** 2`` for normalised
    rows.

    Parameters
    ----------
    P : array_like, shape (m, n)
        Rows of non-negative finite values.
    Q : array_like, shape (k, n), optional
        Rows to compare against; None compares P with itself.
    base : float, optional
        Logarithm base (2 gives bits); natural log when None.
    normalize : bool, default False
        Divide every row by its sum first (a row summing to zero is an error).
    out : ndarray, shape (m, k), optional
        Where to put the result, as for ``kl_pairwise``; it is returned.
    num_threads : int, optional
        Threads for the pair loop (default: all cores for large inputs, where
        waking the idle threads pays).  The result is bit-identical for every
        thread count.
    check : bool, default True
        Raise ValueError naming the matrix, value and index for a negative, NaN
        or infinite value.

    Returns
    -------
    ndarray, shape (m, k)
        float32 when P and Q are float32, else float64.

    Examples
    --------
    >>> import numpy as np, kl_fast
    >>> P = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    >>> kl_fast.js_pairwise(P, base=2).round(6)
    array([[0.      , 1.      , 0.311278],
           [1.      , 0.      , 0.311278],
           [0.311278, 0.311278, 0.      ]])
    """
    func = "js_pairwise"
    normalize, check = flag(normalize, "normalize", func), flag(check, "check", func)
    Pk, Qk, dtype, same = _prepare(P, Q, func)
    base = _resolve_base(base, func)
    m, n = Pk.shape
    k = Qk.shape[0]
    direct = _direct_out(out, (m, k), dtype, (P, Q, Pk, Qk), func)
    if check or normalize:
        hp, psum = _row_stats(Pk, "P", func, num_threads, check)
        hq, qsum = (hp, psum) if same else _row_stats(Qk, "Q", func, num_threads, check)
    if normalize:
        # sums that overflowed only: js_div divides tiny sums safely, and its
        # entries must stay js_div's bit for bit
        Pk, Qk, _, psum, _, qsum = _finite_sums(Pk, Qk, hp, psum, hq, qsum, same, func,
                                                num_threads, tiny_too=False)
        # divisors: the kernel divides each pair by its sums (safely, even when
        # a sum is so small that its reciprocal overflows)
        a = np.ascontiguousarray(psum, dtype=np.float64)
        b = a if same else np.ascontiguousarray(qsum, dtype=np.float64)
    else:
        a = np.ones(m)
        b = a if same else np.ones(k)
    res = np.empty((m, k), dtype=np.float64) if direct is None else direct
    nt = resolve_threads(num_threads, m, m * k * n, func)
    _div_kernels.js_pairs(Pk, Qk, a, b, res, same, nt)
    over, shift = None, overflow_shift(n)
    if base is not None and not normalize and not np.all(np.isfinite(res)):
        # the sum left the range: redone on P and Q times 2**-shift, as js_div does
        over = ~np.isfinite(res)
        scaled = np.empty((m, k), dtype=np.float64)
        _div_kernels.js_pairs(np.ldexp(Pk, -shift).astype(Pk.dtype, copy=False),
                              np.ldexp(Qk, -shift).astype(Qk.dtype, copy=False),
                              a, b, scaled, same, nt)
        res[over] = scaled[over]
    if base is not None:
        with np.errstate(over="ignore"):  # beyond the range: inf
            res /= math.log(base)
        if over is not None:
            res[over] = times_power_of_two(res[over], shift)
        if not normalize:
            _small_entries(Pk, Qk, res, base, js=True)
    return res if direct is not None else cast(np.ndarray, deliver(res, out, dtype, func))


# The public functions: compiled entries with these docstrings that compute small
# inputs pair by pair with the row kernels, and call the above for everything else.
kl_pairwise_python = kl_pairwise
kl_pairwise = _div_kernels.register_general("kl_pairwise", kl_pairwise_python)
js_pairwise_python = js_pairwise
js_pairwise = _div_kernels.register_general("js_pairwise", js_pairwise_python)
