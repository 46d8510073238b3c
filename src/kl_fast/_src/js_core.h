/* Jensen-Shannon row kernels: JS(p, q) = 0.5 KL(p || m) + 0.5 KL(q || m) with
   m = (p + q) / 2, in one pass.  Built on kl_core.h (blocks, lanes, compensated
   totals, the bad-value finder and the per-target log) and dispatched the same
   way: js_core_init() picks the AVX2+FMA instantiation when the CPU has it. */
#ifndef JS_CORE_H
#define JS_CORE_H

#include "kl_core.h"

#define JS_ROW_ZERO_SUM_P 4   /* normalize: p sums to 0 or overflows */
#define JS_ROW_ZERO_SUM_Q 5

/* g(d) / d^2 as its series in z = d^2: coefficient k is 1 / ((k+1)(2k+1)).
   For z < 1/4 the first omitted term is below 1e-18 relative. */
static inline double js_series(double z)
{
    return 1.0 + z * (1.0/6 + z * (1.0/15 + z * (1.0/28 + z * (1.0/45 + z * (1.0/66
        + z * (1.0/91 + z * (1.0/120 + z * (1.0/153 + z * (1.0/190 + z * (1.0/231
        + z * (1.0/276 + z * (1.0/325 + z * (1.0/378 + z * (1.0/435 + z * (1.0/496
        + z * (1.0/561 + z * (1.0/630 + z * (1.0/703 + z * (1.0/780 + z * (1.0/861
        + z * (1.0/946 + z * (1.0/1035 + z * (1.0/1128 + z * (1.0/1225))))))))))))))))))))))));
}

/* Neumaier's compensated addition of x into (*s, *c), keeping an overflowing
   sum: once s + x is infinite the compensation (inf - inf = NaN) is skipped,
   so s + c stays +inf. */
static inline void js_neumaier(double *s, double *c, double x)
{
    double t = *s + x;
    if (t - t == 0.0) {   /* t finite */
        if (fabs(*s) >= fabs(x)) *c += (*s - t) + x;
        else *c += (x - t) + *s;
    }
    *s = t;
}

/* ---- per-target instantiations (klmath.h was instantiated by kl_core.h) -- */
#define KLM_FN(name) name##_base
#include "js_rows_impl.h"
#undef KLM_FN

#if KL_HAVE_AVX2_PATH
#include "kl_target_avx2_begin.h"
#include "js_rows_impl.h"
#include "kl_target_avx2_end.h"
#endif

/* ---- careful path: scalar, libm; the term is homogeneous of degree 1, so a
   pair too large (x + y near overflow) or too small (1 / (x + y) overflows)
   is scaled by a power of two first. */
static inline double js_term_careful(double x, double y)
{
    double s, inv, d, z, u, v, g;
    if (!(x >= 0.0 && y >= 0.0 && x <= DBL_MAX && y <= DBL_MAX)) return NAN;
    if (!(x + y <= 0.5 * DBL_MAX)) return 4.0 * js_term_careful(0.25 * x, 0.25 * y);
    s = x + y;
    if (!(s > 0.0)) return 0.0;
    if (s < DBL_MIN) return 0x1p-54 * js_term_careful(0x1p54 * x, 0x1p54 * y);
    inv = 1.0 / s;
    d = (x - y) * inv;
    z = d * d;
    if (z < 0.25) {
        g = z * js_series(z);
    } else {
        u = (x + x) * inv;
        v = (y + y) * inv;
        g = (u > 0.0 ? u * log(u) : 0.0) + (v > 0.0 ? v * log(v) : 0.0);
    }
    return (0.25 * s) * g;
}

#define JS_CAREFUL(NAME, T)                                                         \
static int NAME(const T *p, ptrdiff_t sp, const T *q, ptrdiff_t sq, ptrdiff_t n,   \
                double a, double b, double *res)                                    \
{                                                                                   \
    double js = 0.0, js_c = 0.0;                                                    \
    for (ptrdiff_t start = 0; start < n; start += KL_BLOCK) {                       \
        ptrdiff_t len = n - start < KL_BLOCK ? n - start : KL_BLOCK;                \
        double acc[KL_LANES] = {0};                                                 \
        for (ptrdiff_t i = 0; i < len; i++) {                                       \
            double x = a * (double)p[(start + i) * sp];                             \
            double y = b * (double)q[(start + i) * sq];                             \
            acc[i % KL_LANES] += js_term_careful(x, y);                             \
        }                                                                           \
        js_neumaier(&js, &js_c, KL_LANE_SUM(acc));                                  \
    }                                                                               \
    res[0] = js <= DBL_MAX ? js + js_c : js;                                        \
    return KL_ROW_CAREFUL;                                                          \
}

