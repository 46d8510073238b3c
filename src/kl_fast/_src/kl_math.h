/*
 * kl_math.h -- the elementary functions of kl_fast's kernels, for float64 and float32.
 *
 * Design: the Cython kernels (_core.pxi) are compiled once per instruction-set target
 * (a baseline, an AVX2+FMA and an AVX-512 build of the same source); this header is the only C
 * they include.  Every function is a small static inline function that gcc, clang and
 * MSVC can inline into the kernels' loops and that gcc auto-vectorises under strict IEEE
 * semantics (no -ffast-math): branch-free (selects are bit masks, or ternaries whose arms
 * are constants or an unmodified input), no tables, one division per log, no 64-bit
 * int<->double conversion or 64-bit arithmetic shift (AVX2 has neither).  The target's
 * own flags choose FMA or Dekker products; accuracy holds either way.
 *
 * One family: log is fdlibm's reduction x = 2^k z, z in [sqrt2/2, sqrt2), f = z - 1,
 * s = f / (2 + f) and log(1 + f) = 2 atanh(s) by one polynomial R(s^2) (constants LG*);
 * exp is a reduction by ln 2 and one polynomial.  float32 uses the same reductions.
 *
 *   klm_log_f64/_f32        natural log, < 1 ulp, every input (log 0 = -inf, log(<0) = NaN)
 *   klm_exp_f64/_f32        exp, < 1 ulp
 *   klm_log_parts_f64       log z and k of a normal, finite r > 0 (kernels join k ln 2 later)
 *   klm_log_normal_f64      log_f64 of a normal x > 0, finite (and meaningless) at 0 and subnormals
 *   klm_log_normal_f32      log of a normal, finite float r > 0, division-free polynomial
 *   klm_residual_f64/_f32   p - r q exactly, for the rounded ratio r = p / q
 *   klm_exp_split_f32       exp of a float pair as a float pair times 2^k (k in double's range)
 *   klm_scale_pair_f64      that pair times 2^k, in double
 *   klm_xlogy_f64/_f32      x log y, exactly +0 where x == 0
 *   klm_mul_add_f64/_f32    a b + c rounded alike in every loop (fma where the target has it)
 *   klm_js_series_f64/_f32  g(d) / d^2 of the Jensen-Shannon pair term as a series in d^2
 *   klm_prefetch_ahead      a cache hint for the line KLM_PREFETCH_BYTES past a pointer
 */
#ifndef KL_MATH_H
#define KL_MATH_H

#include <stdint.h>
#include <string.h>
#include <float.h>
#include <math.h>

#if defined(__FMA__) || (defined(_MSC_VER) && defined(__AVX2__))
#define KLM_HAVE_FMA 1
#else
#define KLM_HAVE_FMA 0
#endif
#if defined(__SSE4_2__) || defined(__AVX2__)
#define KLM_HAVE_SSE42 1
#else
#define KLM_HAVE_SSE42 0
#endif

/* ln 2 = HI + LO with k*HI exact for |k| < 2^21 */
#define KLM_LN2HI_D   0x1.62e42fee00000p-1
#define KLM_LN2LO_D   0x1.a39ef35793c76p-33
#define KLM_INVLN2_D  0x1.71547652b82fep+0
/* adding 1.5*2^52 rounds to an integer and leaves it in the low mantissa bits */
#define KLM_SHIFT_D   0x1.8p52
/* bit patterns: sqrt(2)/2, 1.0, 746.0 (exp clamp), +inf, sign, mantissa, 2^52 magic */
#define KLM_SQRTH_BITS_D UINT64_C(0x3fe6a09e667f3bcd)
#define KLM_ONE_BITS_D   UINT64_C(0x3ff0000000000000)
#define KLM_746_BITS_D   UINT64_C(0x4087500000000000)
#define KLM_INF_BITS_D   UINT64_C(0x7ff0000000000000)
#define KLM_SIGN_D       UINT64_C(0x8000000000000000)
#define KLM_MANT_D       UINT64_C(0x000fffffffffffff)
#define KLM_MAGIC_BITS_D UINT64_C(0x4330000000000000)

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

