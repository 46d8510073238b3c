"""js_div against its NumPy twin, SciPy, closed forms and high-precision sums."""
import decimal
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp
from scipy.spatial import distance

import kl_fast
from kl_fast import _config, reference

from conftest import exact_js, mixed_rows

DTYPES = [np.float64, np.float32]


def probs(dtype, shape, zero_frac=0.2, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.random(shape)
    a[rng.random(shape) < zero_frac] = 0.0
    return a.astype(dtype)


elements = st.one_of(st.just(0.0), st.floats(1e-6, 1e3))


@st.composite
def pq_pairs(draw):
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=7))
    p = draw(hnp.arrays(np.float64, shape, elements=elements)).astype(dtype)
    q = draw(hnp.arrays(np.float64, shape, elements=elements)).astype(dtype)
    axis = draw(st.sampled_from([None] + list(range(-len(shape), len(shape)))))
    return p, q, axis


@given(pq_pairs())
def test_matches_reference(args):
    p, q, axis = args
    got = kl_fast.js_div(p, q, axis=axis)
    assert np.asarray(got).dtype == p.dtype
    p64, q64 = p.astype(np.float64), q.astype(np.float64)
    ref = reference.js_div(p64, q64, axis=axis)
    # the textbook formula loses digits to cancellation near p == q: absolute slack
    scale = np.sum(p64 + q64, axis=axis)
    rtol = 1e-12 if p.dtype == np.float64 else 1e-6
    assert np.all(np.abs(got - ref) <= rtol * np.abs(ref) + 1e-13 * scale + 1e-300)


@given(pq_pairs(), st.sampled_from([None, 2.0, 10.0]))
def test_normalize_matches_scipy_jensenshannon(args, base):
    p, q, axis = args
    if axis is None or p.shape[axis] == 0:
        return
    p = p + 1.0  # positive sums everywhere
    q = q + 1.0
    got = kl_fast.js_div(p, q, axis=axis, normalize=True, base=base)
    with np.errstate(invalid="ignore"):  # scipy takes sqrt of a rounded -0.0...01 near p == q
        expected = distance.jensenshannon(p.astype(np.float64), q.astype(np.float64),
                                          base=base, axis=axis) ** 2
    expected = np.nan_to_num(expected, nan=0.0)
    rtol = 1e-10 if p.dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=1e-14)


def test_full_accuracy_near_equal_rows():
    # The textbook formula cancels to first order when q is close to p; the
    # kernel's series keeps the relative accuracy.
    rng = np.random.default_rng(1)
    p = rng.random(40)
    for delta in (1e-3, 1e-6, 1e-9):
        q = p * (1 + delta * rng.standard_normal(40))
        exact = exact_js(p, q)
        got = kl_fast.js_div(p, q)
        assert got == pytest.approx(exact, rel=1e-13, abs=0)
    # the README: SciPy loses it to the cancellation (its jensenshannon, squared),
    # as does the textbook formula, on normalised near-equal rows
    pn = p / p.sum()
    for delta in (1e-4, 1e-6):
        qn = pn * (1 + delta * rng.standard_normal(40))
        qn /= qn.sum()
        exact = exact_js(pn, qn)
        with np.errstate(invalid="ignore"):
            scipy_err = abs(distance.jensenshannon(pn, qn) ** 2 - exact) / exact
        m = (pn + qn) / 2
        textbook_err = abs(0.5 * np.sum(pn * np.log(pn / m)) + 0.5 * np.sum(qn * np.log(qn / m))
                           - exact) / exact
        assert abs(kl_fast.js_div(pn, qn) - exact) <= 1e-13 * exact
        assert scipy_err > 1e-9 and textbook_err > 1e-9, (delta, scipy_err, textbook_err)
    # and the log branch (|d| >= 1/2) plus the switch point
    q = p * rng.choice([0.05, 1 / 3, 3.0, 20.0], size=40)
    assert kl_fast.js_div(p, q) == pytest.approx(exact_js(p, q), rel=1e-14)


