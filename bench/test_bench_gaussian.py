"""pytest-benchmark suite for the Gaussian fits and evaluations: one group per case.

    python -m pytest bench/test_bench_gaussian.py --benchmark-enable --benchmark-group-by=group

Inputs are built once per case, outside the timed region; the same cases feed
``bench/compare.py`` (``--only gaussian``), which prints the ratio table.
"""
import pytest

from kl_fast.bench import cases_gaussian
from kl_fast.bench.runner import built_impls

CASES = cases_gaussian.cases(quick=False)


@pytest.mark.parametrize("case", CASES, ids=[c.group for c in CASES])
@pytest.mark.parametrize("impl", ["kl_fast", "numpy reference"])
def test_gaussian(benchmark, case, impl):
    impls = built_impls(case)
    matches = [name for name in impls if name.startswith(impl)]
    if not matches:
        pytest.skip(f"{impl} not available")
    name = case.baseline if impl == "numpy reference" and case.baseline in impls else matches[0]
    benchmark.group = case.group
    benchmark.extra_info["implementation"] = name
    benchmark(impls[name])
