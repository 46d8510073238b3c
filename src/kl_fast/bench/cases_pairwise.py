"""All-pairs KL and JS matrices, Jensen-Shannon rows and log-space KL rows.

Baselines are the NumPy twins in ``kl_fast.reference``: the all-pairs ones
broadcast a block of rows of P against all of Q (``p[:, None, :]`` vs
``Q[None]``), block after block, so they never hold an (m, k, n) array.
"""
from __future__ import annotations

import os

import numpy as np

from kl_fast.bench.runner import Case


def _rows(rng, m, n, dtype, zero_frac=0.0):
    a = rng.random((m, n))
    if zero_frac:
        a[rng.random((m, n)) < zero_frac] = 0.0
    a /= a.sum(axis=1, keepdims=True)
    return a.astype(dtype)


def _threads():
    return os.cpu_count() or 1


def _kl_pairwise(m, k, n, dtype, zero_frac):
    def setup():
        import kl_fast
        from kl_fast import reference

        rng = np.random.default_rng(m + k + n)
        P = _rows(rng, m, n, dtype)
        Q = _rows(rng, k, n, dtype, zero_frac)
        return {
            "kl_fast kl_pairwise": lambda: kl_fast.kl_pairwise(P, Q),
            "numpy reference": lambda: reference.kl_pairwise(P, Q, check=False),
        }
    return setup


MATMUL = "numpy matmul form (xlogy)"


def _matmul_forms():
    """What a user writes by hand: sum p log p per row minus P @ log(Q).T (the
    same BLAS product kl_pairwise uses; no error bound).  The first with SciPy's
    xlogy for p log p where SciPy is installed (p = 0 counts 0), else with
    NumPy's log; the second always with NumPy's log (wrong where p = 0)."""
    def with_log(P, Q):
        return (P * np.log(P)).sum(axis=1)[:, None] - P @ np.log(Q).T

    try:
        from scipy.special import xlogy
    except ImportError:
        return with_log, with_log

    def with_xlogy(P, Q):
        return xlogy(P, P).sum(axis=1)[:, None] - P @ np.log(Q).T

    return with_xlogy, with_log


def _torch_form():
    """The matmul form in torch (CPU), when torch is installed (else None)."""
    try:
        import torch
    except ImportError:
        return None

    def form(P, Q):
        return (P * P.log()).sum(dim=1)[:, None] - P @ Q.log().T

    return torch, form


def _kl_pairwise_matmul(m, k, n):
    def setup():
        import kl_fast

        rng = np.random.default_rng(m + k + n + 2)
        P = _rows(rng, m, n, np.float64) + 1e-3 / n
        Q = _rows(rng, k, n, np.float64) + 1e-3 / n
        form, form_log = _matmul_forms()
        # the default last: bench/test_bench_pairwise.py times the last kl_fast entry
        impls = {MATMUL: lambda: form(P, Q),
                 "numpy matmul form, np.log for p log p": lambda: form_log(P, Q),
                 "kl_fast kl_pairwise (1 thread)": lambda: kl_fast.kl_pairwise(P, Q, num_threads=1),
                 "kl_fast kl_pairwise": lambda: kl_fast.kl_pairwise(P, Q)}
        peer = _torch_form()
        if peer is not None:
            torch, form = peer
            Pt, Qt = torch.from_numpy(P), torch.from_numpy(Q)
            impls["torch matmul form"] = lambda: form(Pt, Qt)
        return impls
    return setup


def _kl_pairwise_within(m, n, dtype):
    def setup():
        import kl_fast
        from kl_fast import reference

        rng = np.random.default_rng(m + n + 1)
        P = _rows(rng, m, n, dtype)
        return {
            "kl_fast kl_pairwise(P)": lambda: kl_fast.kl_pairwise(P),
            "numpy reference": lambda: reference.kl_pairwise(P, check=False),
        }
    return setup


def _js_pairwise(m, k, n, dtype):
    def setup():
        import kl_fast
        from kl_fast import reference

        rng = np.random.default_rng(m + k + n + 2)
        P = _rows(rng, m, n, dtype, 0.1)
        Q = _rows(rng, k, n, dtype, 0.1)
        impls = {
            "kl_fast js_pairwise": lambda: kl_fast.js_pairwise(P, Q),
            "numpy reference": lambda: reference.js_pairwise(P, Q, check=False),
        }
        try:
            from scipy.spatial.distance import cdist

            impls["scipy cdist(jensenshannon)**2"] = lambda: cdist(P, Q, "jensenshannon") ** 2
        except ImportError:
            pass
        return impls
    return setup


def _js_rows(m, n, dtype):
    def setup():
        import kl_fast
        from kl_fast import reference

        rng = np.random.default_rng(m + n + 3)
        P = _rows(rng, m, n, dtype, 0.1)
        Q = _rows(rng, m, n, dtype, 0.1)
        impls = {
            "kl_fast (1 thread)": lambda: kl_fast.js_div(P, Q, num_threads=1),
            f"kl_fast ({_threads()} threads)": lambda: kl_fast.js_div(P, Q, num_threads=_threads()),
            "numpy reference": lambda: reference.js_div(P, Q, check=False),
        }
        try:
            from scipy.spatial.distance import jensenshannon

            def scipy_js():
                with np.errstate(invalid="ignore"):  # sqrt of a rounded negative near p == q
                    return jensenshannon(P, Q, axis=1) ** 2

            impls["scipy jensenshannon()**2"] = scipy_js
        except ImportError:
            pass
        return impls
    return setup


