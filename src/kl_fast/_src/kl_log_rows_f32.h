/* float32 row kernels of KL from log-probabilities, instantiated once per
   instruction-set target (KLM_FN gives the suffix).  No include guard on
   purpose; included from kl_log_rows_impl.h, after kl_core.h has
   instantiated kl_rows_f32.h (its 8-wide vector types) for the target.

   The exponential, the expensive part, is computed in float 8 at a time,
   split as exp(a) = y 2^k (y in [0.7, 1.42], k an integer) so that its
   range is that of double: y is widened and scaled by 2^k in double, where
   the rest of the term is formed, e y ((lp - lq) - c) (the difference in
   double, exact for float inputs up to the rounding of c).  a = lp - lp0
   with lp0 = h0 + l0 (h0 the float nearest lp0): lp - h0 is rounded in
   float and its rounding error recovered (Knuth's TwoSum), so a reaches the
   exponential as a float pair and its relative error stays near one float
   ulp whatever the size of lp0.  Terms are added in double in 8 fixed lanes
   (lane j takes the elements with i % 8 == j), block totals with Neumaier
   compensation: the order depends only on n.  A block with NaN or +inf, or
   with a finite pair whose a is outside [-700, 88] and not below -1500
   (where the term is below 2^-1074 and counts 0, as in the float64 kernel),
   returns KL_ROW_NEEDS_CARE: the caller then runs the float64 kernel. */

#if defined(__GNUC__) || defined(__clang__)

#ifndef KL_LOG_F32_CONSTS
#define KL_LOG_F32_CONSTS
typedef int32_t kl_v4i32 __attribute__((vector_size(16)));
/* elements per block (a multiple of 8) */
#define KL_LOG_F32_BLOCK 1024
/* ln 2 = HI + LO with k * HI exact for |k| < 2^12 (HI has 12 bits) */
#define KL_LOG_LN2HI_F 0x1.62ep-1f
#define KL_LOG_LN2LO_F 0x1.0bfbe8p-15f
#define KL_LOG_SHIFT_BITS_F INT32_C(0x4b400000)   /* bits of 0x1.8p23f */
/* a is used as it is inside [KL_LOG_A_MIN_F, KL_LOG_A_MAX_F]: e = y 2^k is a
   normal double there, e times any float difference stays finite */
#define KL_LOG_A_MIN_F (-700.0f)
#define KL_LOG_A_MAX_F 88.0f
#define KL_LOG_NEGLIGIBLE_F (-1500.0f)
#endif

/* exp(x + xlo) = (y + *ylo) 2^k for 8 floats x in [-2200, 2200] and
   |xlo| <= 2^-8: y + ylo in [0.7, 1.42] (an unevaluated float pair, far
   better than one float ulp), k = round(x / ln 2) in *k.  Cody-Waite
   reduction r = (x - k HI) - (k LO - xlo), the first difference exact, then
   exp(r) = 1 + r + r^2 Q(r) with klmath.h's float Q; 1 + hi is rounded
   and its rounding error kept in ylo (Fast2Sum) with the small terms. */
static inline kl_v8f KLM_FN(kl_v8_exp_split)(kl_v8f x, kl_v8f xlo, kl_v8f *ylo, kl_v8i *k)
{
    kl_v8f kt = x * KLM_INVLN2_F + KLM_SHIFT_F;
    kl_v8f kf = kt - KLM_SHIFT_F;
    kl_v8f hi = x - kf * KL_LOG_LN2HI_F;
    kl_v8f lo = kf * KL_LOG_LN2LO_F - xlo;
    kl_v8f r = hi - lo;
    kl_v8f r2 = r * r;
    kl_v8f q = (KLM_EC2_F + r * KLM_EC3_F) + r2 * ((KLM_EC4_F + r * KLM_EC5_F) + r2 * KLM_EC6_F);
    kl_v8f y = 1.0f + hi;
    kl_v8f e = (1.0f - y) + hi;
    kl_v8i kb;
    memcpy(&kb, &kt, sizeof kb);
    *k = kb - KL_LOG_SHIFT_BITS_F;
    *ylo = e + (r2 * q - lo);
    return y;
}

