"""The short-row kernel: kl_div over many rows of up to SHORT_N elements gives
every row the bits of kl_div on that row alone (the row kernel), on every
kernel path, through the compiled entry and through the Python layer, with
every row the fast path cannot take handed to the careful path."""
import numpy as np
import pytest

import kl_fast

# every length up to 17, and around SHORT_N = 40 (_core_table.pxd), the longest
# contiguous row sent to the across-rows kernel
LENGTHS = sorted(set(range(1, 18)) | {23, 24, 31, 32, 33, 39, 40, 41, 48})


def draw(rng, m, n, dtype, kind):
    p = rng.random((m, n))
    q = rng.random((m, n))
    if kind == "zeros":
        p[rng.random((m, n)) < 0.3] = 0.0
    elif kind == "near":
        q = p * (1.0 + 1e-6 * rng.standard_normal((m, n)))
    elif kind == "wide":
        p *= 10.0 ** rng.uniform(-30, 30, (m, n))
        q *= 10.0 ** rng.uniform(-30, 30, (m, n))
    p[p.sum(axis=1) == 0, 0] = 0.5
    return p.astype(dtype), q.astype(dtype)


def row_by_row(p, q, **options):
    return np.array([kl_fast.kl_div(p[i], q[i], **options) for i in range(p.shape[0])])


def assert_same_bits(got, want):
    want = np.ascontiguousarray(want, dtype=got.dtype)
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.ascontiguousarray(got).view(np.uint8), want.view(np.uint8))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["uniform", "zeros", "near", "wide"])
def test_rows_match_the_row_kernel(path, rng, dtype, kind):
    for n in LENGTHS:
        p, q = draw(rng, 150, n, dtype, kind)
        for normalize in (False, True):
            got = kl_fast.kl_div(p, q, normalize=normalize)
            assert_same_bits(got, row_by_row(p, q, normalize=normalize))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("num_threads", [1, 2])
def test_layouts_threads_and_the_python_layer(path, rng, dtype, num_threads):
    p, q = draw(rng, 1000, 10, dtype, "zeros")
    want = row_by_row(p, q)
    # contiguous, on one or two threads
    assert_same_bits(kl_fast.kl_div(p, q, num_threads=num_threads), want)
    # rows of a wider array (row stride != n), and reversed rows
    wide_p = np.zeros((1000, 16), dtype)
    wide_p[:, :10] = p
    assert_same_bits(kl_fast.kl_div(wide_p[:, :10], q, num_threads=num_threads), want)
    assert_same_bits(kl_fast.kl_div(p[::-1], q[::-1], num_threads=num_threads), want[::-1])
    # the columns of C-order matrices (axis=0: element stride 1000, row stride 1)
    pt, qt = np.ascontiguousarray(p.T), np.ascontiguousarray(q.T)
    assert_same_bits(kl_fast.kl_div(pt, qt, axis=0, num_threads=num_threads), want)
    assert_same_bits(kl_fast.kl_div(pt, q.T, axis=0, num_threads=num_threads), want)
    # one q row broadcast against every p row (row stride 0)
    assert_same_bits(kl_fast.kl_div(p, q[3], num_threads=num_threads),
                     row_by_row(p, np.broadcast_to(q[3], p.shape)))
    # q of another dtype: the Python layer casts and runs _kernels.kl_rows
    other = np.float32 if dtype == np.float64 else np.float64
    got = kl_fast.kl_div(p.astype(np.float64), q.astype(other).astype(np.float64).astype(other),
                         num_threads=num_threads)
    want_cast = row_by_row(p.astype(np.float64), q.astype(other).astype(np.float64))
    assert_same_bits(got, want_cast)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rows_the_fast_path_cannot_take(path, rng, dtype):
    """A row with q = 0 under p > 0 (+inf), a subnormal ratio, or a zero
    beside normal rows: each row keeps its own value, its neighbours theirs."""
    tiny = np.finfo(dtype).tiny
    p, q = draw(rng, 300, 10, dtype, "uniform")
    q[5, 3] = 0.0                       # +inf
    p[77, 2] = tiny / 4                 # a subnormal p: the careful path
    q[150, 0] = np.finfo(dtype).max     # ratio below the normal range
    p[299] = 0.0                        # all of p zero: 0 without normalize
    p[299, 9] = 1.0
    want = row_by_row(p, q)
    got = kl_fast.kl_div(p, q)
    assert got[5] == np.inf
    assert_same_bits(got, want)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_bad_values_are_reported_by_index(path, rng, dtype):
    p, q = draw(rng, 500, 7, dtype, "uniform")
    p_in, q_in = p.copy(), q.copy()
    q[321, 4] = np.nan
    with pytest.raises(ValueError, match=r"q.*\[321, 4\]"):
        kl_fast.kl_div(p, q)
    p[12, 1] = -0.25
    with pytest.raises(ValueError, match=r"p.*\[12, 1\]"):
        kl_fast.kl_div(p, q)
    # check=False: the bad rows are NaN, the others exact
    got = kl_fast.kl_div(p, q, check=False)
    assert np.isnan(got[12]) and np.isnan(got[321])
    good = np.ones(500, bool)
    good[[12, 321]] = False
    assert_same_bits(got[good], row_by_row(p[good], q[good]))
    assert np.array_equal(p_in[good], p[good]) and np.array_equal(q_in[good], q[good])


