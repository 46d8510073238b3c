"""The compiled entries of kl_div, js_div and kl_div_log.

Every call whose layout needs no copy is computed by the entry itself; it must
give the same bits, dtype and shape as the Python implementation, which stays
for the rare layouts and the error path.
"""
import itertools

import numpy as np
import pytest

import kl_fast
from kl_fast import _api, _divergences, _div_kernels, _pairwise

PYTHON = {"kl_div": _api.kl_div_python, "js_div": _divergences.js_div_python,
          "kl_div_log": _divergences.kl_div_log_python}
PUBLIC = {"kl_div": kl_fast.kl_div, "js_div": kl_fast.js_div, "kl_div_log": kl_fast.kl_div_log}


def _inputs(func, shape, dtype, seed):
    rng = np.random.default_rng(seed)
    a = rng.random(shape) + 0.05
    if func == "kl_div_log":
        a = np.log(a)
    return a.astype(dtype)


def _layouts(func, dtype):
    """(label, p, q, axis, copy_free): copy_free layouts the entry must compute itself."""
    P = _inputs(func, (6, 7), dtype, 1)
    Q = _inputs(func, (6, 7), dtype, 2)
    P3 = _inputs(func, (3, 4, 5), dtype, 3)
    Q3 = _inputs(func, (3, 4, 5), dtype, 4)
    big = _inputs(func, (12, 14), dtype, 5)
    yield "1-D", P[0], Q[0], -1, True
    yield "1-D axis=0", P[0], Q[0], 0, True
    yield "1-D axis=None", P[0], Q[0], None, True
    yield "1-D strided", big[0, ::2], Q[0], -1, True
    yield "1-D length 0", P[0, :0], Q[0, :0], -1, True
    for axis in (-1, 0, 1, -2, None, (0, 1)):
        whole = axis is None or axis == (0, 1)
        yield f"2-D axis={axis}", P, Q, axis, True
        yield f"2-D Fortran axis={axis}", np.asfortranarray(P), Q, axis, not whole
        yield f"2-D sliced axis={axis}", big[::2, ::2], Q, axis, not whole
    yield "2-D against 1-D", P, Q[0], -1, True
    yield "2-D reversed both ways", P[::-1, ::-1], Q, -1, True
    yield "2-D against 1-D axis=0", P, Q[0], 0, True
    yield "2-D against 1-D axis=None", P, Q[0], None, False
    yield "2-D against a column axis=0", P, Q[:, :1], 0, True
    yield "1-D against 2-D", P[0], Q, 1, True
    yield "2-D with zero rows", P[:0], Q[:0], -1, True
    for axis in (-1, 0, 1, 2, (1, 2), None, (0, 2)):
        yield f"3-D axis={axis}", P3, Q3, axis, axis != (0, 2)
    yield "3-D against 1-D", P3, Q3[0, 0], -1, True
    yield "3-D transposed axis=0", P3.transpose(2, 1, 0), Q3.transpose(2, 1, 0), 0, True
    P4 = _inputs(func, (2, 3, 4, 5), dtype, 14).transpose(1, 0, 2, 3)
    yield "4-D, kept axes in three strides", P4, P4[::-1], -1, False


def _rescaled_rows(p, q, axis, dtype):
    """The rows kl_div(normalize=True) hands to the Python layer's rescaling path:
    those normalize_rescale flags, less those whose sums are only far apart (in
    range, no p > 0 meeting q == 0, every element 0 or divided into the normal
    range), which the compiled entries divide by their sums themselves."""
    p, q = np.broadcast_arrays(p, q)
    ps, qs = (np.sum(a, axis=axis, dtype=np.float64, keepdims=True) for a in (p, q))
    sums = np.stack([np.zeros(ps.shape), ps, qs], axis=-1)
    flagged = _api.normalize_rescale(sums, dtype == np.float32)
    tiny, big = (2.0 ** -100, 2.0 ** 100) if dtype == np.float32 else (2.0 ** -960, 2.0 ** 960)
    normal = np.finfo(dtype).tiny
    apart_only = (tiny <= ps) & (ps <= big) & (tiny <= qs) & (qs <= big)
    apart_only &= ~np.any((p > 0) & (q == 0), axis=axis, keepdims=True)
    for a, s in ((p, ps), (q, qs)):
        with np.errstate(divide="ignore", invalid="ignore"):
            apart_only &= np.all((a == 0) | (a / s >= normal), axis=axis, keepdims=True)
    return flagged & ~apart_only


