"""kl_pairwise and js_pairwise against per-pair kl_div / js_div, the NumPy broadcast
baseline, SciPy's cdist and long-double sums; the product form's error bound."""
import math
import tracemalloc
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp
from scipy.spatial import distance
from scipy.special import rel_entr

import kl_fast
from kl_fast import _div_kernels, _pairwise, reference

DTYPES = [np.float64, np.float32]


def exact_kl_matrix(P, Q, normalize=False):
    """Long-double terms summed in long double, for every pair: near-exact."""
    P = np.asarray(P, dtype=np.longdouble)
    Q = np.asarray(Q, dtype=np.longdouble)
    if normalize:
        P = P / P.sum(axis=1, keepdims=True)
        Q = Q / Q.sum(axis=1, keepdims=True)
    p, q = P[:, None, :], Q[None, :, :]
    with np.errstate(all="ignore"):
        t = np.where(p > 0, p * (np.log(p) - np.log(q)), 0)
        t = np.where((p > 0) & (q == 0), np.inf, t)
    return t.sum(axis=-1)


def probs(dtype, shape, zero_frac=0.2, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    a = rng.random(shape) * scale
    a[rng.random(shape) < zero_frac] = 0.0
    return a.astype(dtype)


def near_duplicates(m, n, seed, rel=1e-9):
    """Rows that come in pairs differing by a relative ``rel``: KL of order rel**2."""
    rng = np.random.default_rng(seed)
    base = rng.dirichlet(np.ones(n), size=(m + 1) // 2)
    rows = np.repeat(base, 2, axis=0)[:m]
    rows[1::2] *= 1 + rel * rng.standard_normal(rows[1::2].shape)
    return rows


def product_form(P, Q, normalize=False):
    """The unrefined product-form matrix and its a-priori error bound."""
    func = "test"
    P, Q = P.astype(np.float64), Q.astype(np.float64)  # as kl_pairwise computes
    hp, psum = _pairwise._row_stats(P, "P", func, None, True)
    _, qsum = _pairwise._row_stats(Q, "Q", func, None, True)
    bound = np.empty((P.shape[0], Q.shape[0]))
    value = _pairwise._kl_matrix(P, Q, hp, psum, qsum, normalize=normalize, num_threads=None,
                                 func=func, refine=False, bound=bound)
    return value, bound


elements = st.one_of(st.just(0.0), st.floats(1e-6, 1e3))


@st.composite
def matrices(draw):
    dtype = draw(st.sampled_from(DTYPES))
    n = draw(st.integers(0, 8))
    P = draw(hnp.arrays(np.float64, (draw(st.integers(0, 5)), n), elements=elements)).astype(dtype)
    Q = draw(hnp.arrays(np.float64, (draw(st.integers(0, 5)), n), elements=elements)).astype(dtype)
    if draw(st.booleans()) and len(Q):  # a near-duplicate pair
        P = np.concatenate([P, Q[:1] * dtype(1 + 1e-7)])
    return P, Q


# ---- kl_pairwise ----------------------------------------------------------------

@given(matrices())
def test_kl_matches_per_pair_kl_div_and_reference(args):
    P, Q = args
    got = kl_fast.kl_pairwise(P, Q)
    assert got.shape == (len(P), len(Q)) and got.dtype == P.dtype
    per_pair = kl_fast.kl_div(P[:, None, :], Q[None, :, :])
    ref = reference.kl_pairwise(P.astype(np.float64), Q.astype(np.float64))
    exact = exact_kl_matrix(P, Q).astype(np.float64)
    assert not np.any(np.isnan(got))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(exact))
    np.testing.assert_array_equal(np.isinf(ref), np.isinf(exact))
    fin = np.isfinite(exact)
    rtol = 2.0 ** -24 if P.dtype == np.float64 else 1e-6
    # exact where recomputed by the row kernel, else within the guaranteed relative error
    err = np.abs(got[fin] - exact[fin])
    assert np.all((got[fin] == per_pair[fin]) | (err <= rtol * np.abs(exact[fin]) + 1e-300))
    np.testing.assert_allclose(got[fin], ref[fin], rtol=1e-5 if P.dtype == np.float32 else 1e-7,
                               atol=1e-12 * (1 + np.abs(ref[fin])).max(initial=0))


@given(matrices(), st.booleans())
def test_kl_product_form_error_bound(args, normalize):
    P, Q = args
    if normalize:
        P, Q = P + 0.5, Q + 0.5
    value, bound = product_form(P, Q, normalize=normalize)
    exact = exact_kl_matrix(P, Q, normalize=normalize)
    fin = np.isfinite(exact)
    err = np.abs(value[fin].astype(np.longdouble) - exact[fin])
    assert np.all(err <= bound[fin])


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("kind", ["probabilities", "counts", "mixed"])
def test_kl_bound_and_refinement_on_hard_inputs(kind, normalize):
    # near-duplicate rows (KL ~ 1e-18) make the product form cancel badly
    P = near_duplicates(24, 60, seed=1)
    if kind == "counts":
        P = np.round(P * 5e4) + 1.0
    elif kind == "mixed":
        P = P * np.geomspace(1e-3, 1e3, 60)
    value, bound = product_form(P, P, normalize=normalize)
    exact = exact_kl_matrix(P, P, normalize=normalize)
    assert np.all(np.abs(value.astype(np.longdouble) - exact) <= bound)
    got = kl_fast.kl_pairwise(P, normalize=normalize)
    per_pair = kl_fast.kl_div(P[:, None, :], P[None, :, :], normalize=normalize)
    refined = np.abs(value) <= 2.0 ** 24 * bound
    assert refined[np.arange(24), np.arange(24)].all()
    np.testing.assert_array_equal(got[refined], per_pair[refined])
    rel = np.abs(got[~refined] - exact[~refined]) / np.abs(exact[~refined])
    assert np.all(rel <= 2.0 ** -24)
    # typical accuracy of the product form away from zero is far better than the guarantee
    assert np.all(rel <= 1e-10)


@pytest.mark.parametrize("scale", [1e-323, 3e-322, 1e-318, 1e-315])
def test_kl_product_form_bound_covers_subnormal_rows(scale):
    # products of subnormal p round by up to 2**-1075 each, an absolute error no
    # relative bound covers: the bound underflowed to about 0, entries were left
    # 1e-4 off and kl_pairwise(P)'s diagonal was not 0
    rng = np.random.default_rng(7)
    P, Q = rng.random((60, 50)) * scale, rng.random((61, 50))
    value, bound = product_form(P, Q)
    exact = exact_kl_matrix(P, Q)
    assert np.all(np.abs(value.astype(np.longdouble) - exact) <= bound)
    got = kl_fast.kl_pairwise(P, Q)
    per_pair = kl_fast.kl_div(P[:, None, :], Q[None, :, :])
    # each entry recomputed, or within the docstring's relative error
    rel = np.abs(got.astype(np.longdouble) - exact) / np.abs(exact)
    assert np.all((got == per_pair) | (rel <= 2.0 ** 12 * 50 * np.finfo(float).eps))
    P = rng.random((80, 100)) * scale     # 80 * 80 * (100 + 16) > 2**17: the product form
    np.testing.assert_array_equal(np.diag(kl_fast.kl_pairwise(P)), np.zeros(80))


def test_kl_all_pairs_within_p():
    P = probs(np.float64, (30, 40), zero_frac=0.1, seed=2)
    got = kl_fast.kl_pairwise(P)
    np.testing.assert_array_equal(got, kl_fast.kl_pairwise(P, P))
    # the diagonal is recomputed by the exact kernel, which gives 0 for p == q
    np.testing.assert_array_equal(np.diag(got), np.zeros(30))
    P = near_duplicates(30, 40, seed=3)
    got = kl_fast.kl_pairwise(P)
    per_pair = kl_fast.kl_div(P[:, None, :], P[None, :, :])
    # the near-duplicate pairs are recomputed by the row kernel too
    np.testing.assert_array_equal(got[::2, 1::2].diagonal(), per_pair[::2, 1::2].diagonal())
    np.testing.assert_array_equal(got[1::2, ::2].diagonal(), per_pair[1::2, ::2].diagonal())


@pytest.mark.parametrize("dtype", DTYPES)
def test_kl_zero_support_exactly_inf(dtype):
    rng = np.random.default_rng(4)
    P = probs(dtype, (40, 25), zero_frac=0.3, seed=5)
    Q = probs(dtype, (35, 25), zero_frac=0.15, seed=6)
    P[3] = 0.0  # an all-zero row: KL 0 against everything
    Q[7, rng.random(25) < 0.5] = 0.0
    got = kl_fast.kl_pairwise(P, Q)
    overlap = (P > 0).astype(int) @ (Q == 0).astype(int).T > 0
    np.testing.assert_array_equal(np.isposinf(got), overlap)
    assert not np.isnan(got).any()
    np.testing.assert_array_equal(got[3], np.zeros(35, dtype))
    per_pair = kl_fast.kl_div(P[:, None, :], Q[None, :, :])
    np.testing.assert_allclose(got, per_pair, rtol=1e-6 if dtype == np.float32 else 1e-12)


def test_kl_normalize_base_and_scipy_cdist():
    P = probs(np.float64, (12, 9), zero_frac=0.0, seed=7, scale=50.0)
    Q = probs(np.float64, (10, 9), zero_frac=0.0, seed=8, scale=3.0)
    got = kl_fast.kl_pairwise(P, Q, normalize=True, base=2)
    expected = distance.cdist(P / P.sum(1, keepdims=True), Q / Q.sum(1, keepdims=True),
                              lambda u, v: rel_entr(u, v).sum()) / np.log(2)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_allclose(got, kl_fast.kl_div(P[:, None], Q[None], normalize=True, base=2),
                               rtol=1e-12)


def test_kl_float32_stays_float32():
    P = probs(np.float32, (20, 30), seed=9)
    Q = probs(np.float32, (15, 30), zero_frac=0.0, seed=10)
    got = kl_fast.kl_pairwise(P, Q)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, exact_kl_matrix(P, Q).astype(np.float64), rtol=2e-7)
    assert kl_fast.kl_pairwise(P, Q.astype(np.float64)).dtype == np.float64


