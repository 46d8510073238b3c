/* float32 row kernel of the masked KL sum, instantiated once per
   instruction-set target (KLM_FN gives the suffix).  No include guard on
   purpose; included from kl_rows_impl.h.

   With GCC or Clang the row is cut into blocks of KL_F32_BLOCK elements,
   each done 8 elements at a time in three short vector loops over an L1
   buffer: r = p / q with the validity checks (two bit-pattern accumulators
   tested once per block: no per-element selects), a division-free log(r) in
   place, and the terms p * log(r) in float, widened to double and added to 8
   fixed lanes (lane j takes the elements with i % 8 == j, the last partial
   group too).  A flagged block sends the row to the careful path, so the
   checks only have to be conservative, never exact.  Block totals are added
   with Neumaier compensation; the order of operations depends only on n. */

#ifndef KL_F32_CONSTS
#define KL_F32_CONSTS
#if defined(__GNUC__) || defined(__clang__)
typedef float kl_v8f __attribute__((vector_size(32)));
typedef int32_t kl_v8i __attribute__((vector_size(32)));
typedef uint32_t kl_v8u __attribute__((vector_size(32)));
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#endif
/* log(1 + f) = f - f^2/2 + f^3 P(f) for 1 + f in [sqrt(2)/2, sqrt(2))
   (Cephes logf) */
#define KL_LP0_F 3.3333331174e-1f
#define KL_LP1_F -2.4999993993e-1f
#define KL_LP2_F 2.0000714765e-1f
#define KL_LP3_F -1.6668057665e-1f
#define KL_LP4_F 1.4249322787e-1f
#define KL_LP5_F -1.2420140846e-1f
#define KL_LP6_F 1.1676998740e-1f
#define KL_LP7_F -1.1514610310e-1f
#define KL_LP8_F 7.0376836292e-2f
#define KL_LN2_F 0x1.62e430p-1f
/* elements per block of the vector kernel (a multiple of 16) */
#define KL_F32_BLOCK 1024
#endif

#if defined(__GNUC__) || defined(__clang__)

/* log(r) for 8 floats, each a normal, finite r > 0; any other bit pattern
   gives some finite value (the callers' checks discard it, and p == 0 turns
   it into a 0 term).  r = 2^k m with m in [sqrt(2)/2, sqrt(2)), found by
   integer arithmetic on the bits, then a polynomial in f = m - 1 (exact):
   no division, no table, no select. */
static inline kl_v8f KLM_FN(kl_v8_log_normal)(kl_v8f r)
{
    kl_v8u ix, t, mb;
    kl_v8i k;
    kl_v8f m, f, z, E, O, P, w, kf;
    memcpy(&ix, &r, sizeof ix);
    t = ix - UINT32_C(0x3f3504f3);
    memcpy(&k, &t, sizeof k);
    k >>= 23;                                   /* arithmetic: k in [-128, 127] */
    mb = (t & UINT32_C(0x007fffff)) + UINT32_C(0x3f3504f3);
    memcpy(&m, &mb, sizeof m);
    kf = __builtin_convertvector(k, kl_v8f);
    f = m - 1.0f;
    z = f * f;
    /* P(f) = E(f^2) + f O(f^2): two short Horner chains, 8 FMAs */
    E = (((KL_LP8_F * z + KL_LP6_F) * z + KL_LP4_F) * z + KL_LP2_F) * z + KL_LP0_F;
    O = ((KL_LP7_F * z + KL_LP5_F) * z + KL_LP3_F) * z + KL_LP1_F;
    P = O * f + E;
    w = P * f - 0.5f;
#if defined(__FMA__)
    /* fused: k * ln2 is exact inside the FMA; ln2 rounded to float costs
       under 0.07 ulp */
    return kf * KL_LN2_F + (w * z + f);
#else
    /* without FMA: ln2 split so that k * LN2HI is exact */
    return kf * KL_LN2HI_F + (f + (w * z + kf * KL_LN2LO_F));
#endif
}

/* Element-wise map of that log (for accuracy tests). */
static void KLM_FN(kl_map_log_normal_f32)(const float *x, float *y, ptrdiff_t n)
{
    ptrdiff_t i = 0;
    kl_v8f v;
    for (; i + 8 <= n; i += 8) {
        memcpy(&v, x + i, sizeof v);
        v = KLM_FN(kl_v8_log_normal)(v);
        memcpy(y + i, &v, sizeof v);
    }
    if (i < n) {
        float b[8] = {1, 1, 1, 1, 1, 1, 1, 1};
        memcpy(b, x + i, (size_t)(n - i) * sizeof(float));
        memcpy(&v, b, sizeof v);
        v = KLM_FN(kl_v8_log_normal)(v);
        memcpy(b, &v, sizeof v);
        memcpy(y + i, b, (size_t)(n - i) * sizeof(float));
    }
}

