"""Results are bit-identical for every thread count, also beyond the two cores a
small machine has: the CPU cap is raised here, so calls really split their rows,
long rows and Gaussian passes three to six ways (threads then share the cores)."""
import numpy as np
import pytest

import kl_fast
from kl_fast import _kernels, _validation

pytestmark = pytest.mark.skipif(not _kernels.openmp_enabled(), reason="built without OpenMP")

COUNTS = (3, 4, 6)


@pytest.fixture(autouse=True)
def six_cpus(monkeypatch):
    monkeypatch.setattr(_validation, "_CPU_COUNT", 6)
    _kernels.configure_threads(_validation.default_threads, 6)
    assert _kernels.threads(6, 100, 1e7, _validation._PARALLEL_MIN_ELEMENTS) == 6
    yield
    _kernels.configure_threads(_validation.default_threads, _validation._usable_cpus())


def _bits(value):
    if isinstance(value, tuple):
        return tuple(_bits(v) for v in value)
    a = np.asarray(value)
    return a.dtype.str, a.shape, a.tobytes()


def _same_for_every_count(call):
    one = _bits(call(1))
    for nt in COUNTS:
        assert _bits(call(nt)) == one, nt


def _distributions(rng, shape, dtype=np.float64, zeros=0.1):
    a = rng.random(shape) * (rng.random(shape) > zeros)
    return (a / a.sum(axis=-1, keepdims=True)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(300_001,), (1500, 1000), (60_000, 10), (7, 40_000)])
def test_kl_and_js_rows(dtype, shape):
    rng = np.random.default_rng(30)
    P, Q = _distributions(rng, shape, dtype), _distributions(rng, shape, dtype, zeros=0.0)
    for func in (kl_fast.kl_div, kl_fast.js_div):
        _same_for_every_count(lambda nt: func(P, Q, num_threads=nt))
        _same_for_every_count(lambda nt: func(P, Q, normalize=True, base=2, num_threads=nt))


def test_columns_and_log_space():
    rng = np.random.default_rng(31)
    P, Q = _distributions(rng, (1000, 400)), _distributions(rng, (1000, 400), zeros=0.0)
    _same_for_every_count(lambda nt: kl_fast.kl_div(P.T, Q.T, axis=0, num_threads=nt))
    with np.errstate(divide="ignore"):
        lp, lq = np.log(P), np.log(Q)   # -inf where p is 0
    _same_for_every_count(lambda nt: kl_fast.kl_div_log(lp, lq, num_threads=nt))
    _same_for_every_count(lambda nt: kl_fast.kl_div_log(lp[0] - 3, lq[0], normalize=True,
                                                        num_threads=nt))


def test_all_pairs():
    rng = np.random.default_rng(32)
    P, Q = _distributions(rng, (300, 200)), _distributions(rng, (250, 200))
    for func in (kl_fast.kl_pairwise, kl_fast.js_pairwise):
        _same_for_every_count(lambda nt: func(P, Q, num_threads=nt))
    _same_for_every_count(lambda nt: kl_fast.kl_topk(P, Q, 5, num_threads=nt))


def test_gaussian_passes_and_fits():
    rng = np.random.default_rng(33)
    x = np.linspace(-8.0, 8.0, 60_001)
    p = np.exp(-0.5 * ((x - 0.7) / 1.9) ** 2) * (1.0 + 0.2 * rng.random(x.size))
    rows = p * (1.0 + 0.1 * rng.random((3, x.size)))
    _same_for_every_count(lambda nt: kl_fast.gaussian_kl_grad(p, x, 0.2, 1.3, num_threads=nt))
    _same_for_every_count(lambda nt: kl_fast.gaussian_kl(rows, x, [0.1, 0.2, 0.3], 1.5,
                                                         num_threads=nt))
    for opts in ({"method": "newton"}, {"method": "gd", "epochs": 20}):
        _same_for_every_count(lambda nt: _fit_bits(kl_fast.fit_gaussian(p, x, num_threads=nt,
                                                                        **opts)))
    target = kl_fast.GaussianTarget(p, x)
    _same_for_every_count(lambda nt: target.kl_hess(0.2, 1.3, num_threads=nt))


def _fit_bits(fit):
    return fit.mu, fit.sigma, fit.kl, fit.nit
