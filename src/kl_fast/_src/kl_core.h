/* C core of kl_fast: row kernels compiled for the baseline target and, on
   x86-64 with GCC or Clang, again for AVX2+FMA; kl_core_init() picks one at
   import time from what the CPU supports. */
#ifndef KL_CORE_H
#define KL_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include <float.h>

#define KL_LANES 8
#define KL_BLOCK 256

#define KL_ROW_OK 0
#define KL_ROW_BAD 1          /* a negative, NaN or infinite input (check=True) */
#define KL_ROW_NEEDS_CARE 2   /* internal: recompute the row on the careful path */
#define KL_ROW_CAREFUL 3      /* computed on the careful path */

/* Fixed pairwise order of the lane totals: the result never depends on threads. */
#define KL_LANE_SUM(v) ((((v)[0] + (v)[1]) + ((v)[2] + (v)[3])) + (((v)[4] + (v)[5]) + ((v)[6] + (v)[7])))

/* Points PTR (a const T *) at a contiguous copy of its LEN elements of
   stride STRIDE in BUF, unless STRIDE is 1: row kernels gather strided (or
   broadcast, stride 0) operands a block at a time into L1 buffers. */
#define KL_GATHER(PTR, STRIDE, LEN, BUF)                                            \
    do {                                                                            \
        if ((STRIDE) != 1) {                                                        \
            for (ptrdiff_t kl_gi_ = 0; kl_gi_ < (LEN); kl_gi_++)                    \
                (BUF)[kl_gi_] = (PTR)[kl_gi_ * (STRIDE)];                           \
            (PTR) = (BUF);                                                          \
        }                                                                           \
    } while (0)

#if defined(__GNUC__) || defined(__clang__)
typedef double kl_v4d __attribute__((vector_size(32)));
typedef float kl_v4f __attribute__((vector_size(16)));
typedef int64_t kl_v4i __attribute__((vector_size(32)));
typedef uint64_t kl_v4u __attribute__((vector_size(32)));
#endif
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif

/* Neumaier's compensated addition of x into (*s, *c).  Once the sum leaves
   the finite range the compensation is left alone (it would be inf - inf),
   so an overflowing sum stays +-inf instead of turning into NaN. */
static inline void kl_neumaier(double *s, double *c, double x)
{
    double t = *s + x;
    if (fabs(t) <= DBL_MAX) {
        if (fabs(*s) >= fabs(x)) *c += (*s - t) + x;
        else *c += (x - t) + *s;
    }
    *s = t;
}

/* p - r q exactly, for r = p / q rounded to double (the residual of a correctly
   rounded quotient is itself a double).  A term p log(p/q) is then
   p log r + p log(p / (r q)) = p log r + (p - r q) to within eps of that
   correction: the ratio's rounding, which would cost eps / |log(p/q)| of
   relative accuracy where p ~ q, is undone.  Dekker's product (Veltkamp splits),
   so targets with and without FMA give the same bits; 0 where r or q is beyond
   2^996 (the split would overflow; |log r| is large there and the rounding of r
   negligible beside it) or p beyond 2^1000 (r q could overflow in the split). */
#define KL_SPLIT_D (0x1p27 + 1.0)
static inline double kl_residual_f64(double p, double r, double q)
{
    double cr = r * KL_SPLIT_D, rh = cr - (cr - r), rl = r - rh;
    double cq = q * KL_SPLIT_D, qh = cq - (cq - q), ql = q - qh;
    double h = r * q, l = ((rh * qh - h) + rh * ql + rl * qh) + rl * ql;
    if (!(fabs(r) <= 0x1p996 && fabs(q) <= 0x1p996 && fabs(p) <= 0x1p1000)) return 0.0;
    return (p - h) - l;
}

/* The same for float: r q of two floats is exact in double. */
static inline float kl_residual_f32(float p, float r, float q)
{
    return (float)((double)p - (double)r * (double)q);
}

