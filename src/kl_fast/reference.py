"""Plain-NumPy twins of kl_fast's kernels, written the obvious way.

These are the baseline that tests compare against and benchmarks time against.
They follow the same semantics as the compiled functions (p == 0 counts 0,
p > 0 with q == 0 gives +inf) but favour clarity over speed and memory.
"""
from __future__ import annotations

import numpy as np

__all__ = ["kl_div", "js_div", "kl_div_log", "kl_pairwise", "js_pairwise"]


def _as_float(a, name, func):
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{func}: {name} must hold real numbers, got dtype {a.dtype}")
    return a


def _check_values(a, name, func):
    bad = ~np.isfinite(a) | (a < 0)
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{func}: {name} contains a bad value {a[idx]!r} at index {list(idx)}")


def kl_div(p, q, *, axis=-1, keepdims=False, base=None, normalize=False, dx=None, check=True):
    """KL(p || q) as in the tutorial: ``np.sum(np.where(p != 0, p * np.log(p / q), 0))``.

    Extended with kl_fast's arguments: ``axis``, ``keepdims``, ``base``,
    ``normalize`` (divide by the sums along ``axis`` first) and ``dx`` (multiply
    by the grid spacing).  ``check=False`` runs the bare formula.
    """
    func = "reference.kl_div"
    p = _as_float(p, "p", func)
    q = _as_float(q, "q", func)
    dtype = np.float32 if (p.dtype == np.float32 and q.dtype == np.float32) else np.float64
    p = p.astype(dtype, copy=False)
    q = q.astype(dtype, copy=False)
    if normalize and dx is not None:
        raise ValueError(f"{func}: normalize and dx are exclusive")
    if check:
        _check_values(p, "p", func)
        _check_values(q, "q", func)
    if np.ndim(p) == 0 and np.ndim(q) == 0:
        axis = None
    with np.errstate(all="ignore"):
        if normalize:
            psum = np.sum(p, axis=axis, keepdims=True)
            qsum = np.sum(q, axis=axis, keepdims=True)
            if np.any(psum == 0) or np.any(qsum == 0):
                raise ValueError(f"{func}: normalize=True with a zero sum")
            p = p / psum
            q = q / qsum
        result = np.sum(np.where(p != 0, p * np.log(p / q), 0), axis=axis, keepdims=keepdims)
    if base is not None:
        result = result / np.log(dtype(base))
    if dx is not None:
        result = result * dtype(dx)
    return result


# ---- Jensen-Shannon, log-space inputs and all-pairs matrices ----------------------

def _prepare_pair(p, q, names, func, check, check_values=None):
    p = _as_float(p, names[0], func)
    q = _as_float(q, names[1], func)
    dtype = np.float32 if (p.dtype == np.float32 and q.dtype == np.float32) else np.float64
    p = p.astype(dtype, copy=False)
    q = q.astype(dtype, copy=False)
    if check:
        (check_values or _check_values)(p, names[0], func)
        (check_values or _check_values)(q, names[1], func)
    return p, q, dtype


def _masked_kl_terms(p, m):
    """The tutorial's term: p * log(p / m) where p != 0, else 0."""
    return np.where(p != 0, p * np.log(p / m), 0)


def js_div(p, q, *, axis=-1, keepdims=False, base=None, normalize=False, check=True):
    """Jensen-Shannon divergence as the textbook writes it: m = (p + q) / 2 and
    ``0.5 * KL(p || m) + 0.5 * KL(q || m)`` with the tutorial's masked KL.

    ``normalize`` divides p and q by their sums along ``axis`` first.
    """
    func = "reference.js_div"
    p, q, dtype = _prepare_pair(p, q, ("p", "q"), func, check)
    if np.ndim(p) == 0 and np.ndim(q) == 0:
        axis = None
    with np.errstate(all="ignore"):
        if normalize:
            psum = np.sum(p, axis=axis, keepdims=True)
            qsum = np.sum(q, axis=axis, keepdims=True)
            if np.any(psum == 0) or np.any(qsum == 0):
                raise ValueError(f"{func}: normalize=True with a zero sum")
            p = p / psum
            q = q / qsum
        m = (p + q) / 2
        result = 0.5 * (np.sum(_masked_kl_terms(p, m), axis=axis, keepdims=keepdims)
                        + np.sum(_masked_kl_terms(q, m), axis=axis, keepdims=keepdims))
    if base is not None:
        result = result / np.log(dtype(base))
    return result


