/* Row kernels of the masked KL sum, instantiated once per instruction-set
   target (KLM_FN gives the suffix).  No include guard on purpose. */

/* One term p*log(p/q) on the fast path; p == 0 gives 0 whatever q is. */
static inline double KLM_FN(kl_term_f64)(double p, double q)
{
    double t = p * KLM_FN(log_f64)(p / q);
    return p > 0.0 ? t : 0.0;
}

static inline float KLM_FN(kl_term_f32)(float p, float q)
{
    float t = p * KLM_FN(log_f32)(p / q);
    return p > 0.0f ? t : 0.0f;
}

/* 1 when the element needs the careful path: a value outside [0, max]
   (negative, NaN, inf) or, for p > 0, a ratio p/q outside the normal range. */
static inline double KLM_FN(kl_odd_f64)(double p, double q)
{
    double r = p / q;
    /* bitwise & and | keep this branch-free so the loop vectorises */
    int ok = (p >= 0.0) & (p <= DBL_MAX) & (q >= 0.0) & (q <= DBL_MAX);
    int ratio_ok = (r >= DBL_MIN) & (r <= DBL_MAX);
    return (ok & (ratio_ok | (p == 0.0))) ? 0.0 : 1.0;
}

static inline float KLM_FN(kl_odd_f32)(float p, float q)
{
    float r = p / q;
    int ok = (p >= 0.0f) & (p <= FLT_MAX) & (q >= 0.0f) & (q <= FLT_MAX);
    int ratio_ok = (r >= FLT_MIN) & (r <= FLT_MAX);
    return (ok & (ratio_ok | (p == 0.0f))) ? 0.0f : 1.0f;
}

#define KL_IMPL_T double
#define KL_IMPL_W double
#define KL_IMPL_TERM KLM_FN(kl_term_f64)
#define KL_IMPL_ODD KLM_FN(kl_odd_f64)
#define KL_IMPL_NAME KLM_FN(kl_row_f64_impl)
#include "kl_rows_loop.h"

#define KL_IMPL_T float
#define KL_IMPL_W float
#define KL_IMPL_TERM KLM_FN(kl_term_f32)
#define KL_IMPL_ODD KLM_FN(kl_odd_f32)
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

/* Element-wise maps of the elementary functions, for accuracy tests. */
static void KLM_FN(map_log_f64)(const double *x, double *y, ptrdiff_t n)
{ for (ptrdiff_t i = 0; i < n; i++) y[i] = KLM_FN(log_f64)(x[i]); }
static void KLM_FN(map_exp_f64)(const double *x, double *y, ptrdiff_t n)
{ for (ptrdiff_t i = 0; i < n; i++) y[i] = KLM_FN(exp_f64)(x[i]); }
static void KLM_FN(map_log_f32)(const float *x, float *y, ptrdiff_t n)
{ for (ptrdiff_t i = 0; i < n; i++) y[i] = KLM_FN(log_f32)(x[i]); }
static void KLM_FN(map_exp_f32)(const float *x, float *y, ptrdiff_t n)
{ for (ptrdiff_t i = 0; i < n; i++) y[i] = KLM_FN(exp_f32)(x[i]); }
