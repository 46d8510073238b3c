"""The public kl_div: conversion, broadcasting, validation, then one kernel call."""
from __future__ import annotations

import math
from typing import Any, Callable, Literal, NamedTuple, NoReturn, Sequence, cast, overload

import numpy as np
import numpy.typing as npt

from . import _div_kernels, _kernels
from ._typing import (ArrayLike, ArrayT, Axis, F32Array, F32Result, F64Array, F64Result,
                      Float32Like, Float64Like, FloatResult, ScalarOr1D)
from ._validation import (
    _PARALLEL_MIN_ELEMENTS,
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

_FLOAT32 = np.dtype(np.float32)


def _reshape_no_copy(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """``a`` reshaped as a view, or None when that needs a copy."""
    try:
        return np.reshape(a, shape, copy=False)
    except ValueError:
        return None
    except TypeError:  # NumPy < 2.1: no copy=; setting .shape on a view never copies
        v = a.view()
        try:
            v.shape = shape
        except AttributeError:
            return None
        return v


def _as_rows(a: np.ndarray, m: int, n: int) -> np.ndarray:
    """(m, n) view of ``a`` when its layout allows; otherwise a contiguous copy."""
    v = _reshape_no_copy(a, (m, n))
    if v is None:
        v = np.ascontiguousarray(a).reshape(m, n)
    return v


def _own_index(idx_full: Sequence[int], arr_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Index into an array of ``arr_shape`` that broadcast to the full index."""
    pad = len(idx_full) - len(arr_shape)
    return tuple(0 if size == 1 else i for i, size in zip(idx_full[pad:], arr_shape))


def broadcast_shape(shapes: Sequence[tuple[int, ...]], names: Sequence[str],
                    func: str) -> tuple[int, ...]:
    """The shape two arrays of ``shapes`` broadcast to, else ValueError naming them."""
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        raise ValueError(
            f"{func}: {names[0]} with shape {shapes[0]} and {names[1]} with shape "
            f"{shapes[1]} do not broadcast together"
        ) from None


def check_options(normalize: bool, base: Any, dx: Any,
                  func: str) -> tuple[float | None, float | None]:
    """Validated (base, dx) as floats or None; normalize and dx are exclusive."""
    if normalize and dx is not None:
        raise ValueError(f"{func}: normalize=True and dx={dx!r} are exclusive; pass one of them")
    if base is not None:
        base = check_positive_scalar(base, "base", func, allow_one=False)
    if dx is not None:
        dx = check_positive_scalar(dx, "dx", func)
    return base, dx


class ReductionRows(NamedTuple):
    """Two broadcast inputs laid out as rows of a 2-D view, one reduction per row."""
    p2: np.ndarray
    q2: np.ndarray
    outer_shape: tuple[int, ...]  # shape of the result (the axes not reduced), the rows' shape
    col_shape: tuple[int, ...]    # shape each row's elements unravel into
    order: list[int]              # axis permutation: kept axes, then reduced axes
    ndim: int


def reduction_rows(pk: np.ndarray, qk: np.ndarray, *, axes: tuple[int, ...] | None, func: str,
                   names: Sequence[str] = ("p", "q"),
                   shapes: Sequence[tuple[int, ...]] | None = None) -> ReductionRows:
    """Lay out ``pk``, ``qk`` (same dtype, broadcastable) as (rows, n) views, each
    row one whole reduction (copied where the layout cannot merge its axes).

    ``axes`` is a tuple, or None for all.
    """
    shapes = shapes if shapes is not None else (pk.shape, qk.shape)
    if pk.shape == qk.shape:
        shape = pk.shape
        pb, qb = pk, qk
    else:
        shape = broadcast_shape((pk.shape, qk.shape), names, func)
        pb = np.broadcast_to(pk, shape)
        qb = np.broadcast_to(qk, shape)
    ndim = len(shape)
    if axes is None:
        axes = tuple(range(ndim))
    keep = [ax for ax in range(ndim) if ax not in axes]
    order = keep + list(axes)
    if order != list(range(ndim)):
        pb = pb.transpose(order)
        qb = qb.transpose(order)
    outer_shape = tuple(shape[ax] for ax in keep)
    red_shape = tuple(shape[ax] for ax in axes)
    m = math.prod(outer_shape)
    n = math.prod(red_shape)

    # Merge the reduction axes into one; where the layout forbids that, copy (a
    # strided input, or a broadcast one over several reduction axes: as large as
    # the other input), so that every row is added in the one order of the
    # kernels and a result has the contiguous input's bits.  (Adding the partial
    # sums of the last axis instead saved that copy but gave other bits.)
    p2 = _reshape_no_copy(pb, (m, n))
    q2 = _reshape_no_copy(qb, (m, n))
    if p2 is None:
        p2 = _as_rows(pb, m, n)
    if q2 is None:
        q2 = _as_rows(qb, m, n)
    return ReductionRows(p2, q2, outer_shape, red_shape, order, ndim)


def combine_rows(res: np.ndarray, rows: ReductionRows) -> np.ndarray:
    """Per-row results (rows, ...) reshaped to the output shape."""
    return res.reshape(rows.outer_shape + res.shape[1:])


def raise_bad_value(rows: ReductionRows, r: int, found: tuple[int, int, float], *, func: str,
                    names: Sequence[str], shapes: Sequence[tuple[int, ...]],
                    describe: Callable[[float], str] = describe_bad,
                    requirement: str = "probabilities must be finite and non-negative",
                    origins: Sequence[Sequence[int]] | None = None) -> NoReturn:
    """Raise the ValueError for bad value ``found`` = (which, col, value) of row ``r``.

    When the inputs are blocks of larger arrays, ``origins`` holds each block's
    position in its whole array, so the index reported is the one in the whole array.
    """
    which, col, value = found
    idx_t = tuple(np.unravel_index(r, rows.outer_shape)) + tuple(np.unravel_index(col, rows.col_shape))
    idx_full: list[Any] = [0] * rows.ndim
    for k, ax in enumerate(rows.order):
        idx_full[ax] = idx_t[k]
    own = _own_index(idx_full, shapes[which])
    if origins is not None:
        own = tuple(i + o for i, o in zip(own, origins[which]))
    raise ValueError(
        f"{func}: {names[which]} contains {describe(value)} at index {format_index(own)}; "
        f"{requirement}"
    )


def row_sums(pk: np.ndarray, qk: np.ndarray, *, axes: tuple[int, ...] | None, func: str,
             num_threads: Any, check: bool, names: Sequence[str] = ("p", "q"),
             shapes: Sequence[tuple[int, ...]] | None = None, want_sums: bool = True,
             origins: Sequence[Sequence[int]] | None = None) -> tuple[np.ndarray, tuple[int, ...]]:
    """Kernel pass over ``pk``, ``qk`` (same dtype, broadcastable).

    Returns (res, out_shape) with res of shape out_shape + (3,) holding
    (sum p*log(p/q), sum p, sum q) over ``axes`` (a tuple, or None for all);
    with ``want_sums`` False the last two are skipped (zeros).
    Raises ValueError for bad values when ``check``; for blocks of larger
    arrays ``origins`` places the reported index (see ``raise_bad_value``).
    """
    shapes = shapes if shapes is not None else (pk.shape, qk.shape)
    rows = reduction_rows(pk, qk, axes=axes, func=func, names=names, shapes=shapes)
    p2, q2 = rows.p2, rows.q2
    nrows = p2.shape[0]
    res = np.empty((nrows, 3), dtype=np.float64)
    status = np.empty(nrows, dtype=np.int8)
    nt = resolve_threads(num_threads, nrows, nrows * p2.shape[1], func)
    _kernels.kl_rows(p2, q2, res, status, check, nt, want_sums)
    if check and nrows and status.any():
        r = int(np.argmax(status))
        found = _kernels.find_bad(p2[r], q2[r])
        if found is not None:  # the kernel flags only rows that hold a bad value
            raise_bad_value(rows, r, found, func=func, names=names, shapes=shapes,
                            origins=origins)
    return combine_rows(res, rows), rows.outer_shape


def check_alone(fn: Callable[..., Any], p_in: np.ndarray, q_in: np.ndarray,
                filler: float) -> None:
    """Where p and q broadcast to an empty shape, ``fn``'s check of each non-empty
    input against a valid ``filler`` of its own shape: a bad value raises its
    ValueError with the index in that input (as for any other shape)."""
    try:
        empty = math.prod(np.broadcast_shapes(p_in.shape, q_in.shape)) == 0
    except ValueError:
        return  # shapes that do not broadcast: the caller explains
    if not empty:
        return
    if p_in.size:
        fn(p_in, np.full(p_in.shape, filler, dtype=p_in.dtype), axis=None)
    if q_in.size:
        fn(np.full(q_in.shape, filler, dtype=q_in.dtype), q_in, axis=None)


def normalize_rescale(res: np.ndarray, f32: bool) -> np.ndarray:
    """Boolean array over the rows of ``res`` (..., 3): those that normalize
    redoes on rescaled inputs (the compiled entries' rule)."""
    kl, ps, qs = (np.ascontiguousarray(res[..., i], dtype=np.float64).reshape(-1)
                  for i in range(3))
    flags = np.empty(ps.shape[0], dtype=np.uint8)
    _div_kernels.normalize_rescale(kl, ps, qs, bool(f32), flags)
    return flags.view(np.bool_).reshape(res.shape[:-1])


def max_exponents(a: np.ndarray, red: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(e, found) per group of ``a`` over the axes ``red`` (kept as size one): the
    exponent e that brings the group's largest value times 2**-e into [1/2, 1),
    and whether the group has a positive finite largest value (e = 0 if not)."""
    if a.size == 0:
        shape = [1 if ax in red else n for ax, n in enumerate(a.shape)]
        return np.zeros(shape, dtype=np.intc), np.zeros(shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        top = np.max(a, axis=red, keepdims=True)
    found = np.isfinite(top) & (top > 0)
    _, e = np.frexp(np.where(found, top, 1.0))
    return np.where(found, e, 0).astype(np.intc), found


def scaled_by_max(a: np.ndarray, red: tuple[int, ...], where: npt.ArrayLike) -> np.ndarray:
    """``a`` times 2**-e, exactly, in the groups over the axes ``red`` selected by
    ``where`` (kept as size one): their largest value lands in [1/2, 1) and
    their sums cannot overflow.  Normalising is scale-invariant, so the
    functions with ``normalize=True`` use it where a sum overflowed or is tiny."""
    e, _ = max_exponents(a, red)
    return cast(np.ndarray, np.ldexp(a, np.where(where, -e, 0).astype(np.intc)))


def rescaled_pair(pk: np.ndarray, qk: np.ndarray, shape: tuple[int, ...], red: tuple[int, ...],
                  res: np.ndarray, redo: np.ndarray, f32: bool
                  ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """([p, q], lost, q_shift): p and q broadcast to ``shape``, each reduction
    group (over the axes ``red``) selected by ``redo`` rescaled (normalising is
    scale-invariant), from its raw results ``res`` (kl, sum p, sum q).  First by
    powers of two, exactly: a side whose sum overflowed or is tiny, or whose
    terms may overflow, gets its largest value into [1/2, 1); q_shift is q's
    power, per group.  Where that rounds elements of q under p > 0 (q spans more
    than the range), ``lost`` marks them and q stays so (``sums_with_lost_terms``
    computes such a group).  Then each side is divided by its sum (a side left
    unscaled by its sum from ``res``, the kernel's, so the compiled entries'
    _kl_divided gives the same bits), as NumPy would divide (proportional p and
    q then give exactly 0), where no positive element falls
    below the normal range by it; elsewhere, where the sums differ by a factor
    SUMS_APART or more, they are brought within a factor 2 (``apart_shifts``), so
    that kl/P + log(Q/P) cancels little."""
    redo = np.expand_dims(redo, red)
    sides = [np.broadcast_to(pk, shape), np.broadcast_to(qk, shape)]
    normal = np.finfo(np.float32 if f32 else np.float64).tiny
    shift = first_shifts(sides, res, redo, red, f32)
    # (over and invalid: from bad input with check=False, which raises after)
    with np.errstate(under="ignore", over="ignore", invalid="ignore"):
        sides = [np.ldexp(a, -k.astype(np.intc)) for a, k in zip(sides, shift)]
        lost = rounded_under_p(sides[0], sides[1], np.broadcast_to(qk, shape), shift[1])
        # in groups not redone the sums are not used
        raw = [np.expand_dims(np.asarray(res[..., i], dtype=np.float64), red) for i in (1, 2)]
        sums = [np.where(k == 0, r, group_sums(a, red)) if np.any(k) else r
                for a, k, r in zip(sides, shift, raw)]
    q_kept = ~np.any(lost, axis=red, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore", under="ignore", over="ignore"):
        divided = [a / np.where(s > 0, s, 1.0) for a, s in zip(sides, sums)]
        keeps = [np.all((a == 0) | (d >= normal), axis=red, keepdims=True)
                 for a, d in zip(sides, divided)]
    by_sums = redo & q_kept & keeps[0] & keeps[1] & (sums[0] > 0) & (sums[1] > 0)
    shifts = apart_shifts(sums, redo, q_kept)
    with np.errstate(over="ignore", under="ignore"):
        scaled = [np.ldexp(a, -s.astype(np.intc)) for a, s in zip(sides, shifts)]
    # a group the last step would push out of range, or where scaling down
    # would round a positive element into the subnormals, keeps its first scaling
    bad = np.zeros_like(by_sums)
    for a, t, s in zip(sides, scaled, shifts):
        with np.errstate(invalid="ignore", over="ignore"):
            gone = (s > 0) & (a != 0) & ~(np.abs(t) >= normal)
            bad |= ~np.isfinite(np.sum(t, axis=red, keepdims=True, dtype=np.float64))
        bad |= np.any(gone, axis=red, keepdims=True)
    return [np.where(by_sums, d, np.where(bad, a, s)).astype(a.dtype, copy=False)
            for a, d, s in zip(sides, divided, scaled)], lost, shift[1]


def group_sums(a: np.ndarray, red: tuple[int, ...]) -> np.ndarray:
    """a's sums over the axes ``red`` (kept as size one) in float64, each group's
    elements added in the same order whatever a's layout: NumPy sums a
    contiguous axis pairwise but adds along another axis element after element,
    so a column of a C-order matrix got other bits than the same values in a row."""
    a = np.asarray(a)
    red = tuple(sorted(r % a.ndim for r in red))
    keep = [d for d in range(a.ndim) if d not in red]
    rows = np.ascontiguousarray(np.transpose(a, keep + list(red)), dtype=np.float64)
    rows = rows.reshape(tuple(a.shape[d] for d in keep) + (math.prod(a.shape[d] for d in red),))
    out = np.sum(rows, axis=-1)
    return cast(np.ndarray, out.reshape(tuple(1 if d in red else a.shape[d]
                                              for d in range(a.ndim))))


def apart_shifts(sums: list[np.ndarray], redo: np.ndarray, q_kept: np.ndarray) -> list[np.ndarray]:
    """[p's, q's]: the powers of two that bring sums (P, Q) a factor SUMS_APART or
    more apart to within a factor 2, per group selected by ``redo``: the smaller side
    scaled up (both sums are below about 2**961 here, first_shifts brought larger
    ones down).  A q that must keep its scale (``q_kept`` False) is never the
    smaller: first_shifts took it to p's scale or stopped it above."""
    P, Q = sums
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        apart = redo & ((Q >= _div_kernels.SUMS_APART * P) | (P >= _div_kernels.SUMS_APART * Q))
        apart &= np.isfinite(P) & np.isfinite(Q) & (P > 0) & (Q > 0)
        k = np.abs(np.frexp(Q)[1] - np.frexp(P)[1])
    p_small = P < Q
    return [np.where(apart & p_small, -k, 0), np.where(apart & ~p_small & q_kept, -k, 0)]


def first_shifts(sides: list[np.ndarray], res: np.ndarray, redo: np.ndarray,
                 red: tuple[int, ...], f32: bool) -> list[np.ndarray]:
    """[p's, q's]: the powers of two of rescaled_pair's first step, per group
    over the axes ``red`` (kept as size one).  A p whose sum overflowed, is tiny
    or above ``big`` gets its largest value into [1/2, 1) (so that no term
    p log(p/q) overflows); a q whose sum is out of that range comes to p's
    scale, but down no further than its own largest value into [1/2, 1) (that
    would round its elements for nothing)."""
    tiny, big = (2.0 ** -100, 2.0 ** 100) if f32 else (2.0 ** -960, 2.0 ** 960)
    psum, qsum = (np.expand_dims(np.asarray(res[..., i], dtype=np.float64), red)
                  for i in (1, 2))
    exps = [max_exponents(a, red)[0] for a in sides]
    out = [redo & (np.isinf(s) | (s < tiny) | (s > big)) & (s > 0) for s in (psum, qsum)]
    p_shift = np.where(out[0], exps[0], 0)
    # each sum's exponent, from the sum of the side scaled by its largest value
    # (in range whatever the sum), p's after its shift
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        e_p, e_q = (e + np.frexp(group_sums(np.ldexp(a, -e), red))[1]
                    for a, e in zip(sides, exps))
    return [p_shift, np.where(out[1], np.minimum(e_q - (e_p - p_shift), exps[1]), 0)]


def rounded_under_p(p_scaled: np.ndarray, q_scaled: np.ndarray, q: np.ndarray,
                    shift: np.ndarray) -> np.ndarray:
    """Where q_scaled = q times 2**-shift (shift per group, broadcast) was
    rounded by a scaling down, under a p that is still nonzero: the elements
    whose terms ``sums_with_lost_terms`` takes from q as it is."""
    with np.errstate(over="ignore", invalid="ignore"):
        return cast(np.ndarray, (p_scaled != 0) & (shift > 0)
                    & (np.ldexp(q_scaled, np.maximum(shift, 0).astype(np.intc)) != q))


def sums_with_lost_terms(p: np.ndarray, q_scaled: np.ndarray, q: np.ndarray, lost: np.ndarray,
                         q_shift: np.ndarray, axes: tuple[int, ...] | None, red: tuple[int, ...],
                         num_threads: Any, check: bool) -> np.ndarray:
    """Row sums (kl, sum p, sum q) of p against q_scaled = q times 2**-q_shift
    (per group over the axes ``red``, kept as size one), where that rounded the
    elements marked ``lost`` (under p > 0) below the normal range: their terms
    are p log(p/q) + q_shift log(2) p, from q as it is."""
    zero = np.zeros((), dtype=p.dtype)
    shape = p.shape
    kept, _ = row_sums(np.where(lost, zero, p), q_scaled, axes=axes, func="kl_div",
                       num_threads=num_threads, check=check, shapes=(shape, shape), want_sums=True)
    gone, _ = row_sums(np.where(lost, p, zero), np.where(lost, q, np.ones((), dtype=q.dtype)),
                       axes=axes, func="kl_div", num_threads=num_threads, check=False,
                       shapes=(shape, shape), want_sums=True)
    k = np.squeeze(q_shift, red)
    some = np.any(lost, axis=red)
    res = kept.copy()
    with np.errstate(over="ignore", invalid="ignore"):  # only from bad input with check=False
        res[..., 0] = np.where(some, kept[..., 0] + (gone[..., 0] + k * math.log(2.0) * gone[..., 1]),
                               kept[..., 0])
        res[..., 1] = np.where(some, kept[..., 1] + gone[..., 1], kept[..., 1])
    return res


def overflow_shift(n: int) -> int:
    """The k for which 2**-k times a row of n terms, each below 1500 DBL_MAX in
    size (|log(p/q)| <= 1455 between doubles), sums to a finite value."""
    return 13 + max(n - 1, 0).bit_length()


def mass_on_zeros(pk: np.ndarray, qk: np.ndarray, red: tuple[int, ...]) -> np.ndarray:
    """Per reduction over the axes ``red``: some p > 0 meets q == 0 (the KL is
    +inf, normalised or not, whatever base and dx are)."""
    with np.errstate(invalid="ignore"):
        return cast(np.ndarray, np.any((pk > 0) & (qk == 0), axis=red))


def kl_beyond_range(pk: np.ndarray, qk: np.ndarray, axes: tuple[int, ...] | None,
                    res: np.ndarray, num_threads: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(res, shift) for kl_div's rows whose raw sum (res[..., 0], from
    row_sums) is not finite, unless a zero of q under p > 0 makes it +inf:
    redone on p and q times 2**-k, KL(2**-k p, 2**-k q) = 2**-k KL(p, q) (the
    ratios unchanged; k at least 28), where every q under p > 0 stays normal
    so scaled (an exact scaling); else on p alone, KL(p, q) = 2**k (KL(2**-k p, q) + k log(2)
    sum(2**-k p)), whose k log 2 part cancels against the terms (n k eps of
    them: 3e-9 relative on 10**6 terms of 1e308; it is left to rows with a q
    below 2**k DBL_MIN under p > 0, whose logs dominate).  res[..., 0] holds
    the bracket there and shift its k (0 elsewhere): the divergence is the
    finished value times 2**shift, in range when base or dx bring it back.
    shift is None when no row needs it."""
    shape = np.broadcast_shapes(pk.shape, qk.shape)
    red = tuple(range(len(shape))) if axes is None else axes
    over = ~np.isfinite(res[..., 0]) & ~mass_on_zeros(pk, qk, red)
    if not over.any():
        return res, None
    k = overflow_shift(math.prod(shape[ax] for ax in red))
    # p and q together at least 2**-28 down, below 2**996, where the kernels'
    # exact ratio residual holds without FMA too (klm_residual_f64)
    kb = max(k, 28)
    pb, qb = np.broadcast_to(pk, shape), np.broadcast_to(qk, shape)
    with np.errstate(invalid="ignore"):
        both = over & np.all((pb <= 0) | (qb >= np.ldexp(np.finfo(qb.dtype).tiny, kb)), axis=red)
    shift = np.where(both, kb, np.where(over, k, 0)).astype(np.intc)
    p_scaled = np.ldexp(pb, np.expand_dims(-shift, red)).astype(pk.dtype, copy=False)
    q_scaled = np.ldexp(qb, np.expand_dims(np.where(both, -kb, 0).astype(np.intc), red)).astype(
        qk.dtype, copy=False)
    scaled, _ = row_sums(p_scaled, q_scaled, axes=axes, func="kl_div", num_threads=num_threads,
                         check=False, shapes=(shape, shape))
    res = res.copy()
    with np.errstate(over="ignore"):  # in the rows not redone, which are discarded
        bracket = np.where(both, scaled[..., 0], kl_unscaled(scaled[..., 0], scaled[..., 1], k))
        res[..., 0] = np.where(over, bracket, res[..., 0])
    return res, shift


def raw_tiny(f32: bool) -> float:
    """Below this a raw KL sum, or a p > 0, may hold subnormal terms (float32's
    terms are floats): 2**-102 for float32, 2**-968 for float64 (the compiled
    entries' _raw_too_small)."""
    return 2.0**-102 if f32 else 2.0**-968


def small_terms(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(t, e) with p log(p/q) = t 2**e, each term of float64 p > 0 and q > 0
    kept to full precision however small: p and q times 2**k, their larger
    into [1/2, 1), through the kernel's term (exact ratio residual) where p so
    scaled is normal, else p scaled into [1, 2) times log(p) - log(q) (the
    ratio is below DBL_MIN there, so the logs do not cancel)."""
    with np.errstate(all="ignore"):   # bad values (check=False) give what they give, silently
        k = -np.frexp(np.fmax(p, q))[1]
        ps, qs = np.ldexp(p, k), np.ldexp(q, k)
        normal = ps >= np.finfo(np.float64).tiny
        s = 1 - np.frexp(p)[1]
        logs = np.ldexp(p, s) * (np.log(p) - np.log(q))
    kernel, _ = row_sums(np.where(normal, ps, 0.0)[:, None], np.where(normal, qs, 1.0)[:, None],
                         axes=(1,), func="kl_div", num_threads=1, check=False,
                         want_sums=False)
    return np.where(normal, kernel[..., 0], logs), np.where(normal, -k, -s).astype(np.intc)


def fsum_scaled(t: np.ndarray, e: np.ndarray) -> tuple[float, int]:
    """(s, K) with sum t 2**e = s 2**K to one rounding: the parts brought to
    the scale of the largest and added exactly (math.fsum); (0.0, 0) when all
    are 0."""
    nonzero = t != 0
    if not nonzero.any():
        return 0.0, 0
    top = int(np.max(np.frexp(t[nonzero])[1] + e[nonzero]))
    return math.fsum(np.ldexp(t, (e - top).clip(-2000).astype(np.intc)).tolist()), top


def small_apart(p: np.ndarray, q: np.ndarray, small: np.ndarray, axes: tuple[int, ...] | None,
                num_threads: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rest, t, e) for float64 p, q of one shape and a mask ``small`` of p's
    values whose terms may be subnormal: rest the kernel's raw sums over
    ``axes`` without them, and their terms t 2**e at full precision
    (small_terms), in the C order of the mask."""
    rest, _ = row_sums(np.where(small, 0.0, p), q, axes=axes, func="kl_div",
                       num_threads=num_threads, check=False, want_sums=False)
    t, e = small_terms(p[small], q[small])
    return rest[..., 0], t, e


def options_lift(base: float | None, dx: float | None) -> int:
    """The k >= 0 for which a value below 1 times 2**-k, times dx and over
    log(base), stays finite: a fraction carried with its exponent (the value is
    the finished fraction times 2**(exponent + k)) is lowered by it first."""
    lift = max(math.frexp(dx)[1], 0) if dx is not None else 0
    lift += max(1 - math.frexp(math.log(base))[1], 0) if base is not None else 0
    return max(lift - 1000, 0)


def magnifies(base: float | None, dx: float | None) -> bool:
    """dx / |log(base)| exceeds 1: a raw sum of subnormal terms would show its
    lost bits in the divergence."""
    return (abs(dx) if dx is not None else 1.0) > (abs(math.log(base)) if base is not None else 1.0)


def kl_below_range(pk: np.ndarray, qk: np.ndarray, axes: tuple[int, ...] | None,
                   res: np.ndarray, shift: np.ndarray | None, base: float | None,
                   dx: float | None, num_threads: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(res, shift) for kl_div's rows whose raw sum is below raw_tiny and that
    hold a p > 0 as small, where base or dx magnify the sum (subnormal terms
    kept few bits, which the magnified divergence would show): redone in
    float64, the other terms by the kernel, the small p's terms apart at full
    precision (small_terms), all added exactly (math.fsum on a common scale).
    res[..., 0] there holds the sum's fraction in [1/2, 1) and shift its
    exponent, so that the divergence is the finished value times 2**shift."""
    tiny = raw_tiny(pk.dtype == np.float32)
    shape = np.broadcast_shapes(pk.shape, qk.shape)
    red = tuple(range(len(shape))) if axes is None else axes
    # an exact 0 too: rounded subnormal terms can cancel to it
    raw_small = np.abs(res[..., 0]) < tiny
    if not magnifies(base, dx) or not raw_small.any():
        return res, shift
    small = (np.broadcast_to(pk, shape) > 0) & (np.broadcast_to(pk, shape) < tiny)
    redo = raw_small & np.any(small, axis=red)
    if not redo.any():
        return res, shift
    small &= np.expand_dims(redo, red)
    # the reduced axes last, so that each output element's terms are one row
    keep = [ax for ax in range(len(shape)) if ax not in red]
    order = keep + list(red)
    rows = redo.size
    p, q = (np.transpose(np.broadcast_to(a, shape).astype(np.float64), order).reshape(rows, -1)
            for a in (pk, qk))
    small_r = np.transpose(small, order).reshape(rows, -1)
    rest, terms, exps = small_apart(p, q, small_r, (1,), num_threads)
    bounds = np.searchsorted(np.nonzero(small_r)[0], np.arange(rows + 1))
    # the fraction times dx / log(base) must stay finite before the shift
    lift = options_lift(base, dx)
    res = res.copy()
    shift = np.zeros(redo.shape, np.intc) if shift is None else shift.copy()
    flat_res, flat_shift = res.reshape(-1, 3), shift.reshape(-1)
    for r in np.flatnonzero(redo.reshape(-1)):
        s, top = fsum_scaled(np.append(terms[bounds[r]:bounds[r + 1]], rest[r]),
                             np.append(exps[bounds[r]:bounds[r + 1]], 0))
        frac, ex = math.frexp(s)
        flat_res[r, 0], flat_shift[r] = math.ldexp(frac, -lift), ex + top + lift
    return res, shift


def kl_unscaled(kl: np.ndarray, psum: np.ndarray, k: int) -> np.ndarray:
    """2**-k KL(p, q) from kl = KL(2**-k p, q) and psum = sum(2**-k p)."""
    return kl + k * math.log(2.0) * psum


def times_power_of_two(value: np.ndarray, shift: np.ndarray | int | None) -> np.ndarray:
    """value times 2**shift (an overflow to inf is the result), or value itself
    for no shift."""
    if shift is None:
        return value
    with np.errstate(over="ignore"):
        return cast(np.ndarray, np.ldexp(value, shift))


def finish(kl: np.ndarray, psum: np.ndarray, qsum: np.ndarray, *, normalize: bool,
           base: float | None, dx: float | None, func: str, names: Sequence[str] = ("p", "q"),
           origin: Sequence[int] | None = None) -> np.ndarray:
    """Apply normalize/base/dx to the raw row sums (float64 arrays).

    ``origin``: position of these sums in a larger output (a block of it), added
    to the output index an error reports.
    """
    if normalize:
        for sums, name in ((psum, names[0]), (qsum, names[1])):
            if not np.all(sums > 0):
                bad = np.argwhere(~(sums > 0))[0] if sums.ndim else ()
                shown = bad if origin is None else [i + o for i, o in zip(bad, origin)]
                where = f" in the reduction at output index {format_index(shown)}" if sums.ndim else ""
                raise ValueError(
                    f"{func}: normalize=True but {name} sums to {float(sums[tuple(bad)])!r}{where}; "
                    f"it must sum to a positive finite value"
                )
    return apply_options(kl, psum, qsum, normalize=normalize, base=base, dx=dx)


def apply_options(kl: npt.ArrayLike, psum: npt.ArrayLike | None, qsum: npt.ArrayLike | None, *,
                  normalize: bool, base: float | None, dx: float | None) -> np.ndarray:
    """kl / psum + log(qsum / psum) with normalize, then / log(base), then * dx
    (dx first where dividing by a log(base) below 1 overflows),
    element-wise over the broadcast arrays: the arithmetic of the compiled
    entries (``_div_kernels.finish_kl``), so both give the same bits.  The sums
    are read only with normalize (None will do without)."""
    arrays: Sequence[np.ndarray]
    if normalize:
        assert psum is not None and qsum is not None
        arrays = np.broadcast_arrays(kl, psum, qsum)
    else:
        arrays = (np.asarray(kl),)
    shape = arrays[0].shape
    flat = [np.ascontiguousarray(a, dtype=np.float64).reshape(-1) for a in arrays]
    if not normalize:
        flat += [flat[0], flat[0]]  # the sums are not read without normalize
    res = np.empty(flat[0].shape[0], dtype=np.float64)
    _div_kernels.finish_kl(flat[0], flat[1], flat[2], res, normalize,
                           0.0 if base is None else base, 0.0 if dx is None else dx)
    return res.reshape(shape)


def check_out(out: object, shape: Sequence[int], dtype: np.dtype, func: str) -> None:
    """Raise the error ``deliver`` would for an ``out`` that cannot take a result
    of this shape and dtype (to be called before the work, when it is known)."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{func}: out must be a numpy array, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"{func}: out has shape {out.shape}, the result has shape {tuple(shape)}")
    if not out.flags.writeable:
        raise ValueError(f"{func}: out is read-only")
    if not np.can_cast(dtype, out.dtype, casting="same_kind"):
        raise TypeError(f"{func}: cannot write a {dtype} result into out of dtype {out.dtype}")


def deliver(kl: npt.ArrayLike, out: np.ndarray | None, dtype: npt.DTypeLike,
            func: str) -> np.floating[Any] | np.ndarray:
    """Cast to the result dtype, write ``out`` if given, unwrap 0-d results."""
    kl = np.asarray(kl)
    # a float32 result beyond float32's range rounds to inf silently, as the
    # compiled entries' cast does (the kernels compute in double)
    with np.errstate(over="ignore"):
        if out is not None:
            check_out(out, kl.shape, np.dtype(dtype), func)
            np.copyto(out, kl.astype(dtype, copy=False), casting="same_kind")
            return out
        if kl.dtype != dtype:
            kl = kl.astype(dtype)
    return cast(np.floating[Any], kl[()]) if kl.ndim == 0 else kl


# The overloads: ``out`` is returned as passed; Python numbers and flat lists give a
# float64 scalar; otherwise the dtype follows the inputs (float32 with float32 gives
# float32) and keepdims=True gives an array (at run time a 0-d input gives a scalar
# there, as NumPy's reductions do; the stubs say array).  The ignored overlaps are with the
# keepdims=True overload below them, which a call that matches both never reaches
# (float64 inputs with keepdims=True take the float64 keepdims=True overload above).
@overload
def kl_div(p: ArrayLike, q: ArrayLike, *, axis: Axis = ..., keepdims: bool = ...,
           base: float | None = ..., normalize: bool = ..., dx: float | None = ..., out: ArrayT,
           num_threads: int | None = ..., check: bool = ...) -> ArrayT: ...

@overload
def kl_div(p: ScalarOr1D, q: ScalarOr1D, *, axis: int | None = ..., keepdims: Literal[False] = ...,
           base: float | None = ..., normalize: bool = ..., dx: float | None = ..., out: None = ...,
           num_threads: int | None = ..., check: bool = ...) -> np.float64: ...

@overload
def kl_div(p: Float32Like, q: Float32Like, *, axis: Axis = ..., keepdims: Literal[True],
           base: float | None = ..., normalize: bool = ..., dx: float | None = ..., out: None = ...,
           num_threads: int | None = ..., check: bool = ...) -> F32Array: ...

@overload
def kl_div(p: Float32Like, q: Float32Like, *, axis: Axis = ..., keepdims: bool = ...,
           base: float | None = ..., normalize: bool = ..., dx: float | None = ..., out: None = ...,
           num_threads: int | None = ..., check: bool = ...) -> F32Result: ...

@overload
def kl_div(p: Float64Like, q: ArrayLike, *, axis: Axis = ..., keepdims: Literal[True],
           base: float | None = ..., normalize: bool = ..., dx: float | None = ..., out: None = ...,
           num_threads: int | None = ..., check: bool = ...) -> F64Array: ...

@overload
def kl_div(p: ArrayLike, q: Float64Like, *, axis: Axis = ..., keepdims: Literal[True],
           base: float | None = ..., normalize: bool = ..., dx: float | None = ..., out: None = ...,
           num_threads: int | None = ..., check: bool = ...) -> F64Array: ...

@overload
def kl_div(  # type: ignore[overload-overlap]
           p: Float64Like, q: ArrayLike, *, axis: Axis = ..., keepdims: bool = ...,
           base: float | None = ..., normalize: bool = ..., dx: float | None = ..., out: None = ...,
           num_threads: int | None = ..., check: bool = ...) -> F64Result: ...

@overload
def kl_div(  # type: ignore[overload-overlap]
           p: ArrayLike, q: Float64Like, *, axis: Axis = ..., keepdims: bool = ...,
           base: float | None = ..., normalize: bool = ..., dx: float | None = ..., out: None = ...,
           num_threads: int | None = ..., check: bool = ...) -> F64Result: ...

@overload
def kl_div(p: ArrayLike, q: ArrayLike, *, axis: Axis = ..., keepdims: Literal[True],
           base: float | None = ..., normalize: bool = ..., dx: float | None = ..., out: None = ...,
           num_threads: int | None = ..., check: bool = ...) -> F32Array | F64Array: ...

@overload
def kl_div(p: ArrayLike, q: ArrayLike, *, axis: Axis = ..., keepdims: bool = ...,
           base: float | None = ..., normalize: bool = ..., dx: float | None = ..., out: None = ...,
           num_threads: int | None = ..., check: bool = ...) -> FloatResult: ...


def kl_div(p: ArrayLike, q: ArrayLike, *, axis: Axis = -1, keepdims: bool = False,
           base: float | None = None, normalize: bool = False, dx: float | None = None,
           out: npt.NDArray[Any] | None = None, num_threads: int | None = None,
           check: bool = True) -> np.floating[Any] | npt.NDArray[Any]:
    """Kullback-Leibler divergence KL(p || q) = sum over ``axis`` of p * log(p / q).

    A term with p == 0 counts 0 whatever q is; a term with p > 0 and q == 0 makes
    the divergence +inf.  p and q broadcast together (a batch of rows against a
    single q costs no copy of q).

    Parameters
    ----------
    p, q : array_like
        Non-negative finite values (probabilities, counts or densities).
        float32 with float32 gives float32; any other real input computes in float64.
    axis : int, tuple of int or None, default -1
        Axis (or axes) summed over; None sums over everything.
    keepdims : bool, default False
        Keep the reduced axes as size-one dimensions.
    base : float, optional
        Logarithm base (2 gives bits); natural log when None.
    normalize : bool, default False
        Divide p and q by their sums along ``axis`` first (a zero sum is an error).
    dx : float, optional
        Grid spacing: multiply by dx so density values on a uniform grid give the
        continuous divergence.  Exclusive with ``normalize``.
    out : ndarray, optional
        Array of the result's shape to write into; it is returned.
    num_threads : int, optional
        Threads for the row loop (default: all cores for large inputs, and for
        mid-size ones where waking the idle threads pays, see docs/core.md); a
        single row of 8,192 elements or more is shared by the threads.  The
        result is bit-identical for every thread count.
    check : bool, default True
        Raise ValueError for a negative, NaN or infinite value in p or q (the
        check runs inside the kernel's single pass).  With False such input
        gives an unspecified result.

    Returns
    -------
    float or ndarray
        The divergence, of shape ``broadcast(p, q).shape`` without ``axis``.

    Examples
    --------
    >>> import kl_fast
    >>> round(float(kl_fast.kl_div([0.5, 0.5], [0.9, 0.1])), 6)
    0.510826
    >>> kl_fast.kl_div([[0.5, 0.5], [1.0, 0.0]], [0.5, 0.5], base=2)
    array([0., 1.])
    """
    func = "kl_div"
    keepdims, normalize = flag(keepdims, "keepdims", func), flag(normalize, "normalize", func)
    check = flag(check, "check", func)
    p_in = as_real_array(p, "p", func)
    q_in = as_real_array(q, "q", func)
    base, dx = check_options(normalize, base, dx, func)
    if check:
        check_alone(kl_div, p_in, q_in, 1.0)
    dtype = result_dtype(p_in, q_in)
    pk = to_kernel_dtype(p_in, dtype)
    qk = to_kernel_dtype(q_in, dtype)
    ndim = max(pk.ndim, qk.ndim)
    if ndim == 0:
        # Two scalars: the single term (axis=-1 and axis=None both mean "it").
        check_scalar_axis(axis, func)
        axes = None
        pk = pk.reshape(1)
        qk = qk.reshape(1)
        res, _ = row_sums(pk, qk, axes=None, func=func, num_threads=1, check=check,
                          shapes=((), ()), want_sums=normalize)
    else:
        axes = normalize_axes(axis, ndim, func)
        res, _ = row_sums(pk, qk, axes=axes, func=func, num_threads=num_threads, check=check,
                          shapes=(p_in.shape, q_in.shape), want_sums=normalize)
    redo = normalize_rescale(res, dtype == np.float32) if normalize else None
    infinite = None
    if redo is not None and redo.any():
        shape = np.broadcast_shapes(pk.shape, qk.shape)
        red = tuple(range(len(shape))) if axes is None else axes
        # a row where p > 0 meets q == 0 is +inf however far apart or out of range
        # its sums are (rescaling may round that p to 0, and inf / inf is NaN)
        infinite = mass_on_zeros(pk, qk, red).reshape(redo.shape)
        redo &= ~infinite
        if redo.any():
            # Redo the rows whose sums are out of range or far apart on inputs
            # scaled by powers of two (a copy, on this rarer path).
            scaled, lost, q_shift = rescaled_pair(pk, qk, shape, red, res, redo,
                                                  dtype == np.float32)
            if lost.any():
                res = sums_with_lost_terms(scaled[0], scaled[1], np.broadcast_to(qk, shape),
                                           lost, q_shift, axes, red,
                                           num_threads if ndim else 1, check)
            else:
                res, _ = row_sums(scaled[0], scaled[1], axes=axes, func=func,
                                  num_threads=num_threads if ndim else 1, check=check,
                                  shapes=(shape, shape), want_sums=True)
    shift = None
    if not normalize and not np.all(np.isfinite(res[..., 0])):
        # the raw sum left the range: negative terms, or base or dx, may bring the
        # divergence back
        res, shift = kl_beyond_range(pk, qk, axes, res, num_threads if ndim else 1)
    if not normalize and (base is not None or dx is not None):
        res, shift = kl_below_range(pk, qk, axes, res, shift, base, dx, num_threads if ndim else 1)
    kl = times_power_of_two(finish(res[..., 0], res[..., 1], res[..., 2], normalize=normalize,
                                   base=base, dx=dx, func=func), shift)
    if infinite is not None and infinite.any():
        # +inf in nats; a base below 1 (a negative log) makes it -inf
        kl = np.where(infinite, np.inf if base is None or base > 1 else -np.inf, kl)
    if keepdims and ndim:
        red = tuple(range(ndim)) if axes is None else axes
        kl = np.expand_dims(kl, red)
    return deliver(kl, out, dtype, func)


_div_kernels.configure(_PARALLEL_MIN_ELEMENTS, deliver)
# The public function: a compiled entry with this docstring that computes every
# call whose layout needs no copy, and calls the above for everything else.
kl_div_python = kl_div
kl_div = _div_kernels.register_general("kl_div", kl_div_python)
