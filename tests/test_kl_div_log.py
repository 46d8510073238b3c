"""kl_div_log against its NumPy twin, kl_div on exp'd inputs, SciPy and decimal sums."""
import decimal
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp
from scipy import special, stats

import kl_fast
from kl_fast import reference
from conftest import mixed_rows

DTYPES = [np.float64, np.float32]
NEG_INF = -np.inf


def exact_kl_log(lp, lq):
    """sum exp(lp) * (lp - lq) in 50-digit decimal arithmetic (lp, lq finite)."""
    with decimal.localcontext() as ctx:
        ctx.prec = 50
        total = decimal.Decimal(0)
        for a, b in zip(np.asarray(lp, dtype=np.float64).tolist(), np.asarray(lq, dtype=np.float64).tolist()):
            a, b = decimal.Decimal(a), decimal.Decimal(b)
            total += a.exp() * (a - b)
        return float(total)


def log_probs(dtype, shape, ninf_frac=0.2, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(-2.0, 3.0, shape)
    a[rng.random(shape) < ninf_frac] = -np.inf
    return a.astype(dtype)


elements = st.one_of(st.just(-np.inf), st.floats(-50.0, 5.0))


@st.composite
def log_pairs(draw):
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=7))
    lp = draw(hnp.arrays(np.float64, shape, elements=elements)).astype(dtype)
    lq = draw(hnp.arrays(np.float64, shape, elements=elements)).astype(dtype)
    axis = draw(st.sampled_from([None] + list(range(-len(shape), len(shape)))))
    return lp, lq, axis


@given(log_pairs())
def test_matches_reference_and_kl_div(args):
    lp, lq, axis = args
    got = kl_fast.kl_div_log(lp, lq, axis=axis)
    assert np.asarray(got).dtype == lp.dtype
    assert not np.any(np.isnan(got))
    lp64, lq64 = lp.astype(np.float64), lq.astype(np.float64)
    ref = reference.kl_div_log(lp64, lq64, axis=axis)
    rtol = 1e-12 if lp.dtype == np.float64 else 1e-6
    finite_lp = np.where(np.isinf(lp64), 0.0, lp64)
    finite_lq = np.where(np.isinf(lq64), 0.0, lq64)
    # error scale: the terms' size, plus one rounding of each probability (for kl_div on exp)
    scale = np.sum(np.exp(lp64) * (1 + np.abs(finite_lp) + np.abs(finite_lq)), axis=axis)
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
    fin = np.isfinite(ref)
    got, ref, via_scale = np.asarray(got)[fin], np.asarray(ref)[fin], np.asarray(scale)[fin]
    assert np.all(np.abs(got - ref) <= rtol * np.abs(ref) + 1e-14 * via_scale + 1e-300)
    # the same divergence as kl_div on the probabilities (where exp does not underflow)
    with np.errstate(all="ignore"):
        via_probs = kl_fast.kl_div(np.exp(lp64), np.exp(lq64), axis=axis)
    np.testing.assert_array_equal(np.isinf(via_probs), ~fin)
    via_probs = np.asarray(via_probs)[fin]
    assert np.all(np.abs(got - via_probs) <= rtol * np.abs(via_probs) + 1e-13 * via_scale + 1e-300)


@given(log_pairs(), st.sampled_from([None, 2.0]))
def test_normalize_is_log_softmax(args, base):
    lp, lq, axis = args
    if axis is None or lp.shape[axis] == 0:
        return
    # keep one finite entry in every reduction
    lp = np.where(np.arange(lp.shape[axis]).reshape([-1 if ax == axis % lp.ndim else 1
                                                      for ax in range(lp.ndim)]) == 0, 0.5, lp)
    lq = np.where(np.isinf(lq), -30.0, lq).astype(lp.dtype)
    lp = lp.astype(lq.dtype)
    got = kl_fast.kl_div_log(lp, lq, axis=axis, normalize=True, base=base)
    p = special.softmax(lp.astype(np.float64), axis=axis)
    q = special.softmax(lq.astype(np.float64), axis=axis)
    expected = stats.entropy(p, q, axis=axis, base=base)
    rtol = 1e-10 if lp.dtype == np.float64 else 2e-5
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=1e-12 if lp.dtype == np.float64 else 1e-6)


