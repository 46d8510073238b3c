"""A user's script calling every public function, for type checkers.

.ci/typecheck runs ``mypy --strict`` on it: each ``assert_type`` states the
type mypy must infer, from the installed package's annotations and stubs.
tests/test_typing.py runs it too, so that the ``isinstance`` checks beside
them hold the run-time types to the same claims.
"""
from __future__ import annotations

import math
import sys

import dask.array as da
import numpy as np
import numpy.typing as npt

import kl_fast
import kl_fast.dask
from kl_fast import GaussianFit

if sys.version_info >= (3, 11):
    from typing import assert_type
else:
    from typing_extensions import assert_type

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]


def is_f64_array(value: object) -> bool:
    return isinstance(value, np.ndarray) and value.dtype == np.float64


def is_f32_array(value: object) -> bool:
    return isinstance(value, np.ndarray) and value.dtype == np.float32


p_list = [0.1, 0.4, 0.5]
q_list = [0.3, 0.3, 0.4]
p: F64 = np.array(p_list)
q: F64 = np.array(q_list)
P: F64 = np.array([p_list, q_list, [0.2, 0.2, 0.6]])
p32: F32 = p.astype(np.float32)
q32: F32 = q.astype(np.float32)
P32: F32 = P.astype(np.float32)

# ---- kl_div, js_div, kl_div_log: float64 scalars for Python numbers and lists -------

kl = kl_fast.kl_div(p_list, q_list)
assert_type(kl, np.float64)
assert isinstance(kl, np.float64)
assert_type(kl_fast.kl_div(0.5, 0.25), np.float64)
assert isinstance(kl_fast.kl_div(0.5, 0.25), np.float64)
assert_type(kl_fast.kl_div(p_list, q_list, base=2, axis=None), np.float64)

js = kl_fast.js_div(p_list, q_list, base=2)
assert_type(js, np.float64)
assert isinstance(js, np.float64)

kll = kl_fast.kl_div_log([math.log(v) for v in p_list], [-1.0, -1.0, -1.0], normalize=True)
assert_type(kll, np.float64)
assert isinstance(kll, np.float64)

# Lists of lists are 2-D: an array of float64, one value per row.
rows = kl_fast.kl_div([p_list, q_list], q_list)
assert_type(rows, np.float64 | F64)
assert is_f64_array(rows)

# ---- arrays: the dtype follows the inputs, the shape decides scalar or array --------

k64 = kl_fast.kl_div(p, q)
assert_type(k64, np.float64 | F64)
assert isinstance(k64, np.float64)
K64 = kl_fast.kl_div(P, q)
assert_type(K64, np.float64 | F64)
assert is_f64_array(K64)

k32 = kl_fast.kl_div(p32, q32)
assert_type(k32, np.float32 | F32)
assert isinstance(k32, np.float32)
J32 = kl_fast.js_div(P32, q32)
assert_type(J32, np.float32 | F32)
assert is_f32_array(J32)
L32 = kl_fast.kl_div_log(np.log(P32), np.log(q32))
assert_type(L32, np.float32 | F32)
assert is_f32_array(L32)

# float32 with anything else computes in float64.
mixed = kl_fast.kl_div(p32, q)
assert_type(mixed, np.float64 | F64)
assert isinstance(mixed, np.float64)
assert_type(kl_fast.js_div(p_list, q32), np.float64 | F64)
assert isinstance(kl_fast.js_div(p_list, q32), np.float64)

# keepdims=True always gives an array; out is returned as passed.
kept = kl_fast.kl_div(p, q, keepdims=True)
assert_type(kept, F64)
assert is_f64_array(kept)
kept32 = kl_fast.kl_div_log(np.log(p32), np.log(q32), keepdims=True)
assert_type(kept32, F32)
assert is_f32_array(kept32)
out: F64 = np.empty(3)
written = kl_fast.kl_div(P, q, out=out)
assert_type(written, F64)
assert written is out
out32: F32 = np.empty(3, dtype=np.float32)
assert_type(kl_fast.js_div(P, q, out=out32), F32)

# Inputs of unknown dtype: float32 or float64.
unknown: npt.ArrayLike = P32
assert_type(kl_fast.kl_div(unknown, unknown),
            np.float32 | np.float64 | F32 | F64)

# ---- all pairs -----------------------------------------------------------------------

K = kl_fast.kl_pairwise(P)
assert_type(K, F64)
assert is_f64_array(K) and K.shape == (3, 3)
J = kl_fast.js_pairwise(P, [p_list, q_list], base=2)
assert_type(J, F64)
assert is_f64_array(J) and J.shape == (3, 2)
K32 = kl_fast.kl_pairwise(P32, P32[:2])
assert_type(K32, F32)
assert is_f32_array(K32)
assert_type(kl_fast.js_pairwise(P32), F32)
assert_type(kl_fast.kl_pairwise([p_list, q_list]), F64)

# ---- the Gaussian on a grid ----------------------------------------------------------

x: F64 = np.linspace(-5.0, 5.0, 101)
density = np.exp(-x * x / 2)
g_list: list[float] = density.tolist()
g: F64 = density

gk = kl_fast.gaussian_kl(g_list, x, 0.0, 1.0)
assert_type(gk, np.float64)
assert isinstance(gk, np.float64)
gks = kl_fast.gaussian_kl(g, x, [0.0, 0.5], 1.0)
assert_type(gks, F64)
assert is_f64_array(gks)
gka = kl_fast.gaussian_kl(g, x, 0.0, 1.0, normalize=True)
assert_type(gka, np.float64 | F64)
assert isinstance(gka, np.float64)

