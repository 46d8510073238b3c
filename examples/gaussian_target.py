"""GaussianTarget: p checked and summed once, then many evaluations, a KL surface,
the analytic Hessian and scipy.optimize.

Run: python examples/gaussian_target.py
"""
import numpy as np

import kl_fast
from kl_fast import reference

x = np.arange(-10, 10, 0.001)
p = np.exp(-x**2 / 8) / np.sqrt(8 * np.pi)          # N(0, 2) on the tutorial grid
target = kl_fast.GaussianTarget(p, x, normalize=False)
print(target)

# The same values as the one-shot functions, and as the NumPy reference.
kl, d_mu, d_sigma = target.kl_grad(0.3, 2.5)
assert (kl, d_mu, d_sigma) == kl_fast.gaussian_kl_grad(p, x, 0.3, 2.5)
np.testing.assert_allclose([kl, d_mu, d_sigma], reference.gaussian_kl_grad(p, x, 0.3, 2.5),
                           rtol=1e-10)
print(f"KL = {kl:.6f}, gradient = ({d_mu:.6f}, {d_sigma:.6f})")

# A 50 x 40 surface over (mu, sigma) in one call; its minimum sits next to (0, 2).
mu, sigma = np.meshgrid(np.linspace(-1, 1, 50), np.linspace(1, 3, 40))
surface = target.kl(mu, sigma)
i, j = np.unravel_index(np.argmin(surface), surface.shape)
print(f"surface {surface.shape}: smallest KL at mu = {mu[i, j]:.3f}, sigma = {sigma[i, j]:.3f}")
assert abs(mu[i, j]) < 0.03 and abs(sigma[i, j] - 2.0) < 0.03

# The Hessian against central differences of the gradient.
_, grad, hess = target.kl_hess(0.3, 2.5)
h = 1e-5
fd = np.array([(np.array(target.kl_grad(0.3 + h, 2.5)[1:]) - target.kl_grad(0.3 - h, 2.5)[1:]) / (2 * h),
               (np.array(target.kl_grad(0.3, 2.5 + h)[1:]) - target.kl_grad(0.3, 2.5 - h)[1:]) / (2 * h)])
print("Hessian:", hess.round(4).tolist())
np.testing.assert_allclose(hess, fd, rtol=1e-5)

# scipy.optimize with the analytic gradient and Hessian reaches Newton's fit.
try:
    from scipy.optimize import minimize
except ImportError:
    print("scipy is not installed: skipping scipy.optimize")
else:
    fun, jac, hess_fn = target.scipy_objective()
    res = minimize(fun, [0.5, 1.0], jac=jac, hess=hess_fn, method="trust-exact",
                   options={"gtol": 1e-10})
    fit = target.fit()
    print(f"trust-exact: mu = {res.x[0]:.2e}, sigma = {res.x[1]:.8f}; Newton: sigma = {fit.sigma:.8f}")
    np.testing.assert_allclose(res.x, [fit.mu, fit.sigma], atol=1e-6)
