# The row kernels, cimportable from other Cython code:
#     from kl_fast._kernels cimport kl_row
# Every caller goes through the one table kl_fast._kernels selected at import
# (core_table()), so a cimporting module runs the same instruction set.
from cython cimport floating

from kl_fast._core_table cimport CoreTable, ROW_BAD, ROW_CAREFUL, ROW_OK


cdef const CoreTable *core_table() noexcept nogil


cdef inline int kl_row(const floating *p, Py_ssize_t sp, const floating *q,
                       Py_ssize_t sq, Py_ssize_t n, bint check, bint want_sums,
                       double *res) noexcept nogil:
    """Masked sum p*log(p/q) of one row into res[0], and with want_sums the
    sums of p and q into res[1] and res[2] (else those are 0).

    Strides are in elements.  Returns ROW_OK / ROW_CAREFUL, or ROW_BAD when
    check is set and the row holds a negative, NaN or infinite value.
    """
    if floating is double:
        return core_table().kl_row_f64(p, sp, q, sq, n, check, want_sums, res)
    else:
        return core_table().kl_row_f32(p, sp, q, sq, n, check, want_sums, res)
