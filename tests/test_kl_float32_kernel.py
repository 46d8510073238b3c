"""The vectorised float32 KL kernel: its log, its block checks, and that every
element it cannot handle reaches the exact careful path, on every kernel path."""
import numpy as np
import pytest

import kl_fast
from kl_fast import _config, _kernels

PATHS = _kernels.available_isas()
F32 = np.finfo(np.float32)
BLOCK = 1024  # elements per block of the float32 kernel


def exact_kl(p, q):
    """Long-double terms summed in long double (p == 0 terms 0, p > 0 = q terms +inf)."""
    p = np.asarray(p, dtype=np.longdouble)
    q = np.asarray(q, dtype=np.longdouble)
    with np.errstate(all="ignore"):
        t = np.where(p > 0, p * (np.log(p) - np.log(q)), 0)
        t = np.where((p > 0) & (q == 0), np.inf, t)
    return np.sum(t)


def ulp_error(got, x):
    ref = np.log(x.astype(np.longdouble))
    spacing = np.spacing(np.abs(ref.astype(np.float32))).astype(np.longdouble)
    return np.abs(got.astype(np.longdouble) - ref) / spacing


def assert_close_f32(got, p, q):
    """float32 result against the long-double value: each term carries a
    rounding of p/q (an absolute error near eps32 * p) and of its own."""
    exact = exact_kl(p, q)
    tol = 1e-6 * abs(exact) + 4 * F32.eps * np.sum(np.abs(p.astype(np.float64)))
    assert abs(np.longdouble(got) - exact) <= tol, (got, exact)


# ---- the kernel's log -------------------------------------------------------------

def test_log_every_float_near_one_and_the_reduction_boundary(path):
    """All floats in [0.69, 0.73] (around sqrt(2)/2, where the reduction
    switches binade) and in [0.98, 1.02] (cancellation)."""
    lo, hi = np.array([0.69, 0.73, 0.98, 1.02], np.float32).view(np.uint32).reshape(2, 2).T
    bits = np.concatenate([np.arange(lo[0], hi[0], dtype=np.uint32),
                           np.arange(lo[1], hi[1], dtype=np.uint32)])
    x = bits.view(np.float32)
    got = _kernels.math_map("log_normal", x, path)
    assert np.max(ulp_error(got, x)) <= 1.0


def test_log_every_binade_at_its_edges(path):
    """In every binade, the mantissas next to 1, sqrt(2)/2 and sqrt(2)."""
    exps = np.arange(1, 255, dtype=np.uint32) << 23
    mants = np.array([0, 1, 2, 0x3504F3 - 1, 0x3504F3, 0x3504F3 + 1, 0x7FFFFE, 0x7FFFFF], np.uint32)
    x = (exps[:, None] | mants[None, :]).ravel().view(np.float32)
    got = _kernels.math_map("log_normal", x, path)
    assert np.max(ulp_error(got, x)) <= 1.0
    assert got[x == 1][0] == 0.0


def test_log_random_normals(path, rng):
    bits = rng.integers(0x00800000, 0x7F800000, size=300_000, dtype=np.uint32)
    x = np.concatenate([bits.view(np.float32), rng.uniform(0.5, 2, 100_000).astype(np.float32)])
    got = _kernels.math_map("log_normal", x, path)
    assert np.max(ulp_error(got, x)) <= 1.0


def test_log_any_bit_pattern_is_finite(path):
    """Lanes the checks discard (zero, subnormal, negative, inf, NaN ratios)
    must still give a finite log: a p == 0 lane multiplies it by 0."""
    x = np.array([0.0, -0.0, F32.smallest_subnormal, 1e-40, -1.0, -F32.max, np.inf, -np.inf, np.nan,
                  -np.nan, F32.max], np.float32)
    bits = np.concatenate([x.view(np.uint32), np.array([0xFFFFFFFF, 0x80000001, 0x7F800001],
                                                       np.uint32)])
    got = _kernels.math_map("log_normal", bits.view(np.float32), path)
    assert np.all(np.isfinite(got))


# ---- block checks ------------------------------------------------------------------

def base_rows(n, seed):
    rng = np.random.default_rng(seed)
    p = rng.random(n).astype(np.float32)
    q = (rng.random(n) + 0.05).astype(np.float32)
    p[rng.random(n) < 0.1] = 0
    return p, q


SIZES = [1, 7, 8, 9, 15, 16, 17, 31, BLOCK - 1, BLOCK, BLOCK + 1, BLOCK + 8, 2 * BLOCK + 13]


def positions(n):
    """First element, lane 7 of the first group, the last element (in the
    last, possibly partial, group and block), and lane 7 of the second block."""
    pos = {0, min(7, n - 1), n - 1, max(n - 2, 0)}
    if n > BLOCK + 7:
        pos.add(BLOCK + 7)
    return sorted(pos)


@pytest.mark.parametrize("n", SIZES)
def test_clean_rows_stay_on_the_fast_path(path, n):
    p, q = base_rows(n, n)
    status, res = _kernels.row_status(p, q)
    assert status == "fast"
    assert_close_f32(np.float32(res[0]), p, q)


@pytest.mark.parametrize("n", SIZES)
def test_zero_p_with_zero_or_tiny_q_stays_fast_and_counts_zero(path, n):
    p, q = base_rows(n, n + 1)
    for i in positions(n):
        p[i] = 0
        q[i] = [0.0, F32.smallest_subnormal, 0.0, 1e-40][i % 4]
    p[0] = -0.0  # a negative zero is a zero
    status, res = _kernels.row_status(p, q)
    assert status == "fast"
    assert_close_f32(np.float32(res[0]), p, q)
    assert kl_fast.kl_div(p, q) == np.float32(res[0])


