"""Exact references: the divergences of the given (rounded) inputs in
high-precision arithmetic, the truth of the accuracy bench (``bench/accuracy.py``)
and of the accuracy tests.  Needs mpmath (in the ``test`` extra).

Each function takes arrays or sequences of floats and returns mpmath numbers
computed at ``prec`` bits; ``float()`` rounds them to a double.
"""
from __future__ import annotations

from typing import Any

import mpmath
import numpy as np

PREC = 200


def _mp(a: Any) -> list[Any]:
    return [mpmath.mpf(float(v)) for v in np.ravel(a)]


def kl(p: Any, q: Any, normalize: bool = False, prec: int = PREC) -> Any:
    """sum p log(p / q) over p > 0; with normalize, of p / sum p and q / sum q."""
    with mpmath.workprec(prec):
        ps, qs = _mp(p), _mp(q)
        if normalize:
            sp, sq = mpmath.fsum(ps), mpmath.fsum(qs)
            ps, qs = [v / sp for v in ps], [v / sq for v in qs]
        return mpmath.fsum(a * mpmath.log(a / b) for a, b in zip(ps, qs) if a > 0)


def js(p: Any, q: Any, prec: int = PREC) -> Any:
    """sum over pairs of p log(p / m) / 2 + q log(q / m) / 2, m = (p + q) / 2 (a zero
    value's half counts 0)."""
    with mpmath.workprec(prec):
        terms = []
        for a, b in zip(_mp(p), _mp(q)):
            m = (a + b) / 2
            terms.append((a * mpmath.log(a / m) if a else 0) / 2
                         + (b * mpmath.log(b / m) if b else 0) / 2)
        return mpmath.fsum(terms)


def kl_log(lp: Any, lq: Any, prec: int = PREC) -> Any:
    """KL of the distributions with log-probabilities lp and lq, each normalised."""
    with mpmath.workprec(prec):
        a, b = _mp(lp), _mp(lq)
        zp = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in a))
        zq = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in b))
        return mpmath.fsum(mpmath.exp(u - zp) * ((u - zp) - (v - zq)) for u, v in zip(a, b))


def gaussian_of(ps: list[Any], xs: list[Any], mu: Any, sigma: Any, normalize: bool = False,
                grad: bool = True) -> Any:
    """KL(p || q) against the grid Gaussian q_i = exp(-(x_i - mu)^2 / (2 sigma^2)) / Z
    of mpmath numbers at the current precision (mu and sigma may be mpmath
    numbers, so that ``mpmath.diff`` can differentiate it); with grad the tuple
    (KL, dKL/dmu, dKL/dsigma)."""
    d = [v - mu for v in xs]
    a = [-(v * v) / (2 * sigma * sigma) for v in d]
    top = max(a)
    logz = top + mpmath.log(mpmath.fsum(mpmath.exp(v - top) for v in a))
    total = mpmath.fsum(ps)
    if normalize:
        ps, total = [v / total for v in ps], mpmath.mpf(1)
    value = mpmath.fsum(v * (mpmath.log(v) - (b - logz)) for v, b in zip(ps, a) if v > 0)
    if not grad:
        return value
    q = [mpmath.exp(v - logz) for v in a]
    g1 = mpmath.fsum((total * c - v) * e for v, c, e in zip(ps, q, d)) / sigma**2
    g2 = mpmath.fsum((total * c - v) * e * e for v, c, e in zip(ps, q, d)) / sigma**3
    return value, g1, g2


def gaussian(p: Any, x: Any, mu: float, sigma: float, normalize: bool = False,
             grad: bool = True, prec: int = PREC) -> Any:
    """gaussian_of the given floats at ``prec`` bits."""
    with mpmath.workprec(prec):
        return gaussian_of(_mp(p), _mp(x), mpmath.mpf(float(mu)), mpmath.mpf(float(sigma)),
                           normalize, grad)
