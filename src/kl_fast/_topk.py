"""kl_topk: the k nearest rows of Q to each row of P by KL or JS, without the
full (m, k_total) matrix.

Q is streamed in blocks.  For KL each block is the matrix-product form of
kl_pairwise (entropy term minus ``P @ log(Q).T``) with its a-priori error
bound E per entry: the true value lies in [A - E, A + E].  A row keeps its k
best exact values so far; a block entry can enter only if A - E is at most the
k-th smallest of those and of the block's A + E, and only such candidates are
recomputed exactly by kl_div's row kernel, then merged.  JS has no product
form, so each block is computed exactly by the row kernel of js_pairwise.
Memory: the (m, k) result plus one block, never the whole matrix.
"""
from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple, Optional, cast

import numpy as np
import numpy.typing as npt

from . import _div_kernels
from ._api import finish, kl_div, normalize_rescale, raw_tiny
from ._divergences import js_div
from ._pairwise import (
    _finite_sums,
    _rounded_away,
    _zero_mass,
    CentredLogs,
    _centred_logs,
    _kl_matrix,
    _prepare,
    _resolve_base,
    _row_stats,
)
from ._validation import flag, integer_or_none, resolve_threads

__all__ = ["kl_topk"]

_DIVERGENCES = ("kl", "js", "kl_reverse")
# entries per block of the (rows x candidates) tile: the tile's temporaries are
# a few arrays of this many float64 (4 MiB each)
_TILE_ENTRIES = 1 << 19
_MAX_COLS = 4096
_NO_INDEX = np.iinfo(np.intp).max   # an empty slot ranks after every real index


def _check_divergence(divergence: Any, func: str) -> None:
    if divergence not in _DIVERGENCES:
        raise ValueError(f"{func}: divergence must be one of {', '.join(map(repr, _DIVERGENCES))}, "
                         f"got {divergence!r}")


def require_candidates(Q: Any, func: str) -> None:
    """kl_topk has no Q = None (the pairs within P) form: each row would be its own nearest."""
    if Q is None:
        raise TypeError(f"{func}: Q is required (the candidates to search)")


def _check_k(k: Any, total: int, func: str) -> int:
    v = integer_or_none(k)
    if v is None:
        raise TypeError(f"{func}: k must be an integer, got {k!r}")
    if v < 0:
        raise ValueError(f"{func}: k must be a non-negative integer, got {v}")
    if v > total:
        raise ValueError(f"{func}: k = {v} is larger than the number of rows of Q ({total}); "
                         f"at most {total} neighbours exist")
    return v


class _Order(NamedTuple):
    """How kl_topk ranks the raw float64 values: by the values it returns
    (divided by log(base), rounded to the output dtype), nearest first (so
    negated for a base below 1), ties to the lower index.  The key is monotone
    in the raw value, so the top k by key follow from the raw values' order
    except within one key's class, which ``ceiling`` bounds."""
    log_base: Optional[float]
    dtype: np.dtype[Any]

    def key(self, v: np.ndarray) -> np.ndarray:
        """The sort key of raw values v: non-decreasing in v; NaN (a bad value
        under check=False) ties with +inf, before the empty slots."""
        with np.errstate(over="ignore"):
            r = v if self.log_base is None else v / self.log_base
            if self.dtype != np.float64:
                r = r.astype(self.dtype).astype(np.float64)
        return nearest_first(r, self.log_base is not None and self.log_base < 0)

    def ceiling(self, t: np.ndarray) -> np.ndarray:
        """At least every raw value whose key equals t's: the returned value's
        rounding (float32: 2**-24 relative or 2**-149 absolute; the division by
        log(base): 2**-53 relative or 2**-1074) taken back to raw values; +inf
        where t's key is +inf (a value that overflows to +inf ties with the
        infinite ones) or t is NaN, and where t's key is -inf (t overflowed
        downwards), the largest raw value that can: -(the dtype's largest
        value) * |log(base)|."""
        if self.log_base is None and self.dtype == np.float64:
            return np.where(np.isnan(t), np.inf, t)
        scale = 1.0 if self.log_base is None else abs(self.log_base)
        with np.errstate(over="ignore", invalid="ignore"):
            wide = t + (np.abs(t) * 2.0**-20 + scale * 2.0**-140)
            lowest = -float(np.finfo(self.dtype).max) * scale
        key = self.key(t)
        return np.where(key == np.inf, np.inf, np.where(key == -np.inf, lowest, wide))


