# Declarations of the nogil row kernels, cimportable from other Cython code:
#     from kl_fast._kernels cimport kl_row
# A module that cimports them should call kl_core_init(0) once at import so
# it uses the best instruction set (its own copy of the dispatch pointers).
from cython cimport floating

cdef extern from "kl_core.h" nogil:
    int KL_ROW_OK
    int KL_ROW_BAD
    int KL_ROW_CAREFUL
    const char *kl_core_init(int force_baseline)
    int kl_row_f64(const double *p, Py_ssize_t sp, const double *q, Py_ssize_t sq,
                   Py_ssize_t n, int check, int want_sums, double *res)
    int kl_row_f32(const float *p, Py_ssize_t sp, const float *q, Py_ssize_t sq,
                   Py_ssize_t n, int check, int want_sums, double *res)
    int kl_find_bad_f64(const double *p, Py_ssize_t sp, const double *q, Py_ssize_t sq,
                        Py_ssize_t n, int *which, Py_ssize_t *index, double *value)
    int kl_find_bad_f32(const float *p, Py_ssize_t sp, const float *q, Py_ssize_t sq,
                        Py_ssize_t n, int *which, Py_ssize_t *index, double *value)


cdef inline int kl_row(const floating *p, Py_ssize_t sp, const floating *q,
                       Py_ssize_t sq, Py_ssize_t n, bint check, bint want_sums,
                       double *res) noexcept nogil:
    """Masked sum p*log(p/q) of one row into res[0], and with want_sums the
    sums of p and q into res[1] and res[2] (else those are 0).

    Strides are in elements.  Returns KL_ROW_OK / KL_ROW_CAREFUL, or KL_ROW_BAD
    when check is set and the row holds a negative, NaN or infinite value.
    """
    if floating is double:
        return kl_row_f64(p, sp, q, sq, n, check, want_sums, res)
    else:
        return kl_row_f32(p, sp, q, sq, n, check, want_sums, res)
