"""kl_fast: fast, exact Kullback-Leibler divergences with a compiled core.

>>> import kl_fast
>>> round(float(kl_fast.kl_div([0.5, 0.5], [0.9, 0.1])), 6)
0.510826
"""
from ._openmp import brief_spin

with brief_spin():  # the OpenMP runtime reads its settings as it loads (see _openmp)
    from . import _div_kernels, _kernels, reference
from ._api import kl_div
from ._divergences import js_div, kl_div_log
from ._pairwise import js_pairwise, kl_pairwise
from ._config import openmp_enabled, show_config
from .gaussian import FitStatus, GaussianFit, fit_gaussian, gaussian_kl, gaussian_kl_grad
from ._target import GaussianTarget
from ._topk import kl_topk

__version__ = "0.1.0"


def get_include() -> str:
    """Directory of kl_fast's C header (kl_math.h, the kernels' inline math), for C or
    Cython code built against kl_fast.

    >>> import os, kl_fast
    >>> os.path.exists(os.path.join(kl_fast.get_include(), "kl_math.h"))
    True
    """
    import os

    return os.path.join(os.path.dirname(__file__), "_src")

__all__ = [
    "kl_div", "kl_pairwise", "kl_topk", "js_div", "js_pairwise", "kl_div_log",
    "gaussian_kl", "gaussian_kl_grad", "fit_gaussian", "GaussianFit", "FitStatus", "GaussianTarget",
    "openmp_enabled", "show_config", "get_include", "reference", "__version__",
]
