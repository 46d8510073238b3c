"""js_div: the Jensen-Shannon divergence, symmetric and finite even with zeros.

Run: python examples/js_div.py
"""
import numpy as np
from scipy.spatial.distance import jensenshannon

import kl_fast
from kl_fast import reference

p = np.array([0.10, 0.40, 0.50, 0.00])
q = np.array([0.80, 0.15, 0.00, 0.05])
js = kl_fast.js_div(p, q, base=2)
print(f"JS(p, q) in bits = {js:.12f}  (between 0 and 1)")
assert 0 <= js <= 1
assert js == kl_fast.js_div(q, p, base=2)                  # symmetric, bit for bit
assert np.isclose(js, jensenshannon(p, q, base=2) ** 2, rtol=1e-12, atol=0)

# Rows of a batch, against the NumPy reference.
rng = np.random.default_rng(1)
P = rng.dirichlet(np.ones(50), size=200)
Q = rng.dirichlet(np.ones(50), size=200)
J = kl_fast.js_div(P, Q)
print(f"200 pairs: JS from {J.min():.6f} to {J.max():.6f} nats (at most log 2 = {np.log(2):.6f})")
np.testing.assert_allclose(J, reference.js_div(P, Q), rtol=1e-12)
assert np.all(J <= np.log(2))
