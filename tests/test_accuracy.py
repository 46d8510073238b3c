"""Accuracy against mpmath (200-bit) where p and q are nearly equal, on every
kernel path, compared with the best of NumPy's and SciPy's error on the same
inputs.

Rounding r = p/q before the log costs a term p log(p/q) a relative error of
about eps / |log(p/q)|, which is large where p ~ q; the kernels add the exact
residual p - r q (an FMA, or Dekker's product) and so keep the term's relative
accuracy.  The Gaussian on a grid near its optimum is the same case for the
divergence from the grid Gaussian q(mu, sigma).
"""
import math

import numpy as np
import pytest

import kl_fast
from kl_fast import _kernels, reference

mpmath = pytest.importorskip("mpmath")
truth = pytest.importorskip("kl_fast.bench.truth")
special = pytest.importorskip("scipy.special")

EPS64 = np.finfo(np.float64).eps
EPS32 = float(np.finfo(np.float32).eps)


def exact(p, q):
    """sum p log(p/q) over p > 0 of the given (rounded) inputs, in 200 bits."""
    return float(truth.kl(p, q))


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


# ---- the grid Gaussian near its optimum --------------------------------------------
#
# p is itself a normalised grid Gaussian q(MU0, SIGMA0), so the grid optimum is
# (MU0, SIGMA0) with KL 0 (to rounding: p is rounded), and a step of mu by
# sigma sqrt(2 K), or of sigma by sigma sqrt(K / 2), puts the KL near K.  There
# H + quad + P log W cancels to K from terms of size ~10, so its rounding
# (eps times those terms, ~2e-15) was 2e-6 .. 2e-2 of K; NumPy's per-term
# p log(p/q) loses about eps P through the rounding of q's normaliser.

MU0, SIGMA0 = 0.3, 2.0


def gaussian_exact(p, x, mu, sigma, normalize=False):
    """(KL, dKL/dmu, dKL/dsigma) of the given (rounded) inputs in 200 bits."""
    return tuple(float(v) for v in truth.gaussian(p, x, mu, sigma, normalize))


def near_optimum(n, target, along, dtype):
    x = np.linspace(-10, 10, n)
    p = reference.gaussian_q(x, MU0, SIGMA0).astype(dtype)
    if along == "mu":
        return p, x, MU0 + SIGMA0 * math.sqrt(2 * target), SIGMA0
    return p, x, MU0, SIGMA0 + SIGMA0 * math.sqrt(target / 2)


def kl_peers_error(p, x, mu, sigma, normalize, truth):
    """The smaller relative error of the NumPy reference and of SciPy's rel_entr
    against the same explicit q."""
    numpy = reference.gaussian_kl(p, x, mu, sigma, normalize=normalize)
    p64 = np.asarray(p, dtype=np.float64)
    q = reference.gaussian_q(x, mu, sigma)
    scipy = special.rel_entr(p64 / p64.sum() if normalize else p64, q).sum()
    return min(abs(float(numpy) - truth), abs(float(scipy) - truth)) / truth


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [301, 1001])   # the point-by-point exp, and the factorised one
@pytest.mark.parametrize("along", ["mu", "sigma"])
@pytest.mark.parametrize("target", [1e-9, 1e-11, 1e-13])
def test_gaussian_kl_near_its_optimum(path, target, along, n, dtype):
    p, x, mu, sigma = near_optimum(n, target, along, dtype)
    for normalize in (False, True):
        truth = gaussian_exact(p, x, mu, sigma, normalize)[0]
        if normalize or dtype == np.float64:
            # (float32 p sums to 1 +- 1e-8: unnormalised, its KL is about sum p - 1)
            assert target / 4 < truth < 4 * target
        got = kl_fast.gaussian_kl(p, x, mu, sigma, normalize=normalize)
        err = abs(float(got) - truth) / truth
        # at least as close as the better peer, or within 4 ulps of the result
        assert err <= max(kl_peers_error(p, x, mu, sigma, normalize, truth), 4 * EPS64), \
            (normalize, err, got, truth)
        if normalize or dtype == np.float64:
            # near the optimum: the careful value (docs/accuracy.md: 7.3e-11 at worst),
            # far below the peers' 1e-3
            assert err <= 1e-9, (normalize, err, got, truth)


@pytest.mark.parametrize("target", [1e-9, 1e-11, 1e-13])
@pytest.mark.parametrize("along", ["mu", "sigma"])
def test_gaussian_gradient_near_its_optimum(path, target, along):
    # d_mu and d_sigma are sum (P q - p) d^k / sigma^(k+1), k = 1, 2: differences
    # that vanish at the optimum.  Unlike the KL's, the relative rounding eta_i of
    # each q_i (exp's, and eps a_i from its argument a_i = d_i^2 / (2 sigma^2))
    # enters them at first order, as sum P q_i eta_i d_i^k: no evaluation of q in
    # double does better than about eps sqrt(sum (p (1 + a) d^k)^2) / sigma^(k+1).
    # Against that floor (times 4) or the NumPy reference's error, the larger.
    p, x, mu, sigma = near_optimum(1001, target, along, np.float64)
    truth = gaussian_exact(p, x, mu, sigma)
    got = kl_fast.gaussian_kl_grad(p, x, mu, sigma)
    ref = reference.gaussian_kl_grad(p, x, mu, sigma)
    d = x - mu
    a = d * d / (2 * sigma**2)
    for k in (1, 2):
        floor = 4 * EPS64 * math.sqrt(np.sum((p * (1 + a) * np.abs(d) ** k) ** 2)) / sigma ** (k + 1)
        err = abs(float(got[k]) - truth[k])
        peer = abs(float(ref[k]) - truth[k])
        assert err <= max(peer, floor), (k, err, peer, floor)
    assert got[0] == kl_fast.gaussian_kl(p, x, mu, sigma)


def test_gaussian_near_its_optimum_is_the_same_everywhere(path):
    # the careful redo takes the same blocks in the same order as the fast pass
    p, x, mu, sigma = near_optimum(1001, 1e-12, "mu", np.float64)
    one = kl_fast.gaussian_kl_grad(p, x, mu, sigma, num_threads=1)
    assert kl_fast.gaussian_kl_grad(p, x, mu, sigma, num_threads=2) == one
    strided = np.zeros((2, 2 * p.size))
    strided[1, ::2] = p
    assert kl_fast.gaussian_kl_grad(strided[1, ::2], x, mu, sigma) == one
    batch = kl_fast.gaussian_kl_grad(np.stack([p, p]), x, [mu, mu], sigma)
    assert all(np.all(b == o) for b, o in zip(batch, one))
    target = kl_fast.GaussianTarget(p, x, normalize=False)
    kl, grad, _ = target.kl_hess(mu, sigma)
    assert (kl, grad[0], grad[1]) == one


def test_fit_gaussian_reports_its_optimum_accurately(path):
    p, x, _, _ = near_optimum(1001, 1e-9, "mu", np.float64)
    fit = kl_fast.fit_gaussian(p, x, normalize=True)
    assert fit.converged
    truth = gaussian_exact(p, x, fit.mu, fit.sigma, normalize=True)[0]
    # the optimum is KL ~ 1e-17 here; the moment form gave ~1e-15 of rounding
    assert abs(fit.kl - truth) <= max(
        kl_peers_error(p, x, fit.mu, fit.sigma, True, truth) * truth, 4 * EPS64 * truth)