/* ---- per-target instantiations ---------------------------------------- */
#define KLM_FN(name) name##_base
#include "klmath.h"
#include "kl_rows_impl.h"
#undef KLM_FN

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(KL_FAST_NO_AVX2)
#define KL_HAVE_AVX2_PATH 1
#include "kl_target_avx2_begin.h"
#include "klmath.h"
#include "kl_rows_impl.h"
#include "kl_target_avx2_end.h"
#else
#define KL_HAVE_AVX2_PATH 0
#endif

/* ---- careful path: scalar, libm, exact semantics for every case --------- */
#define KL_CAREFUL(NAME, T)                                                        \
static int NAME(const T *p, ptrdiff_t sp, const T *q, ptrdiff_t sq, ptrdiff_t n,  \
                double *res)                                                       \
{                                                                                  \
    double kl = 0.0, kl_c = 0.0, ps = 0.0, ps_c = 0.0, qs = 0.0, qs_c = 0.0;     \
    int pos_inf = 0;                                                               \
    for (ptrdiff_t start = 0; start < n; start += KL_BLOCK) {                      \
        ptrdiff_t len = n - start < KL_BLOCK ? n - start : KL_BLOCK;               \
        double a[KL_LANES] = {0}, b[KL_LANES] = {0}, c[KL_LANES] = {0};            \
        for (ptrdiff_t i = 0; i < len; i++) {                                      \
            double pv = (double)p[(start + i) * sp];                               \
            double qv = (double)q[(start + i) * sq];                               \
            double t;                                                              \
            int j = (int)(i % KL_LANES);                                           \
            b[j] += pv;                                                            \
            c[j] += qv;                                                            \
            if (!(pv > 0.0)) {                                                     \
                t = pv == 0.0 ? 0.0 : pv * log(pv / qv);                           \
            } else if (qv == 0.0) {                                                \
                pos_inf = 1; t = 0.0;                                              \
            } else {                                                               \
                double r = pv / qv;                                                \
                if (r >= DBL_MIN && r <= DBL_MAX)                                  \
                    t = pv * log(r) + kl_residual_f64(pv, r, qv);                  \
                else t = pv * (log(pv) - log(qv));                                 \
                if (t == HUGE_VAL) { pos_inf = 1; t = 0.0; }                       \
            }                                                                      \
            a[j] += t;                                                             \
        }                                                                          \
        kl_neumaier(&kl, &kl_c, KL_LANE_SUM(a));                                   \
        kl_neumaier(&ps, &ps_c, KL_LANE_SUM(b));                                   \
        kl_neumaier(&qs, &qs_c, KL_LANE_SUM(c));                                   \
    }                                                                              \
    res[0] = pos_inf ? HUGE_VAL : kl + kl_c;                                       \
    res[1] = ps + ps_c;                                                            \
    res[2] = qs + qs_c;                                                            \
    return KL_ROW_CAREFUL;                                                         \
}

KL_CAREFUL(kl_row_careful_f64, double)
KL_CAREFUL(kl_row_careful_f32, float)

/* First element (in row order, p before q) that is negative, NaN or infinite.
   Returns 1 and fills which (0 = p, 1 = q), index and value, or returns 0. */
#define KL_FIND_BAD(NAME, T, MAXV)                                                 \
static int NAME(const T *p, ptrdiff_t sp, const T *q, ptrdiff_t sq, ptrdiff_t n,  \
                int *which, ptrdiff_t *index, double *value)                       \
{                                                                                  \
    for (ptrdiff_t i = 0; i < n; i++) {                                            \
        T pv = p[i * sp], qv = q[i * sq];                                          \
        if (!(pv >= 0 && pv <= MAXV)) { *which = 0; *index = i; *value = pv; return 1; } \
        if (!(qv >= 0 && qv <= MAXV)) { *which = 1; *index = i; *value = qv; return 1; } \
    }                                                                              \
    return 0;                                                                      \
}

KL_FIND_BAD(kl_find_bad_f64, double, DBL_MAX)
KL_FIND_BAD(kl_find_bad_f32, float, FLT_MAX)

