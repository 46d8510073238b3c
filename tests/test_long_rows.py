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
