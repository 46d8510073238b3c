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
   with q == 0), so a non-finite block total sends the row there.  The term
   is p log(r) + (p - r q) for the rounded ratio r (see kl_residual_f64). */
static inline double KLM_FN(kl_term_f64)(double p, double q)
{
    double r = p / q;
    double t = p * KLM_FN(log_normal_f64)(r) + kl_residual_f64(p, r, q);
    /* chained selects on doubles compile to compare + blend, no branches */
    t = (r >= DBL_MIN) & (r <= DBL_MAX) ? t : NAN;  /* also NaN/inf p or q, q == 0 */
    t = p == 0.0 ? q * 0.0 : t;                     /* 0, or NaN for q = inf/NaN */
    t = (p < q ? p : q) >= 0.0 ? t : NAN;           /* a negative p or q */
    return t;
}

static inline float KLM_FN(kl_term_f32)(float p, float q)
{
    float r = p / q;
    float t = p * KLM_FN(log_normal_f32)(r) + kl_residual_f32(p, r, q);
    t = (r >= FLT_MIN) & (r <= FLT_MAX) ? t : NAN;
    t = p == 0.0f ? q * 0.0f : t;
    t = (p < q ? p : q) >= 0.0f ? t : NAN;
    return t;
}

/* ---- fused float64 block: terms, lane sums and checks in one loop ------ */
#if defined(__GNUC__) || defined(__clang__)
#define KL_HAVE_FUSED_F64 1

/* Element-wise max(a, b) / min(a, b) that return b when a is NaN (as maxpd
   and minpd do), and bit selects, on 4 doubles. */
#if defined(__AVX2__)
static inline __attribute__((always_inline)) kl_v4d KLM_FN(kl_v4_max)(kl_v4d a, kl_v4d b)
{ return (kl_v4d)_mm256_max_pd((__m256d)a, (__m256d)b); }
static inline __attribute__((always_inline)) kl_v4d KLM_FN(kl_v4_min)(kl_v4d a, kl_v4d b)
{ return (kl_v4d)_mm256_min_pd((__m256d)a, (__m256d)b); }
#else
static inline __attribute__((always_inline)) kl_v4d KLM_FN(kl_v4_max)(kl_v4d a, kl_v4d b)
{
    kl_v4i m = (kl_v4i)(a > b);
    return (kl_v4d)(((kl_v4i)a & m) | ((kl_v4i)b & ~m));
}
static inline __attribute__((always_inline)) kl_v4d KLM_FN(kl_v4_min)(kl_v4d a, kl_v4d b)
{
    kl_v4i m = (kl_v4i)(a < b);
    return (kl_v4d)(((kl_v4i)a & m) | ((kl_v4i)b & ~m));
}
#endif

/* log(r) for 4 doubles, each a normal, finite r > 0 (others give a finite
   value the caller's checks discard).  fdlibm's reduction r = 2^k z with z in
   [sqrt(2)/2, sqrt(2)), f = z - 1, s = f / (2 + f), then log(1 + f) =
   f - s (f - R(s^2)), which is 2s + s R rewritten so that the rounding error
   of s is scaled by s <= 0.172; R in Horner form.  Under 1.2 ulp in all. */
static inline __attribute__((always_inline)) kl_v4d KLM_FN(kl_v4_log_parts)(kl_v4d r, kl_v4d *k)
{
    kl_v4u ix, t, zb, kb;
    kl_v4d z, kd, f, s, z2, R;
    memcpy(&ix, &r, sizeof ix);
    t = ix + (UINT64_C(0x3ff0000000000000) - UINT64_C(0x3fe6a09e667f3bcd));
    zb = (t & UINT64_C(0x000fffffffffffff)) + UINT64_C(0x3fe6a09e667f3bcd);
    memcpy(&z, &zb, sizeof z);
    kb = (t >> 52) | UINT64_C(0x4330000000000000);  /* 2^52 + k + 1023 */
    memcpy(&kd, &kb, sizeof kd);
    *k = kd - (0x1p52 + 1023.0);
    f = z - 1.0;
    s = f / (z + 1.0);  /* z + 1 == 2 + f exactly: f = z - 1 is exact */
    z2 = s * s;
    R = z2 * (KL_LG1_D + z2 * (KL_LG2_D + z2 * (KL_LG3_D + z2 * (KL_LG4_D
        + z2 * (KL_LG5_D + z2 * (KL_LG6_D + z2 * KL_LG7_D))))));
    return f - s * (f - R);
}

