"""kl_div cases: the tutorial grid, tiny and large rows, and a batch of rows."""
from __future__ import annotations

import os

import numpy as np

from kl_fast.bench.runner import Case


def _normal_pdf(x, mu, sigma):
    return np.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))


def numba_kl():
    """A numba peer, when numba is installed (else None)."""
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(cache=False, fastmath=False)
    def kl_numba(p, q):
        s = 0.0
        for i in range(p.shape[0]):
            if p[i] != 0:
                s += p[i] * np.log(p[i] / q[i])
        return s

    return kl_numba


def numba_kl_rows():
    """A numba row loop for 2-D batches, when numba is installed (else None)."""
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(cache=False, fastmath=False)
    def kl_numba_rows(P, Q):
        out = np.empty(P.shape[0])
        for r in range(P.shape[0]):
            s = 0.0
            for i in range(P.shape[1]):
                if P[r, i] != 0:
                    s += P[r, i] * np.log(P[r, i] / Q[r, i])
            out[r] = s
        return out

    return kl_numba_rows


def memory_report(quick: bool) -> list[str]:
    """Peak memory kl_div allocates beyond its output, traced with tracemalloc."""
    import tracemalloc

    import kl_fast

    lines = []
    n = 1_000_000 if quick else 10_000_000
    rng = np.random.default_rng(7)
    p = rng.random(n)
    q = rng.random(n)
    for label, args in ((f"1-D float64, n={n:,}", (p, q)),
                        (f"batch float64, {n // 1000:,} x 1,000", (p.reshape(-1, 1000), q.reshape(-1, 1000)))):
        kl_fast.kl_div(*args)  # warm-up
        tracemalloc.start()
        out = kl_fast.kl_div(*args)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out_bytes = np.asarray(out).nbytes
        lines.append(f"| kl_div {label} (inputs {2 * p.nbytes / 1e6:,.0f} MB) | "
                     f"{peak / 1e3:,.1f} kB peak | {max(peak - out_bytes, 0) / 1e3:,.1f} kB beyond the output |")
    return lines


def _peers(p, q, axis=-1):
    import kl_fast
    from kl_fast import reference

    impls = {"numpy reference": lambda: reference.kl_div(p, q, axis=axis, check=False)}
    try:
        from scipy.special import rel_entr

        impls["scipy rel_entr().sum()"] = lambda: rel_entr(p, q).sum(axis=axis)
    except ImportError:
        pass
    nb = numba_kl() if p.ndim == 1 else numba_kl_rows()
    if nb is not None:
        impls["numba loop"] = lambda: nb(p, q)
    return impls, kl_fast


def _single(n, dtype, tutorial=False):
    def setup():
        if tutorial:
            x = np.arange(-10, 10, 0.001)
            p = _normal_pdf(x, 0.0, 2.0).astype(dtype)
            q = _normal_pdf(x, 2.0, 2.0).astype(dtype)
        else:
            rng = np.random.default_rng(n)
            p = rng.random(n).astype(dtype)
            q = rng.random(n).astype(dtype)
        impls, kl_fast = _peers(p, q)
        impls["kl_fast"] = lambda: kl_fast.kl_div(p, q)
        return impls
    return setup


def _batch(m, n, dtype):
    def setup():
        rng = np.random.default_rng(m + n)
        P = rng.random((m, n)).astype(dtype)
        Q = rng.random((m, n)).astype(dtype)
        impls, kl_fast = _peers(P, Q)
        threads = os.cpu_count() or 1
        # Baselines first: OpenMP's idle workers spin for a while after a
        # parallel region and would slow whatever single-threaded code follows.
        impls["kl_fast (1 thread)"] = lambda: kl_fast.kl_div(P, Q, num_threads=1)
        impls[f"kl_fast ({threads} threads)"] = lambda: kl_fast.kl_div(P, Q, num_threads=threads)
        return impls
    return setup


def cases(quick: bool):
    out = []
    for dtype in (np.float64, np.float32):
        name = np.dtype(dtype).name
        out.append(Case(f"kl_div {name} tutorial grid n=20,000", _single(20_000, dtype, tutorial=True)))
        out.append(Case(f"kl_div {name} n=10", _single(10, dtype)))
        big = 100_000 if quick else 1_000_000
        out.append(Case(f"kl_div {name} n={big:,}", _single(big, dtype)))
        m, n = (1_000, 1_000) if quick else (10_000, 1_000)
        out.append(Case(f"kl_div {name} batch {m:,} x {n:,}", _batch(m, n, dtype)))
    return out
