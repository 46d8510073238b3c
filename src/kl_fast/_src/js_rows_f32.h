/* float32 row kernel of the Jensen-Shannon sum, instantiated once per
   instruction-set target (KLM_FN gives the suffix).  No include guard on
   purpose; included from js_rows_impl.h, after kl_core.h has instantiated
   kl_rows_f32.h (its vector types and division-free log) for the target.

   With a == b, JS(a p, a q) = a JS(p, q) (the sum is homogeneous of degree
   1) and x = p, y = q are used as they are; otherwise x = a p, y = b q are
   rounded to float from double.  The pair terms
   (s / 4) g(d) of js_rows_impl.h are computed in float, 8 at a time:
   d = (x - y) / s is accurate to a few ulp because x - y is formed before
   any rounding that matters (in float when a == b, where it is exact for
   y / 2 <= x <= 2 y; in double when a != b), so the series branch keeps its
   full relative accuracy near q == p.  g comes from its series, shortened
   to float precision, for |d| < 1/2, else from u log u + v log v with
   u = 2x / s, v = 2y / s.  Terms are widened to double and added in 8 fixed
   lanes, block totals with Neumaier compensation (the order depends only on
   n).  A block with a negative, NaN or infinite value, a sum s that is
   subnormal or above FLT_MAX / 2, or a p or b q out of float's range returns
   KL_ROW_NEEDS_CARE: the caller then runs the float64 kernel. */

#if defined(__GNUC__) || defined(__clang__)

#ifndef JS_F32_CONSTS
#define JS_F32_CONSTS
/* elements per block (a multiple of 8) */
#define JS_F32_BLOCK 1024
/* g(d) / d^2 = sum_k z^k / ((k+1)(2k+1)), z = d^2 < 1/4: the first omitted
   term (k = 11) is below 2^-30 relative */
#define JS_SERIES_F32(z)                                                         \
    (1.0f + (z) * (1.0f/6 + (z) * (1.0f/15 + (z) * (1.0f/28 + (z) * (1.0f/45     \
    + (z) * (1.0f/66 + (z) * (1.0f/91 + (z) * (1.0f/120 + (z) * (1.0f/153        \
    + (z) * (1.0f/190 + (z) * (1.0f/231)))))))))))
#endif

/* Keeps a product out of FMA contraction (where the target has FMA), so that
   swapping p and q gives the same bits: a * b - c * d would otherwise fuse
   one of the two products.  Defined again for each target. */
#undef JS_OPAQUE
#if defined(__FMA__)
#define JS_OPAQUE(v) __asm__("" : "+x"(v))
#else
#define JS_OPAQUE(v) ((void)0)
#endif

/* Terms of 8 pairs (x, y) with x - y given as diff, added to (a0, a1);
   lanes that need another path are flagged in *bad (all bits set). */
static inline void KLM_FN(js_v8_terms)(kl_v8f x, kl_v8f y, kl_v8f diff, kl_v4d *a0, kl_v4d *a1,
                                       kl_v8i *bad)
{
    const kl_v8f zero = {0, 0, 0, 0, 0, 0, 0, 0};
    kl_v8f s = x + y;
    kl_v8f inv = 1.0f / s;
    kl_v8f d = diff * inv;
    kl_v8f z = d * d;
    kl_v8f u = (x + x) * inv, v = (y + y) * inv;
    kl_v8f series = z * JS_SERIES_F32(z);
    /* u or v == 0 multiplies a finite log: exactly 0 */
    kl_v8f tu = u * KLM_FN(kl_v8_log_normal)(u), tv = v * KLM_FN(kl_v8_log_normal)(v), direct;
    kl_v8i use_series = (kl_v8i)(z < 0.25f), pos = (kl_v8i)(s > zero), g, t;
    kl_v8f tf;
    JS_OPAQUE(tu);
    JS_OPAQUE(tv);
    direct = tu + tv;
    memcpy(&g, &series, sizeof g);
    {
        kl_v8i gd;
        memcpy(&gd, &direct, sizeof gd);
        g = (g & use_series) | (gd & ~use_series);
    }
    memcpy(&tf, &g, sizeof tf);
    tf = (0.25f * s) * tf;
    memcpy(&t, &tf, sizeof t);
    t &= pos;                                   /* s == 0: both zero, term 0 */
    memcpy(&tf, &t, sizeof tf);
    *bad |= ~((kl_v8i)(x >= zero) & (kl_v8i)(y >= zero) & (kl_v8i)(s <= 0.5f * FLT_MAX)
              & ((kl_v8i)(s >= FLT_MIN) | ~pos));
    KLM_FN(kl_v8_widen_add)(tf, a0, a1);
}

/* x = a p and y = b q rounded to float, and diff = a p - b q formed in
   double, then rounded (so swapping (a, p) with (b, q) swaps x and y and
   negates diff exactly). */
