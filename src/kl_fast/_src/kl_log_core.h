/* KL divergence from log-probabilities: sum exp(lp) * (lp - lq) in one pass,
   where lp = -inf means zero probability (the term is 0) and lq = -inf with lp
   finite makes the divergence +inf.  Built on kl_core.h (blocks, lanes,
   compensated totals, per-target exp) and dispatched the same way. */
#ifndef KL_LOG_CORE_H
#define KL_LOG_CORE_H

#include "kl_core.h"

#define KL_LOG_ROW_ZERO_SUM_P 4   /* normalize: log_p is -inf everywhere */
#define KL_LOG_ROW_ZERO_SUM_Q 5

/* Below this exponent exp(a) * |diff| < 2^-1074 for every finite diff. */
#define KL_LOG_NEGLIGIBLE (-1500.0)
/* Terms larger than exp(KL_LOG_SHIFT_ABOVE) are summed scaled, so no partial
   sum overflows and +inf never meets -inf. */
#define KL_LOG_SHIFT_ABOVE 600.0
#define KL_LN2 0.693147180559945309417232121458

#define KLM_FN(name) name##_base
#include "kl_log_rows_impl.h"
#undef KLM_FN

#if KL_HAVE_AVX2_PATH
#include "kl_target_avx2_begin.h"
#include "kl_log_rows_impl.h"
#include "kl_target_avx2_end.h"
#endif

/* ---- careful path: scalar, libm, exact semantics for every finite input --- */

/* log|diff| and sign of diff = (lp - lp0) - (lq - lq0), without overflow. */
static inline double kl_log_diff_log(double lp, double lq, double lp0, double lq0,
                                     double *sign)
{
    double diff = (lp - lp0) - (lq - lq0);
    if (fabs(diff) <= DBL_MAX) {
        *sign = diff;
        return log(fabs(diff));
    }
    diff = (0.5 * lp - 0.5 * lp0) - (0.5 * lq - 0.5 * lq0);
    *sign = diff;
    return log(fabs(diff)) + KL_LN2;
}

#define KL_LOG_CAREFUL(NAME, T)                                                     \
static int NAME(const T *p, ptrdiff_t sp, const T *q, ptrdiff_t sq, ptrdiff_t n,   \
                double lp0, double lq0, double *res)                                \
{                                                                                   \
    double kl = 0.0, kl_c = 0.0, shift = 0.0, sign;                                 \
    int pos_inf = 0, bad = 0;                                                       \
    /* First pass: the largest term magnitude (as a log), to pick the scale. */    \
    for (ptrdiff_t i = 0; i < n; i++) {                                             \
        double lp = (double)p[i * sp], lq = (double)q[i * sq];                      \
        if (!(lp <= DBL_MAX && lq <= DBL_MAX)) { bad = 1; continue; }               \
        if (lp > -HUGE_VAL && lq > -HUGE_VAL) {                                     \
            double la = (lp - lp0) + kl_log_diff_log(lp, lq, lp0, lq0, &sign);      \
            if (la > shift) shift = la;                                             \
        }                                                                           \
    }                                                                               \
    if (shift <= KL_LOG_SHIFT_ABOVE) shift = 0.0;                                   \
    for (ptrdiff_t start = 0; start < n; start += KL_BLOCK) {                       \
        ptrdiff_t len = n - start < KL_BLOCK ? n - start : KL_BLOCK;                \
        double acc[KL_LANES] = {0};                                                 \
        for (ptrdiff_t i = 0; i < len; i++) {                                       \
            double lp = (double)p[(start + i) * sp], lq = (double)q[(start + i) * sq]; \
            double t = 0.0;                                                         \
            if (!(lp <= DBL_MAX && lq <= DBL_MAX)) {                                \
                t = 0.0;                                                            \
            } else if (lp == -HUGE_VAL) {                                           \
                t = 0.0;                                                            \
            } else if (lq == -HUGE_VAL) {                                           \
                pos_inf = 1;                                                        \
            } else {                                                                \
                double a = lp - lp0;                                                \
                double la = a + kl_log_diff_log(lp, lq, lp0, lq0, &sign);           \
                double e = exp(a), diff = a - (lq - lq0);                           \
                if (shift != 0.0) t = copysign(exp(la - shift), sign);              \
                else if (sign == 0.0) t = 0.0;                                      \
                else if (e >= DBL_MIN && fabs(diff) <= DBL_MAX) t = e * diff;       \
                else t = copysign(exp(la), sign);                                   \
            }                                                                       \
            acc[i % KL_LANES] += t;                                                 \
        }                                                                           \
        kl_neumaier(&kl, &kl_c, KL_LANE_SUM(acc));                                  \
    }                                                                               \
    if (bad) res[0] = NAN;                                                          \
    else if (pos_inf) res[0] = HUGE_VAL;                                            \
    else if (shift == 0.0) res[0] = kl + kl_c;                                      \
    else {                                                                          \
        double s = kl + kl_c;                                                       \
        res[0] = s == 0.0 ? 0.0 : copysign(exp(shift + log(fabs(s))), s);          \
    }                                                                               \
    return KL_ROW_CAREFUL;                                                          \
}