/* fdlibm log: log(1+f) = 2 atanh(s) = f - s (f - R), s = f/(2+f), R = s^2 P(s^2), |s| <= 0.1716 */
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

/* k ln2 + log(1 + f) from the reduction of log_f64: s = f / (2 + f), k the
   exponent (as a double).  Shared by log_f64 and loops that split the log at
   its division. */
static inline double klm_log_tail_f64(double s, double f, double k)
{
    double u = s * s;
    double p = KLM_LG6_D + u * KLM_LG7_D;
    p = KLM_LG5_D + u * p;
    p = KLM_LG4_D + u * p;
    p = KLM_LG3_D + u * p;
    p = KLM_LG2_D + u * p;
    p = KLM_LG1_D + u * p;
    /* log x = k ln2 + f - s (f - R), R = u p; explicit fma: contraction is each compiler's choice */
#if KLM_HAVE_FMA
    double a = fma(s, fma(-u, p, f), -(k * KLM_LN2LO_D));
    return fma(k, KLM_LN2HI_D, -(a - f));
#else
    /* without fma, fdlibm's f - hfsq + s (hfsq + R) keeps the rounding of s below 1 ulp */
    double hfsq = 0.5 * f * f;
    return k * KLM_LN2HI_D - ((hfsq - (s * (hfsq + u * p) + k * KLM_LN2LO_D)) - f);
#endif
}

/* x = 2^k z with z in [sqrt2/2, sqrt2) for a normal x > 0 (for 0 and subnormals some
   finite z and k): returns z and sets *k. */
static inline double klm_log_split_f64(double x, double *k)
{
    uint64_t ix, t, b;
    double z, kd;
    memcpy(&ix, &x, sizeof ix);
    /* the top 12 bits of t are k + 2048 */
    t = ix + (KLM_SIGN_D - KLM_SQRTH_BITS_D);
    b = (t >> 52) | KLM_MAGIC_BITS_D;
    memcpy(&kd, &b, sizeof kd);
    *k = kd - (0x1p52 + 2048.0);                           /* 2^52 + e holds e exactly */
    b = (t & KLM_MANT_D) + KLM_SQRTH_BITS_D;
    memcpy(&z, &b, sizeof z);
    return z;
}

/* The reduction of log_f64: x = 2^k z with z in [sqrt2/2, sqrt2) (subnormal
   x scaled into the normal range first), returns z and sets *k.  Shared by
   log_f64 and loops that split the log at its division. */
static inline double klm_log_reduce_f64(double x, double *k)
{
    uint64_t ix, sub, b;
    double xs, one, z;
    memcpy(&ix, &x, sizeof ix);
#if KLM_HAVE_SSE42
    sub = (uint64_t)0 - (uint64_t)(x < DBL_MIN);            /* all ones for subnormals, 0, < 0 */
#else
    sub = (uint64_t)0 - (((ix >> 52) - 1) >> 63);          /* all ones iff exponent field is 0 */
#endif
    /* subnormal m 2^-1074 -> (1 + m 2^-52) - 1 = x 2^1022 exactly; otherwise x - 0 = x */
    b = sub & KLM_ONE_BITS_D;
    memcpy(&one, &b, sizeof one);
    b = ix | b;
    memcpy(&xs, &b, sizeof xs);
    xs = xs - one;
    z = klm_log_split_f64(xs, k);
    *k = *k - 1022.0 * one;
    return z;
}

/* natural log, float64; < 1 ulp; log(+-0) = -inf, log(x<0) = NaN, log(+inf) = +inf */
static inline double klm_log_f64(double x)
{
    double k, corr;
    double z = klm_log_reduce_f64(x, &k);
    double f = z - 1.0;                                     /* exact (Sterbenz) */
    double s = f / (z + 1.0);                               /* z + 1 rounds exactly as 2 + f */
    double r = klm_log_tail_f64(s, f, k);
    /* r is finite for every input; special results are added on, selects pick constants */
    corr = (x == 0.0 ? -(double)INFINITY : 0.0) + (x < 0.0 ? (double)NAN : 0.0);
    corr += x < (double)INFINITY ? 0.0 : x;                 /* +inf -> +inf, NaN -> NaN */
    return r + corr;
}