def descends(base: Optional[float]) -> bool:
    """kl_topk's values descend (nearest first) with a base below 1."""
    return base is not None and base < 1.0


def nearest_first(values: np.ndarray, descending: bool) -> np.ndarray:
    """The sort key of kl_topk's returned values: negated where they descend (a
    base below 1), NaN (a bad value under check=False) tied with +inf, before
    the empty slots."""
    r = -values if descending else values
    return np.where(np.isnan(r), np.inf, r)


def _merge(vals: np.ndarray, idx: np.ndarray, new_vals: np.ndarray, new_idx: np.ndarray,
           k: int, order: _Order) -> tuple[np.ndarray, np.ndarray]:
    """The k first of each row of the union (key, then index), as (vals, idx)."""
    V = np.concatenate([vals, new_vals], axis=1)
    I = np.concatenate([idx, new_idx], axis=1)
    first = np.lexsort((I, order.key(V)), axis=1)[:, :k]
    return np.take_along_axis(V, first, axis=1), np.take_along_axis(I, first, axis=1)


def _by_row(rows: np.ndarray, values: np.ndarray, cols: np.ndarray,
            m: int) -> tuple[np.ndarray, np.ndarray]:
    """Ragged (rows, values, cols) as (m, c) arrays padded with (inf, _NO_INDEX)."""
    counts = np.bincount(rows, minlength=m)
    c = int(counts.max()) if counts.size else 0
    V = np.full((m, c), np.inf)
    I = np.full((m, c), _NO_INDEX, dtype=np.intp)
    order = np.argsort(rows, kind="stable")
    r = rows[order]
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(r.size) - start[r]
    V[r, slot] = values[order]
    I[r, slot] = cols[order]
    return V, I


