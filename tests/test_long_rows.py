"""kl_div of one long row shared by threads: the same bits as on one thread
(the blocks are computed in parallel and added in order by one thread), on
every kernel path, and every row the fast path cannot take still reaches the
careful path or the error that names the bad value."""
import numpy as np
import pytest

import kl_fast
from kl_fast import reference

# around the smallest shared row (8192) and the task size (4096 elements)
LENGTHS = [8191, 8192, 8193, 3 * 4096 + 1, 100_003, 1_000_000]


def same_bits(a, b):
    return np.asarray(a).tobytes() == np.asarray(b).tobytes()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_threads_give_the_one_thread_bits(path, rng, dtype):
    for n in LENGTHS:
        p = rng.random(n).astype(dtype)
        q = rng.random(n).astype(dtype)
        p[rng.random(n) < 0.1] = 0
        for options in ({}, {"normalize": True}, {"base": 2.0}, {"dx": 0.5}):
            one = kl_fast.kl_div(p, q, num_threads=1, **options)
            assert same_bits(kl_fast.kl_div(p, q, num_threads=2, **options), one), (n, options)
            assert same_bits(kl_fast.kl_div(p, q, **options), one), (n, options)
        # strided and reversed rows
        pp = np.repeat(p, 2)[::2]
        assert same_bits(kl_fast.kl_div(pp, q, num_threads=2), kl_fast.kl_div(p, q, num_threads=1))
        assert same_bits(kl_fast.kl_div(p[::-1], q[::-1], num_threads=2),
                         kl_fast.kl_div(p[::-1].copy(), q[::-1].copy(), num_threads=1))