/* log_f64 of a normal x > 0 without the special values' selects (and finite for every
   x >= 0: 0 and subnormals give some finite value, for callers that multiply it by x) */
static inline double klm_log_normal_f64(double x)
{
    double k;
    double z = klm_log_split_f64(x, &k);
    double f = z - 1.0;
    return klm_log_tail_f64(f / (z + 1.0), f, k);
}

/* natural log, float32; < 1 ulp; same special values as log_f64 */
static inline float klm_log_f32(float x)
{
    uint32_t ix, sub, t, b;
    float xs, one, z, corr;
    memcpy(&ix, &x, sizeof ix);
    sub = (uint32_t)0 - (uint32_t)(x < FLT_MIN);            /* 32-bit lane masks exist on SSE2 */
    /* subnormal x -> x 2^126 exactly, as in log_f64 */
    b = sub & KLM_ONE_BITS_F;
    memcpy(&one, &b, sizeof one);
    b = ix | b;
    memcpy(&xs, &b, sizeof xs);
    xs = xs - one;
    memcpy(&ix, &xs, sizeof ix);
    /* x = 2^k z, z in [sqrt2/2, sqrt2); 32-bit arithmetic shift is available everywhere */
    t = ix - KLM_SQRTH_BITS_F;
    float k = (float)((int32_t)t >> 23) - 126.0f * one;
    b = (t & KLM_MANT_F) + KLM_SQRTH_BITS_F;
    memcpy(&z, &b, sizeof z);
    float f = z - 1.0f;
    float s = f / (z + 1.0f);
    float u = s * s;
    float p = KLM_LG1_F + u * (KLM_LG2_F + u * (KLM_LG3_F + u * KLM_LG4_F));
    float r = k * KLM_LN2HI_F - ((s * (f - u * p) - k * KLM_LN2LO_F) - f);
    corr = (x == 0.0f ? -INFINITY : 0.0f) + (x < 0.0f ? NAN : 0.0f);
    corr += x < INFINITY ? 0.0f : x;
    return r + corr;
}

/* exp, float64; < 1 ulp; subnormal results below -708.4, +0 below -745.14, +inf above 709.78 */
static inline double klm_exp_f64(double x)
{
    uint64_t ix, ax, msk, kb, kb1, b;
    double xc, axd, s1, s2;
    /* |x| > 746 becomes +-746, which still under/overflows; NaN passes through */
    memcpy(&ix, &x, sizeof ix);
    ax = ix & ~KLM_SIGN_D;
#if KLM_HAVE_SSE42
    memcpy(&axd, &ax, sizeof axd);
    msk = (uint64_t)0 - (uint64_t)(axd > 746.0);
#else
    (void)axd;
    msk = (uint64_t)0 - (((KLM_746_BITS_D - ax) ^ (KLM_INF_BITS_D - ax)) >> 63);
#endif
    ix = (ix & ~(msk & ~KLM_SIGN_D)) | (msk & KLM_746_BITS_D);
    memcpy(&xc, &ix, sizeof xc);
    /* k = round(x/ln2) and k1 = round(x/(2 ln2)), both left in the low mantissa bits */
    double kt = xc * KLM_INVLN2_D + KLM_SHIFT_D;
    double kt1 = xc * (0.5 * KLM_INVLN2_D) + KLM_SHIFT_D;
    memcpy(&kb, &kt, sizeof kb);
    memcpy(&kb1, &kt1, sizeof kb1);
    double k = kt - KLM_SHIFT_D;
    /* x = k ln2 + hi - lo with hi exact; lo only enters the small terms */
    double hi = xc - k * KLM_LN2HI_D;
    double lo = k * KLM_LN2LO_D;
    double r = hi - lo;
    double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    double q = ((KLM_EC2_D + r * KLM_EC3_D) + r2 * (KLM_EC4_D + r * KLM_EC5_D))
             + r4 * ((KLM_EC6_D + r * KLM_EC7_D) + r2 * (KLM_EC8_D + r * KLM_EC9_D))
             + r8 * (KLM_EC10_D + r * KLM_EC11_D);
    /* y = 1 + hi + (r^2 q - lo), with the rounding error of 1 + hi recovered (Fast2Sum) */
    double y = 1.0 + hi;
    double e = (1.0 - y) + hi;
    y = y + (e + (r2 * q - lo));
    /* 2^k = 2^k1 * 2^(k-k1): both factors stay normal for |k| <= 1077 */
    b = (kb1 + 1023) << 52;
    memcpy(&s1, &b, sizeof s1);
    b = (kb - kb1 + 1023) << 52;
    memcpy(&s2, &b, sizeof s2);
    return (y * s1) * s2;                                   /* exact, then one rounding */
}

