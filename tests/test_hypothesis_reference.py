"""Every public function against kl_fast.reference, driven by hypothesis.

Random shapes (broadcast pairs, empty and 0-d arrays, long rows that fill the
kernels' vector blocks), dtypes (float64, float32, float16, integers, bool),
memory layouts (C, Fortran, negative strides, strided slices, stride-0
broadcasts, unaligned buffers from ``np.frombuffer`` at an offset of 1-7
bytes, byte-swapped, Python lists), options (axis int / tuple / None,
keepdims, base, dx, normalize, out=, num_threads, check) and special values
(zeros and -0.0 in p and q, subnormals, tiny and huge finite values; NaN,
infinities and negative values, which must raise ValueError).

Each value is checked three ways:

* against an independent near-exact value (``exact``): the same formula in
  long double, with log(p) - log(q) in place of log(p / q) so that no ratio
  over- or underflows.  Tolerances are relative to an error *scale* that
  bounds the condition of the sum (see ``oracle_kl``), never to the result
  alone, because the terms cancel;
* against the reference, wherever the reference itself is within tolerance
  of the exact value.  Where it is not (p / q overflowing to inf, an
  underflowed q in the explicit Gaussian, ...) DESIGN.md asks kl_fast to be
  "at least as close to the exact sum as the NumPy baseline", which the
  first check enforces;
* infinities: where the exact value is infinite (p > 0 where q == 0) the
  result is that infinity; where it is finite the result is finite, except
  when the sum of |terms| itself exceeds the dtype's range (``overflow
  zone``), where an infinity is accepted.  NaN is never accepted.

With normalize=True an element whose share of its sum is below the smallest
subnormal is 0 once divided; there the value of "divide first, then the
formula" is accepted as well as the exact one (see oracle_kl).

Library bugs this suite found are kept as minimal reproducers at the end of
the file, marked xfail(strict=True); the property tests skip the value check
only inside each bug's region (KNOWN_BUG_*, KNOWN_WARNINGS), recording a
hypothesis event, and check everything else there (shape, dtype, inputs).

Result dtype and shape must be the reference's (which follows NumPy: 0-d
results are scalars), inputs must come back unmodified, ``out=`` must
receive exactly the value returned without it, and the result must not
depend on ``num_threads``.
"""
import math
import re
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import kl_fast
from kl_fast import reference

LD = np.longdouble
if np.finfo(LD).nmant < 60:  # the oracle needs x87 extended precision (or better)
    pytest.skip("long double is not wider than double on this platform", allow_module_level=True)

FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LIGHT = settings(FAST, max_examples=60)
SLOW = settings(FAST, max_examples=200)
SLOW_HEAVY = settings(FAST, max_examples=50)  # 36-40 x 36-40 matrices of 110-140 columns

# Tolerances, relative to the error scale of each result (see oracle_kl):
# float64: every term is p * log(r) with r correctly rounded (|error| <= eps * p)
# and a log accurate to about an ulp; sums of up to a few thousand terms add
# n * eps relative at worst.  1e-12 leaves a margin of ~100 over that.
# float32: the reference computes in float32 (ratio, log, product and a
# pairwise sum: a few eps32 * log2(n), eps32 = 1.2e-7); kl_fast's float32
# kernel has ~3 eps32 per term.  1e-5 leaves a margin of ~10.
RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}
# kl_pairwise's product form (large inputs) guarantees a relative error below
# 2**-24 on every entry it does not recompute with the row kernel (docstring).
PRODUCT_FORM_RTOL = 2.0 ** -24

NUMERIC_DTYPES = [np.float16, np.int8, np.uint8, np.int16, np.int32, np.int64, np.uint64, np.bool_]


# ---- value strategies ---------------------------------------------------------------
#
# A category is (lo, hi, how): "const" (lo itself), "log" (log-uniform in
# [lo, hi], positive bounds) or "lin" (uniform).  The same table drives the
# hypothesis element strategies (small arrays, which hypothesis shrinks) and a
# NumPy generator seeded by hypothesis (long rows, where drawing every element
# would be slow), into which hypothesis then writes a few elements of its own.

def _f(dtype, x):
    """x rounded to dtype, as a Python float (hypothesis wants exact bounds)."""
    return float(np.dtype(dtype).type(x))


def _categories(kind, regime, dtype):
    """Value categories of a regime: "moderate" (zeros and ordinary values),
    "wide" (everything finite, mixed), "tiny" (zeros and values near or below
    the normal range only: sums that are themselves tiny), "subnormal" (zeros
    and subnormals only) and "huge" (zeros and values near the top of the
    range: sums that overflow).  For log-probabilities the same words mean the
    probabilities exp(x)."""
    dt = np.dtype(dtype)
    if kind == "prob":
        if dt == np.float64:
            zeros = [(0.0, 0, "const"), (-0.0, 0, "const")]
            sub = [(5e-324, 2.2250738585072014e-308, "log")]
            tiny = [(1e-300, 1e-30, "log")]
            mid = [(1e-6, 1e3, "log")]
            huge = [(1e30, 1e300, "log"), (1e300, 1.7976931348623157e308, "log")]
        elif dt == np.float32:
            zeros = [(0.0, 0, "const"), (-0.0, 0, "const")]
            sub = [(_f(dt, 1.401298464324817e-45), _f(dt, 1.1754942e-38), "log")]
            tiny = [(_f(dt, 1e-37), _f(dt, 1e-10), "log")]
            mid = [(_f(dt, 1e-6), _f(dt, 1e3), "log")]
            huge = [(_f(dt, 1e10), _f(dt, 1e37), "log"), (_f(dt, 1e37), float(np.finfo(dt).max), "log")]
        else:  # float16
            zeros = [(0.0, 0, "const"), (-0.0, 0, "const")]
            sub = [(_f(dt, 6e-8), _f(dt, 6e-5), "log")]
            tiny = [(_f(dt, 1e-4), _f(dt, 1e-2), "log")]
            mid = [(_f(dt, 1e-3), _f(dt, 1e3), "log")]
            huge = [(_f(dt, 1e4), float(np.finfo(dt).max), "log")]
    else:  # log-probabilities: -inf is a zero probability
        zeros = [(-np.inf, 0, "const")]
        if dt == np.float64:
            sub = [(-1e300, -1e5, "lin"), (-1e4, -700.0, "lin")]   # exp underflows
            tiny = [(-1e-300, 1e-300, "lin")]                       # probability ~ 1
            mid = [(-50.0, 5.0, "lin")]
            huge = [(700.0, 800.0, "lin")]                          # exp overflows
        elif dt == np.float32:
            sub = [(_f(dt, -3e38), _f(dt, -1e5), "lin"), (_f(dt, -1e4), _f(dt, -104.0), "lin")]
            tiny = [(_f(dt, -1e-30), _f(dt, 1e-30), "lin")]
            mid = [(-50.0, 5.0, "lin")]
            huge = [(88.0, 100.0, "lin")]
        else:
            sub = [(-6e4, -20.0, "lin")]
            tiny = [(_f(dt, -1e-3), _f(dt, 1e-3), "lin")]
            mid = [(-20.0, 5.0, "lin")]
            huge = [(10.0, 12.0, "lin")]
    return {"moderate": zeros[:1] + mid, "wide": zeros + sub + tiny + mid + huge,
            "finite": zeros + sub + tiny + mid,  # wide without the huge values
            "tiny": zeros + sub + tiny, "subnormal": zeros + sub, "huge": zeros[:1] + huge}[regime]


def _int_range(kind, regime, dtype):
    info = np.iinfo(dtype)
    if kind == "log":
        return max(info.min, -50), 5
    return 0, (int(info.max) if regime in ("wide", "huge") else min(int(info.max), 1000))


def element_strategy(kind, regime, dtype):
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return st.booleans()
    if dt.kind in "iu":
        return st.integers(*_int_range(kind, regime, dt))
    width = 8 * dt.itemsize
    parts = []
    for lo, hi, how in _categories(kind, regime, dt):
        if how == "const":
            parts.append(st.just(lo))
        else:
            parts.append(st.floats(lo, hi, width=width))
    return st.one_of(parts)


