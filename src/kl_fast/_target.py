"""GaussianTarget: KL(p || q(mu, sigma)) with p's side prepared once.

KL(p || q) = H + sum p (x - mu)^2 / (2 sigma^2) + P log Z splits into sums over
p alone (P, H = sum p log p and p's moments) and one pass over the grid per
(mu, sigma).  A target validates p and x and takes p's sums once; every
evaluation then costs the q pass only, through the same kernels as
:func:`gaussian_kl`, so the values are the same to the bit.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

from . import _gaussian
from . import gaussian as _g
from ._validation import flag

# a value per parameter set: a scalar for one, an array of the broadcast shape for many
_Value = Union[np.float64, npt.NDArray[np.float64]]
_Theta = npt.ArrayLike

__all__ = ["GaussianTarget"]


class GaussianTarget:
    """KL(p || q(mu, sigma)) on a fixed grid, p's side prepared once.

    For repeated evaluation with the same p: an external optimiser, a KL
    surface over (mu, sigma), a grid search or a sampler.  q is the normalised
    Gaussian sampled on x, as in :func:`gaussian_kl`.

    Parameters
    ----------
    p : array_like, shape (..., n)
        Non-negative finite values on the grid; leading axes are a batch of
        rows.  Copied: later changes to p do not reach the target.
    x : array_like, shape (n,)
        The grid (finite).
    normalize : bool, default True
        Work with p / sum(p).
    check : bool, default True
        Accepted for symmetry with :func:`kl_div`.  p and x are checked in the
        same pass that takes p's sums, which costs nothing extra, so a negative,
        NaN or infinite value is a ValueError either way.

    Every method takes mu and sigma (scalars or arrays) that broadcast against
    each other and against p's batch shape, and returns float64 of the
    broadcast shape, plus ``num_threads`` as in :func:`gaussian_kl`.

    Examples
    --------
    >>> import numpy as np
    >>> import kl_fast
    >>> x = np.arange(-10, 10, 0.001)
    >>> t = kl_fast.GaussianTarget(np.exp(-x**2 / 8), x)
    >>> round(float(t.kl(1.0, 2.0)), 4)                # ~ 1/8, as for densities
    0.125
    >>> mu, sigma = np.meshgrid(np.linspace(-1, 1, 3), np.linspace(1.5, 2.5, 5))
    >>> t.kl(mu, sigma).shape                      # a surface in one call
    (5, 3)
    >>> kl, grad, hess = t.kl_hess(0.0, 2.0)       # at the optimum: grad 0, hess > 0
    >>> bool(np.abs(grad).max() < 1e-9), (np.round(hess, 3) + 0.0).tolist()
    (True, [[0.25, 0.0], [0.0, 0.5]])
    >>> round(t.fit().sigma, 9)
    2.0
    """

    __slots__ = ("_p2", "_xk", "_psums", "_batch_shape", "_k", "_normalize", "_x")

    def __init__(self, p: npt.ArrayLike, x: npt.ArrayLike, *, normalize: bool = True,
                 check: bool = True) -> None:
        func = "GaussianTarget"
        normalize = flag(normalize, "normalize", func)
        flag(check, "check", func)
        p2, xk, psums, batch_shape, _, k = _g._prepare(p, x, func, normalize, 1)
        # own copies: the q pass reads p and x again at every evaluation
        self._p2 = np.array(p2, order="C", copy=True)
        self._xk = np.array(xk, copy=True)
        self._psums = psums
        self._batch_shape = tuple(batch_shape)
        self._k = int(k)
        self._normalize = bool(normalize)
        self._x = _read_only(np.ldexp(self._xk, self._k) if self._k else self._xk.copy())

    # ---- description ---------------------------------------------------------------
    @property
    def x(self) -> np.ndarray:
        """The grid (a read-only float64 copy)."""
        return self._x.view()

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """p's shape without the grid axis (() for one distribution)."""
        return self._batch_shape

    @property
    def normalize(self) -> bool:
        return self._normalize

    @property
    def dtype(self) -> np.dtype[Any]:
        """The dtype p is read in (float32 or float64)."""
        return self._p2.dtype

    def __repr__(self) -> str:
        n = self._xk.shape[0]
        rows = "one row" if self._batch_shape == () else f"batch shape {self._batch_shape}"
        span = (f" in [{float(self._x.min()):.6g}, {float(self._x.max()):.6g}]" if n else "")
        return (f"GaussianTarget({rows} of {self._p2.dtype} on {n} grid points{span}, "
                f"normalize={self._normalize})")

    # The layout of the pickled state (the slots, psums of 7 p-side sums per row); a
    # state of another layout is refused rather than misread.  States pickled before
    # the stamp have layout 1.
    _STATE_LAYOUT = 1

    def __getstate__(self) -> dict[str, Any]:
        state = {name: getattr(self, name) for name in self.__slots__}
        state["layout"] = self._STATE_LAYOUT
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        layout = state.get("layout", 1)
        missing = [name for name in self.__slots__ if name not in state]
        psums = state.get("_psums")
        problem = (f"of layout {layout!r}, this kl_fast reads layout {self._STATE_LAYOUT}"
                   if layout != self._STATE_LAYOUT else
                   f"missing {', '.join(missing)}" if missing else
                   "whose p-side sums are not 7 per row"
                   if not (isinstance(psums, np.ndarray) and psums.ndim == 2
                           and psums.shape[1] == 7) else "")
        if problem:
            raise ValueError(f"GaussianTarget: cannot unpickle a state {problem}; "
                             "build the target again from p and x")
        for name in self.__slots__:
            value = state[name]
            if isinstance(value, np.ndarray):
                # an array received over a network can be unaligned in memory; the
                # kernels load aligned: copy it then (as the functions do with input)
                value = np.require(value, requirements=["C", "A"])
            object.__setattr__(self, name, value)
        # the grid from the one the sums were prepared on, not from the state
        self._x = _read_only(np.ldexp(self._xk, self._k) if self._k else self._xk.copy())

    # ---- evaluation ----------------------------------------------------------------
    def _values(self, mu: npt.ArrayLike, sigma: npt.ArrayLike, func: str, order: int,
                num_threads: Optional[int]) -> Sequence[_Value]:
        if self._k == 0 and self._batch_shape == ():
            # one row at scalar parameters: the compiled path, no Python-level helpers
            fast = _gaussian.prepared_1d(self._p2, self._xk, self._psums, mu, sigma, order,
                                         num_threads)
            if fast is not None:
                return fast
        return _g._evaluate_prepared(self._p2, self._xk, self._psums, self._batch_shape,
                                     self._k, mu, sigma, func, self._normalize, num_threads,
                                     order)

    def kl(self, mu: npt.ArrayLike, sigma: npt.ArrayLike, *,
           num_threads: Optional[int] = None) -> _Value:
        """KL(p || q(mu, sigma)), as :func:`gaussian_kl` gives it."""
        return self._values(mu, sigma, "GaussianTarget.kl", 0, num_threads)[0]

    def kl_grad(self, mu: npt.ArrayLike, sigma: npt.ArrayLike, *,
                num_threads: Optional[int] = None) -> tuple[_Value, _Value, _Value]:
        """(kl, d_mu, d_sigma), as :func:`gaussian_kl_grad` gives them."""
        kl, dmu, dsigma = self._values(mu, sigma, "GaussianTarget.kl_grad", 1, num_threads)
        return kl, dmu, dsigma

    def kl_hess(self, mu: npt.ArrayLike, sigma: npt.ArrayLike, *, num_threads: Optional[int] = None
                ) -> tuple[_Value, npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """(kl, grad, hess): grad of shape (..., 2) = (d_mu, d_sigma) and the
        analytic Hessian in (mu, sigma), shape (..., 2, 2), from one q pass.

        With d = x - mu, P = sum p and k2, k3, k4 the central moments of d under
        q (mean e): d2/dmu2 = P k2 / sigma^4, d2/dmu dsigma = P (k3 + 2 e k2) /
        sigma^5 - 2 d_mu / sigma, d2/dsigma2 = P (k4 - k2^2 + 4 e k3 +
        4 e^2 k2) / sigma^6 - 3 d_sigma / sigma.  Where the divergence or its
        gradient is beyond the double range (``inf``), an entry whose two
        parts are both infinite, of opposite signs, has no value here and is NaN.

        >>> import numpy as np, kl_fast
        >>> x = np.linspace(-5, 5, 101)
        >>> t = kl_fast.GaussianTarget(np.exp(-x**2 / 2), x)
        >>> kl, grad, hess = t.kl_hess(0.0, 1.0)
        >>> bool(abs(kl) < 1e-12 and np.abs(grad).max() < 1e-9), bool(hess[0, 0] > 0)
        (True, True)
        """
        kl, dmu, dsigma, hmm, hms, hss = self._values(mu, sigma, "GaussianTarget.kl_hess", 2,
                                                      num_threads)
        if np.ndim(kl) == 0:
            return (kl, np.array([dmu, dsigma], dtype=np.float64),
                    np.array([[hmm, hms], [hms, hss]], dtype=np.float64))
        grad = np.stack([dmu, dsigma], axis=-1)
        hess = np.stack([np.stack([hmm, hms], axis=-1), np.stack([hms, hss], axis=-1)],
                        axis=-2)
        return kl, grad, hess

    # ---- fitting -------------------------------------------------------------------
    def fit(self, *, method: str = "newton", mu0: Optional[npt.ArrayLike] = None,
            sigma0: Optional[npt.ArrayLike] = None, parametrization: str = "sigma",
            lr: float = 0.001, epochs: int = 100, tol: float = 1e-9, max_iter: int = 50,
            history: bool = True, num_threads: Optional[int] = None) -> "_g.GaussianFit[Any, Any, Any, Any]":
        """:func:`fit_gaussian` of the target's p (its normalize), p's sums reused."""
        func = "GaussianTarget.fit"
        history = flag(history, "history", func)
        variance, lr_v, tol_v, iters = _g._fit_options(method, parametrization, lr, tol,
                                                       epochs, max_iter, func)
        nt = _g._threads(num_threads, self._p2.shape[0], self._p2.shape[1], func,
                         _gaussian.fit_passes(method == "newton", iters))
        return _g._fit_prepared(self._p2, self._xk, self._psums, self._batch_shape, nt,
                                self._k, method=method, variance=variance, mu0=mu0,
                                sigma0=sigma0, lr=lr_v, tol=tol_v, iters=iters,
                                history=history, func=func)

    def scipy_objective(self) -> tuple[Callable[[_Theta], float], Callable[[_Theta], np.ndarray],
                                       Callable[[_Theta], np.ndarray]]:
        """(fun, jac, hess) of theta = [mu, sigma] for ``scipy.optimize.minimize``.

        For a target of one row.  fun(theta) is the KL, jac(theta) the gradient
        (shape (2,)) and hess(theta) the analytic Hessian (2, 2); the last
        evaluation is remembered, so fun and jac at the same theta cost one
        pass.  q depends on sigma only through sigma**2, and the three are
        extended to sigma < 0 by that symmetry (the KL at |sigma|, its
        derivatives with the sign of sigma): an unconstrained method that steps
        across sigma = 0 goes on from the mirror point, and may return a
        negative sigma, whose absolute value is the fit's.  At sigma = 0 fun is
        +inf and jac and hess raise ValueError; all three raise where mu or
        sigma is NaN or infinite.

        Examples
        --------
        >>> import numpy as np
        >>> from scipy.optimize import minimize
        >>> import kl_fast
        >>> x = np.arange(-10, 10, 0.001)
        >>> fun, jac, hess = kl_fast.GaussianTarget(np.exp(-x**2 / 8), x).scipy_objective()
        >>> res = minimize(fun, [0.5, 1.0], jac=jac, hess=hess, method="trust-exact")
        >>> (np.round(res.x, 4) + 0.0).tolist()
        [0.0, 2.0]
        """
        if self._batch_shape != ():
            raise ValueError(f"GaussianTarget.scipy_objective: the target holds a batch of "
                             f"rows (shape {self._batch_shape}); build one target per row")
        return _Objective(self).functions()


def _read_only(a: np.ndarray) -> np.ndarray:
    """a (an array the caller owns) made read-only: views of it cannot be made
    writeable again."""
    a.flags.writeable = False
    return a


class _Objective:
    """fun, jac and hess of one row's target, sharing the last evaluation.

    The evaluation is remembered as one tuple (theta, order, values), replaced
    whole: functions shared by threads never pair one theta with another's values."""

    def __init__(self, target: GaussianTarget) -> None:
        self._target = target
        self._last: tuple[tuple[float, float], int, Sequence[_Value]] = (
            (math.nan, math.nan), -1, ())

    def _at(self, theta: _Theta, order: int, what: str) -> Optional[Sequence[_Value]]:
        try:
            raw = np.asarray(theta)
            # strings would be parsed, complex cut; bools are no numbers here (as in kl)
            if raw.dtype.kind not in "iufO" or (raw.dtype.kind == "O" and any(
                    isinstance(v, (bool, np.bool_)) for v in raw.ravel())):
                raise TypeError
            t = raw.astype(np.float64)
        except OverflowError:   # a Python integer beyond the float64 range
            raise ValueError(f"GaussianTarget.scipy_objective: {what} needs a finite mu and "
                             f"sigma, got an integer beyond the float64 range") from None
        except (TypeError, ValueError):
            raise TypeError(f"GaussianTarget.scipy_objective: {what} takes theta = [mu, sigma] "
                            f"of real numbers, got {theta!r}") from None
        if t.shape != (2,):
            raise ValueError(f"GaussianTarget.scipy_objective: {what} takes theta = [mu, sigma], "
                             f"got an array of shape {t.shape}")
        mu, sigma = float(t[0]), abs(float(t[1]))
        if not (math.isfinite(mu) and math.isfinite(sigma)):
            raise ValueError(f"GaussianTarget.scipy_objective: {what} needs a finite mu and "
                             f"sigma, got theta = {t.tolist()}")
        if sigma == 0:
            return None
        key = (mu, sigma)
        last_key, last_order, values = self._last
        if last_key != key or last_order < order:
            values = self._target._values(mu, sigma, "GaussianTarget.scipy_objective",
                                          max(order, 1), None)
            self._last = (key, max(order, 1), values)
        return values

    def fun(self, theta: _Theta) -> float:
        v = self._at(theta, 1, "fun")
        return math.inf if v is None else float(v[0])

    def jac(self, theta: _Theta) -> np.ndarray:
        v = self._at(theta, 1, "jac")
        if v is None:
            raise ValueError(f"GaussianTarget.scipy_objective: jac needs sigma != 0, "
                             f"got theta = {np.asarray(theta).tolist()}")
        s = math.copysign(1.0, float(np.asarray(theta, dtype=np.float64)[1]))
        return np.array([v[1], s * v[2]], dtype=np.float64)

    def hess(self, theta: _Theta) -> np.ndarray:
        v = self._at(theta, 2, "hess")
        if v is None:
            raise ValueError(f"GaussianTarget.scipy_objective: hess needs sigma != 0, "
                             f"got theta = {np.asarray(theta).tolist()}")
        s = math.copysign(1.0, float(np.asarray(theta, dtype=np.float64)[1]))
        return np.array([[v[3], s * v[4]], [s * v[4], v[5]]], dtype=np.float64)

    def functions(self) -> tuple[Callable[[_Theta], float], Callable[[_Theta], np.ndarray],
                                 Callable[[_Theta], np.ndarray]]:
        return self.fun, self.jac, self.hess
