/* Row kernels of the Jensen-Shannon sum, instantiated once per instruction-set
   target (KLM_FN gives the suffix).  No include guard on purpose.

   With s = x + y and d = (x - y) / s, the pair (x, y) contributes
       0.5 * x log(2x/s) + 0.5 * y log(2y/s) = (s / 4) * g(d),
       g(d) = (1+d) log(1+d) + (1-d) log(1-d) = sum_k d^(2k) / (k (2k-1)).
   The two logarithms cancel to first order when x is close to y, so for
   |d| < 1/2 g comes from its series (no cancellation), otherwise from the
   logarithms (cancellation by a factor of at most about 4).  Both are
   computed and one is selected, so the loop vectorises. */

/* (s / 4) * g(d) for non-negative x, y with DBL_MIN <= x + y <= DBL_MAX / 2
   (so 1 / s is finite), 0 when both are 0; NaN (the careful path's cue) for
   anything else. */
static inline double KLM_FN(js_term_f64)(double x, double y)
{
    double s = x + y;
    double inv = 1.0 / s;
    double d = (x - y) * inv;
    double z = d * d;
    double u = (x + x) * inv;   /* 1 + d */
    double v = (y + y) * inv;   /* 1 - d */
    double direct = KLM_FN(xlogy_f64)(u, u) + KLM_FN(xlogy_f64)(v, v);
    double series = z * js_series(z);
    double g = z < 0.25 ? series : direct;
    double t = (0.25 * s) * g;
    int ok = (x >= 0.0) & (y >= 0.0) & (s <= 0.5 * DBL_MAX) & ((s >= DBL_MIN) | (s == 0.0));
    return ok ? (s > 0.0 ? t : 0.0) : NAN;
}

/* Scaled JS sum of one row: sum of js_term(a p_i, b q_i).  A map loop writes
   the block's terms to an L1 buffer, then they are summed in lanes; block
   totals are added with Neumaier compensation (the order depends on n only). */
#define JS_ROW_IMPL(NAME, T)                                                         \
static inline __attribute__((always_inline)) int                                    \
NAME(const T *p, ptrdiff_t sp, const T *q, ptrdiff_t sq, ptrdiff_t n,               \
     double a, double b, double *res)                                               \
{                                                                                   \
    double js = 0.0, js_c = 0.0;                                                    \
    double t[KL_BLOCK];                                                             \
    ptrdiff_t start = 0;                                                            \
    while (start < n) {                                                             \
        ptrdiff_t len = n - start < KL_BLOCK ? n - start : KL_BLOCK;                \
        ptrdiff_t full = len - len % KL_LANES;                                      \
        double acc[KL_LANES], block;                                                \
        const T *pb = p + start * sp;                                               \
        const T *qb = q + start * sq;                                               \
        for (ptrdiff_t i = 0; i < len; i++)                                         \
            t[i] = KLM_FN(js_term_f64)(a * (double)pb[i * sp], b * (double)qb[i * sq]); \
        for (int j = 0; j < KL_LANES; j++) acc[j] = 0.0;                            \
        for (ptrdiff_t i = 0; i < full; i += KL_LANES)                              \
            for (int j = 0; j < KL_LANES; j++) acc[j] += t[i + j];                  \
        for (ptrdiff_t i = full; i < len; i++) acc[i - full] += t[i];               \
        block = KL_LANE_SUM(acc);                                                   \
        if (!(block <= DBL_MAX)) return KL_ROW_NEEDS_CARE;                          \
        kl_neumaier(&js, &js_c, block);                                             \
        start += len;                                                               \
    }                                                                               \
    res[0] = js + js_c;                                                             \
    return KL_ROW_OK;                                                               \
}

JS_ROW_IMPL(KLM_FN(js_row_f64_impl), double)
JS_ROW_IMPL(KLM_FN(js_row_f32_impl), float)

static int KLM_FN(js_row_f64)(const double *p, ptrdiff_t sp, const double *q,
                              ptrdiff_t sq, ptrdiff_t n, double a, double b, double *res)
{
    /* Constant strides let the compiler emit the contiguous loop separately. */
    if (sp == 1 && sq == 1) return KLM_FN(js_row_f64_impl)(p, 1, q, 1, n, a, b, res);
    if (sp == 1 && sq == 0) return KLM_FN(js_row_f64_impl)(p, 1, q, 0, n, a, b, res);
    return KLM_FN(js_row_f64_impl)(p, sp, q, sq, n, a, b, res);
}

static int KLM_FN(js_row_f32)(const float *p, ptrdiff_t sp, const float *q,
                              ptrdiff_t sq, ptrdiff_t n, double a, double b, double *res)
{
    if (sp == 1 && sq == 1) return KLM_FN(js_row_f32_impl)(p, 1, q, 1, n, a, b, res);
    if (sp == 1 && sq == 0) return KLM_FN(js_row_f32_impl)(p, 1, q, 0, n, a, b, res);
    return KLM_FN(js_row_f32_impl)(p, sp, q, sq, n, a, b, res);
}

#undef JS_ROW_IMPL
