"""Type stubs for the compiled kl_fast._gaussian module."""
from typing import Literal, Optional, Tuple, Union, overload

import numpy as np
import numpy.typing as npt

_Floating = Union[npt.NDArray[np.float32], npt.NDArray[np.float64]]
_F64 = npt.NDArray[np.float64]

__test__: dict[str, str]

P_OK: int
P_BAD_P: int
P_BAD_X: int
P_ZERO: int
P_OVERFLOW: int
SIGMA_NARROW: float
X_SORTED: int
P_NORMALIZED: int
MASS_SHIFT: int

FIT_CONVERGED: int
FIT_MAXITER: int
FIT_NONPOSITIVE: int
FIT_LINESEARCH: int
FIT_DEGENERATE: int
FIT_SINGULAR: int
FIT_NONFINITE: int
FIT_INTERRUPTED: int
FIT_TWO_POINTS: int
FIT_UNIFORM: int
FIT_TILT: int
FIT_RESOLVED: int

SPLIT_MIN: int
BLOCK: int
CHUNK: int

def row_threads(num_threads: object, n: int, work: float) -> int: ...
def fit_passes(newton: bool, iters: int) -> float: ...

def gaussian_psums_rows(
    p: _Floating,
    x: _F64,
    out: _F64,
    status: npt.NDArray[np.int8],
    n_threads: int,
) -> None: ...
def gaussian_eval(
    p: _Floating,
    x: _F64,
    psums: _F64,
    rows: npt.NDArray[np.intp],
    mu: _F64,
    sigma: _F64,
    out: _F64,
    order: int,
    n_threads: int,
) -> None: ...
def prepared_1d(
    p2: _Floating,
    xk: _F64,
    psums: _F64,
    mu: object,
    sigma: object,
    order: int,
    num_threads: object = ...,
) -> Optional[Tuple[np.float64, ...]]: ...
def gaussian_fit_rows(
    p: _Floating,
    x: _F64,
    psums: _F64,
    mu0: _F64,
    par0: _F64,
    newton: bool,
    variance: bool,
    lr: float,
    lr_par: float,
    iters: int,
    tol: float,
    out: _F64,
    counts: npt.NDArray[np.intc],
    hist: _F64,
    n_threads: int,
    shift: Optional[npt.NDArray[np.intc]] = ...,
) -> None: ...
@overload
def kl_grad_1d(
    p: object, x: object, mu: object, sigma: object, want_grad: Literal[False],
    num_threads: object = ...,
) -> Optional[np.float64]: ...
@overload
def kl_grad_1d(
    p: object, x: object, mu: object, sigma: object, want_grad: Literal[True],
    num_threads: object = ...,
) -> Optional[Tuple[np.float64, np.float64, np.float64]]: ...
def fit_1d(
    p: object,
    x: object,
    newton: bool,
    variance: bool,
    mu0: object,
    sigma0: object,
    lr: float,
    iters: int,
    tol: float,
    history: bool,
    num_threads: object = ...,
) -> Optional[
    Tuple[
        Tuple[float, float, float, float, float, float],
        Tuple[int, int, int],
        Optional[_F64],
    ]
]: ...
def pack_states(hist: npt.NDArray[np.float64], counts: npt.NDArray[np.intc],
                out: npt.NDArray[np.float64]) -> None: ...