def test_closed_forms_and_bounds():
    assert kl_fast.js_div([1.0, 0.0], [0.0, 1.0]) == pytest.approx(math.log(2), rel=1e-15)
    assert kl_fast.js_div([1.0, 0.0], [0.0, 1.0], base=2) == 1.0
    assert kl_fast.js_div([0.3, 0.7], [0.3, 0.7]) == 0.0
    # 0.5 KL(p||m) + 0.5 KL(q||m) with m = (0.75, 0.25) for p = (1, 0), q = (0.5, 0.5)
    closed = 0.5 * math.log(1 / 0.75) + 0.5 * (0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25))
    assert kl_fast.js_div([1.0, 0.0], [0.5, 0.5]) == pytest.approx(closed, rel=1e-15, abs=0)
    P = probs(np.float64, (200, 17), seed=2)
    Q = probs(np.float64, (200, 17), seed=3)
    js = kl_fast.js_div(P, Q, normalize=True, base=2)
    assert np.all((js >= 0) & (js <= 1))


def test_symmetric_bit_for_bit():
    P = probs(np.float64, (50, 33), seed=4)
    Q = probs(np.float64, (50, 33), seed=5)
    assert kl_fast.js_div(P, Q).tobytes() == kl_fast.js_div(Q, P).tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_broadcast_axes_keepdims(dtype):
    P = probs(dtype, (3, 4, 9), seed=6)
    q = probs(dtype, (9,), seed=7)
    got = kl_fast.js_div(P, q)
    assert got.shape == (3, 4) and got.dtype == dtype
    expected = np.array([[exact_js(P[i, j], q) for j in range(4)] for i in range(3)])
    np.testing.assert_allclose(got, expected, rtol=1e-6 if dtype == np.float32 else 1e-14)
    for axis in (0, 1, (0, 2), None):
        Q = probs(dtype, (3, 4, 9), seed=8)
        got = kl_fast.js_div(P, Q, axis=axis, keepdims=True)
        ref = reference.js_div(P.astype(float), Q.astype(float), axis=axis, keepdims=True)
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=1e-6 if dtype == np.float32 else 1e-12)
    # normalize over several axes of a broadcast pair (each reduction is one row)
    p = probs(dtype, (3, 1, 5), zero_frac=0.0, seed=9)
    q = probs(dtype, (1, 4, 5), zero_frac=0.0, seed=10)
    got = kl_fast.js_div(p, q, axis=(0, 2), normalize=True)
    ref = reference.js_div(*np.broadcast_arrays(p.astype(float), q.astype(float)),
                           axis=(0, 2), normalize=True)
    np.testing.assert_allclose(got, ref, rtol=1e-6 if dtype == np.float32 else 1e-12)


def test_layouts_threads_out_and_inputs_untouched():
    base_p = probs(np.float64, (301, 40), seed=11)
    base_q = probs(np.float64, (301, 40), seed=12)
    P0, Q0 = base_p.copy(), base_q.copy()
    expected = kl_fast.js_div(base_p, base_q)
    np.testing.assert_array_equal(kl_fast.js_div(np.asfortranarray(base_p), base_q), expected)
    np.testing.assert_array_equal(kl_fast.js_div(base_p.T, base_q.T, axis=0), expected)
    np.testing.assert_array_equal(kl_fast.js_div(base_p[::2, ::3], base_q[::2, ::3]),
                                  kl_fast.js_div(base_p[::2, ::3].copy(), base_q[::2, ::3].copy()))
    ro = base_p.copy()
    ro.flags.writeable = False
    np.testing.assert_array_equal(kl_fast.js_div(ro, base_q), expected)
    one = kl_fast.js_div(base_p, base_q, normalize=True, num_threads=1)
    two = kl_fast.js_div(base_p, base_q, normalize=True, num_threads=2)
    assert one.tobytes() == two.tobytes()
    out = np.empty(301, dtype=np.float32)
    assert kl_fast.js_div(base_p.astype(np.float32), base_q.astype(np.float32), out=out) is out
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    np.testing.assert_array_equal(base_p, P0)
    np.testing.assert_array_equal(base_q, Q0)


