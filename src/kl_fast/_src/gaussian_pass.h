/* Whole passes of the Gaussian KL for p of type GK_B_T (suffix GK_B_S), per
   target: the block functions gk_run_blocks calls, and the p-side and q-side
   passes built from them.  No include guard on purpose. */

#define GK_CAT3(a, b, c) a##_##b##_##c
#define GK_NAME3(a, b, c) GK_CAT3(a, b, c)
#define GK_EXPAND_FN(n) KLM_FN(n)
#define GK_BLK(stem) GK_EXPAND_FN(GK_NAME3(gk, stem, GK_B_S))

/* p[0:len] (stride sp) as contiguous doubles: the data itself when it already
   is, else a copy into buf. */
static inline const double *GK_BLK(as_f64)(const GK_B_T *p, ptrdiff_t sp, ptrdiff_t len,
                                           double *buf)
{
    if (sizeof(GK_B_T) == sizeof(double) && sp == 1) return (const double *)(const void *)p;
    for (ptrdiff_t i = 0; i < len; i++) buf[i] = (double)p[i * sp];
    return buf;
}

static void GK_BLK(pa_block)(const void *vctx, ptrdiff_t blk, double *tot)
{
    const gk_pctx *cx = (const gk_pctx *)vctx;
    ptrdiff_t start = blk * KL_BLOCK;
    ptrdiff_t len = cx->n - start < KL_BLOCK ? cx->n - start : KL_BLOCK;
    double buf[KL_BLOCK] __attribute__((aligned(32)));
    double t[KL_BLOCK] __attribute__((aligned(32)));
    const double *p = GK_BLK(as_f64)((const GK_B_T *)cx->p + start * cx->sp, cx->sp, len, buf);
    const double *x = cx->x;
    double down = 0.0;
#ifdef GK_HAVE_PA_FUSED
    if (KLM_FN(gk_pa_fused)(p, x + start, len, cx->ctr, tot) == 0) {
        /* the pair across the block boundary counts in the later block */
        tot[4] += start > 0 && x[start] < x[start - 1];
        tot[5] = 0.0;
        return;
    }
#endif
    KLM_FN(gk_plogp)(p, len, t);
    KLM_FN(gk_pa_sums)(p, x + start, t, len, cx->ctr, tot);
    /* the pair across the block boundary counts in the later block */
    down = (double)KLM_FN(gk_count_down)(start > 0 ? x + start - 1 : x, start > 0 ? len + 1 : len);
    tot[4] = down;
    tot[5] = 0.0;
}

static void GK_BLK(pb_block)(const void *vctx, ptrdiff_t blk, double *tot)
{
    const gk_pctx *cx = (const gk_pctx *)vctx;
    ptrdiff_t start = blk * KL_BLOCK;
    ptrdiff_t len = cx->n - start < KL_BLOCK ? cx->n - start : KL_BLOCK;
    double buf[KL_BLOCK] __attribute__((aligned(32)));
    const double *p = GK_BLK(as_f64)((const GK_B_T *)cx->p + start * cx->sp, cx->sp, len, buf);
    KLM_FN(gk_pb_sums)(p, cx->x + start, len, cx->ctr, tot);
}

/* How a block's weights w are made: GK_W_ZERO all 0, the whole block beyond
   exp's range (sorted x, its nearest point to mu has a > 746); GK_W_TABLE by
   the factorised tables (a full block of a sorted grid whose ends and middle sit
   on the pass's even spacing; each point is checked again as it is used);
   GK_W_EXP point by point. */
#ifndef GK_W_ZERO
#define GK_W_ZERO 0
#define GK_W_TABLE 1
#define GK_W_EXP 2
#endif
static inline int GK_BLK(wkind)(const gk_qctx *cx, const double *x, ptrdiff_t len)
{
    if (cx->sorted) {
        double xn = x[0] < cx->mu ? (x[len - 1] < cx->mu ? x[len - 1] : cx->mu) : x[0];
        double e = xn - cx->xk, r = e * (0.5 * e + cx->dk);
        if (r > 0.0 && 2.0 * (r * cx->h) > 746.0) return GK_W_ZERO;
    }
    if (cx->t2 != NULL && len == KL_BLOCK) {
        double tol = 1e-3 * cx->dx;
        if (fabs(x[KL_BLOCK / 2] - (x[0] + (KL_BLOCK / 2) * cx->dx)) <= tol
                && fabs(x[KL_BLOCK - 1] - (x[0] + (KL_BLOCK - 1) * cx->dx)) <= tol)
            return GK_W_TABLE;
    }
    return GK_W_EXP;
}

