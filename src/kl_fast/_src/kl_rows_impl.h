/* Row kernels of the masked KL sum, instantiated once per instruction-set
   target (KLM_FN gives the suffix).  No include guard on purpose. */

#ifndef KL_LOGRATIO_CONSTS
#define KL_LOGRATIO_CONSTS
/* ln 2 = LN2HI + LN2LO with k*LN2HI exact for the exponents that occur */
#define KL_LN2HI_D 0x1.62e42fee00000p-1
#define KL_LN2LO_D 0x1.a39ef35793c76p-33
#define KL_LN2HI_F 0x1.62e4p-1f
#define KL_LN2LO_F 0x1.7f7d1cp-20f
/* fdlibm: log(m) = 2s + s*R(s^2), s = (m-1)/(m+1), |s| <= 0.1716 */
#define KL_LG1_D 6.666666666666735130e-01
#define KL_LG2_D 3.999999999940941908e-01
#define KL_LG3_D 2.857142874366239149e-01
#define KL_LG4_D 2.222219843214978396e-01
#define KL_LG5_D 1.818357216161805012e-01
#define KL_LG6_D 1.531383769920937332e-01
#define KL_LG7_D 1.479819860511658591e-01
#define KL_LG1_F 0xaaaaaa.0p-24f
#define KL_LG2_F 0xccce13.0p-25f
#define KL_LG3_F 0x91e9ee.0p-25f
#define KL_LG4_F 0xf89e26.0p-26f
#endif

/* log(r) for a normal, finite r > 0 only (the callers send every other r
   to the careful path), so no special-value selects: fdlibm's reduction
   r = 2^k (1 + f) with 1 + f in [sqrt(2)/2, sqrt(2)), s = f / (2 + f) and
   log(1 + f) = f - (hfsq - s (hfsq + R(s^2))), error below 1 ulp. */
static inline double KLM_FN(log_normal_f64)(double r)
{
    uint64_t ix, t, kb, zb;
    double z, kd, f, s, z2, w, R, hfsq;
    memcpy(&ix, &r, 8);
    /* kb = k + 1023 where k = floor(log2(r / sqrt(2)/2)), by a logical shift */
    t = ix + (UINT64_C(0x3ff0000000000000) - UINT64_C(0x3fe6a09e667f3bcd));
    kb = t >> 52;
    zb = ix - (kb << 52) + UINT64_C(0x3ff0000000000000);
    memcpy(&z, &zb, 8);
    kb |= UINT64_C(0x4330000000000000);
    memcpy(&kd, &kb, 8);
    kd -= 0x1p52 + 1023.0;
    f = z - 1.0;
    s = f / (2.0 + f);
    z2 = s * s;
    w = z2 * z2;
    R = w * (KL_LG2_D + w * (KL_LG4_D + w * KL_LG6_D))
        + z2 * (KL_LG1_D + w * (KL_LG3_D + w * (KL_LG5_D + w * KL_LG7_D)));
    hfsq = 0.5 * f * f;
    return kd * KL_LN2HI_D - ((hfsq - (s * (hfsq + R) + kd * KL_LN2LO_D)) - f);
}

static inline float KLM_FN(log_normal_f32)(float r)
{
    uint32_t ix, t, kb, zb;
    float z, kd, f, s, z2, w, R, hfsq;
    memcpy(&ix, &r, 4);
    t = ix + (UINT32_C(0x3f800000) - UINT32_C(0x3f3504f3));
    kb = t >> 23;
    zb = ix - (kb << 23) + UINT32_C(0x3f800000);
    memcpy(&z, &zb, 4);
    kb |= UINT32_C(0x4b000000);
    memcpy(&kd, &kb, 4);
    kd -= 0x1p23f + 127.0f;
    f = z - 1.0f;
    s = f / (2.0f + f);
    z2 = s * s;
    w = z2 * z2;
    R = w * (KL_LG2_F + w * KL_LG4_F) + z2 * (KL_LG1_F + w * KL_LG3_F);
    hfsq = 0.5f * f * f;
    return kd * KL_LN2HI_F - ((hfsq - (s * (hfsq + R) + kd * KL_LN2LO_F)) - f);
}

/* One term p*log(p/q) on the fast path: 0 for p == 0 whatever q is, NaN for
   anything the careful path must see (a value outside [0, max], or p > 0
   with q == 0), so a non-finite block total sends the row there. */
static inline double KLM_FN(kl_term_f64)(double p, double q)
{
    double r = p / q;
    double t = p * KLM_FN(log_normal_f64)(r);
    /* chained selects on doubles compile to compare + blend, no branches */
    t = (r >= DBL_MIN) & (r <= DBL_MAX) ? t : NAN;  /* also NaN/inf p or q, q == 0 */
    t = p == 0.0 ? q * 0.0 : t;                     /* 0, or NaN for q = inf/NaN */
    t = (p < q ? p : q) >= 0.0 ? t : NAN;           /* a negative p or q */
    return t;
}