def test_dtypes_and_scalars():
    p32 = np.array([0.25, 0.75], dtype=np.float32)
    q32 = np.array([0.5, 0.5], dtype=np.float32)
    assert kl_fast.js_div(p32, q32).dtype == np.float32
    assert kl_fast.js_div(p32, q32.astype(np.float64)).dtype == np.float64
    assert kl_fast.js_div([1, 3], [2, 2]).dtype == np.float64
    assert kl_fast.js_div(np.array([], np.float32), np.array([], np.float32)) == 0.0
    assert kl_fast.js_div(0.5, 0.25) == pytest.approx(exact_js([0.5], [0.25]), rel=1e-15, abs=0)


def test_extreme_magnitudes():
    # x + y overflows (careful path halves the pair); tiny values stay exact
    p = np.array([1.5e308, 1e-320, 0.0])
    q = np.array([1.2e308, 0.0, 1e-320])
    expected = exact_js(p, q)
    assert kl_fast.js_div(p, q) == pytest.approx(expected, rel=1e-13)


def test_check_false_is_memory_safe():
    kl_fast.js_div([0.5, np.nan, -1.0, np.inf], [0.5, 0.5, 0.5, 0.5], check=False)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad, word", [(-0.25, "negative"), (np.nan, "NaN"), (np.inf, "infinite")])
@pytest.mark.parametrize("which", ["p", "q"])
@pytest.mark.parametrize("normalize", [False, True])
def test_bad_values_named(dtype, bad, word, which, normalize):
    P = probs(dtype, (4, 6), zero_frac=0.0, seed=13)
    Q = probs(dtype, (4, 6), zero_frac=0.0, seed=14)
    (P if which == "p" else Q)[2, 3] = bad
    with pytest.raises(ValueError, match=rf"js_div: {which} contains .*{word}.* at index \[2, 3\]"):
        kl_fast.js_div(P, Q, normalize=normalize)
    with pytest.raises(ValueError):
        reference.js_div(P, Q)


def test_argument_errors():
    p = [0.5, 0.5]
    with pytest.raises(ValueError, match="do not broadcast"):
        kl_fast.js_div([0.2, 0.3, 0.5], p)
    with pytest.raises(TypeError, match="js_div: q must hold real numbers"):
        kl_fast.js_div(p, np.array([1 + 1j, 2]))
    for base in (0, 1, np.nan):
        with pytest.raises(ValueError, match="base"):
            kl_fast.js_div(p, p, base=base)
    with pytest.raises(np.exceptions.AxisError):
        kl_fast.js_div(p, p, axis=1)
    with pytest.raises(ValueError, match=r"js_div: normalize=True but q sums to 0.0 .* index \[1\]"):
        kl_fast.js_div([[1.0, 1.0], [1.0, 1.0]], [[1.0, 1.0], [0.0, 0.0]], normalize=True)
    # sums that overflow are rescaled (normalising is scale-invariant), as in kl_div
    assert kl_fast.js_div([1e308, 1e308], p, normalize=True) == kl_fast.js_div([1.0, 1.0], p,
                                                                              normalize=True)


