"""kl_topk: for each query distribution, the k nearest of a large collection by KL,
without the full matrix of divergences.

Run: python examples/kl_topk.py
"""
import numpy as np

import kl_fast

rng = np.random.default_rng(0)
queries = rng.dirichlet(np.ones(32), size=200)          # 200 histograms of 32 bins
collection = rng.dirichlet(np.ones(32), size=20_000)    # candidates
collection[1234] = queries[7]                            # an exact copy of query 7

values, indices = kl_fast.kl_topk(queries, collection, 5)
print("query 7: nearest", indices[7].tolist(), "KL", values[7].round(4).tolist())
assert indices[7, 0] == 1234 and values[7, 0] == 0.0

# The same as sorting the exact divergences of every pair (kl_div broadcast, row kernel).
rows = [0, 7, 199]
full = kl_fast.kl_div(queries[rows][:, None], collection[None])
order = np.lexsort((np.broadcast_to(np.arange(full.shape[1]), full.shape), full), axis=1)[:, :5]
assert np.array_equal(indices[rows], order)
assert np.array_equal(values[rows], np.take_along_axis(full, order, axis=1))

# Jensen-Shannon and the reverse direction KL(Q_j || P_i).
js_values, js_indices = kl_fast.kl_topk(queries, collection, 3, divergence="js", base=2)
rev_values, rev_indices = kl_fast.kl_topk(queries, collection, 3, divergence="kl_reverse")
assert js_indices[7, 0] == 1234 and rev_indices[7, 0] == 1234
print("JS (bits) of query 0's nearest:", js_values[0].round(4).tolist())