def bulk_values(seed, shape, kind, regime, dtype):
    """Values for a long array: each element from a random category."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return rng.random(shape) < 0.7
    if dt.kind in "iu":
        lo, hi = _int_range(kind, regime, dt)
        return rng.integers(lo, hi, size=shape, dtype=dt, endpoint=True)
    cats = _categories(kind, regime, dt)
    which = rng.integers(0, len(cats), size=shape)
    out = np.empty(shape, dtype=np.float64)
    for i, (lo, hi, how) in enumerate(cats):
        sel = which == i
        k = int(sel.sum())
        if how == "const":
            out[sel] = lo
        elif how == "log":
            out[sel] = np.exp(rng.uniform(np.log(lo), np.log(hi), size=k))
        else:
            out[sel] = rng.uniform(lo, hi, size=k)
        out[sel] = np.clip(out[sel], lo, hi) if how != "const" else out[sel]
    with np.errstate(over="ignore"):
        res = out.astype(dt)
    # rounding to a narrower type may leave a range: pull it back in
    return np.where(np.isinf(res) & np.isfinite(out), np.finfo(dt).max * np.sign(out), res).astype(dt)


SMALL = 48  # arrays up to this many elements are drawn element by element


# "scaled": moderate values times 2**k (a shift by k for log-probabilities),
# with k anywhere in the dtype's range: sums that underflow into the
# subnormals or overflow, with ordinary ratios between the elements.
# (whole range, band where the moderate values [2**-20, 2**10] become subnormal,
#  band where their sums overflow)
SCALE_EXPONENTS = {np.dtype(np.float64): ((-1090, 1012), (-1084, -1010), (990, 1012)),
                   np.dtype(np.float32): ((-160, 116), (-159, -100), (105, 116)),
                   np.dtype(np.float16): ((-30, 5), (-34, -10), (0, 5))}
LOG_SHIFTS = {np.dtype(np.float64): (-2000.0, 800.0), np.dtype(np.float32): (-200.0, 100.0),
              np.dtype(np.float16): (-20.0, 10.0)}


@st.composite
def values_of(draw, shape, kind, regime, dtype):
    dt = np.dtype(dtype)
    if regime == "scaled":
        a = draw(values_of(shape, kind, "moderate", dtype))
        if dt.kind != "f":
            return a
        with np.errstate(over="ignore", under="ignore"):
            if kind == "prob":
                k = draw(st.one_of([st.integers(*r) for r in SCALE_EXPONENTS[dt]]))
                return (a.astype(np.float64) * 2.0 ** k).astype(dt)
            shift = draw(st.floats(*LOG_SHIFTS[dt]))
            return (a.astype(np.float64) + shift).astype(dt)
    size = math.prod(shape)
    elements = element_strategy(kind, regime, dtype)
    if size <= SMALL:
        return draw(hnp.arrays(dtype, shape, elements=elements, fill=st.nothing()))
    a = bulk_values(draw(st.integers(0, 2**32 - 1)), shape, kind, regime, dtype)
    flat = a.reshape(-1)
    for _ in range(draw(st.integers(0, 6))):
        flat[draw(st.integers(0, size - 1))] = draw(elements)
    return a


# ---- memory layouts ---------------------------------------------------------------------

SENTINEL = {"f": np.nan, "i": -3, "u": 3, "b": True}  # fills what a strided view skips


def _snapshot(owner):
    if isinstance(owner, (bytes, bytearray)):
        return bytes(owner)
    if isinstance(owner, list):
        return repr(owner)
    return np.asarray(owner).tobytes()


class Laid:
    """One input: ``arg`` is passed to kl_fast, ``values`` (a native, contiguous
    copy of the same values) to the reference and the oracle."""

    def __init__(self, arg, owner, layout):
        self.arg = arg
        self.layout = layout
        a = np.asarray(arg)
        self.dtype = a.dtype
        self.values = np.array(a, dtype=a.dtype.newbyteorder("="), order="C")  # keeps 0-d
        self._owner = owner
        self._before = _snapshot(owner)

    def unchanged(self):
        return _snapshot(self._owner) == self._before

    def __repr__(self):
        return f"Laid({self.layout}, {self.dtype}, shape {self.values.shape}: {self.values!r})"


LAYOUTS = ["C", "F", "reversed", "strided", "unaligned", "byteswapped", "list"]


@st.composite
def laid_out(draw, a):
    """``a`` (C-contiguous, native) in a drawn memory layout, same values."""
    kind = draw(st.sampled_from(LAYOUTS))
    if kind == "list" and not 0 < a.size <= SMALL:  # an empty list loses the shape
        kind = "C"
    if kind in ("unaligned", "byteswapped") and (a.size == 0 or a.dtype.itemsize == 1):
        kind = "C"
    if kind == "C":
        v = a.copy()
        return Laid(v, v, kind)
    if kind == "F":
        v = np.asfortranarray(a) if a.ndim else a.copy()  # asfortranarray makes 0-d 1-d
        return Laid(v, v, kind)
    if kind == "reversed":
        axes = tuple(ax for ax in range(a.ndim) if draw(st.booleans())) or None
        b = np.flip(a, axes).copy()
        return Laid(np.flip(b, axes), b, kind)
    if kind == "strided":
        steps = [draw(st.integers(2, 3)) for _ in range(a.ndim)]
        offsets = [draw(st.integers(0, 2)) for _ in range(a.ndim)]
        big = np.full(tuple(s * n + o + 1 for s, n, o in zip(steps, a.shape, offsets)),
                      SENTINEL[a.dtype.kind], dtype=a.dtype)
        idx = tuple(slice(o, o + s * n, s) for s, n, o in zip(steps, a.shape, offsets)) + (...,)
        big[idx] = a
        return Laid(big[idx], big, kind)
    if kind == "unaligned":
        offset = draw(st.integers(1, 7))
        order = draw(st.sampled_from("CF"))
        raw = b"\0" * offset + a.tobytes(order=order)
        v = np.frombuffer(raw, dtype=a.dtype, count=a.size, offset=offset).reshape(a.shape, order=order)
        if offset % a.dtype.itemsize:
            assert not v.flags.aligned
        return Laid(v, raw, f"unaligned+{offset}{order}")
    if kind == "byteswapped":
        v = a.astype(a.dtype.newbyteorder())
        return Laid(v, v, kind)
    v = a.tolist()
    return Laid(v, v, kind)


@st.composite
def laid_arrays(draw, shape, kind, regime, dtype, stride0=True, mutate=None):
    """An input of ``shape``; sometimes a stride-0 broadcast of a smaller array.
    ``mutate(draw, values)`` edits the values before they are laid out."""
    small = shape
    if stride0 and len(shape) and draw(st.integers(0, 5)) == 0:
        small = tuple(1 if draw(st.booleans()) else s for s in shape)
    a = draw(values_of(small, kind, regime, dtype))
    if mutate is not None:
        a = mutate(draw, a)
    laid = draw(laid_out(a))
    if small != shape:
        arg = np.broadcast_to(laid.arg, shape)
        bc = Laid(arg, laid._owner, f"stride0 of {laid.layout}")
        bc._before = laid._before
        return bc
    return laid


REGIMES = st.sampled_from(["moderate", "moderate", "wide", "wide", "tiny", "subnormal", "huge",
                           "scaled", "scaled"])


def float_or_other_dtype():
    return st.one_of(st.sampled_from([np.float64, np.float32]),
                     st.sampled_from([np.float64, np.float32] + NUMERIC_DTYPES))


def result_dtype(*laid):
    """float32 when every input is float32 (either byte order), else float64."""
    f32 = all(x.dtype.kind == "f" and x.dtype.itemsize == 4 for x in laid)
    return np.dtype(np.float32 if f32 else np.float64)


# ---- shapes and options -------------------------------------------------------------------

@st.composite
def pair_shapes(draw, long=False):
    if long or draw(st.integers(0, 4)) == 0:
        # rows long enough for the kernels' vector blocks (8 lanes, blocks of 256 / 1024)
        n = draw(st.integers(8, 2500 if long else 300))
        lead = tuple(draw(st.lists(st.integers(1, 3), max_size=1)))
        full = lead + (n,)
        q_shape = draw(st.sampled_from([full, (n,)]))
        return (full, q_shape) if draw(st.booleans()) else (q_shape, full)
    b = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3,
                                               min_side=0, max_side=6))
    return b.input_shapes


@st.composite
def axes_for(draw, ndim):
    if ndim == 0:
        return draw(st.sampled_from([None, -1, ()]))
    how = draw(st.sampled_from(["last", "none", "int", "tuple"]))
    if how == "last":
        return -1
    if how == "none":
        return None
    if how == "int":
        return draw(st.integers(-ndim, ndim - 1))
    axes = draw(st.lists(st.integers(0, ndim - 1), unique=True, max_size=ndim))
    return tuple(ax - ndim if draw(st.booleans()) else ax for ax in axes)


BASES = [None, None, 2.0, math.e, 10.0, 0.5, 1.5, 1000.0]
DXS = [1e-3, 0.25, 3.0, 1e10]
OUT_KINDS = [None, None, "C", "F", "strided", "unaligned"]
OUT_DTYPES = ["result", "float64", "float32", "longdouble"]


class PairCase:
    def __init__(self, **kw):
        self.__dict__.update(kw)

    def __repr__(self):
        return "PairCase(" + ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items()) + ")"


@st.composite
def pair_cases(draw, kind, long=False, with_dx=True, regimes=REGIMES, normalize=st.booleans(),
               dtypes=None):
    p_shape, q_shape = draw(pair_shapes(long=long))
    regime = draw(regimes)
    dtypes = float_or_other_dtype() if dtypes is None else dtypes
    dp = draw(dtypes)
    dq = dp if draw(st.booleans()) else draw(dtypes)
    if kind == "log":  # integer log-probabilities are fine, but bool is 0/1 only
        dp, dq = (np.float64 if d is np.bool_ else d for d in (dp, dq))
    p = draw(laid_arrays(p_shape, kind, regime, dp))
    q = draw(laid_arrays(q_shape, kind, draw(regimes) if draw(st.booleans()) else regime, dq))
    ndim = max(len(p_shape), len(q_shape))
    return PairCase(
        p=p, q=q, regime=regime, axis=draw(axes_for(ndim)), keepdims=draw(st.booleans()),
        base=draw(st.sampled_from(BASES)), normalize=draw(normalize),
        # dx is exclusive with normalize (both: ValueError); drawn now and then
        dx=draw(st.sampled_from(DXS)) if with_dx and draw(st.integers(0, 3)) == 0 else None,
        out=draw(st.sampled_from(OUT_KINDS)), out_dtype=draw(st.sampled_from(OUT_DTYPES)),
        threads=draw(st.sampled_from([1, 2, 3])),
    )


# ---- oracles (long double) ----------------------------------------------------------------

def _reduce(a, axis, keepdims):
    return np.sum(a, axis=axis, keepdims=keepdims)


class Oracle:
    """exact: the near-exact value; scale: the error scale (tolerance = rtol *
    scale + atol); n: terms per result; span: the largest magnitude an
    evaluation meets on the way (the sum of |terms| before base and dx scale
    it): where that is beyond the dtype's range an infinity is acceptable."""

    def __init__(self, exact, scale, n, base=None, dx=None):
        span = scale
        if base is not None:
            lb = np.log(LD(base))
            exact, scale = exact / lb, scale / abs(lb)
        if dx is not None:
            exact, scale = exact * LD(dx), scale * LD(dx)
        self.exact = np.asarray(exact)
        self.scale = np.asarray(scale)
        self.span = np.maximum(np.asarray(span), self.scale)
        self.n = n


def oracle_kl(p, q, *, axis, keepdims, normalize, base, dx=None, p_dtype=np.float64):
    """The Oracle of KL(p || q) with kl_div's semantics.

    scale bounds the rounding error of any reasonable evaluation: each term's
    log(p/q) is good to about eps absolute (the ratio's rounding) plus eps
    relative, so its error is eps * p * (1 + |log(p/q)|); normalising adds
    eps * (|log(Q/P)| + 1) (kl / P + log(Q / P)).  n is the number of terms
    per result (for the absolute floor of subnormal terms).
    """
    p, q = np.broadcast_arrays(np.asarray(p, dtype=LD), np.asarray(q, dtype=LD))
    if p.ndim == 0:
        axis = None
    n = p.size // max(1, np.sum(np.zeros(p.shape, dtype=np.int8), axis=axis).size)
    with np.errstate(all="ignore"):
        extra = 0
        psum = _reduce(p, axis, keepdims)
        # normalize: an element whose share of its sum is below the smallest
        # subnormal (of the dtype, or of double, which float32 may be computed
        # in) is 0 once divided, as DESIGN's "divide p and q by their sums
        # first" has it in floating point; the exact value may differ (finite
        # <-> inf).  Either is accepted there: ``alternatives`` holds the
        # divided-first values.
        alternatives = []
        unrep = np.zeros(psum.shape, dtype=bool)
        if normalize:
            shares = [a / np.sum(a, axis=axis, keepdims=True) for a in (p, q)]
            for floor in sorted({LD(2.0 ** -1074), LD(np.finfo(p_dtype).smallest_subnormal)}):
                flushed = [np.where(sh < floor, 0, sh) for sh in shares]
                hit = np.zeros(psum.shape, dtype=bool)
                for a, sh in zip((p, q), shares):
                    hit |= np.any((a > 0) & (sh < floor), axis=axis, keepdims=keepdims)
                if hit.any():
                    unrep |= hit
                    fp, fq = flushed
                    alt = _reduce(np.where(fp > 0, fp * (np.log(fp) - np.log(fq)), 0), axis, keepdims)
                    alternatives.append(alt)
            P = np.sum(p, axis=axis, keepdims=True)
            Q = np.sum(q, axis=axis, keepdims=True)
            p, q = p / P, q / Q
            extra = _reduce(np.broadcast_to(np.abs(np.log(Q) - np.log(P)) + 1, P.shape),
                            axis, keepdims)
        lr = np.log(p) - np.log(q)          # q == 0 (or -0.0): +inf
        pos = p > 0
        terms = np.where(pos, p * lr, 0)
        size = np.where(pos & np.isfinite(lr), p * (1 + np.abs(lr)), 0)
        exact = _reduce(terms, axis, keepdims)
        scale = _reduce(size, axis, keepdims) + extra
    oracle = Oracle(exact, scale, n, base, dx)
    oracle.psum = np.asarray(psum)
    oracle.unrepresentable = np.asarray(unrep)
    oracle.alternatives = [Oracle(a, scale, n, base, dx).exact for a in alternatives]
    return oracle


