"""The float32 kernels of js_div and kl_div_log (computed in float, sums in
double), on every kernel path: their exponential against long double, values
against the NumPy twins and decimal sums in float64, the paths they hand back
to the float64 kernel, layouts, threads and symmetry bit for bit."""
import decimal

import numpy as np
import pytest

import kl_fast
from kl_fast import _div_kernels, reference

from conftest import exact_js


def float_ulps(got, ref_ld):
    """|got - ref| in units of a float32 ulp at ref, as if float32 had double's exponent range."""
    _, e = np.frexp(ref_ld)
    return np.abs(got.astype(np.longdouble) - ref_ld) / np.ldexp(np.longdouble(1), e - 24)


# ---- the exponential --------------------------------------------------------

def test_exp_split_accuracy_whole_range(path, rng):
    """exp(x + xlo) on the kernels' domain x in [-700, 88], |xlo| small: within 2 float ulp."""
    x = np.concatenate([
        rng.uniform(-700, 88, 400_000),
        rng.uniform(-1, 1, 50_000),
        rng.uniform(-1e-6, 1e-6, 10_000),
        np.linspace(-700, 88, 50_001),
        [-700, 88, 0, -0.0, np.log(2) / 2, -np.log(2) / 2],
    ]).astype(np.float32)
    for xlo in (np.zeros_like(x),
                (rng.uniform(-2, 2, x.size) * np.spacing(np.abs(x))).astype(np.float32),
                rng.uniform(-2 ** -8, 2 ** -8, x.size).astype(np.float32)):
        got = kl_fast._kernels.math_map("exp_split", np.stack([x, xlo]), path)
        ref = np.exp(x.astype(np.longdouble) + xlo.astype(np.longdouble))
        err = float_ulps(got, ref)
        assert np.max(err) <= 2.0, x[np.argmax(err)]
    assert kl_fast._kernels.math_map("exp_split", np.zeros((2, 1), np.float32), path)[0] == 1.0


# ---- js_div ------------------------------------------------------------------

def rows(rng, shape, zero_frac=0.1):
    a = rng.random(shape)
    a[rng.random(shape) < zero_frac] = 0.0
    return a.astype(np.float32)


@pytest.mark.parametrize("normalize", [False, True])
def test_js_float32_matches_float64(path, rng, normalize):
    P = rows(rng, (64, 517)) * np.float32(3)
    Q = rows(rng, (64, 517))
    got = kl_fast.js_div(P, Q, normalize=normalize)
    assert got.dtype == np.float32
    # the float32 values are exact in float64: the twin sees the same inputs
    ref = reference.js_div(P.astype(np.float64), Q.astype(np.float64), normalize=normalize)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=0)


@pytest.mark.parametrize("delta", [1e-2, 1e-4, 1e-6])
@pytest.mark.parametrize("normalize", [False, True])
def test_js_float32_series_near_equal_rows(path, rng, delta, normalize):
    """q close to p: the series keeps float32 relative accuracy (the textbook formula cannot)."""
    p = rng.random(40).astype(np.float32)
    q = (p * (1 + delta * rng.standard_normal(40))).astype(np.float32)
    if normalize:
        # p / sum(p) in 50 digits, then JS of the normalised pair
        with decimal.localcontext() as ctx:
            ctx.prec = 50
            ps = sum(decimal.Decimal(float(v)) for v in p)
            qs = sum(decimal.Decimal(float(v)) for v in q)
            pn = [decimal.Decimal(float(v)) / ps for v in p]
            qn = [decimal.Decimal(float(v)) / qs for v in q]
            exact = exact_js([float(v) for v in pn], [float(v) for v in qn])
    else:
        exact = exact_js(p, q)
    got = kl_fast.js_div(p, q, normalize=normalize)
    assert got == pytest.approx(exact, rel=1e-6, abs=0)


def test_js_float32_layouts_threads_symmetry(path, rng):
    P = rows(rng, (300, 1031))
    Q = rows(rng, (300, 1031))
    for normalize in (False, True):
        base = kl_fast.js_div(P, Q, normalize=normalize, num_threads=1)
        assert kl_fast.js_div(P, Q, normalize=normalize, num_threads=2).tobytes() == base.tobytes()
        assert kl_fast.js_div(Q, P, normalize=normalize).tobytes() == base.tobytes()
        strided = kl_fast.js_div(np.asfortranarray(P), Q[:, None, :][:, 0, :], normalize=normalize)
        assert strided.tobytes() == base.tobytes()
        assert kl_fast.js_div(P.T, Q.T, axis=0, normalize=normalize).tobytes() == base.tobytes()
        pairs = kl_fast.js_pairwise(P[:5], Q[:7], normalize=normalize)
        each = np.array([[kl_fast.js_div(p, q, normalize=normalize) for q in Q[:7]] for p in P[:5]])
        assert pairs.tobytes() == each.tobytes()


