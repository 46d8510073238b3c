"""pytest-benchmark suite for kl_fast.dask: a large batch in memory, on threads, on a cluster.

    python -m pytest bench/test_bench_dask.py --benchmark-enable --benchmark-group-by=group

The inputs (and the 2-worker LocalCluster, with the data persisted on it) are
built once per case, outside the timed region; the same cases feed
``bench/compare.py``.  Skipped when dask is not installed.
"""
import pytest

pytest.importorskip("dask.array")

from kl_fast.bench import cases_dask  # noqa: E402

CASES = cases_dask.cases(quick=False)


@pytest.fixture(scope="module", params=CASES, ids=[c.group for c in CASES])
def case_impls(request):
    impls = request.param.setup()
    try:
        yield request.param, impls
    finally:
        impls.close()


@pytest.mark.parametrize("impl", ["kl_fast.kl_div", "kl_fast.dask threads, ", "kl_fast.dask 2-worker"])
def test_dask(benchmark, case_impls, impl):
    case, impls = case_impls
    matches = [name for name in impls if name.startswith(impl)]
    if not matches:
        pytest.skip(f"{impl} not available")
    benchmark.group = case.group
    benchmark.extra_info["implementation"] = matches[0]
    benchmark.pedantic(impls[matches[0]], rounds=5, warmup_rounds=1)