KL_LOG_CAREFUL(kl_log_row_careful_f64, double)
KL_LOG_CAREFUL(kl_log_row_careful_f32, float)

/* First element (in row order, lp before lq) that is NaN or +inf.  Returns 1
   and fills which (0 = lp, 1 = lq), index and value, or returns 0. */
#define KL_LOG_FIND_BAD(NAME, T)                                                    \
static int NAME(const T *p, ptrdiff_t sp, const T *q, ptrdiff_t sq, ptrdiff_t n,   \
                int *which, ptrdiff_t *index, double *value)                        \
{                                                                                   \
    for (ptrdiff_t i = 0; i < n; i++) {                                             \
        double lp = (double)p[i * sp], lq = (double)q[i * sq];                      \
        if (!(lp <= DBL_MAX)) { *which = 0; *index = i; *value = lp; return 1; }    \
        if (!(lq <= DBL_MAX)) { *which = 1; *index = i; *value = lq; return 1; }    \
    }                                                                               \
    return 0;                                                                       \
}

KL_LOG_FIND_BAD(kl_log_find_bad_f64, double)
KL_LOG_FIND_BAD(kl_log_find_bad_f32, float)

/* Largest entry of each row (-inf for an empty or all -inf row); returns 1
   when the rows hold NaN or +inf. */
#define KL_LOG_MAX(NAME, T)                                                         \
static int NAME(const T *p, ptrdiff_t sp, const T *q, ptrdiff_t sq, ptrdiff_t n,   \
                double *pmax, double *qmax)                                         \
{                                                                                   \
    double mp = -HUGE_VAL, mq = -HUGE_VAL, bad = 0.0;                               \
    for (ptrdiff_t i = 0; i < n; i++) {                                             \
        double lp = (double)p[i * sp], lq = (double)q[i * sq];                      \
        bad += (lp <= DBL_MAX && lq <= DBL_MAX) ? 0.0 : 1.0;                        \
        mp = lp > mp && lp <= DBL_MAX ? lp : mp;                                    \
        mq = lq > mq && lq <= DBL_MAX ? lq : mq;                                    \
    }                                                                               \
    *pmax = mp;                                                                     \
    *qmax = mq;                                                                     \
    return bad != 0.0;                                                              \
}

KL_LOG_MAX(kl_log_max_f64, double)
KL_LOG_MAX(kl_log_max_f32_wide, float)

/* ---- dispatch ------------------------------------------------------------ */
typedef int (*kl_log_row_f64_fn)(const double *, ptrdiff_t, const double *, ptrdiff_t,
                                 ptrdiff_t, double, double, double *);
typedef int (*kl_log_row_f32_fn)(const float *, ptrdiff_t, const float *, ptrdiff_t,
                                 ptrdiff_t, double, double, double *);