/* exp, float32; < 1 ulp; subnormal results below -87.34, +0 below -103.97, +inf above 88.72 */
static inline float klm_exp_f32(float x)
{
    uint32_t ix, ax, msk, kb, kb1, b;
    float xc, axf, s1, s2;
    memcpy(&ix, &x, sizeof ix);
    ax = ix & ~KLM_SIGN_F;
    memcpy(&axf, &ax, sizeof axf);
    msk = (uint32_t)0 - (uint32_t)(axf > 104.0f);
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
    float y = 1.0f + hi;
    float e = (1.0f - y) + hi;
    y = y + (e + (r2 * q - lo));
    b = (kb1 + 127) << 23;
    memcpy(&s1, &b, sizeof s1);
    b = (kb - kb1 + 127) << 23;
    memcpy(&s2, &b, sizeof s2);
    return (y * s1) * s2;
}

/* v, or exactly +0 where x == +-0 (a bit mask, no branch), float64 */
/* All ones where x != +-0, else 0: a mask the float64 loops can AND with bits (SSE2 has
   no 64-bit lane compare-to-integer, so there it comes from integer arithmetic). */
static inline uint64_t klm_nonzero_mask_f64(double x)
{
    uint64_t m;
#if KLM_HAVE_SSE42
    m = (uint64_t)0 - (uint64_t)(x != 0.0);
#else
    memcpy(&m, &x, sizeof m);
    m = (((m & ~KLM_SIGN_D) - 1) >> 63) - 1;                /* zero iff x == +-0 */
#endif
    return m;
}

static inline double klm_zero_where_zero_f64(double v, double x)
{
    uint64_t vb;
    memcpy(&vb, &v, sizeof vb);
    vb &= klm_nonzero_mask_f64(x);
    memcpy(&v, &vb, sizeof v);
    return v;
}

/* x*log(y), and exactly +0 where x == +-0 whatever y is (0*log(0/0) counts 0), float64 */
static inline double klm_xlogy_f64(double x, double y)
{
    return klm_zero_where_zero_f64(x * klm_log_f64(y), x);
}

/* x*log(y), and exactly +0 where x == +-0 whatever y is, float32 */
static inline float klm_xlogy_f32(float x, float y)
{
    float v = x * klm_log_f32(y);
    uint32_t vb, m = (uint32_t)0 - (uint32_t)(x != 0.0f);
    memcpy(&vb, &v, sizeof vb);
    vb &= m;
    memcpy(&v, &vb, sizeof v);
    return v;
}

/* log z for a normal, finite r > 0 = 2^k z, z in [sqrt2/2, sqrt2), and k in *k (as a
   double).  Other inputs give some finite value the caller's checks discard.  The same
   reduction and polynomial as klm_log_f64, written f - s (f - R) so the rounding of s is
   scaled by s <= 0.172; log r = k ln2 + log z to under 1.2 ulp. */