def _log_rows(m, n, dtype, normalize):
    def setup():
        import kl_fast
        from kl_fast import reference

        rng = np.random.default_rng(m + n + 4)
        # log-softmax outputs with a masked tenth of the vocabulary (-inf)
        logits_p = rng.normal(0.0, 2.0, (m, n))
        logits_q = rng.normal(0.0, 2.0, (m, n))
        logits_p[rng.random((m, n)) < 0.1] = -np.inf
        logits_p[:, 0] = 0.0
        lp = logits_p - np.log(np.exp(logits_p).sum(axis=1, keepdims=True))
        lq = logits_q - np.log(np.exp(logits_q).sum(axis=1, keepdims=True))
        if normalize:
            lp, lq = logits_p, logits_q
        lp, lq = lp.astype(dtype), lq.astype(dtype)
        impls = {
            "kl_fast (1 thread)": lambda: kl_fast.kl_div_log(lp, lq, normalize=normalize, num_threads=1),
            f"kl_fast ({_threads()} threads)": lambda: kl_fast.kl_div_log(
                lp, lq, normalize=normalize, num_threads=_threads()),
            "numpy reference": lambda: reference.kl_div_log(lp, lq, normalize=normalize, check=False),
        }
        if not normalize:
            try:
                from scipy.special import rel_entr

                def scipy_exp_rel_entr():
                    return rel_entr(np.exp(lp), np.exp(lq)).sum(axis=1)

                impls["scipy rel_entr(exp, exp).sum()"] = scipy_exp_rel_entr
            except ImportError:
                pass
        return impls
    return setup


def _numpy_topk(P, Q, k, block=16):
    """The tutorial formula broadcast over blocks of queries, then np.argpartition
    (unordered within the k, as argpartition leaves them)."""
    out = np.empty((P.shape[0], k), dtype=np.intp)
    for i in range(0, P.shape[0], block):
        p = P[i:i + block, None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            M = np.sum(np.where(p != 0, p * np.log(p / Q[None]), 0), axis=-1)
        out[i:i + block] = np.argpartition(M, k, axis=1)[:, :k]
    return out


def _topk(m, k_total, n, k):
    def setup():
        import kl_fast

        rng = np.random.default_rng(m + k_total + n)
        P = _rows(rng, m, n, np.float64)
        Q = _rows(rng, k_total, n, np.float64)
        threads = _threads()
        return {
            "numpy broadcast + argpartition": lambda: _numpy_topk(P, Q, k),
            "kl_fast kl_pairwise + argpartition": lambda: np.argpartition(
                kl_fast.kl_pairwise(P, Q), k, axis=1)[:, :k],
            "kl_fast kl_topk (1 thread)": lambda: kl_fast.kl_topk(P, Q, k, num_threads=1),
            f"kl_fast kl_topk ({threads} threads)": lambda: kl_fast.kl_topk(
                P, Q, k, num_threads=threads),
        }
    return setup


def cases(quick: bool):
    out = []
    if quick:
        m = k = 200
    else:
        m = k = 1_000
    n = 1_000
    out.append(Case(f"kl_pairwise float64 {m:,} x {k:,}, n={n:,}", _kl_pairwise(m, k, n, np.float64, 0.0),
                    note="matrix product through NumPy's BLAS"))
    out.append(Case(f"kl_pairwise float64 {m:,} x {k:,}, n={n:,}, Q with zeros",
                    _kl_pairwise(m, k, n, np.float64, 0.05)))
    out.append(Case(f"kl_pairwise float32 {m:,} x {k:,}, n={n:,}", _kl_pairwise(m, k, n, np.float32, 0.0)))
    out.append(Case(f"kl_pairwise(P) float64 {m:,} x {m:,}, n={n:,}", _kl_pairwise_within(m, n, np.float64)))
    sizes = ((200, 200, 100), (200, 200, 1_000)) if quick else (
        (100, 100, 10), (200, 200, 100), (1_000, 1_000, 100), (1_000, 1_000, 1_000),
        (4_000, 4_000, 256))
    for mm, kk, nn in sizes:
        out.append(Case(f"kl_pairwise float64 {mm:,} x {kk:,}, n={nn:,} against the matmul form",
                        _kl_pairwise_matmul(mm, kk, nn), baseline=MATMUL,
                        note="both through NumPy's BLAS"))
    mt, kt = (100, 1_000) if quick else (500, 5_000)
    out.append(Case(f"kl_topk k=10, {mt:,} queries x {kt:,} candidates, n=128",
                    _topk(mt, kt, 128, 10), baseline="numpy broadcast + argpartition",
                    note="exact values and order; the others only select"))
    mj = 100 if quick else 300
    out.append(Case(f"js_pairwise float64 {mj:,} x {mj:,}, n={n:,}", _js_pairwise(mj, mj, n, np.float64)))
    rows = 1_000 if quick else 10_000
    for dtype in (np.float64, np.float32):
        name = np.dtype(dtype).name
        out.append(Case(f"js_div {name} batch {rows:,} x {n:,}", _js_rows(rows, n, dtype)))
    for dtype in (np.float64, np.float32):
        name = np.dtype(dtype).name
        out.append(Case(f"kl_div_log {name} batch {rows:,} x {n:,}", _log_rows(rows, n, dtype, False)))
    out.append(Case(f"kl_div_log float32 normalize=True batch {rows:,} x {n:,}",
                    _log_rows(rows, n, np.float32, True)))
    return out
