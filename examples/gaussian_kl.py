"""gaussian_kl: KL(p || q(mu, sigma)) with q the normalised Gaussian on the grid.

Run: python examples/gaussian_kl.py
"""
import numpy as np

import kl_fast
from kl_fast import reference

x = np.arange(-10, 10, 0.001)
p = np.exp(-x**2 / 8) / np.sqrt(8 * np.pi)     # the tutorial's N(0, 2) density on the grid

kl = kl_fast.gaussian_kl(p, x, 0.0, 2.0)
print(f"KL(p || q(0, 2))  = {kl:.7f}  (the optimum on this grid: 6907.7507454)")
assert np.isclose(kl, 6907.7507454, rtol=0, atol=1e-6)
assert np.isclose(kl, reference.gaussian_kl(p, x, 0.0, 2.0), rtol=1e-12, atol=0)

# A batch of parameter sets in one call; the minimum sits at mu = 0.
mus = np.linspace(-1, 1, 5)
kls = kl_fast.gaussian_kl(p, x, mus, 2.0)
for mu, value in zip(mus, kls):
    print(f"  mu = {mu:+.1f}: {value:.6f}")
np.testing.assert_allclose(kls, reference.gaussian_kl(p, x, mus, 2.0), rtol=1e-12)
assert np.argmin(kls) == 2

# log q is analytic: the value stays finite where q underflows to 0 on the grid.
far = kl_fast.gaussian_kl(p, x, 9.0, 0.01)
print(f"KL(p || q(9, 0.01)) = {far:.6e} (finite; the explicit q underflows)")
assert np.isfinite(far)
