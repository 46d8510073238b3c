"""Accuracy against mpmath (200-bit) where p and q are nearly equal, on every
kernel path, compared with the best of NumPy's and SciPy's error on the same
inputs.

Rounding r = p/q before the log costs a term p log(p/q) a relative error of
about eps / |log(p/q)|, which is large where p ~ q; the kernels add the exact
residual p - r q (an FMA, or Dekker's product) and so keep the term's relative
accuracy.
"""
import numpy as np
import pytest

import kl_fast
from kl_fast import _kernels

mpmath = pytest.importorskip("mpmath")
special = pytest.importorskip("scipy.special")

EPS64 = np.finfo(np.float64).eps
EPS32 = float(np.finfo(np.float32).eps)


def exact(p, q):
    """sum p log(p/q) over p > 0 of the given (rounded) inputs, in 200 bits."""
    with mpmath.workprec(200):
        return float(mpmath.fsum(mpmath.mpf(float(a)) * mpmath.log(mpmath.mpf(float(a))
                                                                  / mpmath.mpf(float(b)))
                                 for a, b in zip(p, q) if a > 0))


def magnitude(p, q):
    """sum |p log(p/q)|: the size of the terms that cancel in the sum."""
    with mpmath.workprec(200):
        return float(mpmath.fsum(abs(mpmath.mpf(float(a)) * mpmath.log(mpmath.mpf(float(a))
                                                                      / mpmath.mpf(float(b))))
                                 for a, b in zip(p, q) if a > 0))


def peers_error(p, q, truth):
    """The smaller absolute error of NumPy's one-liner and SciPy's rel_entr sum."""
    with np.errstate(all="ignore"):
        numpy = np.sum(np.where(p > 0, p * np.log(p / q), 0))
    scipy = special.rel_entr(p, q).sum()
    return min(abs(float(numpy) - truth), abs(float(scipy) - truth))


def test_one_near_equal_term_float64(path):
    # exact -2.99982e-13; the ratio's rounding cost 3.7e-5 of it before
    p, q = np.array([0.3]), np.array([0.3 + 3e-13])
    truth = exact(p, q)
    got = kl_fast.kl_div(p, q)
    assert abs(got - truth) <= max(peers_error(p, q, truth), 2 * EPS64 * abs(truth))


@pytest.mark.parametrize("n", [10, 1000, 100_000])
def test_many_near_equal_terms_float64(path, n):
    rng = np.random.default_rng(n)
    q = rng.dirichlet(np.ones(n))
    p = q * (1 + 1e-8 * rng.standard_normal(n))
    p /= p.sum()
    truth = exact(p, q)  # about 5e-17: the terms (1e-8 q) cancel to second order
    got = kl_fast.kl_div(p, q)
    # at least as close as the better peer, or within a few eps of the terms' size
    # (it was off by 2% of the result, SciPy by 3e-10)
    assert abs(got - truth) <= max(peers_error(p, q, truth), 4 * EPS64 * magnitude(p, q)), \
        (got, truth)


def test_near_equal_terms_on_the_careful_path(path):
    # a ratio below the normal range sends the row to the scalar careful path
    p = np.array([0.3, 1e-300])
    q = np.array([0.3 + 3e-13, 1e10])
    assert _kernels.row_status(p, q)[0] == "careful"
    truth = exact(p, q)
    assert abs(kl_fast.kl_div(p, q) - truth) <= 2 * EPS64 * magnitude(p, q)


def test_near_equal_float32_has_the_right_sign_and_size(path):
    # exact -5.996e-9; the float32 ratio's rounding gave +5.94e-9 before
    p = np.float32([0.3 + 1e-4, 0.7 - 1e-4])
    q = np.float32([0.3, 0.7])
    truth = exact(p, q)
    got = float(kl_fast.kl_div(p, q))
    assert np.sign(got) == np.sign(truth)
    # float32 terms: within an eps32 of their size (NumPy's float32 one-liner
    # gets the sign wrong; SciPy's float32 rel_entr is within 0.1 of it)
    assert abs(got - truth) <= EPS32 * magnitude(p, q), (got, truth)


@pytest.mark.parametrize("n", [8, 1000, 5000])
def test_many_near_equal_terms_float32(path, n):
    rng = np.random.default_rng(n + 1)
    q = rng.dirichlet(np.ones(n)).astype(np.float32)
    p = (q * (1 + 1e-4 * rng.standard_normal(n))).astype(np.float32)
    truth = exact(p, q)
    got = float(kl_fast.kl_div(p, q))
    numpy32 = float(np.sum(np.where(p > 0, p * np.log(p / q), 0)))
    assert abs(got - truth) <= max(abs(numpy32 - truth), 2 * EPS32 * magnitude(p, q))
    assert abs(got - truth) <= 2 * EPS32 * magnitude(p, q)


@pytest.mark.parametrize("spread", [1e-2, 3e-3])
def test_pairwise_near_duplicates_through_the_product_form(path, spread):
    # rows near one another (KL 1e-5 .. 1e-4), too many pairs for the row kernel:
    # the product form, centred on the columns' maxima, is as accurate as NumPy's
    # all-pairs one-liner (it was 2e-11 .. 5e-10 relative against NumPy's
    # 1e-13 .. 3e-12).  Per-pair sums (kl_div, SciPy's rel_entr) reach ~1e-14 at
    # O(m k n) logs; docs/accuracy.md lists both.
    rng = np.random.default_rng(int(1 / spread))
    n, m = 100, 120
    base = rng.dirichlet(np.ones(n))
    P = base * (1 + spread * rng.standard_normal((m, n)))
    Q = base * (1 + spread * rng.standard_normal((m, n)))
    P /= P.sum(axis=1, keepdims=True)
    Q /= Q.sum(axis=1, keepdims=True)
    assert m * m * (n + 16) > 2 ** 17   # past the row kernel's crossover
    got = kl_fast.kl_pairwise(P, Q)
    numpy = np.sum(P[:, None] * np.log(P[:, None] / Q[None]), axis=-1)
    ours, peer = [], []
    for i in range(0, m, 3):
        j = (7 * i + 1) % m
        truth = exact(P[i], Q[j])
        ours.append(abs(got[i, j] - truth) / truth)
        peer.append(abs(numpy[i, j] - truth) / truth)
    assert max(ours) <= 2 * max(peer), (max(ours), max(peer))
