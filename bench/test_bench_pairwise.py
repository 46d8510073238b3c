"""pytest-benchmark suite for the all-pairs matrices, js_div and kl_div_log: one
group per shape and dtype.

    python -m pytest bench/test_bench_pairwise.py --benchmark-enable --benchmark-group-by=group

Inputs are built once per case, outside the timed region; the same cases feed
``bench/compare.py``, which prints the ratio table.
"""
import pytest

from kl_fast.bench import cases_pairwise
from kl_fast.bench.runner import built_impls

CASES = cases_pairwise.cases(quick=False)


@pytest.mark.parametrize("case", CASES, ids=[c.group for c in CASES])
@pytest.mark.parametrize("impl", ["kl_fast", "numpy reference", "numpy matmul form", "scipy"])
def test_pairwise(benchmark, case, impl):
    impls = built_impls(case)
    matches = [name for name in impls if name.startswith(impl)]
    if not matches:
        pytest.skip(f"{impl} not available for this case")
    benchmark.group = case.group
    benchmark.extra_info["implementation"] = matches[-1]
    if impl == "numpy reference" and case.group.startswith("kl_pairwise"):
        # the broadcast baseline takes seconds per call at this size
        benchmark.pedantic(impls[matches[-1]], rounds=3, iterations=1)
    else:
        benchmark(impls[matches[-1]])