OPTIONS = [{}, {"keepdims": True}, {"base": 2.0}, {"base": 10}, {"normalize": True},
           {"num_threads": 1}, {"num_threads": 2}, {"check": False}]


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype
    assert a.shape == b.shape
    np.testing.assert_array_equal(a, b)
    assert np.array_equal(np.signbit(a), np.signbit(b))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("func", ["kl_div", "js_div", "kl_div_log"])
def test_entry_computes_every_copy_free_layout_as_python_does(func, dtype):
    options = OPTIONS + ([{"dx": 0.25}, {"dx": 3, "base": 2.0}] if func == "kl_div" else [])
    for (label, p, q, axis, copy_free), opts in itertools.product(list(_layouts(func, dtype)),
                                                                   options):
        if opts.get("normalize") and (p.size == 0 or q.size == 0):
            continue
        p0, q0 = p.copy(), q.copy()
        if opts.get("normalize") and func == "kl_div":
            copy_free = copy_free and not _rescaled_rows(p, q, axis, dtype).any()
        expected = PYTHON[func](p, q, axis=axis, **opts)
        got = _div_kernels.fast_path(func, p, q, axis=axis, **opts)
        if copy_free:
            assert got is not None, (label, opts)
            _same(got, expected)
            assert isinstance(got, np.ndarray) or type(got) is np.dtype(dtype).type
        else:
            assert got is None, (label, opts)
        _same(PUBLIC[func](p, q, axis=axis, **opts), expected)
        np.testing.assert_array_equal(p, p0)
        np.testing.assert_array_equal(q, q0)


@pytest.mark.parametrize("func", ["kl_div", "js_div", "kl_div_log"])
def test_entry_writes_out_and_returns_it(func):
    P = _inputs(func, (5, 4), np.float64, 6)
    Q = _inputs(func, (5, 4), np.float64, 7)
    for axis, keepdims in ((-1, False), (0, False), (-1, True)):
        expected = PYTHON[func](P, Q, axis=axis, keepdims=keepdims)
        out = np.full(expected.shape, np.nan)
        assert PUBLIC[func](P, Q, axis=axis, keepdims=keepdims, out=out) is out
        _same(out, expected)
    out0 = np.empty(())
    assert PUBLIC[func](P[0], Q[0], out=out0) is out0
    _same(out0, PYTHON[func](P[0], Q[0]))


@pytest.mark.parametrize("func", ["kl_div", "js_div", "kl_div_log"])
def test_entry_hands_other_calls_to_python(func):
    p = _inputs(func, 6, np.float64, 8)
    q = _inputs(func, 6, np.float64, 9)
    handed = [
        (p.astype(np.float32), q, {}),              # mixed dtypes: a cast
        (p.astype(">f8"), q, {}),                   # byte-swapped: a copy
        (np.float64(p[0]), np.float64(q[0]), {}),   # two scalars
        (p, q, {"axis": np.int64(0)}),              # a NumPy integer axis
        (p, q, {"base": 1.0}),                      # an error to explain
        (p, q, {"num_threads": 0}),
        (p, q, {"out": np.empty((), dtype=np.float32)}),  # a cast into out
    ]
    for a, b, opts in handed:
        assert _div_kernels.fast_path(func, a, b, **opts) is None, opts
    # the public function still answers (or explains) them
    _same(PUBLIC[func](p.astype(">f8"), q), PYTHON[func](p, q))
    with pytest.raises(ValueError, match="base"):
        PUBLIC[func](p, q, base=1.0)


def test_entry_takes_lists_as_numpy_would():
    p, q = [0.5, 0.5], [0.9, 0.1]
    assert _div_kernels.fast_path("kl_div", p, q) is not None
    _same(kl_fast.kl_div(p, q), _api.kl_div_python(np.array(p), np.array(q)))


@pytest.mark.parametrize("func", ["kl_div", "js_div", "kl_div_log"])
def test_bad_value_raises_the_python_error_and_leaves_out_untouched(func):
    P = _inputs(func, (4, 5), np.float64, 10)
    Q = _inputs(func, (4, 5), np.float64, 11)
    P[2, 3] = np.nan
    out = np.full(4, 7.0)
    with pytest.raises(ValueError, match=r"NaN at index \[2, 3\]"):
        PUBLIC[func](P, Q, out=out)
    np.testing.assert_array_equal(out, 7.0)


