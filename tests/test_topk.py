"""kl_topk against the full matrix of exact values (kl_div / js_div of every pair)."""
import tracemalloc

import numpy as np
import pytest

import kl_fast
from kl_fast import _topk


def _exact_matrix(P, Q, divergence, normalize, base):
    """Every pair through the row kernels (broadcast, no product form)."""
    P64, Q64 = np.asarray(P, dtype=np.float64), np.asarray(Q, dtype=np.float64)
    if divergence == "js":
        return kl_fast.js_div(P64[:, None], Q64[None], normalize=normalize, base=base)
    if divergence == "kl_reverse":
        return kl_fast.kl_div(Q64[None], P64[:, None], normalize=normalize, base=base)
    return kl_fast.kl_div(P64[:, None], Q64[None], normalize=normalize, base=base)


def _expected(M, k):
    cols = np.broadcast_to(np.arange(M.shape[1]), M.shape)
    order = np.lexsort((cols, M), axis=1)[:, :k]
    return np.take_along_axis(M, order, axis=1), order


def _inputs(rng, m, total, n):
    P = rng.dirichlet(np.ones(n), m)
    Q = rng.dirichlet(np.ones(n), total)
    Q[5] = Q[9] = P[1]                       # exact ties (value 0 for KL)
    Q[11] = Q[3]                             # duplicate candidates
    Q[7, :3] = 0.0                           # zeros: +inf where p has mass there
    P[2, :3] = 0.0                           # ... but not for this row
    Q[13] = P[4] * (1 + 1e-14 * rng.standard_normal(n))   # near-ties below the product
    Q[14] = P[4] * (1 + 1e-14 * rng.standard_normal(n))   # form's resolution
    return P, Q


@pytest.mark.parametrize("divergence", ["kl", "js", "kl_reverse"])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("base", [None, 2.0])
def test_equals_sorting_the_exact_matrix(rng, divergence, normalize, base):
    P, Q = _inputs(rng, 23, 300, 17)
    if normalize:
        P = P * rng.uniform(0.5, 1e3, (P.shape[0], 1))
        Q = Q * rng.uniform(1e-3, 2.0, (Q.shape[0], 1))
    M = _exact_matrix(P, Q, divergence, normalize, base)
    want_v, want_i = _expected(M, 12)
    v, i = kl_fast.kl_topk(P, Q, 12, divergence=divergence, normalize=normalize, base=base)
    np.testing.assert_array_equal(i, want_i)
    np.testing.assert_array_equal(v, want_v)
    assert v.dtype == np.float64 and i.dtype == np.intp


def test_many_blocks_give_the_same_result(rng, monkeypatch):
    P, Q = _inputs(rng, 40, 700, 9)
    whole = kl_fast.kl_topk(P, Q, 7)
    monkeypatch.setattr(_topk, "_TILE_ENTRIES", 64)
    monkeypatch.setattr(_topk, "_MAX_COLS", 16)
    assert _topk._tiles(40, 700) == (4, 16)
    for div in ("kl", "js", "kl_reverse"):
        blocked = kl_fast.kl_topk(P, Q, 7, divergence=div)
        want = _expected(_exact_matrix(P, Q, div, False, None), 7)
        np.testing.assert_array_equal(blocked[1], want[1])
        np.testing.assert_array_equal(blocked[0], want[0])
    np.testing.assert_array_equal(kl_fast.kl_topk(P, Q, 7)[1], whole[1])


def test_ties_and_infinities_rank_as_documented():
    P = np.array([[0.5, 0.5, 0.0]])
    Q = np.array([[0.0, 1.0, 0.0], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0],
                  [0.25, 0.25, 0.5]])
    v, i = kl_fast.kl_topk(P, Q, 5)
    assert i.tolist() == [[1, 3, 4, 0, 2]]            # 0, 0 (lower index first), ln 2, inf, inf
    assert v[0, :2].tolist() == [0.0, 0.0]
    assert v[0, 2] == kl_fast.kl_div(P[0], Q[4])
    assert np.isinf(v[0, 3:]).all()