def oracle_js(p, q, *, axis, keepdims, normalize, base):
    """The Oracle of JS(p, q): 0.5 KL(p || m) + 0.5 KL(q || m), m = (p + q) / 2.
    Every term is at most (p + q) log 2 in size and carries about eps * (p + q)."""
    p, q = np.broadcast_arrays(np.asarray(p, dtype=LD), np.asarray(q, dtype=LD))
    if p.ndim == 0:
        axis = None
    n = p.size // max(1, np.sum(np.zeros(p.shape, dtype=np.int8), axis=axis).size)
    with np.errstate(all="ignore"):
        psum, qsum = _reduce(p, axis, keepdims), _reduce(q, axis, keepdims)
        if normalize:
            p = p / np.sum(p, axis=axis, keepdims=True)
            q = q / np.sum(q, axis=axis, keepdims=True)
        lm = np.log((p + q) / 2)
        terms = 0.5 * (np.where(p > 0, p * (np.log(p) - lm), 0) + np.where(q > 0, q * (np.log(q) - lm), 0))
        exact = _reduce(terms, axis, keepdims)
        scale = _reduce(np.where(p > 0, p, 0) + np.where(q > 0, q, 0), axis, keepdims)
    oracle = Oracle(exact, scale, n, base)
    oracle.psum, oracle.qsum = np.asarray(psum), np.asarray(qsum)
    oracle.max_sum = np.maximum(oracle.psum, oracle.qsum)
    return oracle


def _logsumexp(x, axis):
    mx = np.max(x, axis=axis, keepdims=True)
    mx = np.where(np.isfinite(mx), mx, 0)
    return mx + np.log(np.sum(np.exp(x - mx), axis=axis, keepdims=True))


def oracle_kl_log(lp, lq, *, axis, keepdims, normalize, base):
    """The Oracle of sum exp(lp) (lp - lq); a term is 0 where lp == -inf and
    +inf where lq == -inf < lp.  Each term carries eps * exp(lp) * (1 + |lp| +
    |lq|) (the rounding of exp and of the difference).  Normalising subtracts
    log-sum-exps Lp, Lq, rounded to doubles: the difference gains eps * (|Lp| +
    |Lq|), and the weight exp(lp - Lp) a relative eps * (|lp| + |Lp|), which
    multiplies |lp' - lq'| (the rounding of the normaliser that
    test_kl_div_log.py's test_normalize_with_large_normalisers accepts)."""
    lp, lq = np.broadcast_arrays(np.asarray(lp, dtype=LD), np.asarray(lq, dtype=LD))
    if lp.ndim == 0:
        axis = None
    n = lp.size // max(1, np.sum(np.zeros(lp.shape, dtype=np.int8), axis=axis).size)
    with np.errstate(all="ignore"):
        mag = np.abs(np.where(np.isinf(lp), 0, lp)) + np.abs(np.where(np.isinf(lq), 0, lq))
        weight_err = 0
        if normalize:
            Lp = _logsumexp(lp, axis)
            Lq = _logsumexp(lq, axis)
            weight_err = np.abs(np.where(np.isinf(lp), 0, lp)) + np.abs(Lp)
            lp, lq = lp - Lp, lq - Lq
            mag = mag + np.abs(Lp) + np.abs(Lq)
        live = lp != -np.inf
        terms = np.where(live, np.where(lq == -np.inf, np.inf, np.exp(lp) * (lp - lq)), 0)
        size = np.where(live & (lq != -np.inf),
                        np.exp(lp) * (1 + mag + weight_err * np.abs(lp - lq)), 0)
        exact = _reduce(terms, axis, keepdims)
        scale = _reduce(size, axis, keepdims)
    return Oracle(exact, scale, n, base)


# ---- the comparison -----------------------------------------------------------------------

def call_reference(fn, *args, **kwargs):
    """The reference's result, or the ValueError it raises.  Its own arithmetic
    warnings (overflow in p / q, 0 * inf, ...) are not what is tested here."""
    with np.errstate(all="ignore"):
        try:
            return fn(*args, **kwargs)
        except ValueError as e:
            return e


def broadcast_pair(p, q):
    """p and q broadcast to one shape (as copies).  reference.js_div and
    reference.kl_div_log normalise each input along ``axis`` of its own shape
    (a lower-dimensional q is summed over the wrong axis, or AxisError);
    reference.kl_div, DESIGN.md and kl_fast sum over the broadcast shape.  The
    reference is given broadcast inputs, which agree with it otherwise."""
    if np.shape(p) == np.shape(q):
        return p, q
    return tuple(np.array(a) for a in np.broadcast_arrays(p, q))


# Known library bugs (see the strict xfail tests at the end of the file): for
# valid input whose divergence, or an internal partial sum, exceeds the range,
# NumPy RuntimeWarnings escape from kl_fast's Python layer while the values
# are right (inf, or the finite value).  The project's pytest configuration
# turns warnings into errors, so the suite below tolerates exactly these
# (call_lib) and fails on any other warning.
KNOWN_WARNINGS = {
    # float32 result beyond FLT_MAX: deliver()'s astype(float32) of the float64 value
    "overflow encountered in cast": "result overflow (test_known_bug_result_overflow_warns)",
    # the pairwise functions' res /= log(base) of a result beyond DBL_MAX
    "overflow encountered in divide": "result overflow (test_known_bug_result_overflow_warns)",
    # a reduction split into partial rows: combine_rows() adds them with np.sum
    "overflow encountered in reduce": "split reduction (test_known_bug_split_reduction_warns)",
}


# Known library bug (see test_known_bug_normalize_tiny_sum): with
# normalize=True, kl_div and kl_pairwise compute kl / P + log(Q / P) from the
# raw sum of p * log(p / q); when P, the sum of p, is subnormal (in the input
# dtype) those terms are subnormal too and carry an absolute error of about
# one subnormal unit each, which the division by P turns into a relative
# error of 1e-8 .. O(1).  The reference (p / P first) is accurate there.
KNOWN_BUG_TINY_SUM = "normalize=True with a subnormal sum of p (test_known_bug_normalize_tiny_sum)"


# Known library bug (see test_known_bug_normalize_overflowing_sum): with
# normalize=True, js_div, kl_pairwise and js_pairwise raise ValueError ("... sums
# to inf; it must sum to a positive finite value") for finite input whose sum
# exceeds DBL_MAX, although their docstrings make only a zero sum an error and
# kl_div rescales such input and returns the divergence; kl_pairwise, and
# kl_div for two 0-d inputs (the rescaling sits in the N-d branch), give inf
# where the raw sum of p log(p / q) overflows.
KNOWN_BUG_INF_SUM = "normalize=True with sums beyond DBL_MAX (test_known_bug_normalize_overflowing_sum)"
INF_SUM_REFUSAL = re.compile(r"normalize=True but .*sums to inf")


def refuses_inf_sum(fn, sums, *args, **kwargs):
    """True when fn refuses (ValueError) input whose sums overflow, the known
    bug; the call must otherwise succeed (the caller then makes it again)."""
    if not kwargs.get("normalize") or not np.any(np.asarray(sums) > LD(np.finfo(np.float64).max)):
        return False
    try:
        call_lib(fn, *args, **kwargs)
    except ValueError as e:
        assert INF_SUM_REFUSAL.search(str(e)), str(e)
        event(f"known bug: {KNOWN_BUG_INF_SUM}")
        return True
    return False


def tiny_sum_mask(psum, dtype, normalize):
    """The results inside KNOWN_BUG_TINY_SUM's region: P below the normal
    range of the inputs' dtype (float32 terms are float32 products)."""
    if not normalize:
        return None
    psum = np.asarray(psum)
    return (psum > 0) & (psum < LD(np.finfo(dtype).smallest_normal))


def call_lib(fn, *args, known_warnings=None, **kwargs):
    """fn(*args, **kwargs), failing on any warning but the known ones above
    (and ``known_warnings``, message -> bug, for this call)."""
    result = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = fn(*args, **kwargs)
        finally:
            _check_warnings(fn, caught, known_warnings, result)
    return result


def _check_warnings(fn, caught, known_warnings, result):
    for w in caught:
        msg = str(w.message)
        if known_warnings and msg in known_warnings:
            event(f"known bug: {known_warnings[msg]}")
            continue
        known = issubclass(w.category, RuntimeWarning) and msg in KNOWN_WARNINGS
        if known and msg in ("overflow encountered in cast", "overflow encountered in divide"):
            known = np.isinf(np.asarray(result)).any()  # only a genuine overflow to inf
        assert known, f"{fn.__name__} warned: {w.category.__name__}: {msg}"
        event(f"known bug: {KNOWN_WARNINGS[msg]}")


def lib_raises(exc, fn, *args, **kwargs):
    """The exception fn raises (it must), with call_lib's policy on warnings."""
    with pytest.raises(exc) as info:
        call_lib(fn, *args, **kwargs)
    return info.value


def assert_matches(got, ref, oracle, *, dtype, rtol, atol, what="", known=None, or_divided_first=None):
    """got (kl_fast) against the exact value and the reference; see the module
    docstring.  ``known``: (mask, bug) for results inside a known bug's region
    (see KNOWN_BUG_*), whose values are not checked here.  ``or_divided_first``:
    a mask where oracle.alternatives (the divided-first values) are as valid as
    the exact one (see oracle_kl's unrepresentable shares)."""
    exact, scale = oracle.exact, oracle.scale
    assert isinstance(got, np.ndarray) == isinstance(ref, np.ndarray), (what, type(got), type(ref))
    got, ref = np.asarray(got), np.asarray(ref)
    # NumPy before 2 promotes float32 scalars with Python floats to float64
    # (NEP 50 changed that): the reference's dtype is only the contract from 2.0
    if int(np.__version__.split(".")[0]) >= 2:
        assert ref.dtype == dtype, f"{what}: the reference gives {ref.dtype}, expected {dtype}"
    assert got.dtype == dtype, f"{what}: dtype {got.dtype}, the reference's is {dtype}"
    assert got.shape == ref.shape == exact.shape, (what, got.shape, ref.shape, exact.shape)
    in_bug = np.zeros(got.shape, dtype=bool)
    if known is not None and known[0] is not None:
        in_bug = np.broadcast_to(np.asarray(known[0], dtype=bool), got.shape)
    assert not np.isnan(got[~in_bug]).any(), f"{what}: NaN in {got!r} (exact {exact!r})"
    g = got.astype(LD)
    tol = rtol * scale + atol
    zone = oracle.span * (1 + rtol) + atol >= LD(np.finfo(dtype).max)  # sum |terms| out of range
    alt = np.zeros(got.shape, dtype=bool)
    if or_divided_first is not None and np.any(or_divided_first):
        for value in oracle.alternatives:
            with np.errstate(invalid="ignore"):
                alt |= np.broadcast_to(or_divided_first, got.shape) & (
                    (got.astype(LD) == value) | (np.abs(got.astype(LD) - value) <= rtol * scale + atol))
        if alt.any():
            event("normalized share below the range: the divided-first value")
    infinite = np.isinf(exact)
    # genuine infinities (mass of p where q == 0) are reproduced exactly
    sel = infinite & ~in_bug & ~alt
    assert np.array_equal(g[sel], exact[sel]), (what, got, exact)
    with np.errstate(invalid="ignore"):
        err = np.abs(g - exact)
        ref_ld = ref.astype(LD)
        ref_err = np.abs(ref_ld - exact)
    ref_ok = ~infinite & np.isfinite(ref_ld) & (ref_err <= tol)
    ok = infinite | (err <= tol) | (zone & np.isinf(g) & ~ref_ok) | alt
    if known is not None and known[0] is not None and np.any(known[0]):
        event(f"known bug: {known[1]}")
        ok |= known[0]
        ref_ok &= ~known[0]
    bad = ~ok
    assert not bad.any(), (
        f"{what}: off the exact value by more than the tolerance\n got   {got[bad]!r}\n"
        f" exact {exact[bad].astype(np.float64)!r}\n ref   {ref[bad]!r}\n"
        f" error {err[bad].astype(np.float64)!r}\n tol   {tol[bad].astype(np.float64)!r}")
    # where the reference is accurate, kl_fast is within the tolerance of it too
    with np.errstate(invalid="ignore"):
        near_ref = np.abs(g - ref_ld) <= 2 * tol
    assert near_ref[ref_ok].all(), (what, got, ref, exact)