def test_zero_probability_semantics():
    assert kl_fast.kl_div_log([NEG_INF, 0.0], [NEG_INF, 0.0]) == 0.0
    assert kl_fast.kl_div_log([NEG_INF, 0.0], [0.0, NEG_INF]) == np.inf
    assert kl_fast.kl_div_log([NEG_INF, NEG_INF], [NEG_INF, 5.0]) == 0.0
    # lp -inf with any lq: 0, never NaN (the peers give NaN here)
    assert kl_fast.kl_div_log([NEG_INF], [NEG_INF]) == 0.0
    # lq = -inf with lp finite is +inf even when exp(lp) underflows to 0
    assert kl_fast.kl_div_log([-1000.0, 0.0], [NEG_INF, 0.0]) == np.inf
    assert kl_fast.kl_div_log(np.array([], np.float32), np.array([], np.float32)) == 0.0
    # a masked vocabulary (log-softmax with -inf entries) on both sides
    lp = special.log_softmax(np.array([2.0, 1.0, NEG_INF, 0.5]))
    lq = special.log_softmax(np.array([1.0, 1.0, NEG_INF, 1.0]))
    p, q = np.exp(lp), np.exp(lq)
    assert kl_fast.kl_div_log(lp, lq) == pytest.approx(float(special.rel_entr(p, q).sum()), rel=1e-14, abs=0)


def test_terms_exact_where_exp_under_or_overflows():
    # exp(lp) underflows, yet the term exp(lp) * (lp - lq) is not negligible
    lp = np.array([-800.0, 0.0])
    lq = np.array([-1e300, 0.0])
    assert kl_fast.kl_div_log(lp, lq) == pytest.approx(math.exp(-800 + math.log(1e300)), rel=1e-12, abs=0)
    # subnormal exp(lp) with a moderate difference
    lp = np.array([-740.0, -1.0])
    lq = np.array([-745.0, -1.5])
    assert kl_fast.kl_div_log(lp, lq) == pytest.approx(exact_kl_log(lp, lq), rel=1e-14, abs=0)
    # exp(lp) overflows but the terms cancel exactly: the answer is 0, not NaN
    assert kl_fast.kl_div_log([800.0, 800.0], [799.0, 801.0]) == 0.0
    # an honest overflow is +-inf, never NaN
    assert kl_fast.kl_div_log([800.0, 0.0], [0.0, 0.0]) == np.inf
    assert kl_fast.kl_div_log([800.0, 0.0], [900.0, 0.0]) == -np.inf
    # large-but-finite results through the scaled careful sum
    got = kl_fast.kl_div_log([705.0, 705.0], [704.0, 703.5])
    assert got == pytest.approx(2.5 * math.exp(705.0), rel=1e-12)
    # huge differences do not overflow into NaN
    assert np.isfinite(kl_fast.kl_div_log([-1e308, 0.0], [1e308, 0.0]))


KINDS = ["overflowing", "mixed", "one tiny", "huge differences", "weights apart"]