def test_kl_blocks_threads_layouts(monkeypatch):
    P = probs(np.float64, (70, 33), zero_frac=0.1, seed=11)
    Q = probs(np.float64, (20, 33), zero_frac=0.05, seed=12)
    whole = kl_fast.kl_pairwise(P, Q)
    np.testing.assert_array_equal(kl_fast.kl_pairwise(P, Q, num_threads=1), whole)
    np.testing.assert_array_equal(kl_fast.kl_pairwise(P, Q, num_threads=2), whole)
    np.testing.assert_array_equal(kl_fast.kl_pairwise(np.asfortranarray(P), Q[:, ::-1][:, ::-1]), whole)
    ro = P.copy()
    ro.flags.writeable = False
    np.testing.assert_array_equal(kl_fast.kl_pairwise(ro, Q), whole)
    # Blocks of 2 rows: BLAS may take another kernel for a 2-row product than for a
    # 70-row one (OpenBLAS's small-matrix path), so the product form's last bits can
    # change with the internal block size, within its error bound.
    monkeypatch.setattr(_pairwise, "_BLOCK_ELEMENTS", 50)
    np.testing.assert_allclose(kl_fast.kl_pairwise(P, Q), whole, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(kl_fast.kl_pairwise(P, Q, num_threads=2),
                                  kl_fast.kl_pairwise(P, Q, num_threads=1))
    P0, Q0 = P.copy(), Q.copy()
    kl_fast.kl_pairwise(P, Q, normalize=True)
    np.testing.assert_array_equal(P, P0)
    np.testing.assert_array_equal(Q, Q0)


@pytest.mark.parametrize("n", [130, 5000])
def test_kl_product_form_layouts_and_converted_inputs(n):
    """On the product form (30 * 30 * (n + 16) > 2**12; compiled for n = 130,
    where 30 * 30 * n <= 2**22, by the Python layer for n = 5000, with the same
    bits) a Fortran-order P gives the C-order result bit for bit (BLAS rounds
    the two layouts' products differently: up to 8.5e-14 apart before P was
    made C-contiguous); a small input the Python layer converts (a subclass,
    long double, objects) is computed pair by pair like any other, so it
    equals kl_div."""
    rng = np.random.default_rng(2)
    P, Q = rng.random((30, n)), rng.random((30, n))
    compiled = _div_kernels.fast_path("kl_pairwise", P, Q)
    assert (compiled is None) == (n == 5000)
    whole = kl_fast.kl_pairwise(P, Q)
    np.testing.assert_array_equal(_pairwise.kl_pairwise_python(P, Q), whole)
    np.testing.assert_array_equal(kl_fast.kl_pairwise(np.asfortranarray(P), Q), whole)
    np.testing.assert_array_equal(kl_fast.kl_pairwise(np.asfortranarray(P), np.asfortranarray(Q)),
                                  whole)
    out = np.empty((30, 30), order="F")
    kl_fast.kl_pairwise(np.asfortranarray(P), Q, out=out)
    np.testing.assert_array_equal(out, whole)
    class Sub(np.ndarray):
        pass

    P, Q = rng.random((3, 5)), rng.random((4, 5))
    want = kl_fast.kl_div(P[:, None], Q[None])
    for a, b in ((P.view(Sub), Q), (P.astype(np.longdouble), Q), (P, Q.astype(np.longdouble)),
                 (P.astype(object), Q.astype(object))):
        got = kl_fast.kl_pairwise(a, b)
        assert type(got) is np.ndarray and got.dtype == np.float64
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(kl_fast.kl_pairwise(P.astype(object)),
                                  kl_fast.kl_div(P[:, None], P[None]))
    np.testing.assert_array_equal(kl_fast.kl_pairwise(P.view(Sub), Q, base=2, normalize=True),
                                  kl_fast.kl_div(P[:, None], Q[None], base=2, normalize=True))


def test_kl_memory_is_bounded():
    P = probs(np.float64, (300, 400), zero_frac=0.1, seed=13)
    Q = probs(np.float64, (300, 400), zero_frac=0.05, seed=14)
    kl_fast.kl_pairwise(P, Q)  # warm up
    tracemalloc.start()
    kl_fast.kl_pairwise(P, Q)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # an (m, k, n) temporary would be 288 MB; inputs, log(Q) and result are ~1 MB each
    assert peak < 12 * (P.nbytes + 300 * 300 * 8)


def test_kl_overflowing_product_form_falls_back():
    P = np.array([[1e300, 1e-300, 1.0], [0.5, 0.25, 0.25]])
    Q = np.array([[1e-300, 1e300, 1.0], [0.2, 0.3, 0.5]])
    got = kl_fast.kl_pairwise(P, Q)
    per_pair = kl_fast.kl_div(P[:, None], Q[None])
    np.testing.assert_array_equal(got[0], per_pair[0])  # recomputed by the row kernel
    np.testing.assert_allclose(got[1], per_pair[1], rtol=1e-14)


@pytest.mark.parametrize("normalize", [False, True])
def test_product_form_with_ratios_in_the_subnormals(normalize):
    # log(q / r) with q / r in the subnormals: the rounded ratio had lost bits the
    # first-order residual cannot give back (744.84 for 744.44)
    P = np.array([[1e-200, 3e-5], [0.5, 0.5], [1e-320, 1.0], [1e-310, 5e-324]])
    # the column maxima (3.0) make q / r inexact in the subnormals
    Q = np.array([[1.0, 1.5e-323], [0.3, 1e-310], [2.5e-323, 1e-310], [3.0, 3.0]])
    reps = 40   # beyond the pair-by-pair size: the product form
    got = kl_fast.kl_pairwise(np.tile(P, (reps, 1)), np.tile(Q, (reps, 1)), normalize=normalize)
    per_pair = kl_fast.kl_div(P[:, None], Q[None], normalize=normalize)
    np.testing.assert_allclose(got, np.tile(per_pair, (reps, reps)), rtol=1e-13, atol=1e-14)


def _kl_longdouble(P, Q):
    """KL of every pair in long double (its wider exponent range holds the sums), rounded once."""
    P = np.asarray(P, dtype=np.longdouble)[:, None]  # noqa: N806
    Q = np.asarray(Q, dtype=np.longdouble)[None]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(P > 0, P * (np.log(P) - np.log(Q)), 0.0)
    with np.errstate(over="ignore"):
        return terms.sum(axis=-1).astype(np.float64)


@pytest.mark.parametrize("normalize", [False, True])
def test_kl_large_finite_inputs_no_warnings(normalize):
    """Inputs near 1e300 overflow the product form: no RuntimeWarning leaks (the suite
    turns warnings into errors) and the entries are right, +inf where KL overflows."""
    P = np.array([[1e300, 2e300, 3e300, 1.0], [1e307, 1e307, 1e307, 1e307],
                  [0.5, 0.25, 0.25, 0.0], [1e300, 1e-300, 1.0, 1e300]])
    Q = np.array([[1.0, 1.0, 1.0, 1.0], [1e-300, 1.0, 1.0, 1e300], [0.2, 0.3, 0.5, 1e-10]])
    if normalize:
        # (row 1 is left out: kl_div itself gives inf there, its sum p log p overflowing)
        P = P[[0, 2, 3]]
        Pl, Ql = P.astype(np.longdouble), Q.astype(np.longdouble)
        expected = _kl_longdouble(Pl / Pl.sum(axis=1, keepdims=True), Ql / Ql.sum(axis=1, keepdims=True))
    else:
        expected = _kl_longdouble(P, Q)
        assert np.isinf(expected).any()  # the case where the true value overflows
    got = kl_fast.kl_pairwise(P, Q, normalize=normalize)
    assert not np.isnan(got).any()
    np.testing.assert_allclose(got, expected, rtol=2.0 ** -24)  # the documented product-form accuracy
    got_pp = kl_fast.kl_pairwise(P, normalize=normalize)
    assert not np.isnan(got_pp).any()
    np.testing.assert_allclose(np.diag(got_pp), 0.0, atol=0)


def test_kl_empty_shapes():
    assert kl_fast.kl_pairwise(np.zeros((0, 3)), np.ones((4, 3))).shape == (0, 4)
    assert kl_fast.kl_pairwise(np.ones((2, 3)), np.ones((0, 3))).shape == (2, 0)
    np.testing.assert_array_equal(kl_fast.kl_pairwise(np.ones((2, 0)), np.ones((3, 0))), np.zeros((2, 3)))


@pytest.mark.parametrize("func", [kl_fast.kl_pairwise, kl_fast.js_pairwise])
def test_pairwise_errors(func):
    name = func.__name__
    P = probs(np.float64, (4, 5), zero_frac=0.0, seed=15)
    with pytest.raises(ValueError, match=rf"{name}: P must be a 2-D array .* shape \(5,\)"):
        func(P[0], P)
    with pytest.raises(ValueError, match=rf"{name}: the rows of P \(length 5\) and of Q \(length 4\)"):
        func(P, P[:, :4])
    with pytest.raises(TypeError, match=rf"{name}: Q must hold real numbers"):
        func(P, P.astype(complex))
    for which in ("P", "Q"):
        A, B = P.copy(), P.copy()
        (A if which == "P" else B)[2, 3] = -1.0
        with pytest.raises(ValueError, match=rf"{name}: {which} contains a negative value \(-1.0\) at index \[2, 3\]"):
            func(A, B)
        (A if which == "P" else B)[2, 3] = np.nan
        with pytest.raises(ValueError, match=rf"{name}: {which} contains NaN at index \[2, 3\]"):
            func(A, B)
    Z = P.copy()
    Z[1] = 0.0
    with pytest.raises(ValueError, match=rf"{name}: normalize=True but row 1 of Q sums to 0.0"):
        func(P, Z, normalize=True)
    with pytest.raises(ValueError, match="base"):
        func(P, base=1)
    func(np.where(P > 0.5, np.nan, P), check=False)  # unspecified, memory-safe


def test_pairwise_normalize_unchecked_does_not_raise_for_kl_div():
    # with normalize, entries the product form cannot give are redone by kl_div:
    # check=False must reach it (it raised, naming kl_div and the row's own index)
    rng = np.random.default_rng(3)
    P = rng.dirichlet(np.ones(10), 100)
    Q = rng.dirichlet(np.ones(10), 100)
    P[3, 2] = -0.5
    res = kl_fast.kl_pairwise(P, Q, normalize=True, check=False)
    expect = [kl_fast.kl_div(P[3], q, normalize=True, check=False) for q in Q]
    np.testing.assert_array_equal(res[3], expect)
    assert np.all(np.isfinite(np.delete(res, 3, axis=0)))


@pytest.mark.parametrize("func", [kl_fast.kl_pairwise, kl_fast.js_pairwise])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pairwise_out(func, dtype):
    P = probs(dtype, (6, 9), zero_frac=0.2, seed=21)
    Q = probs(dtype, (4, 9), zero_frac=0.0, seed=22)
    for kw in ({}, {"normalize": True, "base": 2}):
        want = func(P, Q, **kw)
        # the kernels' own buffer (C-contiguous float64), a strided view, a narrower dtype
        outs = [np.full((6, 4), -7.0), np.full((4, 6), -7.0).T,
                np.full((6, 8), -7.0)[:, ::2], np.full((6, 4), -7.0, dtype=np.float32)]
        for out in outs:
            got = func(P, Q, out=out, **kw)
            assert got is out
            np.testing.assert_array_equal(out, want.astype(out.dtype))
    # out holding an input: the result is that of the inputs as they were
    S = probs(np.float64, (5, 5), zero_frac=0.0, seed=23)
    want = func(S, S.copy())
    S2 = S.copy()
    np.testing.assert_array_equal(func(S2, S2.copy(), out=S2), want)
    S3 = S.copy()
    np.testing.assert_array_equal(func(S3.copy(), S3, out=S3), want)


@pytest.mark.parametrize("func", [kl_fast.kl_pairwise, kl_fast.js_pairwise])
def test_pairwise_out_errors(func):
    name = func.__name__
    P = probs(np.float64, (3, 5), zero_frac=0.0, seed=24)
    with pytest.raises(ValueError, match=rf"{name}: out has shape \(3, 4\), the result has shape \(3, 3\)"):
        func(P, out=np.empty((3, 4)))
    with pytest.raises(TypeError, match=rf"{name}: cannot write a float64 result into out of dtype int64"):
        func(P, out=np.empty((3, 3), dtype=np.int64))
    with pytest.raises(TypeError, match=rf"{name}: out must be a numpy array, got list"):
        func(P, out=[[0.0] * 3] * 3)
    ro = np.zeros((3, 3))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=rf"{name}: out is read-only"):
        func(P, out=ro)
    assert not ro.any()


