"""Type stub for the compiled Jensen-Shannon, log-space and all-pairs kernels."""
from typing import Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

_Floating = Union[npt.NDArray[np.float32], npt.NDArray[np.float64]]

def select_isa(force_baseline: bool = ...) -> str: ...
def current_isa() -> str: ...
def js_rows(
    p: _Floating, q: _Floating, out: npt.NDArray[np.float64], status: npt.NDArray[np.int8],
    normalize: bool, check: bool, n_threads: int,
) -> None: ...
def kl_log_rows(
    lp: _Floating, lq: _Floating, out: npt.NDArray[np.float64], status: npt.NDArray[np.int8],
    normalize: bool, check: bool, n_threads: int,
) -> None: ...
def kl_log_find_bad(lp: _Floating, lq: _Floating) -> Optional[Tuple[int, int, float]]: ...
def js_pairs(
    P: _Floating, Q: _Floating, a: npt.NDArray[np.float64], b: npt.NDArray[np.float64],
    out: npt.NDArray[np.float64], symmetric: bool, n_threads: int,
) -> None: ...
def kl_pairs(
    P: _Floating, Q: _Floating, rows: npt.NDArray[np.intp], cols: npt.NDArray[np.intp],
    out: npt.NDArray[np.float64], n_threads: int,
) -> None: ...
def masked_log_rows(x: npt.NDArray[np.float64], out: npt.NDArray[np.float64], n_threads: int) -> None: ...
