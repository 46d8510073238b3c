"""pytest-benchmark suite for kl_div: one group per shape and dtype.

    python -m pytest bench/test_bench_kl.py --benchmark-enable --benchmark-group-by=group

Inputs are built once per case, outside the timed region; the same cases feed
``bench/compare.py``, which prints the ratio table.
"""
import pytest

from kl_fast.bench import cases_kl
from kl_fast.bench.runner import built_impls

CASES = cases_kl.cases(quick=False)


@pytest.mark.parametrize("case", CASES, ids=[c.group for c in CASES])
@pytest.mark.parametrize("impl", ["kl_fast", "numpy reference", "scipy rel_entr().sum()"])
def test_kl_div(benchmark, case, impl):
    impls = built_impls(case)
    matches = [name for name in impls if name.startswith(impl)]
    if not matches:
        pytest.skip(f"{impl} not available")
    benchmark.group = case.group
    benchmark.extra_info["threads"] = matches[-1]
    benchmark(impls[matches[-1]])