def test_normalize_zero_and_overflowing_sums_go_to_python():
    with pytest.raises(ValueError, match="sums to 0.0"):
        kl_fast.kl_div([0.0, 0.0], [0.5, 0.5], normalize=True)
    p = np.array([1e308, 1e308, 1.5e308])
    q = np.array([1.7e308, 1e308, 1e308])
    assert _div_kernels.fast_path("kl_div", p, q, normalize=True) is None
    pn, qn = np.array([1.0, 1.0, 1.5]), np.array([1.7, 1.0, 1.0])  # p, q over 1e308
    expected = kl_fast.reference.kl_div(pn / pn.sum(), qn / qn.sum())
    assert kl_fast.kl_div(p, q, normalize=True) == pytest.approx(expected, rel=1e-14, abs=0)


def test_threads_give_the_same_bits():
    P = _inputs("kl_div", (400, 300), np.float64, 12)
    Q = _inputs("kl_div", (400, 300), np.float64, 13)
    one = kl_fast.kl_div(P, Q, num_threads=1)
    for nt in (None, 2, 10**9):
        _same(kl_fast.kl_div(P, Q, num_threads=nt), one)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_small_pairwise_is_computed_pair_by_pair(dtype):
    rng = np.random.default_rng(15)
    P = rng.random((4, 10)).astype(dtype)
    Q = rng.random((5, 10)).astype(dtype)
    P[1, 3] = 0.0
    Q[2, 4] = 0.0  # P[k, 4] > 0 there: +inf entries
    for opts in ({}, {"normalize": True}, {"base": 2.0}, {"num_threads": 2}):
        got = _div_kernels.fast_path("kl_pairwise", P, Q, **opts)
        assert got is not None and got.dtype == dtype and got.shape == (4, 5)
        _same(kl_fast.kl_pairwise(P, Q, **opts), got)
        per_pair = kl_fast.kl_div(P[:, None, :].astype(np.float64), Q[None, :, :].astype(np.float64),
                                  **opts).astype(dtype)
        _same(got, per_pair)
        assert np.isinf(got[:, 2]).all()
        # the matrix-product form agrees within its documented bound
        np.testing.assert_allclose(_div_kernels.fast_path("kl_pairwise", P, Q, **opts),
                                   _pairwise.kl_pairwise_python(P, Q, **opts), rtol=2e-6 if dtype == np.float32 else 1e-12)
        got = _div_kernels.fast_path("js_pairwise", P, Q, **opts)
        _same(got, kl_fast.js_div(P[:, None, :], Q[None, :, :], **opts))
        _same(kl_fast.js_pairwise(P, Q, **opts), got)
    diag = kl_fast.kl_pairwise(P[[0, 2, 3]])
    assert (np.diag(diag) == 0).all()


def test_small_pairwise_out_of_another_dtype_and_layout_gets_the_same_values():
    rng = np.random.default_rng(16)
    P, Q = rng.random((3, 6)), rng.random((4, 6))
    want = kl_fast.kl_pairwise(P, Q)
    for out in (np.empty((3, 4)), np.empty((4, 3)).T, np.empty((3, 4), dtype=np.float32)):
        assert kl_fast.kl_pairwise(P, Q, out=out) is out
        _same(out, want.astype(out.dtype))
    with pytest.raises(TypeError, match="cannot write a float64 result into out of dtype int64"):
        kl_fast.kl_pairwise(P, Q, out=np.empty((3, 4), dtype=np.int64))