typedef double (*kl_log_sumexp_f64_fn)(const double *, ptrdiff_t, ptrdiff_t, double);
typedef double (*kl_log_sumexp_f32_fn)(const float *, ptrdiff_t, ptrdiff_t, double);

typedef void (*kl_masked_log_fn)(const double *, double *, ptrdiff_t);

static kl_masked_log_fn kl_masked_log_f64 = masked_log_f64_base;
static kl_log_row_f64_fn kl_log_row_f64_fast = kl_log_row_f64_base;
static kl_log_sumexp_f64_fn kl_log_sumexp_f64_fast = kl_log_sumexp_f64_base;
/* float32: computed in float (narrow) where it can be, else in float64 (wide) */
#if defined(__GNUC__) || defined(__clang__)
#define KL_LOG_HAVE_NARROW_F32 1
static kl_log_row_f32_fn kl_log_row_f32_narrow = kl_log_row_f32_narrow_base;
static kl_log_sumexp_f32_fn kl_log_sumexp_f32_narrow = kl_log_sumexp_f32_narrow_base;
typedef int (*kl_log_max_f32_fn)(const float *, ptrdiff_t, const float *, ptrdiff_t, ptrdiff_t,
                                 double *, double *);
static kl_log_max_f32_fn kl_log_max_f32_narrow = kl_log_max_f32_narrow_base;
#else
#define KL_LOG_HAVE_NARROW_F32 0
#endif
static kl_log_row_f32_fn kl_log_row_f32_wide = kl_log_row_f32_base;
static kl_log_sumexp_f32_fn kl_log_sumexp_f32_wide = kl_log_sumexp_f32_base;

static const char *kl_log_core_init(int force_baseline)
{
    kl_masked_log_f64 = masked_log_f64_base;
    kl_log_row_f64_fast = kl_log_row_f64_base;
    kl_log_row_f32_wide = kl_log_row_f32_base;
    kl_log_sumexp_f64_fast = kl_log_sumexp_f64_base;
    kl_log_sumexp_f32_wide = kl_log_sumexp_f32_base;
#if KL_LOG_HAVE_NARROW_F32
    kl_log_row_f32_narrow = kl_log_row_f32_narrow_base;
    kl_log_sumexp_f32_narrow = kl_log_sumexp_f32_narrow_base;
    kl_log_max_f32_narrow = kl_log_max_f32_narrow_base;
#endif
#if KL_HAVE_AVX2_PATH
    if (!force_baseline && kl_cpu_has_avx2_fma()) {
        kl_masked_log_f64 = masked_log_f64_avx2;
        kl_log_row_f64_fast = kl_log_row_f64_avx2;
        kl_log_row_f32_wide = kl_log_row_f32_avx2;
        kl_log_sumexp_f64_fast = kl_log_sumexp_f64_avx2;
        kl_log_sumexp_f32_wide = kl_log_sumexp_f32_avx2;
        kl_log_row_f32_narrow = kl_log_row_f32_narrow_avx2;
        kl_log_sumexp_f32_narrow = kl_log_sumexp_f32_narrow_avx2;
        kl_log_max_f32_narrow = kl_log_max_f32_narrow_avx2;
        return "avx2+fma";
    }
#endif
    return "baseline";
}

/* float32 fast path: the float kernel, then the float64 one for a row it
   hands back (which may still return KL_ROW_NEEDS_CARE). */
static int kl_log_row_f32_fast(const float *p, ptrdiff_t sp, const float *q, ptrdiff_t sq,
                               ptrdiff_t n, double lp0, double lq0, double *res)
{
#if KL_LOG_HAVE_NARROW_F32
    int st = kl_log_row_f32_narrow(p, sp, q, sq, n, lp0, lq0, res);
    if (st != KL_ROW_NEEDS_CARE) return st;
#endif
    return kl_log_row_f32_wide(p, sp, q, sq, n, lp0, lq0, res);
}