# (p, q) pairs the fast kernel must not compute itself, with the reason
HARD = {
    "q zero": (0.5, 0.0),                       # the term is +inf
    "ratio overflow": (1e30, 1e-30),            # p/q = inf, the term is finite
    "ratio underflow": (1e-30, 1e30),           # p/q = 0
    "subnormal ratio": (1e-20, 1e20),           # p/q = 1e-40
    "smallest subnormal ratio": (F32.smallest_subnormal, 1.0),
    "just below FLT_MIN": (float(np.nextafter(F32.tiny, np.float32(0))), 1.0),
    "subnormal p and q": (1e-40, 3e-40),        # the ratio is normal: may stay fast
    "term overflow": (3e38, 1e-3),              # p/q overflows
    "float term overflow": (3e38, 1.0),         # p log(p/q) beyond the float range
}


@pytest.mark.parametrize("n", [9, 16, BLOCK, BLOCK + 9, 2 * BLOCK + 13])
@pytest.mark.parametrize("case", sorted(HARD))
def test_hard_elements_anywhere_give_the_exact_result(path, n, case):
    pv, qv = HARD[case]
    for i in positions(n):
        p, q = base_rows(n, 7 * n + i)
        p[i], q[i] = pv, qv
        status, res = _kernels.row_status(p, q)
        if case != "subnormal p and q":
            assert status == "careful", (case, i)
        exact = exact_kl(p, q)
        with np.errstate(over="ignore"):
            want = np.float32(exact)
        got = kl_fast.kl_div(p, q)
        assert got.dtype == np.float32
        if np.isinf(want):
            assert got == want
        else:
            assert_close_f32(got, p, q)


@pytest.mark.parametrize("n", [8, 17, BLOCK + 9])
@pytest.mark.parametrize("which", ["p", "q"])
@pytest.mark.parametrize("bad", [-0.5, -F32.smallest_subnormal, np.nan, np.inf, -np.inf])
def test_bad_values_in_any_lane_are_reported(path, n, which, bad):
    for i in positions(n):
        p, q = base_rows(n, 11 * n + i)
        (p if which == "p" else q)[i] = bad
        assert _kernels.row_status(p, q)[0] == "bad"
        assert _kernels.row_status(p, q, check=False)[0] == "careful"
        with pytest.raises(ValueError, match=rf"kl_div: {which} contains .* at index \[{i}\]"):
            kl_fast.kl_div(p, q)


@pytest.mark.parametrize("n", [9, BLOCK + 9])
def test_bad_q_under_zero_p_is_reported(path, n):
    """q is checked in every lane, also where p == 0 makes the term 0."""
    for bad in (-1.0, np.inf, np.nan, -0.0):
        p, q = base_rows(n, n)
        p[n - 1] = 0
        q[n - 1] = bad
        status, _ = _kernels.row_status(p, q)
        if bad == 0:  # -0.0 is a valid zero: flagged for the careful path only
            assert status == "careful"
            assert_close_f32(kl_fast.kl_div(p, q), p, q)
        else:
            assert status == "bad"


@pytest.mark.parametrize("n", [1, 8, 9, 16, 17, BLOCK - 1, BLOCK + 9, 3 * BLOCK + 5])
def test_sums_of_p_and_q(path, n):
    """The sums the normalising path needs, strided and broadcast operands too."""
    p, q = base_rows(2 * n, n)
    for pp, qq in ((p[:n], q[:n]), (p[::2], q[::2]), (p[:n], np.broadcast_to(q[:1], (n,)))):
        status, res = _kernels.row_status(pp, qq, want_sums=True)
        assert status == "fast"
        np.testing.assert_allclose(res[1], np.sum(pp, dtype=np.float64), rtol=1e-14)
        np.testing.assert_allclose(res[2], np.sum(qq, dtype=np.float64), rtol=1e-14)
        assert_close_f32(np.float32(res[0]), pp, qq)


def test_strided_equals_contiguous(path):
    p, q = base_rows(2 * BLOCK + 13, 5)
    P = np.stack([p, p])
    Q = np.stack([q, q])
    contiguous = _kernels.row_status(p, q)
    assert _kernels.row_status(P.T.copy().T[0], Q[0]) == contiguous
    assert _kernels.row_status(np.asfortranarray(P)[1], np.asfortranarray(Q)[1]) == contiguous


def test_paths_agree_to_rounding():
    p, q = base_rows(50_001, 3)
    got = {}
    previous = _kernels.current_isa()
    try:
        for name in PATHS:
            _config.select_isa(name)
            got[name] = float(kl_fast.kl_div(p, q))
    finally:
        _config.select_isa(previous)
    exact = float(exact_kl(p, q))
    for value in got.values():
        assert value == pytest.approx(exact, rel=1e-6)


def test_result_depends_only_on_the_row(path):
    """A row's value is the same alone, in a batch, with any thread count."""
    p, q = base_rows(3 * BLOCK + 77, 9)
    P = np.stack([p[::-1], p, p[::-1]])
    Q = np.stack([q[::-1], q, q[::-1]])
    alone = kl_fast.kl_div(p, q)
    for threads in (1, 2):
        batch = kl_fast.kl_div(P, Q, num_threads=threads)
        assert batch[1] == alone
        assert batch[0] == batch[2]