# ---- js_pairwise ----------------------------------------------------------------

@given(matrices(), st.booleans())
def test_js_matches_per_pair_js_div_and_reference(args, normalize):
    P, Q = args
    if normalize:
        if P.shape[1] == 0:
            return
        P, Q = P + P.dtype.type(0.5), Q + Q.dtype.type(0.5)
    got = kl_fast.js_pairwise(P, Q, normalize=normalize)
    assert got.shape == (len(P), len(Q)) and got.dtype == P.dtype
    per_pair = kl_fast.js_div(P[:, None, :], Q[None, :, :], normalize=normalize)
    np.testing.assert_array_equal(got, per_pair)
    ref = reference.js_pairwise(P.astype(np.float64), Q.astype(np.float64), normalize=normalize)
    scale = P.astype(np.float64).sum(1)[:, None] + Q.astype(np.float64).sum(1)[None, :]
    rtol = 1e-12 if P.dtype == np.float64 else 1e-6
    assert np.all(np.abs(got - ref) <= rtol * np.abs(ref) + 1e-13 * (1 if normalize else scale))


@pytest.mark.parametrize("dtype", DTYPES)
def test_js_symmetric_and_scipy_cdist(dtype):
    P = probs(dtype, (25, 30), zero_frac=0.2, seed=16)
    P[:, 0] += 1  # positive sums
    within = kl_fast.js_pairwise(P, normalize=True, base=2)
    np.testing.assert_array_equal(within, within.T)
    np.testing.assert_array_equal(within, kl_fast.js_pairwise(P, P, normalize=True, base=2))
    np.testing.assert_array_equal(np.diag(within), np.zeros(25, dtype))
    with np.errstate(invalid="ignore"):  # scipy takes sqrt of a rounded negative near p == q
        expected = np.nan_to_num(distance.cdist(P.astype(np.float64), P.astype(np.float64),
                                                "jensenshannon") ** 2) / np.log(2)
    np.testing.assert_allclose(within, expected, rtol=1e-6 if dtype == np.float32 else 1e-11,
                               atol=1e-15)


