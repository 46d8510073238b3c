"""Type aliases of the public signatures (for type checkers; no run-time role).

The result dtype follows the inputs: float32 with float32 gives float32, any
other real input computes in float64.  Whether a result is a scalar or an array
depends on the shapes, which NumPy's types do not carry; the overloads are
exact for Python numbers and lists and give a union for arrays.
"""
from __future__ import annotations

from typing import Any, Sequence, TypeVar, Union

import numpy as np
import numpy.typing as npt

ArrayLike = npt.ArrayLike
F64Array = npt.NDArray[np.float64]
F32Array = npt.NDArray[np.float32]

#: Inputs that are float32 (float32 arrays and scalars).
Float32Like = Union[F32Array, np.float32]
#: Inputs that make the computation float64 whatever the other one is: Python
#: numbers and lists of them, float64, float16, integer and boolean arrays and scalars.
Float64Like = Union[
    float, np.float64, np.float16, np.integer[Any], np.bool_,
    Sequence[float], Sequence[Sequence[float]],
    npt.NDArray[Union[np.float64, np.float16, np.integer[Any], np.bool_]],
]
#: A Python number or a flat list of them: 0-d or 1-D, so a reduction over
#: every axis of it (axis -1 or None) is a scalar.
ScalarOr1D = Union[float, Sequence[float]]
#: Lists of lists: 2-D.
Nested2D = Sequence[Sequence[float]]

Axis = Union[int, tuple[int, ...], None]

F32Result = Union[np.float32, F32Array]
F64Result = Union[np.float64, F64Array]
#: The result when the dtype of the inputs is not known statically.
FloatResult = Union[np.float32, np.float64, F32Array, F64Array]

#: The type of ``out``, returned as passed.
ArrayT = TypeVar("ArrayT", bound="np.ndarray[Any, Any]")