def test_against_the_reference(rng):
    p = rng.random(300_000)
    q = rng.random(300_000)
    p /= p.sum()
    q /= q.sum()
    np.testing.assert_allclose(kl_fast.kl_div(p, q, num_threads=2), reference.kl_div(p, q),
                               rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rows_the_fast_path_cannot_take(path, rng, dtype):
    n = 200_000
    p = rng.random(n).astype(dtype)
    q = rng.random(n).astype(dtype)
    q_inf = q.copy()
    q_inf[150_001] = 0.0
    assert kl_fast.kl_div(p, q_inf, num_threads=2) == np.inf
    p_sub = p.copy()
    p_sub[77_777] = np.finfo(dtype).tiny / 8  # a subnormal: the careful path
    assert same_bits(kl_fast.kl_div(p_sub, q, num_threads=2),
                     kl_fast.kl_div(p_sub, q, num_threads=1))
    q_bad = q.copy()
    q_bad[123_456] = np.nan
    with pytest.raises(ValueError, match=r"q.*\[123456\]"):
        kl_fast.kl_div(p, q_bad, num_threads=2)
    assert np.isnan(kl_fast.kl_div(p, q_bad, num_threads=2, check=False))


# ---- js_div and kl_div_log: one long row without normalize shared by threads -----

def _pair_call(name, p, q, **options):
    if name == "js_div":
        return kl_fast.js_div(p, q, **options)
    with np.errstate(divide="ignore"):
        return kl_fast.kl_div_log(np.log(p), np.log(q), **options)


@pytest.mark.parametrize("name", ["js_div", "kl_div_log"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_js_and_log_rows_give_the_one_thread_bits(path, rng, name, dtype):
    for n in LENGTHS:
        p = rng.random(n).astype(dtype)
        q = rng.random(n).astype(dtype)
        p[rng.random(n) < 0.1] = 0
        for options in ({}, {"base": 2.0}, {"normalize": True}):
            one = _pair_call(name, p, q, num_threads=1, **options)
            assert same_bits(_pair_call(name, p, q, num_threads=2, **options), one), (n, options)
        pp = np.repeat(p, 2)[::2]
        assert same_bits(_pair_call(name, pp, q, num_threads=2),
                         _pair_call(name, p, q, num_threads=1))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_js_and_log_rows_on_every_path(path, rng, dtype):
    """Rows the narrow (float) pass or both fast passes cannot take: the same
    bits as one thread, from the double pass or the careful path."""
    n = 200_000
    p = rng.random(n).astype(dtype) + dtype(0.01)
    q = rng.random(n).astype(dtype) + dtype(0.01)
    big = p.copy()
    big[99_999] = np.finfo(dtype).max / 4          # a JS pair beyond the float terms
    tiny = p.copy()
    tiny[150_000] = np.finfo(dtype).tiny / 8       # a subnormal
    for a, b in ((big, q), (tiny, q), (p, tiny)):
        assert same_bits(kl_fast.js_div(a, b, num_threads=2), kl_fast.js_div(a, b, num_threads=1))
    lp, lq = np.log(p), np.log(q)
    wide = lp.copy()
    wide[12_345] = 95.0                            # exp beyond the float kernel's range
    huge = lp.copy()
    huge[180_000] = 800.0                          # exp overflows double: careful path
    for a in (wide, huge):
        assert same_bits(kl_fast.kl_div_log(a, lq, num_threads=2),
                         kl_fast.kl_div_log(a, lq, num_threads=1))
    lq_inf = lq.copy()
    lq_inf[7] = -np.inf                            # q == 0 under p > 0
    assert kl_fast.kl_div_log(lp, lq_inf, num_threads=2) == np.inf
    bad = lq.copy()
    bad[123_456] = np.nan
    with pytest.raises(ValueError, match=r"123456"):
        kl_fast.kl_div_log(lp, bad, num_threads=2)
    qbad = q.copy()
    qbad[123_456] = -1.0
    with pytest.raises(ValueError, match=r"q.*\[123456\]"):
        kl_fast.js_div(p, qbad, num_threads=2)


@pytest.mark.parametrize("name", ["js_div", "kl_div_log"])
def test_js_and_log_long_rows_against_the_reference(rng, name):
    p = rng.random(300_000)
    q = rng.random(300_000)
    p /= p.sum()
    q /= q.sum()
    ref = reference.js_div(p, q) if name == "js_div" else reference.kl_div(p, q)
    np.testing.assert_allclose(_pair_call(name, p, q, num_threads=2), ref, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_normalize_on_long_js_and_log_rows(path, rng, dtype):
    """With normalize the sums or normalisers are taken over the threads too:
    the same bits as one thread, and the row function's errors."""
    n = 150_000
    p = rng.random(n).astype(dtype)
    q = rng.random(n).astype(dtype)
    counts = (p * 1e6).astype(dtype)
    lp, lq = np.log(p), np.log(q)
    for a, b in ((p, q), (counts, q), (p * dtype(1e-30), q)):
        assert same_bits(kl_fast.js_div(a, b, normalize=True, num_threads=2),
                         kl_fast.js_div(a, b, normalize=True, num_threads=1))
    shifted = lp + dtype(70_000.0)     # beyond the float sums' range: double sums
    negzero = lp - lp.max()            # the largest entry is 0 (and -0 beside it)
    negzero[5] = -0.0
    for a, b in ((lp, lq), (lp * dtype(3), lq), (shifted, lq), (negzero, lq),
                 (lp, lq - dtype(1e4))):
        assert same_bits(kl_fast.kl_div_log(a, b, normalize=True, num_threads=2),
                         kl_fast.kl_div_log(a, b, normalize=True, num_threads=1))
    with pytest.raises(ValueError, match="sum"):
        kl_fast.js_div(np.zeros(n, dtype), q, normalize=True, num_threads=2)
    with pytest.raises(ValueError):
        kl_fast.kl_div_log(np.full(n, -np.inf, dtype), lq, normalize=True, num_threads=2)
    bad = lq.copy()
    bad[140_000] = np.inf
    with pytest.raises(ValueError, match="140000"):
        kl_fast.kl_div_log(lp, bad, normalize=True, num_threads=2)
    bad = q.copy()
    bad[140_000] = np.nan
    with pytest.raises(ValueError, match="140000"):
        kl_fast.js_div(p, bad, normalize=True, num_threads=2)


@pytest.mark.parametrize("name", ["js_div", "kl_div_log"])
def test_js_and_log_long_rows_in_every_layout(rng, name):
    n = 50_000
    p = rng.random(n)
    q = rng.random(n)
    one = _pair_call(name, p, q, num_threads=1)
    qq = np.repeat(q, 3)[::3]
    assert same_bits(_pair_call(name, p, qq, num_threads=2), one)           # strided q
    assert same_bits(_pair_call(name, p[::-1].copy()[::-1], q[::-1].copy()[::-1],
                                num_threads=2), one)                         # negative strides
    c = np.broadcast_to(q[:1], (n,))                                         # stride 0
    assert same_bits(_pair_call(name, p, c, num_threads=2),
                     _pair_call(name, p, np.full(n, q[0]), num_threads=1))
    for options in ({}, {"normalize": True}):
        P = np.stack([p, q])
        assert same_bits(_pair_call(name, P.T, np.flipud(P).T, axis=0, num_threads=2, **options),
                         _pair_call(name, P.T.copy(), np.flipud(P).T.copy(), axis=0,
                                    num_threads=1, **options))


@pytest.mark.parametrize("name", ["js_div", "kl_div_log"])
def test_unchecked_bad_values_stay_in_the_compiled_path(rng, name):
    """check=False with NaN: the threads give what one thread gives, without
    handing the row to the Python layer."""
    from kl_fast import _div_kernels

    p = rng.random(50_000)
    q = rng.random(50_000)
    q[30_000] = np.nan
    a, b = (p, q) if name == "js_div" else (np.log(p), np.log(q))
    two = _div_kernels.fast_path(name, a, b, check=False, num_threads=2)
    assert two is not None
    assert same_bits(two, _div_kernels.fast_path(name, a, b, check=False, num_threads=1))
    # with normalize the NaN goes to the Python layer on any thread count
    def outcome(nt):
        try:
            return np.asarray(_pair_call(name, p, q, check=False, normalize=True,
                                         num_threads=nt)).tobytes()
        except ValueError as exc:
            return str(exc)
    assert outcome(2) == outcome(1)
