"""Accuracy against mpmath (200-bit) where p and q are nearly equal, on every
kernel path, compared with the best of NumPy's and SciPy's error on the same
inputs.

Rounding r = p/q before the log costs a term p log(p/q) a relative error of
about eps / |log(p/q)|, which is large where p ~ q; the kernels add the exact
residual p - r q (an FMA, or Dekker's product) and so keep the term's relative
accuracy.  The Gaussian on a grid near its optimum is the same case for the
divergence from the grid Gaussian q(mu, sigma).
"""
import functools
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


@functools.lru_cache(maxsize=None)
def mixed_sign_draws(draws, n, seed):
    """Long rows of mixed-sign terms (p uniform, log(p/q) normal with sd 1/2:
    the terms cancel to about 1% of their size) with their exact sum, the unit
    eps * sum |p log(p/q)|, and NumPy's and SciPy's errors in that unit."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(draws):
        p = rng.random(n)
        q = p * np.exp(0.5 * rng.standard_normal(n))
        truth_value = float(truth.kl(p, q, prec=80))
        terms = p * np.log(p / q)
        unit = EPS64 * float(np.abs(terms).sum())
        peers = {"NumPy": np.sum(terms), "SciPy": special.rel_entr(p, q).sum()}
        out.append((p, q, truth_value, unit,
                    {name: abs(float(v) - truth_value) / unit for name, v in peers.items()}))
    return out


def test_long_rows_of_mixed_sign_terms_sum_as_well_as_the_peers(path):
    # At the rounding floor a single draw favours one summation or another by
    # luck (one draw of 10^5 once read 2.1e-15 against NumPy's 5e-17, the next
    # ones the other way round), so the errors, in units of eps times the terms'
    # size, are compared over 40 draws: their root mean square (measured 0.0137 on
    # the AVX paths, 0.0128 on the baseline, against NumPy's 0.0173 and SciPy's
    # 0.0133) and their worst (0.033 against 0.048 and 0.028).  A plain running sum
    # fails both (rms 0.17, worst 0.62).
    draws = mixed_sign_draws(draws=40, n=10_000, seed=1)
    errors = {"kl_fast": np.array([abs(kl_fast.kl_div(p, q) - exact_value) / unit
                                   for p, q, exact_value, unit, _ in draws])}
    for name in ("NumPy", "SciPy"):
        errors[name] = np.array([peers[name] for *_, peers in draws])
    rms = {name: float(np.sqrt(np.mean(e * e))) for name, e in errors.items()}
    best_rms = min(rms["NumPy"], rms["SciPy"])
    assert rms["kl_fast"] <= 1.25 * best_rms, rms
    worst = {name: float(e.max()) for name, e in errors.items()}
    # the worst of 40 is noisier than the rms
    assert worst["kl_fast"] <= 1.5 * min(worst["NumPy"], worst["SciPy"]), worst


def test_near_equal_float32_over_many_draws(path):
    # At the rounding floor, where a single draw favours either (9.4e-8 against SciPy's
    # 7.6e-8 once), the errors over 90 draws in units of eps32 times the size of the
    # terms.  The float32 kernel rounds each term to float after a float log (about
    # 1 ulp), SciPy's float32 rel_entr after a double one (0.5 ulp): root mean square
    # 0.205 (AVX paths) and 0.237 (baseline) against SciPy's 0.174, worst 0.81 and
    # 0.96 against 0.48.  Bounded in those units (about one rounding per term) and
    # against SciPy's; a float32 sum without the exact residual is 10^3 - 10^4 off.
    rng = np.random.default_rng(7)
    ours, scipy = [], []
    for n in (2, 100, 1000) * 30:
        q = rng.dirichlet(np.ones(n)).astype(np.float32)
        p = (q * (1 + 1e-4 * rng.standard_normal(n))).astype(np.float32)
        truth_value = float(truth.kl(p, q, prec=80))
        p64, q64 = p.astype(np.float64), q.astype(np.float64)
        unit = EPS32 * float(np.abs(p64 * np.log(p64 / q64)).sum())
        ours.append(abs(float(kl_fast.kl_div(p, q)) - truth_value) / unit)
        scipy.append(abs(float(special.rel_entr(p, q).sum()) - truth_value) / unit)
    ours, scipy = np.array(ours), np.array(scipy)
    rms = np.sqrt(np.mean(ours ** 2))
    assert rms <= 0.35 and ours.max() <= 1.5, (rms, ours.max())
    assert rms <= 2 * np.sqrt(np.mean(scipy ** 2)) and ours.max() <= 3 * scipy.max()


@pytest.mark.parametrize("centres, spread", [(1, 1e-2), (1, 3e-3), (3, 1e-2), (5, 3e-3)])
def test_pairwise_near_duplicates_through_the_product_form(path, centres, spread):
    # rows near one or several centres (KL 1e-5 .. 1e-4 within a cluster), too many
    # pairs for the row kernel: the product form leaves such entries at eps sqrt(n)
    # times their error scale (2e-11 .. 5e-10 relative once, then 6.8e-13 against
    # NumPy's 2.5e-12; with several clusters 1.5e-12 .. 3.1e-11 against NumPy's
    # 2e-13 .. 2.9e-12), so entries below 2**-12 of that scale are recomputed by the
    # row kernel: per-pair sums, SciPy's level.  Pairs of different clusters keep
    # the product form (their divergence is not small).
    rng = np.random.default_rng(int(1 / spread) + centres)
    n, m = 100, 120
    base = rng.dirichlet(np.ones(n), centres)
    P = base[rng.integers(0, centres, m)] * (1 + spread * rng.standard_normal((m, n)))
    Q = base[rng.integers(0, centres, m)] * (1 + spread * rng.standard_normal((m, n)))
    P /= P.sum(axis=1, keepdims=True)
    Q /= Q.sum(axis=1, keepdims=True)
    assert m * m * (n + 16) > 2 ** 17   # past the row kernel's crossover
    got = kl_fast.kl_pairwise(P, Q)
    numpy = np.sum(P[:, None] * np.log(P[:, None] / Q[None]), axis=-1)
    ours, peer = [], []
    small = np.argsort(got, axis=None)[:60]
    for i, j in [divmod(int(f), m) for f in small] + [(i, (7 * i + 1) % m) for i in range(0, m, 3)]:
        truth = exact(P[i], Q[j])
        ours.append(abs(got[i, j] - truth) / truth)
        scipy_err = abs(float(special.rel_entr(P[i], Q[j]).sum()) - truth) / truth
        peer.append(min(abs(numpy[i, j] - truth) / truth, scipy_err))
    assert got.flat[small[-1]] < 1e-3          # the smallest entries are near-duplicates
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
            # near the optimum: the careful value (docs/accuracy.md: 7.3e-11 at worst,
            # on every kernel path), far below the peers' 1e-3
            assert err <= 1.5e-10, (normalize, err, got, truth)


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
    # (4,097 points: three chunks of blocks, so two threads share them)
    p, x, mu, sigma = near_optimum(4097, 1e-12, "mu", np.float64)
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


def exact_kl_log_normalized(lp, lq):
    """KL of softmax(lp) from softmax(lq) (the given, rounded inputs; -inf
    entries of lp carry no weight), in 160 bits, each input less its largest
    entry before the log-sum-exp so that no digit goes to the offset; and the
    size of its terms, sum p (|log p| + |log q|)."""
    with mpmath.workprec(160):
        a = [mpmath.mpf(float(v)) for v in lp]
        b = [mpmath.mpf(float(v)) for v in lq]
        ma = max(v for v in a if v != -mpmath.inf)
        mb = max(v for v in b if v != -mpmath.inf)
        a = [v - ma for v in a]
        b = [v - mb for v in b]
        la = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in a))
        lb = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in b))
        pairs = [(x - la, y - lb) for x, y in zip(a, b) if x != -mpmath.inf]
        kl = mpmath.fsum(mpmath.exp(x) * (x - y) for x, y in pairs)
        size = mpmath.fsum(mpmath.exp(x) * (abs(x) + abs(y)) for x, y in pairs)
        return kl, float(size)


def offset_rows(rng, offset, n, rows=1):
    """log_p, log_q of rows of n standard-normal logs (log_q a perturbed copy,
    shifted by a normal amount) plus offset; beyond 1e14 the logs are offset
    plus a few of its ulps (a normal spread would round away)."""
    if offset > 1e14:
        ulp = np.spacing(offset)
        lp = offset + rng.integers(-8, 9, (rows, n)) * ulp
        return lp, offset + rng.integers(-8, 9, (rows, n)) * ulp
    lp = 2.0 * rng.standard_normal((rows, n)) + offset
    return lp, lp + 0.1 * rng.standard_normal((rows, n)) + rng.standard_normal((rows, 1))


@pytest.mark.parametrize("offset", [0.0, -40.0, 1e4, 1e8, 1e12, 1e15, 1e300])
def test_kl_div_log_normalize_does_not_depend_on_the_offset(path, offset):
    # The log-sum-exp lp0 = max + log(sum) is rounded by up to half an ulp of the
    # maximum, and a = lp - lp0 carried that into every term: 1.4e-11 of the
    # result at an offset of 1e4, 2.4e-8 at 1e8, 0.7 at 1e15 (and NumPy's
    # reference alike).  Rows of 3 and 10 (across rows), 100 and 2,000 (the row
    # kernel), within 4 eps of the terms' size (measured 3), and as close as
    # SciPy's log_softmax or within 2 eps of it.
    special = pytest.importorskip("scipy.special")
    rng = np.random.default_rng(int(abs(offset)) % 1000 + 5)
    for n in (3, 10, 100, 2000):
        lp, lq = offset_rows(rng, offset, n, rows=2)
        got = kl_fast.kl_div_log(lp, lq, normalize=True)
        for r in range(2):
            truth_value, size = exact_kl_log_normalized(lp[r], lq[r])
            unit = EPS64 * (1.0 + size)
            a, b = special.log_softmax(lp[r]), special.log_softmax(lq[r])
            peer = abs(mpmath.mpf(float(np.sum(np.exp(a) * (a - b)))) - truth_value) / unit
            for value in (got[r], kl_fast.kl_div_log(lp[r], lq[r], normalize=True)):
                err = abs(mpmath.mpf(float(value)) - truth_value) / unit
                assert err <= 4 and err <= peer + 2, (n, r, float(err), float(peer))


@pytest.mark.parametrize("offset", [1e8, 1e15])
def test_kl_div_log_normalize_of_a_long_row_does_not_depend_on_the_offset(offset):
    # a row the threads share takes its normalisers over the threads: the same
    # correction, the same bits on one thread and two
    rng = np.random.default_rng(9)
    lp, lq = offset_rows(rng, offset, 9000)
    lp, lq = lp[0], lq[0]
    one = kl_fast.kl_div_log(lp, lq, normalize=True, num_threads=1)
    assert kl_fast.kl_div_log(lp, lq, normalize=True, num_threads=2) == one
    truth_value, size = exact_kl_log_normalized(lp, lq)
    assert abs(mpmath.mpf(float(one)) - truth_value) <= 4 * EPS64 * (1.0 + size)


def test_kl_div_log_normalize_of_huge_logs():
    # half of p's mass on each of two logs of 3e38: the rounded log-sum-exp (3e38,
    # with log 2 below its ulp) counted each weight as 1 and doubled the result
    lp = np.array([-np.inf, 3e38, -np.inf, 3e38])
    lq = np.array([3e38, 3e38 - 1e25, 3e38, 3e38])
    truth_value, _ = exact_kl_log_normalized(lp, lq)
    assert abs(kl_fast.kl_div_log(lp, lq, normalize=True) - truth_value) <= 2 * EPS64 * truth_value
    assert abs(reference.kl_div_log(lp, lq, normalize=True) - truth_value) <= 2 * EPS64 * truth_value
    # a sum beyond the double range that base brings back (redone in scaled form
    # with the normalisers in two parts): 1e308 / ln 2
    lp, lq = np.array([1e308, 1e308]), np.array([1e308, -1e308])
    truth_value, _ = exact_kl_log_normalized(lp, lq)
    got = kl_fast.kl_div_log(lp, lq, normalize=True, base=2)
    assert abs(got - truth_value / mpmath.log(2)) <= 4 * EPS64 * abs(truth_value / mpmath.log(2))


@pytest.mark.parametrize("offset", [0.0, 1e4, 1e8, 3e38])
def test_kl_div_log_normalize_float32_does_not_depend_on_the_offset(path, offset):
    # float32 logs near 1e8 are 8 apart, near 3e38 2e31 apart: a spread of a few
    # of their ulps; within an eps32 of the terms' size (measured 0.41)
    rng = np.random.default_rng(3)
    for n in (3, 10, 100, 3000):
        if offset > 1e4:
            ulp = float(np.spacing(np.float32(offset)))
            lp = (offset + rng.integers(-8, 9, n) * ulp).astype(np.float32)
            lq = (offset + rng.integers(-8, 9, n) * ulp).astype(np.float32)
        else:
            lp = (2.0 * rng.standard_normal(n) + offset).astype(np.float32)
            lq = (lp + 0.1 * rng.standard_normal(n) + rng.standard_normal()).astype(np.float32)
        truth_value, size = exact_kl_log_normalized(lp, lq)
        got = float(kl_fast.kl_div_log(lp, lq, normalize=True))
        assert abs(mpmath.mpf(got) - truth_value) <= EPS32 * (1.0 + size), (n, got, truth_value)


@pytest.mark.parametrize("offset", [0.0, 1e8, 1e15])
def test_reference_kl_div_log_normalize_does_not_depend_on_the_offset(offset):
    # the NumPy baseline subtracts the maximum first, as SciPy's log_softmax
    rng = np.random.default_rng(4)
    lp, lq = offset_rows(rng, offset, 100)
    truth_value, size = exact_kl_log_normalized(lp[0], lq[0])
    got = reference.kl_div_log(lp[0], lq[0], normalize=True)
    assert abs(mpmath.mpf(float(got)) - truth_value) <= 8 * EPS64 * (1.0 + size)


def test_kl_div_log_normalize_correction_has_the_same_bits_on_every_path(path):
    # The correction's products are fused on some targets: a long row over two
    # threads took it from another module's copy (unfused) and differed in the
    # last bit from the row on one thread; every path now calls the core's one copy.
    c = 2.0 ** 32 + 2.0 ** 29   # lo_p = 4.75e-7: the series branch
    lp = np.full(8192, -np.inf)
    lq = np.full(8192, -np.inf)
    lp[:2] = c
    lq[:2] = [0.0, -888.792953821642]
    short = kl_fast.kl_div_log(lp[:2], lq[:2], normalize=True)
    for threads in (1, 2):
        assert kl_fast.kl_div_log(lp, lq, normalize=True, num_threads=threads) == short
    assert kl_fast.kl_div_log(np.stack([lp[:2]] * 3), np.stack([lq[:2]] * 3),
                              normalize=True).tolist() == [short] * 3


@pytest.mark.parametrize("n", [2, 4, 9000])
def test_kl_div_log_normalize_near_the_largest_double(path, n):
    # Near DBL_MAX the rounded normaliser drops log(n): the weights of the row's
    # terms sum to n, and their raw sum overflowed although the divergence
    # (about 2e308 / n) is in range; such rows are now redone in scaled form.
    lp = np.full(n, 1e308)
    lq = np.full(n, 1e308)
    lq[0] = -1e308
    truth_value, _ = exact_kl_log_normalized(lp, lq)
    for threads in (1, 2):
        got = kl_fast.kl_div_log(lp, lq, normalize=True, num_threads=threads)
        assert abs(got - truth_value) <= 4 * EPS64 * truth_value, (got, float(truth_value))
    rows = kl_fast.kl_div_log(np.stack([lp, lp]), np.stack([lq, lq]), normalize=True)
    assert rows[0] == rows[1] == kl_fast.kl_div_log(lp, lq, normalize=True)
