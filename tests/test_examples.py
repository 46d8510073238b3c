"""Every script in examples/ runs and passes its own checks against the reference."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))
NEEDS = {"dask_kl_div.py": "dask.array"}


def test_examples_found():
    assert len(SCRIPTS) >= 9, f"examples missing from {EXAMPLES}"


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_example_runs(script, tmp_path):
    module = NEEDS.get(script.name)
    if module is not None and importlib.util.find_spec(module.split(".")[0]) is None:
        pytest.skip(f"{script.name} needs {module}")
    # Warnings are errors, as in the test suite; run outside the source tree.
    proc = subprocess.run([sys.executable, "-W", "error", str(script)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stdout.strip(), f"{script.name} printed nothing"
