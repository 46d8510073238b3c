"""kl_fast.dask against the in-memory functions and the NumPy reference."""
import logging
import math
import sys
import warnings

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
import dask  # noqa: E402

import kl_fast  # noqa: E402
import kl_fast.dask as kd  # noqa: E402
from kl_fast import reference  # noqa: E402

# Seconds any single distributed operation may take before the test fails instead of hanging.
TIMEOUT = 60


def probs(shape, dtype=np.float64, zero_frac=0.2, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.random(shape)
    a[rng.random(shape) < zero_frac] = 0.0
    return a.astype(dtype)


def compute(x):
    return x.compute(scheduler="threads")


def in_memory_error(func, *args, **kwargs):
    with pytest.raises(ValueError) as info:
        func(*args, **kwargs)
    return str(info.value)


# ---- agreement over chunkings -----------------------------------------------------

P = probs((40, 57), seed=1)
Q = probs((40, 57), zero_frac=0.0, seed=2) + 0.01
Q1 = probs((57,), zero_frac=0.0, seed=3) + 0.01

CHUNKINGS = {
    "single chunk": (40, 57),
    "rows only": (7, 57),
    "reduction axis": (40, 10),
    "both axes": (16, 20),
    "uneven": ((3, 30, 7), (1, 25, 6, 25)),
    "small blocks": (6, 4),
}

OPTIONS = [
    {},
    {"normalize": True},
    {"base": 2.0},
    {"dx": 0.25},
    {"axis": 0},
    {"axis": None},
    {"axis": None, "normalize": True},
    {"keepdims": True},
    {"axis": 0, "keepdims": True, "normalize": True},
    {"axis": ()},
]


@pytest.mark.parametrize("chunks", CHUNKINGS.values(), ids=CHUNKINGS.keys())
@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_matches_in_memory(chunks, opts):
    lazy = kd.kl_div(da.from_array(P, chunks=chunks), Q, **opts)
    expected = kl_fast.kl_div(P, Q, **opts)
    assert isinstance(lazy, da.Array)
    assert lazy.shape == np.shape(expected)
    got = compute(lazy)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    np.testing.assert_allclose(got, reference.kl_div(P, Q, **opts), rtol=1e-11, atol=0)


@pytest.mark.parametrize("q_kind", ["numpy row", "dask row", "dask full, other chunks", "numpy full"])
@pytest.mark.parametrize("chunks", [(40, 57), (9, 13), ((3, 30, 7), (1, 25, 6, 25))])
def test_q_forms(q_kind, chunks):
    q = {
        "numpy row": Q1,
        "dask row": da.from_array(Q1, chunks=11),
        "dask full, other chunks": da.from_array(Q, chunks=(13, 19)),
        "numpy full": Q,
    }[q_kind]
    q_np = np.asarray(q)
    Pd = da.from_array(P, chunks=chunks)
    for opts in ({}, {"normalize": True}, {"axis": None}):
        got = compute(kd.kl_div(Pd, q, **opts))
        np.testing.assert_allclose(got, kl_fast.kl_div(P, q_np, **opts), rtol=1e-12, atol=0)


def test_numpy_p_against_dask_q_and_broadcast_rows():
    got = compute(kd.kl_div(P, da.from_array(Q1, chunks=20)))
    np.testing.assert_allclose(got, reference.kl_div(P, Q1), rtol=1e-12)
    # a single dask p against a (m, n) ndarray q: the broadcast runs the other way
    got = compute(kd.kl_div(da.from_array(Q1, chunks=20), P + 0.5))
    np.testing.assert_allclose(got, reference.kl_div(Q1, P + 0.5), rtol=1e-12)
    # two ndarrays are wrapped as well
    got = compute(kd.kl_div(P, Q, normalize=True))
    np.testing.assert_allclose(got, reference.kl_div(P, Q, normalize=True), rtol=1e-12)


@pytest.mark.parametrize("axis", [1, (0, 2), -1, None])
def test_three_dimensional_axes(axis):
    p = probs((6, 21, 9), seed=4)
    q = probs((21, 9), zero_frac=0.0, seed=5) + 0.1
    Pd = da.from_array(p, chunks=(4, 8, 5))
    Qd = da.from_array(q, chunks=(10, 9))
    for opts in ({}, {"keepdims": True}, {"normalize": True}):
        lazy = kd.kl_div(Pd, Qd, axis=axis, **opts)
        expected = reference.kl_div(p, np.broadcast_to(q, p.shape), axis=axis, **opts)
        assert lazy.shape == np.shape(expected)
        np.testing.assert_allclose(compute(lazy), expected, rtol=1e-12)


def test_float32_stays_float32():
    p = P.astype(np.float32)
    q = Q1.astype(np.float32)
    lazy = kd.kl_div(da.from_array(p, chunks=(9, 20)), q)
    assert lazy.dtype == np.float32
    got = compute(lazy)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, kl_fast.kl_div(p, q), rtol=1e-6)
    # float32 against float64 computes in float64, as in memory
    mixed = kd.kl_div(da.from_array(p, chunks=(9, 20)), Q1)
    assert mixed.dtype == np.float64 == compute(mixed).dtype


@pytest.mark.parametrize("chunks", [(3, 1000), (1, 250)])
def test_float32_normalize_near_equal_and_proportional_rows(chunks):
    """float32 rows with normalize: the blocks' terms are float64, so the finish
    S / P + log(Q / P) does not leave eps32 |log(Q / P)| behind (0.4% of this
    divergence of 5e-7, and -8e-9 for proportional rows, with float32 terms);
    in-memory kl_div divides such rows by their sums first."""
    rng = np.random.default_rng(5)
    q = rng.random((3, 1000))
    p = 5.0 * q * (1.0 + 1e-3 * rng.standard_normal((3, 1000)))
    p[2] = 0.3 * q[2]                        # proportional: the divergence is 0
    p32, q32 = p.astype(np.float32), q.astype(np.float32)
    got = compute(kd.kl_div(da.from_array(p32, chunks=chunks), da.from_array(q32, chunks=chunks),
                            normalize=True))
    assert got.dtype == np.float32
    exact = reference.kl_div(p32.astype(np.longdouble), q32.astype(np.longdouble), normalize=True)
    np.testing.assert_allclose(got[:2], exact[:2].astype(np.float64), rtol=4e-7, atol=0)
    assert abs(got[2]) < 1e-15
    # in-memory float32 has float32 terms: within eps32 times their size of it
    pn, qn = (a / a.sum(axis=1, keepdims=True) for a in (p, q))
    size = np.abs(pn * np.log(pn / qn)).sum(axis=1)
    np.testing.assert_array_less(np.abs(got - kl_fast.kl_div(p32, q32, normalize=True)),
                                 4 * np.finfo(np.float32).eps * size + 1e-15)
    one = compute(kd.kl_div(da.from_array(np.float32([0.3])), np.float32([0.7]), normalize=True))
    assert abs(one) < 1e-15


