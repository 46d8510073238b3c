"""kl_fast on Dask arrays: the same divergences, lazily, over chunks and clusters.

Every block runs the compiled kernel once and returns partial sums; Dask adds
the partials along the reduction axes (a tree reduction) and a final
elementwise step applies ``normalize``, ``base`` and ``dx`` exactly as the
in-memory functions do, so the results agree with them to rounding and
``normalize=True`` costs no extra pass over the data (its blocks scale their
values by powers of two, so that no sum overflows, and carry the exponents).

The kernels release the GIL, so the threaded scheduler runs blocks truly in
parallel; with ``dask.distributed`` the blocks run on the workers.  Each block
runs its kernel on one thread: Dask supplies the parallelism.

Needs the ``dask`` extra: ``pip install "kl_fast[dask]"``.
"""
from __future__ import annotations

try:
    import dask.array as da
except ImportError as _missing:  # pragma: no cover - exercised only without dask
    raise ImportError(
        "kl_fast.dask needs dask[array] and distributed: pip install 'kl_fast[dask]'"
    ) from _missing

import math
import re
from typing import Any, Literal, NamedTuple, Optional, Sequence, TypedDict, Union, cast

import numpy as np
import numpy.typing as npt

from ._api import (broadcast_shape, check_options, finish, kl_beyond_range, magnifies,
                   mass_on_zeros, max_exponents, options_lift, overflow_shift, raw_tiny,
                   rounded_under_p, row_sums, small_apart, sums_with_lost_terms,
                   times_power_of_two)
from ._pairwise import (
    _check_matrix_shape,
    _check_row_lengths,
    _check_sums,
    _resolve_base,
    _row_stats,
)
from ._pairwise import kl_pairwise as _kl_pairwise
from .gaussian import _METHOD_DEFAULTS, _check_grid_shapes, _fit_options
from .gaussian import _prepare as _gaussian_prepare
from .gaussian import _start as _gaussian_start
from .gaussian import _param as _gaussian_param
from .gaussian import fit_gaussian as _fit_gaussian
from .gaussian import gaussian_kl as _gaussian_kl
from .gaussian import gaussian_kl_grad as _gaussian_kl_grad
from ._validation import (
    as_real_array,
    flag,
    check_real_dtype,
    check_scalar_axis,
    normalize_axes,
    result_dtype,
    to_kernel_dtype,
)

__all__ = ["kl_div", "js_div", "kl_div_log", "kl_pairwise", "js_pairwise", "kl_topk",
           "gaussian_kl", "gaussian_kl_grad", "fit_gaussian", "GaussianFitArrays"]


def _shape_dtype(a: Any) -> tuple[tuple[int, ...], np.dtype[Any]]:
    arr = np.asarray(a)
    return arr.shape, arr.dtype


def _is_future(a: object) -> bool:
    return type(a).__name__ == "Future" and type(a).__module__.startswith("distributed")


def _is_delayed(a: object) -> bool:
    """A ``dask.delayed`` object: of a call (Delayed) or of a value (DelayedLeaf,
    ``dask.delayed(array)``), or any of their subclasses."""
    from dask.delayed import Delayed

    return isinstance(a, Delayed)


def _from_lazy(a: Any) -> da.Array:
    """A Dask array of a ``dask.delayed`` object or a ``distributed`` Future (of an
    array), one chunk.  The result's shape depends on its shape, so a delayed
    object is computed now, once (persisted: held by the scheduler, a
    distributed cluster's workers keep it, nothing runs again at compute
    time); a Future's shape and dtype are fetched where it lives."""
    from dask.delayed import delayed

    if _is_future(a):
        shape, dtype = a.client.submit(_shape_dtype, a, pure=False).result()
        a = delayed(a)
    else:
        a = a.persist()
        shape, dtype = delayed(_shape_dtype)(a).compute()
    return da.from_delayed(a, shape=shape, dtype=dtype)

# An input once checked: a Dask array, or anything else made an ndarray.
_Input = Union[da.Array, np.ndarray]
# Dask's block_info argument: {argument index: {"array-location": ..., ...}, None: ...}
_BlockInfo = Any

def _as_input(a: object, name: str, func: str, logs: str = "") -> _Input:
    """A Dask array as given (a delayed object or a Future as a one-chunk Dask array),
    anything else as an ndarray (``logs``: see as_real_array); real dtypes only."""
    if not isinstance(a, (da.Array, np.ndarray)) and (_is_future(a) or _is_delayed(a)):
        a = _from_lazy(a)
    if isinstance(a, da.Array):
        check_real_dtype(a.dtype, name, func)
        if any(math.isnan(s) for s in a.shape):
            raise ValueError(
                f"{func}: {name} has unknown chunk sizes (shape {a.shape}); "
                f"call {name}.compute_chunk_sizes() first"
            )
        return a
    return as_real_array(a, name, func, logs)


def _padded(a: _Input, ndim: int) -> _Input:
    """``a`` with leading size-one axes up to ``ndim`` (a view, nothing copied)."""
    extra = ndim - a.ndim
    if extra == 0:
        return a
    if isinstance(a, da.Array):
        return a[(None,) * extra]
    return a.reshape((1,) * extra + a.shape)


def _to_dask(a: _Input, like: da.Array | None) -> da.Array:
    """``a`` as a Dask array; an ndarray is chunked like ``like`` where their sizes agree."""
    if isinstance(a, da.Array):
        return a
    if like is None:
        return da.from_array(a, chunks="auto")
    chunks = tuple(c if n == len_ and n > 1 else ("auto" if n > 1 else (n,))
                   for c, n, len_ in zip(like.chunks, a.shape, like.shape))
    return da.from_array(a, chunks=chunks)


def _dask_pair(p: _Input, q: _Input,
               ndim: int) -> tuple[da.Array, da.Array, tuple[tuple[int, ...], ...]]:
    """Both inputs as Dask arrays of ``ndim`` axes with chunks unified for blockwise work."""
    p = _padded(p, ndim)
    q = _padded(q, ndim)
    if not isinstance(p, da.Array):
        p = _to_dask(p, q if isinstance(q, da.Array) else None)
    q = _to_dask(q, p)
    ind = tuple(range(ndim))
    chunkss, (pu, qu) = da.unify_chunks(p, ind, q, ind)
    return pu, qu, tuple(chunkss[i] for i in ind)


