"""Plain-NumPy twins of kl_fast's kernels, written the obvious way.

These are the baseline that tests compare against and benchmarks time against.
They follow the same semantics as the compiled functions (p == 0 counts 0,
p > 0 with q == 0 gives +inf) but favour clarity over speed and memory.
"""
from __future__ import annotations

import numpy as np

__all__ = ["kl_div"]


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