@pytest.mark.parametrize("path", kl_fast._kernels.available_isas())
def test_each_kernel_path_agrees(path):
    """Every instruction-set path of the JS, log-space and pair kernels agrees."""
    from kl_fast import _div_kernels

    P = probs(np.float64, (8, 301), seed=15)
    Q = probs(np.float64, (8, 301), seed=16)
    previous = kl_fast._kernels.current_isa()
    try:
        assert _config.select_isa(path) == path
        js = kl_fast.js_div(P, Q)
        js32 = kl_fast.js_div(P.astype(np.float32), Q.astype(np.float32))
        with np.errstate(divide="ignore"):
            kll = kl_fast.kl_div_log(np.log(P), np.log(Q + 0.1), normalize=True)
        diag = np.diag(kl_fast.kl_pairwise(P))
    finally:
        _config.select_isa(previous)
    np.testing.assert_allclose(js, [exact_js(p, q) for p, q in zip(P, Q)], rtol=1e-14)
    # float32 input is computed in float (sums in double): on this data within one
    # float32 rounding of the exact value
    np.testing.assert_allclose(js32, [exact_js(p, q) for p, q in zip(P.astype(np.float32), Q.astype(np.float32))],
                               rtol=2.0 ** -24)
    expected = reference.kl_div(P, Q + 0.1, normalize=True)
    np.testing.assert_allclose(kll, expected, rtol=1e-12)
    np.testing.assert_array_equal(diag, np.zeros(8))


@pytest.mark.parametrize("path", kl_fast._kernels.available_isas())
@pytest.mark.parametrize("n, value", [(8, 1e308), (2048, 1e306), (700, 1.5e306)])
def test_overflowing_sum_is_inf_not_nan(path, n, value):
    """A JS sum beyond DBL_MAX is +inf (careful path: n=8; fast path: finite blocks)."""
    from kl_fast import _div_kernels

    p, q = np.full(n, value), np.zeros(n)
    assert exact_js(p, q) == math.inf          # the 50-digit sum exceeds DBL_MAX
    previous = kl_fast._kernels.current_isa()
    try:
        _config.select_isa(path)
        got = kl_fast.js_div(p, q)
        got_rows = kl_fast.js_div(np.stack([p, np.ones(n)]), np.stack([q, np.ones(n)]))
        got_pairs = kl_fast.js_pairwise(p[None], q[None])
    finally:
        _config.select_isa(previous)
    assert got == math.inf
    np.testing.assert_array_equal(got_rows, [math.inf, 0.0])
    np.testing.assert_array_equal(got_pairs, [[math.inf]])


@pytest.mark.parametrize("scale", [1e-310, 5e-324, 2.0 ** -1030])
def test_normalize_tiny_sums(scale):
    """Rows summing below 1 / DBL_MAX (whose reciprocal overflows) normalise correctly."""
    p = np.array([1.0, 2.0]) * scale
    q = np.array([1.0, 1.0])
    # normalised exactly in decimal: the subnormal values are exact binary fractions
    with decimal.localcontext() as ctx:
        ctx.prec = 50
        ps = [decimal.Decimal(float(x)) for x in p]
        expected = exact_js([float(x / sum(ps)) for x in ps], [0.5, 0.5])
    assert kl_fast.js_div(p, q, normalize=True) == pytest.approx(expected, rel=1e-14, abs=0)
    assert kl_fast.js_div(q, p, normalize=True) == pytest.approx(expected, rel=1e-14, abs=0)
    pair = kl_fast.js_pairwise(np.stack([p, q]), normalize=True)
    np.testing.assert_allclose(pair, [[0.0, expected], [expected, 0.0]], rtol=1e-14, atol=0)
    # still bit-identical to js_div
    assert pair[0, 1] == kl_fast.js_div(p, q, normalize=True)
    both = kl_fast.js_div(p, p[::-1], normalize=True)
    assert both == pytest.approx(exact_js([1 / 3, 2 / 3], [2 / 3, 1 / 3]), rel=1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p_exp, q_exp", [(1000, -1074), (-1074, 1000), (1021, -1074),
                                          (1021, 0), (958, -1070), (-149, 100)])