static int kl_log_max_f32(const float *p, ptrdiff_t sp, const float *q, ptrdiff_t sq,
                          ptrdiff_t n, double *pmax, double *qmax)
{
#if KL_LOG_HAVE_NARROW_F32
    return kl_log_max_f32_narrow(p, sp, q, sq, n, pmax, qmax);
#else
    return kl_log_max_f32_wide(p, sp, q, sq, n, pmax, qmax);
#endif
}

static double kl_log_sumexp_f32_fast(const float *x, ptrdiff_t sx, ptrdiff_t n, double mx)
{
#if KL_LOG_HAVE_NARROW_F32
    if (fabs(mx) <= 0x1p16) return kl_log_sumexp_f32_narrow(x, sx, n, mx);
#endif
    return kl_log_sumexp_f32_wide(x, sx, n, mx);
}

/* exp(x + xlo) of the float kernels, as y 2^k in double (for accuracy tests);
   -1 when that path is not available. */
static int kl_log_exp_split_map(int use_avx2, const float *x, const float *xlo, double *out,
                                ptrdiff_t n)
{
    if (use_avx2) {
#if KL_HAVE_AVX2_PATH
        if (!kl_cpu_has_avx2_fma()) return -1;
        kl_map_exp_split_f32_avx2(x, xlo, out, n);
        return 0;
#else
        return -1;
#endif
    }
#if KL_LOG_HAVE_NARROW_F32
    kl_map_exp_split_f32_base(x, xlo, out, n);
    return 0;
#else
    return -1;
#endif
}

/* One row of kl_div_log: res = (KL, lp0, lq0) where lp0, lq0 are the
   log-normalisers (log-sum-exp of the row) with normalize, else 0.  Returns
   KL_ROW_OK / KL_ROW_CAREFUL / KL_ROW_BAD / KL_LOG_ROW_ZERO_SUM_P / _Q. */
#define KL_LOG_ROW(NAME, T, FAST, SUMEXP, CAREFUL, FIND_BAD, MAXF)                  \
static inline int NAME(const T *p, ptrdiff_t sp, const T *q, ptrdiff_t sq,         \
                       ptrdiff_t n, int normalize, int check, double *res)          \
{                                                                                   \
    int which, st; ptrdiff_t idx; double v;                                         \
    res[1] = 0.0;                                                                   \
    res[2] = 0.0;                                                                   \
    if (normalize) {                                                                \
        double mp, mq;                                                              \
        if (MAXF(p, sp, q, sq, n, &mp, &mq) && check                                \
                && FIND_BAD(p, sp, q, sq, n, &which, &idx, &v)) return KL_ROW_BAD;  \
        if (mp == -HUGE_VAL) return KL_LOG_ROW_ZERO_SUM_P;                          \
        if (mq == -HUGE_VAL) return KL_LOG_ROW_ZERO_SUM_Q;                          \
        res[1] = mp + log(SUMEXP(p, sp, n, mp));                                    \
        res[2] = mq + log(SUMEXP(q, sq, n, mq));                                    \
    }                                                                               \
    st = FAST(p, sp, q, sq, n, res[1], res[2], res);                                \
    if (st == KL_ROW_NEEDS_CARE) {                                                  \
        if (check && FIND_BAD(p, sp, q, sq, n, &which, &idx, &v)) return KL_ROW_BAD; \
        st = CAREFUL(p, sp, q, sq, n, res[1], res[2], res);                         \
    }                                                                               \
    return st;                                                                      \
}

KL_LOG_ROW(kl_log_row_f64, double, kl_log_row_f64_fast, kl_log_sumexp_f64_fast,
           kl_log_row_careful_f64, kl_log_find_bad_f64, kl_log_max_f64)
KL_LOG_ROW(kl_log_row_f32, float, kl_log_row_f32_fast, kl_log_sumexp_f32_fast,
           kl_log_row_careful_f32, kl_log_find_bad_f32, kl_log_max_f32)

#endif /* KL_LOG_CORE_H */
