"""kl_div: the tutorial's divergences on a grid, a batch of rows, and bits.

Run: python examples/kl_div.py
"""
import math

import numpy as np
from scipy.special import rel_entr
from scipy.stats import norm

import kl_fast
from kl_fast import reference

# The tutorial's grid and densities: KL(N(0, 2) || N(2, 2)) summed over density values.
x = np.arange(-10, 10, 0.001)
p = norm.pdf(x, 0, 2)
q = norm.pdf(x, 2, 2)
kl = kl_fast.kl_div(p, q)
print(f"KL(N(0,2) || N(2,2)) on the grid      = {kl:.10f}  (the tutorial's '500')")
# For these two normals log(p / q) = ((x - 2)^2 - x^2) / 8 = (1 - x) / 2 exactly.
assert np.isclose(kl, math.fsum(p * (1 - x) / 2), rtol=1e-12, atol=0)
assert np.isclose(kl, reference.kl_div(p, q), rtol=1e-12, atol=0)

# Times the grid spacing: the continuous KL of the two normals, 2^2 / (2 * 2^2) = 0.5.
kl_dx = kl_fast.kl_div(p, q, dx=0.001)
print(f"same, times dx = 0.001                 = {kl_dx:.10f}  (closed form 0.5)")
assert abs(kl_dx - 0.5) < 1e-6

# A batch of histograms against one reference distribution, in bits.
rng = np.random.default_rng(0)
P = rng.dirichlet(np.ones(100), size=1000)
q_ref = np.full(100, 1 / 100)
bits = kl_fast.kl_div(P, q_ref, base=2)
print(f"1000 rows vs uniform, in bits: mean {bits.mean():.6f}, max {bits.max():.6f}")
assert bits.shape == (1000,)
np.testing.assert_allclose(bits, rel_entr(P, q_ref).sum(axis=-1) / np.log(2), rtol=1e-12)

# Zeros: a p == 0 term counts 0; p > 0 where q == 0 makes the divergence infinite.
print("KL([0.5, 0.5, 0] || [0.5, 0, 0.5])     =", kl_fast.kl_div([0.5, 0.5, 0], [0.5, 0, 0.5]))
assert kl_fast.kl_div([0.5, 0.5, 0.0], [0.5, 0.0, 0.5]) == np.inf
assert kl_fast.kl_div([1.0, 0.0], [1.0, 0.0]) == 0.0