@pytest.mark.parametrize("kind", KINDS)
def test_careful_terms_within_2_eps_of_the_terms_size(kind):
    # docs/semantics.md's bound for the careful path (a row with a log_p below -708 or a
    # term beyond exp(600)): a term is exp(a - a*) (diff 2^-e*) with the rounding
    # of a - a* carried, or exp(a) diff formed without under- or overflow, and the
    # sum is scaled back with no rounding of a large exponent.  Before, the sum
    # rounded exp(shift + log|s|), shift ~ 709, and terms exp(a + log|diff|): up to
    # half an ulp of 709 (256 eps; 413-503 measured on such rows);
    # kl_div_log([0, -750], [-1e300, 0]) was 1e300 (1 - 2.4e-14).  Measured: 1.46
    # eps.  Results below the double range are judged against DBL_MIN.
    mpmath = pytest.importorskip("mpmath")
    rng = np.random.default_rng(KINDS.index(kind))
    eps, worst, finite = np.finfo(float).eps, 0.0, 0
    for _ in range(300):
        m = rng.integers(1, 12)
        if kind == "overflowing":
            lp = rng.uniform(700.0, 712.0, m)
            lq = lp - rng.uniform(-1.0, 1.0, m)
        elif kind == "mixed":
            lp, lq = rng.uniform(-800.0, 712.0, m), rng.uniform(-800.0, 712.0, m)
        elif kind == "one tiny":
            lp, lq = rng.uniform(550.0, 705.0, m), np.zeros(m)
            lp[rng.integers(0, m)] = -750.0
        elif kind == "huge differences":
            lp, lq = rng.uniform(-50.0, 50.0, m), -(10.0 ** rng.uniform(250.0, 307.0, m))
        else:   # small weights with term-sized differences beside large weights
            lp = rng.uniform(-800.0, 712.0, m)
            lq = np.where(rng.random(m) < 0.5, -(10.0 ** rng.uniform(0.0, 307.0, m)),
                          rng.uniform(-800.0, 712.0, m))
            lp[rng.integers(0, m)] = -750.0 if rng.random() < 0.5 else rng.uniform(690.0, 712.0)
        got = kl_fast.kl_div_log(lp, lq)
        with mpmath.workprec(250):
            terms = [mpmath.exp(mpmath.mpf(float(u))) * (mpmath.mpf(float(u)) - mpmath.mpf(float(v)))
                     for u, v in zip(lp, lq)]
            want, size = mpmath.fsum(terms), mpmath.fsum(abs(t) for t in terms)
        if not abs(want) <= np.finfo(float).max:
            assert np.isinf(got) and np.sign(got) == mpmath.sign(want)
            continue
        finite += 1
        size = max(size, mpmath.mpf(np.finfo(float).tiny))
        worst = max(worst, float(abs(mpmath.mpf(float(got)) - want) / size) / eps)
    assert finite > 100 and worst <= 2.0
    assert kl_fast.kl_div_log([0.0, -750.0], [-1e300, 0.0]) == 1e300
    assert kl_fast.kl_div_log([0.0, -750.0], [-1e300, 0.0], base=2) == 1e300 / math.log(2)
    # a - a* rounded (half an ulp of 700) where a small weight meets a huge difference
    # (151 eps before the rounding was carried)
    lp, lq = [699.9803028285198, -0.7127261073046289, -750.0], [699.2116539663061, -1.859557888945801e+304, 0.0]
    with mpmath.workprec(250):
        want = mpmath.fsum(mpmath.exp(mpmath.mpf(u)) * (mpmath.mpf(u) - mpmath.mpf(v)) for u, v in zip(lp, lq))
    assert abs(kl_fast.kl_div_log(lp, lq) - float(want)) <= 2 * eps * float(want)


def _mp_kl_log_base(lp, lq, base, normalize=False):
    """sum exp(lp) (lp - lq) / log(base) in 200 bits (lp > -inf terms)."""
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workprec(200):
        a = [mpmath.mpf(float(v)) for v in lp]
        b = [mpmath.mpf(float(v)) for v in lq]
        if normalize:
            za = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in a))
            zb = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in b))
            a, b = [v - za for v in a], [v - zb for v in b]
        total = mpmath.fsum(mpmath.exp(u) * (u - v) for u, v in zip(a, b) if u > -mpmath.inf)
        return total if base is None else total / mpmath.log(mpmath.mpf(float(base)))


