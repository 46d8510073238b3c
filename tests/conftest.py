import decimal
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from kl_fast import _config, _kernels

# "ci" (the default) draws the same examples on every run, so a result does not
# depend on the run; "dev" explores new ones (HYPOTHESIS_PROFILE=dev) and keeps
# the failures it finds in the local example database.
settings.register_profile(
    "ci", max_examples=60, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def rng():
    return np.random.default_rng(20261124)


@pytest.fixture(params=_kernels.available_isas())
def path(request):
    """Each kernel path this CPU can run, selected for the test, then restored."""
    previous = _kernels.current_isa()
    assert _config.select_isa(request.param) == request.param
    yield request.param
    _config.select_isa(previous)


def exact_js(p, q):
    """JS of two 1-D arrays summed in 50-digit decimal arithmetic."""
    with decimal.localcontext() as ctx:
        ctx.prec = 50
        total = decimal.Decimal(0)
        for x, y in zip(np.asarray(p, dtype=np.float64).tolist(), np.asarray(q, dtype=np.float64).tolist()):
            x, y = decimal.Decimal(x), decimal.Decimal(y)
            m = (x + y) / 2
            if x > 0:
                total += x * (x / m).ln() / 2
            if y > 0:
                total += y * (y / m).ln() / 2
        return float(total)


def mixed_rows(rng, count):
    """count pairs (p, q) of float64 rows for accuracy draws: every other row
    of 1 to 3 elements, else 1 to 40; q random, nearly equal to p (1e-3), or
    scaled over 30 decades, in turn."""
    for i in range(count):
        m = int(rng.integers(1, 4)) if i % 2 else int(rng.integers(1, 41))
        p = rng.random(m)
        q = (p * (1 + 1e-3 * rng.standard_normal(m)) if i % 3 == 1
             else rng.random(m) * 10.0 ** rng.uniform(-30, 0, m) if i % 3 == 2 else rng.random(m))
        yield p, q