value, d_mu, d_sigma = kl_fast.gaussian_kl_grad(g_list, x, 0.2, 1.5)
assert_type(value, np.float64)
assert_type(d_sigma, np.float64)
assert isinstance(d_mu, np.float64)
grads = kl_fast.gaussian_kl_grad(g, x, 0.2, [1.0, 1.5])
assert_type(grads, tuple[F64, F64, F64])
assert all(is_f64_array(a) for a in grads)
either = kl_fast.gaussian_kl_grad(g, x, 0.2, 1.5)
assert_type(either, tuple[np.float64, np.float64, np.float64] | tuple[F64, F64, F64])

fit = kl_fast.fit_gaussian(g_list, x)
assert_type(fit, GaussianFit[float, int, bool, str])
assert_type(fit.mu, float)
assert_type(fit.sigma, float)
assert_type(fit.kl, float)
assert_type(fit.grad, tuple[float, float])
assert_type(fit.nit, int)
assert_type(fit.converged, bool)
assert_type(fit.message, str)
assert_type(fit.variance, float)
assert_type(fit.history, dict[str, F64])
assert_type(fit.status, kl_fast.FitStatus | npt.NDArray[np.int8])
assert fit.status is kl_fast.FitStatus.CONVERGED
assert isinstance(fit.mu, float) and isinstance(fit.nit, int)
assert isinstance(fit.converged, bool) and isinstance(fit.message, str)
assert isinstance(fit.variance, float) and is_f64_array(fit.history["kl"])
assert fit.converged and abs(fit.mu) < 1e-6 and abs(fit.sigma - 1.0) < 1e-6

batch = kl_fast.fit_gaussian([g_list, g_list], x, method="gd", parametrization="variance",
                             mu0=0.0, sigma0=1.0, lr=0.01, epochs=5)
assert_type(batch.mu, F64)
assert_type(batch.nfev, npt.NDArray[np.intp])
assert_type(batch.converged, npt.NDArray[np.bool_])
assert_type(batch.message, npt.NDArray[np.object_])
assert is_f64_array(batch.mu) and batch.mu.shape == (2,)
assert isinstance(batch.nfev, np.ndarray) and batch.nfev.dtype == np.intp
assert isinstance(batch.converged, np.ndarray) and batch.converged.dtype == np.bool_
assert isinstance(batch.message, np.ndarray) and all(isinstance(m, str) for m in batch.message)
assert isinstance(batch.status, np.ndarray) and batch.status.dtype == np.int8

# An array p: one fit or a batch, by its shape.
some = kl_fast.fit_gaussian(g, x)
assert_type(some.mu, float | F64)
assert isinstance(some.mu, float)

# ---- GaussianTarget: p's side prepared once -------------------------------------------

target = kl_fast.GaussianTarget(g, x)
assert_type(target.kl(0.0, 1.0), np.float64 | F64)
t_kl, t_dmu, t_dsigma = target.kl_grad(0.0, 1.0)
assert_type(t_dmu, np.float64 | F64)
t_kl2, t_grad, t_hess = target.kl_hess(0.0, 1.0)
assert_type(t_grad, F64)
assert_type(t_hess, F64)
assert isinstance(t_kl2, np.float64) and t_grad.shape == (2,) and t_hess.shape == (2, 2)
fun, jac, hess = target.scipy_objective()
assert_type(fun([0.0, 1.0]), float)
assert_type(jac([0.0, 1.0]), np.ndarray)
assert isinstance(fun([0.0, 1.0]), float) and jac([0.0, 1.0]).shape == (2,)
assert isinstance(target.fit().mu, float)

# ---- kl_topk: the nearest rows without the matrix ---------------------------------------

values, indices = kl_fast.kl_topk(P, P, 2)
assert_type(values, np.ndarray)
assert_type(indices, npt.NDArray[np.intp])
assert is_f64_array(values) and indices.dtype == np.intp and indices.shape == (3, 2)

# ---- configuration -------------------------------------------------------------------

assert_type(kl_fast.show_config(), None)
assert_type(kl_fast.openmp_enabled(), bool)
assert_type(kl_fast.get_include(), str)
assert_type(kl_fast.__version__, str)

# ---- kl_fast.dask --------------------------------------------------------------------

# NumPy inputs are taken in one chunk; the results are lazy Dask arrays.
lazy = kl_fast.dask.kl_div(P, q)
assert_type(lazy, da.Array)
assert isinstance(lazy, da.Array)
lazy_pairs = kl_fast.dask.kl_pairwise(P, P[:2])
assert_type(lazy_pairs, da.Array)
assert isinstance(lazy_pairs, da.Array)
lazy_fit = kl_fast.dask.fit_gaussian(np.stack([g, g]), x)
assert_type(lazy_fit, kl_fast.dask.GaussianFitArrays)
assert_type(lazy_fit.mu, da.Array)
assert isinstance(lazy_fit.mu, da.Array)

for lazy_value in (kl_fast.dask.js_div(P, q), kl_fast.dask.kl_div_log(np.log(P), np.log(q)),
                   kl_fast.dask.js_pairwise(P), kl_fast.dask.gaussian_kl(np.stack([g, g]), x, 0.0, 1.0)):
    assert_type(lazy_value, da.Array)
    assert isinstance(lazy_value, da.Array)
lazy_values, lazy_indices = kl_fast.dask.kl_topk(P, P, 2)
assert_type(lazy_indices, da.Array)
assert isinstance(lazy_indices, da.Array)
assert_type(kl_fast.dask.gaussian_kl_grad(g, x, 0.0, 1.0), tuple[da.Array, da.Array, da.Array])

print("every public function called; run-time types as annotated")
