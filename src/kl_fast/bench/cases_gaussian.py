"""Gaussian-on-a-grid cases: one value+gradient evaluation, the tutorial fit, a batch of fits.

The NumPy baselines come first in each case: OpenMP worker threads keep
spinning for a moment after a parallel region, and would otherwise slow the
single-threaded baseline timed right after a threaded row.
"""
from __future__ import annotations

import os

import numpy as np

from kl_fast.bench.runner import Case


def _tutorial():
    x = np.arange(-10, 10, 0.001)
    p = np.exp(-0.5 * (x / 2.0) ** 2) / (2.0 * np.sqrt(2 * np.pi))
    return x, p


def _rows(m, n, seed=0):
    """m noisy, shifted, scaled bell-shaped histograms on a grid of n bins."""
    rng = np.random.default_rng(seed)
    x = np.linspace(-5, 5, n)
    mu = rng.uniform(-1.5, 1.5, (m, 1))
    sigma = rng.uniform(0.4, 1.6, (m, 1))
    p = np.exp(-0.5 * ((x - mu) / sigma) ** 2) * (1 + 0.2 * rng.random((m, n)))
    return x, p / p.sum(axis=1, keepdims=True)


def _eval(dtype):
    def setup():
        import kl_fast
        from kl_fast import reference

        x, p = _tutorial()
        p = p.astype(dtype)
        return {
            "numpy reference": lambda: reference.gaussian_kl_grad(p, x, 0.3, 2.5, check=False),
            "kl_fast": lambda: kl_fast.gaussian_kl_grad(p, x, 0.3, 2.5),
        }
    return setup


def _prepared():
    def setup():
        import kl_fast
        from kl_fast import reference

        x, p = _tutorial()
        target = kl_fast.GaussianTarget(p, x, normalize=False)
        return {
            "numpy reference": lambda: reference.gaussian_kl_grad(p, x, 0.3, 2.5, check=False),
            "kl_fast GaussianTarget.kl_grad": lambda: target.kl_grad(0.3, 2.5),
            "kl_fast GaussianTarget.kl_hess": lambda: target.kl_hess(0.3, 2.5),
            "kl_fast gaussian_kl_grad (cold)": lambda: kl_fast.gaussian_kl_grad(p, x, 0.3, 2.5),
        }
    return setup


def _numpy_surface(p, x, mu, sigma, chunk=64):
    """The tutorial formula broadcast over blocks of parameter sets: memory O(chunk * n)."""
    mu_f, sigma_f = mu.ravel(), sigma.ravel()
    out = np.empty(mu_f.size)
    nz = p != 0
    for i in range(0, mu_f.size, chunk):
        m, s = mu_f[i:i + chunk, None], sigma_f[i:i + chunk, None]
        q = np.exp(-((x - m) ** 2) / (2 * s * s))
        q /= q.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[i:i + chunk] = np.sum(np.where(nz, p * np.log(p / q), 0), axis=1)
    return out.reshape(mu.shape)


def _surface(k):
    def setup():
        import kl_fast

        x, p = _tutorial()
        mu, sigma = np.meshgrid(np.linspace(-2, 2, k), np.linspace(1.0, 4.0, k))
        target = kl_fast.GaussianTarget(p, x, normalize=False)
        threads = os.cpu_count() or 1
        return {
            "numpy broadcast (blocks of 64)": lambda: _numpy_surface(p, x, mu, sigma),
            "kl_fast GaussianTarget.kl (1 thread)": lambda: target.kl(mu, sigma, num_threads=1),
            f"kl_fast GaussianTarget.kl ({threads} threads)": lambda: target.kl(
                mu, sigma, num_threads=threads),
        }
    return setup