/* a0 (lanes 0-3) and a1 (lanes 4-7) += t widened to double. */
static inline void KLM_FN(kl_v8_widen_add)(kl_v8f t, kl_v4d *a0, kl_v4d *a1)
{
#if defined(__AVX2__)
    *a0 += (kl_v4d)_mm256_cvtps_pd(_mm256_castps256_ps128((__m256)t));
    *a1 += (kl_v4d)_mm256_cvtps_pd(_mm256_extractf128_ps((__m256)t, 1));
#else
    kl_v4f lo, hi;
    memcpy(&lo, &t, sizeof lo);
    memcpy(&hi, (const char *)&t + sizeof lo, sizeof hi);
    *a0 += __builtin_convertvector(lo, kl_v4d);
    *a1 += __builtin_convertvector(hi, kl_v4d);
#endif
}

/* r = p / q of 8 elements, with running checks in rbad and qbad that the
   block test kl_v8_block_bad turns into "some element needs the careful
   path": for a lane with p != 0, r not normal, positive and finite (q == 0,
   overflow, underflow, a negative or NaN p); for every lane, q negative, -0,
   NaN or infinite.  A lane with p == 0 and a valid q passes whatever r is. */
static inline kl_v8f KLM_FN(kl_v8_ratio)(kl_v8f p, kl_v8f q, kl_v8u *rbad, kl_v8u *qbad)
{
    const kl_v8f zero = {0, 0, 0, 0, 0, 0, 0, 0};
    kl_v8f r = p / q;
    kl_v8u pz = (kl_v8u)(p == zero), rb, qb;
    memcpy(&rb, &r, sizeof rb);
    memcpy(&qb, &q, sizeof qb);
#if defined(__AVX2__)
    /* unsigned maxima: r's bits less FLT_MIN's reach 0x7f000000 exactly
       when r is not normal, positive and finite; q's bits reach 0x7f800000
       when q is negative, NaN or infinite */
    *rbad = (kl_v8u)_mm256_max_epu32((__m256i)*rbad, (__m256i)((rb - UINT32_C(0x00800000)) & ~pz));
    *qbad = (kl_v8u)_mm256_max_epu32((__m256i)*qbad, (__m256i)qb);
#else
    /* the same tests as sign bits, with the additions and ORs of SSE2 */
    {
        kl_v8u z = rb - UINT32_C(0x00800000);
        *rbad |= (z | (z + UINT32_C(0x01000000))) & ~pz;
        *qbad |= qb | (qb + UINT32_C(0x00800000));
    }
#endif
    return r;
}

/* p - r q of 8 lanes, exactly (the caller masks p == 0). */
static inline kl_v8f KLM_FN(kl_v8_residual_raw)(kl_v8f p, kl_v8f r, kl_v8f q)
{
#if defined(__FMA__)
    return (kl_v8f)_mm256_fnmadd_ps((__m256)r, (__m256)q, (__m256)p);
#else
    kl_v4f h[3][2];
    kl_v8f out;
    memcpy(h[0], &p, sizeof p);
    memcpy(h[1], &r, sizeof r);
    memcpy(h[2], &q, sizeof q);
    for (int j = 0; j < 2; j++) {
        kl_v4d d = __builtin_convertvector(h[0][j], kl_v4d)
                   - __builtin_convertvector(h[1][j], kl_v4d) * __builtin_convertvector(h[2][j], kl_v4d);
        kl_v4f f = __builtin_convertvector(d, kl_v4f);
        memcpy((char *)&out + j * sizeof f, &f, sizeof f);
    }
    return out;
#endif
}

/* p - r q exactly for 8 lanes (see kl_residual_f64 in kl_core.h): one FMA, or
   the products of floats in double, where they are exact.  With masked, 0
   where p == 0; without, such a lane with q == 0 gives 0/0 = NaN, and
   kl_block_f32 redoes the block masked (as kl_v4_residual, kl_rows_impl.h). */
static inline kl_v8f KLM_FN(kl_v8_residual)(kl_v8f p, kl_v8f r, kl_v8f q, int masked)
{
    const kl_v8f zero = {0, 0, 0, 0, 0, 0, 0, 0};
    kl_v8f res = KLM_FN(kl_v8_residual_raw)(p, r, q);
    return masked ? (kl_v8f)((kl_v8u)res & (kl_v8u)(p != zero)) : res;
}

