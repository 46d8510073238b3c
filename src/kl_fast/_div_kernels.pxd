# Declarations of the Jensen-Shannon row kernels, cimportable from other Cython
# code:
#     from kl_fast._div_kernels cimport js_row_f64
# A module that cimports them should call js_core_init(0) once at import so it
# uses the best instruction set.  The log-space KL row kernels are in the core
# table (kl_fast._kernels cimport kl_log_row).

cdef extern from "js_core.h" nogil:
    int JS_ROW_ZERO_SUM_P
    int JS_ROW_ZERO_SUM_Q
    const char *js_core_init(int force_baseline)
    int js_row_f64(const double *p, Py_ssize_t sp, const double *q, Py_ssize_t sq,
                   Py_ssize_t n, int normalize, int check, double *res)
    int js_row_f32(const float *p, Py_ssize_t sp, const float *q, Py_ssize_t sq,
                   Py_ssize_t n, int normalize, int check, double *res)
    int js_row_scaled_f64(const double *p, Py_ssize_t sp, const double *q, Py_ssize_t sq,
                          Py_ssize_t n, double a, double b, int check, double *res)
    int js_row_scaled_f32(const float *p, Py_ssize_t sp, const float *q, Py_ssize_t sq,
                          Py_ssize_t n, double a, double b, int check, double *res)
    int js_row_divided_f64(const double *p, Py_ssize_t sp, const double *q, Py_ssize_t sq,
                           Py_ssize_t n, double ps, double qs, int check, double *res)
    int js_row_divided_f32(const float *p, Py_ssize_t sp, const float *q, Py_ssize_t sq,
                           Py_ssize_t n, double ps, double qs, int check, double *res)
