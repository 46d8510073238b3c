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

/* Terms of a contiguous block: a plain loop the compiler vectorises. */
#define JS_ROW_MAPS(MAP, MAP_STRIDED, T)                                            \
static __attribute__((noinline)) void                                               \
MAP(const T *restrict p, const T *restrict q, double a, double b,                   \
    double *restrict t, ptrdiff_t len)                                              \
{                                                                                   \
    for (ptrdiff_t i = 0; i < len; i++)                                             \
        t[i] = KLM_FN(js_term_f64)(a * (double)p[i], b * (double)q[i]);             \
}                                                                                   \
static __attribute__((noinline)) void                                               \
MAP_STRIDED(const T *restrict p, ptrdiff_t sp, const T *restrict q, ptrdiff_t sq,   \
            double a, double b, double *restrict t, ptrdiff_t len)                  \
{                                                                                   \
    for (ptrdiff_t i = 0; i < len; i++)                                             \
        t[i] = KLM_FN(js_term_f64)(a * (double)p[i * sp], b * (double)q[i * sq]);   \
}

/* Scaled JS sum of one row: sum of js_term(a p_i, b q_i).  Blocks of terms go
   to an L1 buffer and are summed in the KL kernel's fixed lanes; block totals
   are added with Neumaier compensation (the order depends on n only).  A
   non-finite block total returns KL_ROW_NEEDS_CARE. */
#define JS_ROW_IMPL(NAME, MAP, MAP_STRIDED, T)                                      \
static int NAME(const T *p, ptrdiff_t sp, const T *q, ptrdiff_t sq, ptrdiff_t n,   \
                double a, double b, double *res)                                    \
{                                                                                   \
    double js = 0.0, js_c = 0.0;                                                    \
    double t[KL_BLOCK] __attribute__((aligned(32)));                                \
    for (ptrdiff_t start = 0; start < n; start += KL_BLOCK) {                       \
        ptrdiff_t len = n - start < KL_BLOCK ? n - start : KL_BLOCK;                \
        double block;                                                               \
        if (sp == 1 && sq == 1) MAP(p + start, q + start, a, b, t, len);            \
        else MAP_STRIDED(p + start * sp, sp, q + start * sq, sq, a, b, t, len);     \
        block = KLM_FN(kl_lane_sum_f64)(t, len);                                    \
        if (!(block <= DBL_MAX)) return KL_ROW_NEEDS_CARE;                          \
        js_neumaier(&js, &js_c, block);                                             \
    }                                                                               \
    res[0] = js <= DBL_MAX ? js + js_c : js;                                        \
    return KL_ROW_OK;                                                               \
}

JS_ROW_MAPS(KLM_FN(js_map_f64), KLM_FN(js_map_strided_f64), double)
JS_ROW_MAPS(KLM_FN(js_map_f32), KLM_FN(js_map_strided_f32), float)
JS_ROW_IMPL(KLM_FN(js_row_f64), KLM_FN(js_map_f64), KLM_FN(js_map_strided_f64), double)
JS_ROW_IMPL(KLM_FN(js_row_f32), KLM_FN(js_map_f32), KLM_FN(js_map_strided_f32), float)

#undef JS_ROW_MAPS
#undef JS_ROW_IMPL

#include "js_rows_f32.h"
