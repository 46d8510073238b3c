"""Per-call overhead: every option on short inputs, many short rows, small pairwise.

The baseline here is the NumPy one-liner a user would write instead,
``np.sum(np.where(p != 0, p * np.log(p / q), 0), axis=-1)`` (normalising first
when the case normalises), not ``kl_fast.reference`` with its input checks.
"""
from __future__ import annotations

import numpy as np

from kl_fast.bench.cases_kl import numba_kl, numba_kl_rows
from kl_fast.bench.runner import Case

BASELINE = "numpy one-liner"


def _kl_numpy(p, q, axis=-1):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sum(np.where(p != 0, p * np.log(p / q), 0), axis=axis)


def _probabilities(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    a = rng.random(shape) + 0.01
    return (a / a.sum(axis=-1, keepdims=True)).astype(dtype)


def _with_peers(impls, p, q, axis=-1):
    """Add SciPy's rel_entr and scipy.stats.entropy, and a numba loop, when installed."""
    try:
        from scipy.special import rel_entr
        from scipy.stats import entropy
    except ImportError:
        pass
    else:
        impls["scipy rel_entr().sum()"] = lambda: rel_entr(p, q).sum(axis=axis)
        impls["scipy.stats.entropy"] = lambda: entropy(p, q, axis=axis)
    nb = numba_kl() if p.ndim == 1 else numba_kl_rows()
    if nb is not None and axis in (-1, p.ndim - 1):
        impls["numba loop"] = lambda: nb(p, q)
    return impls


def _option(n, dtype, **options):
    """kl_div of two length-n rows with one option set, against the one-liner."""
    def setup():
        import kl_fast

        p = _probabilities(n, dtype, n)
        q = _probabilities(n, dtype, n + 1)
        impls = {BASELINE: lambda: _kl_numpy(p, q)}
        if options.get("normalize"):
            pc, qc = p * 3.0, q * 5.0
            impls[BASELINE] = lambda: _kl_numpy(pc / pc.sum(), qc / qc.sum())
            impls["kl_fast"] = lambda: kl_fast.kl_div(pc, qc, **options)
        elif "out" in options:
            out = np.empty((), dtype=dtype)
            impls["kl_fast"] = lambda: kl_fast.kl_div(p, q, out=out)
        else:
            impls["kl_fast"] = lambda: kl_fast.kl_div(p, q, **options)
        if not options:
            _with_peers(impls, p, q)
        return impls
    return setup


def _rows(m, n, dtype, axis=-1):
    def setup():
        import kl_fast

        P = _probabilities((m, n), dtype, m)
        Q = _probabilities((m, n), dtype, m + 1)
        if axis == 0:
            P, Q = np.ascontiguousarray(P.T), np.ascontiguousarray(Q.T)
        impls = {BASELINE: lambda: _kl_numpy(P, Q, axis=axis)}
        impls["kl_fast"] = lambda: kl_fast.kl_div(P, Q, axis=axis)
        return _with_peers(impls, P, Q, axis=axis)
    return setup


def _js(n):
    def setup():
        import kl_fast

        p = _probabilities(n, np.float64, 3)
        q = _probabilities(n, np.float64, 4)

        def js_numpy():
            m = 0.5 * (p + q)
            return 0.5 * _kl_numpy(p, m) + 0.5 * _kl_numpy(q, m)

        return {BASELINE: js_numpy, "kl_fast": lambda: kl_fast.js_div(p, q)}
    return setup


def _kl_log(n):
    def setup():
        import kl_fast

        lp = np.log(_probabilities(n, np.float64, 5))
        lq = np.log(_probabilities(n, np.float64, 6))
        return {BASELINE: lambda: np.sum(np.exp(lp) * (lp - lq), axis=-1),
                "kl_fast": lambda: kl_fast.kl_div_log(lp, lq)}
    return setup


def _pairwise(m, k, n):
    def setup():
        import kl_fast

        P = _probabilities((m, n), np.float64, 7)
        Q = _probabilities((k, n), np.float64, 8)
        return {BASELINE: lambda: _kl_numpy(P[:, None, :], Q[None, :, :]),
                "kl_fast": lambda: kl_fast.kl_pairwise(P, Q)}
    return setup


def _threads1(n, dtype):
    def setup():
        import kl_fast

        p = _probabilities(n, dtype, 9)
        q = _probabilities(n, dtype, 10)
        return {BASELINE: lambda: _kl_numpy(p, q),
                "kl_fast": lambda: kl_fast.kl_div(p, q, num_threads=1)}
    return setup


def cases(quick: bool):
    f64 = np.float64
    out = [Case("overhead kl_div n=10", _option(10, f64), baseline=BASELINE)]
    for label, options in (("num_threads=1", {"num_threads": 1}), ("axis=0", {"axis": 0}),
                           ("keepdims", {"keepdims": True}), ("base=2", {"base": 2}),
                           ("dx=0.1", {"dx": 0.1}), ("out=", {"out": None}),
                           ("check=False", {"check": False}),
                           ("normalize=True", {"normalize": True})):
        out.append(Case(f"overhead kl_div n=10 {label}", _option(10, f64, **options), baseline=BASELINE))
    out.append(Case("overhead kl_div float32 n=10", _option(10, np.float32), baseline=BASELINE))
    out.append(Case("overhead kl_div rows 100 x 10", _rows(100, 10, f64), baseline=BASELINE))
    out.append(Case("overhead kl_div rows 10 x 100 axis=0", _rows(100, 10, f64, axis=0),
                    baseline=BASELINE))
    big = 10_000 if quick else 100_000
    out.append(Case(f"overhead kl_div rows {big:,} x 10", _rows(big, 10, f64), baseline=BASELINE))
    out.append(Case("overhead js_div n=10", _js(10), baseline=BASELINE))
    out.append(Case("overhead kl_div_log n=10", _kl_log(10), baseline=BASELINE))
    out.append(Case("overhead kl_pairwise 4x10 vs 5x10", _pairwise(4, 5, 10), baseline=BASELINE))
    out.append(Case("overhead kl_div float32 n=20,000 num_threads=1", _threads1(20_000, np.float32),
                    baseline=BASELINE))
    return out
