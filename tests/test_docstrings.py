"""The examples in the public docstrings run and print what they show."""
import doctest
import importlib

import pytest

MODULES = ["kl_fast", "kl_fast._api", "kl_fast._divergences", "kl_fast._pairwise",
           "kl_fast.gaussian", "kl_fast._target", "kl_fast._topk", "kl_fast.dask"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    if name == "kl_fast.dask":
        pytest.importorskip("dask.array")
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"no examples found in {name}"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
