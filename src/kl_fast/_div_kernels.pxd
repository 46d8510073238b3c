# Declarations of the Jensen-Shannon and log-space KL row kernels, cimportable
# from other Cython code:
#     from kl_fast._div_kernels cimport js_row_f64, kl_log_row_f64
# A module that cimports them should call js_core_init(0) and
# kl_log_core_init(0) once at import so it uses the best instruction set.

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