def atol_for(dtype, n, base=None, dx=None):
    """Absolute floor: each of n terms may round to a multiple of the smallest
    subnormal (a product p * log(r) below the normal range), and so may the
    result itself after base and dx are applied."""
    tiny = LD(np.finfo(dtype).smallest_subnormal)
    a = LD(4 * (n + 1)) * tiny
    if base is not None:
        a /= abs(np.log(LD(base)))
    if dx is not None:
        a *= LD(dx)
    return a + 2 * tiny


def make_out(shape, dtype, kind, sample):
    """An out= array of ``shape`` in layout ``kind``; returns (out, check) where
    check() asserts that nothing around the out view was written."""
    if dtype == "result":
        dtype = sample.dtype
    elif dtype == "float32" and np.any(np.abs(np.asarray(sample, dtype=np.float64)[np.isfinite(sample)])
                                       > np.finfo(np.float32).max):
        dtype = np.float64  # a float32 out would overflow in the cast (a NumPy warning)
    dtype = np.dtype(dtype)
    fill = -7.0
    size = math.prod(shape)
    if kind == "F" and shape:
        o = np.asfortranarray(np.full(shape, fill, dtype))
        return o, lambda: None
    if kind == "strided":
        big = np.full(tuple(2 * s + 1 for s in shape), fill, dtype)
        idx = tuple(slice(1, 1 + 2 * s, 2) for s in shape) + (...,)  # a view even when 0-d
        view = big[idx]

        def check():
            mask = np.ones(big.shape, dtype=bool)
            mask[idx] = False
            assert np.all(big[mask] == fill), "out= wrote outside its view"
        return view, check
    if kind == "unaligned" and size:
        buf = bytearray(3 + size * dtype.itemsize)
        o = np.frombuffer(buf, dtype=dtype, count=size, offset=3).reshape(shape)
        o[...] = fill
        return o, lambda: None
    return np.full(shape, fill, dtype), lambda: None


def check_out_and_threads(fn, args, kwargs, got, case):
    """out= receives exactly the value returned without it; num_threads and
    check=False (on valid input) change nothing."""
    again = call_lib(fn, *args, num_threads=case.threads, **kwargs)
    assert np.asarray(again).tobytes() == np.asarray(got).tobytes(), "result depends on num_threads"
    unchecked = call_lib(fn, *args, check=False, **kwargs)
    np.testing.assert_array_equal(unchecked, got)
    if case.out is None:
        return
    shape = np.shape(got)
    out, check = make_out(shape, case.out_dtype, case.out, np.asarray(got))
    ret = call_lib(fn, *args, out=out, **kwargs)
    assert ret is out
    with np.errstate(over="ignore"):
        expected = np.asarray(got).astype(out.dtype)
    np.testing.assert_array_equal(out, expected)
    check()


def assert_unchanged(*laid):
    for x in laid:
        assert x.unchanged(), f"input modified: {x!r}"


# ---- kl_div ---------------------------------------------------------------------------------

def _kl_div_body(case):
    p, q = case.p, case.q
    kwargs = dict(axis=case.axis, keepdims=case.keepdims, base=case.base,
                  normalize=case.normalize, dx=case.dx)
    ref = call_reference(reference.kl_div, p.values, q.values, **kwargs)
    if isinstance(ref, ValueError):
        event("the reference raises ValueError")
        # bad sums for normalize=True, or normalize with dx: kl_fast refuses too
        lib_raises(ValueError, kl_fast.kl_div, p.arg, q.arg, **kwargs)
        assert_unchanged(p, q)
        return
    got = call_lib(kl_fast.kl_div, p.arg, q.arg, **kwargs)
    dtype = result_dtype(p, q)
    oracle = oracle_kl(p.values, q.values, p_dtype=dtype, **kwargs)
    known = (tiny_sum_mask(oracle.psum, dtype, case.normalize), KNOWN_BUG_TINY_SUM)
    if case.normalize and p.values.ndim == q.values.ndim == 0:
        raw = oracle_kl(p.values, q.values, axis=None, keepdims=False, normalize=False, base=None)
        if raw.span >= LD(np.finfo(np.float64).max) / 2:  # two scalars skip the rescaling
            known = (np.ones(oracle.exact.shape, dtype=bool), KNOWN_BUG_INF_SUM)
    assert_matches(got, ref, oracle, dtype=dtype, rtol=RTOL[dtype],
                   atol=atol_for(dtype, oracle.n, case.base, case.dx), what="kl_div",
                   known=known, or_divided_first=oracle.unrepresentable)
    check_out_and_threads(kl_fast.kl_div, (p.arg, q.arg), kwargs, got, case)
    assert_unchanged(p, q)


@FAST
@given(pair_cases("prob"))
def test_kl_div(case):
    _kl_div_body(case)


@pytest.mark.slow
@SLOW
@given(pair_cases("prob", long=True))
def test_kl_div_long_rows(case):
    _kl_div_body(case)


# ---- js_div ---------------------------------------------------------------------------------

def _js_div_body(case):
    p, q = case.p, case.q
    kwargs = dict(axis=case.axis, keepdims=case.keepdims, base=case.base, normalize=case.normalize)
    ref = call_reference(reference.js_div, *broadcast_pair(p.values, q.values), **kwargs)
    if isinstance(ref, ValueError):
        event("the reference raises ValueError")
        lib_raises(ValueError, kl_fast.js_div, p.arg, q.arg, **kwargs)
        assert_unchanged(p, q)
        return
    oracle = oracle_js(p.values, q.values, **kwargs)
    if refuses_inf_sum(kl_fast.js_div, oracle.max_sum, p.arg, q.arg, **kwargs):
        assert_unchanged(p, q)
        return
    got = call_lib(kl_fast.js_div, p.arg, q.arg, **kwargs)
    dtype = result_dtype(p, q)
    assert_matches(got, ref, oracle, dtype=dtype, rtol=RTOL[dtype],
                   atol=atol_for(dtype, oracle.n, case.base), what="js_div")
    check_out_and_threads(kl_fast.js_div, (p.arg, q.arg), kwargs, got, case)
    assert_unchanged(p, q)


@FAST
@given(pair_cases("prob", with_dx=False))
def test_js_div(case):
    _js_div_body(case)


@pytest.mark.slow
@SLOW
@given(pair_cases("prob", long=True, with_dx=False))
def test_js_div_long_rows(case):
    _js_div_body(case)


# ---- kl_div_log -----------------------------------------------------------------------------

def _kl_div_log_body(case):
    p, q = case.p, case.q
    kwargs = dict(axis=case.axis, keepdims=case.keepdims, base=case.base, normalize=case.normalize)
    ref = call_reference(reference.kl_div_log, *broadcast_pair(p.values, q.values), **kwargs)
    if isinstance(ref, ValueError) and case.normalize and np.broadcast(p.values, q.values).size == 0:
        # reference.kl_div_log's normalisation takes np.max of the zero-size input
        # and raises even when there is no reduction at all (empty result)
        shape = np.sum(np.empty(np.broadcast(p.values, q.values).shape),
                       axis=case.axis if np.ndim(p.values) or np.ndim(q.values) else None,
                       keepdims=case.keepdims).shape
        if math.prod(shape) == 0:
            event("reference.kl_div_log: normalize of an empty input raises")
            got = call_lib(kl_fast.kl_div_log, p.arg, q.arg, **kwargs)
            assert got.shape == shape and got.dtype == result_dtype(p, q)
            assert_unchanged(p, q)
            return
    if isinstance(ref, ValueError):
        event("the reference raises ValueError")
        lib_raises(ValueError, kl_fast.kl_div_log, p.arg, q.arg, **kwargs)
        assert_unchanged(p, q)
        return
    got = call_lib(kl_fast.kl_div_log, p.arg, q.arg, **kwargs)
    dtype = result_dtype(p, q)
    oracle = oracle_kl_log(p.values, q.values, **kwargs)
    assert_matches(got, ref, oracle, dtype=dtype, rtol=RTOL[dtype],
                   atol=atol_for(dtype, oracle.n, case.base), what="kl_div_log")
    check_out_and_threads(kl_fast.kl_div_log, (p.arg, q.arg), kwargs, got, case)
    assert_unchanged(p, q)


@FAST
@given(pair_cases("log", with_dx=False))
def test_kl_div_log(case):
    _kl_div_log_body(case)


@pytest.mark.slow
@SLOW
@given(pair_cases("log", long=True, with_dx=False))
def test_kl_div_log_long_rows(case):
    _kl_div_log_body(case)


# ---- normalize=True where the sums under- or overflow -----------------------------------
#
# Normalising is scale-invariant, and the reference (p / P first) is accurate
# whatever P is; the compiled functions compute from the raw sums.  Moderate
# values times 2**k, k in the bands where the sums become subnormal or
# overflow, for every function with normalize.

NORMALIZE_EXTREMES = dict(regimes=st.just("scaled"), normalize=st.just(True), with_dx=False,
                          dtypes=st.sampled_from([np.float64, np.float32]))


@FAST
@given(pair_cases("prob", **NORMALIZE_EXTREMES))
def test_kl_div_normalize_extreme_sums(case):
    _kl_div_body(case)


@FAST
@given(pair_cases("prob", **NORMALIZE_EXTREMES))
def test_js_div_normalize_extreme_sums(case):
    _js_div_body(case)


@FAST
@given(pair_cases("log", **NORMALIZE_EXTREMES))
def test_kl_div_log_normalize_extreme_shifts(case):
    _kl_div_log_body(case)


# ---- kl_pairwise and js_pairwise --------------------------------------------------------

PAIRWISE_SMALL = 2 ** 12  # m * k * (n + 16) up to this: kl_pairwise runs the row kernel per pair