static inline float KLM_FN(kl_term_f32)(float p, float q)
{
    float r = p / q;
    float t = p * KLM_FN(log_normal_f32)(r);
    t = (r >= FLT_MIN) & (r <= FLT_MAX) ? t : NAN;
    t = p == 0.0f ? q * 0.0f : t;
    t = (p < q ? p : q) >= 0.0f ? t : NAN;
    return t;
}

/* Sum of x[0:len] in KL_LANES lanes, lane j taking x[i] with i % 8 == j
   (the last partial group too), the lanes then combined pairwise. */
static inline double KLM_FN(kl_lane_sum_f64)(const double *x, ptrdiff_t len)
{
    ptrdiff_t full = len - len % KL_LANES, i;
    double lane[KL_LANES];
#if defined(__GNUC__) || defined(__clang__)
    kl_v4d a0 = {0.0, 0.0, 0.0, 0.0}, a1 = {0.0, 0.0, 0.0, 0.0}, v;
    for (i = 0; i < full; i += KL_LANES) {
        memcpy(&v, x + i, sizeof v);
        a0 += v;
        memcpy(&v, x + i + 4, sizeof v);
        a1 += v;
    }
    memcpy(lane, &a0, sizeof a0);
    memcpy(lane + 4, &a1, sizeof a1);
#else
    for (int j = 0; j < KL_LANES; j++) lane[j] = 0.0;
    for (i = 0; i < full; i += KL_LANES)
        for (int j = 0; j < KL_LANES; j++) lane[j] += x[i + j];
#endif
    for (i = full; i < len; i++) lane[i - full] += x[i];
    return KL_LANE_SUM(lane);
}

/* The same for float terms, each widened to double before it is added. */
static inline double KLM_FN(kl_lane_sum_f32)(const float *x, ptrdiff_t len)
{
    ptrdiff_t full = len - len % KL_LANES, i;
    double lane[KL_LANES];
#if defined(__GNUC__) || defined(__clang__)
    kl_v4d a0 = {0.0, 0.0, 0.0, 0.0}, a1 = {0.0, 0.0, 0.0, 0.0};
    kl_v4f v;
    for (i = 0; i < full; i += KL_LANES) {
        memcpy(&v, x + i, sizeof v);
        a0 += __builtin_convertvector(v, kl_v4d);
        memcpy(&v, x + i + 4, sizeof v);
        a1 += __builtin_convertvector(v, kl_v4d);
    }
    memcpy(lane, &a0, sizeof a0);
    memcpy(lane + 4, &a1, sizeof a1);
#else
    for (int j = 0; j < KL_LANES; j++) lane[j] = 0.0;
    for (i = 0; i < full; i += KL_LANES)
        for (int j = 0; j < KL_LANES; j++) lane[j] += (double)x[i + j];
#endif
    for (i = full; i < len; i++) lane[i - full] += (double)x[i];
    return KL_LANE_SUM(lane);
}

#define KL_IMPL_T double
#define KL_IMPL_W double
#define KL_IMPL_SUM KLM_FN(kl_lane_sum_f64)
#define KL_IMPL_TERM KLM_FN(kl_term_f64)
#define KL_IMPL_NAME KLM_FN(kl_row_f64)
#define KL_IMPL_MAP KLM_FN(kl_map_f64)
#define KL_IMPL_MAP_STRIDED KLM_FN(kl_map_strided_f64)
#include "kl_rows_loop.h"

#include "kl_rows_f32.h"

/* Element-wise maps of the elementary functions, for accuracy tests. */
static void KLM_FN(map_log_f64)(const double *x, double *y, ptrdiff_t n)
{ for (ptrdiff_t i = 0; i < n; i++) y[i] = KLM_FN(log_f64)(x[i]); }
static void KLM_FN(map_exp_f64)(const double *x, double *y, ptrdiff_t n)
{ for (ptrdiff_t i = 0; i < n; i++) y[i] = KLM_FN(exp_f64)(x[i]); }
static void KLM_FN(map_log_f32)(const float *x, float *y, ptrdiff_t n)
{ for (ptrdiff_t i = 0; i < n; i++) y[i] = KLM_FN(log_f32)(x[i]); }
static void KLM_FN(map_exp_f32)(const float *x, float *y, ptrdiff_t n)
{ for (ptrdiff_t i = 0; i < n; i++) y[i] = KLM_FN(exp_f32)(x[i]); }
static void KLM_FN(map_log_normal_f64)(const double *x, double *y, ptrdiff_t n)
{ for (ptrdiff_t i = 0; i < n; i++) y[i] = KLM_FN(log_normal_f64)(x[i]); }
static void KLM_FN(map_log_normal_f32)(const float *x, float *y, ptrdiff_t n)
{ KLM_FN(kl_map_log_normal_f32)(x, y, n); }