def test_js_and_log_check_base_at_the_call():
    for fn in (kd.js_div, kd.kl_div_log):
        for base in (1, -1.0, np.nan):
            with pytest.raises(ValueError, match=r"base"):
                fn(da.ones((2, 3), chunks=1), np.ones(3), base=base)


def test_integers_compute_in_float64():
    counts = np.arange(60).reshape(6, 10) % 7
    got = compute(kd.kl_div(da.from_array(counts, chunks=(4, 3)), counts + 1, normalize=True))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, reference.kl_div(counts, counts + 1, normalize=True), rtol=1e-12)


def test_zero_semantics_across_blocks():
    p = np.full((3, 12), 0.1)
    q = np.full((3, 12), 0.1)
    p[0, 4] = 0.0
    q[0, 4] = 0.0    # p == 0: counts 0 whatever q is
    q[1, 11] = 0.0   # p > 0 with q == 0: +inf, in the row's last block only
    p[2, :6] = 0.0   # a block with no mass at all
    got = compute(kd.kl_div(da.from_array(p, chunks=(2, 5)), q))
    assert np.isfinite(got[0]) and np.isfinite(got[2])
    assert got[1] == np.inf
    np.testing.assert_allclose(got, reference.kl_div(p, q), rtol=1e-12)


@pytest.mark.parametrize("chunks", [1, 2])
def test_normalize_blocks_that_span_the_range(chunks):
    # each block scales its rows by powers of two: that rounded 1e-310 under p > 0
    # to 0 (+inf for a finite value) and p > 0 over a zero of q to 0 (0 * inf = NaN
    # when the blocks were put on one scale)
    p = np.array([[1.0, 1.0, 1.0, 1.0], [1e300, 1e-200, 1e-300, 1e200],
                  [1e308, 1e308, 1e-310, 1.0], [1.7e308, 1e-310, 1e-300, 1.0],
                  [1.0, 2.0, 3.0, 4.0]])
    q = np.array([[1e308, 1e308, 1e-310, 1.0], [1e-310, 1e308, 1e300, 5e-324],
                  [1.0, 1.0, 0.0, 1.0], [1e308, 1e308, 1e308, 1e-320],
                  [1e-310, 2e-310, 1e-300, 1e-305]])   # the last q scaled up
    expected = kl_fast.kl_div(p, q, normalize=True)
    assert expected[2] == np.inf and np.isfinite(expected[[0, 1, 3, 4]]).all()
    for base in (None, 0.5):
        got = compute(kd.kl_div(da.from_array(p, chunks=(1, chunks)), q, normalize=True, base=base))
        want = expected / math.log(base) if base else expected
        np.testing.assert_allclose(got, want, rtol=1e-13)


@pytest.mark.parametrize("chunks", [1, 2, 3, 6])
def test_raw_sums_beyond_the_range_brought_back(chunks):
    # sums that overflow while the divergence does not: terms near 1e308 brought
    # back by negative ones, by dx or by base (in-memory kl_div redoes such rows on
    # scaled inputs); in one block or across Dask's sum of the blocks; a zero of q
    # under p > 0 stays +inf
    e = math.e
    p = np.array([[1e308, 1e308, 6.6e307, 0.0, 0.0, 0.0],
                  [1e308, 1e308, 0.0, 0.0, 1e308, 1e308],
                  [1.7e308, 0.0, 0.0, 0.0, 0.0, 1.0],
                  [1e308, 1e308, 1.0, 1.0, 1.0, 1.0],
                  [0.5, 0.25, 0.125, 0.0625, 0.03125, 0.03125]])
    q = np.array([[1e308 / e, 1e308 / e, 6.6e307 * e, 1.0, 1.0, 1.0],
                  [1e-308, 1e-308, 1.0, 1.0, 1e-308, 1e-308],
                  [1e-308, 1.0, 1.0, 1.0, 1.0, 1.0],
                  [1.0, 1.0, 0.0, 1.0, 1.0, 1.0],
                  [0.25, 0.25, 0.25, 0.125, 0.0625, 0.0625]])
    for opts in ({}, {"dx": 1e-10}, {"base": 1e300}, {"base": 0.5, "dx": 1e-5}, {"dx": 3.0}):
        want = kl_fast.kl_div(p, q, **opts)
        got = compute(kd.kl_div(da.from_array(p, chunks=(2, chunks)), q, **opts))
        np.testing.assert_allclose(got, want, rtol=1e-14)
        assert np.isinf(got[3]) and got[3] == want[3]
    assert np.isfinite(kl_fast.kl_div(p, q, dx=1e-10)).sum() == 4


def test_one_element_blocks():
    p, q = P[:5, :7], Q[:5, :7]
    for opts in ({}, {"normalize": True}, {"axis": None}):
        got = compute(kd.kl_div(da.from_array(p, chunks=1), q, **opts))
        np.testing.assert_allclose(got, reference.kl_div(p, q, **opts), rtol=1e-12)


def test_scalars_and_empty():
    got = compute(kd.kl_div(da.from_array(np.float32(0.5)), np.float32(0.25)))
    assert got.shape == () and got.dtype == np.float32
    assert got == pytest.approx(0.5 * np.log(2.0), rel=1e-6)
    for shape, axis in (((0, 5), -1), ((5, 0), -1), ((0,), None)):
        e = np.ones(shape)
        lazy = kd.kl_div(da.from_array(e), e, axis=axis)
        expected = kl_fast.kl_div(e, e, axis=axis)
        assert lazy.shape == np.shape(expected)
        np.testing.assert_array_equal(compute(lazy), expected)


def test_normalize_with_blocks_of_no_rows():
    # a block of no rows (P[mask] after compute_chunk_sizes) made normalize fail
    # with an unpacking error
    p, q = P[:3, :4], Q[0, :4]
    for chunks in (((0, 3), (4,)), ((2, 0, 1), (2, 2))):
        got = compute(kd.kl_div(da.from_array(p, chunks=chunks), q, normalize=True))
        # (blocks along the row add their partial sums in another order: within
        # rounding of the in-memory value, not its bits)
        np.testing.assert_allclose(got, kl_fast.kl_div(p, q, normalize=True), rtol=1e-14)
    empty = compute(kd.kl_div(da.from_array(np.zeros((0, 4))), q, normalize=True))
    np.testing.assert_array_equal(empty, kl_fast.kl_div(np.zeros((0, 4)), q, normalize=True))