def test_js_threads_bit_identical():
    P = probs(np.float64, (40, 50), seed=17)
    Q = probs(np.float64, (30, 50), seed=18)
    one = kl_fast.js_pairwise(P, Q, num_threads=1)
    assert one.tobytes() == kl_fast.js_pairwise(P, Q, num_threads=2).tobytes()
    sym = kl_fast.js_pairwise(P, num_threads=1)
    assert sym.tobytes() == kl_fast.js_pairwise(P, num_threads=2).tobytes()


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("num_threads", [1, 2])
def test_product_form_finish_is_the_numpy_passes(normalize, num_threads, path):
    """The one compiled pass after the matrix product gives the bits of the
    NumPy passes it replaced: raw KL, finish, error bound, the entries to redo,
    on every kernel path (a product the compiler fuses must not decide a tie)."""
    from kl_fast import _div_kernels
    rng = np.random.default_rng(7)
    b, k = 37, 53
    C = -rng.random((b, k)) * 5.0
    C[3, :5] = 0.0
    hp = -rng.random(b) * 3.0
    C[4, 6] = hp[4]                     # a divergence of 0: redo
    h_abs = rng.random(b) * 2.0
    C[5, :3] = np.nan, np.inf, -np.inf  # non-finite entries
    C[6, 7] = h_abs[6]                  # a bound of 0: kept
    gamma, factor = 164 * 2.0 ** -53, 2.0 ** -12 / (164 * 2.0 ** -53)
    # ties, |hp - c| == fl(factor a) with factor a below it: redone (a fused
    # product would keep them), rows 7 to 10; and subnormal bounds, row 11
    ties = [h for h in np.linspace(0.4, 0.6, 400)
            if Fraction(factor * (h * gamma)) > Fraction(factor) * Fraction(h * gamma)][:4]
    h_abs[7:11], C[7:11, :] = ties, 0.0
    hp[7:11] = [factor * (h_abs[i] * gamma) for i in range(7, 11)]
    h_abs[11], C[11, :] = 2.0 ** -1025, 0.0
    hp[11] = factor * ((h_abs[11] - 0.0) * gamma)
    psum, qsum = rng.random(b) + 0.5, rng.random(k) + 0.5
    qsum[6] = psum[4]                   # so that [4, 6] is 0 with normalize too
    log_ps, log_qs = np.log(psum), np.log(qsum)
    # the same arithmetic in NumPy passes
    with np.errstate(invalid="ignore"):
        a_abs = h_abs[:, None] - C
        want = hp[:, None] - C
        if normalize:
            want = kl_fast._api.finish(want, psum[:, None], qsum[None, :], normalize=True,
                                       base=None, dx=None, func="test")
            a_abs /= psum[:, None]
            a_abs += np.abs(log_qs[None, :] - log_ps[:, None]) + 1.0
        else:
            # product_bound: a nonzero scale raised by 2**-1021 (products of subnormal p)
            a_abs = np.where(a_abs != 0.0, a_abs + 2.0 ** -1021, a_abs)
        a_abs *= gamma
        want_redo = ~((np.abs(want) > factor * a_abs) | (a_abs == 0.0))
    assert want_redo[5, [0, 2]].all() and not want_redo[5, 1] and not want_redo[6, 7]
    if not normalize:
        assert want_redo[7:12].all()
    for with_bound in (True, False):
        ob = C.copy()
        redo = np.zeros((b, k), np.uint8)
        bound = np.empty((b, k)) if with_bound else None
        rows = _div_kernels.product_form_finish(ob, hp, h_abs, psum, qsum, log_ps, log_qs,
                                                normalize, gamma, factor, redo, bound,
                                                num_threads)
        assert ob.tobytes() == want.tobytes()
        if with_bound:
            assert bound.tobytes() == a_abs.tobytes()
        assert np.array_equal(redo.view(bool), want_redo)
        assert rows == want_redo.any(axis=1).sum() >= 1