/* ---- dispatch ------------------------------------------------------------ */
typedef int (*kl_row_f64_fn)(const double *, ptrdiff_t, const double *, ptrdiff_t, ptrdiff_t, int, double *);
typedef int (*kl_row_f32_fn)(const float *, ptrdiff_t, const float *, ptrdiff_t, ptrdiff_t, int, double *);

static kl_row_f64_fn kl_row_f64_fast = kl_row_f64_base;
static kl_row_f32_fn kl_row_f32_fast = kl_row_f32_base;
static const char *kl_isa_name = "baseline";

static int kl_cpu_has_avx2_fma(void)
{
#if KL_HAVE_AVX2_PATH
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

/* Select the kernels: force_baseline != 0 keeps the portable path. */
static const char *kl_core_init(int force_baseline)
{
    kl_row_f64_fast = kl_row_f64_base;
    kl_row_f32_fast = kl_row_f32_base;
    kl_isa_name = "baseline";
#if KL_HAVE_AVX2_PATH
    if (!force_baseline && kl_cpu_has_avx2_fma()) {
        kl_row_f64_fast = kl_row_f64_avx2;
        kl_row_f32_fast = kl_row_f32_avx2;
        kl_isa_name = "avx2+fma";
    }
#endif
    return kl_isa_name;
}

/* Element-wise elementary function fn (0 log, 1 exp, 2 the kernels' log of a
   normal positive ratio) in float32 or float64 on the chosen path; returns -1
   when that path is not available. */
#define KL_MAP_CASES(SFX)                                                             \
    switch (fn * 2 + is_f32) {                                                        \
    case 0: map_log_f64_##SFX((const double *)x, (double *)y, n); return 0;            \
    case 1: map_log_f32_##SFX((const float *)x, (float *)y, n); return 0;              \
    case 2: map_exp_f64_##SFX((const double *)x, (double *)y, n); return 0;            \
    case 3: map_exp_f32_##SFX((const float *)x, (float *)y, n); return 0;              \
    case 4: map_log_normal_f64_##SFX((const double *)x, (double *)y, n); return 0;     \
    case 5: map_log_normal_f32_##SFX((const float *)x, (float *)y, n); return 0;       \
    default: return -1;                                                               \
    }

static int kl_math_map(int fn, int is_f32, int use_avx2, const void *x, void *y, ptrdiff_t n)
{
    if (use_avx2) {
#if KL_HAVE_AVX2_PATH
        if (!kl_cpu_has_avx2_fma()) return -1;
        KL_MAP_CASES(avx2)
#else
        return -1;
#endif
    }
    KL_MAP_CASES(base)
}

/* One row: fast path, falling back to the careful path when it asks. */
static inline int kl_row_f64(const double *p, ptrdiff_t sp, const double *q,
                             ptrdiff_t sq, ptrdiff_t n, int check, int want_sums, double *res)
{
    int st = kl_row_f64_fast(p, sp, q, sq, n, want_sums, res);
    if (st == KL_ROW_NEEDS_CARE) {
        int which; ptrdiff_t idx; double v;
        if (check && kl_find_bad_f64(p, sp, q, sq, n, &which, &idx, &v)) return KL_ROW_BAD;
        st = kl_row_careful_f64(p, sp, q, sq, n, res);
    }
    return st;
}

static inline int kl_row_f32(const float *p, ptrdiff_t sp, const float *q,
                             ptrdiff_t sq, ptrdiff_t n, int check, int want_sums, double *res)
{
    int st = kl_row_f32_fast(p, sp, q, sq, n, want_sums, res);
    if (st == KL_ROW_NEEDS_CARE) {
        int which; ptrdiff_t idx; double v;
        if (check && kl_find_bad_f32(p, sp, q, sq, n, &which, &idx, &v)) return KL_ROW_BAD;
        st = kl_row_careful_f32(p, sp, q, sq, n, res);
    }
    return st;
}

#endif /* KL_CORE_H */