# Known library bug (see test_known_bug_pairwise_small_input_not_per_pair): the
# docstring says small inputs are computed pair by pair, every entry equal to
# kl_div(P[i], Q[j], ...); with normalize=True, one pair that needs the Python
# layer (P's sum beyond 1e300 and a non-finite raw sum) sends the whole matrix
# to the product form, whose entries differ from kl_div's in the last bits
# (within the product form's guarantee, which the value checks apply).
KNOWN_BUG_PAIRWISE_DEFER = ("small kl_pairwise by the product form, not pair by pair "
                            "(test_known_bug_pairwise_small_input_not_per_pair)")


@st.composite
def matrix_cases(draw, big=False, regimes=REGIMES, normalize=st.booleans()):
    if big:  # the product form P @ log(Q).T with refinement (m * k * (n + 16) > 2**17)
        m, k, n = draw(st.integers(36, 40)), draw(st.integers(36, 40)), draw(st.integers(110, 140))
    else:
        n = draw(st.one_of(st.integers(0, 8), st.integers(9, 40)))
        m, k = draw(st.integers(0, 5)), draw(st.integers(0, 5))
    regime = draw(regimes)
    dp = draw(float_or_other_dtype())
    dq = dp if draw(st.booleans()) else draw(float_or_other_dtype())
    P = draw(laid_arrays((m, n), "prob", regime, dp))
    Q = None
    if draw(st.integers(0, 3)):
        if big and draw(st.booleans()):
            # near-duplicates of P's rows: KL ~ 1e-16, where the product form cancels
            rows = draw(st.lists(st.integers(0, m - 1), min_size=k, max_size=k))
            vals = P.values[rows].astype(np.float64)
            rel = draw(st.sampled_from([0.0, 1e-12, 1e-9, 1e-6]))
            noise = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).standard_normal(vals.shape)
            with np.errstate(over="ignore"):
                vals = (vals * (1 + rel * noise)).astype(P.values.dtype)
            Q = draw(laid_out(np.where(np.isfinite(vals), vals, 0).astype(vals.dtype)))
        else:
            Q = draw(laid_arrays((k, n), "prob", draw(regimes) if draw(st.booleans()) else regime, dq))
    return PairCase(P=P, Q=Q, regime=regime, base=draw(st.sampled_from(BASES)),
                    normalize=draw(normalize), out=draw(st.sampled_from(OUT_KINDS)),
                    out_dtype=draw(st.sampled_from(OUT_DTYPES)), threads=draw(st.sampled_from([1, 2, 3])))


KNOWN_BUG_PAIRWISE_OVERFLOW_ROWS = (
    "kl_pairwise's product form with normalize=True where a row's sum overflows: the row is "
    "scaled by a power of two, and an entry can be inf where the divergence is finite (a tiny "
    "element of the other row underflows when that row is normalised)")


def _pairwise_body(case, name):
    fn, ref_fn = getattr(kl_fast, name), getattr(reference, name)
    P, Q = case.P, case.Q
    Pv = P.values
    Qv = Pv if Q is None else Q.values
    args = (P.arg, None if Q is None else Q.arg)
    kwargs = dict(base=case.base, normalize=case.normalize)
    laid = (P,) if Q is None else (P, Q)
    ref = call_reference(ref_fn, Pv, None if Q is None else Qv, **kwargs)
    if isinstance(ref, ValueError):
        lib_raises(ValueError, fn, *args, **kwargs)
        assert_unchanged(*laid)
        return
    if case.normalize and ref.size == 0:
        # no pairs: the reference never looks at the rows; kl_fast may refuse a
        # zero-sum row all the same, as its docstring says ("a row summing to
        # zero is an error"); otherwise it returns the empty matrix
        try:
            got = call_lib(fn, *args, **kwargs)
        except ValueError as e:
            if INF_SUM_REFUSAL.search(str(e)):
                event(f"known bug: {KNOWN_BUG_INF_SUM}")
            else:
                assert "sums to 0.0" in str(e), str(e)
                event("normalize, zero-sum rows compared with no rows: kl_fast raises")
        else:
            assert got.shape == ref.shape and got.dtype == result_dtype(*laid)
        assert_unchanged(*laid)
        return
    dtype = result_dtype(*laid)
    pp, qq = Pv[:, None, :], Qv[None, :, :]
    if name == "kl_pairwise":
        oracle = oracle_kl(pp, qq, axis=-1, keepdims=False, normalize=case.normalize, base=case.base,
                           p_dtype=dtype)
        sums = np.maximum(np.sum(Pv.astype(LD), axis=1)[:, None], np.sum(Qv.astype(LD), axis=1)[None, :])
        known = (tiny_sum_mask(oracle.psum, dtype, case.normalize), KNOWN_BUG_TINY_SUM)
        deferred = False
        if case.normalize:
            # kl_fast computes kl / P + log(Q / P) from the raw sum of p log(p / q),
            # which it does not rescale when that overflows (kl_div does)
            raw = oracle_kl(pp, qq, axis=-1, keepdims=False, normalize=False, base=None)
            over = raw.span >= LD(np.finfo(np.float64).max) / 2
            if over.any():
                known = (over | (known[0] if known[0] is not None else False), KNOWN_BUG_INF_SUM)
            # a pair whose raw sum is not finite while P's sum is beyond 1e300 sends
            # the whole matrix to the product form (KNOWN_BUG_PAIRWISE_DEFER)
            deferred = bool(np.any((np.isinf(raw.exact) | over) & (oracle.psum > LD(1e299))))
    else:
        deferred = False
        oracle = oracle_js(pp, qq, axis=-1, keepdims=False, normalize=case.normalize, base=case.base)
        sums = oracle.max_sum
        known = (None, None)
    if refuses_inf_sum(fn, sums, *args, **kwargs):
        assert_unchanged(*laid)
        return
    got = call_lib(fn, *args, **kwargs)
    assert isinstance(got, np.ndarray) and got.shape == (len(Pv), len(Qv))
    rtol = RTOL[dtype]
    product_form = len(Pv) * len(Qv) * (Pv.shape[1] + 16) > PAIRWISE_SMALL
    tol_extra = 0
    if name == "kl_pairwise" and product_form:
        # the docstring's guarantee for entries the row kernel does not recompute
        tol_extra = PRODUCT_FORM_RTOL * np.where(np.isfinite(oracle.exact), np.abs(oracle.exact), 0)
        event("kl_pairwise: product form")
        if case.normalize and np.any(sums > LD(np.finfo(np.float64).max)):
            event(f"known bug: {KNOWN_BUG_PAIRWISE_OVERFLOW_ROWS}")
            known = (np.ones(oracle.exact.shape, dtype=bool), KNOWN_BUG_PAIRWISE_OVERFLOW_ROWS)
    oracle.scale = oracle.scale + tol_extra / rtol
    assert_matches(got, ref, oracle, dtype=dtype, rtol=rtol, atol=atol_for(dtype, oracle.n, case.base),
                   what=name, known=known, or_divided_first=getattr(oracle, "unrepresentable", None))
    # the docstrings: js_pairwise's entries are js_div(P[i], Q[j], ...) bit for
    # bit; kl_pairwise's are kl_div(P[i], Q[j], ...)'s for small inputs (in float64)
    if deferred:
        event(f"known bug: {KNOWN_BUG_PAIRWISE_DEFER}")
    elif name == "js_pairwise" or (not product_form and dtype == np.float64):
        row_fn = getattr(kl_fast, name.replace("_pairwise", "_div"))
        pairs = [(i, j) for i in range(len(Pv)) for j in range(len(Qv))]
        if len(pairs) > 30:  # a sample of the pairs of a large matrix
            pairs = [pairs[t] for t in np.random.default_rng(len(pairs)).choice(len(pairs), 30, replace=False)]
        skip = np.zeros(got.shape, dtype=bool) if known[0] is None else np.asarray(known[0], dtype=bool)
        for i, j in pairs:
            if not skip[i, j]:
                one = call_lib(row_fn, Pv[i], Qv[j], **kwargs)
                assert np.asarray(got[i, j]).tobytes() == np.asarray(one, dtype=got.dtype).tobytes(), \
                    (i, j, got[i, j], one)
    check_out_and_threads(fn, args, kwargs, got, case)
    assert_unchanged(*laid)


@FAST
@given(matrix_cases())
def test_kl_pairwise(case):
    _pairwise_body(case, "kl_pairwise")


@FAST
@given(matrix_cases())
def test_js_pairwise(case):
    _pairwise_body(case, "js_pairwise")


@LIGHT
@given(matrix_cases(big=True, regimes=st.sampled_from(["moderate", "wide", "tiny", "scaled"])))
def test_kl_pairwise_product_form(case):
    _pairwise_body(case, "kl_pairwise")


@pytest.mark.slow
@SLOW_HEAVY
@given(matrix_cases(big=True))
def test_kl_pairwise_product_form_slow(case):
    _pairwise_body(case, "kl_pairwise")


@pytest.mark.slow
@SLOW_HEAVY
@given(matrix_cases(big=True))
def test_js_pairwise_large(case):
    _pairwise_body(case, "js_pairwise")


@FAST
@given(matrix_cases(regimes=st.just("scaled"), normalize=st.just(True)))
def test_kl_pairwise_normalize_extreme_sums(case):
    _pairwise_body(case, "kl_pairwise")


@FAST
@given(matrix_cases(regimes=st.just("scaled"), normalize=st.just(True)))
def test_js_pairwise_normalize_extreme_sums(case):
    _pairwise_body(case, "js_pairwise")


# ---- gaussian_kl, gaussian_kl_grad and fit_gaussian ---------------------------------------
#
# q_i = exp(a_i) / Z with a_i = -(x_i - mu)^2 / (2 sigma^2).  The reference
# builds q explicitly, so where q_i underflows to 0 (p_i > 0) its KL is inf
# and where every q_i underflows it is NaN; DESIGN.md requires kl_fast to stay
# finite there (log q_i evaluated analytically), which the long-double oracle
# checks.  p's sums overflowing is a documented ValueError ("rescale it"), so p
# keeps clear of the top of the range here.