class _KLSide:
    """Exact KL values of (row, column) pairs and block approximations, for
    KL(P_i || Q_j) (reverse False) or KL(Q_j || P_i) (reverse True)."""

    def __init__(self, Pk: np.ndarray, Qk: np.ndarray, stats: tuple[np.ndarray, ...],
                 normalize: bool, reverse: bool, num_threads: Optional[int], func: str,
                 originals: tuple[np.ndarray, np.ndarray]) -> None:
        self.P, self.Q = Pk, Qk
        self.hp, self.psum, self.hq, self.qsum = stats
        self.normalize, self.reverse = normalize, reverse
        self.num_threads, self.func = num_threads, func
        # the rows before normalize's scaling: the pairs of a scaled row are
        # computed by kl_div on the originals (the same bits), and those of a
        # row it rounded an element of are candidates whatever their bound says
        self.P0, self.Q0 = originals
        self.p_lost, self.q_lost = _rounded_away(self.P0, Pk), _rounded_away(self.Q0, Qk)
        self.p_moved, self.q_moved = _moved(self.P0, Pk), _moved(self.Q0, Qk)
        self._buffers = np.empty((2, 0))

    def logs(self, i0: int, i1: int, j0: int, j1: int) -> CentredLogs:
        """The centred logs of the tile's second operand (Q's rows, or P's for reverse)."""
        b = self.Q[j0:j1] if not self.reverse else self.P[i0:i1]
        return _centred_logs(np.asarray(b, dtype=np.float64), self.num_threads, self.func)

    def approx(self, i0: int, i1: int, j0: int, j1: int,
               logs: CentredLogs) -> tuple[np.ndarray, np.ndarray]:
        """(A, E): product-form values and their error bounds, (i1 - i0, j1 - j0),
        in buffers the tiles share (fresh arrays of a tile's size cost page
        faults comparable to the product)."""
        size = (i1 - i0) * (j1 - j0)
        if self._buffers.shape[1] < size:
            self._buffers = np.empty((2, size))
        shape = (i1 - i0, j1 - j0) if not self.reverse else (j1 - j0, i1 - i0)
        A, bound = (self._buffers[t, :size].reshape(shape) for t in (0, 1))
        if not self.reverse:
            _kl_matrix(self.P[i0:i1], self.Q[j0:j1], self.hp[i0:i1], self.psum[i0:i1],
                       self.qsum[j0:j1], normalize=self.normalize, num_threads=self.num_threads,
                       func=self.func, refine=False, bound=bound, out=A, logs=logs)
            return A, bound
        _kl_matrix(self.Q[j0:j1], self.P[i0:i1], self.hq[j0:j1], self.qsum[j0:j1],
                   self.psum[i0:i1], normalize=self.normalize, num_threads=self.num_threads,
                   func=self.func, refine=False, bound=bound, out=A, logs=logs)
        return A.T, bound.T

    def flags(self, i0: int, i1: int, j0: int, j1: int) -> tuple[np.ndarray, np.ndarray]:
        """The tile's rows and columns as uint8 flags for topk_screen: bit 0
        set in a row (a column for reverse) whose sum is above DBL_MAX / 1500,
        where the product form may overflow to +inf (|log(p/q)| <= 1455 keeps
        every other sum in range); bit 1 in a row that normalize's scaling
        rounded."""
        limit = np.finfo(np.float64).max / 1500
        rows = self.p_lost[i0:i1].astype(np.uint8) << 1
        cols = self.q_lost[j0:j1].astype(np.uint8) << 1
        if self.reverse:
            cols |= self.qsum[j0:j1] > limit
        else:
            rows |= self.psum[i0:i1] > limit
        return rows, cols

    def zero_mass(self, i0: int, i1: int, j0: int, j1: int) -> np.ndarray:
        """(i1 - i0, j1 - j0): where the divergence's first row has mass on a zero
        of its second (the value is +inf), from the original rows."""
        a, b = self.P0[i0:i1], self.Q0[j0:j1]
        return _zero_mass(b, a).T if self.reverse else _zero_mass(a, b)

    def exact(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """kl_div's values of the pairs (natural log, float64)."""
        a, b, sa, sb = (self.P, self.Q, self.psum, self.qsum) if not self.reverse else \
            (self.Q, self.P, self.qsum, self.psum)
        ra, rb = (rows, cols) if not self.reverse else (cols, rows)
        ra = np.ascontiguousarray(ra, dtype=np.intp)
        rb = np.ascontiguousarray(rb, dtype=np.intp)
        res = np.empty((ra.size, 3))
        n = a.shape[1]
        nt = resolve_threads(self.num_threads, ra.size, ra.size * n, self.func)
        _div_kernels.kl_pairs(a, b, ra, rb, res, nt)
        if not self.normalize:
            return res[:, 0].copy()
        res[:, 1], res[:, 2] = sa[ra], sb[rb]
        values = finish(res[:, 0], res[:, 1], res[:, 2], normalize=True, base=None, dx=None,
                        func=self.func)
        redo = np.flatnonzero(normalize_rescale(res, False) | self.p_moved[rows] | self.q_moved[cols])
        if redo.size:
            a0, b0 = (self.P0, self.Q0) if not self.reverse else (self.Q0, self.P0)
            values[redo] = kl_div(a0[ra[redo]], b0[rb[redo]], normalize=True)
        return values



def _moved(original: np.ndarray, scaled: np.ndarray) -> np.ndarray:
    """Per row: normalize's scaling changed it."""
    if scaled is original:
        return np.zeros(original.shape[0], dtype=bool)
    return cast(np.ndarray, np.any(scaled != original, axis=1))


def _tiles(m: int, total: int) -> tuple[int, int]:
    """(mb, kb): rows and candidates per tile, about _TILE_ENTRIES entries."""
    kb = min(total, _MAX_COLS, max(256, _TILE_ENTRIES // max(m, 1)))
    mb = max(1, min(m, _TILE_ENTRIES // kb))
    return mb, kb


def _candidates(side: _KLSide, A: np.ndarray, E: np.ndarray, kept: np.ndarray, k: int,
                order: _Order, i0: int, i1: int, j0: int,
                j1: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the tile entries (A, E: product-form values and their
    bounds) that can enter their row's top k, kept holding the rows' k first
    exact values so far: lo = A - E at most the row's threshold (order's
    ceiling of the k-th kept value, or of the k-th smallest upper bound among
    those and the tile's where fewer are kept).  An entry the
    product form could not evaluate (overflow, a bound that is not a number)
    or of a rounded row is a candidate; an infinite one (mass of p on a zero
    of q) is exact, unless its row's sum is large or rounded (then zero_mass
    decides, on the tile's arrays; the threshold is the same, as topk_upper
    gives such entries the upper bound +inf)."""
    row_flags, col_flags = side.flags(i0, i1, j0, j1)
    t = kept[:, k - 1].copy()
    open_rows = np.flatnonzero(t == np.inf)
    if open_rows.size:
        buf = np.empty((open_rows.size, k + A.shape[1]))
        buf[:, :k] = kept[open_rows]
        _div_kernels.topk_upper(A, E, open_rows, row_flags, col_flags, buf)
        buf.partition(k - 1, axis=1)
        t[open_rows] = buf[:, k - 1]
        del buf
    t = order.ceiling(t)
    rows, cols = np.empty(A.size, dtype=np.intp), np.empty(A.size, dtype=np.intp)
    count = _div_kernels.topk_screen(A, E, t, row_flags, col_flags, rows, cols)
    if count >= 0:
        return rows[:count], cols[:count]
    with np.errstate(invalid="ignore", over="ignore"):
        lo = A - E
    infinite = A == np.inf
    flags = row_flags[:, None] | col_flags[None, :]
    lost, doubt = (flags & 2) != 0, flags != 0
    infinite &= ~doubt | side.zero_mass(i0, i1, j0, j1)
    lo[(~np.isfinite(A) & ~infinite) | np.isnan(E) | lost] = -np.inf
    lo[infinite] = np.inf
    return cast(tuple[np.ndarray, np.ndarray], np.nonzero(lo <= t[:, None]))


def _topk_kl(side: _KLSide, m: int, total: int, k: int,
             order: _Order) -> tuple[np.ndarray, np.ndarray]:
    vals = np.full((m, k), np.inf)
    idx = np.full((m, k), _NO_INDEX, dtype=np.intp)
    mb, kb = _tiles(m, total)
    for j0 in range(0, total, kb):
        j1 = min(total, j0 + kb)
        logs = None if side.reverse else side.logs(0, m, j0, j1)
        for i0 in range(0, m, mb):
            i1 = min(m, i0 + mb)
            A, E = side.approx(i0, i1, j0, j1,
                               logs if logs is not None else side.logs(i0, i1, j0, j1))
            rows, cols = _candidates(side, A, E, vals[i0:i1], k, order, i0, i1, j0, j1)
            if rows.size == 0:
                continue
            exact = side.exact(rows + i0, cols + j0)
            V, I = _by_row(rows, exact, cols + j0, i1 - i0)
            vals[i0:i1], idx[i0:i1] = _merge(vals[i0:i1], idx[i0:i1], V, I, k, order)
    return vals, idx


def _topk_js(Pk: np.ndarray, Qk: np.ndarray, a: np.ndarray, b: np.ndarray, m: int, total: int,
             k: int, order: _Order, num_threads: Optional[int],
             func: str) -> tuple[np.ndarray, np.ndarray]:
    vals = np.full((m, k), np.inf)
    idx = np.full((m, k), _NO_INDEX, dtype=np.intp)
    mb, kb = _tiles(m, total)
    n = Pk.shape[1]
    for j0 in range(0, total, kb):
        j1 = min(total, j0 + kb)
        for i0 in range(0, m, mb):
            i1 = min(m, i0 + mb)
            tile = np.empty((i1 - i0, j1 - j0))
            nt = resolve_threads(num_threads, i1 - i0, (i1 - i0) * (j1 - j0) * n, func)
            _div_kernels.js_pairs(Pk[i0:i1], Qk[j0:j1], a[i0:i1], b[j0:j1], tile, False, nt)
            cols = np.broadcast_to(np.arange(j0, j1, dtype=np.intp), tile.shape)
            vals[i0:i1], idx[i0:i1] = _merge(vals[i0:i1], idx[i0:i1], tile, cols, k, order)
    return vals, idx


def kl_topk(P: npt.ArrayLike, Q: npt.ArrayLike, k: int, *,
            divergence: Literal["kl", "js", "kl_reverse"] = "kl", normalize: bool = False,
            base: Optional[float] = None, num_threads: Optional[int] = None,
            check: bool = True) -> tuple[np.ndarray, npt.NDArray[np.intp]]:
    """For each row of P, the k rows of Q nearest to it by KL (or JS).

    Equivalent to sorting each row of ``kl_div(P[:, None], Q[None])`` (or of
    ``js_div``, or of ``kl_div(Q[None], P[:, None])``) and keeping the first k
    (values exact as kl_div gives them, where ``kl_pairwise`` above its small
    sizes gives the product form's; ties to the lower index), without forming
    that matrix: Q is streamed in blocks, each block's product
    form ``P @ log(Q).T`` with its error bound selects the candidates that can
    enter a row's top k, and only those are recomputed exactly by kl_div's row
    kernel.  Memory O(m k + block).

    Parameters
    ----------
    P : array_like, shape (m, n)
        Query distributions, one per row.
    Q : array_like, shape (k_total, n)
        Candidate distributions, one per row.
    k : int
        Neighbours per query, 0 <= k <= k_total.
    divergence : {"kl", "js", "kl_reverse"}
        KL(P_i || Q_j), JS(P_i, Q_j) or KL(Q_j || P_i).
    normalize, base, check
        As for :func:`kl_pairwise`.
    num_threads : int, optional
        Threads for the row kernels (the checks of P and Q, and JS).  For KL the
        matrix products run on NumPy's BLAS threads, and the recomputation between
        them on one thread unless num_threads is given.

    Returns
    -------
    (values, indices) : ndarrays of shape (m, k)
        Ascending values (float32 when P and Q are float32, else float64), equal
        to ``kl_div(P[i], Q[j], normalize=normalize, base=base)`` of each pair
        (computed in float64, as the pairwise functions do; ``js_div`` for
        "js"), and the indices j into Q; ties go to the lower index, +inf
        entries (mass of p where q is 0) rank last.  With a base below 1
        (a negative logarithm) the nearest rows still come first, so the
        values descend.

    Examples
    --------
    >>> import numpy as np, kl_fast
    >>> P = np.array([[0.5, 0.5], [0.9, 0.1]])
    >>> Q = np.array([[0.8, 0.2], [0.5, 0.5], [1.0, 0.0], [0.6, 0.4]])
    >>> values, indices = kl_fast.kl_topk(P, Q, 2)
    >>> indices
    array([[1, 3],
           [0, 3]])
    >>> values.round(6)
    array([[0.      , 0.020411],
           [0.03669 , 0.226289]])
    """
    func = "kl_topk"
    normalize, check = flag(normalize, "normalize", func), flag(check, "check", func)
    _check_divergence(divergence, func)
    require_candidates(Q, func)
    Pk, Qk, dtype, _ = _prepare(P, Q, func)
    kk = _check_k(k, Qk.shape[0], func)
    base = _resolve_base(base, func)
    m, total = Pk.shape[0], Qk.shape[0]
    if divergence != "js" and dtype != np.float64:
        Pk, Qk = Pk.astype(np.float64), Qk.astype(np.float64)
    hp, psum = _row_stats(Pk, "P", func, num_threads, check)
    hq, qsum = _row_stats(Qk, "Q", func, num_threads, check)
    P0, Q0 = Pk, Qk
    if normalize:
        Pk, Qk, hp, psum, hq, qsum = _finite_sums(Pk, Qk, hp, psum, hq, qsum, False, func,
                                                  num_threads, tiny_too=divergence != "js")
    order = _Order(None if base is None else math.log(base), np.dtype(dtype))
    if kk == 0 or m == 0:
        vals, idx = np.empty((m, kk)), np.empty((m, kk), dtype=np.intp)
    elif divergence == "js":
        a = np.ascontiguousarray(psum, dtype=np.float64) if normalize else np.ones(m)
        b = np.ascontiguousarray(qsum, dtype=np.float64) if normalize else np.ones(total)
        vals, idx = _topk_js(Pk, Qk, a, b, m, total, kk, order, num_threads, func)
    else:
        # Between the tiles' matrix products (on NumPy's BLAS threads) the row kernels
        # run on one thread unless asked otherwise: two thread pools taking turns on
        # the same cores cost more than they give (measured: 500 x 5,000 x 128, k=10,
        # 67 ms on one thread, 103 ms on two)
        side = _KLSide(Pk, Qk, (hp, psum, hq, qsum), normalize, divergence == "kl_reverse",
                       1 if num_threads is None else num_threads, func, (P0, Q0))
        vals, idx = _topk_kl(side, m, total, kk, order)
    if base is not None:
        with np.errstate(over="ignore"):
            vals = vals / math.log(base)
    if not normalize:
        vals, idx = _rescued_values(P0, Q0, vals, idx, base, divergence, check)
    if dtype != np.float64:
        with np.errstate(over="ignore"):
            vals = vals.astype(dtype)
    if base is not None or dtype != np.float64:
        vals, idx = _ties_to_lower_index(vals, idx, descends(base))
    return vals, idx


def _rescued_values(P0: np.ndarray, Q0: np.ndarray, vals: np.ndarray, idx: np.ndarray,
                    base: float | None, divergence: str,
                    check: bool) -> tuple[np.ndarray, np.ndarray]:
    """The pairs whose raw sum the row function may redo: a row of p (P's, Q's
    for kl_reverse, both for JS) summing above DBL_MAX / 1500 (the raw sum may
    overflow where the divergence does not: a term beyond the range that
    negative ones bring back, or a base that does) or holding a value > 0
    below raw_tiny (subnormal terms that kept few bits, which base may
    magnify and which the screens' bounds do not cover).  They join each
    row's candidates with the row function's values, and those rows are
    chosen again in the raw sums' order."""
    log_base = 1.0 if base is None else math.log(base)
    tiny = raw_tiny(P0.dtype == np.float32)

    def rescue(X: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            out = np.sum(X, axis=1) > np.finfo(np.float64).max / 1500
        # (subnormal terms also defeat the screens' error bounds, base or not)
        out |= np.any((X > 0) & (X < tiny), axis=1)
        return cast(np.ndarray, out)

    none_p, none_q = np.zeros(P0.shape[0], bool), np.zeros(Q0.shape[0], bool)
    rescue_p = none_p if divergence == "kl_reverse" else rescue(P0)
    rescue_q = none_q if divergence == "kl" else rescue(Q0)
    if not (rescue_p.any() or rescue_q.any()):
        return vals, idx
    kk = idx.shape[1]
    for i in range(P0.shape[0]):
        extra = np.arange(Q0.shape[0]) if rescue_p[i] else np.flatnonzero(rescue_q)
        if extra.size == 0:
            continue
        cand = np.union1d(idx[i], extra)
        v = _row_values(P0[i], Q0[cand], base, divergence, check)
        order = np.lexsort((cand, v if log_base > 0 else -v))[:kk]   # the raw sums' order
        vals[i], idx[i] = v[order], cand[order]
    return vals, idx


def _row_values(p: np.ndarray, Q: np.ndarray, base: float | None, divergence: str,
                check: bool) -> np.ndarray:
    """The row function's values of kl_topk's divergence between p and each row
    of Q (float64), in one call (its bits do not depend on the layout)."""
    if divergence == "js":
        return np.asarray(js_div(p, Q, base=base, check=check), dtype=np.float64)
    a, b = (Q, p) if divergence == "kl_reverse" else (p, Q)
    return np.asarray(kl_div(a, b, base=base, check=check), dtype=np.float64)


def _ties_to_lower_index(vals: np.ndarray, idx: np.ndarray,
                         descending: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each row nearest first (values descending with a base below 1) and equal
    values in index order: the rescued rows' rounding to float32 can make
    neighbours that differed by an ulp equal."""
    first = np.lexsort((idx, nearest_first(vals, descending)), axis=-1)
    return np.take_along_axis(vals, first, -1), np.take_along_axis(idx, first, -1)