def test_float32_overflow_is_inf_without_a_warning():
    p, q = np.full((2, 10), 3e38, np.float32), np.full((2, 10), 1e-38, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for opts in ({}, {"base": 2.0}, {"dx": 0.5}):
            got = compute(kd.kl_div(da.from_array(p, chunks=(1, 5)), q, **opts))
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, kl_fast.kl_div(p, q, **opts))


@pytest.mark.parametrize("name", ["kl_div", "js_div", "kl_div_log"])
@pytest.mark.parametrize("axis", [None, -1, (), (-1,), 0, (0,), 7, 1.5, "foo"])
def test_scalar_axes_as_in_memory(name, axis):
    try:
        expected = getattr(kl_fast, name)(0.3, 0.2, axis=axis)
    except Exception as exc:
        with pytest.raises(type(exc)):
            compute(getattr(kd, name)(0.3, 0.2, axis=axis))
    else:
        assert compute(getattr(kd, name)(0.3, 0.2, axis=axis)) == expected


def test_inputs_not_modified():
    p = P.copy()
    q = Q1.copy()
    compute(kd.kl_div(da.from_array(p, chunks=(7, 9)), q, normalize=True))
    np.testing.assert_array_equal(p, P)
    np.testing.assert_array_equal(q, Q1)


def test_memmap_larger_than_a_chunk(tmp_path):
    path = tmp_path / "p.npy"
    p = probs((300, 1000), seed=6)
    np.save(path, p)
    mm = np.load(path, mmap_mode="r")
    Pd = da.from_array(mm, chunks=(64, 300))
    assert Pd.npartitions > 1
    q = probs((1000,), zero_frac=0.0, seed=7) + 0.01
    for opts in ({}, {"normalize": True, "base": 2.0}, {"axis": None}):
        got = compute(kd.kl_div(Pd, q, **opts))
        np.testing.assert_allclose(got, kl_fast.kl_div(mm, q, **opts), rtol=1e-12)
        np.testing.assert_allclose(got, reference.kl_div(p, q, **opts), rtol=1e-11)


def test_lazy_until_computed():
    p = P.copy()
    p[33, 50] = np.nan
    lazy = kd.kl_div(da.from_array(p, chunks=(8, 12)), Q1)  # builds the graph only
    with pytest.raises(ValueError):
        compute(lazy)


# ---- errors: the in-memory message, with the index in the whole array ----------------

@pytest.mark.parametrize("bad", [np.nan, -0.5, np.inf])
@pytest.mark.parametrize("where", [(0, 0), (33, 50), (39, 56), (17, 21)])
def test_bad_value_in_p_index_in_whole_array(bad, where):
    p = P.copy()
    p[where] = bad
    expected = in_memory_error(kl_fast.kl_div, p, Q1)
    assert f"at index [{where[0]}, {where[1]}]" in expected
    for chunks in ((40, 57), (8, 12), ((3, 30, 7), (1, 25, 6, 25))):
        with pytest.raises(ValueError) as info:
            compute(kd.kl_div(da.from_array(p, chunks=chunks), Q1))
        assert str(info.value) == expected


def test_bad_value_in_broadcast_q_uses_q_index():
    q = Q1.copy()
    q[44] = -1.0
    expected = in_memory_error(kl_fast.kl_div, P, q)
    assert "q contains a negative value (-1.0) at index [44]" in expected
    for qq in (q, da.from_array(q, chunks=10)):
        with pytest.raises(ValueError) as info:
            compute(kd.kl_div(da.from_array(P, chunks=(16, 20)), qq))
        assert str(info.value) == expected


def test_bad_value_three_dimensional_other_axis():
    p = probs((6, 21, 9), seed=8)
    p[4, 17, 6] = np.inf
    expected = in_memory_error(kl_fast.kl_div, p, 1.0, axis=1)
    with pytest.raises(ValueError) as info:
        compute(kd.kl_div(da.from_array(p, chunks=(4, 8, 5)), 1.0, axis=1))
    assert str(info.value) == expected
    assert "at index [4, 17, 6]" in expected


def test_check_false_skips_the_check():
    p = P.copy()
    p[3, 3] = -1.0
    got = compute(kd.kl_div(da.from_array(p, chunks=(8, 12)), Q1, check=False))
    assert got.shape == (40,)  # value unspecified, but no error


def test_normalize_zero_sum_index_in_whole_output():
    p = P.copy()
    p[29] = 0.0
    expected = in_memory_error(kl_fast.kl_div, p, Q1, normalize=True)
    assert "output index [29]" in expected
    with pytest.raises(ValueError) as info:
        compute(kd.kl_div(da.from_array(p, chunks=(8, 12)), Q1, normalize=True))
    assert str(info.value) == expected


def test_argument_errors():
    Pd = da.from_array(P, chunks=10)
    with pytest.raises(TypeError, match="kl_div: p must hold real numbers"):
        kd.kl_div(Pd.astype(np.complex128), Q1)
    with pytest.raises(TypeError, match="kl_div: q must hold real numbers"):
        kd.kl_div(Pd, np.array(["a"] * 57))
    with pytest.raises(ValueError, match=r"p with shape \(40, 57\) and q with shape \(56,\) do not broadcast"):
        kd.kl_div(Pd, Q1[:-1])
    with pytest.raises(ValueError, match="exclusive"):
        kd.kl_div(Pd, Q1, normalize=True, dx=0.1)
    with pytest.raises(ValueError, match="base"):
        kd.kl_div(Pd, Q1, base=1)
    with pytest.raises(ValueError, match="dx"):
        kd.kl_div(Pd, Q1, dx=-1.0)
    with pytest.raises(np.exceptions.AxisError):
        kd.kl_div(Pd, Q1, axis=2)
    unknown = Pd[Pd[:, 0] > 0.5]
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        kd.kl_div(unknown, Q1)


# ---- kl_pairwise over row blocks --------------------------------------------------

def dirichlet_rows(m, n, seed, zeros=False):
    rng = np.random.default_rng(seed)
    a = rng.dirichlet(np.ones(n), size=m)
    if zeros:
        a[rng.random(a.shape) < 0.05] = 0.0
    return a


PA = dirichlet_rows(30, 48, seed=10, zeros=True)
QA = dirichlet_rows(17, 48, seed=11)
QA[3, 7] = 0.0  # P rows with mass there give +inf


def assert_matrix_close(got, expected, rtol=1e-9):
    np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=rtol, atol=1e-15)


PAIR_CHUNKS = {
    "single chunk": ((30, 48), (17, 48)),
    "row blocks": ((7, 48), (5, 48)),
    "uneven rows": (((2, 20, 8), 48), ((16, 1), 48)),
    "columns chunked": ((8, 12), (6, 20)),
}


