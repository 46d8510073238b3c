/* Row kernels of the masked KL sum, instantiated once per instruction-set
   target (KLM_FN gives the suffix).  No include guard on purpose. */

/* One term p*log(p/q) on the fast path; p == 0 gives 0 whatever q is. */
static inline double KLM_FN(kl_term_f64)(double p, double q)
{
    double r = p / q;
    double t = p * KLM_FN(log_f64)(r);
    return p > 0.0 ? t : 0.0;
}

/* 1.0 when the element needs the careful path: a value outside [0, max]
   (negative, NaN, inf) or a ratio p/q that left the normal range. */
static inline double KLM_FN(kl_odd_f64)(double p, double q)
{
    double r = p / q;
    int bad = !(p >= 0.0 && p <= DBL_MAX && q >= 0.0 && q <= DBL_MAX);
    int ratio = p > 0.0 && !(r >= DBL_MIN && r <= DBL_MAX);
    return (bad | ratio) ? 1.0 : 0.0;
}

#define KL_IMPL_T double
#define KL_IMPL_NAME KLM_FN(kl_row_f64_impl)
#include "kl_rows_loop.h"

#define KL_IMPL_T float
#define KL_IMPL_NAME KLM_FN(kl_row_f32_impl)
#include "kl_rows_loop.h"

static int KLM_FN(kl_row_f64)(const double *p, ptrdiff_t sp, const double *q,
                              ptrdiff_t sq, ptrdiff_t n, double *res)
{
    /* Constant strides let the compiler emit the contiguous loop separately. */
    if (sp == 1 && sq == 1) return KLM_FN(kl_row_f64_impl)(p, 1, q, 1, n, res);
    if (sp == 1 && sq == 0) return KLM_FN(kl_row_f64_impl)(p, 1, q, 0, n, res);
    return KLM_FN(kl_row_f64_impl)(p, sp, q, sq, n, res);
}

static int KLM_FN(kl_row_f32)(const float *p, ptrdiff_t sp, const float *q,
                              ptrdiff_t sq, ptrdiff_t n, double *res)
{
    if (sp == 1 && sq == 1) return KLM_FN(kl_row_f32_impl)(p, 1, q, 1, n, res);
    if (sp == 1 && sq == 0) return KLM_FN(kl_row_f32_impl)(p, 1, q, 0, n, res);
    return KLM_FN(kl_row_f32_impl)(p, sp, q, sq, n, res);
}