@pytest.mark.parametrize("lp, lq, normalize", [
    ([709.0], [0.0], False),                         # exp(709) 709: the raw sum overflows
    ([709.0, 5.0], [0.0, 1.0], False),
    ([709.0], [709.0 * 3], False),                   # negative, -1.6e308 after the base
    ([709.5, 709.2, 600.0], [1.0, 1e3, 650.0], False),   # terms of both signs
    ([0.0, -50.0], [-1e308, 1e308], True),           # log_q - lq0 beyond the range
    ([-1.0, -50.0, -60.0], [-1e308, 1e308, 1e308], True),
    ([2000.0, 709.0], [2000.0, 0.0], False),         # a zero term of a weight beyond range
])
def test_base_brings_an_overflowing_sum_back_into_range(lp, lq, normalize):
    # the raw sum exp(lp) (lp - lq) is beyond the double range, its quotient by
    # log(base) is not: redone in scaled form, as kl_div rescales its inputs
    base = math.exp(709.0)
    exact = _mp_kl_log_base(lp, lq, base, normalize)
    got = kl_fast.kl_div_log(np.array(lp), np.array(lq), base=base, normalize=normalize)
    assert np.isfinite(got)
    assert abs(float(got) - float(exact)) <= 4 * np.finfo(float).eps * abs(float(exact))
    # the same row among others, through the Python layer's row loop and into out=
    P = np.array([lp, [v - 1.0 for v in lp]])
    Q = np.array([lq, [v - 1.0 for v in lq]])
    out = np.empty(2)
    kl_fast.kl_div_log(P, Q, base=base, normalize=normalize, out=out)
    assert out[0] == got
    exact1 = _mp_kl_log_base(P[1], Q[1], base, normalize)
    assert abs(out[1] - float(exact1)) <= 4 * np.finfo(float).eps * abs(float(exact1))


def test_base_leaves_a_true_infinity():
    base = math.exp(709.0)
    # a finite log_p meets a -inf log_q: +inf whatever the base
    assert kl_fast.kl_div_log([709.0, 3.0], [-np.inf, 0.0], base=base) == np.inf
    # beyond the range even after the base
    assert kl_fast.kl_div_log([709.5, 709.2], [1.0, -1e306], base=base) == np.inf
    assert kl_fast.kl_div_log([709.0], [1e300], base=base) == -np.inf
    # a weight beyond every range
    assert kl_fast.kl_div_log([1e6, 0.0], [0.0, 0.0], base=base) == np.inf


def test_weights_far_beyond_the_range_keep_the_sign_of_their_sum():
    # exp(4.02e307) weighs two terms of differences -2.04e307 and +4.02e307: the sum
    # is +inf.  Scaling by the largest log-term (a + log|diff|, which rounds to a
    # at that size) made both terms 1 in size and the row 0.0; NumPy's reference
    # gives NaN (inf - inf).
    lp = np.array([705.79, 4.02e307, 4.02e307, -133.6])
    lq = np.array([-46.5, 6.06e307, 705.37, 705.37])
    assert kl_fast.kl_div_log(lp, lq) == np.inf
    assert kl_fast.kl_div_log(lp, lq, base=2.0) == np.inf
    assert kl_fast.kl_div_log(lp[[1, 2]], lq[[2, 1]]) == np.inf
    assert kl_fast.kl_div_log(np.array([4.23e307, 4.23e307]), np.array([8.5e307, 694.67])) == -np.inf
    # equal weights, differences that cancel exactly: 0
    assert kl_fast.kl_div_log(np.array([1e300, 1e300]), np.array([1e300 + 2**950, 1e300 - 2**950])) == 0.0