def _product_cases():
    """(label, P, Q, options) above the pair-by-pair size, m k n up to 2**22."""
    rng = np.random.default_rng(17)
    P, Q = rng.random((40, 12)), rng.random((30, 12))
    sparse_p, sparse_q = P * (rng.random(P.shape) < 0.6), Q * (rng.random(Q.shape) < 0.7)
    near = P[:30] * (1 + 1e-9 * rng.random((30, 12)))
    yield "dense", P, Q, {}
    yield "zeros in P and Q", sparse_p, sparse_q, {}
    yield "a zero row of P", np.vstack([P, np.zeros(12)]), Q, {}
    yield "a zero column of Q", sparse_p, np.where(np.arange(12) == 3, 0.0, Q), {}
    yield "near-duplicate rows", P, near, {}
    yield "P with itself", P, None, {}
    yield "base 2", sparse_p, sparse_q, {"base": 2.0}
    yield "base 1.5", P, Q, {"base": 1.5}
    yield "float32", P.astype(np.float32), sparse_q.astype(np.float32), {}
    yield "float32 with itself", sparse_p.astype(np.float32), None, {"base": 10}
    yield "integers", rng.integers(0, 5, (40, 12)), rng.integers(1, 5, (30, 12)), {}
    yield "Fortran order and strided", np.asfortranarray(P), rng.random((30, 24))[:, ::2], {}
    yield "large values", P * 1e300, Q * 1e-300, {}
    yield "a p of 1e-300 without base", np.where(P > 0.9, 1e-300, P), Q, {}
    yield "check=False, two threads", P, Q, {"check": False, "num_threads": 2}
    yield "m k n = 2**22", rng.random((64, 1024)), rng.random((64, 1024)), {}
    yield "m k = 2**20", rng.random((1024, 1)), rng.random((1024, 1)), {}


@pytest.mark.parametrize("label,P,Q,opts", list(_product_cases()), ids=lambda v: str(v)[:30])
def test_compiled_product_form_gives_the_python_layers_bits(label, P, Q, opts):
    got = _div_kernels.fast_path("kl_pairwise", P, Q, **opts)
    assert got is not None, label
    _same(got, _pairwise.kl_pairwise_python(P, Q, **opts))
    _same(kl_fast.kl_pairwise(P, Q, **opts), got)
    Qv = P if Q is None else Q
    pairs = kl_fast.kl_div(np.asarray(P, np.float64)[:, None], np.asarray(Qv, np.float64)[None],
                           **opts).astype(got.dtype)
    assert np.array_equal(np.isinf(got), np.isinf(pairs))
    np.testing.assert_allclose(got, pairs, rtol=1e-10 if got.dtype == np.float64 else 2e-6,
                               atol=1e-14)
    if Q is None:
        assert (np.diag(got) == 0).all()


def test_compiled_product_form_writes_out():
    rng = np.random.default_rng(18)
    P, Q = rng.random((40, 12)), rng.random((30, 12))
    want = kl_fast.kl_pairwise(P, Q)
    for out in (np.empty((40, 30)), np.empty((30, 40)).T, np.empty((40, 30), dtype=np.float32)):
        assert _div_kernels.fast_path("kl_pairwise", P, Q, out=out) is out
        _same(out, want.astype(out.dtype))
    with pytest.raises(TypeError, match="cannot write a float64 result into out of dtype int64"):
        kl_fast.kl_pairwise(P, Q, out=np.empty((40, 30), dtype=np.int64))
    with pytest.raises(ValueError, match=r"out has shape \(30, 40\)"):
        kl_fast.kl_pairwise(P, Q, out=np.empty((30, 40)))


def test_what_the_compiled_product_form_leaves_to_the_python_layer():
    rng = np.random.default_rng(19)
    P, Q = rng.random((40, 12)), rng.random((30, 12))
    tiny, huge, bad = P.copy(), P.copy(), Q.copy()
    tiny[3, 4] = 1e-300
    huge[5] *= 1e306
    bad[7, 2] = np.nan
    cases = [(tiny, Q, {"base": 1.5}), (huge, Q, {}), (P, bad, {"check": False}),
             (P, Q, {"normalize": True}), (rng.random((65, 1024)), rng.random((64, 1024)), {}),
             (rng.random((1025, 1)), rng.random((1024, 1)), {})]
    for A, B, opts in cases:
        assert _div_kernels.fast_path("kl_pairwise", A, B, **opts) is None
        _same(kl_fast.kl_pairwise(A, B, **opts), _pairwise.kl_pairwise_python(A, B, **opts))
    with pytest.raises(ValueError, match=r"kl_pairwise: Q contains NaN at index \[7, 2\]"):
        kl_fast.kl_pairwise(P, bad)
    # broadcast (stride 0) inputs whose m k (n + 16) overflows 64 bits (to 0 for
    # the first), or whose m k is beyond the compiled product form
    for shape in ((2**22, 2**20 - 16), (2**29, 2**30), (2**20, 5)):
        huge_p = np.broadcast_to(np.full(1, 0.5), shape)
        assert _div_kernels.fast_path("kl_pairwise", huge_p, huge_p) is None
        assert _div_kernels.fast_path("js_pairwise", huge_p, huge_p) is None
    neg = P.copy()
    neg[9, 1] = -0.5
    with pytest.raises(ValueError, match=r"kl_pairwise: P contains a negative value \(-0\.5\) at index \[9, 1\]"):
        kl_fast.kl_pairwise(neg, Q)
    for value, word in ((-0.5, r"a negative value \(-0\.5\)"),
                        (np.inf, r"an infinite value \(inf\)")):
        bad_q = Q.copy()
        bad_q[11, 6] = value
        assert _div_kernels.fast_path("kl_pairwise", P, bad_q, check=False) is None
        with pytest.raises(ValueError, match=rf"kl_pairwise: Q contains {word} at index \[11, 6\]"):
            kl_fast.kl_pairwise(P, bad_q)