def _starts(location: Sequence[tuple[int, int]], pad: int) -> tuple[int, ...]:
    """Start of a block in its whole array, leading padded axes dropped."""
    return tuple(start for start, _ in location[pad:])


def _partial_sums(pb: np.ndarray, qb: np.ndarray, *, axes: tuple[int, ...],
                  kernel_dtype: np.dtype, check: bool, normalize: bool, pads: tuple[int, int],
                  small: bool = False, scale: int = 0, block_info: _BlockInfo = None) -> np.ndarray:
    """One block's partials, the reduced axes kept as size one.

    Without normalize: (sum p*log(p/q), 0, 0, that sum times 2**-scale); with
    ``small`` (base or dx magnify the sum) the terms of p below raw_tiny apart,
    at full precision times 2**_SMALL_EXP, in the second (_small_partials).
    The last is the row's fallback where the sum of all blocks leaves the
    double range (_scaled_partial).  With normalize the block's p and
    q are first scaled by powers of two (exactly) that bring each row's largest
    value into [1/2, 1), so that no sum over- or underflows, and the partials
    are (sum p'*log(p'/q'), sum p', sum q', kp, kq) for p = p' * 2**kp and
    q = q' * 2**kq; ``_rebased`` puts every block on the same scale.
    """
    if normalize:
        # float64 terms also for float32 rows: the finish S / P + log(Q / P) cancels
        # to the divergence, and float32 terms would leave it about eps32 |log(Q /
        # P)| off (0.4% of a divergence of 5e-7); kl_div divides such rows by their
        # sums first, which a block cannot do
        kernel_dtype = np.dtype(np.float64)
    pk = to_kernel_dtype(np.asarray(pb), kernel_dtype)
    qk = to_kernel_dtype(np.asarray(qb), kernel_dtype)
    shapes = (pk.shape[pads[0]:], qk.shape[pads[1]:])
    origins = (_starts(block_info[0]["array-location"], pads[0]),
               _starts(block_info[1]["array-location"], pads[1]))
    run: dict[str, Any] = dict(axes=axes, func="kl_div", num_threads=1, check=check, shapes=shapes,
               want_sums=normalize, origins=origins)
    if not normalize:
        res, _ = row_sums(pk, qk, **run)
        fallback = _scaled_partial(pk, qk, res, axes, scale)
        if small:
            res = _small_partials(pk, qk, res, axes)
        return np.expand_dims(np.concatenate([res, fallback[..., None]], axis=-1), axes)
    kp, kq = _block_exponents(pk, axes), _block_exponents(qk, axes)
    scaled = [np.ldexp(a, -np.where(k == _NO_MASS, 0, k).astype(np.intc))
              for a, k in ((pk, kp), (qk, kq))]
    try:
        res, _ = row_sums(*scaled, **run)
    except ValueError:
        row_sums(pk, qk, **run)  # the same error, showing the values as given
        raise
    res = _scaled_block_sums(res, pk, qk, scaled, kp, kq, axes)
    ks = [np.broadcast_to(np.squeeze(k, axis=axes), res.shape[:-1]) for k in (kp, kq)]
    return np.expand_dims(np.concatenate([res, np.stack(ks, axis=-1)], axis=-1), axes)


def _scaled_partial(pk: np.ndarray, qk: np.ndarray, res: np.ndarray, axes: tuple[int, ...],
                    scale: int) -> np.ndarray:
    """A block's raw KL sums (res[..., 0]) times 2**-scale, scale the
    overflow_shift of the whole reduction: where a block's own sum left the
    range, kl_div's redo of it on scaled inputs (kl_beyond_range), brought to
    that scale; +inf where p > 0 meets q == 0.  Their total over the blocks is
    finite wherever the divergence times 2**-scale is."""
    with np.errstate(under="ignore"):
        scaled = np.ldexp(res[..., 0], -scale)
    if np.all(np.isfinite(res[..., 0])):
        return scaled
    redone, shift = kl_beyond_range(pk, qk, axes, res, 1)
    if shift is None:
        return scaled
    over = shift != 0
    with np.errstate(over="ignore", under="ignore"):
        return np.where(over, np.ldexp(redone[..., 0], shift - scale), scaled)


_SMALL_EXP = 1000   # the small terms' scale: below 2**-957, they become normal numbers


def _small_partials(pk: np.ndarray, qk: np.ndarray, res: np.ndarray,
                    axes: tuple[int, ...]) -> np.ndarray:
    """A block's raw partials ``res`` with, in the rows whose partial is below
    2**-900 (where the lost bits of subnormal terms could show), the terms of
    p > 0 below raw_tiny taken apart: res[..., 0] the kernel's sum of the
    others, res[..., 1] the sum of those terms at full precision
    (_api.small_terms) times 2**_SMALL_EXP.  Other rows are unchanged."""
    low = np.abs(res[..., 0]) < 2.0**-900
    if not low.any():
        return res
    tiny = raw_tiny(pk.dtype == np.float32)
    shape = np.broadcast_shapes(pk.shape, qk.shape)
    small = (np.broadcast_to(pk, shape) > 0) & (np.broadcast_to(pk, shape) < tiny)
    small &= np.expand_dims(low, axes)
    has = np.any(small, axis=axes)
    if not has.any():
        return res
    rest, terms, exps = small_apart(np.broadcast_to(pk, shape).astype(np.float64),
                                    np.broadcast_to(qk, shape).astype(np.float64), small, axes, 1)
    scaled = np.zeros(shape)
    with np.errstate(all="ignore"):
        scaled[small] = np.ldexp(terms, exps + _SMALL_EXP)
    out = res.copy()
    out[..., 0] = np.where(has, rest, res[..., 0])
    out[..., 1] = np.where(has, scaled.sum(axis=axes), 0.0)
    return out


