"""kl_div_log: KL between distributions given as log-probabilities (e.g. logits).

Run: python examples/kl_div_log.py
"""
import numpy as np
from scipy.special import softmax

import kl_fast
from kl_fast import reference

rng = np.random.default_rng(2)
logits_p = rng.normal(size=(4, 10))
logits_q = rng.normal(size=(4, 10))
logits_p[:, 7] = -np.inf                       # a masked class: its term is 0, no NaN

# normalize=True log-softmaxes both inputs along the axis in the same pass.
kl = kl_fast.kl_div_log(logits_p, logits_q, normalize=True)
print("KL(softmax(p) || softmax(q)) per row:", np.array2string(kl, precision=8))
expected = kl_fast.kl_div(softmax(logits_p, axis=-1), softmax(logits_q, axis=-1))
np.testing.assert_allclose(kl, expected, rtol=1e-12)
np.testing.assert_allclose(kl, reference.kl_div_log(logits_p, logits_q, normalize=True), rtol=1e-12)

# -inf in log_p: the term is 0; -inf in log_q where log_p is finite: +inf.
lp = np.array([np.log(0.5), np.log(0.5), -np.inf])
lq = np.log([0.25, 0.5, 0.25])
print("KL(log [0.5, 0.5, 0] || log [0.25, 0.5, 0.25]) =", kl_fast.kl_div_log(lp, lq))
assert np.isclose(kl_fast.kl_div_log(lp, lq), 0.5 * np.log(2), rtol=1e-15)
assert kl_fast.kl_div_log(lq, lp) == np.inf