static inline void KLM_FN(js_v8_scale)(kl_v8f p, kl_v8f q, double a, double b,
                                       kl_v8f *x, kl_v8f *y, kl_v8f *diff)
{
    kl_v4f lo, hi;
    kl_v4d pl, ph, ql, qh;
    float w[KL_LANES];
    memcpy(&lo, &p, sizeof lo);
    memcpy(&hi, (const char *)&p + sizeof lo, sizeof hi);
    pl = __builtin_convertvector(lo, kl_v4d) * a;
    ph = __builtin_convertvector(hi, kl_v4d) * a;
    memcpy(&lo, &q, sizeof lo);
    memcpy(&hi, (const char *)&q + sizeof lo, sizeof hi);
    ql = __builtin_convertvector(lo, kl_v4d) * b;
    qh = __builtin_convertvector(hi, kl_v4d) * b;
    JS_OPAQUE(pl);
    JS_OPAQUE(ph);
    JS_OPAQUE(ql);
    JS_OPAQUE(qh);
#define JS_V8_NARROW(OUT, L, H)                                                    \
    lo = __builtin_convertvector(L, kl_v4f);                                       \
    hi = __builtin_convertvector(H, kl_v4f);                                       \
    memcpy(w, &lo, sizeof lo);                                                     \
    memcpy(w + 4, &hi, sizeof hi);                                                 \
    memcpy(OUT, w, sizeof w);
    JS_V8_NARROW(x, pl, ph)
    JS_V8_NARROW(y, ql, qh)
    JS_V8_NARROW(diff, pl - ql, ph - qh)
#undef JS_V8_NARROW
}

/* JS sum of one contiguous block (len <= JS_F32_BLOCK) of the pairs
   (a p, b q) into out[0] (scaled), or of (p, q) (not scaled); returns 1 when
   a lane needs another path. */
static inline __attribute__((always_inline)) int
KLM_FN(js_block_f32_body)(const float *p, const float *q, ptrdiff_t len, double a, double b,
                          int scaled, double *out)
{
    const kl_v4d dz = {0.0, 0.0, 0.0, 0.0};
    kl_v4d a0 = dz, a1 = dz;
    kl_v8i bad = {0, 0, 0, 0, 0, 0, 0, 0};
    kl_v8f p0, q0, x, y, diff;
    ptrdiff_t i = 0, full = len - len % KL_LANES;
    for (; i < len; i += KL_LANES) {
        if (i < full) {
            memcpy(&p0, p + i, sizeof p0);
            memcpy(&q0, q + i, sizeof q0);
        } else {
            /* the last partial group, padded with p = q = 0 (terms 0) */
            p0 = KLM_FN(kl_v8_tail)(p + i, len - i, 0.0f);
            q0 = KLM_FN(kl_v8_tail)(q + i, len - i, 0.0f);
        }
        if (scaled) {
            const kl_v8f zero = {0, 0, 0, 0, 0, 0, 0, 0};
            KLM_FN(js_v8_scale)(p0, q0, a, b, &x, &y, &diff);
            /* a p or b q underflowed to 0 */
            bad |= ((kl_v8i)(p0 != zero) & (kl_v8i)(x == zero))
                   | ((kl_v8i)(q0 != zero) & (kl_v8i)(y == zero));
        } else {
            x = p0;
            y = q0;
            diff = p0 - q0;
        }
        KLM_FN(js_v8_terms)(x, y, diff, &a0, &a1, &bad);
    }
    {
        int32_t w[KL_LANES], acc = 0;
        memcpy(w, &bad, sizeof w);
        for (int j = 0; j < KL_LANES; j++) acc |= w[j];
        if (acc) return 1;
    }
    out[0] = KLM_FN(kl_v8_lanes_total)(a0, a1);
    return 0;
}

static __attribute__((noinline)) int
KLM_FN(js_block_f32)(const float *p, const float *q, ptrdiff_t len, double a, double b,
                     double *out)
{
    if (a != b) return KLM_FN(js_block_f32_body)(p, q, len, a, b, 1, out);
    return KLM_FN(js_block_f32_body)(p, q, len, 1.0, 1.0, 0, out);
}

/* Scaled JS sum of one float row, computed in float (js_row_f32's contract:
   sum of js_term(a p_i, b q_i) into res[0]); KL_ROW_NEEDS_CARE sends the
   row to the float64 kernel.  Strided rows are gathered into L1 buffers a
   block at a time, so every layout gives the bits of the contiguous row. */
static int KLM_FN(js_row_f32_narrow)(const float *p, ptrdiff_t sp, const float *q, ptrdiff_t sq,
                                     ptrdiff_t n, double a, double b, double *res)
{
    double js = 0.0, js_c = 0.0;
    float pbuf[JS_F32_BLOCK] __attribute__((aligned(32)));
    float qbuf[JS_F32_BLOCK] __attribute__((aligned(32)));
    if (!(a >= DBL_MIN && a <= DBL_MAX && b >= DBL_MIN && b <= DBL_MAX)) return KL_ROW_NEEDS_CARE;
    for (ptrdiff_t start = 0; start < n; start += JS_F32_BLOCK) {
        ptrdiff_t len = n - start < JS_F32_BLOCK ? n - start : JS_F32_BLOCK;
        const float *pb = p + start * sp, *qb = q + start * sq;
        double block;
        KL_GATHER(pb, sp, len, pbuf);
        KL_GATHER(qb, sq, len, qbuf);
        if (KLM_FN(js_block_f32)(pb, qb, len, a, b, &block)) return KL_ROW_NEEDS_CARE;
        js_neumaier(&js, &js_c, block);
    }
    /* a == b: the pairs were (p, q), and the sum is homogeneous of degree 1 */
    res[0] = a == b ? a * (js + js_c) : js + js_c;
    if (!(res[0] <= DBL_MAX)) return KL_ROW_NEEDS_CARE;
    return KL_ROW_OK;
}

#endif