static inline double klm_log_parts_f64(double r, double *k)
{
    uint64_t ix, t, zb, kb;
    double z, kd, f, s, z2, R;
    memcpy(&ix, &r, sizeof ix);
    t = ix + (KLM_ONE_BITS_D - KLM_SQRTH_BITS_D);
    zb = (t & KLM_MANT_D) + KLM_SQRTH_BITS_D;
    memcpy(&z, &zb, sizeof z);
    kb = (t >> 52) | KLM_MAGIC_BITS_D;                      /* 2^52 + k + 1023 */
    memcpy(&kd, &kb, sizeof kd);
    *k = kd - (0x1p52 + 1023.0);
    f = z - 1.0;
    s = f / (z + 1.0);                                      /* z + 1 == 2 + f exactly */
    z2 = s * s;
    R = z2 * (KLM_LG1_D + z2 * (KLM_LG2_D + z2 * (KLM_LG3_D + z2 * (KLM_LG4_D
        + z2 * (KLM_LG5_D + z2 * (KLM_LG6_D + z2 * KLM_LG7_D))))));
    return f - s * (f - R);
}

/* log r for a normal, finite float r > 0 (other bit patterns give a finite value the
   callers discard): the same reduction as klm_log_f32, then log(1 + f) =
   f - f^2/2 + f^3 P(f) (Cephes logf), which needs no division. */
#define KLM_LP0_F 3.3333331174e-1f
#define KLM_LP1_F -2.4999993993e-1f
#define KLM_LP2_F 2.0000714765e-1f
#define KLM_LP3_F -1.6668057665e-1f
#define KLM_LP4_F 1.4249322787e-1f
#define KLM_LP5_F -1.2420140846e-1f
#define KLM_LP6_F 1.1676998740e-1f
#define KLM_LP7_F -1.1514610310e-1f
#define KLM_LP8_F 7.0376836292e-2f
#define KLM_LN2_F 0x1.62e430p-1f
static inline float klm_log_normal_f32(float r)
{
    uint32_t ix, t, mb;
    float m, f, z, E, O, P, w, kf;
    memcpy(&ix, &r, sizeof ix);
    t = ix - KLM_SQRTH_BITS_F;
    kf = (float)((int32_t)t >> 23);
    mb = (t & KLM_MANT_F) + KLM_SQRTH_BITS_F;
    memcpy(&m, &mb, sizeof m);
    f = m - 1.0f;
    z = f * f;
    E = (((KLM_LP8_F * z + KLM_LP6_F) * z + KLM_LP4_F) * z + KLM_LP2_F) * z + KLM_LP0_F;
    O = ((KLM_LP7_F * z + KLM_LP5_F) * z + KLM_LP3_F) * z + KLM_LP1_F;
    P = O * f + E;
    w = P * f - 0.5f;
#if KLM_HAVE_FMA
    return fmaf(kf, KLM_LN2_F, fmaf(w, z, f));
#else
    return kf * KLM_LN2HI_F + (f + (w * z + kf * KLM_LN2LO_F));
#endif
}

/* p - r q exactly, for r = p / q rounded (the residual of a correctly rounded quotient is
   itself a double).  A term p log(p/q) is then p log r + (p - r q) to within eps of that
   correction: the rounding of r, which would cost eps / |log(p/q)| of relative accuracy
   where p ~ q, is undone.  One FMA, or Dekker's product (Veltkamp splits); without FMA,
   0 where r or q is beyond 2^996 or p beyond 2^1000 (the split could overflow; |log r| is
   large there and the rounding of r negligible beside it). */
#define KLM_SPLIT_D (0x1p27 + 1.0)
static inline double klm_residual_f64(double p, double r, double q)
{
#if KLM_HAVE_FMA
    return fma(-r, q, p);
#else
    double cr = r * KLM_SPLIT_D, rh = cr - (cr - r), rl = r - rh;
    double cq = q * KLM_SPLIT_D, qh = cq - (cq - q), ql = q - qh;
    double h = r * q, l = ((rh * qh - h) + rh * ql + rl * qh) + rl * ql;
    double res = (p - h) - l;
    int keep = (fabs(r) <= 0x1p996) & (fabs(q) <= 0x1p996) & (fabs(p) <= 0x1p1000);
    return keep ? res : 0.0;
#endif
}

