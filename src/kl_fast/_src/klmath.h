/*
 * klmath.h -- branch-free log/exp for float64 and float32 that gcc auto-vectorises under
 * strict IEEE semantics (no -ffast-math), with < 1 ulp error over the whole domain.
 *
 * Included several times per translation unit, once per target region; the includer
 * defines KLM_FN(name) to make per-target names, e.g.
 *     #define KLM_FN(n) n##_avx2
 *     #pragma GCC push_options
 *     #pragma GCC target("avx2,fma")
 *     #include "klmath.h"
 *     #pragma GCC pop_options
 *     #undef KLM_FN
 * so the function definitions are deliberately outside any include guard.
 *
 * Why the code looks the way it does:
 * - gcc turns a C ternary into a branch, and under the default -ftrapping-math it will not
 *   if-convert a branch that holds floating-point arithmetic, so the loop stays scalar.
 *   Selects here are bit masks, or ternaries whose arms are constants or the input itself.
 * - SSE2 has no 64-bit compare/select, so the float64 masks are made with integer
 *   arithmetic unless SSE4.2 (and so AVX2) is enabled for the region.
 * - No 64-bit int<->double conversion and no 64-bit arithmetic shift (AVX2 has neither),
 *   no tables, no division other than one per log.
 */
#ifndef KLMATH_CONSTS_H
#define KLMATH_CONSTS_H

#include <stdint.h>
#include <string.h>
#include <float.h>
#include <math.h>

/* ln 2 = HI + LO with k*HI exact for |k| < 2^21 */
#define KLM_LN2HI_D   0x1.62e42fee00000p-1
#define KLM_LN2LO_D   0x1.a39ef35793c76p-33
#define KLM_INVLN2_D  0x1.71547652b82fep+0
/* adding 1.5*2^52 rounds to an integer and leaves it in the low mantissa bits */
#define KLM_SHIFT_D   0x1.8p52
/* bit patterns: sqrt(2)/2, 1.0, +-746.0 (exp clamp), sign, mantissa */
#define KLM_SQRTH_BITS_D UINT64_C(0x3fe6a09e667f3bcd)
#define KLM_ONE_BITS_D   UINT64_C(0x3ff0000000000000)
#define KLM_746_BITS_D   UINT64_C(0x4087500000000000)
#define KLM_SIGN_D       UINT64_C(0x8000000000000000)
#define KLM_MANT_D       UINT64_C(0x000fffffffffffff)

/* ln 2 = HI + LO with k*HI exact for |k| < 2^9 */
#define KLM_LN2HI_F   0x1.62e4p-1f
#define KLM_LN2LO_F   0x1.7f7d1cp-20f
#define KLM_INVLN2_F  0x1.715476p+0f
#define KLM_SHIFT_F   0x1.8p23f
#define KLM_SQRTH_BITS_F UINT32_C(0x3f3504f3)
#define KLM_ONE_BITS_F   UINT32_C(0x3f800000)
#define KLM_104_BITS_F   UINT32_C(0x42d00000)
#define KLM_SIGN_F       UINT32_C(0x80000000)
#define KLM_MANT_F       UINT32_C(0x007fffff)

/* fdlibm log: log(1+f) = f - f^2/2 + s (f^2/2 + R(s^2)), s = f/(2+f), |s| <= 0.1716 */
#define KLM_LG1_D 6.666666666666735130e-01
#define KLM_LG2_D 3.999999999940941908e-01
#define KLM_LG3_D 2.857142874366239149e-01
#define KLM_LG4_D 2.222219843214978396e-01
#define KLM_LG5_D 1.818357216161805012e-01
#define KLM_LG6_D 1.531383769920937332e-01
#define KLM_LG7_D 1.479819860511658591e-01

#define KLM_LG1_F 0xaaaaaa.0p-24f
#define KLM_LG2_F 0xccce13.0p-25f
#define KLM_LG3_F 0x91e9ee.0p-25f
#define KLM_LG4_F 0xf89e26.0p-26f

/* exp(r) = 1 + r + r^2 Q(r) on |r| <= ln2/2; Q is a degree-9 Chebyshev fit, error < 2^-56 */
#define KLM_EC2_D  0x1.0000000000001p-1
#define KLM_EC3_D  0x1.5555555555556p-3
#define KLM_EC4_D  0x1.5555555553d4fp-5
#define KLM_EC5_D  0x1.11111111109adp-7
#define KLM_EC6_D  0x1.6c16c17893833p-10
#define KLM_EC7_D  0x1.a01a01a7c8d47p-13
#define KLM_EC8_D  0x1.a019b8ef67c6cp-16
#define KLM_EC9_D  0x1.71de0d9c145d0p-19
#define KLM_EC10_D 0x1.2891a8c1d838dp-22
#define KLM_EC11_D 0x1.af38d53857513p-26

