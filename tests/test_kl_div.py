"""kl_div against its NumPy twin, SciPy, closed forms and the tutorial's numbers."""
import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp
from scipy import special, stats

import kl_fast
from kl_fast import reference

DTYPES = [np.float64, np.float32]


def exact_kl(p, q, axis=-1):
    """Long-double terms, summed in long double: an independent near-exact value."""
    p = np.asarray(p, dtype=np.longdouble)
    q = np.asarray(q, dtype=np.longdouble)
    with np.errstate(all="ignore"):
        t = np.where(p > 0, p * (np.log(p) - np.log(q)), 0)
        t = np.where((p > 0) & (q == 0), np.inf, t)
    return np.sum(t, axis=axis)


def probs(dtype, shape, zero_frac=0.2, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.random(shape)
    a[rng.random(shape) < zero_frac] = 0.0
    return a.astype(dtype)


# ---- the tutorial ---------------------------------------------------------------

GRID = np.arange(-10, 10, 0.001)


@pytest.mark.parametrize(
    "pa, qa, expected, continuous",
    [((0, 2), (2, 2), 499.9997170653, 0.5),
     ((0, 2), (5, 4), 1099.4021278, 1.0993972),
     ((5, 4), (0, 2), 2259.9214595, 3.9318528)],
)
def test_tutorial_values(pa, qa, expected, continuous):
    p = stats.norm.pdf(GRID, *pa)
    q = stats.norm.pdf(GRID, *qa)
    got = kl_fast.kl_div(p, q)
    assert isinstance(got, np.float64)
    assert got == pytest.approx(expected, rel=1e-10)
    assert got == pytest.approx(float(reference.kl_div(p, q)), rel=1e-13)
    scaled = kl_fast.kl_div(p, q, dx=0.001)
    assert scaled == pytest.approx(got * 0.001, rel=1e-15, abs=0)
    if pa[1] == 2:  # the grid holds (almost) all of p's mass: dx-scaled ~ continuous
        assert scaled == pytest.approx(continuous, rel=1e-5)


def test_closed_form_normals():
    mu1, s1, mu2, s2 = 0.0, 2.0, 2.0, 2.0
    closed = math.log(s2 / s1) + (s1**2 + (mu1 - mu2) ** 2) / (2 * s2**2) - 0.5
    p = stats.norm.pdf(GRID, mu1, s1)
    q = stats.norm.pdf(GRID, mu2, s2)
    assert kl_fast.kl_div(p, q, dx=0.001) == pytest.approx(closed, rel=1e-6)


# ---- generated agreement --------------------------------------------------------

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
def test_matches_reference_and_scipy(args):
    p, q, axis = args
    got = kl_fast.kl_div(p, q, axis=axis)
    assert np.asarray(got).dtype == p.dtype
    p64 = p.astype(np.float64)
    q64 = q.astype(np.float64)
    ref = reference.kl_div(p64, q64, axis=axis, check=False)
    with np.errstate(all="ignore"):
        sp = special.rel_entr(p64, q64).sum(axis=axis)
    if p.dtype == np.float64:
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(got, sp, rtol=1e-12, atol=1e-9)
    else:
        # float32 ratios carry a rounding of p/q: an absolute error of about
        # eps32 * p per term, which no float32 computation avoids.
        got64 = np.asarray(got, dtype=np.float64)
        np.testing.assert_array_equal(np.isinf(got64), np.isinf(ref))
        finite = np.isfinite(ref)
        bound = np.asarray(1e-6 * np.abs(ref) + 4 * np.finfo(np.float32).eps * np.sum(p64, axis=axis))
        got64, ref, sp, finite = (np.atleast_1d(a) for a in (got64, ref, sp, finite))
        bound = np.atleast_1d(bound)
        assert np.all(np.abs(got64[finite] - ref[finite]) <= bound[finite] + 1e-9)
        assert np.all(np.abs(got64[finite] - sp[finite]) <= bound[finite] + 1e-9)


@given(pq_pairs(), st.sampled_from([2.0, math.e, 10.0]))
def test_normalize_base_matches_scipy_entropy(args, base):
    p, q, axis = args
    if axis is None or p.shape[axis] == 0:
        return
    p = p + 1.0  # positive sums everywhere
    q = q + 1.0
    got = kl_fast.kl_div(p, q, axis=axis, normalize=True, base=base)
    expected = stats.entropy(p.astype(np.float64), q.astype(np.float64), base=base, axis=axis)
    # float32 terms carry ~1e-7 relative error each; normalising subtracts
    # log(Q/P), so the float32 bound is absolute as well as relative.
    rtol, atol = (1e-11, 1e-12) if p.dtype == np.float64 else (1e-5, 1e-6)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_against_single_q(dtype):
    P = probs(dtype, (50, 33), seed=1)
    q = probs(dtype, (33,), zero_frac=0.0, seed=2)
    got = kl_fast.kl_div(P, q)
    expected = np.array([kl_fast.kl_div(row, q) for row in P])
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_allclose(got, exact_kl(P, q).astype(np.float64), rtol=1e-6 if dtype == np.float32 else 1e-13)


def test_broadcast_does_not_materialise_q():
    P = probs(np.float64, (2000, 500), zero_frac=0.0, seed=3)
    q = probs(np.float64, (500,), zero_frac=0.0, seed=4)
    kl_fast.kl_div(P, q)  # warm up
    tracemalloc.start()
    kl_fast.kl_div(P, q)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < P.nbytes / 10


@pytest.mark.parametrize("dtype", DTYPES)
def test_axes_keepdims_and_axis_none(dtype):
    p = probs(dtype, (3, 4, 5), seed=5)
    q = probs(dtype, (3, 4, 5), zero_frac=0.0, seed=6)
    for axis in (0, 1, 2, -1, (0, 2), None):
        got = kl_fast.kl_div(p, q, axis=axis, keepdims=True)
        ref = reference.kl_div(p.astype(float), q.astype(float), axis=axis, keepdims=True)
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=1e-6 if dtype == np.float32 else 1e-13)


def test_axis_none_with_broadcast_q():
    P = probs(np.float64, (40, 9), seed=7)
    q = probs(np.float64, (9,), zero_frac=0.0, seed=8)
    got = kl_fast.kl_div(P, q, axis=None)
    assert got == pytest.approx(float(exact_kl(P, q, axis=None)), rel=1e-13)


@pytest.mark.parametrize("func", [kl_fast.kl_div, kl_fast.js_div])
@pytest.mark.parametrize("dtype", DTYPES)
def test_broadcast_over_several_reduction_axes_has_the_copys_bits(func, dtype):
    """A reduction over several axes, one input broadcast along them, gives the
    bits of the broadcast copied out: it reduced the last axis and added the
    partial sums (1-2 ulp apart in 720 of 1,600 cases of a review)."""
    rng = np.random.default_rng(3)
    for trial in range(40):
        p = (rng.random(41) + 0.1).astype(dtype)
        q = (rng.random((9, 41)) + 0.1).astype(dtype)
        p_copy = np.broadcast_to(p, q.shape).copy()
        for axis in (None, (0, 1), (1, 0)):
            for normalize in (False, True):
                np.testing.assert_array_equal(
                    func(p, q, axis=axis, normalize=normalize),
                    func(p_copy, q, axis=axis, normalize=normalize))
        p3 = (rng.random((5, 1, 7)) + 0.1).astype(dtype)
        q3 = (rng.random((5, 6, 7)) + 0.1).astype(dtype)
        np.testing.assert_array_equal(func(q3, p3, axis=(0, 2)),
                                      func(q3, np.broadcast_to(p3, q3.shape).copy(), axis=(0, 2)))


def test_outer_broadcast():
    p = probs(np.float64, (3, 1, 6), seed=9)
    q = probs(np.float64, (1, 4, 6), zero_frac=0.0, seed=10)
    got = kl_fast.kl_div(p, q)
    np.testing.assert_allclose(got, reference.kl_div(p, q), rtol=1e-13)
    assert got.shape == (3, 4)


# ---- layouts ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_transposed_readonly(dtype):
    base_p = probs(dtype, (30, 40), seed=11)
    base_q = probs(dtype, (30, 40), zero_frac=0.0, seed=12)
    for p, q in [(base_p[::2, ::3], base_q[::2, ::3]),
                 (base_p.T, base_q.T),
                 (base_p[:, ::-1], base_q[:, ::-1]),
                 (np.asfortranarray(base_p), np.asfortranarray(base_q))]:
        expected = kl_fast.kl_div(np.ascontiguousarray(p), np.ascontiguousarray(q))
        np.testing.assert_array_equal(kl_fast.kl_div(p, q), expected)
        np.testing.assert_array_equal(
            kl_fast.kl_div(p, q, axis=0), kl_fast.kl_div(np.ascontiguousarray(p.T), np.ascontiguousarray(q.T)))
    ro_p, ro_q = base_p.copy(), base_q.copy()
    ro_p.flags.writeable = False
    ro_q.flags.writeable = False
    np.testing.assert_array_equal(kl_fast.kl_div(ro_p, ro_q), kl_fast.kl_div(base_p, base_q))