# Rows whose values span the double range: the product form's bound is not a
# number, or normalize's scaling by powers of two rounds an element away (a p
# over a zero of q, or a q under p > 0).
SPANNING = [
    (np.array([[1e308]]), np.array([[1e308]]), False),
    (np.array([[1e308, 1e308, 1e-310]]), np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]), True),
    (np.array([[1.0, 1.0, 1.0], [1e300, 1e300, 1.0]]),
     np.array([[1.0, 1.0, 0.5], [1e308, 1e308, 1e-310], [1.0, 1.0, 0.0]]), True),
    (np.array([[1e300, 1e-200, 1e-300, 1e200]]),
     np.array([[1e-310, 1e308, 1e300, 5e-324], [1.0, 2.0, 3.0, 4.0]]), True),
    # tiny sums, scaled exactly: the values were a few ulps from kl_div's
    (np.array([[0.0, 2.594163710593004e-309], [1e-310, 3e-310]]),
     np.array([[0.0, 2.212426167587478e-300], [2e-310, 5e-310], [1.0, 1.0]]), True),
]


@pytest.mark.parametrize("P, Q, normalize", SPANNING)
@pytest.mark.parametrize("divergence", ["kl", "kl_reverse"])
def test_rows_that_span_the_range_rank_by_their_exact_values(P, Q, normalize, divergence):
    # the results were an index past the end of Q (with +inf), 0.0 for +inf, or
    # +inf for a finite value
    M = _exact_matrix(P, Q, divergence, normalize, None)
    for k in range(1, Q.shape[0] + 1):
        v, i = kl_fast.kl_topk(P, Q, k, divergence=divergence, normalize=normalize)
        ev, ei = _expected(M, k)
        np.testing.assert_array_equal(i, ei)
        np.testing.assert_array_equal(v, ev)   # kl_div's values, bit for bit


def test_float32_and_k_zero(rng):
    P, Q = _inputs(rng, 6, 50, 8)
    P32, Q32 = P.astype(np.float32), Q.astype(np.float32)
    v, i = kl_fast.kl_topk(P32, Q32, 4)
    want_v, want_i = _expected(_exact_matrix(P32, Q32, "kl", False, None), 4)
    assert v.dtype == np.float32
    np.testing.assert_array_equal(i, want_i)
    np.testing.assert_array_equal(v, want_v.astype(np.float32))
    v0, i0 = kl_fast.kl_topk(P, Q, 0)
    assert v0.shape == i0.shape == (6, 0)


def test_bad_k_and_bad_input():
    P, Q = np.full((2, 3), 1 / 3), np.full((4, 3), 1 / 3)
    with pytest.raises(ValueError, match=r"k = 5 is larger than the number of rows of Q \(4\)"):
        kl_fast.kl_topk(P, Q, 5)
    with pytest.raises(ValueError, match="k must be a non-negative integer"):
        kl_fast.kl_topk(P, Q, -1)
    # a count is an integer, as for NumPy: whole floats are refused like the others
    for bad in ("3", True, np.True_, 2.0, np.float64(2.0), np.float32(2), np.array(2.0),
                float("nan"), float("inf"), 2.5):
        with pytest.raises(TypeError, match="k must be an integer"):
            kl_fast.kl_topk(P, Q, bad)
    assert kl_fast.kl_topk(P, Q, np.int8(2))[1].shape == (2, 2)
    with pytest.raises(ValueError, match="divergence must be one of"):
        kl_fast.kl_topk(P, Q, 1, divergence="kl_sym")
    Qbad = Q.copy()
    Qbad[2, 1] = -0.1
    with pytest.raises(ValueError, match=r"Q contains a negative value .* at index \[2, 1\]"):
        kl_fast.kl_topk(P, Qbad, 1)
    with pytest.raises(ValueError, match="same length"):
        kl_fast.kl_topk(P, np.ones((4, 2)), 1)
    before = Q.copy()
    kl_fast.kl_topk(P, Q, 2, normalize=True)
    np.testing.assert_array_equal(Q, before)