/* The largest |r| and |q| for which klm_residual_f64 is exact */
#if KLM_HAVE_FMA
#define KLM_RESIDUAL_MAX_D DBL_MAX
#else
#define KLM_RESIDUAL_MAX_D 0x1p996
#endif

/* The same for float: r q of two floats is exact in double. */
static inline float klm_residual_f32(float p, float r, float q)
{
#if KLM_HAVE_FMA
    return fmaf(-r, q, p);
#else
    return (float)((double)p - (double)r * (double)q);
#endif
}

/* exp(x + xlo) = (y + *ylo) 2^*k for a float x in [-2200, 2200] and |xlo| <= 2^-8, the
   exponential of the float32 log-space kernels: y + ylo in [0.7, 1.42] is an unevaluated
   float pair (far better than one float ulp) and k = round(x / ln 2) may exceed float's
   exponent range (klm_scale_pair_f64 applies it in double).  Cody-Waite reduction
   r = (x - k HI) - (k LO - xlo), the first difference exact (HI has 12 bits), then
   exp(r) = 1 + r + r^2 Q(r) with exp_f32's Q; 1 + hi is rounded and its rounding error kept
   in ylo (Fast2Sum) with the small terms. */
#define KLM_LN2HI12_F 0x1.62ep-1f
#define KLM_LN2LO12_F 0x1.0bfbe8p-15f
#define KLM_SHIFT_BITS_F INT32_C(0x4b400000)                /* bits of KLM_SHIFT_F */
static inline float klm_exp_split_f32(float x, float xlo, float *ylo, int32_t *k)
{
    float kt = x * KLM_INVLN2_F + KLM_SHIFT_F;
    float kf = kt - KLM_SHIFT_F;
    float hi = x - kf * KLM_LN2HI12_F;
    float lo = kf * KLM_LN2LO12_F - xlo;
    float r = hi - lo;
    float r2 = r * r;
    float q = (KLM_EC2_F + r * KLM_EC3_F) + r2 * ((KLM_EC4_F + r * KLM_EC5_F) + r2 * KLM_EC6_F);
    float y = 1.0f + hi;
    float e = (1.0f - y) + hi;
    int32_t kb;
    memcpy(&kb, &kt, sizeof kb);
    *k = kb - KLM_SHIFT_BITS_F;
    *ylo = e + (r2 * q - lo);
    return y;
}

/* (y + ylo) 2^k in double, for k + 1023 in [1, 2046] (klm_exp_split_f32's result). */
static inline double klm_scale_pair_f64(float y, float ylo, int32_t k)
{
    uint64_t b = (uint64_t)(uint32_t)(k + 1023) << 52;
    double s;
    memcpy(&s, &b, sizeof s);
    return ((double)y + (double)ylo) * s;
}

/* a b + c with one rounding (fma) where the target has FMA, else two: for loops
   whose specialisations must round alike (a product left to the compiler may be
   contracted in one copy of a loop and not in another). */
static inline double klm_mul_add_f64(double a, double b, double c)
{
#if KLM_HAVE_FMA
    return fma(a, b, c);
#else
    return a * b + c;
#endif
}

static inline float klm_mul_add_f32(float a, float b, float c)
{
#if KLM_HAVE_FMA
    return fmaf(a, b, c);
#else
    return a * b + c;
#endif
}

/* k ln 2 + a, with k (a sum of p times exponents) split so that its product with the high
   part of ln 2 is exact: one rounding at the end.  The high part is k with the low 33 bits
   of its mantissa cleared (exact; Veltkamp's split, k (2^33 + 1), overflowed from k near
   2^-33 DBL_MAX, which rows of p near 1e298 reach, and sent them to the careful path). */
static inline double klm_join_k_f64(double k, double a)
{
    uint64_t b;
    double kh, kl;
    memcpy(&b, &k, sizeof b);
    b &= ~((UINT64_C(1) << 33) - 1);
    memcpy(&kh, &b, sizeof kh);
    kl = k - kh;
    return kh * KLM_LN2HI_D + (kl * KLM_LN2HI_D + (k * KLM_LN2LO_D + a));
}