def test_column_maxima_are_numpys_with_non_positive_columns_at_one():
    rng = np.random.default_rng(20)
    Q = rng.random((7, 9)) - 0.3
    Q[:, 2] = 0.0
    Q[:, 3] = -1.0
    Q[4, 5] = np.nan
    Q[1, 6] = np.inf
    Q[0, 7] = -0.0
    for A in (Q, Q[:1], np.zeros((0, 4)), np.zeros((3, 0))):
        want = A.max(axis=0) if A.shape[0] else np.zeros(A.shape[1])
        want[~(want > 0)] = 1.0
        _same(_div_kernels.column_maxima(np.ascontiguousarray(A)), want)


@pytest.mark.parametrize("func", [kl_fast.kl_div, kl_fast.js_div, kl_fast.kl_div_log])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(300, 13), (5, 16), (40, 1), (2, 70), (33, 40)])
def test_columns_of_c_order_matrices_give_the_bits_of_contiguous_rows(func, dtype, shape):
    # axis=0 of a C-order matrix: float32 columns gathered 16 at a time (the tiled path)
    rng = np.random.default_rng(sum(shape))
    P = rng.dirichlet(np.ones(shape[0]), shape[1]).T.astype(dtype)
    Q = rng.dirichlet(np.ones(shape[0]), shape[1]).T.astype(dtype)
    P, Q = np.ascontiguousarray(P), np.ascontiguousarray(Q)
    if func is kl_fast.kl_div_log:
        P, Q = np.log(P), np.log(Q)
    rows_p, rows_q = np.ascontiguousarray(P.T), np.ascontiguousarray(Q.T)
    q_col = np.ascontiguousarray(Q[:, :1])
    for nt in (1, 2):
        for opts in ({}, {"normalize": True}, {"base": 2.0}):
            got = func(P, Q, axis=0, num_threads=nt, **opts)
            np.testing.assert_array_equal(got, func(rows_p, rows_q, **opts))
            got = func(P, q_col, axis=0, num_threads=nt, **opts)
            np.testing.assert_array_equal(got, func(rows_p, rows_q[0], **opts))
            assert got.dtype == dtype


def test_columns_with_a_bad_value_report_its_index():
    P = np.full((50, 20), 1 / 50)
    P[37, 11] = -1.0
    with pytest.raises(ValueError, match=r"p contains a negative value \(-1.0\) at index \[37, 11\]"):
        kl_fast.kl_div(P, np.full((50, 20), 1 / 50), axis=0)


def test_memory_mapped_inputs_take_the_compiled_entries(tmp_path):
    # small kl_pairwise is computed pair by pair (each entry kl_div's); a memmap
    # of the same data must give the same bits, not the matrix-product form
    rng = np.random.default_rng(3)
    P, Q = rng.dirichlet(np.ones(40), 6), rng.dirichlet(np.ones(40), 5)
    np.save(tmp_path / "P.npy", P)
    np.save(tmp_path / "Q.npy", Q)
    Pm, Qm = np.load(tmp_path / "P.npy", mmap_mode="r"), np.load(tmp_path / "Q.npy", mmap_mode="r")
    assert type(Pm) is np.memmap
    np.testing.assert_array_equal(kl_fast.kl_pairwise(Pm, Qm), kl_fast.kl_pairwise(P, Q))
    np.testing.assert_array_equal(kl_fast.kl_pairwise(Pm, Qm),
                                  kl_fast.kl_div(P[:, None], Q[None]))
    np.testing.assert_array_equal(kl_fast.js_pairwise(Pm, Qm), kl_fast.js_pairwise(P, Q))
    np.testing.assert_array_equal(kl_fast.kl_div(Pm, Qm[0]), kl_fast.kl_div(P, Q[0]))
