"""gaussian_kl_grad: the divergence and its gradient in (mu, sigma) from one pass.

Run: python examples/gaussian_kl_grad.py
"""
import numpy as np

import kl_fast
from kl_fast import reference

x = np.arange(-10, 10, 0.001)
p = np.exp(-x**2 / 8) / np.sqrt(8 * np.pi)

kl, d_mu, d_sigma = kl_fast.gaussian_kl_grad(p, x, 0.3, 2.5)
print(f"at mu = 0.3, sigma = 2.5: KL = {kl:.8f}, dKL/dmu = {d_mu:.8f}, dKL/dsigma = {d_sigma:.8f}")
ref = reference.gaussian_kl_grad(p, x, 0.3, 2.5)
np.testing.assert_allclose([kl, d_mu, d_sigma], ref, rtol=1e-10)

# Against a central finite difference of gaussian_kl.
h = 1e-5
fd_mu = (kl_fast.gaussian_kl(p, x, 0.3 + h, 2.5) - kl_fast.gaussian_kl(p, x, 0.3 - h, 2.5)) / (2 * h)
fd_sigma = (kl_fast.gaussian_kl(p, x, 0.3, 2.5 + h) - kl_fast.gaussian_kl(p, x, 0.3, 2.5 - h)) / (2 * h)
print(f"finite differences:                        {fd_mu:.8f},             {fd_sigma:.8f}")
assert np.isclose(d_mu, fd_mu, rtol=1e-6) and np.isclose(d_sigma, fd_sigma, rtol=1e-6)

# At the optimum (mu = 0, sigma = 2 for this p) the gradient vanishes.
_, g_mu, g_sigma = kl_fast.gaussian_kl_grad(p, x, 0.0, 2.0)
print(f"at the optimum: dKL/dmu = {g_mu:.2e}, dKL/dsigma = {g_sigma:.2e}")
assert abs(g_mu) < 1e-6 and abs(g_sigma) < 1e-4