/* same for float: Q of degree 4, error < 2^-27 */
#define KLM_EC2_F 0x1.0p-1f
#define KLM_EC3_F 0x1.5554dcp-3f
#define KLM_EC4_F 0x1.555518p-5f
#define KLM_EC5_F 0x1.120be2p-7f
#define KLM_EC6_F 0x1.6d117cp-10f

#endif /* KLMATH_CONSTS_H */

#ifndef KLM_FN
#error "define KLM_FN(name) before including klmath.h"
#endif

/* natural log, float64; < 1 ulp */
static inline double KLM_FN(log_f64)(double x)
{
    uint64_t ix, sub, t, b;
    double xs, z, k, corr;
    memcpy(&ix, &x, sizeof ix);
#if defined(__SSE4_2__)
    sub = (uint64_t)0 - (uint64_t)(x < DBL_MIN);            /* all ones for subnormals, 0, < 0 */
#else
    sub = (uint64_t)0 - (((ix >> 52) - 1) >> 63);          /* all ones iff exponent field is 0 */
#endif
    /* subnormals: scale by 2^54 here, take 54 off the exponent below */
    b = KLM_ONE_BITS_D + (sub & (UINT64_C(54) << 52));
    memcpy(&xs, &b, sizeof xs);
    xs = x * xs;
    memcpy(&ix, &xs, sizeof ix);
    /* x = 2^k z, z in [sqrt2/2, sqrt2); t's top 12 bits are k + 2048 (no arithmetic shift) */
    t = ix + (KLM_SIGN_D - KLM_SQRTH_BITS_D);
    b = ((t >> 52) - (sub & 54)) | UINT64_C(0x4330000000000000);
    memcpy(&k, &b, sizeof k);
    k -= 0x1p52 + 2048.0;                                   /* exact: 2^52 + e holds e in its mantissa */
    b = (t & KLM_MANT_D) + KLM_SQRTH_BITS_D;
    memcpy(&z, &b, sizeof z);
    double f = z - 1.0;                                     /* exact (Sterbenz) */
    double s = f / (z + 1.0);                               /* z + 1 rounds exactly like 2 + f */
    double hfsq = 0.5 * f * f;
    /* R(u) = u (LG1 + LG2 u + ... + LG7 u^6), u = s^2, in Estrin form for a short dependency chain */
    double u = s * s, u2 = u * u, u4 = u2 * u2;
    double p = (KLM_LG1_D + u * KLM_LG2_D) + u2 * (KLM_LG3_D + u * KLM_LG4_D)
             + u4 * ((KLM_LG5_D + u * KLM_LG6_D) + u2 * KLM_LG7_D);
    double R = u * p;
    double a = s * R + (s * hfsq + k * KLM_LN2LO_D);
    /* log x = k ln2 + f - hfsq + s (hfsq + R), ordered so the big terms are added last */
    double r = k * KLM_LN2HI_D - ((hfsq - a) - f);
    /* r is finite for every input; the special results are added on (each select picks constants) */
    corr = (x == 0.0 ? -(double)INFINITY : 0.0) + (x < 0.0 ? (double)NAN : 0.0);
    corr += x < (double)INFINITY ? 0.0 : x;                 /* +inf -> +inf, NaN -> NaN */
    return r + corr;
}

/* natural log, float32; < 1 ulp */
static inline float KLM_FN(log_f32)(float x)
{
    uint32_t ix, sub, t, b;
    float xs, z, k25, corr;
    memcpy(&ix, &x, sizeof ix);
    sub = (uint32_t)0 - (uint32_t)(x < FLT_MIN);            /* 32-bit lane masks exist on SSE2 */
    b = KLM_ONE_BITS_F + (sub & (UINT32_C(25) << 23));
    memcpy(&xs, &b, sizeof xs);
    xs = x * xs;
    b = sub & UINT32_C(0x41c80000);                          /* 25.0f or +0.0f */
    memcpy(&k25, &b, sizeof k25);
    memcpy(&ix, &xs, sizeof ix);
    t = ix - KLM_SQRTH_BITS_F;
    float k = (float)((int32_t)t >> 23) - k25;               /* arithmetic shift: 32-bit is fine */
    b = (t & KLM_MANT_F) + KLM_SQRTH_BITS_F;
    memcpy(&z, &b, sizeof z);
    float f = z - 1.0f;
    float s = f / (z + 1.0f);
    float hfsq = 0.5f * f * f;
    float u = s * s, u2 = u * u;
    float R = u * ((KLM_LG1_F + u * KLM_LG2_F) + u2 * (KLM_LG3_F + u * KLM_LG4_F));
    float a = s * R + (s * hfsq + k * KLM_LN2LO_F);
    float r = k * KLM_LN2HI_F - ((hfsq - a) - f);
    corr = (x == 0.0f ? -INFINITY : 0.0f) + (x < 0.0f ? NAN : 0.0f);
    corr += x < INFINITY ? 0.0f : x;
    return r + corr;
}

