"""kl_fast.dask: the same divergences and fits, lazily, over the chunks of Dask arrays.

Needs the dask extra (pip install "kl_fast[dask]").  Run: python examples/dask_kl_div.py
"""
import dask
import dask.array as da
import numpy as np

import kl_fast
import kl_fast.dask

rng = np.random.default_rng(5)
P_np = rng.dirichlet(np.ones(200), size=2000)
q = np.full(200, 1 / 200)

# Chunked along rows and along the reduction axis: each block is one kernel pass.
P = da.from_array(P_np, chunks=(500, 50))
kl = kl_fast.dask.kl_div(P, q, normalize=True)      # lazy, shape (2000,)
values = kl.compute(scheduler="threads")
print(f"{values.shape[0]} rows over {P.npartitions} blocks: mean KL vs uniform {values.mean():.8f}")
np.testing.assert_allclose(values, kl_fast.kl_div(P_np, q, normalize=True), rtol=1e-12)

# The pairwise matrix, chunked like the rows of P by the rows of Q.
Q = da.from_array(P_np[:300], chunks=(100, 200))
K = kl_fast.dask.kl_pairwise(P[:400].rechunk((200, 200)), Q).compute(scheduler="threads")
print(f"kl_pairwise: {K.shape}")
np.testing.assert_allclose(K, kl_fast.kl_pairwise(P_np[:400], P_np[:300]), rtol=1e-12)

# One Gaussian fit per row; compute the three results together.
x = np.linspace(-5, 5, 200)
mus = rng.uniform(-1, 1, size=40)
G = np.exp(-(x - mus[:, None]) ** 2 / 2)
fit = kl_fast.dask.fit_gaussian(da.from_array(G, chunks=(10, 200)), x)
mu, sigma, kl_fit, nit, converged = dask.compute(*fit, scheduler="threads")
print(f"fit_gaussian on 40 rows: max |mu - true mu| = {np.abs(mu - mus).max():.2e}")
np.testing.assert_allclose(mu, kl_fast.fit_gaussian(G, x).mu, rtol=1e-12, atol=1e-12)
np.testing.assert_allclose(mu, mus, atol=1e-6)
