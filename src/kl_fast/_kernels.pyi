"""Type stubs for the compiled kl_fast._kernels module."""
from typing import Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

_Floating = Union[npt.NDArray[np.float32], npt.NDArray[np.float64]]

def select_isa(force_baseline: bool = ...) -> str: ...
def current_isa() -> str: ...
def openmp_enabled() -> bool: ...
def kl_rows(
    p: _Floating,
    q: _Floating,
    out: npt.NDArray[np.float64],
    status: npt.NDArray[np.int8],
    check: bool,
    n_threads: int,
    want_sums: bool = ...,
) -> None: ...
def find_bad(p: _Floating, q: _Floating) -> Optional[Tuple[int, int, float]]: ...
def row_status(
    p: _Floating, q: _Floating, check: bool = ..., want_sums: bool = ...
) -> Tuple[str, Tuple[float, float, float]]: ...
def kl_1d_fast(p: object, q: object, check: bool) -> Optional[Union[np.float64, np.float32]]: ...
def math_map(name: str, x: _Floating, path: str) -> _Floating: ...
def available_isas() -> list[str]: ...
def kl_div(
    p: object,
    q: object,
    *,
    axis: int | tuple[int, ...] | None = ...,
    keepdims: bool = ...,
    base: float | None = ...,
    normalize: bool = ...,
    dx: float | None = ...,
    out: np.ndarray | None = ...,
    num_threads: int | None = ...,
    check: bool = ...,
) -> np.floating | np.ndarray: ...
def _set_kl_div_general(func: object) -> None: ...