@pytest.mark.parametrize("lp, lq, normalize, dtype", [
    ([700.0, 701.0], [0.0, 700.9], False, np.float64),     # the larger weight, the smaller term
    ([700.0, 701.0], [0.0, 700.9], False, np.float32),
    ([0.0, -1.0, -3.0], [-1.7e308, 0.0, 0.0], True, np.float64),   # |diff| beyond e^600
    ([1e38, 1e38, 0.0], [3e38, -1e38, 0.0], False, np.float32),   # weights beyond every range
])
def test_scaled_careful_sum_against_mpmath(lp, lq, normalize, dtype):
    # rows whose largest term is beyond exp(600): the careful path's scaled sum
    lp, lq = np.array(lp, dtype=dtype), np.array(lq, dtype=dtype)
    exact = float(_mp_kl_log_base(lp, lq, None, normalize))
    got = float(kl_fast.kl_div_log(lp.astype(np.float64), lq.astype(np.float64),
                                   normalize=normalize))
    if math.isinf(exact):
        assert got == exact
    else:
        assert abs(got - exact) <= 1e-12 * abs(exact), (got, exact)
    if dtype == np.float32:
        # float32 rows take the same double path and round once (here to inf)
        with np.errstate(over="ignore"):
            assert kl_fast.kl_div_log(lp, lq, normalize=normalize) == np.float32(got)


def test_float32_stays_float32_and_matches_float64():
    lp = log_probs(np.float32, (40, 30), seed=1)
    lq = log_probs(np.float32, (40, 30), ninf_frac=0.0, seed=2)
    got = kl_fast.kl_div_log(lp, lq, normalize=True)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, kl_fast.kl_div_log(lp.astype(float), lq.astype(float), normalize=True),
                               rtol=1e-6, atol=1e-7)


