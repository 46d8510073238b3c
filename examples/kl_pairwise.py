"""kl_pairwise: the (m, k) matrix KL(P[i] || Q[j]) of every pair of rows.

Run: python examples/kl_pairwise.py
"""
import numpy as np
from scipy.special import rel_entr

import kl_fast
from kl_fast import reference

rng = np.random.default_rng(3)
P = rng.dirichlet(np.ones(64), size=300)
Q = rng.dirichlet(np.ones(64), size=120)

K = kl_fast.kl_pairwise(P, Q)
i, j = np.unravel_index(np.argmin(K), K.shape)
print(f"K has shape {K.shape}; the closest pair is P[{i}], Q[{j}] with KL = {K[i, j]:.8f}")
assert K.shape == (300, 120)
np.testing.assert_allclose(K, reference.kl_pairwise(P, Q), rtol=1e-9)
assert np.isclose(K[i, j], rel_entr(P[i], Q[j]).sum(), rtol=1e-9, atol=0)

# Q=None: all pairs within P; the diagonal is exactly 0 (recomputed by the exact kernel).
D = kl_fast.kl_pairwise(P)
print(f"within P: {D.shape}, diagonal max {np.abs(np.diag(D)).max()}, off-diagonal min {D[~np.eye(300, dtype=bool)].min():.6f}")
assert np.all(np.diag(D) == 0)

# A row of P with mass where a row of Q has none gives exactly +inf.
Q0 = Q.copy()
Q0[5, 0] = 0.0
assert np.isinf(kl_fast.kl_pairwise(P, Q0)[:, 5]).all()
