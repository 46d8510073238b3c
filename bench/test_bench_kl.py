"""pytest-benchmark suite for kl_div: one group per shape and dtype.

    python -m pytest bench/test_bench_kl.py --benchmark-enable --benchmark-group-by=group

Inputs are built once per case, outside the timed region; the same cases feed
``bench/compare.py``, which prints the ratio table.
"""
import pytest

from kl_fast.bench import cases_kl

CASES = cases_kl.cases(quick=False)
_BUILT = {}


def _impls(case):
    if case.group not in _BUILT:
        _BUILT.clear()  # keep one case's inputs in memory at a time
        _BUILT[case.group] = case.setup()
    return _BUILT[case.group]


@pytest.mark.parametrize("case", CASES, ids=[c.group for c in CASES])
@pytest.mark.parametrize("impl", ["kl_fast", "numpy reference", "scipy rel_entr().sum()"])
def test_kl_div(benchmark, case, impl):
    impls = _impls(case)
    matches = [name for name in impls if name.startswith(impl)]
    if not matches:
        pytest.skip(f"{impl} not available")
    benchmark.group = case.group
    benchmark.extra_info["threads"] = matches[-1]
    benchmark(impls[matches[-1]])
