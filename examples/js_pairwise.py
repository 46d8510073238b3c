"""js_pairwise: the symmetric matrix of Jensen-Shannon divergences between rows.

Run: python examples/js_pairwise.py
"""
import numpy as np
from scipy.spatial.distance import cdist

import kl_fast

rng = np.random.default_rng(4)
P = rng.dirichlet(np.ones(32), size=150)

J = kl_fast.js_pairwise(P, base=2)
print(f"J has shape {J.shape}; mean JS {J[np.triu_indices(150, 1)].mean():.6f} bits")
assert J.shape == (150, 150)
assert np.array_equal(J, J.T) and np.all(np.diag(J) == 0)
# SciPy's Jensen-Shannon distance is the square root of the divergence (here in nats).
np.testing.assert_allclose(J, cdist(P, P, "jensenshannon") ** 2 / np.log(2), rtol=1e-9, atol=1e-15)

# Each entry is js_div of the pair, bit for bit.
Q = rng.dirichlet(np.ones(32), size=20)
JQ = kl_fast.js_pairwise(P, Q)
assert JQ[7, 3] == kl_fast.js_div(P[7], Q[3])
print(f"JS(P[7], Q[3]) = {JQ[7, 3]:.12f} nats, equal to js_div(P[7], Q[3])")
