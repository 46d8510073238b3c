"""Plain-NumPy twins of kl_fast's kernels, written the obvious way.

These are the baseline that tests compare against and benchmarks time against.
They follow the compiled functions' semantics on valid inputs of moderate range
(p == 0 counts 0, p > 0 with q == 0 gives +inf; negative, NaN and infinite
values, masked arrays, a bad ``base`` or ``dx`` are errors) but favour clarity
over speed and memory: they are the tutorial's formulas, so where the compiled
functions rescale (sums or ratios beyond the double range, a subnormal q) they
overflow or lose the result, and a q of -0.0 under p > 0 gives NaN where the
compiled functions give +inf.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence, Union, cast

import numpy as np
import numpy.typing as npt

from ._validation import as_real_array, describe, flag, real_scalar

__all__ = ["kl_div", "js_div", "kl_div_log", "kl_pairwise", "js_pairwise", "gaussian_q",
           "gaussian_kl", "gaussian_kl_grad", "fit_gaussian_gd", "fit_gaussian_newton"]

# The results are what NumPy's reductions give: a NumPy scalar or an array.
_Result = Any
_CheckValues = Callable[[np.ndarray, str, str], None]
_Axis = Union[int, tuple[int, ...], None]


def _check_values(a: np.ndarray, name: str, func: str) -> None:
    bad = ~np.isfinite(a) | (a < 0)
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{func}: {name} contains a bad value {a[idx]!r} at index {list(idx)}")


def kl_div(p: npt.ArrayLike, q: npt.ArrayLike, *, axis: int | tuple[int, ...] | None = -1,
           keepdims: bool = False, base: float | None = None, normalize: bool = False,
           dx: float | None = None, check: bool = True) -> _Result:
    """KL(p || q) as in the tutorial: ``np.sum(np.where(p != 0, p * np.log(p / q), 0))``.

    Extended with kl_fast's arguments: ``axis``, ``keepdims``, ``base``,
    ``normalize`` (divide by the sums along ``axis`` first) and ``dx`` (multiply
    by the grid spacing).  ``check=False`` runs the bare formula.
    """
    func = "reference.kl_div"
    keepdims, normalize = flag(keepdims, "keepdims", func), flag(normalize, "normalize", func)
    check = flag(check, "check", func)
    _option(base, "base", func, not_one=True)
    _option(dx, "dx", func)
    if normalize and dx is not None:
        raise ValueError(f"{func}: normalize and dx are exclusive")
    pa, qa, dtype, axis = _prepare_pair(p, q, ("p", "q"), func, check, axis)
    with np.errstate(all="ignore"):
        if normalize:
            psum = np.sum(pa, axis=axis, keepdims=True)
            qsum = np.sum(qa, axis=axis, keepdims=True)
            if np.any(psum == 0) or np.any(qsum == 0):
                raise ValueError(f"{func}: normalize=True with a zero sum")
            pa = pa / psum
            qa = qa / qsum
        result = np.sum(np.where(pa != 0, pa * np.log(pa / qa), 0), axis=axis,
                        keepdims=keepdims)
    if base is not None:
        result = result / np.log(dtype(base))
    if dx is not None:
        result = result * dtype(dx)
    return result


# ---- Jensen-Shannon, log-space inputs and all-pairs matrices ----------------------

def _pair_dtype(a: np.ndarray, b: np.ndarray) -> type[np.floating[Any]]:
    """float32 where both are float32 (in either byte order), else float64."""
    f32 = [x.dtype.kind == "f" and x.dtype.itemsize == 4 for x in (a, b)]
    return np.float32 if all(f32) else np.float64


def _prepare_pair(p: npt.ArrayLike, q: npt.ArrayLike, names: Sequence[str], func: str, check: bool,
                  axis: _Axis, check_values: _CheckValues | None = None
                  ) -> tuple[np.ndarray, np.ndarray, type[np.floating[Any]], _Axis]:
    """p and q converted, checked and broadcast together (axis refers to the
    broadcast shape, for the sums of normalize too), their dtype, and the axis
    (for two scalars None, or AxisError, by kl_fast's rule)."""
    p = as_real_array(p, names[0], func)
    q = as_real_array(q, names[1], func)
    dtype = _pair_dtype(p, q)
    p = p.astype(dtype, copy=False)
    q = q.astype(dtype, copy=False)
    if check:
        (check_values or _check_values)(p, names[0], func)
        (check_values or _check_values)(q, names[1], func)
    if p.ndim == 0 and q.ndim == 0:
        if axis not in (None, -1, (), (-1,)):
            raise np.exceptions.AxisError(f"{func}: axis {axis!r} is out of bounds for two "
                                          f"scalars (arrays of dimension 0)")
        axis = None
    p, q = np.broadcast_arrays(p, q)
    return p, q, dtype, axis


def _option(value: Any, name: str, func: str, *, not_one: bool = False) -> Any:
    """base or dx (None passes): a real number, positive and finite (base not 1)."""
    if value is None:
        return None
    v = real_scalar(value)
    if v is None:
        raise TypeError(f"{func}: {name} must be a real number, got {value!r}")
    if not (0.0 < v < np.inf) or (not_one and v == 1.0):
        raise ValueError(f"{func}: {name} must be positive and finite"
                         f"{' and not 1' if not_one else ''}, got {describe(value)}")
    return value


def _masked_kl_terms(p: np.ndarray, m: np.ndarray) -> np.ndarray:
    """The tutorial's term: p * log(p / m) where p != 0, else 0."""
    return np.where(p != 0, p * np.log(p / m), 0)


def js_div(p: npt.ArrayLike, q: npt.ArrayLike, *, axis: int | tuple[int, ...] | None = -1,
           keepdims: bool = False, base: float | None = None, normalize: bool = False,
           check: bool = True) -> _Result:
    """Jensen-Shannon divergence as the textbook writes it: m = (p + q) / 2 and
    ``0.5 * KL(p || m) + 0.5 * KL(q || m)`` with the tutorial's masked KL.

    ``normalize`` divides p and q by their sums along ``axis`` first.
    """
    func = "reference.js_div"
    keepdims, normalize = flag(keepdims, "keepdims", func), flag(normalize, "normalize", func)
    check = flag(check, "check", func)
    _option(base, "base", func, not_one=True)
    pa, qa, dtype, axis = _prepare_pair(p, q, ("p", "q"), func, check, axis)
    with np.errstate(all="ignore"):
        if normalize:
            psum = np.sum(pa, axis=axis, keepdims=True)
            qsum = np.sum(qa, axis=axis, keepdims=True)
            if np.any(psum == 0) or np.any(qsum == 0):
                raise ValueError(f"{func}: normalize=True with a zero sum")
            pa = pa / psum
            qa = qa / qsum
        m = (pa + qa) / 2
        result = dtype(0.5) * (np.sum(_masked_kl_terms(pa, m), axis=axis, keepdims=keepdims)
                        + np.sum(_masked_kl_terms(qa, m), axis=axis, keepdims=keepdims))
    if base is not None:
        result = result / np.log(dtype(base))
    return result


def _check_log_values(a: np.ndarray, name: str, func: str) -> None:
    bad = np.isnan(a) | (a == np.inf)
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{func}: {name} contains a bad value {a[idx]!r} at index {list(idx)}")


def _log_normalize(x: np.ndarray, axis: int | tuple[int, ...] | None, func: str,
                   name: str) -> np.ndarray:
    """x minus its log-sum-exp along axis, as (x - max) - log(sum(exp(x - max)))
    (SciPy's log_softmax: the rounding of the log-sum-exp itself, up to half an
    ulp of the maximum, would shift every term alike)."""
    # (an empty reduction holds no probability either)
    mx = np.max(x, axis=axis, keepdims=True, initial=-np.inf)
    if np.any(mx == -np.inf):
        raise ValueError(f"{func}: normalize=True but {name} is -inf everywhere in a reduction")
    centred = x - mx
    return cast(np.ndarray, centred - np.log(np.sum(np.exp(centred), axis=axis, keepdims=True)))


def kl_div_log(log_p: npt.ArrayLike, log_q: npt.ArrayLike, *,
               axis: int | tuple[int, ...] | None = -1, keepdims: bool = False,
               base: float | None = None, normalize: bool = False, check: bool = True) -> _Result:
    """KL from log-probabilities: sum of ``exp(log_p) * (log_p - log_q)``.

    The term is 0 where log_p == -inf and +inf where log_q == -inf < log_p.
    ``normalize`` subtracts each input's log-sum-exp along ``axis`` first.
    """
    func = "reference.kl_div_log"
    keepdims, normalize = flag(keepdims, "keepdims", func), flag(normalize, "normalize", func)
    check = flag(check, "check", func)
    _option(base, "base", func, not_one=True)
    lp, lq, dtype, axis = _prepare_pair(log_p, log_q, ("log_p", "log_q"), func, check, axis,
                                        check_values=_check_log_values)
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


def _pairwise_blocks(P: npt.ArrayLike, Q: npt.ArrayLike | None, func: str, block_rows: int | None,
                     check: bool, pair_fn: Callable[[np.ndarray, np.ndarray], _Result]
                     ) -> np.ndarray:
    """pair_fn (given check=False) over row blocks of P against Q, P and Q
    checked first, so that an error names them and their [row, column]."""
    P = as_real_array(P, "P", func)
    Q = P if Q is None else as_real_array(Q, "Q", func)
    if P.ndim != 2 or Q.ndim != 2 or P.shape[1] != Q.shape[1]:
        raise ValueError(f"{func}: P and Q must be 2-D with rows of the same length")
    if check:
        _check_values(P, "P", func)
        _check_values(Q, "Q", func)
    if block_rows is None:
        # about 2**22 elements per (rows, k, n) temporary
        block_rows = max(1, (1 << 22) // max(1, Q.shape[0] * Q.shape[1]))
    out = np.empty((P.shape[0], Q.shape[0]), dtype=_pair_dtype(P, Q))
    for i0 in range(0, P.shape[0], block_rows):
        out[i0:i0 + block_rows] = pair_fn(P[i0:i0 + block_rows, None, :], Q[None, :, :])
    return out


def kl_pairwise(P: npt.ArrayLike, Q: npt.ArrayLike | None = None, *, base: float | None = None,
                normalize: bool = False, block_rows: int | None = None,
                check: bool = True) -> np.ndarray:
    """All-pairs KL the NumPy way: a block of rows of P broadcast against all of Q,
    ``kl_div(P[i0:i1, None, :], Q[None, :, :])``, block after block.

    Memory per block is block_rows * k * n elements (default: about 2**22).
    """
    func = "reference.kl_pairwise"
    normalize, check = flag(normalize, "normalize", func), flag(check, "check", func)
    _option(base, "base", func, not_one=True)
    return _pairwise_blocks(
        P, Q, "reference.kl_pairwise", block_rows, check,
        lambda p, q: kl_div(p, q, base=base, normalize=normalize, check=False))


def js_pairwise(P: npt.ArrayLike, Q: npt.ArrayLike | None = None, *, base: float | None = None,
                normalize: bool = False, block_rows: int | None = None,
                check: bool = True) -> np.ndarray:
    """All-pairs Jensen-Shannon the NumPy way (row blocks of P broadcast against Q)."""
    func = "reference.js_pairwise"
    normalize, check = flag(normalize, "normalize", func), flag(check, "check", func)
    _option(base, "base", func, not_one=True)
    return _pairwise_blocks(
        P, Q, "reference.js_pairwise", block_rows, check,
        lambda p, q: js_div(p, q, base=base, normalize=normalize, check=False))


# ---- Gaussian on a grid ----------------------------------------------------------------
#
# q(mu, sigma)_i = exp(-(x_i - mu)^2 / (2 sigma^2)) / sum_j exp(-(x_j - mu)^2 / (2 sigma^2)),
# built explicitly and plugged into the tutorial's formula.  mu and sigma may be arrays
# matching p's leading axes (one parameter set per row).

def _grid_inputs(p: npt.ArrayLike, x: npt.ArrayLike, func: str,
                 check: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """p and x as float64, with check as the compiled functions check them: p
    real, finite and non-negative with some mass in every row, x real and
    finite."""
    # float64 without a copy where they are (the benchmarks time this path)
    p = np.asarray(as_real_array(p, "p", func), dtype=np.float64)
    x = np.asarray(as_real_array(x, "x", func), dtype=np.float64)
    if not check:
        return p, x
    _check_values(p, "p", func)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{func}: x must be finite")
    if p.size and not np.all(np.sum(p, axis=-1) > 0):
        raise ValueError(f"{func}: a row of p is all zero; it must have positive mass")
    return p, x


def _gaussian_args(p: npt.ArrayLike, x: npt.ArrayLike, mu: npt.ArrayLike, sigma: npt.ArrayLike,
                   normalize: bool, check: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                         np.ndarray]:
    func = "reference.gaussian_kl"
    normalize = flag(normalize, "normalize", func)
    check = flag(check, "check", func)
    p, x = _grid_inputs(p, x, func, check)
    mu = np.asarray(as_real_array(mu, "mu", func), dtype=np.float64)[..., None]
    sigma = np.asarray(as_real_array(sigma, "sigma", func), dtype=np.float64)[..., None]
    if check and not np.all(np.isfinite(mu)):
        raise ValueError(f"{func}: mu must be finite")
    if check and not np.all(np.isfinite(sigma) & (sigma > 0)):
        raise ValueError(f"{func}: sigma must be positive and finite")
    if normalize:
        p = np.asarray(p / np.sum(p, axis=-1, keepdims=True))
    return p, x, mu, sigma


def gaussian_q(x: npt.ArrayLike, mu: npt.ArrayLike, sigma: npt.ArrayLike) -> np.ndarray:
    """The normalised Gaussian on the grid x, as the tutorial builds it.  Where
    the weights underflow (far off the grid, or sigma far below the spacing: q
    would be 0/0 = NaN, or subnormal) the exponents are taken relative to the grid point
    nearest mu, which the normalisation cancels (_excess_square); elsewhere
    the tutorial's formula is kept as it is (it is the benchmark's baseline)."""
    x = np.asarray(x, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64)[..., None]
    sigma = np.asarray(sigma, dtype=np.float64)[..., None]
    q = np.exp(-np.square(x - mu) / (2 * sigma**2))
    return _normalised_weights(q, x, mu, 2 * sigma**2)


def _normalised_weights(q: np.ndarray, x: np.ndarray, mu: np.ndarray,
                        two_var: np.ndarray) -> np.ndarray:
    """q over its sum along the last axis, the groups whose weights underflowed
    (a sum below 2**-900: the largest weight, at least the sum over 2**60, then
    keeps its digits and those near it) or whose sum is not finite formed again
    from _excess_square."""
    total = np.sum(q, axis=-1, keepdims=True)
    lost = ~(total[..., 0] >= 2.0**-900)
    if np.any(lost):
        # those groups only (q has the broadcast shape of x, mu and two_var)
        groups = q.shape[:-1] + (1,)
        xs = np.broadcast_to(x, q.shape)[lost]
        again = _excess_square(xs, np.broadcast_to(mu, groups)[lost])
        q = q.copy()
        q[lost] = np.exp(-again / np.broadcast_to(two_var, groups)[lost])
        total = np.sum(q, axis=-1, keepdims=True)
    return cast(np.ndarray, q / total)


def _excess_square(x: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """(x - mu)**2 - (x* - mu)**2 for x* the grid point nearest mu, as
    (x - x*)((x - x*) + 2 (x* - mu)): no rounding of (x - mu)**2 (about eps
    mu**2 far off the grid) or of x + x* (eps |x| on a grid far from 0) swamps
    the points' differences.  (x - mu)**2 on an empty grid."""
    if x.shape[-1] == 0:
        return cast(np.ndarray, np.square(x - mu))
    # the distances to mu clipped into the grid's range do not all round alike
    inside = np.clip(mu, np.min(x, axis=-1, keepdims=True), np.max(x, axis=-1, keepdims=True))
    d = np.abs(x - inside)
    nearest = np.take_along_axis(np.broadcast_to(x, d.shape), np.argmin(d, axis=-1)[..., None],
                                 axis=-1)
    step = x - nearest
    return cast(np.ndarray, step * (step + 2.0 * (nearest - mu)))


def gaussian_kl(p: npt.ArrayLike, x: npt.ArrayLike, mu: npt.ArrayLike, sigma: npt.ArrayLike, *,
                normalize: bool = False, check: bool = True) -> _Result:
    """KL(p || q(mu, sigma)) with q explicit: the tutorial's ``sum(where(p != 0, p log(p/q), 0))``.

    ``check=False`` skips the checks of p, x, mu and sigma (the benchmarks time
    the evaluation alone, as the NumPy one-liner runs it)."""
    p, x, mu, sigma = _gaussian_args(p, x, mu, sigma, normalize, check)
    q = gaussian_q(x, mu[..., 0], sigma[..., 0])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.sum(np.where(p != 0, p * np.log(p / q), 0), axis=-1)


def gaussian_kl_grad(p: npt.ArrayLike, x: npt.ArrayLike, mu: npt.ArrayLike,
                     sigma: npt.ArrayLike, *, normalize: bool = False,
                     check: bool = True) -> tuple[_Result, _Result, _Result]:
    """(kl, dKL/dmu, dKL/dsigma) from the explicit q and the gradient formulas.

    dKL/dmu = (P E_q[d] - sum p d) / sigma^2, dKL/dsigma = (P E_q[d^2] - sum p d^2) / sigma^3,
    with d = x - mu and P = sum p.  ``check``: as in gaussian_kl.
    """
    p, x, mu, sigma = _gaussian_args(p, x, mu, sigma, normalize, check)
    q = gaussian_q(x, mu[..., 0], sigma[..., 0])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        kl = np.sum(np.where(p != 0, p * np.log(p / q), 0), axis=-1)
    d = x - mu
    P = np.sum(p, axis=-1)
    d_mu = (P * np.sum(q * d, axis=-1) - np.sum(p * d, axis=-1)) / sigma[..., 0] ** 2
    d_sigma = (P * np.sum(q * d**2, axis=-1) - np.sum(p * d**2, axis=-1)) / sigma[..., 0] ** 3
    return kl, d_mu, d_sigma


def _kl_grad_variance(p: np.ndarray, x: np.ndarray, mu: np.ndarray,
                      v: np.ndarray) -> tuple[_Result, _Result, _Result]:
    """The tutorial's objective in (mu, v = sigma^2): value and gradient."""
    q = np.exp(-np.square(x - mu[..., None]) / (2 * v[..., None]))
    q = _normalised_weights(q, x, mu[..., None], 2 * v[..., None])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        kl = np.sum(np.where(p != 0, p * np.log(p / q), 0), axis=-1)
    d = x - mu[..., None]
    P = np.sum(p, axis=-1)
    d_mu = (P * np.sum(q * d, axis=-1) - np.sum(p * d, axis=-1)) / v
    d_v = (P * np.sum(q * d**2, axis=-1) - np.sum(p * d**2, axis=-1)) / (2 * v**2)
    return kl, d_mu, d_v


def fit_gaussian_gd(p: npt.ArrayLike, x: npt.ArrayLike, *, mu0: npt.ArrayLike = 0.0,
                    sigma0: npt.ArrayLike = 1.0, lr: float = 0.001, epochs: int = 100,
                    parametrization: str = "variance") -> dict[str, Any]:
    """The tutorial's plain gradient-descent loop (defaults: its settings).

    With ``parametrization="variance"`` the step is in v = sigma^2 and sigma0 is
    a variance.  Returns a dict with mu, sigma, variance, kl (at the final
    state) and history: "kl", "mu" and the stepped variable ("variance" or
    "sigma") before each step and at the end (epochs + 1 entries, along the last
    axis).  p may be (m, n): every row runs the loop at once.
    """
    p, x = _grid_inputs(p, x, "reference.fit_gaussian_gd")
    batch = p.shape[:-1]
    mu = np.broadcast_to(np.asarray(mu0, dtype=np.float64), batch).copy()
    par = np.broadcast_to(np.asarray(sigma0, dtype=np.float64), batch).copy()
    variance = parametrization == "variance"
    hist_kl, hist_mu, hist_par = [], [], []
    for epoch in range(epochs + 1):
        if variance:
            kl, d_mu, d_par = _kl_grad_variance(p, x, mu, par)
        else:
            kl, d_mu, d_par = gaussian_kl_grad(p, x, mu, par)
        hist_kl.append(kl)
        hist_mu.append(mu.copy())
        hist_par.append(par.copy())
        if epoch == epochs:
            break
        mu = mu - lr * d_mu
        par = par - lr * d_par
    name = "variance" if variance else "sigma"
    sigma = np.sqrt(par) if variance else par
    return {"mu": mu, "sigma": sigma, "variance": sigma**2 if not variance else par, "kl": kl,
            "history": {"kl": np.stack(hist_kl, axis=-1), "mu": np.stack(hist_mu, axis=-1),
                        name: np.stack(hist_par, axis=-1)}}


def fit_gaussian_newton(p: npt.ArrayLike, x: npt.ArrayLike, *, tol: float = 1e-10,
                        max_iter: int = 50) -> dict[str, Any]:
    """Newton's method in the natural parameters, from p's grid moments, with q explicit.

    In t = (x - c) / s (c, s: p's grid mean and standard deviation) the
    gradient of KL in the natural parameters is P (E_q[T] - E_p[T]) and the
    Hessian P Cov_q[T], T = (t, t^2).  Full steps (halved only to keep sigma
    real); all rows of a (m, n) p iterate together until every row's relative
    gradient max(|dKL/dmu|, |dKL/dsigma|) sigma / P is below tol.  Returns a
    dict with mu, sigma, kl and nit.
    """
    p, x = _grid_inputs(p, x, "reference.fit_gaussian_newton")
    P = np.sum(p, axis=-1)
    c = np.sum(p * x, axis=-1) / P
    s = np.sqrt(np.sum(p * (x - c[..., None]) ** 2, axis=-1) / P)
    t = (x - c[..., None]) / s[..., None]
    ep1 = np.sum(p * t, axis=-1) / P
    ep2 = np.sum(p * t * t, axis=-1) / P
    eta1 = np.zeros_like(c)            # start: mu = c, sigma = s
    eta2 = np.full_like(c, -0.5)
    nit = 0
    while True:
        v = -0.5 / eta2
        mu = c + s * eta1 * v
        sigma = s * np.sqrt(v)
        kl, d_mu, d_sigma = gaussian_kl_grad(p, x, mu, sigma)
        grad_rel = np.maximum(np.abs(d_mu), np.abs(d_sigma)) * sigma / P
        if np.all(grad_rel < tol) or nit >= max_iter:
            return {"mu": mu, "sigma": sigma, "kl": kl, "nit": nit, "grad_rel": grad_rel}
        q = gaussian_q(x, mu, sigma)
        eq1 = np.sum(q * t, axis=-1)
        eq2 = np.sum(q * t * t, axis=-1)
        u1 = t - eq1[..., None]
        u2 = t * t - eq2[..., None]
        h11 = np.sum(q * u1 * u1, axis=-1)
        h12 = np.sum(q * u1 * u2, axis=-1)
        h22 = np.sum(q * u2 * u2, axis=-1)
        g1, g2 = eq1 - ep1, eq2 - ep2
        det = h11 * h22 - h12 * h12
        step1 = -(h22 * g1 - h12 * g2) / det
        step2 = -(h11 * g2 - h12 * g1) / det
        lam = np.ones_like(c)
        while np.any(eta2 + lam * step2 >= 0):
            lam = np.where(eta2 + lam * step2 >= 0, lam / 2, lam)
        eta1 = eta1 + lam * step1
        eta2 = eta2 + lam * step2
        nit += 1