/* log(r) = k ln2 + log(z) from the parts above; under 1.2 ulp in all. */
static inline __attribute__((always_inline)) kl_v4d KLM_FN(kl_v4_log_normal)(kl_v4d r)
{
    kl_v4d kd, lz = KLM_FN(kl_v4_log_parts)(r, &kd);
    return kd * KL_LN2HI_D + (kd * KL_LN2LO_D + lz);
}

/* min(*rmin, r) over the lanes where p != 0 (1 stands in for r where p == 0). */
static inline __attribute__((always_inline)) kl_v4d KLM_FN(kl_v4_min_where_p)(kl_v4d p, kl_v4d r,
                                                                            kl_v4d rmin)
{
    const kl_v4d zero = {0.0, 0.0, 0.0, 0.0}, one = {1.0, 1.0, 1.0, 1.0};
    kl_v4d rm;
#if defined(__AVX2__)
    rm = (kl_v4d)_mm256_blendv_pd((__m256d)r, (__m256d)one, (__m256d)(p == zero));
#else
    kl_v4i pz = (kl_v4i)(p == zero);
    rm = (kl_v4d)(((kl_v4i)one & pz) | ((kl_v4i)r & ~pz));
#endif
    return KLM_FN(kl_v4_min)(rm, rmin);
}

/* p - r q exactly for 4 lanes (see kl_residual_f64): one FMA, or Dekker's
   product (0 where r or q is beyond 2^996 or p beyond 2^1000: the split would
   overflow; see kl_residual_f64).  With
   masked, 0 where p == 0; without, such a lane with q == 0 gives 0/0 = NaN,
   which makes the block total NaN and kl_block_f64 redo the block masked (rows
   whose zeros meet are rarer than the cost of the mask on every element). */
static inline __attribute__((always_inline)) kl_v4d KLM_FN(kl_v4_residual)(kl_v4d p, kl_v4d r, kl_v4d q,
                                                                          int masked)
{
    const kl_v4d zero = {0.0, 0.0, 0.0, 0.0};
#if defined(__FMA__)
    kl_v4d res = (kl_v4d)_mm256_fnmadd_pd((__m256d)r, (__m256d)q, (__m256d)p);
    if (!masked) return res;
    return (kl_v4d)((kl_v4i)res & (kl_v4i)(p != zero));
#else
    const kl_v4d big = {0x1p996, 0x1p996, 0x1p996, 0x1p996};
    kl_v4d cr = r * KL_SPLIT_D, rh = cr - (cr - r), rl = r - rh;
    kl_v4d cq = q * KL_SPLIT_D, qh = cq - (cq - q), ql = q - qh;
    kl_v4d h = r * q, l = ((rh * qh - h) + rh * ql + rl * qh) + rl * ql;
    kl_v4d res = (p - h) - l;
    const kl_v4d pbig = {0x1p1000, 0x1p1000, 0x1p1000, 0x1p1000};
    kl_v4i keep = (kl_v4i)(r <= big) & (kl_v4i)(q <= big) & (kl_v4i)(p <= pbig);
    if (masked) keep &= (kl_v4i)(p != zero);
    return (kl_v4d)((kl_v4i)res & keep);
#endif
}

/* The terms of 4 elements, p log z added to *acc and p k to *acck (the term
   is p (k ln2 + log z); the two sums are joined per lane at the end, which
   keeps the ln2 products out of the loop), with the running checks: rmax/rmin
   bound r = p/q over the lanes with p != 0; qbits collects the sign bits of
   q and of q's bits + 2^52 (set for an infinite or NaN q). */