#define GK_Q_BLOCK(NMOM)                                                                \
static void GK_BLK(q##NMOM##_block)(const void *vctx, ptrdiff_t blk, double *tot)       \
{                                                                                       \
    const gk_qctx *cx = (const gk_qctx *)vctx;                                          \
    ptrdiff_t start = blk * KL_BLOCK;                                                   \
    ptrdiff_t len = cx->n - start < KL_BLOCK ? cx->n - start : KL_BLOCK;                \
    double buf[KL_BLOCK] __attribute__((aligned(32)));                                  \
    double w[KL_BLOCK] __attribute__((aligned(32)));                                    \
    const double *x = cx->x + start;                                                    \
    const double *p = GK_BLK(as_f64)((const GK_B_T *)cx->p + start * cx->sp, cx->sp, len, buf); \
    int kind = GK_BLK(wkind)(cx, x, len);                                                       \
    if (kind == GK_W_TABLE && KLM_FN(gk_qt##NMOM##_sums)(p, x, cx->t2, cx->xk, cx->dk,          \
                                                        cx->h, cx->mu, cx->dx, tot) == 0)       \
        return;                                                                                 \
    if (kind == GK_W_ZERO) memset(w, 0, sizeof w);                                              \
    else KLM_FN(gk_wmap)(x, len, cx->xk, cx->dk, cx->h, w);                                     \
    KLM_FN(gk_q##NMOM##_sums)(p, x, w, len, cx->xk, cx->dk, tot);                               \
}
GK_Q_BLOCK(0)
GK_Q_BLOCK(2)
GK_Q_BLOCK(4)
#undef GK_Q_BLOCK

/* p-side sums: P, H and p's first two moments about its mean c, with the
   check fused in: a negative, NaN or infinite p makes its p log p term NaN or
   inf, a NaN or infinite x its p (x - ctr) term; only then is it looked for.
   The moments come from pass A, about the grid's middle point, recentred on c;
   when c is far from that point in units of p's spread (where recentring
   would cost digits) pass B takes them again about c. */
static int GK_BLK(psums)(const GK_B_T *p, ptrdiff_t sp, const double *x, ptrdiff_t n,
                         int nthreads, gk_psums *out)
{
    gk_pctx cx;
    double s[6], mean, var;
    cx.p = p; cx.sp = sp; cx.x = x; cx.n = n;
    cx.ctr = n > 0 ? x[n / 2] : 0.0;
    out->c = cx.ctr; out->P = 0.0; out->S1 = 0.0; out->S2 = 0.0; out->H = 0.0; out->scale = 1.0;
    gk_run_blocks(GK_BLK(pa_block), &cx, n, 6, nthreads, s);
    out->xgrid = s[4] != 0.0 ? 0.0 : GK_X_SORTED;
    if (!(fabs(s[0]) <= DBL_MAX && fabs(s[1]) <= DBL_MAX && fabs(s[2]) <= DBL_MAX
          && fabs(s[3]) <= DBL_MAX)) {
        for (ptrdiff_t i = 0; i < n; i++) if (!(fabs(x[i]) <= DBL_MAX)) return GK_P_BAD_X;
        for (ptrdiff_t i = 0; i < n; i++) {
            double v = (double)p[i * sp];
            if (!(v >= 0.0 && v <= DBL_MAX)) return GK_P_BAD_P;
        }
        return GK_P_OVERFLOW;
    }
    out->P = s[0];
    out->H = s[2];
    if (!(s[0] > 0.0)) return GK_P_ZERO;
    mean = s[1] / s[0];
    var = s[3] / s[0] - mean * mean;
    cx.ctr = cx.ctr + mean;
    out->c = cx.ctr;
    if (mean * mean <= 64.0 * var) {
        out->S1 = 0.0;
        out->S2 = s[3] - s[1] * mean;
    } else {
        gk_run_blocks(GK_BLK(pb_block), &cx, n, 2, nthreads, s);
        out->S1 = s[0];
        out->S2 = s[1];
    }
    if (!(out->S2 <= DBL_MAX)) return GK_P_OVERFLOW;
    return GK_P_OK;
}

/* q-side sums of one (mu, sigma), NMOM = 0, 2 or 4 moments. */
#define GK_Q_PASS(NMOM)                                                                 \
static void GK_BLK(qsums##NMOM)(const GK_B_T *p, ptrdiff_t sp, const double *x,         \
                                ptrdiff_t n, double mu, double sigma, int xgrid,        \
                                int nthreads, gk_qsums *out)                            \
{                                                                                       \
    gk_qctx cx;                                                                         \
    double s[6], t2[KL_BLOCK] __attribute__((aligned(32)));                             \
    cx.p = p; cx.sp = sp; cx.x = x; cx.n = n; cx.mu = mu;                               \
    cx.sorted = xgrid >= GK_X_SORTED;                                                   \
    cx.xk = cx.sorted ? gk_nearest_sorted(x, n, mu) : KLM_FN(gk_nearest)(x, n, mu);     \
    cx.dk = cx.xk - mu;                                                                 \
    cx.h = (0.5 / sigma) / sigma;                                                       \
    cx.dx = n > 1 ? (x[n - 1] - x[0]) / (double)(n - 1) : 0.0;                          \
    cx.t2 = NULL;                                                                       \
    if (cx.sorted && n >= GK_TABLE_MIN_POINTS && cx.dx > 0.0 && cx.h <= DBL_MAX) {      \
        KLM_FN(gk_t2_table)(cx.h * cx.dx * cx.dx, t2);                                  \
        cx.t2 = t2;                                                                     \
    }                                                                                   \
    gk_run_blocks(GK_BLK(q##NMOM##_block), &cx, n, 6, nthreads, s);                     \
    out->xk = cx.xk; out->dk = cx.xk - mu;                                              \
    out->W = s[0]; out->W1 = s[1]; out->W2 = s[2]; out->W3 = s[3]; out->W4 = s[4];      \
    out->Ap = s[5];                                                                     \
}
GK_Q_PASS(0)
GK_Q_PASS(2)
GK_Q_PASS(4)
#undef GK_Q_PASS

#undef GK_BLK
#undef GK_EXPAND_FN
#undef GK_NAME3
#undef GK_CAT3
#undef GK_B_T
#undef GK_B_S