/* (e0, e1) = (y + yl) 2^k in double (elements 0-3 and 4-7); k + 1023 must
   be in [1, 2046]. */
static inline void KLM_FN(kl_v8_scale_widen)(kl_v8f y, kl_v8f yl, kl_v8i k, kl_v4d *e0, kl_v4d *e1)
{
    kl_v4f ylo, yhi, llo, lhi;
    kl_v4i32 klo, khi;
    kl_v4i b;
    kl_v4d s;
    memcpy(&ylo, &y, sizeof ylo);
    memcpy(&yhi, (const char *)&y + sizeof ylo, sizeof yhi);
    memcpy(&klo, &k, sizeof klo);
    memcpy(&khi, (const char *)&k + sizeof klo, sizeof khi);
    memcpy(&llo, &yl, sizeof llo);
    memcpy(&lhi, (const char *)&yl + sizeof llo, sizeof lhi);
    b = (__builtin_convertvector(klo, kl_v4i) + 1023) << 52;
    memcpy(&s, &b, sizeof s);
    *e0 = (__builtin_convertvector(ylo, kl_v4d) + __builtin_convertvector(llo, kl_v4d)) * s;
    b = (__builtin_convertvector(khi, kl_v4i) + 1023) << 52;
    memcpy(&s, &b, sizeof s);
    *e1 = (__builtin_convertvector(yhi, kl_v4d) + __builtin_convertvector(lhi, kl_v4d)) * s;
}

/* a = lp - (h0 + l0) as the float pair (hi, lo), TwoSum on lp - h0. */
static inline kl_v8f KLM_FN(kl_v8_sub_pair)(kl_v8f lp, float h0, float l0, kl_v8f *lo)
{
    kl_v8f s = lp - h0;
    kl_v8f bb = s - lp;
    *lo = ((lp - (s - bb)) + (-h0 - bb)) - l0;
    return s;
}

static inline kl_v8f KLM_FN(kl_v8_select)(kl_v8i m, kl_v8f a, kl_v8f b)
{
    kl_v8i ai, bi;
    memcpy(&ai, &a, sizeof ai);
    memcpy(&bi, &b, sizeof bi);
    ai = (ai & m) | (bi & ~m);
    memcpy(&a, &ai, sizeof a);
    return a;
}

/* exp(ahi + alo) widened to two double vectors where keep is set, 0 elsewhere
   (the arguments of the lanes not kept are never exponentiated). */
static inline __attribute__((always_inline)) void
KLM_FN(kl_v8_exp_kept)(kl_v8i keep, kl_v8f ahi, kl_v8f alo, kl_v4d *e0, kl_v4d *e1)
{
    const kl_v8f zero = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    kl_v8f y, yl;
    kl_v8i k;
    ahi = KLM_FN(kl_v8_select)(keep, ahi, zero);
    alo = KLM_FN(kl_v8_select)(keep, alo, zero);
    y = KLM_FN(kl_v8_exp_split)(ahi, alo, &yl, &k);
    y = KLM_FN(kl_v8_select)(keep, y, zero);
    yl = KLM_FN(kl_v8_select)(keep, yl, zero);
    KLM_FN(kl_v8_scale_widen)(y, yl, k, e0, e1);
}

/* Terms of 8 pairs added to (a0, a1); a lane that needs the float64 kernel
   sets *bad, lq == -inf under a finite lp sets *ninf. */
