# The Jensen-Shannon and log-space KL row kernels, cimportable from other
# Cython code:
#     from kl_fast._div_kernels cimport js_row, kl_log_row_f64
# js_row and js_row_divided run through the one table kl_fast._kernels selected
# (core_table()); a module that cimports the log-space kernels should call
# kl_log_core_init(0) once at import so it uses the best instruction set.

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


cdef extern from "kl_log_core.h" nogil:
    int KL_LOG_ROW_ZERO_SUM_P
    int KL_LOG_ROW_ZERO_SUM_Q
    const char *kl_log_core_init(int force_baseline)
    void kl_masked_log_f64(const double *x, double *y, Py_ssize_t n)
    int kl_log_row_f64(const double *lp, Py_ssize_t sp, const double *lq, Py_ssize_t sq,
                       Py_ssize_t n, int normalize, int check, double *res)
    int kl_log_row_f32(const float *lp, Py_ssize_t sp, const float *lq, Py_ssize_t sq,
                       Py_ssize_t n, int normalize, int check, double *res)
    int kl_log_find_bad_f64(const double *lp, Py_ssize_t sp, const double *lq, Py_ssize_t sq,
                            Py_ssize_t n, int *which, Py_ssize_t *index, double *value)
    int kl_log_find_bad_f32(const float *lp, Py_ssize_t sp, const float *lq, Py_ssize_t sq,
                            Py_ssize_t n, int *which, Py_ssize_t *index, double *value)
    int kl_log_exp_split_map(int use_avx2, const float *x, const float *xlo, double *out,
                             Py_ssize_t n)
