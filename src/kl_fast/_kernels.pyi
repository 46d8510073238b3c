"""Type stubs for the compiled kl_fast._kernels module."""
from typing import Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

_Floating = Union[npt.NDArray[np.float32], npt.NDArray[np.float64]]

__test__: dict[str, str]
# core_table() exported to the modules that cimport it (_kernels.pxd)
__pyx_capi__: dict[str, object]

def select_isa(name: str | None = ...) -> str: ...
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
def math_map(name: str, x: _Floating, path: str) -> _Floating: ...
def available_isas() -> list[str]: ...
