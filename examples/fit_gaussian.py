"""fit_gaussian: Newton's method, and the tutorial's gradient descent reproduced.

Run: python examples/fit_gaussian.py
"""
import numpy as np

import kl_fast
from kl_fast import reference

x = np.arange(-10, 10, 0.001)
p = np.exp(-x**2 / 8) / np.sqrt(8 * np.pi)       # N(0, 2) on the grid, sums to about 1000

fit = kl_fast.fit_gaussian(p, x)
print(f"Newton: mu = {fit.mu:.3e}, sigma = {fit.sigma:.9f}, KL = {fit.kl:.7f}, "
      f"{fit.nit} steps, {fit.nfev} passes, converged = {fit.converged}")
assert fit.converged and abs(fit.mu) < 1e-9 and abs(fit.sigma - 2.0) < 1e-7
ref = reference.fit_gaussian_newton(p, x)
assert np.isclose(fit.kl, ref["kl"], rtol=1e-12) and np.isclose(fit.sigma, ref["sigma"], rtol=1e-8)

# The tutorial: plain gradient descent in the variance, lr 0.001, 100 epochs, from (0, 1).
tut = kl_fast.fit_gaussian(p, x, method="gd", parametrization="variance",
                           mu0=0.0, sigma0=1.0, lr=0.001, epochs=100)
print(f"tutorial GD: mu = {tut.mu:.4e}, variance = {tut.variance:.7f}, KL = {tut.kl:.7f}")
print("  every 10th epoch, KL:", np.array2string(tut.history["kl"][10::10], precision=4))
assert np.isclose(tut.variance, 3.9675094, rtol=0, atol=1e-7)
assert np.isclose(tut.kl, 6907.7674169, rtol=0, atol=1e-6)
gd = reference.fit_gaussian_gd(p, x, mu0=0.0, sigma0=1.0, lr=0.001, epochs=100)
assert np.isclose(tut.variance, gd["variance"], rtol=1e-10)

# One fit per row of a batch: three normals, well inside the grid.
mus, sigmas = np.array([0.0, 1.0, -2.0]), np.array([2.0, 1.5, 0.8])
P = np.exp(-(x - mus[:, None]) ** 2 / (2 * sigmas[:, None] ** 2))
rows = kl_fast.fit_gaussian(P, x)
print("batch of 3 rows: mu =", np.array2string(rows.mu, precision=6), "sigma =",
      np.array2string(rows.sigma, precision=6))
np.testing.assert_allclose(rows.mu, mus, atol=1e-7)
np.testing.assert_allclose(rows.sigma, sigmas, rtol=1e-7)