def test_normalize_sums_far_apart(path, dtype, p_exp, q_exp):
    """One sum subnormal and the other huge (no common power of two makes both
    reciprocals normal), or a sum above 2**1022 (a subnormal reciprocal): every
    path gives the JS of the exact shares."""
    from kl_fast import _div_kernels, _divergences, _pairwise

    top = np.finfo(dtype)
    p_exp, q_exp = (min(max(e, -149), 100) if dtype == np.float32 else e for e in (p_exp, q_exp))
    p = (np.array([1.0, 3.0, 0.0]) * 2.0 ** p_exp).astype(dtype)       # shares 1/4, 3/4, 0
    q = (np.array([3.0, 1.0, 0.0]) * 2.0 ** q_exp).astype(dtype)       # shares 3/4, 1/4, 0
    assert np.all(np.isfinite(p)) and np.all(p <= top.max) and p[0] > 0 and q[1] > 0
    expected = exact_js([0.25, 0.75, 0.0], [0.75, 0.25, 0.0])
    rows_p, rows_q = np.stack([p, q, p]), np.stack([q, p, p])           # JS, JS, 0
    want = np.array([expected, expected, 0.0])
    got = {
        "entry": _div_kernels.fast_path("js_div", rows_p, rows_q, normalize=True),
        "public": kl_fast.js_div(rows_p, rows_q, normalize=True),
        "python": _divergences.js_div_python(rows_p, rows_q, normalize=True),
        "pairwise entry": np.diagonal(_div_kernels.fast_path("js_pairwise", rows_p, rows_q,
                                                             normalize=True)),
        "pairwise python": np.diagonal(_pairwise.js_pairwise_python(rows_p, rows_q,
                                                                    normalize=True)),
    }
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    for how, value in got.items():
        assert value is not None, how
        assert value.dtype == dtype, how
        np.testing.assert_allclose(value, want, rtol=rtol, atol=1e-16, err_msg=how)
    # the pairwise entries are js_div's, bit for bit
    np.testing.assert_array_equal(got["pairwise entry"], got["public"])
    np.testing.assert_array_equal(got["pairwise python"], got["public"])


@pytest.mark.parametrize("layout", ["row", "rows", "split"])
def test_raw_sum_beyond_range_scaled_back(path, layout):
    """A JS sum beyond DBL_MAX that base brings back into the range is finite and
    exact (JS of disjoint rows: sum(p) log(2) / 2 nats) on every path."""
    from kl_fast import _div_kernels, _divergences

    p, q = np.full(4, 1.7e308), np.zeros(4)
    expected = float(4 * np.longdouble(1.7e308) * np.log(np.longdouble(2)) / 2
                     / np.log(np.longdouble(10)))
    kwargs = {"base": 10.0}
    if layout == "rows":                   # short float64 rows: computed across rows
        p, q = np.stack([p, [0.5, 0.5, 0, 0]]), np.stack([q, [0.5, 0.5, 0, 0]])
        expected = [expected, 0.0]
    if layout == "split":                  # a broadcast layout reduced in partial rows
        p, q = np.broadcast_to(p.reshape(2, 1, 2), (2, 2, 2)), np.zeros((2, 2))
        kwargs["axis"] = (0, 2)
        expected = [expected, expected]
    python = _divergences.js_div_python(p, q, **kwargs)
    assert _div_kernels.fast_path("js_div", p, q, **kwargs) is None   # the Python layer's
    np.testing.assert_array_equal(kl_fast.js_div(p, q, **kwargs), python)
    np.testing.assert_allclose(python, expected, rtol=1e-14)