def _tutorial_fit(case):
    """The setup of ``case``, which it also gives a note: the final KL of each fit."""
    import kl_fast
    from kl_fast import reference

    x, p = _tutorial()
    newton = kl_fast.fit_gaussian(p, x)
    gd = reference.fit_gaussian_gd(p, x, mu0=0.0, sigma0=1.0, lr=0.001, epochs=100)
    case.note = (f"final KL: newton {newton.kl:.7f} ({newton.nfev} passes), "
                 f"reference GD {float(gd['kl']):.7f}")
    return {
        "numpy reference GD, 100 epochs": lambda: reference.fit_gaussian_gd(
            p, x, mu0=0.0, sigma0=1.0, lr=0.001, epochs=100),
        "numpy reference newton": lambda: reference.fit_gaussian_newton(p, x),
        "kl_fast newton": lambda: kl_fast.fit_gaussian(p, x),
        "kl_fast gd, 100 epochs": lambda: kl_fast.fit_gaussian(
            p, x, method="gd", parametrization="variance", mu0=0.0, sigma0=1.0,
            lr=0.001, epochs=100),
    }


def _batch_fit(m, n):
    def setup():
        import kl_fast
        from kl_fast import reference

        x, P = _rows(m, n)
        threads = os.cpu_count() or 1
        return {
            "numpy reference newton": lambda: reference.fit_gaussian_newton(P, x),
            "kl_fast newton (1 thread)": lambda: kl_fast.fit_gaussian(P, x, num_threads=1),
            f"kl_fast newton ({threads} threads)": lambda: kl_fast.fit_gaussian(
                P, x, num_threads=threads),
        }
    return setup


def _random_fit(m, n):
    """Uniformly random rows on a grid of n points: about half have no finite
    optimum (their KL's infimum is an exponential tilt of the uniform q, which
    Newton follows until its check says so)."""
    def setup():
        import kl_fast
        from kl_fast import reference

        x = np.linspace(-3, 3, n)
        P = np.random.default_rng(0).random((m, n))

        def numpy_newton():
            with np.errstate(all="ignore"):   # its rows that run off divide 0 by 0
                return reference.fit_gaussian_newton(P, x)

        return {
            "numpy reference newton": numpy_newton,
            "kl_fast newton (1 thread)": lambda: kl_fast.fit_gaussian(P, x, num_threads=1),
        }
    return setup


def cases(quick: bool):
    out = []
    for dtype in (np.float64, np.float32):
        name = np.dtype(dtype).name
        out.append(Case(f"gaussian_kl_grad {name} p, tutorial grid n=20,000", _eval(dtype)))
    out.append(Case("GaussianTarget prepared evaluation, tutorial grid n=20,000", _prepared()))
    k = 50 if quick else 200
    out.append(Case(f"GaussianTarget KL surface {k}x{k} (mu, sigma), tutorial grid",
                    _surface(k), baseline="numpy broadcast (blocks of 64)"))
    fit = Case("fit_gaussian tutorial problem n=20,000", lambda: _tutorial_fit(fit),
               baseline="numpy reference GD, 100 epochs")
    out.append(fit)
    m = 1_000 if quick else 10_000
    out.append(Case(f"fit_gaussian {m:,} rows x 1,000 bins", _batch_fit(m, 1_000),
                    baseline="numpy reference newton"))
    out.append(Case(f"fit_gaussian {m:,} uniformly random rows x 10 bins", _random_fit(m, 10),
                    baseline="numpy reference newton"))
    return out


def memory_report(quick: bool) -> list[str]:
    """What a batch fit's result keeps (tracemalloc, after the call) and its peak,
    and the time with the default history=True against history=False."""
    import time
    import tracemalloc

    import kl_fast

    m = 10_000 if quick else 100_000
    rng = np.random.default_rng(7)
    x = np.linspace(-3.0, 3.0, 10)
    P = rng.random((m, 10)) + np.exp(-x**2)
    kl_fast.fit_gaussian(P, x)  # warm-up
    tracemalloc.start()
    fit = kl_fast.fit_gaussian(P, x)
    kept, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    times = {}
    for history in (True, False):
        runs = []
        for _ in range(3 if quick else 7):
            t0 = time.perf_counter()
            kl_fast.fit_gaussian(P, x, history=history)
            runs.append(time.perf_counter() - t0)
        times[history] = float(np.median(runs))
    del fit
    return [f"| fit_gaussian {m:,} x 10 (inputs {P.nbytes / 1e6:,.0f} MB) | "
            f"{peak / 1e6:,.1f} MB peak | {kept / 1e6:,.1f} MB kept by the result; "
            f"{times[True] * 1e3:.1f} ms (history=True, the default) against "
            f"{times[False] * 1e3:.1f} ms (history=False) |"]
