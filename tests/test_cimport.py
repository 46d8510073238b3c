"""Other Cython code can cimport the nogil row kernels through kl_fast's .pxd, and runs
them through kl_fast's own dispatch."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import kl_fast


PYX = textwrap.dedent(
    """
    # cython: language_level=3
    from kl_fast._kernels cimport kl_row

    def kl(double[::1] p, double[::1] q):
        cdef double res[3]
        with nogil:
            kl_row(&p[0], 1, &q[0], 1, p.shape[0], True, False, res)
        return res[0]
    """
)

SETUP = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    import kl_fast
    from Cython.Build import cythonize
    from setuptools import Extension, setup
    pkg_parent = os.path.dirname(os.path.dirname(kl_fast.__file__))
    ext = Extension("use_kernels", ["use_kernels.pyx"],
                    include_dirs=[kl_fast.get_include(), np.get_include()])
    setup(name="use_kernels", ext_modules=cythonize([ext], include_path=[pkg_parent], quiet=True),
          script_args=["build_ext", "--inplace", "-q"])
    """
)


def test_cimport_row_kernel(tmp_path):
    (tmp_path / "use_kernels.pyx").write_text(PYX)
    (tmp_path / "build_it.py").write_text(SETUP)
    build = subprocess.run([sys.executable, "build_it.py"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    rng = np.random.default_rng(33)
    p = rng.random(1000)
    q = rng.random(1000)
    code = ("import numpy as np, use_kernels; "
            f"p = np.load({str(tmp_path / 'p.npy')!r}); q = np.load({str(tmp_path / 'q.npy')!r}); "
            "print(repr(use_kernels.kl(p, q)))")
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "q.npy", q)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path)] + sys.path))
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    # the same kernels through the same dispatch: the same bits
    assert float(run.stdout) == float(kl_fast.kl_div(p, q))