static inline void KLM_FN(kl_log_v8_terms)(kl_v8f lp, kl_v8f lq, float h0, float l0, double c,
                                           kl_v4d *a0, kl_v4d *a1, kl_v8i *bad, kl_v8i *ninf)
{
    const kl_v8f zero = {0, 0, 0, 0, 0, 0, 0, 0};
    const kl_v8f ninf_f = zero - (float)HUGE_VAL;
    kl_v8i fin = (kl_v8i)(lp > ninf_f) & (kl_v8i)(lq > ninf_f);
    kl_v8i keep;
    kl_v8f lps = KLM_FN(kl_v8_select)(fin, lp, zero), lqs = KLM_FN(kl_v8_select)(fin, lq, zero);
    kl_v8f alo, ahi = KLM_FN(kl_v8_sub_pair)(lps, h0, l0, &alo);
    kl_v4f lo, hi;
    kl_v4d e0, e1, d0, d1;
    keep = fin & (kl_v8i)(ahi >= KL_LOG_A_MIN_F) & (kl_v8i)(ahi <= KL_LOG_A_MAX_F);
    *bad |= ~((kl_v8i)(lp <= FLT_MAX) & (kl_v8i)(lq <= FLT_MAX))
            | (fin & ~keep & (kl_v8i)(ahi >= KL_LOG_NEGLIGIBLE_F));
    *ninf |= (kl_v8i)(lp > ninf_f) & (kl_v8i)(lq == ninf_f);
    KLM_FN(kl_v8_exp_kept)(keep, ahi, alo, &e0, &e1);
    memcpy(&lo, &lps, sizeof lo);
    memcpy(&hi, (const char *)&lps + sizeof lo, sizeof hi);
    d0 = __builtin_convertvector(lo, kl_v4d);
    d1 = __builtin_convertvector(hi, kl_v4d);
    memcpy(&lo, &lqs, sizeof lo);
    memcpy(&hi, (const char *)&lqs + sizeof lo, sizeof hi);
    d0 = (d0 - __builtin_convertvector(lo, kl_v4d)) - c;
    d1 = (d1 - __builtin_convertvector(hi, kl_v4d)) - c;
    *a0 += e0 * d0;
    *a1 += e1 * d1;
}

static inline int KLM_FN(kl_v8i_any)(kl_v8i m)
{
    int32_t w[KL_LANES], acc = 0;
    memcpy(w, &m, sizeof w);
    for (int j = 0; j < KL_LANES; j++) acc |= w[j];
    return acc != 0;
}

/* KL sum of one contiguous block into out[0]; returns 1 when a lane needs
   the float64 kernel, 2 when some lq == -inf under a finite lp. */
static __attribute__((noinline)) int
KLM_FN(kl_log_block_f32)(const float *p, const float *q, ptrdiff_t len, float h0, float l0,
                         double c, double *out)
{
    const kl_v4d dz = {0.0, 0.0, 0.0, 0.0};
    kl_v4d a0 = dz, a1 = dz;
    kl_v8i bad = {0, 0, 0, 0, 0, 0, 0, 0}, ninf = bad;
    kl_v8f p0, q0;
    ptrdiff_t i = 0, full = len - len % KL_LANES;
    for (; i < full; i += KL_LANES) {
        memcpy(&p0, p + i, sizeof p0);
        memcpy(&q0, q + i, sizeof q0);
        KLM_FN(kl_log_v8_terms)(p0, q0, h0, l0, c, &a0, &a1, &bad, &ninf);
    }
    if (i < len) {
        /* the last partial group, padded with lp = lq = -inf (terms 0) */
        p0 = KLM_FN(kl_v8_tail)(p + i, len - i, -(float)HUGE_VAL);
        q0 = KLM_FN(kl_v8_tail)(q + i, len - i, -(float)HUGE_VAL);
        KLM_FN(kl_log_v8_terms)(p0, q0, h0, l0, c, &a0, &a1, &bad, &ninf);
    }
    if (KLM_FN(kl_v8i_any)(bad)) return 1;
    out[0] = KLM_FN(kl_v8_lanes_total)(a0, a1);
    return KLM_FN(kl_v8i_any)(ninf) ? 2 : 0;
}

/* One float row: kl_log_row_f32's contract, computed in float where it can
   be; KL_ROW_NEEDS_CARE sends the row to the float64 kernel.  Strided rows
   are gathered into L1 buffers a block at a time (the bits of the
   contiguous row for every layout). */