def test_base_near_one_magnifies_subnormal_terms(path):
    """JS of rows whose terms are subnormal, divided by the log of a base near
    1: redone at full precision (within 1e-14 of mpmath, or the result's own
    subnormal rounding), 1-D, in a batch and along axis=0."""
    import mpmath
    rng = np.random.default_rng(21)
    P = np.ldexp(rng.uniform(1, 2, (6, 3)), rng.integers(-1074, -900, (6, 3)))
    Q = np.ldexp(rng.uniform(1, 2, (6, 3)), rng.integers(-1074, -900, (6, 3)))
    P[0], Q[0] = [5e-324, 0.0, 0.5], [0.0, 1e-320, 0.5]
    P[1, 2] = 0.0
    base = 1.0 + 1e-12
    batch = kl_fast.js_div(P, Q, base=base)
    np.testing.assert_array_equal(kl_fast.js_div(P.T, Q.T, axis=0, base=base), batch)
    from kl_fast.bench import truth
    with mpmath.workprec(2400):
        for p, q, got in zip(P, Q, batch):
            t = truth.js(p, q, prec=2400) / mpmath.log(mpmath.mpf(base))
            assert kl_fast.js_div(p, q, base=base) == got
            assert abs(mpmath.mpf(float(got)) - t) <= 1e-14 * abs(t) + mpmath.mpf(2.0**-1074), (p, q)


@pytest.mark.parametrize("fn", ["js_div", "kl_div_log"])
def test_tuple_axis_result_is_contiguous_and_small(fn):
    """The result of a reduction over several axes is its own C-contiguous
    array, not a strided view keeping the kernel's (rows, 3) buffer alive."""
    p = np.random.default_rng(0).random((6, 7, 5))
    q = p[::-1].copy()
    a, b = (np.log(p), np.log(q)) if fn == "kl_div_log" else (p, q)
    got = getattr(kl_fast, fn)(a, b, axis=(0, 2))
    assert got.flags.c_contiguous
    assert got.base is None or got.base.nbytes == got.nbytes


def _js_exact(p, q):
    from kl_fast.bench import truth   # needs mpmath: the callers skip without it
    return truth.js(p, q)


def test_float32_within_4_eps32_where_the_logs_cancel_most():
    """The docstring's bound for float32 input on single pairs with
    d = (p - q) / (p + q) just above 1/2, where the pair term leaves its series
    for the two logs, which cancel by a factor of about 2.3 (2.9 measured, 3.4
    on the baseline kernels; 10.0 before the rounding of u = 1 + d and
    v = 1 - d was carried)."""
    mpmath = pytest.importorskip("mpmath")
    rng = np.random.default_rng(21)
    e32, worst = float(np.finfo(np.float32).eps), 0.0
    d = rng.uniform(0.5, 0.56, 3000)
    q = rng.uniform(0.5, 2.0, 3000)
    p = q * (1 + d) / (1 - d)
    for a, b in zip(p.astype(np.float32), q.astype(np.float32)):
        got = kl_fast.js_div(np.array([a]), np.array([b]))
        want = _js_exact(np.array([a]), np.array([b]))
        worst = max(worst, float(abs(mpmath.mpf(float(got)) - want) / abs(want)) / e32)
    assert worst <= 4.0


def test_float32_within_4_eps32_of_the_result():
    """The docstring's bound for float32 input (float32 kernels: the terms in
    float) on rows of 1 to 40 random, nearly equal and widely scaled values:
    within 4 float32 eps of the result against mpmath (3.0 measured, 5.7 before
    the rounding of u and v was carried; the float64 result rounded once would
    be within 0.5)."""
    mpmath = pytest.importorskip("mpmath")
    rng = np.random.default_rng(20)
    e32, worst = float(np.finfo(np.float32).eps), 0.0
    for p, q in mixed_rows(rng, 2000):
        p, q = p.astype(np.float32), q.astype(np.float32)
        got = kl_fast.js_div(p, q)
        assert got.dtype == np.float32
        want = _js_exact(p, q)
        if want != 0:
            worst = max(worst, float(abs(mpmath.mpf(float(got)) - want) / abs(want)) / e32)
    assert worst <= 4.0