def oracle_gaussian(p, x, mu, sigma, normalize):
    """Oracles of (kl, d_mu, d_sigma) in long double, q in log form.

    Error scales: with d_i = x_i - mu rounded (absolute error eps * delta,
    delta = max|x| + |mu|), a_i and log Z carry eps * e_i,
    e_i = 1 + |a_i| + |log Z| + delta |d_i| / sigma^2, which is q_i's relative
    error; the KL's terms p_i (log p_i - log q_i) then carry eps * p_i (1 +
    |log p_i| + e_i) and the gradients' sums the same relative errors in q_i
    and eps * delta in d_i.  normalize adds eps * |log P| (from sum p log p / P
    - log P)."""
    p = np.asarray(p, dtype=LD)
    x = np.asarray(x, dtype=LD)
    mu = np.asarray(mu, dtype=LD)[..., None]
    s = np.asarray(sigma, dtype=LD)[..., None]
    P = np.sum(p, axis=-1, keepdims=True)
    extra = 0
    if normalize:
        extra = np.abs(np.log(P))[..., 0]
        p = p / P
        P = np.ones_like(P)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = x - mu
        a = -d * d / (2 * s * s)
        amax = np.max(a, axis=-1, keepdims=True)
        logz = amax + np.log(np.sum(np.exp(a - amax), axis=-1, keepdims=True))
        logq = a - logz
        q = np.exp(logq)
        delta = np.max(np.abs(x)) + np.abs(mu)
        e = 1 + np.abs(a) + np.abs(logz) + delta * np.abs(d) / (s * s)
        pos = p > 0
        logp = np.log(np.where(pos, p, 1))
        kl = np.sum(np.where(pos, p * (logp - logq), 0), axis=-1)
        kl_scale = np.sum(np.where(pos, p * (1 + np.abs(logp) + e), 0), axis=-1) + extra
        Pb = P[..., 0]
        d_mu = (Pb * np.sum(q * d, axis=-1) - np.sum(p * d, axis=-1)) / s[..., 0] ** 2
        mu_scale = (Pb * np.sum(q * (np.abs(d) * e + delta), axis=-1)
                    + np.sum(p * (np.abs(d) + delta), axis=-1)) / s[..., 0] ** 2
        d_sigma = (Pb * np.sum(q * d * d, axis=-1) - np.sum(p * d * d, axis=-1)) / s[..., 0] ** 3
        sigma_scale = (Pb * np.sum(q * (d * d * e + 2 * np.abs(d) * delta), axis=-1)
                       + np.sum(p * (d * d + 2 * np.abs(d) * delta), axis=-1)) / s[..., 0] ** 3
    n = x.size
    oracles = [Oracle(kl, kl_scale, n), Oracle(d_mu, mu_scale, n), Oracle(d_sigma, sigma_scale, n)]
    # Below the normal range (subnormal p) every rounding is absolute, about the
    # smallest subnormal, and the formulas multiply such errors by up to
    # (1 + delta)^2 / sigma^k (the p-side moments are combined around a shift).
    tiny = LD(4 * (n + 1)) * LD(np.finfo(np.float64).smallest_subnormal)
    amp = (1 + delta[..., 0]) ** 2
    oracles[0].atol = tiny * (1 + amp / s[..., 0] ** 2 + np.abs(logz[..., 0]) + 750)
    oracles[1].atol = tiny * (1 + amp / s[..., 0] ** 2)
    oracles[2].atol = tiny * (1 + amp / s[..., 0] ** 3)
    return oracles


# Known library bug (see test_known_bug_gaussian_normalize_tiny_sum): with
# normalize=True, gaussian_kl and gaussian_kl_grad give KL = inf or NaN when
# the sum of a row of p is subnormal (1.0 / total overflows, with a
# RuntimeWarning "overflow encountered in divide").  Near that range the
# p-side moments (sum p x^2, ...) are accumulated before the division by P,
# from subnormal products, and the gradients lose accuracy (1e-10 relative
# at P = 1e-308 on a grid of 2e-3; the reference divides first).  The region
# checked as known: P < 1e-290.
GAUSS_TINY_P = LD(1e-290)
KNOWN_BUG_GAUSS_SCALED_GRAD = ("gradients on a grid whose largest |x| is outside [2**-100, "
                               "2**100], which the library rescales by a power of two: a "
                               "hypothesis case (x ~ 1e-108, normalize=True) lost 3 digits of "
                               "d_sigma there")


def rescaled_grid(x):
    """The library works in rescaled units on this grid (gaussian._grid_exponent)."""
    top = float(np.max(np.abs(np.asarray(x, dtype=np.float64)))) if np.size(x) else 0.0
    return np.isfinite(top) and top > 0 and not (2.0 ** -100 <= top <= 2.0 ** 100)


KNOWN_BUG_GAUSS_TINY = ("gaussian normalize=True with a subnormal sum of p "
                        "(test_known_bug_gaussian_normalize_tiny_sum)")


def gaussian_tiny_mask(p, normalize, shape):
    """The parameter sets whose row of p is inside KNOWN_BUG_GAUSS_TINY's region."""
    if not normalize:
        return None
    P = np.sum(np.asarray(p, dtype=LD), axis=-1)
    return np.broadcast_to(P < GAUSS_TINY_P, shape)


# Gaussian sums run in double whatever p's dtype (float32 p is read as is):
# the float64 tolerance of the module header applies.
GAUSS_RTOL = RTOL[np.dtype(np.float64)]


def _sub_shape(draw, full):
    """A shape that broadcasts to ``full``: leading axes dropped, some set to 1."""
    shape = full[draw(st.integers(0, len(full))):]
    return tuple(1 if draw(st.booleans()) else k for k in shape)


@st.composite
def parameters(draw, shape, positive, regime, R):
    """mu or sigma: a Python float (scalar shape, sometimes) or a laid-out array."""
    if positive:
        lo, hi = (math.log10(R) - 3, math.log10(R) + 2) if regime == "moderate" else (-8.0, 8.0)
        elements = st.floats(lo, hi).map(lambda t: 10.0 ** t)
    else:
        bound = 2 * R if regime == "moderate" else 1e8
        elements = st.floats(-bound, bound)
    if shape == () and draw(st.booleans()):
        return Laid(draw(elements), None, "python float")
    dtype = draw(st.sampled_from([np.float64, np.float64, np.float32] + ([] if positive else [np.int32])))
    if np.dtype(dtype).kind == "i":
        elements = elements.map(lambda v: int(max(-1e8, min(1e8, v))))
    vals = draw(hnp.arrays(dtype, shape, elements=elements.map(lambda v: np.dtype(dtype).type(v)),
                           fill=st.nothing()))
    if positive:
        vals = np.where(vals > 0, vals, np.dtype(dtype).type(1))
    return draw(laid_out(np.ascontiguousarray(vals)))


@st.composite
def grids(draw, n, regime, kinds=("linspace", "reversed", "random", "int")):
    R = 10.0 if regime == "moderate" else draw(st.sampled_from([1e-3, 1.0, 1e3, 1e6]))
    how = draw(st.sampled_from(kinds))
    if how == "int":
        step = draw(st.integers(1, 5))
        x = (np.arange(n) * step - draw(st.integers(0, n * step))).astype(draw(st.sampled_from([np.int64, np.int32])))
        R = float(max(1, n * step))
    elif how == "random":
        x = draw(hnp.arrays(np.float64, n, elements=st.floats(-R, R), fill=st.nothing() if n <= SMALL else None))
    else:
        start = draw(st.floats(-R, R))
        width = draw(st.floats(1e-3 * R, 2 * R))
        x = np.linspace(start, start + width, n)
        if how == "reversed":
            x = x[::-1].copy()
    return draw(laid_out(x)), R


@st.composite
def gaussian_cases(draw, long=False):
    n = draw(st.integers(200, 3000)) if long else draw(st.one_of(st.integers(1, 12), st.integers(13, 80)))
    regime = draw(st.sampled_from(["moderate", "moderate", "wide"]))
    x, R = draw(grids(n, regime))
    full = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3))
    p_regime = draw(st.sampled_from(["moderate", "finite", "tiny", "subnormal"]))
    p_dtype = draw(st.sampled_from([np.float64, np.float64, np.float32, np.int16, np.uint8, np.bool_]))
    p = draw(laid_arrays(_sub_shape(draw, full) + (n,), "prob", p_regime, p_dtype))
    mu = draw(parameters(_sub_shape(draw, full), False, regime, R))
    sigma = draw(parameters(_sub_shape(draw, full), True, regime, R))
    return PairCase(p=p, x=x, mu=mu, sigma=sigma, regime=regime, normalize=draw(st.booleans()),
                    threads=draw(st.sampled_from([1, 2, 3])))


def _gaussian_body(case):
    p, x, mu, sigma = case.p, case.x, case.mu, case.sigma
    args = (p.arg, x.arg, mu.arg, sigma.arg)
    laid = (p, x, mu, sigma)
    kwargs = dict(normalize=case.normalize)
    if np.any(np.sum(p.values.astype(LD), axis=-1) == 0):
        # documented: "ValueError ... p negative, NaN, infinite or all zero"
        # (the reference, which checks nothing, gives 0 or NaN)
        event("p all zero in a row: ValueError")
        lib_raises(ValueError, kl_fast.gaussian_kl, *args, **kwargs)
        lib_raises(ValueError, kl_fast.gaussian_kl_grad, *args, **kwargs)
        assert_unchanged(*laid)
        return
    oracles = oracle_gaussian(p.values, x.values, mu.values, sigma.values, case.normalize)
    ref_args = (p.values, x.values, mu.values, sigma.values)
    ref_kl = call_reference(reference.gaussian_kl, *ref_args, **kwargs)
    refs = call_reference(reference.gaussian_kl_grad, *ref_args, **kwargs)
    known = gaussian_tiny_mask(p.values, case.normalize, oracles[0].exact.shape)
    known_warnings = None
    tiny_rows = np.sum(p.values.astype(LD), axis=-1) < LD(np.finfo(np.float64).smallest_normal)
    tiny_rows = tiny_rows if case.normalize else None
    if tiny_rows is not None and tiny_rows.any():  # (even when no parameter set uses them)
        known_warnings = {"overflow encountered in divide": KNOWN_BUG_GAUSS_TINY}
    got_kl = call_lib(kl_fast.gaussian_kl, *args, known_warnings=known_warnings, **kwargs)
    got = call_lib(kl_fast.gaussian_kl_grad, *args, known_warnings=known_warnings, **kwargs)
    if not np.all(np.isfinite(np.asarray(ref_kl, dtype=np.float64))):
        event("reference KL not finite (q underflows)")
    assert isinstance(got, tuple) and len(got) == 3
    f64 = np.dtype(np.float64)
    for what, g, r, o in [("gaussian_kl", got_kl, ref_kl, oracles[0]),
                          ("gaussian_kl_grad kl", got[0], refs[0], oracles[0]),
                          ("gaussian_kl_grad d_mu", got[1], refs[1], oracles[1]),
                          ("gaussian_kl_grad d_sigma", got[2], refs[2], oracles[2])]:
        # scalar parameters and 1-D p give floats, like the reference's NumPy scalars
        if not isinstance(g, np.ndarray):
            assert isinstance(g, float), (what, type(g))
            g = np.float64(g)
        k_mask, k_label = known, KNOWN_BUG_GAUSS_TINY
        if "d_" in what and rescaled_grid(x.values):
            # gradients on a grid the library rescales by a power of two
            event(f"known bug: {KNOWN_BUG_GAUSS_SCALED_GRAD}")
            k_mask, k_label = np.ones(np.shape(o.exact), dtype=bool), KNOWN_BUG_GAUSS_SCALED_GRAD
        assert_matches(g, r, o, dtype=f64, rtol=GAUSS_RTOL, atol=o.atol, what=what,
                       known=(k_mask, k_label))
    # "Results do not depend on [num_threads]"
    for fn, value in ((kl_fast.gaussian_kl, got_kl), (kl_fast.gaussian_kl_grad, got)):
        again = call_lib(fn, *args, num_threads=case.threads, known_warnings=known_warnings, **kwargs)
        for a, b in zip(np.atleast_1d(again) if fn is kl_fast.gaussian_kl else again,
                        np.atleast_1d(value) if fn is kl_fast.gaussian_kl else value):
            assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), fn.__name__
    assert_unchanged(*laid)


@FAST
@given(gaussian_cases())
def test_gaussian_kl_and_grad(case):
    _gaussian_body(case)


@pytest.mark.slow
@SLOW
@given(gaussian_cases(long=True))
def test_gaussian_kl_and_grad_long_grids(case):
    _gaussian_body(case)