def test_broadcast_layouts_threads_and_out():
    LP = log_probs(np.float64, (401, 50), seed=3)
    lq = special.log_softmax(np.random.default_rng(4).normal(size=50))
    expected = np.array([kl_fast.kl_div_log(row, lq) for row in LP])
    np.testing.assert_array_equal(kl_fast.kl_div_log(LP, lq), expected)
    np.testing.assert_array_equal(kl_fast.kl_div_log(LP.T, lq[:, None], axis=0), expected)
    np.testing.assert_array_equal(kl_fast.kl_div_log(np.asfortranarray(LP), lq), expected)
    one = kl_fast.kl_div_log(LP, lq, normalize=True, num_threads=1)
    two = kl_fast.kl_div_log(LP, lq, normalize=True, num_threads=2)
    assert one.tobytes() == two.tobytes()
    out = np.empty((401, 1))
    assert kl_fast.kl_div_log(LP, lq, keepdims=True, out=out) is out
    np.testing.assert_array_equal(out[:, 0], expected)
    LP0 = LP.copy()
    kl_fast.kl_div_log(LP, lq, normalize=True, base=2)
    np.testing.assert_array_equal(LP, LP0)
    # normalisation over two axes of a broadcast pair
    a = log_probs(np.float64, (3, 1, 4), ninf_frac=0.0, seed=5)
    b = log_probs(np.float64, (1, 5, 4), ninf_frac=0.0, seed=6)
    got = kl_fast.kl_div_log(a, b, axis=(0, 2), normalize=True)
    ref = reference.kl_div_log(*np.broadcast_arrays(a, b), axis=(0, 2), normalize=True)
    np.testing.assert_allclose(got, ref, rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad, word", [(np.nan, "NaN"), (np.inf, r"\+inf")])
@pytest.mark.parametrize("which", ["log_p", "log_q"])
@pytest.mark.parametrize("normalize", [False, True])
def test_bad_values_named(dtype, bad, word, which, normalize):
    LP = log_probs(dtype, (4, 6), ninf_frac=0.0, seed=7)
    LQ = log_probs(dtype, (4, 6), ninf_frac=0.0, seed=8)
    (LP if which == "log_p" else LQ)[2, 3] = bad
    with pytest.raises(ValueError, match=rf"kl_div_log: {which} contains {word}.* at index \[2, 3\]"):
        kl_fast.kl_div_log(LP, LQ, normalize=normalize)
    with pytest.raises(ValueError):
        reference.kl_div_log(LP, LQ)


def test_argument_errors():
    with pytest.raises(TypeError, match="kl_div_log: log_p must hold real numbers"):
        kl_fast.kl_div_log(np.array(["a"]), [0.0])
    with pytest.raises(ValueError, match="do not broadcast"):
        kl_fast.kl_div_log([0.0, 0.0, 0.0], [0.0, 0.0])
    with pytest.raises(ValueError, match=r"normalize=True but log_q is -inf everywhere .* index \[1\]"):
        kl_fast.kl_div_log([[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [NEG_INF, NEG_INF]], normalize=True)
    with pytest.raises(ValueError, match="base"):
        kl_fast.kl_div_log([0.0], [0.0], base=-1)
    kl_fast.kl_div_log([np.nan, 0.0], [0.0, np.inf], check=False)  # unspecified, memory-safe


@pytest.mark.parametrize("M", [30.0, 1e8, 1e15, 1e20, 1e300])
def test_normalize_with_large_normalisers_keeps_every_digit(M):
    # p = softmax([M, 0]), q = [1/2, 1/2]; closed form with eps = 1 / (1 + e^M):
    # KL = (1 - eps) log(2 (1 - eps)) + eps log(2 eps), which is ln 2 in double for M >= 1e8.
    # (lp - lq) - (lp0 - lq0) left no correct digit at M = 1e15 (0.75 relative error).
    # What remains is the rounding of the normaliser lp0 = M + log1p(e^-M) to one
    # double (half an ulp of M), which is exact for M >= 1e8.
    eps = 1.0 / (1.0 + math.exp(M)) if M < 700 else 0.0
    exact = (1 - eps) * math.log(2 * (1 - eps)) + (eps * math.log(2 * eps) if eps else 0.0)
    tol = math.ulp(M) if eps else 0.0
    got = kl_fast.kl_div_log([M, 0.0], [0.0, 0.0], normalize=True)
    assert got == pytest.approx(exact, rel=4e-16, abs=tol)
    rows = kl_fast.kl_div_log(np.array([[M, 0.0], [0.0, M]]), [0.0, 0.0], normalize=True)
    np.testing.assert_allclose(rows, [exact, exact], rtol=4e-16, atol=tol)
    if M < 3e38:
        got32 = kl_fast.kl_div_log(np.float32([M, 0.0]), np.float32([0.0, 0.0]), normalize=True)
        assert got32.dtype == np.float32
        assert float(got32) == pytest.approx(exact, rel=1.2e-7)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-13), (np.float32, 1e-6)])
@pytest.mark.parametrize("n, top, offset, depth", [
    (2, 1, 0.0, 40.0), (5, 1, 0.0, 40.0), (7, 2, 0.0, 40.0), (40, 1, 0.0, 40.0),
    (5, 1, 1e5, 40.0), (5000, 3, 0.0, 40.0), (40_000, 1, 0.0, 60.0)])
def test_normalize_keeps_a_sum_below_eps_beside_the_largest_entry(path, dtype, rtol, n, top,
                                                                   offset, depth):
    """Near-equal softmax rows whose entries other than the largest sum to
    less than eps: each normaliser is log(1 + rest), and KL is about the
    difference of the two rests.  log of the rounded 1 + rest (SciPy's
    log_softmax and the reference alike) made [0, -40] against [0, -40.1]
    20 times too large; within rtol of mpmath here on every layout (the
    same bits), the long row on two threads, and the float32 rows in float
    (|max| <= 2^16) and in double (offset 1e5)."""
    from kl_fast.bench import truth
    rng = np.random.default_rng(n + top)
    lp = np.concatenate([np.zeros(top), -depth - rng.random(n - top)]) + offset
    lq = lp.copy()
    lq[top:] -= rng.uniform(0.05, 0.15, n - top)
    lp, lq = lp.astype(dtype), lq.astype(dtype)
    exact = float(truth.kl_log(lp, lq))
    got = kl_fast.kl_div_log(lp, lq, normalize=True, num_threads=2)
    assert abs(float(got) - exact) <= rtol * exact
    P, Q = np.tile(lp, (3, 1)), np.tile(lq, (3, 1))
    for same in (kl_fast.kl_div_log(lp, lq, normalize=True, num_threads=1),
                 kl_fast.kl_div_log(np.repeat(lp, 2)[::2], np.repeat(lq, 2)[::2], normalize=True),
                 kl_fast.kl_div_log(P, Q, normalize=True),
                 kl_fast.kl_div_log(P.T.copy(), Q.T.copy(), normalize=True, axis=0)):
        np.testing.assert_array_equal(same, got)