JS_CAREFUL(js_row_careful_f64, double)
JS_CAREFUL(js_row_careful_f32, float)

/* Row sums of p and q in the KL kernel's order (so they equal its sums bit for
   bit).  Returns 1 when the row holds a negative, NaN or infinite value. */
#define JS_SUMS(NAME, T)                                                            \
static int NAME(const T *p, ptrdiff_t sp, const T *q, ptrdiff_t sq, ptrdiff_t n,   \
                double *psum, double *qsum)                                         \
{                                                                                   \
    double ps = 0.0, ps_c = 0.0, qs = 0.0, qs_c = 0.0;                              \
    double bad = 0.0;                                                               \
    for (ptrdiff_t start = 0; start < n; start += KL_BLOCK) {                       \
        ptrdiff_t len = n - start < KL_BLOCK ? n - start : KL_BLOCK;                \
        double b[KL_LANES] = {0}, c[KL_LANES] = {0};                                \
        for (ptrdiff_t i = 0; i < len; i++) {                                       \
            double pv = (double)p[(start + i) * sp];                                \
            double qv = (double)q[(start + i) * sq];                                \
            b[i % KL_LANES] += pv;                                                  \
            c[i % KL_LANES] += qv;                                                  \
            bad += (pv >= 0.0 && pv <= DBL_MAX && qv >= 0.0 && qv <= DBL_MAX) ? 0.0 : 1.0; \
        }                                                                           \
        kl_neumaier(&ps, &ps_c, KL_LANE_SUM(b));                                    \
        kl_neumaier(&qs, &qs_c, KL_LANE_SUM(c));                                    \
    }                                                                               \
    /* an overflowing sum stays +inf (the compensation would make it NaN) */     \
    *psum = ps <= DBL_MAX ? ps + ps_c : ps;                                         \
    *qsum = qs <= DBL_MAX ? qs + qs_c : qs;                                         \
    return bad != 0.0;                                                              \
}

JS_SUMS(js_sums_f64, double)
JS_SUMS(js_sums_f32, float)

/* ---- dispatch ------------------------------------------------------------ */
typedef int (*js_row_f64_fn)(const double *, ptrdiff_t, const double *, ptrdiff_t, ptrdiff_t,
                             double, double, double *);
typedef int (*js_row_f32_fn)(const float *, ptrdiff_t, const float *, ptrdiff_t, ptrdiff_t,
                             double, double, double *);

static js_row_f64_fn js_row_f64_fast = js_row_f64_base;
/* float32: computed in float (narrow) where it can be, else in float64 (wide) */
#if defined(__GNUC__) || defined(__clang__)
#define JS_HAVE_NARROW_F32 1
static js_row_f32_fn js_row_f32_narrow = js_row_f32_narrow_base;
#else
#define JS_HAVE_NARROW_F32 0
#endif
static js_row_f32_fn js_row_f32_wide = js_row_f32_base;

static const char *js_core_init(int force_baseline)
{
    js_row_f64_fast = js_row_f64_base;
    js_row_f32_wide = js_row_f32_base;
#if JS_HAVE_NARROW_F32
    js_row_f32_narrow = js_row_f32_narrow_base;
#endif
#if KL_HAVE_AVX2_PATH
    if (!force_baseline && kl_cpu_has_avx2_fma()) {
        js_row_f64_fast = js_row_f64_avx2;
        js_row_f32_wide = js_row_f32_avx2;
        js_row_f32_narrow = js_row_f32_narrow_avx2;
        return "avx2+fma";
    }
#endif
    return "baseline";
}

/* float32 fast path: the float kernel, then the float64 one for a row it
   hands back (either may still return KL_ROW_NEEDS_CARE). */
static int js_row_f32_fast(const float *p, ptrdiff_t sp, const float *q, ptrdiff_t sq,
                           ptrdiff_t n, double a, double b, double *res)
{
#if JS_HAVE_NARROW_F32
    int st = js_row_f32_narrow(p, sp, q, sq, n, a, b, res);
    if (st != KL_ROW_NEEDS_CARE) return st;
#endif
    return js_row_f32_wide(p, sp, q, sq, n, a, b, res);
}