def test_normalize_matrix_with_sums_far_apart():
    """The product form finishes S/P + log(Q/P): rows whose sums lie far apart
    are first scaled (by powers of two) to sums near 1, so near-duplicates keep
    kl_div's accuracy and proportional rows give 0 to rounding."""
    p = np.array([0.1, 0.2, 0.3, 0.4])
    q = p * (1 + 1e-5 * np.array([1, -1, 1, -1])) * 1e250
    got = kl_fast.kl_pairwise(np.tile(p, (100, 1)), np.tile(q, (100, 1)), normalize=True)
    want = kl_fast.kl_div(p, q, normalize=True)
    # the rounding of normalising (each element's division by its sum) is the floor
    assert np.all(np.abs(got - want) <= 4e-16 * 0.25)
    zero = kl_fast.kl_pairwise(np.tile(p, (100, 1)), np.tile(p * 1e250, (100, 1)), normalize=True)
    assert np.all(np.abs(zero) <= 4.5e-16)
    counts = np.random.default_rng(3).integers(0, 1000, (200, 30)).astype(float)
    got = kl_fast.kl_pairwise(counts, counts[:50] / 7.0, normalize=True)
    want = np.array([[kl_fast.kl_div(a, b, normalize=True) for b in counts[:50] / 7.0]
                     for a in counts])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=4e-15)