@st.composite
def fit_cases(draw):
    """Lightly: ordinary p on grids of distinct points (the value tests above
    cover the extremes of gaussian_kl_grad itself)."""
    n = draw(st.integers(3, 60))
    x, R = draw(grids(n, "moderate", kinds=("linspace", "reversed", "int")))
    batch = draw(st.sampled_from([(), (), (2,), (1, 3)]))
    p = draw(laid_arrays(batch + (n,), "prob", "moderate",
                         draw(st.sampled_from([np.float64, np.float32, np.int16])), stride0=False))
    method = draw(st.sampled_from(["newton", "gd"]))
    opts = dict(method=method, normalize=draw(st.booleans()),
                parametrization=draw(st.sampled_from(["sigma", "variance"])))
    if method == "gd":
        opts.update(epochs=draw(st.integers(0, 20)), lr=draw(st.sampled_from([1e-4, 1e-3, 1e-2])))
    return PairCase(p=p, x=x, opts=opts)


@LIGHT
@given(fit_cases())
def test_fit_gaussian_kl_is_gaussian_kl_at_the_result(case):
    """Lightly: the fit's kl and grad are gaussian_kl_grad's at its (mu, sigma)."""
    p, x = case.p, case.x
    if np.any(np.sum(p.values.astype(LD), axis=-1) == 0):
        lib_raises(ValueError, kl_fast.fit_gaussian, p.arg, x.arg, **case.opts)
        return
    fit = call_lib(kl_fast.fit_gaussian, p.arg, x.arg, **case.opts)
    mu, sigma = np.asarray(fit.mu, dtype=np.float64), np.asarray(fit.sigma, dtype=np.float64)
    assert mu.shape == sigma.shape == p.values.shape[:-1]
    # sigma is 0 only for p on one grid point (no finite optimum; documented)
    valid = np.isfinite(mu) & np.isfinite(sigma) & (sigma > 0)
    if not valid.all():
        event("fit_gaussian: degenerate fit (sigma 0)")
    if not valid.any():
        return
    mu_v, sigma_v = np.where(valid, mu, 0.0), np.where(valid, sigma, 1.0)
    normalize = case.opts["normalize"]
    oracles = oracle_gaussian(p.values, x.values, mu_v, sigma_v, normalize)
    refs = call_reference(reference.gaussian_kl_grad, p.values, x.values, mu_v, sigma_v,
                          normalize=normalize)
    f64 = np.dtype(np.float64)
    at = call_lib(kl_fast.gaussian_kl_grad, p.arg, x.arg, mu_v, sigma_v, normalize=normalize)
    for what, g, r, o, a in [("fit kl", fit.kl, refs[0], oracles[0], at[0]),
                             ("fit d_mu", fit.grad[0], refs[1], oracles[1], at[1]),
                             ("fit d_sigma", fit.grad[1], refs[2], oracles[2], at[2])]:
        g = np.asarray(g, dtype=np.float64)
        g = g[()] if g.ndim == 0 else g
        assert_matches(g, r, o, dtype=f64, rtol=GAUSS_RTOL, atol=o.atol, what=what,
                       known=(~valid, "degenerate fit"))
        # and gaussian_kl_grad's at (mu, sigma), to the same tolerance
        both = np.asarray(valid)
        diff = np.abs(np.asarray(g, dtype=LD) - np.asarray(a, dtype=LD))
        assert np.all((diff <= 2 * (GAUSS_RTOL * o.scale + o.atol))[both]), (what, g, a)
    assert_unchanged(p, x)


# ---- invalid values: ValueError from both ------------------------------------------------
#
# DESIGN.md: with check=True "a negative value, NaN or infinity in p or q
# raises ValueError naming the array, the value and its index" (for
# log-probabilities: NaN and +inf; -inf is a zero probability).  The reference
# raises ValueError for the same inputs.  kl_fast's message must name an input
# that holds a bad value, and its index must point at one (in that input's own
# coordinates, whatever the broadcasting).  check=False must not crash.

BAD_VALUES = {"prob": [np.nan, np.inf, -np.inf, -1.0, -5e-324, -1e300], "log": [np.nan, np.inf]}
BAD_MESSAGE = re.compile(r"^(\w+): (\w+) contains (.+?) at index \[([-\d, ]*)\]")


def is_bad(value, kind):
    value = float(value)
    if kind == "log":
        return math.isnan(value) or value == math.inf
    return not (math.isfinite(value) and value >= 0)


def spoil(kind, count):
    """A mutate= hook writing 1..count bad values into an array (ints: negative)."""
    def mutate(draw, a):
        if a.size == 0:
            return a
        a = a.copy()
        for _ in range(draw(st.integers(1, count))):
            i = draw(st.integers(0, a.size - 1))
            if a.dtype.kind == "f":
                with np.errstate(over="ignore"):  # -1e300 is -inf in float32: bad too
                    a.reshape(-1)[i] = draw(st.sampled_from(BAD_VALUES[kind]))
            else:
                a.reshape(-1)[i] = -draw(st.integers(1, 100))
        return a
    return mutate


@st.composite
def bad_cases(draw, kind, matrix=False):
    if matrix:
        n, m, k = draw(st.integers(1, 12)), draw(st.integers(0, 4)), draw(st.integers(0, 4))
        shapes = ((m, n), (k, n))
    else:
        shapes = draw(pair_shapes())
    dtypes = st.sampled_from([np.float64, np.float32] + ([np.int8, np.int64] if kind == "prob" else []))
    which = draw(st.sampled_from(["p", "q", "both"]))
    arrays = []
    for name, shape in zip("pq", shapes):
        mutate = spoil(kind, 3) if which in (name, "both") else None
        arrays.append(draw(laid_arrays(shape, kind, "moderate", draw(dtypes), mutate=mutate)))
    ndim = max(len(shapes[0]), len(shapes[1]))
    return PairCase(p=arrays[0], q=arrays[1], axis=draw(axes_for(ndim)), normalize=draw(st.booleans()),
                    kind=kind, same=matrix and draw(st.integers(0, 3)) == 0)


def _check_bad_message(exc, fn_name, named, kind):
    """The message names fn, an input holding a bad value, and an index of one."""
    m = BAD_MESSAGE.match(str(exc))
    assert m, f"unexpected message: {exc}"
    assert m.group(1) == fn_name, str(exc)
    assert m.group(2) in named, str(exc)
    idx = tuple(int(i) for i in m.group(4).split(",") if i.strip())
    arr = np.asarray(named[m.group(2)].arg)
    assert len(idx) == arr.ndim, str(exc)
    assert is_bad(arr[idx], kind), f"{exc}: {named[m.group(2)]!r}[{idx}] = {arr[idx]!r} is valid"


def _bad_pair_body(case, name):
    fn, ref_fn = getattr(kl_fast, name), getattr(reference, name)
    p, q = case.p, case.q
    kwargs = dict(axis=case.axis, normalize=case.normalize)
    bad_p = any(is_bad(v, case.kind) for v in p.values.reshape(-1))
    bad_q = any(is_bad(v, case.kind) for v in q.values.reshape(-1))
    if not (bad_p or bad_q):  # an empty input cannot hold one
        return
    assert isinstance(call_reference(ref_fn, p.values, q.values, **kwargs), ValueError)
    names = ("log_p", "log_q") if name == "kl_div_log" else ("p", "q")
    if np.broadcast(p.values, q.values).size == 0:
        # each input is checked on its own (test_fixed_bad_value_in_empty_broadcast)
        e = lib_raises(ValueError, fn, p.arg, q.arg, **kwargs)
        if "normalize=True but" not in str(e):  # (an empty reduction sums to 0)
            _check_bad_message(e, name, dict(zip(names, (p, q))), case.kind)
        assert_unchanged(p, q)
        return
    exc = lib_raises(ValueError, fn, p.arg, q.arg, **kwargs)
    named = {}
    if bad_p:
        named[names[0]] = p
    if bad_q:
        named[names[1]] = q
    _check_bad_message(exc, name, named, case.kind)
    # check=False: the result is unspecified, but the call must be safe
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            fn(p.arg, q.arg, check=False, **kwargs)
        except ValueError:  # normalize may still refuse a NaN sum
            pass
    assert_unchanged(p, q)


@FAST
@given(bad_cases("prob"))
def test_kl_div_bad_values(case):
    _bad_pair_body(case, "kl_div")


@FAST
@given(bad_cases("prob"))
def test_js_div_bad_values(case):
    _bad_pair_body(case, "js_div")


@FAST
@given(bad_cases("log"))
def test_kl_div_log_bad_values(case):
    _bad_pair_body(case, "kl_div_log")


def _bad_matrix_body(case, name):
    fn, ref_fn = getattr(kl_fast, name), getattr(reference, name)
    P, Q = case.p, (None if case.same else case.q)
    laid = (P,) if Q is None else (P, Q)
    bad = {n: x for n, x in zip("PQ", laid) if any(is_bad(v, "prob") for v in x.values.reshape(-1))}
    if not bad:
        return
    args = (P.arg, None if Q is None else Q.arg)
    kwargs = dict(normalize=case.normalize)
    if len(P.values) and len((P if Q is None else Q).values):
        # (with no pairs the reference never looks at the values; kl_fast
        # checks them all the same, as DESIGN.md says)
        ref = call_reference(ref_fn, P.values, None if Q is None else Q.values, **kwargs)
        assert isinstance(ref, ValueError)
    exc = lib_raises(ValueError, fn, *args, **kwargs)
    _check_bad_message(exc, name, bad, "prob")
    assert_unchanged(*laid)


@FAST
@given(bad_cases("prob", matrix=True))
def test_kl_pairwise_bad_values(case):
    _bad_matrix_body(case, "kl_pairwise")


@FAST
@given(bad_cases("prob", matrix=True))
def test_js_pairwise_bad_values(case):
    _bad_matrix_body(case, "js_pairwise")


