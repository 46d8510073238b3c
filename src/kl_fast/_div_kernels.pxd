# The Jensen-Shannon row kernels, cimportable from other Cython code:
#     from kl_fast._div_kernels cimport js_row
# They run through the one table kl_fast._kernels selected (core_table()); the
# log-space KL row kernel is kl_fast._kernels' kl_log_row.

from cython cimport floating

from kl_fast._kernels cimport core_table


cdef inline int js_row(const floating *p, Py_ssize_t sp, const floating *q, Py_ssize_t sq,
                       Py_ssize_t n, bint normalize, bint check, double *res) noexcept nogil:
    """JS of one row into res[0] (and with normalize, which divides p and q by
    their sums first, the sums into res[1:3]).  Returns ROW_OK / ROW_CAREFUL,
    ROW_BAD (check), or ROW_ZERO_SUM_P / _Q (a sum that cannot normalise)."""
    if floating is double:
        return core_table().js_row_f64(p, sp, q, sq, n, normalize, check, res)
    else:
        return core_table().js_row_f32(p, sp, q, sq, n, normalize, check, res)


cdef inline int js_row_divided(const floating *p, Py_ssize_t sp, const floating *q,
                               Py_ssize_t sq, Py_ssize_t n, double ps, double qs, bint check,
                               double *res) noexcept nogil:
    """JS of the row pair (p / ps, q / qs) into res[0], for positive finite ps and qs."""
    if floating is double:
        return core_table().js_row_divided_f64(p, sp, q, sq, n, ps, qs, check, res)
    else:
        return core_table().js_row_divided_f32(p, sp, q, sq, n, ps, qs, check, res)
