"""Type stub for the compiled Jensen-Shannon, log-space and all-pairs kernels."""
from typing import Callable, Optional, Tuple, TypeVar, Union

import numpy as np
import numpy.typing as npt

_Floating = Union[npt.NDArray[np.float32], npt.NDArray[np.float64]]

__test__: dict[str, str]
SUMS_APART: float
REFINE_FACTOR: float
REFINE_RELATIVE: float
PRODUCT_BIG: float

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
def centred_log_rows(x: npt.NDArray[np.float64], r: npt.NDArray[np.float64],
                     out: npt.NDArray[np.float64], n_threads: int) -> None: ...
def product_gamma(n: int) -> float: ...
def column_maxima(Q: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]: ...
def configure_product(blas_threaded: int, note_busy_core: Callable[[], None]) -> None: ...
def error_scales(P: npt.NDArray[np.float64], r: npt.NDArray[np.float64],
                 h: npt.NDArray[np.float64]) -> None: ...

_Result = np.floating | np.ndarray

def flag(value: object, name: str, func: str) -> bool: ...
def rows_work(func: str, m: int, n: int) -> float: ...
def entry_threads(num_threads: object, m: int, n: int, long_row: bool = ...) -> int: ...
def configure(parallel_min_elements: int, deliver: Callable[..., object]) -> None: ...
# The compiled entry returned takes the same arguments and gives the same results as
# the Python implementation registered (which it falls back to), so it has its type.
_F = TypeVar("_F", bound=Callable[..., object])

def register_general(func: str, implementation: _F) -> _F: ...
def kl_div(
    p: object, q: object, *, axis: int | tuple[int, ...] | None = ..., keepdims: bool = ...,
    base: float | None = ..., normalize: bool = ..., dx: float | None = ...,
    out: np.ndarray | None = ..., num_threads: int | None = ..., check: bool = ...,
) -> _Result: ...
def js_div(
    p: object, q: object, *, axis: int | tuple[int, ...] | None = ..., keepdims: bool = ...,
    base: float | None = ..., normalize: bool = ..., out: np.ndarray | None = ...,
    num_threads: int | None = ..., check: bool = ...,
) -> _Result: ...
def kl_div_log(
    log_p: object, log_q: object, *, axis: int | tuple[int, ...] | None = ...,
    keepdims: bool = ..., base: float | None = ..., normalize: bool = ...,
    out: np.ndarray | None = ..., num_threads: int | None = ..., check: bool = ...,
) -> _Result: ...
def kl_pairwise(
    P: object, Q: object = ..., *, base: float | None = ..., normalize: bool = ...,
    out: np.ndarray | None = ..., num_threads: int | None = ..., check: bool = ...,
) -> np.ndarray: ...
def js_pairwise(
    P: object, Q: object = ..., *, base: float | None = ..., normalize: bool = ...,
    out: np.ndarray | None = ..., num_threads: int | None = ..., check: bool = ...,
) -> np.ndarray: ...
def fast_path(
    func: str, p: object, q: object, *, axis: int | tuple[int, ...] | None = ...,
    keepdims: bool = ..., base: float | None = ..., normalize: bool = ...,
    dx: float | None = ..., out: np.ndarray | None = ..., num_threads: int | None = ...,
    check: bool = ...,
) -> Optional[object]: ...
def normalize_rescale(
    kl: npt.NDArray[np.float64], ps: npt.NDArray[np.float64], qs: npt.NDArray[np.float64],
    f32: bool, out: npt.NDArray[np.uint8],
) -> None: ...
def finish_kl(
    kl: npt.NDArray[np.float64], ps: npt.NDArray[np.float64], qs: npt.NDArray[np.float64],
    out: npt.NDArray[np.float64], normalize: bool, base: float, dx: float,
) -> None: ...
def product_form_finish(
    ob: npt.NDArray[np.float64],
    hp: npt.NDArray[np.float64], h_abs: npt.NDArray[np.float64],
    psum: npt.NDArray[np.float64], qsum: npt.NDArray[np.float64],
    log_ps: npt.NDArray[np.float64], log_qs: npt.NDArray[np.float64], normalize: bool,
    gamma: float, factor: float, redo: npt.NDArray[np.uint8],
    bound: Optional[npt.NDArray[np.float64]], n_threads: int,
) -> int: ...
def topk_upper(
    A: npt.NDArray[np.float64], E: npt.NDArray[np.float64], rows: npt.NDArray[np.intp],
    row_flags: npt.NDArray[np.uint8], col_flags: npt.NDArray[np.uint8],
    buf: npt.NDArray[np.float64],
) -> None: ...
def topk_screen(
    A: npt.NDArray[np.float64], E: npt.NDArray[np.float64], t: npt.NDArray[np.float64],
    row_flags: npt.NDArray[np.uint8], col_flags: npt.NDArray[np.uint8],
    rows: npt.NDArray[np.intp], cols: npt.NDArray[np.intp],
) -> int: ...