def test_normalize_near_zero_entries_are_kl_div_after_scaling():
    """Rows scaled to sums near 1 before the product form: the entries it cannot
    resolve from 0 are still kl_div's of the original rows, bit for bit."""
    rng = np.random.default_rng(0)
    b = rng.random((200, 10)) + 0.1
    P, Q = b * 1000, b * (1 + 1e-9 * rng.standard_normal((200, 10))) * 1500
    got = kl_fast.kl_pairwise(P, Q, normalize=True)
    near = np.abs(got) < 1e-8
    assert near.sum() >= 200
    for i, j in zip(*np.nonzero(near)):
        assert got[i, j] == kl_fast.kl_div(P[i], Q[j], normalize=True)


def test_js_matrix_path_redoes_magnified_subnormal_terms():
    """js_pairwise's matrix path and kl_topk("js") take js_div's values where a
    base near 1 magnifies subnormal terms."""
    P = np.hstack([np.arange(1, 101)[:, None] * 5e-324, np.full((100, 1), 1e-320)])
    Q = P[::-1]
    base = 1 + 1e-12
    got = kl_fast.js_pairwise(P, np.tile(Q, (3, 1)), base=base)     # the matrix path
    for i, j in ((0, 0), (0, 96), (5, 203), (99, 99), (42, 299)):
        assert got[i, j] == kl_fast.js_div(P[i], Q[j % 100], base=base)
    vals, idx = kl_fast.kl_topk(P[:3], Q, 2, divergence="js", base=base)
    want = np.array([[kl_fast.js_div(p, q, base=base) for q in Q] for p in P[:3]])
    order = np.lexsort((np.broadcast_to(np.arange(100), want.shape), want), axis=1)[:, :2]
    np.testing.assert_array_equal(idx, order)
    np.testing.assert_array_equal(vals, np.take_along_axis(want, order, axis=1))