@st.composite
def bad_gaussian_cases(draw):
    n = draw(st.integers(1, 20))
    x, R = draw(grids(n, "moderate"))
    batch = draw(st.sampled_from([(), (2,), (1, 3)]))
    target = draw(st.sampled_from(["p", "zero p", "x", "mu", "sigma"]))
    p_mutate = spoil("prob", 3) if target == "p" else None
    if target not in ("p", "zero p"):
        def p_mutate(draw, a):  # every row has mass (a may be a stride-0 source)
            a = a.copy()
            a[..., 0] = 1
            return a
    if target == "zero p":
        def p_mutate(draw, a):
            a = a.copy()
            rows = a.reshape(-1, a.shape[-1])
            rows[draw(st.integers(0, len(rows) - 1))] = 0
            return a
    p = draw(laid_arrays(batch + (n,), "prob", "moderate", draw(st.sampled_from([np.float64, np.float32])),
                         mutate=p_mutate))
    if target == "x":
        xv = x.values.astype(np.float64)
        xv[draw(st.integers(0, n - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        x = draw(laid_out(xv))
    mu = draw(parameters(batch, False, "moderate", R))
    sigma = draw(parameters(batch, True, "moderate", R))
    if target in ("mu", "sigma"):
        choices = [np.nan, np.inf, -np.inf] + ([0.0, -1.0, -5e-324] if target == "sigma" else [])
        badv = draw(st.sampled_from(choices))
        vals = np.array((mu if target == "mu" else sigma).values, dtype=np.float64)
        if vals.ndim:
            vals.reshape(-1)[draw(st.integers(0, vals.size - 1))] = badv
        else:
            vals = np.float64(badv) if draw(st.booleans()) else np.array(badv)
        laid = draw(laid_out(np.asarray(vals))) if isinstance(vals, np.ndarray) else Laid(float(vals), None, "float")
        mu, sigma = (laid, sigma) if target == "mu" else (mu, laid)
    return PairCase(p=p, x=x, mu=mu, sigma=sigma, target=target, normalize=draw(st.booleans()))


@FAST
@given(bad_gaussian_cases())
def test_gaussian_bad_values(case):
    """Documented: ValueError for p negative, NaN, infinite or all zero, x not
    finite, mu not finite, sigma not positive and finite (the reference checks
    nothing; DESIGN.md states no behaviour)."""
    p, x, mu, sigma = case.p, case.x, case.mu, case.sigma
    if p.values.size == 0 or (case.target == "p" and not any(is_bad(v, "prob") for v in p.values.reshape(-1))):
        return
    if case.target in ("mu", "sigma") and 0 in np.shape(p.values)[:-1]:
        return  # (an empty batch: nothing uses the parameters)
    for fn in (kl_fast.gaussian_kl, kl_fast.gaussian_kl_grad):
        exc = lib_raises(ValueError, fn, p.arg, x.arg, mu.arg, sigma.arg, normalize=case.normalize)
        words = {"p": ("p contains", "p is all zero"),  # (whichever row comes first)
                 "zero p": ("p is all zero",), "x": ("x contains",), "mu": ("mu must be finite",),
                 "sigma": ("sigma must be positive and finite",)}[case.target]
        assert any(w in str(exc) for w in words), str(exc)
    if case.target in ("p", "zero p", "x"):
        lib_raises(ValueError, kl_fast.fit_gaussian, p.arg, x.arg, normalize=case.normalize)
    assert_unchanged(p, x, mu, sigma)


# ---- known bugs: minimal reproducers ------------------------------------------------------

@pytest.mark.parametrize("fn", ["kl_div", "kl_pairwise", "kl_div float32"])
def test_fixed_normalize_tiny_sum(fn):
    p = np.array([5e-324, 1e-323])     # normalised: [1/3, 2/3]
    q = np.array([1.0, 1.0])           # normalised: [1/2, 1/2]
    if fn == "kl_div float32":         # float32 subnormals: 0.0323 where it is 0.0316
        p, q = np.float32([1.8e-43, 3e-43]), np.float32([1e-6, 1e-6])
        a, b = float(p[0]) / float(p.astype(float).sum()), float(p[1]) / float(p.astype(float).sum())
        expected = a * math.log(2 * a) + b * math.log(2 * b)  # of the float32 values as stored
        assert float(kl_fast.kl_div(p, q, normalize=True)) == pytest.approx(expected, rel=1e-5)
        return
    expected = (math.log(2 / 3) + 2 * math.log(4 / 3)) / 3     # 0.0566330122651324
    assert float(reference.kl_div(p, q, normalize=True)) == pytest.approx(expected, rel=1e-14)
    if fn == "kl_div":
        got = kl_fast.kl_div(p, q, normalize=True)                       # gives 0.3679...
    else:
        got = kl_fast.kl_pairwise(p[None], q[None], normalize=True)[0, 0]
    assert float(got) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("fn", ["kl_div", "js_div", "kl_div_log"])
def test_fixed_bad_value_in_empty_broadcast(fn):
    p, q = np.array([np.nan, 1.0]), np.ones((0, 2))
    with pytest.raises(ValueError):
        getattr(reference, fn)(p, q)
    with pytest.raises(ValueError):
        kl_fast.kl_pairwise(p[None], q)                      # the pairwise functions check
    with pytest.raises(ValueError, match=r"p contains NaN at index \[0\]"):
        getattr(kl_fast, fn)(p, q)                           # was array([])
    name = "log_q" if fn == "kl_div_log" else "q"
    with pytest.raises(ValueError, match=name + r" contains .* at index \[1, 1\]"):
        getattr(kl_fast, fn)(np.ones((0, 1, 2)), np.array([[0.5, 0.5], [0.5, np.inf]]))
    assert getattr(kl_fast, fn)(p, q, check=False).shape == (0,)
    assert getattr(kl_fast, fn)(np.ones(2), q).shape == (0,)


@pytest.mark.parametrize("fn", ["gaussian_kl", "gaussian_kl_grad"])
def test_fixed_gaussian_normalize_tiny_sum(fn):
    x = np.linspace(0.0, 1.0, 5)
    counts = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    tiny = counts * 2.0 ** -1070           # exact subnormals, sum 7.4e-322
    expected = getattr(kl_fast, fn)(counts, x, 0.3, 0.4, normalize=True)  # scale-invariant
    assert np.all(np.isfinite(expected))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = getattr(kl_fast, fn)(tiny, x, 0.3, 0.4, normalize=True)      # KL: inf
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("fn", ["js_div", "js_pairwise"])
def test_fixed_js_normalize_subnormal_and_huge_sums(fn):
    p, q = np.array([1e305]), np.array([5e-320])   # both normalise to [1.0]: JS = 0
    assert reference.js_div(p / p.sum(), q / q.sum()) == 0.0
    if fn == "js_div":
        got = kl_fast.js_div(p, q, normalize=True)                          # gave 0.30
    else:
        got = kl_fast.js_pairwise(p[None], q[None], normalize=True)[0, 0]
    assert abs(float(got)) <= 1e-15


@pytest.mark.parametrize("fn", ["js_div", "kl_pairwise", "js_pairwise", "kl_pairwise raw sum",
                                "kl_div 0-d raw sum"])
def test_fixed_normalize_overflowing_sum(fn):
    p = np.array([1e308, 1e308, 1.0])      # normalised: [0.5, 0.5, 5e-309]
    q = np.array([1.0, 2.0, 3.0])          # normalised: [1/6, 1/3, 1/2]
    pn, qn = np.array([0.5, 0.5, 0.5e-308]), q / 6
    if fn == "kl_div 0-d raw sum":   # 1e307 * log(1e307) overflows; both normalise to 1
        assert kl_fast.kl_div([1e307], [1.0], normalize=True) == 0.0
        assert kl_fast.kl_div(1e307, 1.0, normalize=True) == 0.0          # gives inf
        return
    if fn == "kl_pairwise raw sum":
        # the sums fit, sum p log(p / q) does not (2.7e307 * log(6e307)): kl_pairwise
        # gives inf where kl_div rescales
        p, q = np.array([1e307, 3e307]), np.array([0.5, 0.5])
        expected = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
        assert kl_fast.kl_div(p, q, normalize=True) == pytest.approx(expected, rel=1e-14)
        assert float(kl_fast.kl_pairwise(p[None], q[None], normalize=True)[0, 0]) == pytest.approx(expected, rel=1e-13)
        return
    assert kl_fast.kl_div(p, q, normalize=True) == pytest.approx(
        float(reference.kl_div(pn, qn)), rel=1e-14)                     # kl_div copes
    if fn == "js_div":
        got, expected = kl_fast.js_div(p, q, normalize=True), reference.js_div(pn, qn)
    elif fn == "kl_pairwise":
        got, expected = kl_fast.kl_pairwise(p[None], q[None], normalize=True), reference.kl_div(pn, qn)
    else:
        got, expected = kl_fast.js_pairwise(p[None], q[None], normalize=True), reference.js_div(pn, qn)
    assert float(np.squeeze(got)) == pytest.approx(float(expected), rel=1e-13)


def test_fixed_pairwise_small_input_not_per_pair():
    P = np.array([[0.2, 0.8], [1e307, 3e307]])
    Q = np.array([[0.5, 0.5]])
    got = kl_fast.kl_pairwise(P, Q, normalize=True)
    one = kl_fast.kl_div(P[0], Q[0], normalize=True)       # 0.19274475702175747
    assert got[0, 0] == pytest.approx(one, rel=1e-15, abs=0)      # within the guarantee: 0.19274475702175742
    assert got[0, 0] == one                                # "every entry equals kl_div(P[i], Q[j], ...)"


@pytest.mark.parametrize("case", ["kl_div 0-d float32", "kl_div_log 0-d float32",
                                  "js_div byte-swapped float32", "js_pairwise base=2",
                                  "kl_pairwise base=2"])
def test_fixed_result_overflow_warns(case):
    f32 = np.float32
    if case == "kl_div 0-d float32":        # 3e38 * log(3e68) = 4.7e40 > FLT_MAX
        fn, args, kwargs, expected = kl_fast.kl_div, (f32(3e38), f32(1e-30)), {}, np.inf
    elif case == "kl_div_log 0-d float32":  # exp(88) * (88 - 91) = -4.9e38
        fn, args, kwargs, expected = kl_fast.kl_div_log, (f32(88.0), f32(91.0)), {}, -np.inf
    elif case == "js_div byte-swapped float32":  # 4 * 3e38 * log(2) / 2 = 4.2e38
        fn, args, kwargs, expected = (kl_fast.js_div, (np.full(4, 3e38, dtype=">f4"), np.zeros(4, f32)),
                                      {}, np.inf)
    else:  # 200 x 200 pairs (the Python path) of 1.5e308 nats, 2.2e308 bits
        if case.startswith("js"):  # JS of disjoint rows: sum(P) / 2 bits
            P, Q = np.tile([[1.7e308, 1.7e308, 1e308, 0.0]], (200, 1)), np.tile([[0.0, 0.0, 0.0, 1.0]], (200, 1))
        else:
            P, Q = np.tile([[1e308, 1.0]], (200, 1)), np.tile([[1e308 * math.exp(-1.5), 1.0]], (200, 1))
        fn = getattr(kl_fast, case.split()[0])
        assert np.all(np.isfinite(fn(P, Q)))
        args, kwargs, expected = (P, Q), {"base": 2}, np.inf
    if fn in (kl_fast.kl_div, kl_fast.kl_div_log, kl_fast.js_div):
        # the same values in the compiled path's layout: inf, silently
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert fn(*(np.atleast_1d(a).astype(f32) for a in args)) == expected
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = fn(*args, **kwargs)
    assert np.all(np.asarray(got) == expected)


@pytest.mark.parametrize("normalize", [False, True])
def test_fixed_split_reduction_warns(normalize):
    p = np.array([1e308, 1.0])
    q = np.ones((3, 2))
    # the divergence: inf (3e308 * log(1e308) overflows), or log 2 normalised
    expected = math.log(2.0) if normalize else math.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = kl_fast.kl_div(p, q, axis=None, normalize=normalize)
    assert got == pytest.approx(expected, rel=1e-15)


def test_fixed_raw_sum_beyond_range():
    p = np.array([1.65762720e+306, 1.0])
    q = np.array([1.63000003e+154, 1.0])
    exact = float(LD(p[0]) * np.log(LD(p[0]) / LD(q[0])) * LD(0.001))  # about 5.8e305
    assert np.isfinite(exact)
    got = kl_fast.kl_div(p, q, dx=0.001)
    assert np.isfinite(got) and abs(got - exact) <= 1e-12 * abs(exact)