/* exp, float64; < 1 ulp, gradual underflow below -708.4, +inf above 709.78 */
static inline double KLM_FN(exp_f64)(double x)
{
    uint64_t ix, msk, kb, kb1, b1, b2;
    double xc, s1, s2;
    /* |x| > 746 becomes +-746, which still under/overflows; NaN passes through */
    memcpy(&ix, &x, sizeof ix);
#if defined(__SSE4_2__)
    msk = (uint64_t)0 - (uint64_t)(fabs(x) > 746.0);
#else
    msk = (uint64_t)0 - ((((KLM_746_BITS_D - (ix & ~KLM_SIGN_D)) ^ (UINT64_C(0x7ff0000000000000)
                          - (ix & ~KLM_SIGN_D))) >> 63));  /* 746 < |x| <= inf, integer-only */
#endif
    ix = (ix & ~(msk & ~KLM_SIGN_D)) | (msk & KLM_746_BITS_D);
    memcpy(&xc, &ix, sizeof xc);
    /* k = round(x/ln2) and k1 = round(x/(2 ln2)), both left in the low mantissa bits */
    double kt = xc * KLM_INVLN2_D + KLM_SHIFT_D;
    double kt1 = xc * (0.5 * KLM_INVLN2_D) + KLM_SHIFT_D;
    memcpy(&kb, &kt, sizeof kb);
    memcpy(&kb1, &kt1, sizeof kb1);
    double k = kt - KLM_SHIFT_D;
    /* x = k ln2 + hi - lo with hi exact; lo is folded into the small terms */
    double hi = xc - k * KLM_LN2HI_D;
    double lo = k * KLM_LN2LO_D;
    double r = hi - lo;
    double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    double q = ((KLM_EC2_D + r * KLM_EC3_D) + r2 * (KLM_EC4_D + r * KLM_EC5_D))
             + r4 * ((KLM_EC6_D + r * KLM_EC7_D) + r2 * (KLM_EC8_D + r * KLM_EC9_D))
             + r8 * (KLM_EC10_D + r * KLM_EC11_D);
    double y = 1.0 + (hi + (r2 * q - lo));
    /* 2^k = 2^k1 * 2^(k-k1): both factors stay normal for |k| <= 1077 */
    b1 = (kb1 + 1023) << 52;
    b2 = (kb - kb1 + 1023) << 52;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    return (y * s1) * s2;                                   /* exact, then one rounding into subnormals */
}

/* exp, float32; < 1 ulp, gradual underflow below -87.3, +inf above 88.72 */
static inline float KLM_FN(exp_f32)(float x)
{
    uint32_t ix, msk, kb, kb1, b1, b2;
    float xc, s1, s2;
    memcpy(&ix, &x, sizeof ix);
    msk = (uint32_t)0 - (uint32_t)(fabsf(x) > 104.0f);
    ix = (ix & ~(msk & ~KLM_SIGN_F)) | (msk & KLM_104_BITS_F);
    memcpy(&xc, &ix, sizeof xc);
    float kt = xc * KLM_INVLN2_F + KLM_SHIFT_F;
    float kt1 = xc * (0.5f * KLM_INVLN2_F) + KLM_SHIFT_F;
    memcpy(&kb, &kt, sizeof kb);
    memcpy(&kb1, &kt1, sizeof kb1);
    float k = kt - KLM_SHIFT_F;
    float hi = xc - k * KLM_LN2HI_F;
    float lo = k * KLM_LN2LO_F;
    float r = hi - lo;
    float r2 = r * r;
    float q = (KLM_EC2_F + r * KLM_EC3_F) + r2 * ((KLM_EC4_F + r * KLM_EC5_F) + r2 * KLM_EC6_F);
    float y = 1.0f + (hi + (r2 * q - lo));
    b1 = (kb1 + 127) << 23;
    b2 = (kb - kb1 + 127) << 23;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    return (y * s1) * s2;
}

/* x*log(y), and +0 wherever x == +-0 whatever y is (so 0*log(0/0) counts 0), float64 */
static inline double KLM_FN(xlogy_f64)(double x, double y)
{
    double v = x * KLM_FN(log_f64)(y);
    uint64_t vb, m;
    memcpy(&vb, &v, sizeof vb);
#if defined(__SSE4_2__)
    m = (uint64_t)0 - (uint64_t)(x != 0.0);
#else
    memcpy(&m, &x, sizeof m);
    m = (((m & ~KLM_SIGN_D) - 1) >> 63) - 1;                /* zero iff x == +-0 */
#endif
    vb &= m;
    memcpy(&v, &vb, sizeof v);
    return v;
}

/* x*log(y), and +0 wherever x == +-0 whatever y is, float32 */
static inline float KLM_FN(xlogy_f32)(float x, float y)
{
    float v = x * KLM_FN(log_f32)(y);
    uint32_t vb, m = (uint32_t)0 - (uint32_t)(x != 0.0f);
    memcpy(&vb, &v, sizeof vb);
    vb &= m;
    memcpy(&v, &vb, sizeof v);
    return v;
}