def test_base_near_one_magnifies_subnormal_terms(path):
    """kl_div_log of rows whose terms exp(log_p) (log_p - log_q) are subnormal,
    divided by the log of a base near 1: redone at full precision (within
    1e-14 of mpmath on the given logs, or the result's own subnormal rounding)."""
    import mpmath
    rng = np.random.default_rng(22)
    LP = -rng.uniform(690.0, 744.0, (6, 3))
    LQ = -rng.uniform(600.0, 744.0, (6, 3))
    LP[0], LQ[0] = [math.log(5e-324), -np.inf, -700.0], [math.log(1e-310), -1.0, -700.0]
    base = 1.0 + 1e-15
    batch = kl_fast.kl_div_log(LP, LQ, base=base)
    np.testing.assert_array_equal(kl_fast.kl_div_log(LP.T, LQ.T, axis=0, base=base), batch)
    with mpmath.workprec(2400):
        for lp, lq, got in zip(LP, LQ, batch):
            t = mpmath.fsum(mpmath.exp(mpmath.mpf(float(a))) * (mpmath.mpf(float(a)) - mpmath.mpf(float(b)))
                            for a, b in zip(lp, lq) if a > -np.inf)
            t /= mpmath.log(mpmath.mpf(base))
            assert kl_fast.kl_div_log(lp, lq, base=base) == got
            assert abs(mpmath.mpf(float(got)) - t) <= 1e-14 * abs(t) + mpmath.mpf(2.0**-1074), (lp, lq)


def test_subnormal_weight_of_a_normal_term(path):
    """exp(log_p) below the normal range times a large difference is a normal
    term: exp(a + log|diff|) with the sum's rounding carried (it cost up to
    5.7e-14 relative, 134 ulps at a = -708.9).  Normal results within 2e-15 of
    mpmath, subnormal ones within 8 units of the last place."""
    import mpmath
    worst_normal = worst_units = 0.0
    with mpmath.workprec(200):
        for a in np.linspace(-745.0, -700.0, 301):
            for b in (-244.71919254402354, -700.5, -1e5, 30.0):
                got = kl_fast.kl_div_log([a], [b])
                t = mpmath.exp(mpmath.mpf(a)) * (mpmath.mpf(a) - mpmath.mpf(b))
                err = abs(mpmath.mpf(float(got)) - t)
                if abs(t) >= np.finfo(np.float64).tiny:
                    worst_normal = max(worst_normal, float(err / abs(t)))
                else:
                    worst_units = max(worst_units, float(err / mpmath.mpf(2.0**-1074)))
    assert worst_normal <= 2e-15 and worst_units <= 8, (worst_normal, worst_units)


def test_weight_that_underflows_to_zero_gives_zero_not_nan():
    """lp - lp0 overflowing to -inf (logs spread past DBL_MAX under normalize):
    the term's weight is 0 and so is the term, not NaN."""
    got = kl_fast.kl_div_log(np.array([1e308, -1e308]), np.array([1e308, 0.0]), normalize=True)
    assert got == 0.0