def test_unchecked_bad_values_give_kl_div_s_value_on_both_paths():
    # check=False: the product form counted a NaN or negative q as a zero and gave
    # finite numbers where kl_div and the pair-by-pair path give NaN
    rng = np.random.default_rng(2)
    P = rng.random((3, 20))
    Q = rng.random((3000, 20))
    Q[1, 3] = np.nan
    Q[2, 4] = -0.5
    P[2, 5] = np.nan
    big = kl_fast.kl_pairwise(P, Q, check=False)
    small = kl_fast.kl_pairwise(P, Q[:5], check=False)
    for i in range(3):
        for j in range(5):
            want = kl_fast.kl_div(P[i], Q[j], check=False)
            np.testing.assert_array_equal(small[i, j], want)
            if np.isnan(want) or j in (1, 2) or i == 2:
                np.testing.assert_array_equal(big[i, j], want)
    assert np.isnan(big[0, 1:3]).all() and np.isnan(big[2]).all()
    assert np.isfinite(big[:2, 3:]).all()


def test_entries_beyond_the_range_brought_back_by_base_are_kl_div_s():
    # the product-form path redoes entries whose raw sum overflows by kl_div itself
    # (which scales p and q together where q stays normal: full precision)
    rng = np.random.default_rng(1)
    P = rng.random((60, 50)) * 1e308
    Q = np.abs(P[::-1] * (1 + rng.normal(0, 1e-6, (60, 50))))
    got = kl_fast.kl_pairwise(P, Q, base=1e20)
    want = np.array([[kl_fast.kl_div(P[i], Q[j], base=1e20) for j in range(60)] for i in range(60)])
    np.testing.assert_array_equal(got, want)
    assert np.isfinite(got).all()


@pytest.mark.parametrize("tail", [1, 4])
def test_entries_whose_running_sum_overflows_but_not_the_divergence_are_kl_div_s(tail):
    # sum p log(p/q) = 1e308 + 1e308 - 6.6e307 tail: finite, but the row kernel's
    # running sum overflows first; the product form's entries were +inf without base
    p = np.array([1e308, 1e308] + [6.6e307] * tail)
    q = np.array([1e308 / np.e, 1e308 / np.e] + [6.6e307 * np.e] * tail)
    exact = (2.0 - 0.66 * tail) * 1e308
    P, Q = np.tile(p, (100, 1)), np.tile(q, (100, 1))     # the product-form size
    for base in (None, 2.0, 0.5):
        want = kl_fast.kl_div(p, q, base=base)
        assert want == pytest.approx(exact / (math.log(base) if base else 1.0), rel=1e-12, abs=0)
        np.testing.assert_array_equal(kl_fast.kl_pairwise(P, Q, base=base), np.full((100, 100), want))
        np.testing.assert_array_equal(kl_fast.kl_pairwise(P[:2], Q[:3], base=base), np.full((2, 3), want))