static inline __attribute__((always_inline)) void KLM_FN(kl_v4_kl_step)(kl_v4d p, kl_v4d q, kl_v4d *acc, kl_v4d *acck,
                                          kl_v4d *rmax, kl_v4d *rmin, kl_v4u *qbits,
                                          int masked)
{
    kl_v4d r = p / q, kd, lz;
    kl_v4u qb;
    lz = KLM_FN(kl_v4_log_parts)(r, &kd);
#if defined(__FMA__)
    *acc = (kl_v4d)_mm256_fmadd_pd((__m256d)p, (__m256d)lz,
                                   (__m256d)(*acc + KLM_FN(kl_v4_residual)(p, r, q, masked)));
#else
    *acc += p * lz + KLM_FN(kl_v4_residual)(p, r, q, masked);
#endif
    *acck += p * kd;
    *rmax = KLM_FN(kl_v4_max)(r, *rmax);
    *rmin = KLM_FN(kl_v4_min_where_p)(p, r, *rmin);
    memcpy(&qb, &q, sizeof qb);
    *qbits |= qb | (qb + UINT64_C(0x0010000000000000));
}

/* k ln2 + a per lane, k = sum p k split (Veltkamp) into 20 high bits, whose
   product with KL_LN2HI_D is exact, and the rest.  Where the compiler contracts
   the split into FMAs (kh = k, kl = 0), the outer FMA forms k KL_LN2HI_D
   exactly instead: either way one rounding at the end.  A k beyond 1e298
   makes c, and so the sum, inf or NaN, which sends the row to the careful path. */
static inline __attribute__((always_inline)) kl_v4d KLM_FN(kl_v4_join_k)(kl_v4d k, kl_v4d a)
{
    kl_v4d c = k * (0x1p33 + 1.0), kh = c - (c - k), kl = k - kh;
    return kh * KL_LN2HI_D + (kl * KL_LN2HI_D + (k * KL_LN2LO_D + a));
}

/* Lanes j0..j0+3 of a last partial group of rem (< 8) elements: x[j] where
   j < rem, else pad.  Built lane by lane: a vector loaded from a buffer just
   written element by element stalls on store forwarding (measured: a row of
   10 cost 2.5x a row of 8). */
static inline __attribute__((always_inline)) kl_v4d
KLM_FN(kl_v4_tail)(const double *x, ptrdiff_t rem, ptrdiff_t j0, double pad)
{
    kl_v4d v = {j0 < rem ? x[j0] : pad, j0 + 1 < rem ? x[j0 + 1] : pad,
                j0 + 2 < rem ? x[j0 + 2] : pad, j0 + 3 < rem ? x[j0 + 3] : pad};
    return v;
}

/* KL sum of one contiguous float64 block (len <= KL_BLOCK) in the lane
   layout of kl_lane_sum_f64 (lane j takes the elements with i % 8 == j),
   plus the sums of p and q when want_sums.  Returns 0, or 1 when an element
   must go to the careful path: p or q negative, NaN or infinite, or p > 0
   with p/q outside the normal range (q == 0, over- or underflow). */