def test_memory_stays_with_the_block(rng):
    # the full matrix would be 400 x 40,000 float64 = 128 MB
    P = rng.dirichlet(np.ones(16), 400)
    Q = rng.dirichlet(np.ones(16), 40_000)
    tracemalloc.start()
    try:
        v, i = kl_fast.kl_topk(P, Q, 5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32e6, peak      # docs/semantics.md: 27 MB
    rows = [0, 199, 399]
    M = kl_fast.kl_div(P[rows][:, None], Q[None])
    np.testing.assert_array_equal(i[rows], _expected(M, 5)[1])


def _product_form(P, Q):
    """The matrix-product values alone, without the exact recomputation, and
    their error bounds."""
    from kl_fast import _pairwise as pw

    hp, ps = pw._row_stats(P, "P", "test", 1, True)
    hq, qs = pw._row_stats(Q, "Q", "test", 1, True)
    bound = np.empty((P.shape[0], Q.shape[0]))
    value = pw._kl_matrix(P, Q, hp, ps, qs, normalize=False, num_threads=1, func="test",
                          refine=False, bound=bound)
    return value, bound


@pytest.mark.parametrize("divergence", ["kl", "kl_reverse"])
def test_order_finer_than_the_product_form_resolves(divergence):
    # 400 candidates within 1e-14 of one another: their divergences differ by
    # about the product form's rounding, so the bound must send the boundary of
    # the top 10 to the row kernel
    rng = np.random.default_rng(20261124)
    n = 64
    P = rng.dirichlet(np.ones(n), 3)
    Q = rng.dirichlet(np.ones(n)) * (1 + 1e-14 * rng.standard_normal((400, n)))
    M = _exact_matrix(P, Q, divergence, False, None)
    want_v, want_i = _expected(M, 10)
    v, i = kl_fast.kl_topk(P, Q, 10, divergence=divergence)
    np.testing.assert_array_equal(i, want_i)
    np.testing.assert_array_equal(v, want_v)
    bound = _product_form(P, Q)[1] if divergence == "kl" else _product_form(Q, P)[1].T
    # the product form's bound cannot tell the 10th candidate from the 11th (what
    # this test is about)
    order = np.argsort(M, axis=1, kind="stable")
    rows = np.arange(len(P))
    gap = M[rows, order[:, 10]] - M[rows, order[:, 9]]
    assert np.all(bound[rows, order[:, 9]] + bound[rows, order[:, 10]] > gap)


@pytest.mark.parametrize("dtype, base", [(np.float32, None), (np.float64, 2.0)])
def test_ties_made_by_rounding_or_base_keep_index_order(rng, dtype, base):
    # near-duplicate candidates: their float64 divergences differ in the last bits,
    # which rounding to float32 or dividing by log(base) can merge into ties
    P = rng.dirichlet(np.ones(6), 40)
    Q = np.repeat(rng.dirichlet(np.ones(6), 8), 25, axis=0)
    Q = Q * (1 + 1e-15 * rng.standard_normal(Q.shape))
    Q = Q[rng.permutation(Q.shape[0])]
    P, Q = P.astype(dtype), Q.astype(dtype)
    v, i = kl_fast.kl_topk(P, Q, 30, base=base)
    tied = v[:, 1:] == v[:, :-1]
    assert tied.any()
    assert np.all(np.diff(v, axis=1) >= 0)
    assert np.all(i[:, 1:][tied] > i[:, :-1][tied])


@pytest.mark.parametrize("divergence", ["kl", "kl_reverse"])
def test_base_brings_an_overflowing_raw_sum_back(divergence):
    """A pair whose raw sum overflows while its divergence in base 1e300 does not
    is a candidate with kl_div's value (it was inf and ranked last)."""
    P = np.array([[1e308, 1e308]])
    Q = np.array([[1.0, 1.0], [1e300, 1e300]])
    if divergence == "kl":
        vals, idx = kl_fast.kl_topk(P, Q, 2, base=1e300)
        want = [kl_fast.kl_div(P[0], q, base=1e300) for q in Q]
        np.testing.assert_array_equal(idx[0], [1, 0])
        np.testing.assert_array_equal(vals[0], [want[1], want[0]])
        assert np.isfinite(want[1]) and want[0] == np.inf
    else:
        vals, idx = kl_fast.kl_topk(Q, P, 1, base=1e300, divergence="kl_reverse")
        np.testing.assert_array_equal(vals[:, 0], [kl_fast.kl_div(P[0], q, base=1e300) for q in Q])


@pytest.mark.parametrize("divergence", ["kl", "kl_reverse", "js"])
def test_a_term_beyond_the_range_brought_back_by_negative_ones(divergence):
    """Without base: a pair one of whose terms overflows while its divergence does
    not (1.5e308) has kl_div's value, in its place among the others (it was inf)."""
    p = np.array([1.6178831790386129e+307, 1.0036170374109804e+308, 3.6373344579338684e+307])
    q = np.array([9.391117475428056e+307, 1.666848475908632e+307, 3.420775046537369e+307])
    Q = np.stack([q, q[::-1], [1e308, 1e308, 1e308], p, [0.5, 0.25, 0.25]])
    vals, idx = kl_fast.kl_topk(p[None], Q, 5, divergence=divergence)
    if divergence == "js":
        want = np.array([kl_fast.js_div(p, row) for row in Q])
    elif divergence == "kl":
        want = np.array([kl_fast.kl_div(p, row) for row in Q])
    else:
        want = np.array([kl_fast.kl_div(row, p) for row in Q])
    assert divergence == "js" or np.isfinite(want[0]) and want[0] > 1.3e308
    order = np.lexsort((np.arange(5), want))
    np.testing.assert_array_equal(idx[0], order)
    np.testing.assert_array_equal(vals[0], want[order])


def test_subnormal_divergences_rank_as_kl_div():
    """p of subnormal values: the divergences are subnormal, below what the screens'
    bounds cover; the row's candidates take kl_div's values (k=1 gave the largest)."""
    p = np.array([1.5e-323, 1e-323])
    Q = np.array([[9.599477649249644e-301, 7.74043088661032e-301],
                  [9.682260821511456e-301, 6.8121483001691954e-301],
                  [9.154810349544309e-301, 8.698376619183769e-301],
                  [8.147205661472475e-301, 9.94701821833481e-301]])
    want = kl_fast.kl_div(p, Q)
    order = np.lexsort((np.arange(4), want))
    for k in range(1, 5):
        vals, idx = kl_fast.kl_topk(p[None], Q, k)
        np.testing.assert_array_equal(idx[0], order[:k])
        np.testing.assert_array_equal(vals[0], want[order[:k]])
    # among ordinary rows, in the matrix products' path
    rng = np.random.default_rng(4)
    P, Q = rng.random((64, 16)), rng.random((64, 16)) * 1e-300
    P[5] = rng.random(16) * 1e-322
    vals, idx = kl_fast.kl_topk(P, Q, 3)
    want = kl_fast.kl_div(P[5], Q)
    order = np.lexsort((np.arange(64), want))[:3]
    np.testing.assert_array_equal(idx[5], order)
    np.testing.assert_array_equal(vals[5], want[order])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_base_below_one_keeps_the_nearest_first(dtype):
    """A base below 1 has a negative logarithm: the neighbours are the nearest
    rows as without base, and the values (kl_div's in that base) descend
    (float32 ones came farthest first)."""
    P = np.array([[0.5, 0.5], [0.2, 0.8]], dtype=dtype)
    Q = np.array([[0.9, 0.1], [0.5, 0.5], [0.6, 0.4], [0.25, 0.75]], dtype=dtype)
    vals, idx = kl_fast.kl_topk(P, Q, 3, base=0.5)
    _, idx_nats = kl_fast.kl_topk(P, Q, 3)
    np.testing.assert_array_equal(idx, idx_nats)
    want = [[kl_fast.kl_div(P[i].astype(np.float64), Q[j].astype(np.float64), base=0.5)
             for j in idx[i]] for i in range(2)]
    np.testing.assert_array_equal(vals, np.asarray(want).astype(dtype))
    assert np.all(np.diff(vals, axis=1) <= 0)


@pytest.mark.parametrize("divergence", ["kl", "js", "kl_reverse"])
def test_ties_at_the_kth_place_go_to_the_lower_index(rng, divergence):
    """Candidates whose float64 values differ below float32's (or the division
    by log(base)'s) resolution tie in the values returned; at the k-th place the
    lower index of the tie is the one kept, as sorting the returned matrix does
    (the higher index was kept where its float64 value was smaller)."""
    boundary_ties = 0
    for trial in range(150):
        p = rng.dirichlet(np.ones(4))
        Q = p * (1 + 1e-7 * rng.standard_normal((6, 4)))
        P, Q = p[None].astype(np.float32), (Q / Q.sum(1, keepdims=True)).astype(np.float32)
        k = int(rng.integers(1, 6))
        for base in (None, 2.0, 0.5):
            M64 = _exact_matrix(P, Q, divergence, False, base)
            sign = -1.0 if base is not None and base < 1 else 1.0
            # float32 JS is js_pairwise's (float32 kernel), not float64's rounded
            M = (kl_fast.js_pairwise(P, Q, base=base) if divergence == "js"
                 else M64.astype(np.float32))
            first = np.lexsort((np.arange(6), sign * M[0]))[:k]
            v, i = kl_fast.kl_topk(P, Q, k, divergence=divergence, base=base)
            np.testing.assert_array_equal(i[0], first)
            np.testing.assert_array_equal(v[0], M[0, first])
            boundary_ties += set(first) != set(np.lexsort((np.arange(6), sign * M64[0]))[:k])
    assert boundary_ties >= 3       # the case the test is about occurred


def test_rescued_rows_respect_check_false():
    """With check=False a bad value gives some result (unspecified), not an error,
    on the rows base makes kl_topk redo too."""
    P = np.array([[np.inf, 1.0], [1e308, 1e308]])
    Q = np.array([[1.0, 1.0], [1e300, 1e300]])
    vals, idx = kl_fast.kl_topk(P, Q, 1, base=10.0, check=False)
    assert vals.shape == idx.shape == (2, 1)


def _screen_by_arrays(A, E, t, row_flags, col_flags):
    """topk_screen's rule written on whole arrays: None where it must defer."""
    flags = row_flags[:, None] | col_flags[None, :]
    with np.errstate(invalid="ignore", over="ignore"):
        lo = A - E
    if ((A == np.inf) & (flags != 0)).any():
        return None
    cand = np.where(A == np.inf, t[:, None] == np.inf,
                    np.isnan(A) | np.isnan(E) | (A == -np.inf) | ((flags & 2) != 0)
                    | (lo <= t[:, None]))
    return np.nonzero(cand)


@pytest.mark.parametrize("transposed", [False, True])
def test_compiled_screen_follows_the_rule(rng, transposed):
    from kl_fast import _div_kernels
    specials = np.array([np.inf, -np.inf, np.nan, 0.0, 1e308])
    for trial in range(200):
        m, k = rng.integers(1, 7), rng.integers(1, 9)
        A = rng.uniform(-0.1, 1.0, (k, m) if transposed else (m, k))
        E = rng.uniform(0.0, 0.2, A.shape)
        A[rng.random(A.shape) < 0.1] = rng.choice(specials)
        E[rng.random(E.shape) < 0.05] = rng.choice([np.nan, np.inf, 1e308])
        if transposed:
            A, E = A.T, E.T
        t = rng.uniform(0.0, 0.8, m)
        t[rng.random(m) < 0.2] = np.inf
        row_flags = (rng.random(m) < 0.2) * rng.integers(1, 4, m).astype(np.uint8)
        col_flags = (rng.random(k) < 0.2) * rng.integers(1, 4, k).astype(np.uint8)
        rows, cols = np.empty(A.size, np.intp), np.empty(A.size, np.intp)
        count = _div_kernels.topk_screen(A, E, t, row_flags.astype(np.uint8),
                                         col_flags.astype(np.uint8), rows, cols)
        want = _screen_by_arrays(A, E, t, row_flags, col_flags)
        if want is None:
            assert count == -1
            continue
        np.testing.assert_array_equal(rows[:count], want[0])
        np.testing.assert_array_equal(cols[:count], want[1])


def test_deferred_tiles_still_rank_by_exact_values(rng, monkeypatch):
    """Tiles holding +inf in a row whose sum may overflow take the array path;
    the result is the exact matrix sorted, in one tile or in many."""
    P = rng.dirichlet(np.ones(6), 9)
    Q = rng.dirichlet(np.ones(6), 40)
    P[3] *= 1e307                       # a sum above DBL_MAX / 1500
    Q[[4, 17, 30], 2] = 0.0             # +inf where P has mass there
    calls = []
    screen = _topk._div_kernels.topk_screen
    monkeypatch.setattr(_topk._div_kernels, "topk_screen",
                        lambda *a: calls.append(screen(*a)) or calls[-1])
    want = _expected(_exact_matrix(P, Q, "kl", False, None), 5)
    for tiles in ((1 << 19, 4096), (16, 8)):
        monkeypatch.setattr(_topk, "_TILE_ENTRIES", tiles[0])
        monkeypatch.setattr(_topk, "_MAX_COLS", tiles[1])
        v, i = kl_fast.kl_topk(P, Q, 5)
        np.testing.assert_array_equal(i, want[1])
        np.testing.assert_array_equal(v, want[0])
    assert -1 in calls and any(c >= 0 for c in calls)


def test_ties_made_by_the_base_at_the_kth_place():
    """Two raw values an ulp apart that tie once divided by log(base): the lower
    index is kept (in base 2 and in base 0.5); a finite raw value that overflows
    to +inf in base 2 ties with a raw +inf of lower index."""
    P = np.array([[1.0]])
    Q = np.array([[0.03520450731946204], [0.03520450731946205]])
    raw = kl_fast.kl_div(P[0], Q)
    assert raw[0] != raw[1] and raw[0] / np.log(2.0) == raw[1] / np.log(2.0)
    np.testing.assert_array_equal(kl_fast.kl_topk(P, Q, 1, base=2.0)[1], [[0]])
    np.testing.assert_array_equal(kl_fast.kl_topk(P, Q, 2, base=0.5)[1], [[0, 1]])
    P = np.array([[1e305, 0.0]])
    Q = np.array([[0.0, 1.0], [1e-300, 1.0]])
    assert np.isinf(kl_fast.kl_div(P[0], Q[0])) and np.isfinite(kl_fast.kl_div(P[0], Q[1]))
    np.testing.assert_array_equal(kl_fast.kl_div(P[0], Q, base=2.0), [np.inf, np.inf])
    v, i = kl_fast.kl_topk(P, Q, 1, base=2.0)
    assert i.tolist() == [[0]] and v.tolist() == [[np.inf]]
    v, i = kl_fast.kl_topk(np.array([[1e-300, 0.0]]), np.array([[0.5, 0.5], [1e305, 0.0]]), 1,
                           base=2.0, divergence="kl_reverse")
    assert i.tolist() == [[0]] and v.tolist() == [[np.inf]]


def test_nan_under_check_false_is_not_an_empty_slot():
    """A NaN value (bad input, check=False) ranks with +inf, before the padding:
    the index returned is Q's row, not the empty slot's marker."""
    P = np.array([[0.5, 0.5]])
    Q = np.array([[np.nan, 0.5], [0.5, 0.5]])
    with np.errstate(invalid="ignore"):
        v, i = kl_fast.kl_topk(P, Q, 2, check=False)
    assert i.tolist() == [[1, 0]]
    assert v[0, 0] == 0.0 and np.isnan(v[0, 1])


def test_values_that_overflow_downwards_tie_at_minus_inf():
    """Unnormalised float32 rows whose KL is below -FLT_MAX: all return -inf and
    tie, so the lowest indices are kept for every k (k=1 kept index 2)."""
    P = np.full((1, 200), 1e37, np.float32)
    Q = np.stack([np.full(200, v, np.float32) for v in (1e38, 2e38, 3e38)])
    assert np.all(kl_fast.kl_pairwise(P, Q) == -np.inf)
    for base in (None, 1.0000001):
        for k in (1, 2, 3):
            v, i = kl_fast.kl_topk(P, Q, k, base=base)
            assert i.tolist() == [list(range(k))] and np.all(v == -np.inf)