def _check_log_values(a, name, func):
    bad = np.isnan(a) | (a == np.inf)
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{func}: {name} contains a bad value {a[idx]!r} at index {list(idx)}")


def _log_normalize(x, axis, func, name):
    """x minus its log-sum-exp along axis."""
    mx = np.max(x, axis=axis, keepdims=True)
    if np.any(mx == -np.inf):
        raise ValueError(f"{func}: normalize=True but {name} is -inf everywhere in a reduction")
    return x - (mx + np.log(np.sum(np.exp(x - mx), axis=axis, keepdims=True)))


def kl_div_log(log_p, log_q, *, axis=-1, keepdims=False, base=None, normalize=False,
               check=True):
    """KL from log-probabilities: sum of ``exp(log_p) * (log_p - log_q)``.

    The term is 0 where log_p == -inf and +inf where log_q == -inf < log_p.
    ``normalize`` subtracts each input's log-sum-exp along ``axis`` first.
    """
    func = "reference.kl_div_log"
    lp, lq, dtype = _prepare_pair(log_p, log_q, ("log_p", "log_q"), func, check,
                                  check_values=_check_log_values)
    if np.ndim(lp) == 0 and np.ndim(lq) == 0:
        axis = None
    with np.errstate(all="ignore"):
        if normalize:
            lp = _log_normalize(lp, axis, func, "log_p")
            lq = _log_normalize(lq, axis, func, "log_q")
        terms = np.where(lp == -np.inf, 0,
                         np.where(lq == -np.inf, np.inf, np.exp(lp) * (lp - lq)))
        result = np.sum(terms, axis=axis, keepdims=keepdims)
    if base is not None:
        result = result / np.log(dtype(base))
    return result


def _pairwise_blocks(P, Q, func, block_rows, pair_fn):
    P = _as_float(P, "P", func)
    Q = P if Q is None else _as_float(Q, "Q", func)
    if P.ndim != 2 or Q.ndim != 2 or P.shape[1] != Q.shape[1]:
        raise ValueError(f"{func}: P and Q must be 2-D with rows of the same length")
    if block_rows is None:
        # about 2**22 elements per (rows, k, n) temporary
        block_rows = max(1, (1 << 22) // max(1, Q.shape[0] * Q.shape[1]))
    dtype = np.float32 if (P.dtype == np.float32 and Q.dtype == np.float32) else np.float64
    out = np.empty((P.shape[0], Q.shape[0]), dtype=dtype)
    for i0 in range(0, P.shape[0], block_rows):
        out[i0:i0 + block_rows] = pair_fn(P[i0:i0 + block_rows, None, :], Q[None, :, :])
    return out


def kl_pairwise(P, Q=None, *, base=None, normalize=False, block_rows=None, check=True):
    """All-pairs KL the NumPy way: a block of rows of P broadcast against all of Q,
    ``kl_div(P[i0:i1, None, :], Q[None, :, :])``, block after block.

    Memory per block is block_rows * k * n elements (default: about 2**22).
    """
    return _pairwise_blocks(
        P, Q, "reference.kl_pairwise", block_rows,
        lambda p, q: kl_div(p, q, base=base, normalize=normalize, check=check))


def js_pairwise(P, Q=None, *, base=None, normalize=False, block_rows=None, check=True):
    """All-pairs Jensen-Shannon the NumPy way (row blocks of P broadcast against Q)."""
    return _pairwise_blocks(
        P, Q, "reference.js_pairwise", block_rows,
        lambda p, q: js_div(p, q, base=base, normalize=normalize, check=check))