/* Whether the checks collected by kl_v8_ratio flag any lane. */
static inline int KLM_FN(kl_v8_block_bad)(kl_v8u rbad, kl_v8u qbad)
{
#if defined(__AVX2__)
    kl_v8u bad = (kl_v8u)(rbad >= UINT32_C(0x7f000000)) | (kl_v8u)(qbad >= UINT32_C(0x7f800000));
    return !_mm256_testz_si256((__m256i)bad, (__m256i)bad);
#else
    uint32_t w[KL_LANES], acc = 0;
    kl_v8u bad = rbad | qbad;
    memcpy(w, &bad, sizeof w);
    for (int j = 0; j < KL_LANES; j++) acc |= w[j];
    return (int)(acc >> 31);
#endif
}

/* Lanes of (a0, a1) combined in the fixed pairwise order. */
static inline double KLM_FN(kl_v8_lanes_total)(kl_v4d a0, kl_v4d a1)
{
    double lane[KL_LANES];
    memcpy(lane, &a0, sizeof a0);
    memcpy(lane + 4, &a1, sizeof a1);
    return KL_LANE_SUM(lane);
}

/* The first rem (< 8) elements of x, the other lanes pad.  Built lane by lane:
   a vector loaded from a buffer just written element by element stalls on store
   forwarding (the last partial group of every float32 row kernel). */
static inline __attribute__((always_inline)) kl_v8f
KLM_FN(kl_v8_tail)(const float *x, ptrdiff_t rem, float pad)
{
    kl_v8f v = {0 < rem ? x[0] : pad, 1 < rem ? x[1] : pad, 2 < rem ? x[2] : pad,
                3 < rem ? x[3] : pad, 4 < rem ? x[4] : pad, 5 < rem ? x[5] : pad,
                6 < rem ? x[6] : pad, 7 < rem ? x[7] : pad};
    return v;
}

/* KL sum of one contiguous block (len <= KL_F32_BLOCK) into out[0], and the
   sums of p and q into out[1], out[2] when want_sums.  Returns 1 when an
   element must go to the careful path (nothing else computed), else 0. */