def _scaled_block_sums(res: np.ndarray, pk: np.ndarray, qk: np.ndarray, scaled: list[np.ndarray],
                       kp: np.ndarray, kq: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """A block's sums ``res`` of p times 2**-kp and q times 2**-kq (``scaled``),
    mended where scaling down rounded values: p > 0 meeting q == 0 is +inf however
    small p became, and an element of q rounded under p > 0 takes its terms from
    q as it is (``sums_with_lost_terms``)."""
    if (kq > 0).any():
        shape = np.broadcast_shapes(pk.shape, qk.shape)
        q, q_scaled, p_scaled = (np.broadcast_to(a, shape) for a in (qk, scaled[1], scaled[0]))
        shift = np.where(kq > 0, kq, 0)
        lost = rounded_under_p(p_scaled, q_scaled, q, shift)
        if lost.any():
            res = sums_with_lost_terms(p_scaled, q_scaled, q, lost, shift, axes, axes, 1, False)
    if (kp > 0).any():
        infinite = mass_on_zeros(pk, qk, axes)
        if infinite.any():
            res = res.copy()
            res[..., 0] = np.where(infinite, np.inf, res[..., 0])
    return res


def _block_exponents(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Per row of a block (over ``axes``, kept as size one), the exponent e with
    the row's largest value times 2**-e in [1/2, 1); ``_NO_MASS`` for a row
    without a positive finite value (below every other block's exponent)."""
    e, found = max_exponents(a, axes)
    return np.where(found, e, _NO_MASS).astype(np.intc)


_NO_MASS = -4096  # below any double's exponent; 2**(_NO_MASS - K) is 0


def _rebased(block: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Normalize's partials (see ``_partial_sums``) on the row's common scale
    ``top`` = (max kp, max kq) over its blocks, as (S, P, Q) whose
    S / P + log(Q / P) is the normalised divergence: with w = 2**(kp - Kp),
    S = w * (S' + ((kp - kq) - (Kp - Kq)) * ln 2 * P'), P = w * P' and
    Q = 2**(kq - Kq) * Q'.  Blocks on the same relative scale add no term."""
    if block.size == 0:
        # a block of no rows (Dask hands it a ``top`` of another shape)
        return np.empty(block.shape[:-1] + (3,))
    s, p, q, kp, kq = np.moveaxis(block, -1, 0)
    big_p, big_q = np.moveaxis(top, -1, 0)
    w = np.ldexp(1.0, (kp - big_p).astype(np.intc))
    shift = ((kp - kq) - (big_p - big_q)) * math.log(2.0)
    with np.errstate(invalid="ignore"):
        # +inf (p > 0 meets q == 0) stays so whatever the weight
        s = np.where(s == np.inf, s, w * np.where(shift == 0, s, s + shift * p))
    return np.stack([s, w * p, np.ldexp(q, (kq - big_q).astype(np.intc))], axis=-1)


def _finished(sums: np.ndarray, *, normalize: bool, base: float | None, dx: float | None,
              out_dtype: np.dtype, small: bool = False, scale: int = 0,
              block_info: _BlockInfo = None) -> np.ndarray:
    """normalize/base/dx applied to a block of summed partials; errors use whole-output indices.
    With ``small`` the raw sum is the first partial plus the second times
    2**-_SMALL_EXP (_small_partials), joined without losing the second's bits.
    Without normalize, a raw sum that left the range is taken from the
    scaled partials (the fourth, times 2**scale), as kl_div redoes it."""
    origin = _starts(block_info[0]["array-location"][:-1], 0)
    shift = None
    over = None
    if not normalize:
        over = ~np.isfinite(sums[..., 0])
        if over.any():
            sums = sums.copy()
            sums[..., 0] = np.where(over, sums[..., 3], sums[..., 0])
            sums[..., 1] = np.where(over, 0.0, sums[..., 1])
    if small:
        sums, shift = _joined_small(sums, base, dx)
    if over is not None and over.any():
        shift = np.where(over, scale, 0 if shift is None else shift).astype(np.intc)
    kl = finish(sums[..., 0], sums[..., 1], sums[..., 2], normalize=normalize, base=base,
                dx=dx, func="kl_div", origin=origin)
    with np.errstate(over="ignore"):   # a float32 result beyond its range: inf, quietly
        return np.asarray(times_power_of_two(kl, shift), dtype=out_dtype)


def _quiet_sum(x: np.ndarray, axis: Any = None, keepdims: bool = False, **kwargs: Any) -> np.ndarray:
    """np.sum without NumPy's overflow warning (a partial total beyond the range
    is inf, which _finished replaces)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return cast(np.ndarray, np.sum(x, axis=axis, keepdims=keepdims, **kwargs))


def _joined_small(sums: np.ndarray, base: float | None,
                  dx: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(sums, shift) with the raw sum r + s 2**-_SMALL_EXP of _small_partials's
    partials (r, s) in sums[..., 0] times 2**-shift: where s is 0 or r too large
    for s to matter below its last bits, r + s 2**-_SMALL_EXP itself (shift 0);
    elsewhere the fraction of r 2**_SMALL_EXP + s, lowered by options_lift so
    that dx and base cannot overflow it."""
    r, s = sums[..., 0], sums[..., 1]
    joined = (s != 0) & (np.abs(r) < 2.0**-900)
    lift = options_lift(base, dx)
    with np.errstate(over="ignore", invalid="ignore"):
        frac, exp = np.frexp(np.ldexp(np.where(joined, r, 0.0), _SMALL_EXP) + s)
        plain = r + np.ldexp(s, -_SMALL_EXP)
    out = np.zeros(sums.shape)
    out[..., 0] = np.where(joined, np.ldexp(frac, -lift), plain)
    return out, np.where(joined, exp - _SMALL_EXP + lift, 0).astype(np.intc)


def kl_div(P: da.Array | npt.ArrayLike, Q: da.Array | npt.ArrayLike, *,
           axis: int | tuple[int, ...] | None = -1, keepdims: bool = False,
           base: float | None = None, normalize: bool = False, dx: float | None = None,
           check: bool = True) -> da.Array:
    """Kullback-Leibler divergence KL(P || Q) over ``axis``, lazily on Dask arrays.

    The semantics, arguments and errors are those of :func:`kl_fast.kl_div`;
    the result is a Dask array to ``compute()``.  P and Q may be Dask arrays or
    one of them an ndarray (a single ``q`` against a chunked batch, say); they
    broadcast together without copies.  The reduction axes may be chunked:
    each block's kernel pass yields partial sums that Dask adds, so the result
    equals the in-memory ``kl_div`` to rounding.  Where a raw sum leaves the
    double range while the divergence does not (terms near 1e308 brought
    back by negative ones, or by ``base`` or ``dx``), each block also carries
    its sum times a power of two that keeps the total finite, and redoes a
    block whose own sum overflows on scaled inputs, as the in-memory function
    redoes the row.

    A bad value (negative, NaN or infinite, ``check=True``) raises, when
    computed, the ValueError ``kl_div`` raises, with the index in the whole
    array (the first bad value of the block that fails first).

    Parameters
    ----------
    P, Q : dask.array.Array or array_like
        Non-negative finite values; float32 with float32 gives float32, any
        other real input computes in float64.  Chunk sizes must be known.
    axis : int, tuple of int or None, default -1
        Axis (or axes) summed over, chunked or not; None sums over everything.
    keepdims, base, normalize, dx, check
        As in :func:`kl_fast.kl_div`.

    Returns
    -------
    dask.array.Array
        The divergence, of shape ``broadcast(P, Q).shape`` without ``axis``.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import kl_fast.dask
    >>> P = da.from_array(np.array([[0.5, 0.5], [1.0, 0.0]]), chunks=(1, 1))
    >>> kl = kl_fast.dask.kl_div(P, np.array([0.5, 0.5]), base=2)
    >>> kl.compute(scheduler="threads")
    array([0., 1.])
    """
    func = "kl_div"
    keepdims, normalize = flag(keepdims, "keepdims", func), flag(normalize, "normalize", func)
    check = flag(check, "check", func)
    p_in = _as_input(P, "p", func)
    q_in = _as_input(Q, "q", func)
    base, dx = check_options(normalize, base, dx, func)
    dtype = result_dtype(p_in, q_in)
    shape = broadcast_shape((p_in.shape, q_in.shape), ("p", "q"), func)
    ndim = len(shape)
    red: tuple[int, ...]
    if ndim == 0:
        # Two scalars: the single term, as kl_div treats them (and the axes it takes).
        check_scalar_axis(axis, func)
        axes, red, keepdims = None, (0,), False
        p_in, q_in, ndim = p_in.reshape(1), q_in.reshape(1), 1
    else:
        axes = normalize_axes(axis, ndim, func)
        red = tuple(range(ndim)) if axes is None else axes
    pads = (ndim - p_in.ndim, ndim - q_in.ndim)
    p, q, chunks = _dask_pair(p_in, q_in, ndim)
    # base or dx magnify a raw sum of subnormal terms: blocks carry them apart
    small = not normalize and magnifies(base, dx)

    partial_chunks = tuple((1,) * len(c) if ax in red else c for ax, c in enumerate(chunks))
    # the scale of the fallback partials: 2**-scale times the whole reduction is finite
    scale = overflow_shift(math.prod(max(p.shape[ax], q.shape[ax]) for ax in red))
    partials = da.map_blocks(
        _partial_sums, p, q, chunks=partial_chunks + ((5 if normalize else 4,),),
        new_axis=[ndim], meta=np.empty((0,) * (ndim + 1)), axes=red, kernel_dtype=dtype,
        check=bool(check), normalize=bool(normalize), pads=pads, small=small, scale=scale,
    )
    if normalize:
        top = partials[..., 3:].max(axis=red, keepdims=True)
        partials = da.map_blocks(_rebased, partials, top, chunks=partial_chunks + ((3,),),
                                 meta=np.empty((0,) * (ndim + 1)))
    sums = da.reduction(partials, _quiet_sum, _quiet_sum, axis=red, dtype=np.float64,
                        concatenate=True)
    kl = sums.map_blocks(
        _finished, drop_axis=sums.ndim - 1, meta=np.empty((0,) * (sums.ndim - 1), dtype=dtype),
        normalize=normalize, base=base, dx=dx, out_dtype=dtype, small=small, scale=scale,
    )
    if keepdims:
        kl = kl[tuple(None if ax in red else slice(None) for ax in range(ndim))]
    return kl


# ---- js_div, kl_div_log: whole distributions per block, the in-memory function ----

_INDEX = re.compile(r"(?:(\w+) contains .*? at index |at (output )?index )\[([0-9, ]*)\]")


def _shifted(exc: ValueError, starts: dict[Optional[str], tuple[int, ...]],
             out_start: tuple[int, ...]) -> ValueError:
    """``exc`` with the block-local index in its message moved to the whole array:
    ``starts`` maps an input's name to its block's start, ``out_start`` is the
    output block's start (for "output index")."""
    def repl(m: re.Match[str]) -> str:
        if not m.group(3).strip():
            return m.group(0)
        idx = [int(v) for v in m.group(3).split(",")]
        start = out_start if m.group(2) else starts.get(m.group(1), ())
        extra = len(idx) - len(start)   # leading axes padded onto a broadcast input
        if extra < 0 or any(idx[:extra]):
            return m.group(0)
        idx = idx[extra:]
        shifted = ", ".join(str(i + s) for i, s in zip(idx, start))
        return m.group(0)[:m.group(0).rindex("[")] + f"[{shifted}]"
    return ValueError(_INDEX.sub(repl, str(exc), count=1))


def _rows_block(pb: np.ndarray, qb: np.ndarray, *, fn: Any, names: tuple[str, str],
                pads: tuple[int, int], red: tuple[int, ...], options: dict[str, Any],
                block_info: _BlockInfo = None) -> np.ndarray:
    """``fn`` on one block (whole distributions), errors indexed in the whole arrays."""
    try:
        return np.asarray(fn(pb, qb, axis=red, keepdims=True, num_threads=1, **options))
    except ValueError as exc:
        starts: dict[Optional[str], tuple[int, ...]] = {
                  names[0]: _starts(block_info[0]["array-location"], pads[0]),
                  names[1]: _starts(block_info[1]["array-location"], pads[1])}
        out = tuple(s for ax, (s, _) in enumerate(block_info[None]["array-location"])
                    if ax not in red)
        raise _shifted(exc, starts, out) from None


def _rowwise(fn: Any, func: str, names: tuple[str, str], P: object, Q: object, axis: Any,
             keepdims: bool, options: dict[str, Any]) -> da.Array:
    """A reduction ``fn`` (js_div, kl_div_log) over Dask arrays: the reduced axes
    are rechunked to one chunk, so every block holds whole distributions and
    gives exactly the in-memory values."""
    log_space = func == "kl_div_log"
    keepdims = flag(keepdims, "keepdims", func)
    normalize = flag(options["normalize"], "normalize", func)
    base, _ = check_options(normalize, options["base"], None, func)   # now, not at compute time
    options = dict(options, base=base, normalize=normalize,
                   check=flag(options["check"], "check", func))
    p_in = _as_input(P, names[0], func, "p" if log_space else "")
    q_in = _as_input(Q, names[1], func, "q" if log_space else "")
    dtype = result_dtype(p_in, q_in)
    shape = broadcast_shape((p_in.shape, q_in.shape), names, func)
    ndim = max(len(shape), 1)
    if shape:
        axes = normalize_axes(axis, len(shape), func)
    else:
        check_scalar_axis(axis, func)     # two scalars: the axes the in-memory function takes
        axes = None
    red = tuple(range(ndim)) if axes is None else axes
    pads = (ndim - p_in.ndim, ndim - q_in.ndim)
    p, q, _ = _dask_pair(p_in, q_in, ndim)
    whole = {ax: -1 for ax in red}
    p, q = p.rechunk(whole), q.rechunk(whole)
    out = da.map_blocks(
        _rows_block, p, q, chunks=tuple((1,) * len(c) if ax in red else c
                                        for ax, c in enumerate(da.core.broadcast_chunks(
                                            p.chunks, q.chunks))),
        dtype=dtype, meta=np.empty((0,) * ndim, dtype=dtype), fn=fn, names=names, pads=pads,
        red=red, options=options,
    )
    if keepdims and shape:
        return out
    return out.squeeze(axis=red) if shape else out.reshape(())


def js_div(P: da.Array | npt.ArrayLike, Q: da.Array | npt.ArrayLike, *,
           axis: int | Sequence[int] | None = -1, keepdims: bool = False,
           base: float | None = None, normalize: bool = False, check: bool = True) -> da.Array:
    """Jensen-Shannon divergence over ``axis``, lazily: :func:`kl_fast.js_div` on each
    block, the reduced axes rechunked to one chunk (whole distributions per block),
    so every value equals the in-memory one; errors carry the whole-array index.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import kl_fast.dask
    >>> P = da.from_array(np.array([[1.0, 0.0], [0.5, 0.5]]), chunks=(1, 1))
    >>> kl_fast.dask.js_div(P, np.array([0.0, 1.0]), base=2).compute(scheduler="threads")
    array([1.        , 0.31127812])
    """
    from ._divergences import js_div as _js_div

    return _rowwise(_js_div, "js_div", ("p", "q"), P, Q, axis, keepdims,
                    dict(base=base, normalize=normalize, check=check))


def kl_div_log(log_P: da.Array | npt.ArrayLike, log_Q: da.Array | npt.ArrayLike, *,
               axis: int | Sequence[int] | None = -1, keepdims: bool = False,
               base: float | None = None, normalize: bool = False,
               check: bool = True) -> da.Array:
    """:func:`kl_fast.kl_div_log` lazily, block by block with whole distributions per
    block (the reduced axes rechunked to one chunk): the in-memory values, and
    errors with the whole-array index.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import kl_fast.dask
    >>> L = da.from_array(np.log(np.array([[0.5, 0.5], [0.9, 0.1]])), chunks=(1, 2))
    >>> kl_fast.dask.kl_div_log(L, np.log([0.5, 0.5])).compute(scheduler="threads").round(6)
    array([0.      , 0.368064])
    """
    from ._divergences import kl_div_log as _kl_div_log

    return _rowwise(_kl_div_log, "kl_div_log", ("log_p", "log_q"), log_P, log_Q, axis,
                    keepdims, dict(base=base, normalize=normalize, check=check))


# ---- kl_pairwise: blocks of rows of P against blocks of rows of Q ------------------

def _as_matrix_input(a: object, name: str, func: str) -> da.Array:
    """A 2-D Dask array of ``a`` with whole rows in every block."""
    a = _as_input(a, name, func)
    _check_matrix_shape(a.shape, name, func)
    if not isinstance(a, da.Array):
        # Dask cannot size "auto" chunks of rows of no elements: one block then
        return da.from_array(a, chunks=("auto" if a.shape[1] else a.shape[0], -1))
    return a if a.numblocks[1] == 1 else a.rechunk({1: -1})


def _checked_rows(block: np.ndarray, *, matrix: str, caller: str, check: bool, normalize: bool,
                  block_info: _BlockInfo = None) -> np.ndarray:
    """The block itself, once its rows pass ``caller``'s checks (whole-matrix row numbers)."""
    row0 = block_info[0]["array-location"][0][0]
    A = to_kernel_dtype(np.asarray(block), result_dtype(block))
    if check or normalize:
        _, sums = _row_stats(A, matrix, caller, 1, check, row0)
        if normalize:
            # an overflowed sum is fine: the pairwise function rescales that row
            _check_sums(np.where(np.isposinf(sums), 1.0, sums), matrix, caller, row0)
    return block


def _pairwise_block(pb: np.ndarray, qb: np.ndarray, *, base: float | None,
                    normalize: bool) -> np.ndarray:
    return _kl_pairwise(pb, qb, base=base, normalize=normalize, num_threads=1, check=False)


def kl_pairwise(P: da.Array | npt.ArrayLike, Q: da.Array | npt.ArrayLike | None = None, *,
                base: float | None = None, normalize: bool = False,
                check: bool = True) -> da.Array:
    """All-pairs KL matrix, entry [i, j] = KL(P[i] || Q[j]), lazily over blocks of rows.

    Every pair of a row block of P and a row block of Q is one in-memory
    :func:`kl_fast.kl_pairwise` call, so the semantics and accuracy are
    those of ``kl_pairwise``; each row block is checked once (values, and
    its row sums with ``normalize``), before any pair uses it.  A row must
    sit in one block: P and Q are rechunked to whole rows when their columns
    are chunked.

    Parameters
    ----------
    P : dask.array.Array or array_like, shape (m, n)
    Q : dask.array.Array or array_like, shape (k, n), optional
        None compares P with itself.
    base, normalize, check
        As in :func:`kl_fast.kl_pairwise`.

    Returns
    -------
    dask.array.Array, shape (m, k)
        Chunked like P's rows by Q's rows; float32 when P and Q are float32.
        A bad value raises, when computed, kl_pairwise's ValueError with its
        [row, column] in the whole matrix.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import kl_fast.dask
    >>> P = da.from_array(np.array([[0.5, 0.5], [0.9, 0.1], [1.0, 0.0]]), chunks=(2, 2))
    >>> kl_fast.dask.kl_pairwise(P).compute(scheduler="threads").round(6)
    array([[0.      , 0.510826,      inf],
           [0.368064, 0.      ,      inf],
           [0.693147, 0.105361, 0.      ]])
    """
    return _pairwise(_pairwise_block, "kl_pairwise", P, Q, base, normalize, check)


def _pairwise(block_fn: Any, func: str, P: object, Q: object, base: float | None,
              normalize: bool, check: bool) -> da.Array:
    """The (m, k) matrix of ``block_fn`` over every pair of row blocks of P and Q."""
    normalize, check = flag(normalize, "normalize", func), flag(check, "check", func)
    same = Q is None
    p = _as_matrix_input(P, "P", func)
    q = p if same else _as_matrix_input(Q, "Q", func)
    _check_row_lengths(p.shape, q.shape, func)
    base = _resolve_base(base, func)
    dtype = result_dtype(p, q)
    checks = dict(caller=func, check=bool(check), normalize=bool(normalize))
    p = da.map_blocks(_checked_rows, p, matrix="P", meta=p._meta, **checks)
    q = p if same else da.map_blocks(_checked_rows, q, matrix="Q", meta=q._meta, **checks)
    return da.blockwise(
        block_fn, "ij", p, "in", q, "jn", dtype=dtype, concatenate=True,
        meta=np.empty((0, 0), dtype=dtype), base=base, normalize=bool(normalize),
    )


def _js_pairwise_block(pb: np.ndarray, qb: np.ndarray, *, base: float | None,
                       normalize: bool) -> np.ndarray:
    from ._pairwise import js_pairwise as _js_pairwise

    return _js_pairwise(pb, qb, base=base, normalize=normalize, num_threads=1, check=False)


def js_pairwise(P: da.Array | npt.ArrayLike, Q: da.Array | npt.ArrayLike | None = None, *,
                base: float | None = None, normalize: bool = False,
                check: bool = True) -> da.Array:
    """All-pairs Jensen-Shannon matrix, lazily over blocks of rows: every pair of
    row blocks is one in-memory :func:`kl_fast.js_pairwise` call, so each entry
    equals ``js_div(P[i], Q[j])`` bit for bit; errors as :func:`kl_pairwise`.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import kl_fast.dask
    >>> P = da.from_array(np.array([[1.0, 0.0], [0.0, 1.0]]), chunks=(1, 2))
    >>> kl_fast.dask.js_pairwise(P, base=2).compute(scheduler="threads")
    array([[0., 1.],
           [1., 0.]])
    """
    return _pairwise(_js_pairwise_block, "js_pairwise", P, Q, base, normalize, check)


# ---- kl_topk: partial top-k per pair of blocks, one merge per row block ------------

def _topk_block(pb: np.ndarray, qb: np.ndarray, start: np.ndarray, *, k: int, divergence: Any,
                normalize: bool, base: float | None) -> np.ndarray:
    """(mb, 1, k, 2): the block pair's top k (value, global index of Q's row;
    ``start`` holds the index of the block's first row), padded with (inf, inf)
    where Q's block has fewer than k rows ((-inf, inf) with a base below 1,
    whose values descend)."""
    from ._topk import descends, kl_topk as _kl_topk

    j0 = int(start[0])
    kb = min(k, qb.shape[0])
    v, i = _kl_topk(pb, qb, kb, divergence=divergence, normalize=normalize, base=base,
                    num_threads=1, check=False)
    out = np.full((pb.shape[0], 1, k, 2), np.inf)
    if descends(base):
        out[:, 0, kb:, 0] = -np.inf
    out[:, 0, :kb, 0] = v
    out[:, 0, :kb, 1] = i + j0
    return out


def _topk_merge(parts: np.ndarray, *, k: int, base: float | None) -> np.ndarray:
    """(mb, 1, k, 2) of the k first (value, then index; the value descending
    with a base below 1) of a row block's partials."""
    from ._topk import descends, nearest_first

    flat = parts.reshape(parts.shape[0], parts.shape[1] * parts.shape[2], 2)   # also for no rows
    key = nearest_first(flat[..., 0], descends(base))
    order = np.lexsort((flat[..., 1], key), axis=1)[:, :k]
    return np.take_along_axis(flat, order[..., None], axis=1)[:, None]


def kl_topk(P: da.Array | npt.ArrayLike, Q: da.Array | npt.ArrayLike, k: int, *,
            divergence: Literal["kl", "js", "kl_reverse"] = "kl", normalize: bool = False,
            base: float | None = None, check: bool = True) -> tuple[da.Array, da.Array]:
    """:func:`kl_fast.kl_topk` over row blocks of P and Q, lazily.

    Every pair of a row block of P and a row block of Q gives its partial top k
    (one in-memory ``kl_topk`` call, on the worker holding the blocks), and the
    partials of each row block of P are merged once: memory per task is that
    of one block pair, and the (m, k_total) matrix is never formed.  Values,
    order and ties are those of the in-memory function.

    Returns
    -------
    (values, indices) : dask.array.Array, shape (m, k)
        Chunked like P's rows; values float32 when P and Q are float32.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import kl_fast.dask
    >>> P = da.from_array(np.array([[0.5, 0.5], [0.9, 0.1]]), chunks=(1, 2))
    >>> Q = da.from_array(np.array([[0.8, 0.2], [0.5, 0.5], [0.6, 0.4]]), chunks=(2, 2))
    >>> v, i = kl_fast.dask.kl_topk(P, Q, 2)
    >>> i.compute(scheduler="threads")
    array([[1, 2],
           [0, 2]])
    """
    from ._topk import _check_divergence, _check_k, require_candidates

    func = "kl_topk"
    normalize, check = flag(normalize, "normalize", func), flag(check, "check", func)
    _check_divergence(divergence, func)
    require_candidates(Q, func)
    p = _as_matrix_input(P, "P", func)
    q = _as_matrix_input(Q, "Q", func)
    _check_row_lengths(p.shape, q.shape, func)
    kk = _check_k(k, q.shape[0], func)
    base = _resolve_base(base, func)
    dtype = result_dtype(p, q)
    checks = dict(caller=func, check=bool(check), normalize=bool(normalize))
    p = da.map_blocks(_checked_rows, p, matrix="P", meta=p._meta, **checks)
    q = da.map_blocks(_checked_rows, q, matrix="Q", meta=q._meta, **checks)
    if kk == 0:
        return (da.zeros((p.shape[0], 0), chunks=(p.chunks[0], 0), dtype=dtype),
                da.zeros((p.shape[0], 0), chunks=(p.chunks[0], 0), dtype=np.intp))
    starts = da.from_array(np.cumsum((0,) + q.chunks[0][:-1]), chunks=((1,) * q.numblocks[0],))
    parts = da.blockwise(
        _topk_block, "ijkv", p, "in", q, "jn", starts, "j", dtype=np.float64, concatenate=True,
        new_axes={"k": kk, "v": 2}, adjust_chunks={"j": 1}, align_arrays=False,
        meta=np.empty((0, 0, 0, 0)), k=kk, divergence=divergence,
        normalize=bool(normalize), base=base,
    )
    merged = parts.rechunk({1: -1}).map_blocks(_topk_merge, k=kk, base=base, chunks=(p.chunks[0], (1,),
                                               (kk,), (2,)), dtype=np.float64)
    values = merged[:, 0, :, 0].astype(dtype)
    indices = merged[:, 0, :, 1].astype(np.intp)
    return values, indices


# ---- fit_gaussian: every row of P fitted on its own, block by block ----------------

def _gaussian_block(pb: np.ndarray, mub: np.ndarray, sigmab: np.ndarray, *, x: np.ndarray,
                    normalize: bool, want_grad: bool,
                    block_info: _BlockInfo = None) -> np.ndarray:
    """gaussian_kl(_grad) of a block of rows at its block of parameters, stacked
    along a last axis (1 or 3 values), errors indexed in the whole batch."""
    from .gaussian import gaussian_kl as _gkl, gaussian_kl_grad as _gkl_grad

    func = "gaussian_kl_grad" if want_grad else "gaussian_kl"
    try:
        if want_grad:
            out = np.stack(np.broadcast_arrays(*_gkl_grad(pb, x, mub[..., 0], sigmab[..., 0],
                                                          normalize=normalize, num_threads=1)),
                           axis=-1)
        else:
            out = np.asarray(_gkl(pb, x, mub[..., 0], sigmab[..., 0], normalize=normalize,
                                  num_threads=1))[..., None]
    except ValueError as exc:
        batch = _starts(block_info[0]["array-location"][:-1], 0)
        raise _shifted(exc, {"p": batch + (0,), None: batch, "mu": batch, "sigma": batch},
                       batch) from None
    return np.broadcast_to(out, pb.shape[:-1] + out.shape[-1:])


def _gaussian_eval(P: object, x: npt.ArrayLike, mu: Any, sigma: Any, normalize: bool,
                   want_grad: bool) -> Any:
    func = "gaussian_kl_grad" if want_grad else "gaussian_kl"
    normalize = flag(normalize, "normalize", func)
    p = _as_input(P, "p", func)
    x_np = as_real_array(x, "x", func)
    _check_grid_shapes(p.shape, x_np.shape, func)
    params = []
    for v, name in ((mu, "mu"), (sigma, "sigma")):
        if not isinstance(v, da.Array):
            v = _gaussian_param(v, name, func, positive=name == "sigma")
        params.append(v)
    try:
        shape = np.broadcast_shapes(p.shape[:-1], params[0].shape, params[1].shape)
    except ValueError:
        raise ValueError(f"{func}: the batch shapes of p {p.shape[:-1]} (its shape without the "
                         f"grid axis), mu {params[0].shape} and sigma {params[1].shape} do not "
                         f"broadcast together") from None
    n = p.shape[-1]
    p = da.broadcast_to(_to_dask(p, None), shape + (n,))
    p = p.rechunk({len(shape): -1})
    chunks = p.chunks[:-1]
    params = [da.broadcast_to(_to_dask(v, None), shape).rechunk(chunks)[..., None]
              for v in params]
    # the grid is checked now, on an empty batch
    (_gaussian_kl_grad if want_grad else _gaussian_kl)(np.empty((0, n)), x_np, 0.0, 1.0)
    k = 3 if want_grad else 1
    out = da.map_blocks(
        _gaussian_block, p, *params, chunks=chunks + ((k,),), dtype=np.float64,
        meta=np.empty((0,) * (len(shape) + 1)), x=x_np, normalize=bool(normalize),
        want_grad=want_grad,
    )
    if want_grad:
        return out[..., 0], out[..., 1], out[..., 2]
    return out[..., 0]


def gaussian_kl(P: da.Array | npt.ArrayLike, x: npt.ArrayLike, mu: Any, sigma: Any, *,
                normalize: bool = False) -> da.Array:
    """:func:`kl_fast.gaussian_kl` lazily: rows of P (the grid axis whole in each
    block) against mu and sigma broadcast with P's batch shape (scalars, arrays or
    Dask arrays); the in-memory values, errors with the whole-batch index.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import kl_fast.dask
    >>> x = np.linspace(-10, 10, 2001)
    >>> P = da.from_array(np.exp(-x**2 / 8)[None].repeat(3, 0), chunks=(2, 2001))
    >>> kl_fast.dask.gaussian_kl(P, x, [0.0, 1.0, 2.0], 2.0, normalize=True).compute().round(4)
    array([0.   , 0.125, 0.5  ])
    """
    out: da.Array = _gaussian_eval(P, x, mu, sigma, normalize, False)
    return out


def gaussian_kl_grad(P: da.Array | npt.ArrayLike, x: npt.ArrayLike, mu: Any, sigma: Any, *,
                     normalize: bool = False) -> tuple[da.Array, da.Array, da.Array]:
    """:func:`kl_fast.gaussian_kl_grad` lazily: (kl, d_mu, d_sigma) as Dask arrays of the
    broadcast batch shape; see :func:`gaussian_kl`."""
    out: tuple[da.Array, da.Array, da.Array] = _gaussian_eval(P, x, mu, sigma, normalize, True)
    return out


class GaussianFitArrays(NamedTuple):
    """Lazy results of :func:`fit_gaussian`: Dask arrays of P's batch shape."""

    mu: da.Array
    sigma: da.Array
    kl: da.Array
    nit: da.Array        # Newton steps or epochs taken (int)
    converged: da.Array  # bool: the fit converged (FitStatus CONVERGED or RESOLVED)


class _FitOptions(TypedDict):
    """The options of fit_gaussian that every block's call shares."""

    method: Literal["newton", "gd"]
    parametrization: Literal["sigma", "variance"]
    lr: float
    epochs: int
    tol: float
    max_iter: int
    normalize: bool


def _fit_block(pb: np.ndarray, mu0: Any, sigma0: Any, *, x: np.ndarray,
               options: _FitOptions, block_info: _BlockInfo = None) -> np.ndarray:
    """(mu, sigma, kl) of every row of a block, stacked along a last axis of 3."""
    starts = [a[..., 0] if isinstance(a, np.ndarray) and a.ndim else a for a in (mu0, sigma0)]
    try:
        fit = _fit_gaussian(pb, x, mu0=starts[0], sigma0=starts[1], history=False,
                            num_threads=1, **options)
    except ValueError:
        # The same checks again, placed in the whole array; anything else as raised.
        origin = _starts(block_info[0]["array-location"][:-1], 0)
        _gaussian_prepare(pb, x, "fit_gaussian", options["normalize"], 1, origin=origin)
        raise
    return np.stack([np.asarray(fit.mu), np.asarray(fit.sigma), np.asarray(fit.kl),
                     np.asarray(fit.nit, dtype=np.float64),
                     np.asarray(fit.converged, dtype=np.float64)], axis=-1)


def _start_blocks(value: Any, name: str, batch_shape: tuple[int, ...],
                  batch_chunks: tuple[tuple[int, ...], ...], func: str) -> object:
    """A start value as given when None or a scalar; else a Dask array shaped like the batch."""
    if value is None or np.ndim(value) == 0:
        return value
    a = _gaussian_start(value, None, name, func, batch_shape, positive=name == "sigma0")
    # a trailing size-one axis lines the blocks up with P's (whose last axis is the grid)
    return da.from_array(a.reshape(batch_shape + (1,)), chunks=batch_chunks + ((1,),))


def fit_gaussian(P: da.Array | npt.ArrayLike, x: npt.ArrayLike, *,
                 method: Literal["newton", "gd"] = "newton",
                 mu0: npt.ArrayLike | None = None, sigma0: npt.ArrayLike | None = None,
                 parametrization: Literal["sigma", "variance"] = "sigma", lr: float = 0.001,
                 epochs: int = 100, tol: float = 1e-9, max_iter: int = 50,
                 normalize: bool = False) -> GaussianFitArrays:
    """Fit the grid Gaussian to every row of P, lazily over P's row blocks.

    Each block is one in-memory :func:`kl_fast.fit_gaussian` call (on one
    thread), so the method, options and results are those of ``fit_gaussian``
    for each row.  The options are checked when this is called; a bad value in
    P raises, when computed, fit_gaussian's ValueError with the row's index in
    the whole array.

    Parameters
    ----------
    P : dask.array.Array or array_like, shape (..., n)
        Rows on the grid (the last axis, merged into one chunk if it is chunked).
    x : array_like, shape (n,)
        The grid.
    method, parametrization, lr, epochs, tol, max_iter, normalize
        As in :func:`kl_fast.fit_gaussian`.
    mu0, sigma0 : float or array_like, optional
        Starts: a scalar, or an array broadcasting to P's batch shape.

    Returns
    -------
    GaussianFitArrays
        Named tuple (mu, sigma, kl, nit, converged) of Dask arrays of P's batch shape,
        chunked like P's batch axes.  They share one graph: compute them
        together (``dask.compute(*fit)``) to fit each block once.

    Examples
    --------
    >>> import dask
    >>> import dask.array as da
    >>> import numpy as np
    >>> import kl_fast.dask
    >>> x = np.linspace(-10, 10, 2001)
    >>> rows = np.exp(-(x - np.array([[0.5], [1.0], [-2.0]])) ** 2 / 8)
    >>> fit = kl_fast.dask.fit_gaussian(da.from_array(rows, chunks=(2, 2001)), x)
    >>> mu, sigma, kl, nit, converged = dask.compute(*fit, scheduler="threads")
    >>> mu.round(6), sigma.round(6)
    (array([ 0.5,  1. , -2. ]), array([2., 2., 2.]))
    >>> converged
    array([ True,  True,  True])
    """
    func = "fit_gaussian"
    normalize = flag(normalize, "normalize", func)
    p = _as_input(P, "p", func)
    x_np = as_real_array(x, "x", func)
    _check_grid_shapes(p.shape, x_np.shape, func)
    if not isinstance(p, da.Array):
        p = da.from_array(p, chunks=("auto",) * (p.ndim - 1) + (-1,))
    # The options, x's values and scalar starts are checked now, on an empty batch.
    scalar = [v if v is None or np.ndim(v) == 0 else None for v in (mu0, sigma0)]
    options: _FitOptions = dict(method=method, parametrization=parametrization, lr=lr,
                                epochs=epochs, tol=tol, max_iter=max_iter,
                                normalize=bool(normalize))
    # an option the method does not use is warned about here (at the caller's line),
    # once, and the blocks get its default
    _fit_options(method, parametrization, lr, tol, epochs, max_iter, func)
    if method == "newton":
        options["lr"], options["epochs"] = _METHOD_DEFAULTS["lr"], int(_METHOD_DEFAULTS["epochs"])
    else:
        options["max_iter"] = int(_METHOD_DEFAULTS["max_iter"])
    _fit_gaussian(np.empty((0, p.shape[-1]), dtype=p.dtype), x_np, mu0=scalar[0],
                  sigma0=scalar[1], history=False, **options)
    if p.numblocks[-1] != 1:
        p = p.rechunk({p.ndim - 1: -1})
    batch_shape, batch_chunks = p.shape[:-1], p.chunks[:-1]
    starts = [_start_blocks(v, name, batch_shape, batch_chunks, func)
              for v, name in ((mu0, "mu0"), (sigma0, "sigma0"))]
    out = da.map_blocks(
        _fit_block, p, *starts, chunks=batch_chunks + ((5,),), meta=np.empty((0,) * p.ndim),
        x=x_np, options=options,
    )
    return GaussianFitArrays(out[..., 0], out[..., 1], out[..., 2], out[..., 3].astype(np.intp),
                             out[..., 4].astype(bool))