static int KLM_FN(kl_log_row_f32_narrow)(const float *p, ptrdiff_t sp, const float *q,
                                         ptrdiff_t sq, ptrdiff_t n, double lp0, double lq0,
                                         double *res)
{
    double kl = 0.0, kl_c = 0.0, c = lp0 - lq0;
    float h0 = (float)lp0, l0 = (float)(lp0 - (double)h0);
    float pbuf[KL_LOG_F32_BLOCK] __attribute__((aligned(32)));
    float qbuf[KL_LOG_F32_BLOCK] __attribute__((aligned(32)));
    int ninf = 0;
    /* |lp0| <= 2^16 keeps the float pair's low part below 2^-8 */
    if (!(fabs(lp0) <= 0x1p16 && fabs(c) <= 0x1p100)) return KL_ROW_NEEDS_CARE;
    for (ptrdiff_t start = 0; start < n; start += KL_LOG_F32_BLOCK) {
        ptrdiff_t len = n - start < KL_LOG_F32_BLOCK ? n - start : KL_LOG_F32_BLOCK;
        const float *pb = p + start * sp, *qb = q + start * sq;
        double block = 0.0;
        int st;
        KL_GATHER(pb, sp, len, pbuf);
        KL_GATHER(qb, sq, len, qbuf);
        st = KLM_FN(kl_log_block_f32)(pb, qb, len, h0, l0, c, &block);
        if (st == 1) return KL_ROW_NEEDS_CARE;
        ninf |= st == 2;
        kl_neumaier(&kl, &kl_c, block);
    }
    res[0] = kl + kl_c;
    if (!(res[0] <= DBL_MAX && res[0] >= -DBL_MAX)) return KL_ROW_NEEDS_CARE;
    if (ninf) res[0] = HUGE_VAL;
    return KL_ROW_OK;
}

/* Sum of exp(x - mx) along a float row (mx the row's largest finite entry,
   |mx| <= 2^16): NaN, +inf and exponents below -700 count 0 (e < 2^-1000, against
   a sum of at least 1). */
static double KLM_FN(kl_log_sumexp_f32_narrow)(const float *x, ptrdiff_t sx, ptrdiff_t n, double mx)
{
    const kl_v4d dz = {0.0, 0.0, 0.0, 0.0};
    double s = 0.0, s_c = 0.0;
    float h0 = (float)mx, l0 = (float)(mx - (double)h0);
    float xbuf[KL_LOG_F32_BLOCK] __attribute__((aligned(32)));
    for (ptrdiff_t start = 0; start < n; start += KL_LOG_F32_BLOCK) {
        ptrdiff_t len = n - start < KL_LOG_F32_BLOCK ? n - start : KL_LOG_F32_BLOCK;
        const float *xb = x + start * sx;
        kl_v4d a0 = dz, a1 = dz, e0, e1;
        kl_v8f v, alo, ahi;
        kl_v8i keep;
        KL_GATHER(xb, sx, len, xbuf);
        for (ptrdiff_t i = 0; i < len; i += KL_LANES) {
            if (i + KL_LANES <= len) {
                memcpy(&v, xb + i, sizeof v);
            } else {
                float t[KL_LANES];
                for (int j = 0; j < KL_LANES; j++) t[j] = -(float)HUGE_VAL;
                memcpy(t, xb + i, (size_t)(len - i) * sizeof(float));
                memcpy(&v, t, sizeof v);
            }
            ahi = KLM_FN(kl_v8_sub_pair)(v, h0, l0, &alo);
            keep = (kl_v8i)(ahi >= KL_LOG_A_MIN_F) & (kl_v8i)(v <= FLT_MAX);
            KLM_FN(kl_v8_exp_kept)(keep, ahi, alo, &e0, &e1);
            a0 += e0;
            a1 += e1;
        }
        kl_neumaier(&s, &s_c, KLM_FN(kl_v8_lanes_total)(a0, a1));
    }
    return s + s_c;
}