@pytest.mark.parametrize("chunks", PAIR_CHUNKS.values(), ids=PAIR_CHUNKS.keys())
@pytest.mark.parametrize("opts", [{}, {"normalize": True}, {"base": 2.0}], ids=["default", "normalize", "base2"])
def test_pairwise_matches_in_memory(chunks, opts):
    P_d = da.from_array(PA, chunks=chunks[0])
    Q_d = da.from_array(QA, chunks=chunks[1])
    lazy = kd.kl_pairwise(P_d, Q_d, **opts)
    assert isinstance(lazy, da.Array) and lazy.shape == (30, 17)
    got = compute(lazy)
    assert got.dtype == np.float64
    assert np.isinf(got).any()
    assert_matrix_close(got, kl_fast.kl_pairwise(PA, QA, **opts))
    with np.errstate(divide="ignore"):
        assert_matrix_close(got, reference.kl_pairwise(PA, QA, **opts))


@pytest.mark.parametrize("chunks", [(30, 48), (7, 48), ((2, 20, 8), (40, 8))])
def test_pairwise_within_p(chunks):
    got = compute(kd.kl_pairwise(da.from_array(PA, chunks=chunks), normalize=True))
    expected = kl_fast.kl_pairwise(PA, normalize=True)
    assert_matrix_close(got, expected)
    np.testing.assert_array_equal(np.diag(got), 0.0)


def test_pairwise_numpy_q_and_float32():
    got = compute(kd.kl_pairwise(da.from_array(PA, chunks=(9, 48)), QA))
    assert_matrix_close(got, kl_fast.kl_pairwise(PA, QA))
    got = compute(kd.kl_pairwise(PA, da.from_array(QA, chunks=(4, 48))))
    assert_matrix_close(got, kl_fast.kl_pairwise(PA, QA))
    p32, q32 = PA.astype(np.float32), QA.astype(np.float32)
    lazy = kd.kl_pairwise(da.from_array(p32, chunks=(9, 48)), da.from_array(q32, chunks=(4, 48)))
    assert lazy.dtype == np.float32
    got = compute(lazy)
    assert got.dtype == np.float32
    assert_matrix_close(got, kl_fast.kl_pairwise(p32, q32), rtol=1e-6)


@pytest.mark.parametrize("which, where, bad", [("P", (22, 41), -1.0), ("P", (0, 0), np.nan),
                                               ("Q", (16, 30), np.inf)])
def test_pairwise_bad_value_index_in_whole_matrix(which, where, bad):
    p, q = PA.copy(), QA.copy()
    (p if which == "P" else q)[where] = bad
    expected = in_memory_error(kl_fast.kl_pairwise, p, q)
    assert f"{which} contains" in expected and f"at index [{where[0]}, {where[1]}]" in expected
    with pytest.raises(ValueError) as info:
        compute(kd.kl_pairwise(da.from_array(p, chunks=(7, 20)), da.from_array(q, chunks=(5, 48))))
    assert str(info.value) == expected


def test_pairwise_zero_row_with_normalize():
    p = PA.copy()
    p[15] = 0.0
    expected = in_memory_error(kl_fast.kl_pairwise, p, QA, normalize=True)
    assert "row 15 of P" in expected
    with pytest.raises(ValueError) as info:
        compute(kd.kl_pairwise(da.from_array(p, chunks=(7, 48)), QA, normalize=True))
    assert str(info.value) == expected
    # without normalize a zero row is fine: its entries are 0
    got = compute(kd.kl_pairwise(da.from_array(p, chunks=(7, 48)), QA))
    np.testing.assert_array_equal(got[15], 0.0)


def test_pairwise_argument_errors():
    P_d = da.from_array(PA, chunks=(7, 48))
    with pytest.raises(ValueError, match="kl_pairwise: Q must be a 2-D array .* got shape \\(48,\\)"):
        kd.kl_pairwise(P_d, QA[0])
    with pytest.raises(ValueError, match=r"rows of P \(length 48\) and of Q \(length 47\)"):
        kd.kl_pairwise(P_d, QA[:, :-1])
    with pytest.raises(TypeError, match="kl_pairwise: P must hold real numbers"):
        kd.kl_pairwise(P_d.astype(np.complex128))
    with pytest.raises(ValueError, match="base"):
        kd.kl_pairwise(P_d, base=-2)


# ---- fit_gaussian over row blocks --------------------------------------------------

GX = np.linspace(-6.0, 6.0, 401)


def gaussian_rows(shape, seed):
    """Rows on GX: bumps of different centres and widths, plus noise, some exact zeros."""
    rng = np.random.default_rng(seed)
    mu = rng.uniform(-2, 2, size=shape + (1,))
    sd = rng.uniform(0.5, 2.0, size=shape + (1,))
    rows = np.exp(-0.5 * ((GX - mu) / sd) ** 2) + 0.01 * rng.random(shape + (GX.size,))
    rows[..., :5] = 0.0
    return rows


GP = gaussian_rows((23,), seed=12)


def fit_arrays(fit):
    return [np.asarray(a) for a in dask.compute(*fit[:3], scheduler="threads")]


FIT_CHUNKS = {"single chunk": (23, 401), "rows": (5, 401), "uneven rows": ((1, 17, 5), 401),
              "grid chunked": (8, 100)}
FIT_OPTIONS = [
    {},
    {"normalize": True},
    {"method": "gd", "lr": 0.002, "epochs": 30},
    {"mu0": np.array(0.25), "sigma0": np.linspace(0.8, 2.5, 23)},
    {"method": "gd", "parametrization": "variance", "sigma0": 2.0, "epochs": 10},
]


@pytest.mark.parametrize("chunks", FIT_CHUNKS.values(), ids=FIT_CHUNKS.keys())
@pytest.mark.parametrize("opts", FIT_OPTIONS, ids=["newton", "normalize", "gd", "starts", "gd-variance"])
def test_fit_matches_in_memory(chunks, opts):
    fit = kd.fit_gaussian(da.from_array(GP, chunks=chunks), GX, **opts)
    assert isinstance(fit, kd.GaussianFitArrays)
    assert all(isinstance(a, da.Array) and a.shape == (23,) for a in fit)
    mu, sigma, kl = fit_arrays(fit)
    expected = kl_fast.fit_gaussian(GP, GX, **opts)
    for got, exp in ((mu, expected.mu), (sigma, expected.sigma), (kl, expected.kl)):
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, exp, rtol=1e-12, atol=1e-14)


