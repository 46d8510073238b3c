"""The kernels' own log and exp, on every kernel path, against long-double NumPy."""
import re
import os
import subprocess
import sys

import numpy as np
import pytest

from kl_fast import _config, _kernels

PATHS = _kernels.available_isas()


def ulp_error(got, ref_ld, dtype):
    """|got - ref| in units of the spacing of ``dtype`` at ref (subnormals included)."""
    with np.errstate(over="ignore"):
        ref = ref_ld.astype(dtype)
    spacing = np.spacing(np.abs(ref)).astype(np.longdouble)
    with np.errstate(invalid="ignore"):
        err = np.abs(got.astype(np.longdouble) - ref_ld) / spacing
    return err


def random_positive(dtype, n, rng):
    """Random bit patterns over the whole positive range, subnormals included."""
    if dtype == np.float64:
        bits = rng.integers(1, 0x7FF0000000000000, size=n, dtype=np.uint64)
    else:
        bits = rng.integers(1, 0x7F800000, size=n, dtype=np.uint32)
    return bits.view(dtype)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_log_accuracy_whole_range(path, dtype, rng):
    finfo = np.finfo(dtype)
    x = np.concatenate([
        random_positive(dtype, 200_000, rng),
        rng.uniform(0.5, 2.0, 50_000).astype(dtype),          # near 1: cancellation
        1 + rng.uniform(-1e-6, 1e-6, 10_000).astype(dtype),
        np.array([finfo.smallest_subnormal, finfo.smallest_normal, finfo.max, 1, 2, 0.5], dtype),
    ])
    got = _kernels.math_map("log", x, path)
    ref = np.log(x.astype(np.longdouble))
    err = ulp_error(got, ref, dtype)
    assert got.dtype == dtype
    assert np.max(err) <= 2.0, x[np.argmax(err)]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exp_accuracy_whole_range(path, dtype, rng):
    lo, hi = (-745.2, 709.8) if dtype == np.float64 else (-103.98, 88.73)
    x = np.concatenate([
        rng.uniform(lo, hi, 200_000),
        rng.uniform(-1, 1, 50_000),
        rng.uniform(lo, lo + 40, 20_000),     # subnormal results
        rng.uniform(hi - 1, hi, 20_000),      # near overflow
    ]).astype(dtype)
    got = _kernels.math_map("exp", x, path)
    ref = np.exp(x.astype(np.longdouble))
    finite = ref < np.finfo(dtype).max
    err = ulp_error(got[finite], ref[finite], dtype)
    assert np.max(err) <= 2.0, x[finite][np.argmax(err)]
    np.testing.assert_array_equal(got[~finite], np.inf)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_special_values_as_libm(path, dtype):
    finfo = np.finfo(dtype)
    x = np.array([0.0, -0.0, -1.0, -finfo.smallest_subnormal, np.inf, -np.inf, np.nan,
                  finfo.smallest_subnormal, finfo.max, 1.0], dtype)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(_kernels.math_map("log", x, path), np.log(x))
    big = 710.0 if dtype == np.float64 else 89.0
    tiny = -746.0 if dtype == np.float64 else -104.0
    e = np.array([-np.inf, np.inf, np.nan, big, 1e300 if dtype == np.float64 else 1e30,
                  tiny, -1e300 if dtype == np.float64 else -1e30, 0.0, -0.0], dtype)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(_kernels.math_map("exp", e, path), np.exp(e))


def _built(module):
    import importlib.util

    return importlib.util.find_spec("kl_fast." + module) is not None


def test_paths_reported():
    """Every core build made for this platform that the CPU can run is loaded
    (a build that fails to load would leave the CPU on a slower path), best
    first, the baseline last; the kernels run the default unless the
    environment asks for another."""
    features = _kernels._cpu_features()
    expected = [name for name, module, needs, _ in _kernels._TARGETS
                if _built(module) and all(features.get(f) for f in needs)]
    assert PATHS == expected + ["baseline"]
    assert _kernels.default_isa() in PATHS
    assert _kernels.current_isa() == (_config.requested_isa() or _kernels.default_isa())


def test_select_isa_by_name_and_its_errors():
    previous = _kernels.current_isa()
    try:
        for name in PATHS:
            assert _config.select_isa(name) == name == _kernels.current_isa()
        assert _config.select_isa() == _kernels.default_isa() == _kernels.current_isa()
        with pytest.raises(ValueError, match="'sse4' is unknown; available: "):
            _config.select_isa("sse4")
        with pytest.raises(TypeError, match="isa must be a name or None"):
            _config.select_isa(True)
        for name in ("avx2+fma", "avx512"):
            if name not in PATHS:
                with pytest.raises(ValueError, match=re.escape(f"'{name}' is not available")):
                    _config.select_isa(name)
    finally:
        _config.select_isa(previous)


def _import_with(**env):
    child = dict(os.environ, KL_FAST_FORCE_BASELINE="0")
    child.pop("KL_FAST_ISA", None)
    child.update(env)
    return subprocess.run([sys.executable, "-c", "import kl_fast; "
                           "print(kl_fast._kernels.current_isa())"],
                          env=child, capture_output=True, text=True)


@pytest.mark.parametrize("name", PATHS + ["AVX2", "sse4"])
def test_isa_from_the_environment(name):
    """KL_FAST_ISA picks a path at import (any case; "avx2" is avx2+fma); a name
    this machine cannot run fails the import with the available ones, rather
    than quietly running another path."""
    run = _import_with(KL_FAST_ISA=name)
    wanted = "avx2+fma" if name.lower() == "avx2" else name
    if wanted in PATHS:
        assert run.returncode == 0 and run.stdout.strip() == wanted, run.stderr
    else:
        assert run.returncode != 0
        assert f"RuntimeError: kl_fast: KL_FAST_ISA='{name}'" in run.stderr
        assert "available: " in run.stderr


def test_isa_and_force_baseline_must_agree():
    run = _import_with(KL_FAST_ISA="baseline", KL_FAST_FORCE_BASELINE="1")
    assert run.returncode == 0 and run.stdout.strip() == "baseline", run.stderr
    run = _import_with(KL_FAST_ISA=PATHS[0] if PATHS[0] != "baseline" else "avx512",
                       KL_FAST_FORCE_BASELINE="1")
    assert run.returncode != 0
    assert "KL_FAST_FORCE_BASELINE=1 ask for different kernel paths" in run.stderr


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kernel_log_of_normal_ratios(path, dtype, rng):
    """The KL kernels' log, valid on normal positive finite values (the rest go
    to the careful path), over every binade and near 1."""
    finfo = np.finfo(dtype)
    x = np.concatenate([
        random_positive(dtype, 200_000, rng),
        rng.uniform(0.5, 2.0, 50_000).astype(dtype),
        1 + rng.uniform(-1e-6, 1e-6, 10_000).astype(dtype),
        np.array([finfo.smallest_normal, finfo.max, 1, 2, 0.5], dtype),
    ])
    x = x[x >= finfo.smallest_normal]
    got = _kernels.math_map("log_normal", x, path)
    err = ulp_error(got, np.log(x.astype(np.longdouble)), dtype)
    assert np.max(err) <= 2.0, x[np.argmax(err)]