/* The Jensen-Shannon pair term is (s / 4) g(d) with g(d) = (1+d) log(1+d) + (1-d) log(1-d)
   = sum_{k>=1} d^(2k) / (k (2k-1)); these are g(d) / d^2 as a series in z = d^2 (coefficient
   k is 1 / ((k+1)(2k+1))), for 0 <= z < 1/4.  float64: the first omitted term is below 1e-18
   relative; float32 (shortened to float precision): below 2^-30.  Estrin's scheme (pairs,
   then pairs of pairs with z^2, z^4, ...): every term is positive, so the order costs no
   accuracy, and the dependency chain is 5 multiply-adds deep instead of 24, which short
   rows (latency-bound) feel. */
static inline double klm_js_series_f64(double z)
{
    double z2 = z * z, z4 = z2 * z2, z8 = z4 * z4, z16 = z8 * z8;
    double e0 = 1.0 + 1.0/6 * z, e1 = 1.0/15 + 1.0/28 * z;
    double e2 = 1.0/45 + 1.0/66 * z, e3 = 1.0/91 + 1.0/120 * z;
    double e4 = 1.0/153 + 1.0/190 * z, e5 = 1.0/231 + 1.0/276 * z;
    double e6 = 1.0/325 + 1.0/378 * z, e7 = 1.0/435 + 1.0/496 * z;
    double e8 = 1.0/561 + 1.0/630 * z, e9 = 1.0/703 + 1.0/780 * z;
    double e10 = 1.0/861 + 1.0/946 * z, e11 = 1.0/1035 + 1.0/1128 * z;
    double f0 = e0 + e1 * z2, f1 = e2 + e3 * z2, f2 = e4 + e5 * z2;
    double f3 = e6 + e7 * z2, f4 = e8 + e9 * z2, f5 = e10 + e11 * z2;
    double g0 = f0 + f1 * z4, g1 = f2 + f3 * z4, g2 = f4 + f5 * z4;
    double h0 = g0 + g1 * z8, h1 = g2 + 1.0/1225 * z8;
    return h0 + h1 * z16;
}

static inline float klm_js_series_f32(float z)
{
    float z2 = z * z, z4 = z2 * z2, z8 = z4 * z4;
    float e0 = 1.0f + 1.0f/6 * z, e1 = 1.0f/15 + 1.0f/28 * z;
    float e2 = 1.0f/45 + 1.0f/66 * z, e3 = 1.0f/91 + 1.0f/120 * z;
    float e4 = 1.0f/153 + 1.0f/190 * z;
    float f0 = e0 + e1 * z2, f1 = e2 + e3 * z2, f2 = e4 + 1.0f/231 * z2;
    return (f0 + f1 * z4) + f2 * z8;
}

/* A hint to bring the cache line KLM_PREFETCH_BYTES past x into the caches, for the KL
   blocks of rows that stream from memory: a loop bound by its divider or its polynomial
   otherwise leaves the memory idle between the hardware prefetcher's requests.  The address
   is formed as an integer (it may lie past the end of x's array, where pointer arithmetic
   would be undefined); a prefetch never faults and changes no result.  2, 4 and 8 KB ahead
   measured alike, 1 KB gained less (docs/kernels.md). */
#define KLM_PREFETCH_BYTES 2048
#if defined(__SSE__) || defined(_M_X64) || defined(_M_IX86)
#include <xmmintrin.h>
static inline void klm_prefetch_ahead(const void *x)
{
    _mm_prefetch((const char *)((uintptr_t)x + KLM_PREFETCH_BYTES), _MM_HINT_T0);
}
#elif defined(__GNUC__)
static inline void klm_prefetch_ahead(const void *x)
{
    __builtin_prefetch((const void *)((uintptr_t)x + KLM_PREFETCH_BYTES), 0, 3);
}
#else
static inline void klm_prefetch_ahead(const void *x)
{
    (void)x;
}
#endif

#endif /* KL_MATH_H */