def test_fit_against_reference_newton_and_batch_axes():
    P3 = gaussian_rows((2, 5), seed=13)
    mu, sigma, kl = fit_arrays(kd.fit_gaussian(da.from_array(P3, chunks=(1, 3, 401)), GX))
    assert mu.shape == (2, 5)
    ref = reference.fit_gaussian_newton(P3.reshape(10, -1), GX)
    np.testing.assert_allclose(mu.ravel(), ref["mu"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(sigma.ravel(), ref["sigma"], rtol=1e-9)
    np.testing.assert_allclose(kl.ravel(), ref["kl"], rtol=1e-9)


def test_fit_reproduces_the_tutorial_per_row():
    x = np.arange(-10, 10, 0.001)
    p = np.exp(-x ** 2 / 8) / np.sqrt(8 * np.pi)
    fit = kd.fit_gaussian(da.from_array(np.stack([p, p]), chunks=(1, 20_000)), x, method="gd",
                          parametrization="variance", mu0=0.0, sigma0=1.0, lr=0.001, epochs=100)
    mu, sigma, kl = fit_arrays(fit)
    np.testing.assert_allclose(sigma ** 2, 3.9675094, rtol=1e-7)  # DESIGN.md: v = 3.9675094
    np.testing.assert_allclose(kl, 6907.7674169, rtol=1e-9)
    assert np.all(np.abs(mu) < 1e-8)


def test_fit_warns_once_of_an_option_the_method_ignores():
    """The warning comes from the call, once, not from each block's fit (a
    worker's warning may never reach the caller), and the blocks' fits are
    those without the ignored option."""
    with pytest.warns(RuntimeWarning, match=r"method='newton' does not use lr=0.5") as record:
        fit = kd.fit_gaussian(da.from_array(GP, chunks=(6, 401)), GX, lr=0.5)
    assert len(record) == 1 and record[0].filename == __file__   # the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mu, sigma, kl = fit_arrays(fit)
    np.testing.assert_array_equal(mu, kl_fast.fit_gaussian(GP, GX).mu)


def test_fit_one_row_and_numpy_input():
    mu, sigma, kl = fit_arrays(kd.fit_gaussian(da.from_array(GP[3], chunks=100), GX))
    expected = kl_fast.fit_gaussian(GP[3], GX)
    assert mu.shape == ()
    np.testing.assert_allclose([mu, sigma, kl], [expected.mu, expected.sigma, expected.kl],
                               rtol=1e-12)
    mu, _, _ = fit_arrays(kd.fit_gaussian(GP, GX))
    np.testing.assert_allclose(mu, kl_fast.fit_gaussian(GP, GX).mu, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("make_bad, where", [
    (lambda p: p.__setitem__((17, 250), np.nan), "NaN at index [17, 250]"),
    (lambda p: p.__setitem__((9, 3), -1.0), "a negative value (-1.0) at index [9, 3]"),
    (lambda p: p.__setitem__(20, 0.0), "p is all zero at index [20]"),
])
def test_fit_bad_rows_index_in_whole_array(make_bad, where):
    p = GP.copy()
    make_bad(p)
    expected = in_memory_error(kl_fast.fit_gaussian, p, GX)
    assert where in expected
    with pytest.raises(ValueError) as info:
        dask.compute(*kd.fit_gaussian(da.from_array(p, chunks=(6, 401)), GX), scheduler="threads")
    assert str(info.value) == expected


def test_fit_argument_errors_are_eager():
    Pd = da.from_array(GP, chunks=(5, 401))
    with pytest.raises(ValueError, match=r"x has 400 points but p has 401 .* \(shape \(23, 401\)\)"):
        kd.fit_gaussian(Pd, GX[:-1])
    bad_x = GX.copy()
    bad_x[7] = np.inf
    with pytest.raises(ValueError, match=r"x contains an infinite value \(inf\) at index \[7\]"):
        kd.fit_gaussian(Pd, bad_x)
    with pytest.raises(ValueError, match="method must be"):
        kd.fit_gaussian(Pd, GX, method="bfgs")
    with pytest.raises(ValueError, match="sigma0 must be positive"):
        kd.fit_gaussian(Pd, GX, sigma0=0.0)
    with pytest.raises(ValueError, match=r"sigma0 must be positive and finite, got -1.0 at index \[4\]"):
        kd.fit_gaussian(Pd, GX, sigma0=np.where(np.arange(23) == 4, -1.0, 1.0))
    with pytest.raises(ValueError, match="mu0 of shape \\(22,\\) does not broadcast"):
        kd.fit_gaussian(Pd, GX, mu0=np.zeros(22))
    with pytest.raises(TypeError, match="p must hold real numbers"):
        kd.fit_gaussian(Pd.astype(np.complex128), GX)


# ---- kl_topk ---------------------------------------------------------------------

@pytest.mark.parametrize("p_chunks, q_chunks", [((7, 48), (9, 48)), ((30, 48), (1, 48)),
                                                ((4, 20), (17, 16))])
@pytest.mark.parametrize("divergence", ["kl", "js", "kl_reverse"])
def test_topk_matches_in_memory(p_chunks, q_chunks, divergence):
    q = QA.copy()
    q[12] = q[2]                     # tied candidates in different blocks
    q[15, :3] = 0.0                  # +inf entries (-inf in base 0.5) rank last
    for opts in ({}, {"normalize": True, "base": 2.0}, {"base": 0.5}):
        lazy = kd.kl_topk(da.from_array(PA, chunks=p_chunks), da.from_array(q, chunks=q_chunks),
                          5, divergence=divergence, **opts)
        v, i = dask.compute(*lazy, scheduler="threads")
        want_v, want_i = kl_fast.kl_topk(PA, q, 5, divergence=divergence, **opts)
        np.testing.assert_array_equal(i, want_i)
        np.testing.assert_array_equal(v, want_v)
        assert v.dtype == want_v.dtype and i.dtype == np.intp


def test_topk_nan_under_check_false_ranks_as_in_memory():
    """A NaN value (bad input, check=False) ranks with +inf before the padding
    of the partials (an empty slot's index was returned)."""
    P = np.array([[0.5, 0.5]])
    Q = np.array([[0.5, 0.5], [np.nan, 0.5], [0.2, 0.8], [0.3, 0.7]])
    for base in (None, 0.5):
        with np.errstate(invalid="ignore"):
            lazy = kd.kl_topk(da.from_array(P), da.from_array(Q, chunks=(3, 2)), 4,
                              check=False, base=base)
            v, i = dask.compute(*lazy, scheduler="threads")
            want_v, want_i = kl_fast.kl_topk(P, Q, 4, check=False, base=base)
        np.testing.assert_array_equal(i, want_i)
        np.testing.assert_array_equal(v, want_v)


def test_topk_float32_k_zero_and_errors():
    p32, q32 = PA.astype(np.float32), QA.astype(np.float32)
    v = compute(kd.kl_topk(da.from_array(p32, chunks=(8, 48)), q32, 3)[0])
    assert v.dtype == np.float32
    np.testing.assert_array_equal(v, kl_fast.kl_topk(p32, q32, 3)[0])
    v0 = compute(kd.kl_topk(PA, QA, 0)[0])
    assert v0.shape == (30, 0)
    with pytest.raises(ValueError, match=r"k = 18 is larger than the number of rows of Q \(17\)"):
        kd.kl_topk(PA, QA, 18)
    with pytest.raises(ValueError, match="divergence must be one of"):
        kd.kl_topk(PA, QA, 1, divergence="sym")
    q = QA.copy()
    q[16, 30] = np.inf
    expected = in_memory_error(kl_fast.kl_topk, PA, q, 2)
    with pytest.raises(ValueError) as info:
        dask.compute(*kd.kl_topk(da.from_array(PA, chunks=(7, 48)), da.from_array(q, chunks=(5, 48)),
                                 2), scheduler="threads")
    assert str(info.value) == expected and "at index [16, 30]" in expected


def test_topk_and_pairwise_with_empty_blocks_rows_or_columns():
    # a row block of P with no rows (boolean selection, then compute_chunk_sizes),
    # P with no rows, and rows of no elements: the in-memory results
    Pd = da.from_array(PA, chunks=(8, 48))
    sel = Pd[Pd[:, 0] > 0.02]
    sel.compute_chunk_sizes()
    assert 0 in sel.chunks[0]
    kept = PA[PA[:, 0] > 0.02]
    for got, want in zip(dask.compute(*kd.kl_topk(sel, QA, 2), scheduler="threads"),
                         kl_fast.kl_topk(kept, QA, 2)):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(dask.compute(*kd.kl_topk(PA[:0], QA, 2), scheduler="threads"),
                         kl_fast.kl_topk(PA[:0], QA, 2)):
        assert got.shape == want.shape == (0, 2) and got.dtype == want.dtype
    P0, Q0 = np.zeros((2, 0)), np.zeros((3, 0))
    for f in ("kl_pairwise", "js_pairwise"):
        np.testing.assert_array_equal(compute(getattr(kd, f)(P0, Q0)), getattr(kl_fast, f)(P0, Q0))
    for got, want in zip(dask.compute(*kd.kl_topk(P0, Q0, 1), scheduler="threads"),
                         kl_fast.kl_topk(P0, Q0, 1)):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(TypeError, match="kl_topk: Q is required"):
        kd.kl_topk(PA, None, 1)


# ---- js_div, kl_div_log, js_pairwise, the Gaussian evaluations ----------------------

R3 = probs((6, 7, 10), seed=21)
RQ3 = probs((7, 10), zero_frac=0.0, seed=22) + 0.01


@pytest.mark.parametrize("name", ["js_div", "kl_div_log"])
@pytest.mark.parametrize("opts", [{}, {"axis": 0}, {"axis": (0, 2), "keepdims": True},
                                  {"normalize": True, "base": 2.0}, {"axis": None}])
def test_rowwise_functions_match_in_memory(name, opts):
    with np.errstate(divide="ignore"):   # log 0 = -inf: a valid log-probability
        p, q = (R3, RQ3) if name == "js_div" else (np.log(R3), np.log(RQ3))
    got = compute(getattr(kd, name)(da.from_array(p, chunks=(2, 3, 4)), q, **opts))
    want = getattr(kl_fast, name)(p, q, **opts)
    assert got.shape == np.shape(want)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("which, where, q_chunks", [("p", (4, 5, 7), None), ("q", (6, 3), None),
                                                    ("q", (6, 3), (4, 5))])
def test_rowwise_errors_index_the_whole_array(which, where, q_chunks):
    p, q = R3.copy(), RQ3.copy()
    (p if which == "p" else q)[where] = np.nan
    expected = in_memory_error(kl_fast.js_div, p, q)
    qd = q if q_chunks is None else da.from_array(q, chunks=q_chunks)
    with pytest.raises(ValueError) as info:
        compute(kd.js_div(da.from_array(p, chunks=(2, 3, 4)), qd))
    assert str(info.value) == expected
    z = R3.copy()
    z[3, 4] = 0.0
    expected = in_memory_error(kl_fast.js_div, z, RQ3, normalize=True)
    with pytest.raises(ValueError) as info:
        compute(kd.js_div(da.from_array(z, chunks=(2, 3, 4)), RQ3, normalize=True))
    assert str(info.value) == expected and "output index [3, 4]" in expected


def test_js_pairwise_matches_in_memory():
    for q in (None, QA):
        for opts in ({}, {"normalize": True, "base": 2.0}):
            lazy = kd.js_pairwise(da.from_array(PA, chunks=(7, 48)),
                                  None if q is None else da.from_array(q, chunks=(5, 48)), **opts)
            np.testing.assert_array_equal(compute(lazy), kl_fast.js_pairwise(PA, q, **opts))


@pytest.mark.parametrize("normalize", [False, True])
def test_gaussian_evaluations_match_in_memory(normalize):
    P = gaussian_rows((4, 5), seed=23)
    Pd = da.from_array(P, chunks=(3, 2, 100))
    mu = np.linspace(-1, 1, 5)
    sigma = np.array([[0.5], [1.0], [2.0], [1.5]])
    got = compute(kd.gaussian_kl(Pd, GX, mu, sigma, normalize=normalize))
    np.testing.assert_array_equal(got, kl_fast.gaussian_kl(P, GX, mu, sigma, normalize=normalize))
    got = dask.compute(*kd.gaussian_kl_grad(Pd, GX, da.from_array(mu, chunks=2), 1.3,
                                            normalize=normalize), scheduler="threads")
    for a, b in zip(got, kl_fast.gaussian_kl_grad(P, GX, mu, 1.3, normalize=normalize)):
        np.testing.assert_array_equal(a, b)
    bad = P.copy()
    bad[3, 4, 200] = -1.0
    expected = in_memory_error(kl_fast.gaussian_kl, bad, GX, 0.0, 1.0)
    with pytest.raises(ValueError) as info:
        compute(kd.gaussian_kl(da.from_array(bad, chunks=(3, 2, 100)), GX, 0.0, 1.0))
    assert str(info.value) == expected
    with pytest.raises(ValueError, match=r"sigma must be positive and finite, got -1.0 at index \[1\]"):
        kd.gaussian_kl(Pd, GX, 0.0, [1.0, -1.0, 1.0, 1.0, 1.0])


def test_fit_arrays_carry_nit_and_converged():
    fit = kd.fit_gaussian(da.from_array(GP, chunks=(6, 401)), GX)
    mu, sigma, kl, nit, converged = dask.compute(*fit, scheduler="threads")
    expected = kl_fast.fit_gaussian(GP, GX)
    np.testing.assert_array_equal(nit, expected.nit)
    np.testing.assert_array_equal(converged, expected.converged)
    assert nit.dtype == np.intp and converged.dtype == bool


def test_delayed_inputs():
    runs = []

    def make_q():
        runs.append(1)
        return Q1.copy()

    q = dask.delayed(make_q)()
    lazy = kd.kl_div(da.from_array(P, chunks=(16, 20)), q)
    assert len(runs) == 1       # its shape was needed now: computed once, persisted
    got = compute(lazy)
    np.testing.assert_allclose(got, kl_fast.kl_div(P, Q1), rtol=1e-12)
    np.testing.assert_allclose(compute(lazy), got, rtol=0)
    assert len(runs) == 1       # and not again at compute time
    # dask.delayed of an array itself (a DelayedLeaf, not a Delayed call) was refused
    # as a Dask collection that kl_fast.dask's own functions would load whole
    Pl, Ql = dask.delayed(P), dask.delayed(Q)
    np.testing.assert_allclose(compute(kd.kl_div(Pl, Q1)), kl_fast.kl_div(P, Q1), rtol=1e-12)
    np.testing.assert_allclose(compute(kd.kl_pairwise(Pl, Ql)), kl_fast.kl_pairwise(P, Q),
                               rtol=1e-12)
    vals, idx = kd.kl_topk(Pl, Ql, 3)
    want_vals, want_idx = kl_fast.kl_topk(P, Q, 3)
    np.testing.assert_array_equal(compute(idx), want_idx)
    np.testing.assert_allclose(compute(vals), want_vals, rtol=1e-12)


def test_gaussian_target_in_map_blocks():
    # a prepared target travels with the graph (it pickles) and broadcasts over blocks
    target = kl_fast.GaussianTarget(GP[0], GX)
    mu, sigma = np.meshgrid(np.linspace(-1, 1, 30), np.linspace(0.5, 2.0, 20))
    lazy = da.map_blocks(target.kl, da.from_array(mu, chunks=(7, 11)),
                         da.from_array(sigma, chunks=(7, 11)), dtype=np.float64)
    np.testing.assert_array_equal(compute(lazy), target.kl(mu, sigma))


# ---- dask.distributed: one local cluster of two worker processes for the module ------

@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with dask.config.set({"distributed.comm.timeouts.connect": f"{TIMEOUT}s"}):
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=":0", silence_logs=logging.CRITICAL,  # any free port
        )
        try:
            with distributed.Client(cluster, timeout=TIMEOUT) as c:
                c.wait_for_workers(2, timeout=TIMEOUT)
                yield c
        finally:
            cluster.close(timeout=TIMEOUT)


@pytest.mark.distributed
def test_distributed_matches_in_memory(client):
    Pd = da.from_array(P, chunks=(16, 20))
    for q, opts in ((Q1, {}), (Q, {"normalize": True}), (Q1, {"axis": None, "base": 2.0})):
        got = client.compute(kd.kl_div(Pd, q, **opts)).result(timeout=TIMEOUT)
        np.testing.assert_allclose(got, kl_fast.kl_div(P, q, **opts), rtol=1e-12)
    p32, q32 = P.astype(np.float32), Q1.astype(np.float32)
    got = client.compute(kd.kl_div(da.from_array(p32, chunks=(16, 20)), q32)).result(timeout=TIMEOUT)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, kl_fast.kl_div(p32, q32), rtol=1e-6)


@pytest.mark.distributed
def test_distributed_pairwise(client):
    lazy = kd.kl_pairwise(da.from_array(PA, chunks=(7, 48)), da.from_array(QA, chunks=(9, 48)),
                          normalize=True)
    got = client.compute(lazy).result(timeout=TIMEOUT)
    assert_matrix_close(got, kl_fast.kl_pairwise(PA, QA, normalize=True))


@pytest.mark.distributed
def test_distributed_topk(client):
    lazy = kd.kl_topk(da.from_array(PA, chunks=(7, 48)), da.from_array(QA, chunks=(4, 48)), 6,
                      normalize=True)
    v, i = [f.result(timeout=TIMEOUT) for f in client.compute(list(lazy))]
    want_v, want_i = kl_fast.kl_topk(PA, QA, 6, normalize=True)
    np.testing.assert_array_equal(i, want_i)
    np.testing.assert_array_equal(v, want_v)


@pytest.mark.distributed
def test_distributed_scattered_future_input(client):
    q = client.scatter(Q1)
    got = client.compute(kd.kl_div(da.from_array(P, chunks=(16, 20)), q)).result(timeout=TIMEOUT)
    np.testing.assert_allclose(got, kl_fast.kl_div(P, Q1), rtol=1e-12)
    qa = client.scatter(QA)
    got = client.compute(kd.kl_pairwise(da.from_array(PA, chunks=(7, 48)), qa)).result(timeout=TIMEOUT)
    assert_matrix_close(got, kl_fast.kl_pairwise(PA, QA))


@pytest.mark.distributed
def test_distributed_survives_a_worker_killed_mid_run(client):
    import os
    import time

    rng = np.random.default_rng(5)
    big_p = rng.dirichlet(np.ones(64), 4000)
    big_q = rng.dirichlet(np.ones(64), 3000)
    lazy = kd.kl_topk(da.from_array(big_p, chunks=(250, 64)), da.from_array(big_q, chunks=(250, 64)),
                      5)
    futures = client.compute(list(lazy))
    deadline = time.monotonic() + TIMEOUT
    while not any(client.processing().values()) and time.monotonic() < deadline:
        time.sleep(0.01)   # until tasks are running
    victim = sorted(client.scheduler_info()["workers"])[0]
    try:
        client.run(os._exit, 1, workers=[victim])   # dies before it can answer
    except Exception:  # noqa: BLE001 - the closed connection is the expected outcome
        pass
    v, i = [f.result(timeout=3 * TIMEOUT) for f in futures]
    want_v, want_i = kl_fast.kl_topk(big_p, big_q, 5)
    np.testing.assert_array_equal(i, want_i)
    np.testing.assert_array_equal(v, want_v)
    client.wait_for_workers(2, timeout=TIMEOUT)   # the nanny restarted it
    assert victim not in client.scheduler_info()["workers"]   # under a new address


@pytest.mark.distributed
def test_distributed_gaussian_target(client):
    target = kl_fast.GaussianTarget(GP[:3], GX)
    remote = client.scatter(target)
    got = client.submit(lambda t, m, s: t.kl_hess(m, s), remote, np.zeros((3,)), 1.2)
    kl, grad, hess = got.result(timeout=TIMEOUT)
    want = target.kl_hess(np.zeros((3,)), 1.2)
    for a, b in zip((kl, grad, hess), want):
        np.testing.assert_array_equal(a, b)


@pytest.mark.distributed
def test_distributed_fit_gaussian(client):
    fit = kd.fit_gaussian(da.from_array(GP, chunks=(6, 401)), GX, normalize=True)
    mu, sigma, kl, _, _ = [f.result(timeout=TIMEOUT) for f in client.compute(list(fit))]
    expected = kl_fast.fit_gaussian(GP, GX, normalize=True)
    np.testing.assert_allclose(mu, expected.mu, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(sigma, expected.sigma, rtol=1e-12)
    np.testing.assert_allclose(kl, expected.kl, rtol=1e-12)


@pytest.mark.distributed
def test_distributed_error_index_in_whole_array(client):
    p = P.copy()
    p[37, 41] = -3.0
    expected = in_memory_error(kl_fast.kl_div, p, Q1)
    with pytest.raises(ValueError) as info:
        client.compute(kd.kl_div(da.from_array(p, chunks=(16, 20)), Q1)).result(timeout=TIMEOUT)
    assert str(info.value) == expected


# ---- the bench cases degrade to no row without dask, to no cluster row without distributed

def test_bench_cases_without_dask(monkeypatch):
    from kl_fast.bench import cases_dask

    monkeypatch.setitem(sys.modules, "dask.array", None)  # makes the import fail
    assert cases_dask.cases(quick=True) == []


def test_bench_cases_without_distributed(monkeypatch):
    from kl_fast.bench import cases_dask

    monkeypatch.setitem(sys.modules, "distributed", None)
    (case,) = cases_dask.cases(quick=True)
    impls = case.setup()
    try:
        assert cases_dask.BASELINE in impls
        assert not any("LocalCluster" in name for name in impls)
        results = {name: fn() for name, fn in impls.items()}
    finally:
        impls.close()
    for got in results.values():
        np.testing.assert_allclose(got, results[cases_dask.BASELINE], rtol=1e-12)


def test_top_level_functions_refuse_dask_collections():
    x = da.ones((4, 3), chunks=2)
    grid = np.arange(3.0)
    # every function kl_fast.dask mirrors points to it; GaussianTarget, and a grid x,
    # only to .compute()
    calls = [("kl_div", (x, x), "kl_fast.dask.kl_div"), ("js_div", (x, x), "kl_fast.dask.js_div"),
             ("kl_div_log", (np.zeros(3), x), "kl_fast.dask.kl_div_log"),
             ("kl_pairwise", (x, x), "kl_fast.dask.kl_pairwise"),
             ("js_pairwise", (x,), "kl_fast.dask.js_pairwise"),
             ("kl_topk", (x, x, 1), "kl_fast.dask.kl_topk"),
             ("gaussian_kl", (np.ones(3), grid, x[0], 1.0), "kl_fast.dask.gaussian_kl"),
             ("gaussian_kl_grad", (x, grid, 0.0, 1.0), "kl_fast.dask.gaussian_kl_grad"),
             ("fit_gaussian", (x, grid), "kl_fast.dask.fit_gaussian"),
             ("GaussianTarget", (x, grid), "pass p.compute()"),
             ("gaussian_kl", (np.ones(3), da.from_array(grid), 0.0, 1.0), "pass x.compute()")]
    for name, args, hint in calls:
        with pytest.raises(TypeError, match="is a Dask collection") as info:
            getattr(kl_fast, name)(*args)
        assert hint in str(info.value), (name, str(info.value))
        if "kl_fast.dask" in hint:   # and the lazy function takes that argument
            getattr(kd, name)(*args)
    # the starts of a fit are taken in memory, by kl_fast.dask.fit_gaussian too
    P = da.ones((4, 3), chunks=(2, 3))
    for fit in (kl_fast.fit_gaussian, kl_fast.dask.fit_gaussian):
        data = P if fit is kl_fast.dask.fit_gaussian else np.ones((4, 3))
        for start in ("mu0", "sigma0", "x"):
            kw = {"x": da.from_array(grid)} if start == "x" else {"x": grid,
                                                                   start: da.ones(4, chunks=2)}
            with pytest.raises(TypeError, match=f"{start} is a Dask collection") as info:
                fit(data, **kw)
            assert f"pass {start}.compute()" in str(info.value)
            assert "use kl_fast.dask" not in str(info.value)


def test_magnified_subnormal_terms_are_kept():
    """Blocks carry the terms of p below 2**-968 apart at full precision, so dx or
    a base near 1 that magnifies them gives in-memory kl_div's value (to its
    last bits), across chunks of the reduced axis."""
    rng = np.random.default_rng(11)
    P = np.ldexp(rng.uniform(1, 2, (6, 8)), rng.integers(-1074, -1030, (6, 8)))
    Q = np.ldexp(rng.uniform(1, 2, (6, 8)), rng.integers(-1074, -990, (6, 8)))
    P[0, :4], Q[0, :4] = 0.5, 0.5           # ordinary terms that cancel to 0
    P[1, 0] = 0.0
    for kw in ({"dx": 1e300}, {"base": 1 + 1e-9}, {"dx": 1e200, "base": 2.0}):
        want = kl_fast.kl_div(P, Q, **kw)
        for chunks in ((2, 3), (6, 8), (1, 1)):
            got = kl_fast.dask.kl_div(da.from_array(P, chunks=chunks), Q, **kw).compute()
            np.testing.assert_allclose(got, want, rtol=1e-14, atol=0)


def test_magnified_blocks_leave_other_rows_and_warnings_alone():
    """A subnormal p in one row does not change the other rows of its block
    (they keep in-memory kl_div's bits), and bad values with check=False give
    their NaN without warnings, as in memory."""
    rng = np.random.default_rng(0)
    P, Q = rng.random((6, 40, 7, 30)), rng.random((40, 1, 30))
    P[0, 0, 0, 0] = 2.0**-1040
    got = kd.kl_div(da.from_array(P), Q, axis=(0, 2), dx=10.0).compute()
    np.testing.assert_array_equal(got, kl_fast.kl_div(P, Q, axis=(0, 2), dx=10.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = kd.kl_div(da.from_array(np.array([[1e-310, 0.5]])), np.array([[-1.0, 0.5]]),
                        check=False, dx=1e300).compute()
    assert got.shape == (1,)