def test_short_rows_against_the_reference(rng):
    """Independent of the row kernel: the NumPy reference on the same rows."""
    from kl_fast import reference
    p, q = draw(rng, 2000, 10, np.float64, "zeros")
    p /= p.sum(axis=1, keepdims=True)
    q /= q.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(kl_fast.kl_div(p, q), reference.kl_div(p, q), rtol=1e-13,
                               atol=1e-16)


@pytest.mark.parametrize("n", [5, 256, 257, 700])
def test_long_float64_columns(path, rng, n):
    """kl_div along axis 0 of a C-order float64 matrix takes the same kernel
    for columns of any length: every column has the bits of kl_div on a
    contiguous copy of it."""
    p, q = draw(rng, n, 300, np.float64, "zeros")
    p[:, p.sum(axis=0) == 0] = 0.5
    cols = [(np.ascontiguousarray(p[:, i]), np.ascontiguousarray(q[:, i])) for i in range(300)]
    for normalize in (False, True):
        want = [kl_fast.kl_div(a, b, normalize=normalize) for a, b in cols]
        for num_threads in (1, 2):
            got = kl_fast.kl_div(p, q, axis=0, normalize=normalize, num_threads=num_threads)
            assert_same_bits(got, want)
    # one q column broadcast against every column of p (q's row stride 0)
    got = kl_fast.kl_div(p, q[:, :1], axis=0)
    assert_same_bits(got, [kl_fast.kl_div(a, cols[0][1]) for a, _ in cols])
    # a column with q = 0 under p > 0, one with a subnormal p: their own values
    q2, p2 = q.copy(), p.copy()
    q2[n // 2, 7] = 0.0
    p2[n // 2, 7] = 0.5
    p2[n - 1, 8] = np.finfo(np.float64).tiny / 4
    got = kl_fast.kl_div(p2, q2, axis=0)
    assert got[7] == np.inf
    assert_same_bits(got, [kl_fast.kl_div(np.ascontiguousarray(p2[:, i]),
                                          np.ascontiguousarray(q2[:, i])) for i in range(300)])
    q2[n - 1, 200] = np.nan
    with pytest.raises(ValueError, match=rf"q.*\[{n - 1}, 200\]"):
        kl_fast.kl_div(p2, q2, axis=0)


@pytest.mark.parametrize("kind", ["uniform", "zeros", "near", "wide"])
def test_js_rows_match_the_row_kernel(path, rng, kind):
    """js_div over many short float64 rows (computed across rows) gives every
    row the bits of js_div on that row alone, on one or two threads and in
    any layout; normalize keeps the row kernel."""
    for n in LENGTHS:
        p, q = draw(rng, 150, n, np.float64, kind)
        want = np.array([kl_fast.js_div(p[i], q[i]) for i in range(150)])
        for num_threads in (1, 2):
            assert_same_bits(kl_fast.js_div(p, q, num_threads=num_threads), want)
        assert_same_bits(kl_fast.js_div(np.ascontiguousarray(p.T), np.ascontiguousarray(q.T),
                                        axis=0), want)
        got = kl_fast.js_div(p, q, normalize=True)
        assert_same_bits(got, [kl_fast.js_div(p[i], q[i], normalize=True) for i in range(150)])


def test_js_rows_the_fast_path_cannot_take(path, rng):
    p, q = draw(rng, 300, 10, np.float64, "uniform")
    p[5, 3] = np.finfo(np.float64).max      # s overflows: the careful path
    q[6] = 0.0
    p[6, :2] = 1e-310                       # subnormal sums
    q[7, 1] = np.nan
    with pytest.raises(ValueError, match=r"q.*\[7, 1\]"):
        kl_fast.js_div(p, q)
    got = kl_fast.js_div(p, q, check=False)
    assert np.isnan(got[7])
    keep = np.arange(300) != 7
    assert_same_bits(got[keep], [kl_fast.js_div(p[i], q[i]) for i in np.flatnonzero(keep)])


def draw_log(rng, m, n, kind):
    """Log-probabilities (or unnormalised logs) of m rows of n elements."""
    lp = rng.standard_normal((m, n)) * 3.0
    lq = rng.standard_normal((m, n)) * 3.0
    if kind == "neginf":
        lp[rng.random((m, n)) < 0.2] = -np.inf
        lq[rng.random((m, n)) < 0.05] = -np.inf
    elif kind == "near":
        lq = lp + 1e-9 * rng.standard_normal((m, n))
    elif kind == "wide":
        lp += rng.uniform(-700, 700, (m, 1))
        lq += rng.uniform(-700, 700, (m, 1))
    return lp, lq


@pytest.mark.parametrize("kind", ["uniform", "neginf", "near", "wide"])
def test_log_rows_match_the_row_kernel(path, rng, kind):
    """kl_div_log over many short float64 rows (computed across rows) gives
    every row the bits of kl_div_log on that row alone, with and without
    normalize, on one or two threads and in any layout (rows of up to
    LOG_SHORT_N = 20 elements; longer ones keep the row kernel)."""
    for n in LENGTHS:
        lp, lq = draw_log(rng, 150, n, kind)
        for normalize in (False, True):
            if normalize:   # a row of -inf is an error with normalize: keep one finite entry
                lp[:, 0] = np.where(np.isinf(lp).all(axis=1), 0.0, lp[:, 0])
                lq[:, 0] = np.where(np.isinf(lq).all(axis=1), 0.0, lq[:, 0])
            want = [kl_fast.kl_div_log(lp[i], lq[i], normalize=normalize) for i in range(150)]
            for num_threads in (1, 2):
                got = kl_fast.kl_div_log(lp, lq, normalize=normalize, num_threads=num_threads)
                assert_same_bits(got, want)
            got = kl_fast.kl_div_log(np.ascontiguousarray(lp.T), np.ascontiguousarray(lq.T),
                                     axis=0, normalize=normalize)
            assert_same_bits(got, want)
            got = kl_fast.kl_div_log(lp[::-1], lq[:1], normalize=normalize)   # broadcast q
            assert_same_bits(got, [kl_fast.kl_div_log(lp[i], lq[0], normalize=normalize)
                                   for i in range(149, -1, -1)])


def test_log_rows_the_fast_path_cannot_take(path, rng):
    lp, lq = draw_log(rng, 300, 10, "uniform")
    lp[5, 3] = 800.0                        # exp overflows: the careful path
    lq[6, 2] = -np.inf                      # mass of p where q is 0: +inf
    lp[8] = -np.inf                         # all -inf: 0, and an error with normalize
    lq[9, 4] = 1e308                        # a difference that overflows
    lq[7, 1] = np.nan
    with pytest.raises(ValueError, match=r"log_q.*\[7, 1\]"):
        kl_fast.kl_div_log(lp, lq)
    got = kl_fast.kl_div_log(lp, lq, check=False)
    assert np.isnan(got[7]) and got[6] == np.inf
    keep = np.arange(300) != 7
    assert_same_bits(got[keep], [kl_fast.kl_div_log(lp[i], lq[i]) for i in np.flatnonzero(keep)])
    with pytest.raises(ValueError, match=r"log_p"):
        kl_fast.kl_div_log(lp, lq, normalize=True, check=False)
    lp[8, 0] = 0.0
    got = kl_fast.kl_div_log(lp, lq, normalize=True, check=False)
    want = [kl_fast.kl_div_log(lp[i], lq[i], normalize=True) for i in np.flatnonzero(keep)]
    assert_same_bits(got[keep], want)
    assert np.isnan(got[7])