static inline __attribute__((always_inline)) int
KLM_FN(kl_block_f64_body)(const double *p, const double *q, ptrdiff_t len,
                          int want_sums, int masked, double *out)
{
    const kl_v4d zero = {0.0, 0.0, 0.0, 0.0}, one = {1.0, 1.0, 1.0, 1.0};
    kl_v4d a0 = zero, a1 = zero, k0 = zero, k1 = zero, ps0 = zero, ps1 = zero, qs0 = zero,
           qs1 = zero;
    kl_v4d rmax = zero, rmin = one;
    kl_v4u qbits = {0, 0, 0, 0};
    kl_v4d p0, q0, p1, q1;
    double lane[KL_LANES];
    ptrdiff_t full = len - len % KL_LANES, i;
    for (i = 0; i <= len - KL_LANES; i += KL_LANES) {
        memcpy(&p0, p + i, sizeof p0);
        memcpy(&q0, q + i, sizeof q0);
        memcpy(&p1, p + i + 4, sizeof p1);
        memcpy(&q1, q + i + 4, sizeof q1);
        KLM_FN(kl_v4_kl_step)(p0, q0, &a0, &k0, &rmax, &rmin, &qbits, masked);
        KLM_FN(kl_v4_kl_step)(p1, q1, &a1, &k1, &rmax, &rmin, &qbits, masked);
        if (want_sums) { ps0 += p0; ps1 += p1; qs0 += q0; qs1 += q1; }
    }
    if (full < len) {
        /* the last partial group, padded with p = 0, q = 1 (terms 0) */
        ptrdiff_t rem = len - full;
        p0 = KLM_FN(kl_v4_tail)(p + full, rem, 0, 0.0);
        q0 = KLM_FN(kl_v4_tail)(q + full, rem, 0, 1.0);
        p1 = KLM_FN(kl_v4_tail)(p + full, rem, 4, 0.0);
        q1 = KLM_FN(kl_v4_tail)(q + full, rem, 4, 1.0);
        KLM_FN(kl_v4_kl_step)(p0, q0, &a0, &k0, &rmax, &rmin, &qbits, masked);
        KLM_FN(kl_v4_kl_step)(p1, q1, &a1, &k1, &rmax, &rmin, &qbits, masked);
        if (want_sums) {
            /* the padding's q = 1 must not reach the sum of q */
            ps0 += p0; ps1 += p1;
            qs0 += KLM_FN(kl_v4_tail)(q + full, rem, 0, 0.0);
            qs1 += KLM_FN(kl_v4_tail)(q + full, rem, 4, 0.0);
        }
    }
    for (int j = 0; j < 4; j++)
        if (!(rmax[j] <= DBL_MAX) || !(rmin[j] >= DBL_MIN) || qbits[j] >> 63)
            return 1;
    a0 = KLM_FN(kl_v4_join_k)(k0, a0);
    a1 = KLM_FN(kl_v4_join_k)(k1, a1);
    memcpy(lane, &a0, sizeof a0);
    memcpy(lane + 4, &a1, sizeof a1);
    out[0] = KL_LANE_SUM(lane);
    if (want_sums) {
        memcpy(lane, &ps0, sizeof ps0);
        memcpy(lane + 4, &ps1, sizeof ps1);
        out[1] = KL_LANE_SUM(lane);
        memcpy(lane, &qs0, sizeof qs0);
        memcpy(lane + 4, &qs1, sizeof qs1);
        out[2] = KL_LANE_SUM(lane);
    }
    return 0;
}

static inline __attribute__((always_inline)) int
KLM_FN(kl_block_f64)(const double *p, const double *q, ptrdiff_t len, int want_sums, double *out)
{
    int st = want_sums ? KLM_FN(kl_block_f64_body)(p, q, len, 1, 0, out)
                       : KLM_FN(kl_block_f64_body)(p, q, len, 0, 0, out);
    if (st == 0 && out[0] != out[0])  /* p == q == 0 somewhere: see kl_v4_residual */
        st = want_sums ? KLM_FN(kl_block_f64_body)(p, q, len, 1, 1, out)
                       : KLM_FN(kl_block_f64_body)(p, q, len, 0, 1, out);
    return st;
}
#endif

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
#ifdef KL_HAVE_FUSED_F64
#define KL_IMPL_BLOCK KLM_FN(kl_block_f64)
#endif
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
/* the log the float64 row kernel uses: the 4-wide one where it is built */
static void KLM_FN(map_log_normal_f64)(const double *x, double *y, ptrdiff_t n)
{
#ifdef KL_HAVE_FUSED_F64
    for (ptrdiff_t i = 0; i < n; i += 4) {
        double in[4] = {1.0, 1.0, 1.0, 1.0}, out[4];
        ptrdiff_t len = n - i < 4 ? n - i : 4;
        kl_v4d v;
        memcpy(in, x + i, (size_t)len * sizeof(double));
        memcpy(&v, in, sizeof v);
        v = KLM_FN(kl_v4_log_normal)(v);
        memcpy(out, &v, sizeof v);
        memcpy(y + i, out, (size_t)len * sizeof(double));
    }
#else
    for (ptrdiff_t i = 0; i < n; i++) y[i] = KLM_FN(log_normal_f64)(x[i]);
#endif
}
static void KLM_FN(map_log_normal_f32)(const float *x, float *y, ptrdiff_t n)
{ KLM_FN(kl_map_log_normal_f32)(x, y, n); }
