/* Row kernels of KL from log-probabilities, instantiated once per
   instruction-set target (KLM_FN gives the suffix).  No include guard on purpose.

   With log-normalisers lp0, lq0 (0 and 0 without normalisation) the term of
   element i is exp(lp - lp0) * ((lp - lq) - (lp0 - lq0)): 0 where lp = -inf,
   and the divergence is +inf where lq = -inf and lp is finite. */

/* The fast-path term, NaN (the careful path's cue) where it would not be
   exact: NaN or +inf input, exp that overflows, a difference or product that
   overflows, or exp that underflows while the term itself may not.  The +inf
   of lq == -inf with lp finite is counted apart (the term is 0 here). */
static inline double KLM_FN(kl_log_term_f64)(double lp, double lq, double lp0, double c)
{
    double a = lp - lp0;
    double e = KLM_FN(exp_f64)(a);
    double diff = (lp - lq) - c;
    double t = e * diff;
    int bad = !(lp <= DBL_MAX) | !(lq <= DBL_MAX);
    int fin = (lp > -HUGE_VAL) & (lq > -HUGE_VAL);
    int over = !(fabs(t) <= DBL_MAX) | !(fabs(diff) <= DBL_MAX);
    int under = (e < DBL_MIN) & (a > KL_LOG_NEGLIGIBLE) & (fabs(diff) > 1.0);
    int care = bad | (fin & (over | under));
    return care ? NAN : (fin ? t : 0.0);
}

/* One row: a map loop writes the block's terms to an L1 buffer (and counts
   the +inf elements), then they are summed in lanes; block totals are added
   with Neumaier compensation (the order depends on n only). */
#define KL_LOG_ROW_IMPL(NAME, T)                                                    \
static inline __attribute__((always_inline)) int                                    \
NAME(const T *p, ptrdiff_t sp, const T *q, ptrdiff_t sq, ptrdiff_t n,               \
     double lp0, double lq0, double *res)                                           \
{                                                                                   \
    double kl = 0.0, kl_c = 0.0, c = lp0 - lq0;                                     \
    double t[KL_BLOCK];                                                             \
    int pos_inf = 0;                                                                \
    ptrdiff_t start = 0;                                                            \
    while (start < n) {                                                             \
        ptrdiff_t len = n - start < KL_BLOCK ? n - start : KL_BLOCK;                \
        ptrdiff_t full = len - len % KL_LANES;                                      \
        double acc[KL_LANES], block;                                                \
        const T *pb = p + start * sp;                                               \
        const T *qb = q + start * sq;                                               \
        int ninf = 0;                                                               \
        for (ptrdiff_t i = 0; i < len; i++) {                                       \
            double lp = (double)pb[i * sp], lq = (double)qb[i * sq];                \
            t[i] = KLM_FN(kl_log_term_f64)(lp, lq, lp0, c);                         \
            ninf += (lp > -HUGE_VAL) & (lq == -HUGE_VAL);                           \
        }                                                                           \
        for (int j = 0; j < KL_LANES; j++) acc[j] = 0.0;                            \
        for (ptrdiff_t i = 0; i < full; i += KL_LANES)                              \
            for (int j = 0; j < KL_LANES; j++) acc[j] += t[i + j];                  \
        for (ptrdiff_t i = full; i < len; i++) acc[i - full] += t[i];               \
        block = KL_LANE_SUM(acc);                                                   \
        if (!(block <= DBL_MAX && block >= -DBL_MAX)) return KL_ROW_NEEDS_CARE;     \
        pos_inf |= ninf != 0;                                                       \
        kl_neumaier(&kl, &kl_c, block);                                             \
        start += len;                                                               \
    }                                                                               \
    res[0] = kl + kl_c;                                                             \
    if (!(res[0] <= DBL_MAX && res[0] >= -DBL_MAX)) return KL_ROW_NEEDS_CARE;       \
    if (pos_inf) res[0] = HUGE_VAL;                                                 \
    return KL_ROW_OK;                                                               \
}

KL_LOG_ROW_IMPL(KLM_FN(kl_log_row_f64_impl), double)
KL_LOG_ROW_IMPL(KLM_FN(kl_log_row_f32_impl), float)

static int KLM_FN(kl_log_row_f64)(const double *p, ptrdiff_t sp, const double *q,
                                  ptrdiff_t sq, ptrdiff_t n, double lp0, double lq0, double *res)
{
    /* Constant strides let the compiler emit the contiguous loop separately. */
    if (sp == 1 && sq == 1) return KLM_FN(kl_log_row_f64_impl)(p, 1, q, 1, n, lp0, lq0, res);
    if (sp == 1 && sq == 0) return KLM_FN(kl_log_row_f64_impl)(p, 1, q, 0, n, lp0, lq0, res);
    return KLM_FN(kl_log_row_f64_impl)(p, sp, q, sq, n, lp0, lq0, res);
}

static int KLM_FN(kl_log_row_f32)(const float *p, ptrdiff_t sp, const float *q,
                                  ptrdiff_t sq, ptrdiff_t n, double lp0, double lq0, double *res)
{
    if (sp == 1 && sq == 1) return KLM_FN(kl_log_row_f32_impl)(p, 1, q, 1, n, lp0, lq0, res);
    if (sp == 1 && sq == 0) return KLM_FN(kl_log_row_f32_impl)(p, 1, q, 0, n, lp0, lq0, res);
    return KLM_FN(kl_log_row_f32_impl)(p, sp, q, sq, n, lp0, lq0, res);
}

/* Sum of exp(x - mx) along a row (the log-sum-exp normaliser's sum), in the
   usual blocks, lanes and compensated block totals. */
#define KL_LOG_SUMEXP_IMPL(NAME, T)                                                 \
static double NAME(const T *x, ptrdiff_t sx, ptrdiff_t n, double mx)                \
{                                                                                   \
    double s = 0.0, s_c = 0.0;                                                      \
    double t[KL_BLOCK];                                                             \
    for (ptrdiff_t start = 0; start < n; start += KL_BLOCK) {                       \
        ptrdiff_t len = n - start < KL_BLOCK ? n - start : KL_BLOCK;                \
        ptrdiff_t full = len - len % KL_LANES;                                      \
        double acc[KL_LANES];                                                       \
        const T *xb = x + start * sx;                                               \
        for (ptrdiff_t i = 0; i < len; i++) {                                       \
            double v = (double)xb[i * sx];                                          \
            double e = KLM_FN(exp_f64)(v - mx);                                     \
            t[i] = v <= DBL_MAX ? e : 0.0;                                          \
        }                                                                           \
        for (int j = 0; j < KL_LANES; j++) acc[j] = 0.0;                            \
        for (ptrdiff_t i = 0; i < full; i += KL_LANES)                              \
            for (int j = 0; j < KL_LANES; j++) acc[j] += t[i + j];                  \
        for (ptrdiff_t i = full; i < len; i++) acc[i - full] += t[i];               \
        kl_neumaier(&s, &s_c, KL_LANE_SUM(acc));                                    \
    }                                                                               \
    return s + s_c;                                                                 \
}

KL_LOG_SUMEXP_IMPL(KLM_FN(kl_log_sumexp_f64), double)
KL_LOG_SUMEXP_IMPL(KLM_FN(kl_log_sumexp_f32), float)

#undef KL_LOG_ROW_IMPL
#undef KL_LOG_SUMEXP_IMPL
