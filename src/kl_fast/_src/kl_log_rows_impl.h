/* Row kernels of KL from log-probabilities, instantiated once per
   instruction-set target (KLM_FN gives the suffix).  No include guard on purpose.

   With log-normalisers lp0, lq0 (0 and 0 without normalisation) the term of
   element i is exp(lp - lp0) * ((lp - lp0) - (lq - lq0)): 0 where lp = -inf,
   and the divergence is +inf where lq = -inf and lp is finite. */

/* The fast-path term, NaN (the careful path's cue) where it would not be
   exact: NaN or +inf input, exp that overflows, a difference or product that
   overflows, or exp that underflows while the term itself may not.  The +inf
   of lq == -inf with lp finite is counted apart (the term is 0 here). */
static inline double KLM_FN(kl_log_term_f64)(double lp, double lq, double lp0, double lq0)
{
    double a = lp - lp0;
    double e = KLM_FN(exp_f64)(a);
    /* each input minus its own normaliser first: (lp - lq) - (lp0 - lq0) would
       cancel when lp0 and lq0 are large (lp0 = 1e15 left no correct digit) */
    double diff = a - (lq - lq0);
    double t = e * diff;
    int bad = !(lp <= DBL_MAX) | !(lq <= DBL_MAX);
    int fin = (lp > -HUGE_VAL) & (lq > -HUGE_VAL);
    int over = !(fabs(t) <= DBL_MAX) | !(fabs(diff) <= DBL_MAX);
    int under = (e < DBL_MIN) & (a > KL_LOG_NEGLIGIBLE) & (fabs(diff) > 1.0);
    int care = bad | (fin & (over | under));
    return care ? NAN : (fin ? t : 0.0);
}

/* Terms of a block into t; returns how many elements make the divergence
   +inf (lq == -inf with lp finite).  The contiguous loop vectorises. */
#define KL_LOG_MAPS(MAP, MAP_STRIDED, T)                                            \
static __attribute__((noinline)) int                                                \
MAP(const T *restrict p, const T *restrict q, double lp0, double lq0,               \
    double *restrict t, ptrdiff_t len)                                              \
{                                                                                   \
    int ninf = 0;                                                                   \
    for (ptrdiff_t i = 0; i < len; i++) {                                           \
        double lp = (double)p[i], lq = (double)q[i];                                \
        t[i] = KLM_FN(kl_log_term_f64)(lp, lq, lp0, lq0);                           \
        ninf += (lp > -HUGE_VAL) & (lq == -HUGE_VAL);                               \
    }                                                                               \
    return ninf;                                                                    \
}                                                                                   \
static __attribute__((noinline)) int                                                \
MAP_STRIDED(const T *restrict p, ptrdiff_t sp, const T *restrict q, ptrdiff_t sq,   \
            double lp0, double lq0, double *restrict t, ptrdiff_t len)              \
{                                                                                   \
    int ninf = 0;                                                                   \
    for (ptrdiff_t i = 0; i < len; i++) {                                           \
        double lp = (double)p[i * sp], lq = (double)q[i * sq];                      \
        t[i] = KLM_FN(kl_log_term_f64)(lp, lq, lp0, lq0);                           \
        ninf += (lp > -HUGE_VAL) & (lq == -HUGE_VAL);                               \
    }                                                                               \
    return ninf;                                                                    \
}

/* One row: blocks of terms in an L1 buffer summed in the KL kernel's fixed
   lanes, block totals added with Neumaier compensation (the order depends on
   n only).  A non-finite block total returns KL_ROW_NEEDS_CARE. */
#define KL_LOG_ROW_IMPL(NAME, MAP, MAP_STRIDED, T)                                  \
static int NAME(const T *p, ptrdiff_t sp, const T *q, ptrdiff_t sq, ptrdiff_t n,   \
                double lp0, double lq0, double *res)                                \
{                                                                                   \
    double kl = 0.0, kl_c = 0.0;                                                    \
    double t[KL_BLOCK] __attribute__((aligned(32)));                                \
    int ninf = 0;                                                                   \
    for (ptrdiff_t start = 0; start < n; start += KL_BLOCK) {                       \
        ptrdiff_t len = n - start < KL_BLOCK ? n - start : KL_BLOCK;                \
        double block;                                                               \
        if (sp == 1 && sq == 1) ninf |= MAP(p + start, q + start, lp0, lq0, t, len); \
        else ninf |= MAP_STRIDED(p + start * sp, sp, q + start * sq, sq, lp0, lq0, t, len); \
        block = KLM_FN(kl_lane_sum_f64)(t, len);                                    \
        if (!(block <= DBL_MAX && block >= -DBL_MAX)) return KL_ROW_NEEDS_CARE;     \
        kl_neumaier(&kl, &kl_c, block);                                             \
    }                                                                               \
    res[0] = kl + kl_c;                                                             \
    if (!(res[0] <= DBL_MAX && res[0] >= -DBL_MAX)) return KL_ROW_NEEDS_CARE;       \
    if (ninf) res[0] = HUGE_VAL;                                                    \
    return KL_ROW_OK;                                                               \
}

KL_LOG_MAPS(KLM_FN(kl_log_map_f64), KLM_FN(kl_log_map_strided_f64), double)
KL_LOG_MAPS(KLM_FN(kl_log_map_f32), KLM_FN(kl_log_map_strided_f32), float)
KL_LOG_ROW_IMPL(KLM_FN(kl_log_row_f64), KLM_FN(kl_log_map_f64), KLM_FN(kl_log_map_strided_f64), double)
KL_LOG_ROW_IMPL(KLM_FN(kl_log_row_f32), KLM_FN(kl_log_map_f32), KLM_FN(kl_log_map_strided_f32), float)

/* Sum of exp(x - mx) along a row (the log-sum-exp normaliser's sum), in the
   usual blocks, lanes and compensated block totals. */
#define KL_LOG_SUMEXP_IMPL(NAME, T)                                                 \
static double NAME(const T *x, ptrdiff_t sx, ptrdiff_t n, double mx)                \
{                                                                                   \
    double s = 0.0, s_c = 0.0;                                                      \
    double t[KL_BLOCK] __attribute__((aligned(32)));                                \
    for (ptrdiff_t start = 0; start < n; start += KL_BLOCK) {                       \
        ptrdiff_t len = n - start < KL_BLOCK ? n - start : KL_BLOCK;                \
        const T *xb = x + start * sx;                                               \
        for (ptrdiff_t i = 0; i < len; i++) {                                       \
            double v = (double)xb[i * sx];                                          \
            double e = KLM_FN(exp_f64)(v - mx);                                     \
            t[i] = v <= DBL_MAX ? e : 0.0;                                          \
        }                                                                           \
        kl_neumaier(&s, &s_c, KLM_FN(kl_lane_sum_f64)(t, len));                     \
    }                                                                               \
    return s + s_c;                                                                 \
}

KL_LOG_SUMEXP_IMPL(KLM_FN(kl_log_sumexp_f64), double)
KL_LOG_SUMEXP_IMPL(KLM_FN(kl_log_sumexp_f32), float)

/* y = log(x) where x > 0 and 0 where x == 0: the log matrix of the all-pairs
   KL product, whose zeros are handled apart.  A plain loop that vectorises. */
static __attribute__((noinline)) void
KLM_FN(masked_log_f64)(const double *restrict x, double *restrict y, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++) {
        double l = KLM_FN(log_f64)(x[i]);
        y[i] = x[i] > 0.0 ? l : 0.0;
    }
}

#undef KL_LOG_ROW_IMPL
#undef KL_LOG_SUMEXP_IMPL

#include "kl_log_rows_f32.h"