static inline __attribute__((always_inline)) int
KLM_FN(kl_block_f32_body)(const float *p, const float *q, ptrdiff_t len,
                          int want_sums, int masked, double *out)
{
    const kl_v4d dz = {0.0, 0.0, 0.0, 0.0};
    kl_v4d a0 = dz, a1 = dz, ps0 = dz, ps1 = dz, qs0 = dz, qs1 = dz;
    kl_v8u rbad = {0, 0, 0, 0, 0, 0, 0, 0}, qbad = rbad;
    kl_v8f p0, q0, p1, r0, r1, t;
    float rbuf[KL_F32_BLOCK + KL_LANES] __attribute__((aligned(32)));
    float sbuf[KL_F32_BLOCK + KL_LANES] __attribute__((aligned(32)));  /* p - r q */
    kl_v8f ptail = {0, 0, 0, 0, 0, 0, 0, 0};
    ptrdiff_t i = 0, full = len - len % KL_LANES;
    /* pass 1: ratios, their residuals and checks (and the sums of p and q) */
    for (; i < full; i += KL_LANES) {
        memcpy(&p0, p + i, sizeof p0);
        memcpy(&q0, q + i, sizeof q0);
        r0 = KLM_FN(kl_v8_ratio)(p0, q0, &rbad, &qbad);
        memcpy(rbuf + i, &r0, sizeof r0);
        t = KLM_FN(kl_v8_residual)(p0, r0, q0, masked);
        memcpy(sbuf + i, &t, sizeof t);
        if (want_sums) {
            KLM_FN(kl_v8_widen_add)(p0, &ps0, &ps1);
            KLM_FN(kl_v8_widen_add)(q0, &qs0, &qs1);
        }
    }
    if (full < len) {
        /* the last partial group, padded with p = 0, q = 1 (terms 0; q = 0 in
           the sum of q) */
        ptail = KLM_FN(kl_v8_tail)(p + full, len - full, 0.0f);
        q0 = KLM_FN(kl_v8_tail)(q + full, len - full, 1.0f);
        r0 = KLM_FN(kl_v8_ratio)(ptail, q0, &rbad, &qbad);
        memcpy(rbuf + full, &r0, sizeof r0);
        t = KLM_FN(kl_v8_residual)(ptail, r0, q0, masked);
        memcpy(sbuf + full, &t, sizeof t);
        if (want_sums) {
            KLM_FN(kl_v8_widen_add)(ptail, &ps0, &ps1);
            KLM_FN(kl_v8_widen_add)(KLM_FN(kl_v8_tail)(q + full, len - full, 0.0f), &qs0, &qs1);
        }
    }
    if (KLM_FN(kl_v8_block_bad)(rbad, qbad)) return 1;
    /* pass 2: log(r) in place, the padded last group too (three short loops
       measured faster than fused ones: fewer values live in each) */
    for (i = 0; i < len; i += KL_LANES) {
        memcpy(&r0, rbuf + i, sizeof r0);
        r0 = KLM_FN(kl_v8_log_normal)(r0);
        memcpy(rbuf + i, &r0, sizeof r0);
    }
    /* pass 3: terms p * log(r) + (p - r q); two groups of 8 are added in
       float before they are widened (one more rounding, the size of a term's
       own error), so the double accumulators wait on one addition per 16
       elements */
    for (i = 0; i + 2 * KL_LANES <= full; i += 2 * KL_LANES) {
        kl_v8f s0, s1;
        memcpy(&p0, p + i, sizeof p0);
        memcpy(&p1, p + i + KL_LANES, sizeof p1);
        memcpy(&r0, rbuf + i, sizeof r0);
        memcpy(&r1, rbuf + i + KL_LANES, sizeof r1);
        memcpy(&s0, sbuf + i, sizeof s0);
        memcpy(&s1, sbuf + i + KL_LANES, sizeof s1);
#if defined(__FMA__)
        t = (kl_v8f)_mm256_fmadd_ps((__m256)p0, (__m256)r0, (__m256)(s0 + s1));
        t = (kl_v8f)_mm256_fmadd_ps((__m256)p1, (__m256)r1, (__m256)t);
#else
        t = p0 * r0 + s0;
        t += p1 * r1 + s1;
#endif
        KLM_FN(kl_v8_widen_add)(t, &a0, &a1);
    }
    for (; i < len; i += KL_LANES) {
        kl_v8f s0;
        if (i < full) memcpy(&p0, p + i, sizeof p0);
        else p0 = ptail;
        memcpy(&r0, rbuf + i, sizeof r0);
        memcpy(&s0, sbuf + i, sizeof s0);
        KLM_FN(kl_v8_widen_add)(p0 * r0 + s0, &a0, &a1);
    }
    out[0] = KLM_FN(kl_v8_lanes_total)(a0, a1);
    if (want_sums) {
        out[1] = KLM_FN(kl_v8_lanes_total)(ps0, ps1);
        out[2] = KLM_FN(kl_v8_lanes_total)(qs0, qs1);
    }
    return 0;
}

static __attribute__((noinline)) int
KLM_FN(kl_block_f32)(const float *p, const float *q, ptrdiff_t len, int want_sums, double *out)
{
    int st = want_sums ? KLM_FN(kl_block_f32_body)(p, q, len, 1, 0, out)
                       : KLM_FN(kl_block_f32_body)(p, q, len, 0, 0, out);
    if (st == 0 && out[0] != out[0])  /* p == q == 0 somewhere: see kl_v8_residual */
        st = want_sums ? KLM_FN(kl_block_f32_body)(p, q, len, 1, 1, out)
                       : KLM_FN(kl_block_f32_body)(p, q, len, 0, 1, out);
    return st;
}

/* Row kernel: the shared block loop (strided operands gathered into L1
   buffers a block at a time, block totals added with Neumaier compensation). */
#define KL_IMPL_T float
#define KL_IMPL_BLOCK KLM_FN(kl_block_f32)
#define KL_IMPL_BLOCK_LEN KL_F32_BLOCK
#define KL_IMPL_NAME KLM_FN(kl_row_f32)
#include "kl_rows_loop.h"

#else /* no vector extensions: the generic map + lane-sum kernel */

static void KLM_FN(kl_map_log_normal_f32)(const float *x, float *y, ptrdiff_t n)
{ for (ptrdiff_t i = 0; i < n; i++) y[i] = KLM_FN(log_normal_f32)(x[i]); }

#define KL_IMPL_T float
#define KL_IMPL_W float
#define KL_IMPL_SUM KLM_FN(kl_lane_sum_f32)
#define KL_IMPL_TERM KLM_FN(kl_term_f32)
#define KL_IMPL_NAME KLM_FN(kl_row_f32)
#define KL_IMPL_MAP KLM_FN(kl_map_f32)
#define KL_IMPL_MAP_STRIDED KLM_FN(kl_map_strided_f32)
#include "kl_rows_loop.h"

#endif