def test_float32_within_1_eps32_of_the_terms_size():
    """The docstring's bound for float32 input (float32 kernels: exp as a float
    pair, the terms in double): within 1 float32 eps of the terms' size (or of
    float32's smallest normal, for results below it) against mpmath, on rows of 1 to 40 log-probabilities, nearly equal ones and widely
    scaled ones (0.52 measured)."""
    mpmath = pytest.importorskip("mpmath")
    rng = np.random.default_rng(21)
    e32, worst = float(np.finfo(np.float32).eps), 0.0
    for p, q in mixed_rows(rng, 2000):
        lp, lq = np.log(p).astype(np.float32), np.log(q).astype(np.float32)
        got = kl_fast.kl_div_log(lp, lq)
        assert got.dtype == np.float32
        with mpmath.workprec(200):
            terms = [mpmath.exp(u) * (u - v)
                     for u, v in zip(map(mpmath.mpf, lp.tolist()), map(mpmath.mpf, lq.tolist()))]
            want, size = mpmath.fsum(terms), mpmath.fsum(abs(t) for t in terms)
        size = max(size, mpmath.mpf(float(np.finfo(np.float32).tiny)))
        worst = max(worst, float(abs(mpmath.mpf(float(got)) - want) / size) / e32)
    assert worst <= 1.0


@pytest.mark.parametrize("lp, lq, normalize", [
    ([-709.5], [-1.7e308], False),            # exp(a) subnormal, the difference near DBL_MAX
    ([-720.0], [1.7e308], False),
    ([-745.0], [1.7e308], False),
    ([-744.0, -745.0, -746.0], [1e308, 1.7e308, -1.7e308], False),
    ([0.6, 0.0, 0.6], [-1.7e308, -1.7e308, 1.7e308], False),   # the scaled sum
    ([-149.6, 0.0], [-1.7e308, 1.7e308], True),
])
def test_careful_terms_with_differences_near_the_double_range(lp, lq, normalize):
    # exp(a) times a difference beyond DBL_MAX / sqrt(2): the product of the
    # difference and exp(r) (r in [-ln2/2, ln2/2]) overflowed before its scaling
    # (inf, -inf or NaN for finite divergences); the difference's exponent is now
    # taken out first
    want = float(_mp_kl_log_base(lp, lq, None, normalize))
    got = kl_fast.kl_div_log(lp, lq, normalize=normalize)
    assert np.isfinite(got) and got == pytest.approx(want, rel=1e-14, abs=0)


@pytest.mark.skipif(np.finfo(np.longdouble).max <= np.finfo(np.float64).max,
                    reason="np.longdouble is float64 on this platform")
def test_extended_precision_logs_beyond_the_float64_range():
    """A longdouble log-softmax holds logs like -5e-435 (a probability within
    2**-1075 of 1): they were refused as below the float64 range, although 0 is
    what they mean there.  A log_p below -1.8e308 is a p that is 0 in any
    precision (-inf); a log_q that far down or a log_p that far up stays an error."""
    x = np.array([0, -1000], np.longdouble)
    lp = x - np.logaddexp.reduce(x)
    assert lp[0] != 0 and float(lp[0]) == 0.0
    assert kl_fast.kl_div_log(lp, lp) == kl_fast.kl_div_log(lp.astype(float), lp.astype(float))
    lq = np.log(np.array([0.25, 0.75], np.longdouble))
    huge = -np.longdouble(10) ** 400
    got = kl_fast.kl_div_log(np.array([huge, 0], np.longdouble), lq)
    assert got == kl_fast.kl_div_log(np.array([-np.inf, 0.0]), lq.astype(float)) == -math.log(0.75)
    with pytest.raises(ValueError, match=r"log_q contains -1e\+400 at index \[0\], beyond the "
                                         r"float64 range"):
        kl_fast.kl_div_log(lq, np.array([huge, 0], np.longdouble))
    with pytest.raises(ValueError, match=r"log_p contains 1e\+400 at index \[1\], beyond"):
        kl_fast.kl_div_log(np.array([0, -huge], np.longdouble), lq)