/* JS of the scaled row pair (a p, b q) into res[0]; no validation beyond
   what check asks for.  Returns KL_ROW_OK / KL_ROW_CAREFUL / KL_ROW_BAD. */
#define JS_ROW_SCALED(NAME, T, FAST, CAREFUL, FIND_BAD)                             \
static inline int NAME(const T *p, ptrdiff_t sp, const T *q, ptrdiff_t sq,         \
                       ptrdiff_t n, double a, double b, int check, double *res)     \
{                                                                                   \
    int st = FAST(p, sp, q, sq, n, a, b, res);                                      \
    if (st == KL_ROW_NEEDS_CARE) {                                                  \
        int which; ptrdiff_t idx; double v;                                         \
        if (check && FIND_BAD(p, sp, q, sq, n, &which, &idx, &v)) return KL_ROW_BAD; \
        st = CAREFUL(p, sp, q, sq, n, a, b, res);                                   \
    }                                                                               \
    return st;                                                                      \
}

JS_ROW_SCALED(js_row_scaled_f64, double, js_row_f64_fast, js_row_careful_f64, kl_find_bad_f64)
JS_ROW_SCALED(js_row_scaled_f32, float, js_row_f32_fast, js_row_careful_f32, kl_find_bad_f32)

/* JS of the row pair (p / ps, q / qs) into res[0], for positive finite ps and
   qs (the row sums with normalize, 1 otherwise).  When 1 / ps or 1 / qs
   overflows (a sum below 2**-1024) the pair is scaled by 2**-64 and the result
   by 2**64 (the JS sum is homogeneous of degree 1 in the pair). */
#define JS_ROW_DIVIDED(NAME, T, SCALED)                                             \
static inline int NAME(const T *p, ptrdiff_t sp, const T *q, ptrdiff_t sq,         \
                       ptrdiff_t n, double ps, double qs, int check, double *res)   \
{                                                                                   \
    double a = 1.0 / ps, b = 1.0 / qs;                                              \
    int st;                                                                         \
    if (a <= DBL_MAX && b <= DBL_MAX) return SCALED(p, sp, q, sq, n, a, b, check, res); \
    a = ps <= 0x1p960 ? 1.0 / (ps * 0x1p64) : 0x1p-64 * (1.0 / ps);                \
    b = qs <= 0x1p960 ? 1.0 / (qs * 0x1p64) : 0x1p-64 * (1.0 / qs);                \
    st = SCALED(p, sp, q, sq, n, a, b, check, res);                                 \
    res[0] *= 0x1p64;                                                               \
    return st;                                                                      \
}

JS_ROW_DIVIDED(js_row_divided_f64, double, js_row_scaled_f64)
JS_ROW_DIVIDED(js_row_divided_f32, float, js_row_scaled_f32)

/* One row of js_div: res = (JS, sum p, sum q); the sums only with normalize,
   which divides p and q by their sums first (a zero or overflowing sum gives
   JS_ROW_ZERO_SUM_P / _Q). */
#define JS_ROW(NAME, T, SUMS, DIVIDED, FIND_BAD)                                    \
static inline int NAME(const T *p, ptrdiff_t sp, const T *q, ptrdiff_t sq,         \
                       ptrdiff_t n, int normalize, int check, double *res)          \
{                                                                                   \
    double ps = 1.0, qs = 1.0;                                                      \
    if (normalize) {                                                                \
        int which; ptrdiff_t idx; double v;                                         \
        if (SUMS(p, sp, q, sq, n, &res[1], &res[2]) && check                        \
                && FIND_BAD(p, sp, q, sq, n, &which, &idx, &v)) return KL_ROW_BAD;  \
        if (!(res[1] > 0.0 && res[1] <= DBL_MAX)) return JS_ROW_ZERO_SUM_P;         \
        if (!(res[2] > 0.0 && res[2] <= DBL_MAX)) return JS_ROW_ZERO_SUM_Q;         \
        ps = res[1];                                                                \
        qs = res[2];                                                                \
    }                                                                               \
    return DIVIDED(p, sp, q, sq, n, ps, qs, check, res);                            \
}

JS_ROW(js_row_f64, double, js_sums_f64, js_row_divided_f64, kl_find_bad_f64)
JS_ROW(js_row_f32, float, js_sums_f32, js_row_divided_f32, kl_find_bad_f32)

#endif /* JS_CORE_H */