/* Largest finite entry of each of two float rows (-inf for an empty or all
   -inf row), 8 lanes at a time; returns 1 when the rows hold NaN or +inf
   (kl_log_max_f32's contract). */
static inline kl_v8f KLM_FN(kl_v8_max_finite)(kl_v8f m, kl_v8f v, kl_v8i *bad)
{
    kl_v8i ok = (kl_v8i)(v <= FLT_MAX);
    *bad |= ~ok;
    return KLM_FN(kl_v8_select)(ok & (kl_v8i)(v > m), v, m);
}

static float KLM_FN(kl_v8_hmax)(kl_v8f m)
{
    float w[KL_LANES], r = -(float)HUGE_VAL;
    memcpy(w, &m, sizeof w);
    for (int j = 0; j < KL_LANES; j++) r = w[j] > r ? w[j] : r;
    return r;
}

static int KLM_FN(kl_log_max_f32_narrow)(const float *p, ptrdiff_t sp, const float *q,
                                         ptrdiff_t sq, ptrdiff_t n, double *pmax, double *qmax)
{
    const kl_v8f ninf_f = {-(float)HUGE_VAL, -(float)HUGE_VAL, -(float)HUGE_VAL, -(float)HUGE_VAL,
                           -(float)HUGE_VAL, -(float)HUGE_VAL, -(float)HUGE_VAL, -(float)HUGE_VAL};
    kl_v8f mp = ninf_f, mq = ninf_f, v;
    kl_v8i bad = {0, 0, 0, 0, 0, 0, 0, 0};
    ptrdiff_t i = 0;
    if (sp == 1 && sq == 1) {
        for (; i + KL_LANES <= n; i += KL_LANES) {
            memcpy(&v, p + i, sizeof v);
            mp = KLM_FN(kl_v8_max_finite)(mp, v, &bad);
            memcpy(&v, q + i, sizeof v);
            mq = KLM_FN(kl_v8_max_finite)(mq, v, &bad);
        }
    }
    for (; i < n; i += KL_LANES) {
        float a[KL_LANES], b[KL_LANES];
        ptrdiff_t m = n - i < KL_LANES ? n - i : KL_LANES;
        for (int j = 0; j < KL_LANES; j++) a[j] = b[j] = -(float)HUGE_VAL;
        for (ptrdiff_t j = 0; j < m; j++) {
            a[j] = p[(i + j) * sp];
            b[j] = q[(i + j) * sq];
        }
        memcpy(&v, a, sizeof v);
        mp = KLM_FN(kl_v8_max_finite)(mp, v, &bad);
        memcpy(&v, b, sizeof v);
        mq = KLM_FN(kl_v8_max_finite)(mq, v, &bad);
    }
    *pmax = (double)KLM_FN(kl_v8_hmax)(mp);
    *qmax = (double)KLM_FN(kl_v8_hmax)(mq);
    return KLM_FN(kl_v8i_any)(bad);
}

/* exp(x + xlo) as y 2^k in double, element-wise (for accuracy tests). */
static void KLM_FN(kl_map_exp_split_f32)(const float *x, const float *xlo, double *out, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i += KL_LANES) {
        float a[KL_LANES] = {0}, b[KL_LANES] = {0};
        double o[KL_LANES];
        ptrdiff_t m = n - i < KL_LANES ? n - i : KL_LANES;
        kl_v8f va, vb, y, yl;
        kl_v8i k;
        kl_v4d e0, e1;
        memcpy(a, x + i, (size_t)m * sizeof(float));
        memcpy(b, xlo + i, (size_t)m * sizeof(float));
        memcpy(&va, a, sizeof va);
        memcpy(&vb, b, sizeof vb);
        y = KLM_FN(kl_v8_exp_split)(va, vb, &yl, &k);
        KLM_FN(kl_v8_scale_widen)(y, yl, k, &e0, &e1);
        memcpy(o, &e0, sizeof e0);
        memcpy(o + 4, &e1, sizeof e1);
        memcpy(out + i, o, (size_t)m * sizeof(double));
    }
}

#endif