@pytest.mark.parametrize("case", ["subnormal", "huge", "tiny_scale", "mixed_zeros"])
def test_js_float32_values_handed_to_float64(path, case):
    """Rows the float kernel hands back (subnormal sums, sums near FLT_MAX, a p
    underflowing) give the float64 kernel's exact semantics."""
    rng = np.random.default_rng(5)
    p = rng.random(50)
    q = rng.random(50)
    if case == "subnormal":
        p[:10] = 1e-44
        q[:10] = 0.0
    elif case == "huge":
        p[3] = 3e38
        q[3] = 2e38
    elif case == "tiny_scale":
        p[0] = 1e30        # normalised, the other entries of p underflow float
    else:
        p[::2] = 0.0
        q[::3] = 0.0
    p32, q32 = p.astype(np.float32), q.astype(np.float32)
    got = kl_fast.js_div(p32, q32, normalize=case == "tiny_scale")
    if case == "tiny_scale":
        expected = reference.js_div(p32.astype(np.float64), q32.astype(np.float64), normalize=True)
    else:
        expected = exact_js(p32, q32)
    assert np.isfinite(got)
    assert got == pytest.approx(expected, rel=1e-6)


# ---- kl_div_log --------------------------------------------------------------

def logits(rng, shape, scale=2.0, masked=0.1):
    a = rng.normal(0.0, scale, shape)
    a[rng.random(shape) < masked] = -np.inf
    a[:, 0] = 0.0
    return a


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("scale", [0.5, 3.0, 20.0])
def test_kl_log_float32_matches_float64(path, rng, normalize, scale):
    lp, lq = logits(rng, (64, 517), scale), logits(rng, (64, 517), scale, masked=0.0)
    if not normalize:
        with np.errstate(divide="ignore"):
            lp = lp - np.log(np.exp(lp).sum(axis=1, keepdims=True))
            lq = lq - np.log(np.exp(lq).sum(axis=1, keepdims=True))
    lp, lq = lp.astype(np.float32), lq.astype(np.float32)
    got = kl_fast.kl_div_log(lp, lq, normalize=normalize)
    assert got.dtype == np.float32
    ref = reference.kl_div_log(lp.astype(np.float64), lq.astype(np.float64), normalize=normalize)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)


def test_kl_log_float32_near_equal_normalized(path, rng):
    """log_q a small perturbation of log_p, unnormalised: the float32 result stays
    within 1e-8 of the float64 twin although KL itself is about 1e-7."""
    lp = logits(rng, (32, 1000), 2.0, masked=0.0).astype(np.float32) + np.float32(7.5)
    lq = (lp + rng.normal(0, 1e-3, lp.shape)).astype(np.float32) - np.float32(3.25)
    got = kl_fast.kl_div_log(lp, lq, normalize=True)
    ref = reference.kl_div_log(lp.astype(np.float64), lq.astype(np.float64), normalize=True)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-8)


def test_kl_log_float32_ranges(path):
    """Exponents far below the row's top (kept, handed back, or negligible), large
    logits (handed back), -inf on either side, the +inf of lq == -inf."""
    ninf = -np.inf
    cases = [
        ([0.0, -50.0, -100.0, -200.0], [-1.0, -2.0, -3.0, -4.0], True),      # float exp subnormal
        ([0.0, -800.0, -1.0], [0.0, -1e30, -2.0], True),                       # -1500 < a < -700
        ([0.0, -1e9, -3.0e38], [0.0, 1.0, 5.0], True),                         # a < -1500: 0
        ([1e5, 1e5 - 1.0, 1e5 - 2.5], [3.0, 2.0, 1.0], True),                  # |lp0| > 2^16
        ([89.0, 0.0], [88.9, 0.0], False),                                     # a > 88
        ([0.0, ninf, -1.0], [ninf, 0.0, -1.0], False),                          # +inf
        ([0.0, ninf, -1.0], [-0.5, ninf, -1.0], False),                         # both -inf: 0
    ]
    for lp, lq, normalize in cases:
        lp32, lq32 = np.array(lp, np.float32), np.array(lq, np.float32)
        got = kl_fast.kl_div_log(lp32, lq32, normalize=normalize)
        ref = reference.kl_div_log(lp32.astype(np.float64), lq32.astype(np.float64),
                                   normalize=normalize)
        if np.isinf(ref):
            assert got == ref
        else:
            assert got == pytest.approx(ref, rel=1e-6, abs=1e-30), (lp, lq)


def test_kl_log_float32_layouts_threads(path, rng):
    lp = logits(rng, (300, 1031)).astype(np.float32)
    lq = logits(rng, (300, 1031), masked=0.0).astype(np.float32)
    for normalize in (False, True):
        base = kl_fast.kl_div_log(lp, lq, normalize=normalize, num_threads=1)
        assert kl_fast.kl_div_log(lp, lq, normalize=normalize, num_threads=2).tobytes() == base.tobytes()
        assert kl_fast.kl_div_log(np.asfortranarray(lp), lq, normalize=normalize).tobytes() == base.tobytes()
        assert kl_fast.kl_div_log(lp.T, lq.T, axis=0, normalize=normalize).tobytes() == base.tobytes()


@pytest.mark.parametrize("bad, word", [(np.nan, "NaN"), (np.inf, r"\+inf")])
def test_kl_log_float32_bad_value_in_a_long_row(path, bad, word):
    """A bad value deep in a long row (past the first block) is named with its index."""
    lp = np.zeros((2, 3000), np.float32)
    lq = np.zeros((2, 3000), np.float32)
    lq[1, 2500] = bad
    with pytest.raises(ValueError, match=rf"kl_div_log: log_q contains {word}.* index \[1, 2500\]"):
        kl_fast.kl_div_log(lp, lq, normalize=True)
    p = np.ones((2, 3000), np.float32)
    p[1, 2999] = -1.0
    with pytest.raises(ValueError, match=r"js_div: p contains a negative value .* index \[1, 2999\]"):
        kl_fast.js_div(p, np.ones_like(p))