@pytest.mark.parametrize("band", [(0.5, 0.6), (0.6, 0.999)])
def test_float64_where_the_logs_cancel_within_4_eps_and_no_worse_than_numpy(band):
    """Pairs with d = (p - q) / (p + q) in the band where the pair term takes
    the two logs (|d| >= 1/2): within 4 eps of mpmath (2.7 measured; up to 9.6
    before the rounding of u = 1 + d and v = 1 - d was carried) and no worse
    than the textbook formula with NumPy's logs (6.1 and 3.6) on the same
    pairs, on the fast path and on the careful one (pairs above DBL_MAX / 2,
    which it scales by 2**-64)."""
    mpmath = pytest.importorskip("mpmath")
    rng = np.random.default_rng(22)
    d = rng.uniform(*band, 600)
    q = rng.uniform(0.5, 2.0, 600)
    p = q * (1 + d) / (1 - d)
    eps = float(np.finfo(np.float64).eps)
    # 1, then per pair the power of two that takes p + q above DBL_MAX / 2
    for scale in (np.ones(600), 0.9 * np.ldexp(1.0, 1024 - np.frexp(p + q)[1])):
        a, b = p * scale, q * scale
        m = (a + b) / 2
        numpy_form = 0.5 * (a * np.log(a / m) + b * np.log(b / m))
        got = kl_fast.js_div(a[:, None], b[:, None])
        ours = numpys = 0.0
        for x, y, g, t in zip(a, b, got, numpy_form):
            want = _js_exact(np.array([x]), np.array([y]))
            ours = max(ours, float(abs(mpmath.mpf(float(g)) - want) / want) / eps)
            numpys = max(numpys, float(abs(mpmath.mpf(float(t)) - want) / want) / eps)
        assert ours <= 4.0 and ours <= numpys, (scale, ours, numpys)


def test_float32_normalize_proportional_rows_within_the_documented_floor():
    # the docstring's floor: the sums' reciprocals round in float64, so rows that
    # normalise to the same values give at most about 2**-109, not always 0
    rng = np.random.default_rng(5)
    a, b = (rng.uniform(1.0, 1e6, 200).astype(np.float32) for _ in range(2))
    got = np.array([kl_fast.js_div(a[i:i + 1], b[i:i + 1], normalize=True) for i in range(200)])
    assert got.dtype == np.float32 and np.all((got >= 0) & (got <= 2.0 ** -108))
    # a power-of-two ratio scales the reciprocals exactly: 0
    p = rng.random((20, 7)).astype(np.float32) + np.float32(0.01)
    np.testing.assert_array_equal(kl_fast.js_div(p, p * np.float32(8.0), normalize=True),
                                  np.zeros(20, np.float32))


def test_disjoint_supports_exceed_log2_by_at_most_4_ulps():
    # docs/semantics.md: normalised JS is at most log 2 up to rounding; disjoint supports,
    # where it is exactly log 2, may give a few ulps more (3 seen, on rows whose
    # values span many orders of magnitude)
    rng = np.random.default_rng(4)
    worst = {np.float64: 0.0, np.float32: 0.0}
    for _ in range(200):
        n = int(rng.integers(2, 300))
        P = rng.random((20, n)) ** rng.uniform(1, 30)
        Q = rng.random((20, n)) ** rng.uniform(1, 30)
        mask = rng.random(n) < 0.5
        if mask.all() or not mask.any():
            continue
        P[:, mask] = 0
        Q[:, ~mask] = 0
        P[:, np.flatnonzero(~mask)[0]] += 1e-3
        Q[:, np.flatnonzero(mask)[0]] += 1e-3
        for dt in worst:
            J = kl_fast.js_pairwise(P.astype(dt), Q.astype(dt), normalize=True)
            log2 = np.log(dt(2))
            worst[dt] = max(worst[dt], float((J.max() - log2) / np.spacing(log2)))
            np.testing.assert_array_equal(
                J[3], kl_fast.js_div(P[3].astype(dt), Q.astype(dt), normalize=True))
    assert max(worst.values()) <= 4.0
