"""The kernels' own log and exp, on every kernel path, against long-double NumPy."""
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


def _cpu_can(name):
    needs = {target[0]: target[2] for target in _kernels._TARGETS}.get(name, ())
    features = _kernels._cpu_features()
    return all(features.get(feature) for feature in needs)


def test_paths_reported():
    """Every path the CPU can run is loaded (when built), best first, the baseline
    last; by default the kernels run the best (unless the environment forces one)."""
    assert PATHS[-1] == "baseline"
    order = [target[0] for target in _kernels._TARGETS] + ["baseline"]
    assert PATHS == [name for name in order if name in PATHS]
    assert all(_cpu_can(name) for name in PATHS)
    forced = os.environ.get("KL_FAST_ISA") or (
        "baseline" if os.environ.get("KL_FAST_FORCE_BASELINE", "0") not in ("", "0") else None)
    assert _kernels.current_isa() == (forced or PATHS[0])


def test_select_isa_by_name_and_its_errors():
    previous = _kernels.current_isa()
    try:
        for name in PATHS:
            assert _config.select_isa(name) == name == _kernels.current_isa()
        assert _config.select_isa(True) == "baseline"
        assert _config.select_isa(False) == PATHS[0] == _config.select_isa()
        with pytest.raises(ValueError, match="'sse4' is unknown; available: "):
            _config.select_isa("sse4")
        for name in ("avx2+fma", "avx512"):
            if name not in PATHS:
                with pytest.raises(ValueError, match=f"'{name}' is not available"):
                    _config.select_isa(name)
    finally:
        _config.select_isa(previous)


@pytest.mark.parametrize("name", PATHS + ["sse4"])
def test_isa_from_the_environment(name):
    """KL_FAST_ISA picks a path at import; a name this machine cannot run fails the
    import with the available ones, rather than quietly running another path."""
    env = dict(os.environ, KL_FAST_ISA=name, KL_FAST_FORCE_BASELINE="0")
    run = subprocess.run([sys.executable, "-c", "import kl_fast; "
                          "print(kl_fast._kernels.current_isa())"],
                         env=env, capture_output=True, text=True)
    if name in PATHS:
        assert run.returncode == 0 and run.stdout.strip() == name, run.stderr
    else:
        assert run.returncode != 0
        assert f"KL_FAST_ISA='{name}'" in run.stderr and "available: " in run.stderr


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
