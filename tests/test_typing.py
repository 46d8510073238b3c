"""tests/typing/user_script.py runs: the run-time types are those it asserts for mypy.

.ci/typecheck checks the same script with ``mypy --strict``; here its
``isinstance`` checks hold the values the functions return to those types.
"""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent / "typing" / "user_script.py"


def test_user_script_runs(tmp_path):
    if importlib.util.find_spec("dask") is None:
        pytest.skip("the script calls kl_fast.dask, which needs dask")
    if sys.version_info < (3, 11) and importlib.util.find_spec("typing_extensions") is None:
        pytest.skip("assert_type needs Python 3.11 or typing_extensions")
    proc = subprocess.run([sys.executable, "-W", "error", str(SCRIPT)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stdout.rstrip().endswith("run-time types as annotated")