def test_memmap(tmp_path):
    P = probs(np.float64, (100, 64), seed=13)
    q = probs(np.float64, (64,), zero_frac=0.0, seed=14)
    np.save(tmp_path / "p.npy", P)
    mm = np.load(tmp_path / "p.npy", mmap_mode="r")
    np.testing.assert_array_equal(kl_fast.kl_div(mm, q), kl_fast.kl_div(P, q))


def test_byteswapped_and_unaligned():
    p = probs(np.float64, (64,), seed=15)
    q = probs(np.float64, (64,), zero_frac=0.0, seed=16)
    swapped = p.astype(p.dtype.newbyteorder())
    buf = np.zeros(64 * 8 + 1, dtype=np.uint8)[1:].view(np.float64)
    buf[:] = q
    assert kl_fast.kl_div(swapped, buf) == kl_fast.kl_div(p, q)


# ---- dtypes and semantics -----------------------------------------------------------

def test_dtype_rules():
    p32 = np.array([0.25, 0.75], dtype=np.float32)
    q32 = np.array([0.5, 0.5], dtype=np.float32)
    assert kl_fast.kl_div(p32, q32).dtype == np.float32
    assert kl_fast.kl_div(p32, q32.astype(np.float64)).dtype == np.float64
    assert kl_fast.kl_div(p32.astype(np.float16), q32).dtype == np.float64
    ints = kl_fast.kl_div([1, 3], [2, 2])
    assert ints.dtype == np.float64
    assert ints == pytest.approx(1 * math.log(0.5) + 3 * math.log(1.5), rel=1e-15, abs=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_semantics(dtype):
    assert kl_fast.kl_div(np.array([0, 1], dtype), np.array([0, 1], dtype)) == 0
    assert kl_fast.kl_div(np.array([0, 1], dtype), np.array([1, 0], dtype)) == np.inf
    assert kl_fast.kl_div(np.array([0.0, 0.0], dtype), np.array([0.0, 0.0], dtype)) == 0
    assert kl_fast.kl_div(np.array([], dtype), np.array([], dtype)) == 0.0
    empty_rows = kl_fast.kl_div(np.zeros((3, 0), dtype), np.zeros((3, 0), dtype))
    np.testing.assert_array_equal(empty_rows, np.zeros(3, dtype))
    assert kl_fast.kl_div(np.zeros((0, 4), dtype), np.ones((0, 4), dtype)).shape == (0,)
    assert kl_fast.kl_div(dtype(0.5), dtype(0.25)) == pytest.approx(0.5 * math.log(2), rel=1e-6)


def test_extreme_ratios_stay_finite():
    # p/q underflows or overflows in floating point, the terms do not.
    p = np.array([1e-320, 1.0, 1e-300, 0.5])
    q = np.array([1e10, 1e-320, 1.0, 1e-300])
    got = kl_fast.kl_div(p, q)
    expected = float(exact_kl(p, q))
    assert np.isfinite(got)
    assert got == pytest.approx(expected, rel=1e-12)


def test_more_accurate_than_or_equal_to_baseline():
    rng = np.random.default_rng(17)
    p = rng.random(200_001)
    q = rng.random(200_001)
    exact = exact_kl(p, q)
    ours = abs(np.longdouble(kl_fast.kl_div(p, q)) - exact)
    base = abs(np.longdouble(reference.kl_div(p, q)) - exact)
    assert ours <= max(base, 4 * np.finfo(np.float64).eps * abs(exact))


def test_out_argument():
    P = probs(np.float64, (6, 5), seed=18)
    q = probs(np.float64, (5,), zero_frac=0.0, seed=19)
    out = np.full(6, -1.0)
    ret = kl_fast.kl_div(P, q, out=out)
    assert ret is out
    np.testing.assert_array_equal(out, kl_fast.kl_div(P, q))
    out32 = np.zeros(6, dtype=np.float32)
    kl_fast.kl_div(P.astype(np.float32), q.astype(np.float32), out=out32)
    np.testing.assert_allclose(out32, out, rtol=1e-6)
    with pytest.raises(ValueError, match="out has shape"):
        kl_fast.kl_div(P, q, out=np.zeros(5))
    with pytest.raises(TypeError, match="out"):
        kl_fast.kl_div(P, q, out=np.zeros(6, dtype=np.int64))


def test_threads_bit_identical():
    P = probs(np.float64, (997, 301), seed=20)
    Q = probs(np.float64, (997, 301), zero_frac=0.0, seed=21)
    one = kl_fast.kl_div(P, Q, num_threads=1)
    two = kl_fast.kl_div(P, Q, num_threads=2)
    assert one.tobytes() == two.tobytes()
    P32, Q32 = P.astype(np.float32), Q.astype(np.float32)
    assert kl_fast.kl_div(P32, Q32, num_threads=1).tobytes() == kl_fast.kl_div(P32, Q32, num_threads=2).tobytes()


def test_inputs_not_modified():
    P = probs(np.float64, (20, 10), seed=22)
    q = probs(np.float32, (10,), zero_frac=0.0, seed=23)
    P0, q0 = P.copy(), q.copy()
    kl_fast.kl_div(P, q, normalize=True)
    kl_fast.kl_div(P, q, base=2, axis=0, keepdims=True)
    np.testing.assert_array_equal(P, P0)
    np.testing.assert_array_equal(q, q0)


def test_check_false_is_memory_safe():
    p = np.array([0.5, np.nan, -1.0, np.inf])
    q = np.array([0.5, 0.5, 0.5, 0.5])
    kl_fast.kl_div(p, q, check=False)  # unspecified value, but no error or crash


# ---- errors -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad, word", [(-0.25, "negative"), (np.nan, "NaN"), (np.inf, "infinite")])
@pytest.mark.parametrize("which", ["p", "q"])
def test_bad_values_named(dtype, bad, word, which):
    P = probs(dtype, (4, 6), zero_frac=0.0, seed=24)
    Q = probs(dtype, (4, 6), zero_frac=0.0, seed=25)
    target = P if which == "p" else Q
    target[2, 3] = bad
    with pytest.raises(ValueError, match=rf"kl_div: {which} contains .*{word}.* at index \[2, 3\]"):
        kl_fast.kl_div(P, Q)
    with pytest.raises(ValueError):
        reference.kl_div(P, Q)


def test_bad_value_index_in_own_coordinates():
    P = probs(np.float64, (5, 7), zero_frac=0.0, seed=26)
    q = probs(np.float64, (7,), zero_frac=0.0, seed=27)
    q[4] = -1.0
    with pytest.raises(ValueError, match=r"q contains a negative value \(-1.0\) at index \[4\]"):
        kl_fast.kl_div(P, q)
    P[3, 1] = np.nan
    q[4] = 0.5
    with pytest.raises(ValueError, match=r"p contains NaN at index \[1, 3\]"):
        kl_fast.kl_div(P.T, q[:, None], axis=0)


@pytest.mark.parametrize("bad", [np.array([1 + 1j, 2]), np.array([1, "a"], dtype=object),
                                 np.array(["a", "b"]), np.array([1, 2], dtype="datetime64[s]")])
def test_non_numeric_type_error(bad):
    with pytest.raises(TypeError, match="kl_div: p must hold real numbers"):
        kl_fast.kl_div(bad, [0.5, 0.5])
    with pytest.raises(TypeError, match="kl_div: q must hold real numbers"):
        kl_fast.kl_div([0.5, 0.5], bad)


def test_argument_errors():
    p = [0.5, 0.5]
    with pytest.raises(ValueError, match="do not broadcast"):
        kl_fast.kl_div([0.2, 0.3, 0.5], p)
    with pytest.raises(ValueError, match="exclusive"):
        kl_fast.kl_div(p, p, normalize=True, dx=0.1)
    for base in (0, -2, 1, np.inf, np.nan):
        with pytest.raises(ValueError, match="base"):
            kl_fast.kl_div(p, p, base=base)
    for dx in (0, -0.1, np.nan):
        with pytest.raises(ValueError, match="dx"):
            kl_fast.kl_div(p, p, dx=dx)
    with pytest.raises(np.exceptions.AxisError):
        kl_fast.kl_div(p, p, axis=1)
    with pytest.raises(ValueError, match="num_threads"):
        kl_fast.kl_div(p, p, num_threads=0)
    with pytest.raises(TypeError, match="num_threads"):
        kl_fast.kl_div(p, p, num_threads=1.5)
    with pytest.raises(ValueError, match=r"normalize=True but p sums to 0.0 .* index \[1\]"):
        kl_fast.kl_div([[1.0, 1.0], [0.0, 0.0]], p, normalize=True)


def test_no_temporaries_proportional_to_input():
    rng = np.random.default_rng(28)
    p = rng.random(2_000_000)
    q = rng.random(2_000_000)
    for args in ((p, q), (p.reshape(-1, 1000), q.reshape(-1, 1000))):
        kl_fast.kl_div(*args)
        tracemalloc.start()
        out = kl_fast.kl_div(*args)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        # docs/benchmarks.md's memory table: about 1 kB beyond the output (a few hundred bytes here)
        assert peak - np.asarray(out).nbytes < 4096


@pytest.mark.parametrize("dtype, scale", [(np.float64, 1.0), (np.float64, 1e300),
                                          (np.float64, 1e-310), (np.float32, 1.0),
                                          (np.float32, 1e30), (np.float32, 1e-40)])
def test_normalize_memory(dtype, scale):
    """The README: with normalize, nothing proportional to the input either,
    except in rows redone on rescaled inputs (an overflowing term, a subnormal
    sum), whose temporaries stay within about 6.5 times the inputs' size
    (float32 rows are rescaled in float64)."""
    rng = np.random.default_rng(29)
    p = (rng.random(500_000) * scale).astype(dtype)
    q = rng.random(500_000).astype(dtype)
    for args in ((p, q), (p.reshape(-1, 1000), q.reshape(-1, 1000))):
        kl_fast.kl_div(*args, normalize=True)
        tracemalloc.start()
        out = kl_fast.kl_div(*args, normalize=True)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        extra = peak - np.asarray(out).nbytes
        if scale == 1.0:
            assert extra < 4096
        else:
            assert extra <= 6.5 * (p.nbytes + q.nbytes)


def test_float32_close_to_float64_on_tutorial():
    p = stats.norm.pdf(GRID, 0, 2).astype(np.float32)
    q = stats.norm.pdf(GRID, 2, 2).astype(np.float32)
    got32 = kl_fast.kl_div(p, q)
    assert got32.dtype == np.float32
    exact = float(exact_kl(p, q))
    assert float(got32) == pytest.approx(exact, rel=1e-6)
    assert float(kl_fast.kl_div(p.astype(np.float64), q.astype(np.float64))) == pytest.approx(exact, rel=1e-13)


@pytest.mark.parametrize("path", kl_fast._kernels.available_isas())
def test_each_kernel_path_agrees(path):
    """Every instruction-set path gives the same divergences to rounding."""
    P = probs(np.float64, (64, 1001), seed=29)
    Q = probs(np.float64, (64, 1001), zero_frac=0.0, seed=30)
    previous = kl_fast._kernels.current_isa()
    try:
        kl_fast._config.select_isa(path)
        got = kl_fast.kl_div(P, Q)
        got32 = kl_fast.kl_div(P.astype(np.float32), Q.astype(np.float32))
    finally:
        kl_fast._config.select_isa(previous)
    exact = exact_kl(P, Q).astype(np.float64)
    np.testing.assert_allclose(got, exact, rtol=1e-13)
    np.testing.assert_allclose(got32, exact_kl(P.astype(np.float32), Q.astype(np.float32)).astype(np.float64), rtol=2e-6)


def test_normalize_with_lower_dimensional_q():
    """axis counts in the broadcast shape for the normalising sums as well."""
    p = probs(np.float64, (6, 21, 9), zero_frac=0.0, seed=31) + 0.1
    q = probs(np.float64, (21, 9), zero_frac=0.0, seed=32) + 0.1
    got = kl_fast.kl_div(p, q, axis=1, normalize=True)
    qb = np.broadcast_to(q, p.shape)
    expected = stats.entropy(p, qb, axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_allclose(reference.kl_div(p, q, axis=1, normalize=True), expected, rtol=1e-12)
    assert np.all(got >= 0)


def test_overflowing_sum_is_inf_not_nan():
    p = np.array([1e308, 1e308])
    q = p / np.e  # each term is 1e308; the true divergence 2e308 exceeds DBL_MAX
    assert kl_fast.kl_div(p, q) == np.inf
    big = np.full(1000, 1e308)  # overflow across blocks too
    assert kl_fast.kl_div(big, big / np.e) == np.inf
    for path in kl_fast._kernels.available_isas():
        previous = kl_fast._kernels.current_isa()
        try:
            kl_fast._config.select_isa(path)
            assert kl_fast.kl_div(p, q) == np.inf
        finally:
            kl_fast._config.select_isa(previous)


@pytest.mark.parametrize("layout", ["row", "rows", "q broadcast over axis None"])
def test_term_beyond_range_brought_back_by_negative_terms(path, layout):
    """A term that overflows alone while the divergence is in range (negative terms
    bring the sum back): the finite value, without base or dx (it was inf), and no
    NaN where partial rows of a broadcast operand overflow in opposite directions."""
    import warnings

    import mpmath

    def _mp_kl(p, q):   # to 50 digits, as a float (inf beyond the range)
        with mpmath.workdps(50):
            s = mpmath.fsum([mpmath.mpf(float(a)) * mpmath.log(mpmath.mpf(float(a)) / float(b))
                             for a, b in zip(np.ravel(p), np.ravel(q)) if a > 0])
        return float(s) if abs(s) <= np.finfo(np.float64).max else math.inf

    p = np.array([1.6178831790386129e+307, 1.0036170374109804e+308, 3.6373344579338684e+307])
    q = np.array([9.391117475428056e+307, 1.666848475908632e+307, 3.420775046537369e+307])
    kwargs = {}
    expected = _mp_kl(p, q)   # 1.5395535056504652e+308
    if layout == "rows":
        p, q = np.stack([p, [0.5, 0.5, 0.0], p]), np.stack([q, [0.25, 0.75, 1.0], q[::-1]])
        expected = np.array([expected, _mp_kl(p[1], q[1]), _mp_kl(p[2], q[2])])
    if layout == "q broadcast over axis None":
        a, b = 1.79e308 / np.e, 1.79e308
        p = np.array([[1e308, 0.0, 0.0, 0.0], [0.0, a, a, a]])
        q = np.array([1e307, b, b, b])
        kwargs["axis"] = None
        expected = _mp_kl(p.ravel(), np.tile(q, 2))   # 3.2707249390340051e+307
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = kl_fast.kl_div(p, q, **kwargs)
    np.testing.assert_allclose(got, np.asarray(expected, dtype=np.float64), rtol=1e-14)
    if layout == "q broadcast over axis None":
        p[0, 0] = 1.5e308   # now beyond the range: inf, not NaN
        assert _mp_kl(p.ravel(), np.tile(q, 2)) > np.finfo(np.float64).max
        assert kl_fast.kl_div(p, q, axis=None) == np.inf


def test_normalize_with_sums_beyond_double_range():
    """Normalising is scale-invariant, even when the raw sums overflow."""
    got = kl_fast.kl_div([1e308, 1e308], [1.0, 1.0], normalize=True)
    assert got == 0.0
    # the sums fit, but sum p log(p/q) overflows before the division by sum p
    assert kl_fast.kl_div(np.full(4, 1e307), np.ones(4), normalize=True) == 0.0
    assert kl_fast.kl_div(np.full(4, 1e307), [1.0, 1.0, 1.0, 0.0], normalize=True) == np.inf
    p = np.array([[3e307, 9e307, 1e308], [1.0, 3.0, 3.3333]])
    q = np.array([1e308, 1e308, 1e308])
    expected = stats.entropy(p / p.max(axis=1, keepdims=True), np.ones(3), axis=1)
    np.testing.assert_allclose(kl_fast.kl_div(p, q, normalize=True), expected, rtol=1e-12)


def test_normalize_keeps_the_infinity_of_mass_on_a_zero_of_q():
    # p > 0 meets q == 0: +inf whatever normalising by the sums does to that p.
    # Dividing by sum p rounded 1e-310 / 1e300 to 0 (the result was 0.0, as
    # scipy.stats.entropy still gives), and a p sum beyond the range gave inf / inf.
    assert kl_fast.kl_div([1e300, 1e-310], [0.93, 0.0], normalize=True) == np.inf
    assert kl_fast.kl_div([1e300, 1e-310], [0.93, 0.0], normalize=True, base=2) == np.inf
    assert kl_fast.kl_div([1e300, 1e-310], [0.93, 0.0], normalize=True, base=0.5) == -np.inf
    assert kl_fast.kl_div([1.7e308, 1.7e308, 1e-310], [1.0, 1.0, 0.0], normalize=True) == np.inf
    P = np.array([[1e300, 1e-310, 1.0], [1e300, 0.0, 1.0], [1.0, 0.0, 3.0]])
    q = np.array([0.93, 0.0, 1.0])
    got = kl_fast.kl_div(P, q, normalize=True)
    assert got[0] == np.inf and np.isfinite(got[1:]).all()
    np.testing.assert_allclose(got[1:], stats.entropy(P[1:], q, axis=1), rtol=1e-12)
    np.testing.assert_array_equal(kl_fast.kl_div(P.T, q[:, None], normalize=True, axis=0), got)
    assert kl_fast.kl_div(np.float32([3e38, 1e-45]), np.float32([0.9, 0.0]), normalize=True) == np.inf
    # all pairs: the same entries (the product form on rows scaled by powers of two)
    P2 = np.array([[1.7e308, 1.7e308, 1e-310], [1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    Q2 = np.array([[1.0, 1.0, 0.0], [1.0, 2.0, 3.0]])
    expected = np.array([[kl_fast.kl_div(a, b, normalize=True) for b in Q2] for a in P2])
    assert expected[0, 0] == np.inf
    np.testing.assert_allclose(kl_fast.kl_pairwise(P2, Q2, normalize=True), expected, rtol=1e-12)
    big = np.tile(P2, (40, 1))   # beyond the pair-by-pair size: the product form
    np.testing.assert_allclose(kl_fast.kl_pairwise(big, np.tile(Q2, (40, 1)), normalize=True),
                               np.tile(expected, (40, 40)), rtol=1e-12)


def _mp_normalized_kl(p, q, base=None):
    """KL of p / sum(p) against q / sum(q) in 2,400-bit arithmetic (enough for
    sums of doubles that span the whole range), as a float."""
    import mpmath
    with mpmath.workprec(2400):
        a = [mpmath.mpf(float(v)) for v in p]
        b = [mpmath.mpf(float(v)) for v in q]
        sa, sb = mpmath.fsum(a), mpmath.fsum(b)
        t = mpmath.fsum(u / sa * mpmath.log((u / sa) / (v / sb)) for u, v in zip(a, b) if u)
        return float(t / mpmath.log(base)) if base else float(t)


@pytest.mark.parametrize("p, q", [
    # q's sum overflows and scaling it into range rounds 1e-310 under p > 0 to 0
    # (the result was inf; NumPy's and SciPy's normalising give inf too)
    ([1.0, 1.0, 1.0], [1e308, 1e308, 1e-310]),
    ([1.0, 1.0, 1.0], [1e308, 1e308, 3.4e-322]),
    ([1e300, 1e-200, 1e-300, 1e200], [1e-310, 1e308, 1e300, 5e-324]),
    ([1e-310, 1.7e308, 1e-320], [1e-310, 1e308, 1e308]),
    # ... and where that p is itself below every other weight's range
    ([1e308, 1e308, 1e-310], [1e308, 1e308, 1e-310]),
    ([0.0, 1.7e308, 1.7e308, 5e-324], [1.0, 1e308, 1e308, 5e-324]),
    # q scaled down raised p log(p/q) beyond the range while p's sum was finite
    # (the result was inf)
    ([1.0, 1e308], [1.7e308, 1e308]),
    ([1.7e308, 5e-324, 1.0], [1e308, 1e308, 1e200]),
])
def test_normalize_keeps_every_element_of_q_that_spans_the_range(p, q):
    # the truth is finite: scaling q by one power of two cannot keep both ends
    # of it, so the terms of the rounded elements are taken from q as it is
    truth = _mp_normalized_kl(p, q)
    for base in (None, 2.0, 0.5):
        got = kl_fast.kl_div(p, q, normalize=True, base=base)
        expected = truth / math.log(base) if base else truth
        assert np.isfinite(got)
        assert abs(got - expected) <= 1e-13 * max(abs(expected), 1.0), (base, got, expected)
    P = np.array([p, np.ones(len(p)), p])
    got = kl_fast.kl_div(P, np.array(q), normalize=True)
    np.testing.assert_array_equal(got[[0, 2]], kl_fast.kl_div(p, q, normalize=True))
    np.testing.assert_array_equal(kl_fast.kl_div(P.T, np.array(q)[:, None], normalize=True, axis=0),
                                  got)
    assert got[1] == pytest.approx(_mp_normalized_kl(np.ones(len(p)), q), rel=1e-13, abs=0)


@pytest.mark.parametrize("p, q", [
    ([1e308, 1.0], [1e307, 0.1]),                      # proportional: 0
    ([1e308, 1e-300], [1e307, 1e-300]),
    ([1.7e308, 1e300, 0.0], [1e307, 1e100, 1e-300]),
    ([1e-100, 1e-100, 1e-300], [1e308, 1e308, 1.0]),
    ([1.0, 1.0, 3.0, 1e100], [3.0, 3.0, 1.7e308, 1e307]),
    ([1e307, 1.0, 1e100], [1e300, 1.0, 1.7e308]),      # was inf
    ([1e250, 1e-300], [1e308, 1e-300]),                 # q comes down to p's scale only
    ([1e-289, 1e-289], [1.7e308, 1e275]),               # ... but not below its own range
    ([2.3349419677927704e-290, 8.409461422683633e-290],
     [1.2548510635608282e+308, 1.3675797709101558e+289]),
    (list(np.ldexp([0.1, 1e308], -900)), [0.1, 1e308]),
    (np.float32([1.7e-39, 2e20, 0.03]), np.float32([0.02, 1.3e38, 1.7e38])),
    (np.float32([0, 0, 1.720444189574794e-39, 2.087875120435938e20, 0.034718647599220276]),
     np.float32([4.326565060541446e-39, 7.715889860099274e-39, 0.023621656000614166,
                 1.289632270108475e38, 1.7546848003732596e38])),
    (np.float32([0.005586065351963043, 9.4692253272287e-39, 8.408847876683157e28]),
     np.float32([1.1391906312473316e-38, 7.264192433854874e16, 1.1350975489768124e38])),
])
def test_normalize_sums_far_apart_near_the_top_of_the_range(p, q):
    # both sums brought to one scale: kl/P + log(Q/P) cancels no more than the
    # terms' own rounding (eps times the sum of their sizes, which is at least 1)
    import mpmath
    with mpmath.workprec(2400):
        a, b = [mpmath.mpf(float(v)) for v in p], [mpmath.mpf(float(v)) for v in q]
        sa, sb = mpmath.fsum(a), mpmath.fsum(b)
        terms = [u / sa * mpmath.log((u / sa) / (v / sb)) for u, v in zip(a, b) if u]
        truth, size = float(mpmath.fsum(terms)), float(mpmath.fsum(abs(t) for t in terms))
    got = kl_fast.kl_div(p, q, normalize=True)
    eps = np.finfo(got.dtype).eps
    assert abs(float(got) - truth) <= 4 * eps * max(size, 1.0), (got, truth)


def test_normalize_of_proportional_rows_anywhere_in_the_range_is_zero():
    # p = 2**k q exactly: the rescaling brings both to one scale, so the result is
    # 0 to the rounding of the sums (a scaling that rounded q's small elements
    # left sums hundreds of powers of two apart: errors up to 2.3e-13)
    rng = np.random.default_rng(3)
    pool = np.array([1e-310, 1e-300, 1e-200, 1.0, 1e200, 1e300, 1e308, 3e-5])
    worst, checked = 0.0, 0
    for _ in range(3000):
        q = rng.choice(pool, int(rng.integers(1, 5)))
        q = np.where(rng.random(q.size) < 0.3, rng.random(q.size), q)
        if rng.random() < 0.2:   # longer rows, whose sums lie further from their largest value
            q = np.concatenate([q, rng.random(30) * 1e52, np.zeros(10)])
        k = int(rng.integers(-1100, 1100))
        with np.errstate(over="ignore", under="ignore"):
            p = np.ldexp(q, k)
        if not (np.isfinite(p).all() and np.array_equal(np.ldexp(p, -k), q)):
            continue
        worst = max(worst, abs(kl_fast.kl_div(p, q, normalize=True)))
        checked += 1
    assert checked > 1000
    assert worst <= 4 * np.finfo(float).eps


def test_normalize_of_proportional_rows_by_any_factor_is_zero_to_rounding():
    # q times a factor c at least 2 apart from 1 (not a power of two: q c rounds
    # element by element): the rows are divided by their sums, and the result is
    # 0 to the rounding of the divided values, as NumPy's division leaves it
    # (p = ones(7), q = 0.3 p gives -1.9e-16 here and 0 in NumPy, whose sum of
    # q rounds the other way; elsewhere NumPy leaves up to about 3 eps)
    rng = np.random.default_rng(8)
    eps = np.finfo(float).eps
    worst = 0.0
    for _ in range(3000):
        q = rng.random(int(rng.integers(1, 50))) * 10.0 ** rng.uniform(-5, 5)
        c = 10.0 ** rng.uniform(0.31, 6)
        p = q * (c if rng.random() < 0.5 else 1.0 / c)
        worst = max(worst, abs(kl_fast.kl_div(p, q, normalize=True)))
    assert worst <= 4 * eps
    assert abs(kl_fast.kl_div(np.ones(7), np.full(7, 0.3), normalize=True)) <= 4 * eps


def test_normalize_of_float32_proportional_rows_keeps_the_single_pass_rounding():
    # docs/semantics.md: sums less than a factor 2 apart keep the single pass's rounding,
    # for float32 up to about eps32 (7e-8 seen), never exactly 0 promised
    rng = np.random.default_rng(4)
    worst = 0.0
    for _ in range(3000):
        a = np.float32(rng.uniform(0.1, 1.0))
        b = np.float32(a * rng.uniform(0.51, 1.99))
        n = int(rng.integers(1, 5))
        got = kl_fast.kl_div(np.full(n, a, np.float32), np.full(n, b, np.float32), normalize=True)
        assert got.dtype == np.float32
        worst = max(worst, abs(float(got)))
    assert worst <= np.finfo(np.float32).eps


def test_all_pairs_of_rows_that_span_the_range():
    # the product form on rows scaled by powers of two gave +inf or NaN for finite
    # entries: an element of q rounded to 0 under p > 0, a row whose terms overflow
    P = np.array([[1.0, 1.0, 1.0], [1e300, 1e300, 1.0], [0.0, 1.0, 1.0], [1e-310, 1.7e308, 1e-320]])
    Q = np.array([[1e308, 1e308, 1e-310], [1.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1e-310, 1e308, 1e308]])
    expected = np.array([[_mp_normalized_kl(p, q) if (q[p > 0] > 0).all() else np.inf for q in Q]
                         for p in P])
    for reps in (1, 40):   # pair by pair, and the product form
        got = kl_fast.kl_pairwise(np.tile(P, (reps, 1)), np.tile(Q, (reps, 1)), normalize=True)
        np.testing.assert_allclose(got, np.tile(expected, (reps, reps)), rtol=1e-13, atol=1e-14)


def test_base_near_one_with_dx_brings_a_large_value_back():
    # dividing by log(1.0001) overflowed before dx = 1e-300 brought it back
    import mpmath
    p, q = [1e-320, 1.7e308], [1e200, 5e-324]
    with mpmath.workprec(2400):
        t = mpmath.fsum(mpmath.mpf(a) * mpmath.log(mpmath.mpf(a) / mpmath.mpf(b)) for a, b in zip(p, q))
        expected = float(t * mpmath.mpf(1e-300) / mpmath.log(mpmath.mpf(1.0001)))
    got = kl_fast.kl_div(p, q, base=1.0001, dx=1e-300)
    assert got == pytest.approx(expected, rel=1e-13)
    assert kl_fast.kl_div(np.array([p, p]), np.array([q, q]), base=1.0001, dx=1e-300)[1] == got
    assert kl_fast.kl_div(p, q, base=1.0001) == np.inf   # beyond the range, truly


def test_axis_must_be_int_tuple_or_none():
    a = np.array([[0.5, 0.5]])
    with pytest.raises(TypeError, match="axis"):
        kl_fast.kl_div(a, a, axis=np.array([0, -1]))
    with pytest.raises(np.exceptions.AxisError):
        kl_fast.kl_div(0.5, 0.25, axis=0)
    assert kl_fast.kl_div(0.5, 0.25, axis=None) == pytest.approx(0.5 * math.log(2), rel=1e-15, abs=0)


@pytest.mark.parametrize("func", [kl_fast.kl_div, kl_fast.js_div, kl_fast.kl_div_log])
def test_options_of_the_wrong_type_are_refused_as_numpy_does(func):
    # NumPy's reductions refuse a list or a bool as axis; a string is not a real
    # number (float() would parse it); a bool is not a thread count
    a = np.full((2, 3), 1 / 3)
    for axis in ([0], [0, 1], True, np.True_, (True,), (0, False)):
        with pytest.raises(TypeError, match="axis must be an integer"):
            func(a, a, axis=axis)
        with pytest.raises(TypeError):
            np.sum(a, axis=axis)
    names = ("base", "dx") if func is kl_fast.kl_div else ("base",)
    for name in names:
        for bad in ("2", b"2", np.str_("2"), np.array("2")):
            with pytest.raises(TypeError, match=f"{name} must be a real number"):
                func(a, a, **{name: bad})
    with pytest.raises(TypeError, match="num_threads must be an integer"):
        func(a, a, num_threads=True)
    # what stays accepted: NumPy integers and 0-d arrays of numbers
    kw = {"dx": np.float32(1)} if func is kl_fast.kl_div else {}
    np.testing.assert_array_equal(func(a, a, axis=np.int8(1), base=np.array(2.0), **kw),
                                  func(a, a, base=2))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_normalize_rescale_of_a_matrix_column_is_that_column_alone(dtype):
    # columns whose sums are more than a factor 16 apart are redone on rescaled
    # inputs; their sums must be added in one order whatever the layout
    rng = np.random.default_rng(0)
    P = rng.random((8, 300)).astype(dtype)
    Q = (rng.random((8, 300)) * 100).astype(dtype)
    alone = np.array([kl_fast.kl_div(P[:, j].copy(), Q[:, j].copy(), normalize=True)
                      for j in range(300)])
    for layout in (np.ascontiguousarray, np.asfortranarray):
        np.testing.assert_array_equal(
            kl_fast.kl_div(layout(P), layout(Q), axis=0, normalize=True), alone)
        # the same columns as the rows of a matrix (an F-order one: strided rows)
        np.testing.assert_array_equal(
            kl_fast.kl_div(layout(P.T), layout(Q.T), normalize=True), alone)
    P3 = rng.random((4, 8, 5)).astype(dtype)
    Q3 = (rng.random((4, 8, 5)) * 100).astype(dtype)
    alone = [kl_fast.kl_div(np.moveaxis(P3, 1, 0)[j].ravel(), np.moveaxis(Q3, 1, 0)[j].ravel(),
                            normalize=True) for j in range(8)]
    np.testing.assert_array_equal(kl_fast.kl_div(P3, Q3, axis=(0, 2), normalize=True), alone)


# ---- the fused block kernel's checks, at every position of a block ------------

SPECIALS = [
    ("p zero, q zero", 0.0, 0.0),
    ("p zero, q tiny", 0.0, 5e-324),
    ("p minus zero", -0.0, 0.5),
    ("q zero", 0.5, 0.0),
    ("q minus zero", 0.5, -0.0),
    ("ratio underflows", 1e-310, 0.5),
    ("ratio overflows", 0.5, 1e-310),
    ("ratio below the normal range", 1e-300, 1e10),
    ("both negative", -0.5, -0.25),
    ("p negative", -0.5, 0.25),
    ("q negative", 0.5, -0.25),
    ("p zero, q negative", 0.0, -0.25),
    ("p zero, q inf", 0.0, np.inf),
    ("p zero, q NaN", 0.0, np.nan),
    ("p NaN", np.nan, 0.5),
    ("q NaN", 0.5, np.nan),
    ("p inf", np.inf, 0.5),
    ("q inf", 0.5, np.inf),
]


@pytest.mark.parametrize("path", kl_fast._kernels.available_isas())
@pytest.mark.parametrize("n", [5, 8, 13, 256, 263, 700])
def test_special_values_at_every_lane(path, n):
    """One special pair at the start, in lane 7, mid-row and at the end of
    the last (partial) block: kl_fast agrees with the long-double sum, or
    raises where the NumPy reference raises."""
    rng = np.random.default_rng(n)
    base_p = rng.random(n) + 0.01
    base_q = rng.random(n) + 0.01
    previous = kl_fast._kernels.current_isa()
    try:
        kl_fast._config.select_isa(path)
        for pos in sorted({0, min(7, n - 1), n // 2, n - 1}):
            for label, pv, qv in SPECIALS:
                p, q = base_p.copy(), base_q.copy()
                p[pos], q[pos] = pv, qv
                try:
                    reference.kl_div(p, q)
                except ValueError:
                    with pytest.raises(ValueError, match=rf"index \[{pos}\]"):
                        kl_fast.kl_div(p, q)
                    continue
                got = kl_fast.kl_div(p, q)
                exact = float(exact_kl(p, q))
                if np.isinf(exact):
                    assert got == exact, (label, pos)
                else:
                    assert got == pytest.approx(exact, rel=1e-13), (label, pos)
                # every memory layout gives the same bits as the contiguous row
                strided_p = np.repeat(p, 2)[::2]
                assert kl_fast.kl_div(strided_p, q) == got
    finally:
        kl_fast._config.select_isa(previous)


@pytest.mark.parametrize("path", kl_fast._kernels.available_isas())
def test_normalize_sums_from_the_fused_kernel(path):
    """normalize=True takes the row sums from the same pass; the padding of a
    partial lane group must not leak into them."""
    previous = kl_fast._kernels.current_isa()
    try:
        kl_fast._config.select_isa(path)
        for n in (1, 7, 9, 255, 257, 1001):
            p = probs(np.float64, (n,), zero_frac=0.1, seed=n)
            p[0] = 0.3
            q = probs(np.float64, (n,), zero_frac=0.0, seed=n + 1) + 0.01
            got = kl_fast.kl_div(p * 3.0, q * 7.0, normalize=True)
            exact = float(exact_kl(p / p.sum(), q / q.sum()))
            assert got == pytest.approx(exact, rel=1e-13, abs=1e-15), n
    finally:
        kl_fast._config.select_isa(previous)


RAW_OVER_P = [1.65762720e+306, 1.0, 0.0, 2e305]     # sum p log(p/q) about 6e308: inf
RAW_OVER_Q = [1.63000003e+154, 1.0, 3.0, 1e300]


@pytest.mark.parametrize("opts", [{"dx": 0.001}, {"base": 1e10}, {"base": 10.0, "dx": 0.5}])
@pytest.mark.parametrize("layout", ["row", "rows", "columns", "axis None", "long row"])
def test_raw_sum_beyond_range_scaled_back(path, opts, layout):
    """A divergence that base or dx bring back into the range is finite and
    accurate although its raw sum overflows; a KL made infinite by a zero of q
    stays inf; the compiled entry hands only the overflowing rows' calls over."""
    from kl_fast import _api, _div_kernels

    p, q = np.array(RAW_OVER_P), np.array(RAW_OVER_Q)
    factor = np.longdouble(opts.get("dx", 1.0)) / np.log(np.longdouble(opts.get("base", math.e)))
    kwargs = dict(opts)
    if layout == "long row":                  # shared by the threads
        p, q = np.concatenate([p, np.full(10000, 0.5)]), np.concatenate([q, np.full(10000, 0.25)])
        kwargs["num_threads"] = 2
    expected = exact_kl(p, q) * factor
    if layout in ("rows", "columns"):         # with an ordinary row and an infinite one
        p = np.stack([p, [0.2, 0.8, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
        q = np.stack([q, [0.5, 0.5, 1.0, 1.0], [0.0, 1.0, 1.0, 1.0]])
        expected = np.array([expected, exact_kl(p[1], q[1]) * factor, np.inf])
        if layout == "columns":
            p, q, kwargs["axis"] = p.T.copy(), q.T.copy(), 0
    if layout == "axis None":
        p, q, kwargs["axis"] = p.reshape(2, 2), q.reshape(2, 2), None
    assert np.isfinite(np.atleast_1d(np.asarray(expected, dtype=np.float64))[0])
    assert _div_kernels.fast_path("kl_div", p, q, **kwargs) is None   # the Python layer's
    got = kl_fast.kl_div(p, q, **kwargs)
    np.testing.assert_array_equal(got, _api.kl_div_python(p, q, **kwargs))
    np.testing.assert_allclose(got, np.asarray(expected, dtype=np.float64), rtol=1e-13)


def test_raw_sum_infinite_by_a_zero_of_q_stays_compiled():
    """A KL made +inf by p > 0 where q == 0 stays on the compiled path with dx or base."""
    from kl_fast import _div_kernels

    p, q = np.array([1e306, 1.0, 2.0]), np.array([1.0, 0.0, 1.0])
    for opts in ({"dx": 0.001}, {"base": 10.0}):
        assert _div_kernels.fast_path("kl_div", p, q, **opts) == np.inf
        rows = _div_kernels.fast_path("kl_div", np.stack([p, p]), q, **opts)
        assert rows.tolist() == [np.inf] * 2


def test_raw_sum_beyond_float32_range_scaled_back(path):
    """float32 terms are summed in double: a raw sum beyond FLT_MAX that dx brings
    back is the float32 of the divergence."""
    p, q = np.float32([3e38, 1.0]), np.float32([1e-30, 1.0])
    expected = exact_kl(p.astype(np.float64), q.astype(np.float64)) * np.longdouble(1e-3)
    got = kl_fast.kl_div(p, q, dx=1e-3)
    assert got.dtype == np.float32
    assert got == pytest.approx(float(expected), rel=1e-6)


@pytest.mark.parametrize("fn", ["kl_pairwise", "js_pairwise"])
@pytest.mark.parametrize("size", ["small", "large"])
def test_pairwise_raw_sum_beyond_range(path, fn, size):
    """The all-pairs entries whose raw sums overflow, with base bringing them back,
    are the row function's values (small inputs: bit for bit)."""
    from kl_fast import _pairwise

    row_fn = kl_fast.kl_div if fn == "kl_pairwise" else kl_fast.js_div
    if fn == "kl_pairwise":
        P = np.array([RAW_OVER_P, [0.2, 0.8, 0.0, 0.0]])
        Q = np.array([RAW_OVER_Q, [0.5, 0.5, 1.0, 1.0], [0.0, 1.0, 1.0, 1.0]])
    else:                                  # JS of disjoint rows: sum(p) log(2) / 2 nats
        P = np.array([[1.7e308, 1.7e308, 1.7e308, 1.7e308], [0.2, 0.8, 0.0, 0.0]])
        Q = np.array([[0.0, 0.0, 0.0, 0.0], [0.5, 0.5, 1.0, 1.0], [1.0, 0.0, 0.0, 1.0]])
    if size == "large":                    # the Python layer's matrix
        got = getattr(_pairwise, fn + "_python")(P, Q, base=1e10)
    else:
        got = getattr(kl_fast, fn)(P, Q, base=1e10)
    want = np.array([[row_fn(p, q, base=1e10) for q in Q] for p in P])
    assert np.isfinite(want[0, 0])
    if fn == "js_pairwise":
        nats = 4 * np.longdouble(1.7e308) * np.log(np.longdouble(2)) / 2
        assert want[0, 0] == pytest.approx(float(nats / np.log(np.longdouble(1e10))), rel=1e-14)
    if size == "small":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-13)


def _mp_scaled_kl(p, q, dx=None, base=None):
    """sum p log(p/q) times dx, over log(base), in 2400-bit arithmetic."""
    import mpmath
    with mpmath.workprec(2400):
        t = mpmath.fsum(mpmath.mpf(float(u)) * mpmath.log(mpmath.mpf(float(u)) / mpmath.mpf(float(v)))
                        for u, v in zip(p, q) if u)
        if dx is not None:
            t *= mpmath.mpf(dx)
        if base is not None:
            t /= mpmath.log(mpmath.mpf(base))
        return t


def _within_output_floor(got, truth, rel):
    """got is truth to rel, or to the rounding of a subnormal result."""
    import mpmath
    err = abs(mpmath.mpf(float(got)) - truth)
    floor = mpmath.mpf(2.0**-1074) if isinstance(got, (float, np.float64)) else mpmath.mpf(2.0**-149)
    return err <= rel * abs(truth) + floor


def _tiny_rows(rng, m, n):
    """Rows with values from the subnormals up to 2**-900, some of order 1, some 0."""
    v = np.ldexp(rng.uniform(1.0, 2.0, (m, n)), rng.integers(-1074, -900, (m, n)))
    big = rng.random((m, n)) < 0.2
    v[big] = rng.random(big.sum())
    v[rng.random((m, n)) < 0.1] = 0.0
    return v


def test_magnified_tiny_sums_keep_their_bits(path):
    """A raw sum of subnormal terms keeps few bits; dx or a base near 1 magnifies it
    into the normal range, where those rows are redone at full precision."""
    rng = np.random.default_rng(11)
    P, Q = _tiny_rows(rng, 8, 4), _tiny_rows(rng, 8, 4)
    Q[Q == 0] = 1e-300
    P[0], Q[0] = [5e-324, 1.0, 0.0, 0.0], [0.34, 1.0, 1.0, 1.0]   # one subnormal term
    P[1], Q[1] = [5e-324, 0.0, 0.0, 0.0], [1e-310, 1e300, 1.0, 1.0]
    for kw in ({"dx": 1e300}, {"dx": 3e78}, {"base": 1.0 + 1e-7}, {"base": 2.0}):
        rows = kl_fast.kl_div(P, Q, **kw)
        np.testing.assert_array_equal(kl_fast.kl_div(P.T, Q.T, axis=0, **kw), rows)
        for i in range(len(P)):
            truth = _mp_scaled_kl(P[i], Q[i], **kw)
            got = kl_fast.kl_div(P[i], Q[i], **kw)
            assert got == rows[i]
            assert _within_output_floor(got, truth, 1e-14), (kw, i, got, float(truth))
    # float32 terms are floats: subnormal below 2**-126
    p32, q32 = np.float32([1e-45, 3e-44]), np.float32([1e-40, 1e-44])
    got = kl_fast.kl_div(p32, q32, dx=1e40)
    assert got.dtype == np.float32
    assert _within_output_floor(got, _mp_scaled_kl(p32, q32, dx=1e40), 1e-6)
    # equal rows and rows of zeros stay exactly 0
    assert kl_fast.kl_div([0.0, 0.0], [1.0, 1.0], dx=10.0) == 0.0
    assert kl_fast.kl_div([1e-320, 0.5], [1e-320, 0.5], dx=1e300) == 0.0
    # subnormal terms whose rounding cancels to a raw sum of exactly 0 (-1 and +1
    # units) are redone too; they were returned as 0
    for p in (np.float32([1e-45, 3e-45]), np.array([5e-324, 1e-323])):
        q = p[::-1].copy()
        rows = kl_fast.kl_div(np.stack([p, p, q]), np.stack([q, p, p]), dx=1e30)
        for kw in ({"dx": 1e30}, {"dx": 1e300}, {"base": 1.000001}):
            if p.dtype == np.float32 and "dx" in kw and kw["dx"] > 1e38:
                continue
            got = kl_fast.kl_div(p, q, **kw)
            assert got > 0 and _within_output_floor(got, _mp_scaled_kl(p, q, **kw), 1e-6), kw
        assert rows[0] == kl_fast.kl_div(p, q, dx=1e30) and rows[1] == 0.0


def test_pairwise_and_topk_magnified_tiny_sums(path):
    """The all-pairs entries and top-k values of such pairs are kl_div's."""
    rng = np.random.default_rng(12)
    P, Q = _tiny_rows(rng, 3, 3), _tiny_rows(rng, 5, 3)
    Q[Q == 0] = 1e-300
    base = 1.0 + 1e-6
    want = np.array([[kl_fast.kl_div(p, q, base=base) for q in Q] for p in P])
    for i in range(len(P)):
        for j in range(len(Q)):
            assert _within_output_floor(want[i, j], _mp_scaled_kl(P[i], Q[j], base=base), 1e-14)
    np.testing.assert_array_equal(kl_fast.kl_pairwise(P, Q, base=base), want)
    vals, idx = kl_fast.kl_topk(P, Q, len(Q), base=base)
    np.testing.assert_array_equal(vals, np.take_along_axis(want, idx, axis=1))
    assert np.all(np.diff(vals, axis=1) >= 0)


def test_magnified_tiny_sums_past_the_range_and_in_large_inputs():
    """dx / log(base) beyond DBL_MAX still finishes finite; the Python layer of
    kl_pairwise and kl_topk's choice take the redone values."""
    for kw in ({"dx": 1e300, "base": 1.0 + 1e-10}, {"dx": 1.7e308, "base": 2.0}):
        got = kl_fast.kl_div([5e-324], [1e-310], **kw)
        assert _within_output_floor(got, _mp_scaled_kl([5e-324], [1e-310], **kw), 1e-14), kw
    P = np.array([[2.0**-1074, 1.0]])
    Q = np.tile([2.0**-1074 * math.exp(30.55), 1.0], (8000, 1))      # the matrix path
    got = kl_fast.kl_pairwise(P, Q, base=1 + 1e-15)
    assert np.all(got == kl_fast.kl_div(P[0], Q[0], base=1 + 1e-15))
    assert _within_output_floor(got[0, 0], _mp_scaled_kl(P[0], Q[0], base=1 + 1e-15), 1e-14)
    # three raw sums that round alike: the smallest true value is chosen
    Q = np.array([[2.0**-1074 * math.exp(c), 1.0] for c in (30.55, 30.6, 30.45)])
    want = [kl_fast.kl_div(P[0], q, base=1 + 1e-7) for q in Q]
    vals, idx = kl_fast.kl_topk(P, Q, 1, base=1 + 1e-7)
    assert idx[0, 0] == int(np.argmin(want)) == 1 and vals[0, 0] == min(want)
    vals, idx = kl_fast.kl_topk(Q, P, 1, base=1 + 1e-7, divergence="kl_reverse")
    np.testing.assert_array_equal(vals[:, 0], want)


@pytest.mark.parametrize("fn", [kl_fast.kl_div, kl_fast.js_div])
def test_strided_reduction_over_several_axes_has_the_contiguous_bits(fn):
    """A strided input whose reduced axes cannot merge into one row is copied
    (not summed in partial rows), so the result is the contiguous input's."""
    rng = np.random.default_rng(1)
    p, q = rng.random((3, 40, 50)), rng.random((3, 40, 50))
    big = np.zeros((3, 80, 100))
    big[:, ::2, ::2] = p
    for axis in (None, (1, 2), (0, 2), (0, 1)):
        assert np.array_equal(fn(big[:, ::2, ::2], q, axis=axis), fn(p, q, axis=axis)), axis
        assert np.array_equal(fn(q, big[:, ::2, ::2], axis=axis), fn(q, p, axis=axis)), axis


@pytest.mark.parametrize("name", ["kl_div", "js_div", "kl_div_log"])
def test_reference_refuses_what_the_compiled_functions_refuse(name):
    fast, ref = getattr(kl_fast, name), getattr(reference, name)
    p, q = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    options = [{"base": b} for b in (1, -2, 0, np.inf, np.nan, "2", [2, 3])]
    if name == "kl_div":
        options += [{"dx": d} for d in (0, -0.1, np.inf, np.nan, "0.5")]
    for kw in options:
        for func in (fast, ref):
            with pytest.raises((TypeError, ValueError), match=next(iter(kw))):
                func(p, q, **kw)
    masked = np.ma.array([0.5, 0.5, 0.9], mask=[0, 0, 1])
    for func in (fast, ref):
        with pytest.raises(TypeError, match="masked"):
            func(masked, np.array([0.5, 0.5, 1e-9]))
    # float32 in either byte order gives float32, as the compiled functions do
    big = [np.array(a, dtype=">f4") for a in (p, q)]
    assert ref(*big).dtype == fast(*big).dtype == np.float32


def test_reference_pairwise_and_log_errors_name_their_arguments():
    with pytest.raises(ValueError, match=r"reference.kl_pairwise: P contains .* at index \[1, 1\]"):
        reference.kl_pairwise([[0.5, 0.5], [0.5, -0.5]], [[0.5, 0.5]])
    with pytest.raises(ValueError, match=r"reference.js_pairwise: Q contains .* at index \[0, 1\]"):
        reference.js_pairwise([[0.5, 0.5]], [[0.5, np.nan]])
    with pytest.raises(ValueError, match="reference.kl_pairwise: base must be"):
        reference.kl_pairwise([[0.5, 0.5]], [[0.5, 0.5]], base=1)
    big = np.array([[0.5, 0.5]], dtype=">f4")
    assert reference.kl_pairwise(big, big).dtype == np.float32
    # an empty reduction holds no probability: the same error as a -inf row
    for func in (reference.kl_div_log, kl_fast.kl_div_log):
        with pytest.raises(ValueError, match="normalize=True but log_p is -inf everywhere"):
            func(np.ones((2, 0)), np.ones((2, 0)), normalize=True)
        assert func(np.ones((0, 3)), np.ones((0, 3)), normalize=True).shape == (0,)


def test_real_number_options_in_both_layers():
    # one rule for base and dx in the compiled functions and the reference: a real
    # number (Python or NumPy, a 0-d array of one; Fraction too), never a bool, a
    # string or bytes of any kind, a complex or a timedelta
    import collections
    from fractions import Fraction

    a = np.full((2, 3), 1 / 3)
    for bad in (bytearray(b"2"), np.complex128(2 + 3j), 2 + 0j, np.timedelta64(2), True,
                np.True_, np.array(True), np.array([2.0]), "2"):
        for func in (kl_fast.kl_div, reference.kl_div):
            for name in ("base", "dx"):
                with pytest.raises(TypeError, match=f"{name} must be a real number"):
                    func(a, a, **{name: bad})
    for good in (2, 2.0, np.float32(2), np.int64(2), np.array(2.0), Fraction(2)):
        np.testing.assert_array_equal(kl_fast.kl_div(a, a, base=good), reference.kl_div(a, a, base=good))
    with pytest.raises(ValueError, match="reference.kl_pairwise: base must be"):
        reference.kl_pairwise(np.zeros((0, 2)), [[0.5, 0.5]], base=1)
    # an integer beyond the float64 range is a ValueError naming it by its size (it was
    # Python's bare OverflowError)
    for func in (kl_fast.kl_div, reference.kl_div, kl_fast.js_div):
        for name, value in (("base", 10**400), ("dx", -(10**400))):
            if func is kl_fast.js_div and name == "dx":
                continue
            with pytest.raises(ValueError, match=f"{name} must be positive and finite.*, got an "
                                                 f"integer of 401 digits, beyond the float64 range"):
                func(a, a, **{name: value})
    # a tuple subclass is a tuple of axes, as for NumPy
    Axes = collections.namedtuple("Axes", "first second")
    np.testing.assert_array_equal(kl_fast.kl_div(a, a, axis=Axes(0, 1)), 0.0)


def test_lists_of_python_integers_beyond_int64():
    # NumPy holds such a list as an object array: its integers are the floats they
    # round to where they are in range (as a 0-d one already was), and one beyond
    # the float64 range is named with its index (it was "must hold real numbers,
    # got an array of dtype object")
    expected = reference.kl_div(np.array([2.0 ** 64, 1.0]), np.array([1.0, 1.0]))
    assert kl_fast.kl_div([2 ** 64, 1], [1, 1]) == expected
    assert kl_fast.js_div([2 ** 64, 1], [1, 1]) == kl_fast.js_div([2.0 ** 64, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match=r"kl_div: p contains an integer of 603 digits, beyond "
                                         r"the float64 range, at index \[0\]"):
        kl_fast.kl_div([2 ** 2000, 1], [1, 1])
    with pytest.raises(ValueError, match=r"kl_pairwise: Q contains an integer of 332 digits.*"
                                         r"at index \[1, 1\]"):
        kl_fast.kl_pairwise([[1.0, 1.0]], [[1, 2], [3, -2 ** 1100]])
    with pytest.raises(TypeError, match="must hold real numbers"):
        kl_fast.kl_div(np.array([1, None], dtype=object), [1.0, 1.0])


def test_object_arrays_of_real_numbers():
    """A list NumPy holds as an object array because it mixes an integer beyond
    int64 with floats or Fractions is the floats they round to, as a lone
    Fraction already was (the list was a TypeError), and so is a 0-d object
    array; a value that rounds to +-inf or a nonzero one that rounds to 0 is
    named, with kl_div_log's rules for a longdouble array (a log_p below the
    range is a p of 0); bools, timedelta64 and Decimal are refused."""
    from decimal import Decimal
    from fractions import Fraction
    # the floats they round to, through the same kernel: the same bits
    expected = kl_fast.kl_div(np.array([2.0 ** 70, 0.5, 1.0]), np.array([1.0, 1.0, 1.0]))
    assert expected == pytest.approx(2.0 ** 70 * 70 * np.log(2) + 0.5 * np.log(0.5), rel=1e-15)
    assert kl_fast.kl_div([2 ** 70, 0.5, 1], [1, 1, 1]) == expected
    assert kl_fast.kl_div([2 ** 70, Fraction(1, 2), 1], [1, 1, 1]) == expected
    assert kl_fast.kl_div([Fraction(1, 2)], [0.25]) == kl_fast.kl_div(Fraction(1, 2), 0.25)
    assert kl_fast.kl_div(np.asarray(2 ** 70), 1.0) == kl_fast.kl_div(2.0 ** 70, 1.0)
    with pytest.raises(ValueError, match=r"p contains a Fraction of 400 digits, beyond the "
                                         r"float64 range, at index \[1\]"):
        kl_fast.kl_div([1, Fraction(10 ** 400, 3)], [1.0, 1.0])
    with pytest.raises(ValueError, match=r"q contains a nonzero Fraction at index \[0\], "
                                         r"below the float64 range"):
        kl_fast.kl_div([1.0, 1.0], [Fraction(1, 2 ** 1100), 2 ** 70])
    with pytest.raises(ValueError, match=r"p contains an infinite value"):
        kl_fast.kl_div([float("inf"), 2 ** 70], [1.0, 1.0])
    # log space: a log_p below the range is a p of 0, as for a longdouble array
    assert kl_fast.kl_div_log([-2 ** 1100, 0], [-1.0, -1.0]) == 1.0
    with pytest.raises(ValueError, match=r"log_q contains an integer of 332 digits"):
        kl_fast.kl_div_log([-1.0, -1.0], [-2 ** 1100, 0])
    wide = np.longdouble(10) ** 400
    if np.isfinite(wide):   # where longdouble is wider than float64
        with pytest.raises(ValueError, match=r"p contains .* at index \[0\], beyond the "
                                             r"float64 range"):
            kl_fast.kl_div(np.array([wide, 1], dtype=object), [1.0, 1.0])
        with pytest.raises(ValueError, match=r"q contains .* at index \[0\], below the "
                                             r"float64 range"):
            kl_fast.kl_div([1.0, 1.0], np.array([1 / wide, 1], dtype=object))
        assert kl_fast.kl_div_log(np.array([-wide, 0], dtype=object), [-1.0, -1.0]) == 1.0
    for refused in ([2 ** 70, True], [np.timedelta64(1), 2 ** 70], [Decimal("0.5"), 0.5]):
        with pytest.raises(TypeError, match="must hold real numbers"):
            kl_fast.kl_div(refused, [1.0, 1.0])
    with pytest.raises(TypeError, match="mu must hold real numbers"):
        kl_fast.gaussian_kl([1, 2, 1], [0, 1, 2], np.array([True, 2 ** 70], dtype=object), 1.0)


def test_readme_first_example_is_correctly_rounded():
    # the README's first example shows 0.5108256237659906: the exact sum rounded once
    import mpmath
    with mpmath.workprec(200):
        exact = sum(mpmath.mpf(a) * mpmath.log(mpmath.mpf(a) / mpmath.mpf(b))
                    for a, b in ((0.5, 0.9), (0.5, 0.1)))
    got = kl_fast.kl_div(np.array([0.5, 0.5]), np.array([0.9, 0.1]))
    assert got == float(exact) == 0.5108256237659906


def test_rows_near_the_top_of_the_range_keep_the_fast_path_s_bits():
    # the exponent part of the terms (sum p k) was split with k (2**33 + 1), which
    # overflowed from about 2e298: such rows went to the careful path, whose bits
    # differ; scaled by a power of two they now give the same bits, scaled alike
    # (below 2**996: beyond, the baseline kernels' ratio residual without FMA is 0)
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 3000))
        p = rng.random(n) * 1e308
        q = p * (1 + rng.normal(0, 1e-6, n))
        q[:3] = rng.random(3) * 1e306
        high = kl_fast.kl_div(p * 2.0 ** -30, q * 2.0 ** -30)
        assert high == kl_fast.kl_div(p * 2.0 ** -70, q * 2.0 ** -70) * 2.0 ** 40


@pytest.mark.parametrize("n", [1_000, 100_000])
@pytest.mark.parametrize("option", [{"dx": 1e-10}, {"base": 1e20}])
def test_a_raw_sum_beyond_the_range_brought_back_keeps_full_precision(n, option):
    # p near 1e308 with q close to it: the raw sum overflows and dx or base bring the
    # divergence back.  Redone on p alone times 2**-k, its k log 2 part cancelled
    # against the terms (3.2e-10 relative at n = 100,000); p and q are now scaled
    # together where q stays normal
    mpmath = pytest.importorskip("mpmath")
    p = np.full(n + 1, 1e308)
    q = np.full(n + 1, 1e308 * (1 - 1e-9))
    q[0] = 1e307
    with mpmath.workprec(300):
        P, q0, q1 = (mpmath.mpf(float(v)) for v in (p[0], q[0], q[1]))
        raw = P * mpmath.log(P / q0) + n * P * mpmath.log(P / q1)
        want = raw * mpmath.mpf(option["dx"]) if "dx" in option \
            else raw / mpmath.log(mpmath.mpf(option["base"]))
        got = kl_fast.kl_div(p, q, **option)
        assert abs((mpmath.mpf(float(got)) - want) / want) <= 4 * np.finfo(float).eps
