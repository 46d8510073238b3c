/* Block functions of the Gaussian passes, per target.  A block function
   reads one block of p (float or double, any stride) into a contiguous double
   buffer when it is not already one, then either computes its terms and sums
   in one loop (the fused p-side pass, the table path of the q side) or runs
   the map loop of its transcendental terms into a buffer and sums that; sums
   go to fixed lanes (element i of a block in lane i % KL_LANES for the q side
   and the two-loop p side, i % 4 for the fused p side), combined pairwise.
   No include guard on purpose. */

#if defined(__GNUC__) || defined(__clang__)
#define GK_VEC 1
/* v where c > 0, else +0 (a bit mask: no branch, no 0 * inf) */
#define GK_POS(c, v) ((kl_v4d)((gk_v4i)(v) & (gk_v4i)((c) > 0.0)))
#define GK_LOAD(dst, src) memcpy(&(dst), (src), sizeof(kl_v4d))
#define GK_LANES_OUT(lane, lo, hi) do { memcpy((lane), &(lo), sizeof(kl_v4d)); \
                                        memcpy((lane) + 4, &(hi), sizeof(kl_v4d)); } while (0)
#else
#define GK_VEC 0
#endif

/* ---- p side, pass A: P, sum p d, sum p d^2 (d = x - ctr), H = sum of the p log p
   terms t --------------------------------------------------------------------- */
static inline void KLM_FN(gk_pa_sums)(const double *p, const double *x, const double *t,
                                      ptrdiff_t len, double ctr, double *tot)
{
    double a[KL_LANES], b[KL_LANES], b2[KL_LANES], c[KL_LANES];
    ptrdiff_t full = len - len % KL_LANES, i = 0;
#if GK_VEC
    kl_v4d a0 = {0.0, 0.0, 0.0, 0.0}, a1 = a0, b0 = a0, b1 = a0, q0 = a0, q1 = a0, c0 = a0,
           c1 = a0, pv, d, tv, xv;
    for (; i < full; i += KL_LANES) {
        GK_LOAD(pv, p + i); GK_LOAD(xv, x + i); GK_LOAD(tv, t + i);
        d = xv - ctr; a0 += pv; c0 += tv; pv *= d; b0 += pv; q0 += pv * d;
        GK_LOAD(pv, p + i + 4); GK_LOAD(xv, x + i + 4); GK_LOAD(tv, t + i + 4);
        d = xv - ctr; a1 += pv; c1 += tv; pv *= d; b1 += pv; q1 += pv * d;
    }
    GK_LANES_OUT(a, a0, a1); GK_LANES_OUT(b, b0, b1); GK_LANES_OUT(b2, q0, q1);
    GK_LANES_OUT(c, c0, c1);
#else
    for (int j = 0; j < KL_LANES; j++) { a[j] = 0.0; b[j] = 0.0; b2[j] = 0.0; c[j] = 0.0; }
    for (; i < full; i += KL_LANES)
        for (int j = 0; j < KL_LANES; j++) {
            double d = x[i + j] - ctr, pd = p[i + j] * d;
            a[j] += p[i + j]; c[j] += t[i + j]; b[j] += pd; b2[j] += pd * d;
        }
#endif
    for (; i < len; i++) {
        double d = x[i] - ctr, pd = p[i] * d;
        a[i - full] += p[i]; c[i - full] += t[i]; b[i - full] += pd; b2[i - full] += pd * d;
    }
    tot[0] = KL_LANE_SUM(a);
    tot[1] = KL_LANE_SUM(b);
    tot[2] = KL_LANE_SUM(c);
    tot[3] = KL_LANE_SUM(b2);
}

/* ---- p side, pass A fused: the log, the sums and the checks of one block in
   registers, no buffers.  H is kept as sum p k and sum p log z (p = 2^k z, z in
   [sqrt2/2, sqrt2)), joined as ln2 sum p k + sum p log z; tot[4] gets the number of
   falls x[i+1] < x[i] inside the block.  Returns 1 (tot unspecified) when a p is
   negative or subnormal, or H comes out infinite or NaN (an infinite or NaN p, or,
   without FMA, a lane's sum p k beyond 1e298): the two-loop form takes those blocks.  A NaN or infinite x makes the sums
   NaN or inf, as it must. */
#if GK_VEC
#define GK_HAVE_PA_FUSED 1
static inline __attribute__((always_inline)) void
KLM_FN(gk_pa_step)(kl_v4d pv, kl_v4d xv, kl_v4d xn, double ctr, kl_v4d *aP, kl_v4d *aS1,
                   kl_v4d *aS2, kl_v4d *aK, kl_v4d *aL, kl_v4d *rmin, gk_v4i *down)
{
    kl_v4d kd, lz, d, pd;
    lz = KLM_FN(kl_v4_log_parts)(pv, &kd);
    *aK += pv * kd;
    *aL += pv * lz;
    d = xv - ctr;
    pd = pv * d;
    *aP += pv;
    *aS1 += pd;
    *aS2 += pd * d;
    *rmin = KLM_FN(kl_v4_min_where_p)(pv, pv, *rmin);
    *down += (gk_v4i)(xn < xv);   /* -1 per fall */
}

static inline int KLM_FN(gk_pa_fused)(const double *p, const double *x, ptrdiff_t len,
                                      double ctr, double *tot)
{
    /* 4 lanes, not KL_LANES: ten accumulators would not stay in registers */
    const kl_v4d z = {0.0, 0.0, 0.0, 0.0};
    kl_v4d aP = z, aS1 = z, aS2 = z, aK = z, aL = z, rmin = {1.0, 1.0, 1.0, 1.0}, pv, xv, xn;
    gk_v4i down = {0, 0, 0, 0};
    double pt[4], xt[5], h;
    ptrdiff_t i;
    for (i = 0; i + 4 < len; i += 4) {
        GK_LOAD(pv, p + i); GK_LOAD(xv, x + i); GK_LOAD(xn, x + i + 1);
        KLM_FN(gk_pa_step)(pv, xv, xn, ctr, &aP, &aS1, &aS2, &aK, &aL, &rmin, &down);
    }
    /* the last 1..4 points, padded with p = 0 at the last x (adds nothing, no fall) */
    for (ptrdiff_t j = 0; j < 4; j++) {
        pt[j] = i + j < len ? p[i + j] : 0.0;
        xt[j] = i + j < len ? x[i + j] : x[len - 1];
    }
    xt[4] = x[len - 1];
    GK_LOAD(pv, pt); GK_LOAD(xv, xt); GK_LOAD(xn, xt + 1);
    KLM_FN(gk_pa_step)(pv, xv, xn, ctr, &aP, &aS1, &aS2, &aK, &aL, &rmin, &down);
    if (!(fmin(fmin(rmin[0], rmin[1]), fmin(rmin[2], rmin[3])) >= DBL_MIN)) return 1;
    tot[0] = (aP[0] + aP[1]) + (aP[2] + aP[3]);
    tot[1] = (aS1[0] + aS1[1]) + (aS1[2] + aS1[3]);
    /* k ln2 + log z per lane as in the kl_div block; a lane's sum p k beyond
       1e298 (or an infinite or NaN p) leaves H non-finite: the two-loop form
       takes the block */
    aL = KLM_FN(kl_v4_join_k)(aK, aL);
    h = (aL[0] + aL[1]) + (aL[2] + aL[3]);
    if (!(fabs(h) <= DBL_MAX)) return 1;
    tot[2] = h;
    tot[3] = (aS2[0] + aS2[1]) + (aS2[2] + aS2[3]);
    tot[4] = -(double)((down[0] + down[1]) + (down[2] + down[3]));
    return 0;
}
#endif

/* ---- p side, pass B: sum p (x - c), sum p (x - c)^2 about p's mean ------------ */
static inline void KLM_FN(gk_pb_sums)(const double *p, const double *x, ptrdiff_t len,
                                      double ctr, double *tot)
{
    double a[KL_LANES], b[KL_LANES];
    ptrdiff_t full = len - len % KL_LANES, i = 0;
#if GK_VEC
    kl_v4d a0 = {0.0, 0.0, 0.0, 0.0}, a1 = a0, b0 = a0, b1 = a0, pv, d;
    for (; i < full; i += KL_LANES) {
        GK_LOAD(pv, p + i); GK_LOAD(d, x + i);
        d -= ctr; pv *= d; a0 += pv; b0 += pv * d;
        GK_LOAD(pv, p + i + 4); GK_LOAD(d, x + i + 4);
        d -= ctr; pv *= d; a1 += pv; b1 += pv * d;
    }
    GK_LANES_OUT(a, a0, a1); GK_LANES_OUT(b, b0, b1);
#else
    for (int j = 0; j < KL_LANES; j++) { a[j] = 0.0; b[j] = 0.0; }
    for (; i < full; i += KL_LANES)
        for (int j = 0; j < KL_LANES; j++) {
            double d = x[i + j] - ctr, pd = p[i + j] * d;
            a[j] += pd; b[j] += pd * d;
        }
#endif
    for (; i < len; i++) {
        double d = x[i] - ctr, pd = p[i] * d;
        a[i - full] += pd; b[i - full] += pd * d;
    }
    tot[0] = KL_LANE_SUM(a);
    tot[1] = KL_LANE_SUM(b);
}

/* W1 += w e, W2 += w e^2 (NMOM >= 2), W3, W4 likewise (NMOM >= 4), in type T */
#define GK_ADD_MOMENTS(T, W, E, A1, A2, A3, A4, NMOM)                                  \
    if ((NMOM) >= 2) {                                                                 \
        T gk_we_ = (W) * (E);                                                          \
        (A1) += gk_we_; (A2) += gk_we_ * (E);                                          \
        if ((NMOM) >= 4) {                                                             \
            T gk_we2_ = gk_we_ * (E);                                                  \
            (A3) += gk_we2_ * (E); (A4) += (gk_we2_ * (E)) * (E);                      \
        }                                                                              \
    }

/* the lane totals a0..a4, ap into tot[0..5] (moments not computed give 0) */
#define GK_TOTALS(NMOM)                                                                \
    do {                                                                               \
        tot[0] = KL_LANE_SUM(a0);                                                      \
        tot[1] = (NMOM) >= 2 ? KL_LANE_SUM(a1) : 0.0;                                  \
        tot[2] = (NMOM) >= 2 ? KL_LANE_SUM(a2) : 0.0;                                  \
        tot[3] = (NMOM) >= 4 ? KL_LANE_SUM(a3) : 0.0;                                  \
        tot[4] = (NMOM) >= 4 ? KL_LANE_SUM(a4) : 0.0;                                  \
        tot[5] = KL_LANE_SUM(ap);                                                      \
    } while (0)

/* ---- q side: W, W1..W4 and Ap (see gaussian_core.h) ----------------------------
   With e = x - xk and r = e (e / 2 + dk), half the exponent's numerator (which keeps
   it finite where e + 2 dk would overflow): W += w, Wk += w e^k, Ap += p max(r, 0)
   (p == 0 adds 0 even if r overflowed). */
#define GK_Q_SCALAR(I, J, NMOM)                                                        \
    {                                                                                  \
        double e = x[(I)] - xk, r = e * (0.5 * e + dk), pv = p[(I)], wv = w[(I)];      \
        double rp = r > 0.0 ? r : 0.0, tp = pv * rp;                                   \
        ap[J] += pv > 0.0 ? tp : 0.0;                                                  \
        a0[J] += wv;                                                                   \
        GK_ADD_MOMENTS(double, wv, e, a1[J], a2[J], a3[J], a4[J], NMOM);               \
    }

#if GK_VEC
#define GK_Q_VEC(OFF, H, NMOM)                                                         \
    {                                                                                  \
        kl_v4d xv, pv, wv, e, r;                                                       \
        GK_LOAD(xv, x + i + (OFF)); GK_LOAD(pv, p + i + (OFF)); GK_LOAD(wv, w + i + (OFF)); \
        e = xv - xk;                                                                        \
        r = e * (0.5 * e + dk);                                                             \
        v_ap[H] += GK_POS(pv, pv * GK_POS(r, r));                                           \
        v_a0[H] += wv;                                                                      \
        GK_ADD_MOMENTS(kl_v4d, wv, e, v_a1[H], v_a2[H], v_a3[H], v_a4[H], NMOM);            \
    }
#endif

#define GK_Q_SUMS(NMOM)                                                                \
static inline void KLM_FN(gk_q##NMOM##_sums)(const double *p, const double *x,         \
                                             const double *w, ptrdiff_t len, double xk, \
                                             double dk, double *tot)                    \
{                                                                                       \
    double a0[KL_LANES], a1[KL_LANES], a2[KL_LANES], a3[KL_LANES], a4[KL_LANES],        \
           ap[KL_LANES];                                                                \
    ptrdiff_t full = len - len % KL_LANES, i = 0;                                       \
    GK_Q_MAIN(NMOM)                                                                     \
    for (; i < len; i++) GK_Q_SCALAR(i, i - full, NMOM)                                 \
    GK_TOTALS(NMOM);                                                                    \
}

#if GK_VEC
#define GK_Q_MAIN(NMOM)                                                                \
    {                                                                                  \
        kl_v4d z = {0.0, 0.0, 0.0, 0.0};                                               \
        kl_v4d v_a0[2] = {z, z}, v_a1[2] = {z, z}, v_a2[2] = {z, z}, v_a3[2] = {z, z}, \
               v_a4[2] = {z, z}, v_ap[2] = {z, z};                                     \
        for (; i < full; i += KL_LANES) {                                              \
            GK_Q_VEC(0, 0, NMOM)                                                       \
            GK_Q_VEC(4, 1, NMOM)                                                       \
        }                                                                              \
        GK_LANES_OUT(a0, v_a0[0], v_a0[1]); GK_LANES_OUT(a1, v_a1[0], v_a1[1]);        \
        GK_LANES_OUT(a2, v_a2[0], v_a2[1]); GK_LANES_OUT(a3, v_a3[0], v_a3[1]);        \
        GK_LANES_OUT(a4, v_a4[0], v_a4[1]); GK_LANES_OUT(ap, v_ap[0], v_ap[1]);        \
    }
#else
#define GK_Q_MAIN(NMOM)                                                                \
    for (int j = 0; j < KL_LANES; j++) {                                               \
        a0[j] = 0.0; a1[j] = 0.0; a2[j] = 0.0; a3[j] = 0.0; a4[j] = 0.0; ap[j] = 0.0;  \
    }                                                                                  \
    for (; i < full; i += KL_LANES)                                                    \
        for (int j = 0; j < KL_LANES; j++) GK_Q_SCALAR(i + j, j, NMOM)
#endif

GK_Q_SUMS(0)
GK_Q_SUMS(2)
GK_Q_SUMS(4)

/* ---- q side on an evenly spaced block: w from the table factors (see
   gk_table_factors) summed as it is made, in the lanes of gk_q*_sums.  Returns
   nonzero, with tot unspecified, when the exponents are off the ideal ones by
   more than 1e-8 in root sum of squares (then the block takes gk_wmap and
   gk_q*_sums).  On success every r is finite (its exponent is near the ideal
   one), so p r needs no mask for p == 0. */
#if GK_VEC
#define GK_QT_HALF(OFF, H, VV, IV, NMOM)                                               \
    {                                                                                  \
        kl_v4d xv, pv, tv, e, r, rp, d;                                                \
        GK_LOAD(xv, x + 8 * t + (OFF)); GK_LOAD(pv, p + 8 * t + (OFF));                \
        GK_LOAD(tv, t2 + 8 * t + (OFF));                                               \
        e = xv - xk;                                                                   \
        r = e * (0.5 * e + dk);                                                        \
        rp = GK_POS(r, r);                                                             \
        d = 2.0 * (rp * h) - (A + IV * (B + IV * C));                                  \
        dsq[H] += d * d;                                                               \
        tv = (VV * u) * tv;                                                            \
        tv = tv - tv * d;     /* exp(-d) = 1 - d to within d^2/2 <= 5e-17 */           \
        v_ap[H] += pv * rp;                                                            \
        v_a0[H] += tv;                                                                 \
        GK_ADD_MOMENTS(kl_v4d, tv, e, v_a1[H], v_a2[H], v_a3[H], v_a4[H], NMOM);       \
    }
#define GK_QT_SUMS(NMOM)                                                               \
static __attribute__((noinline)) int                                                   \
KLM_FN(gk_qt##NMOM##_sums)(const double *restrict p, const double *restrict x,         \
                           const double *restrict t2, double xk, double dk,            \
                           double h, double mu, double dx, double *restrict tot)       \
{                                                                                      \
    double abc[3], V[8], U[32], a0[KL_LANES], a1[KL_LANES], a2[KL_LANES],              \
           a3[KL_LANES], a4[KL_LANES], ap[KL_LANES];                                   \
    if (KLM_FN(gk_table_factors)(x, xk, dk, h, mu, dx, abc, V, U)) return 1;           \
    double A = abc[0], B = abc[1], C = abc[2];                                         \
    kl_v4d z = {0.0, 0.0, 0.0, 0.0};                                                   \
    kl_v4d v_a0[2] = {z, z}, v_a1[2] = {z, z}, v_a2[2] = {z, z}, v_a3[2] = {z, z},     \
           v_a4[2] = {z, z}, v_ap[2] = {z, z};                                         \
    kl_v4d v0, v1, i0 = {0.0, 1.0, 2.0, 3.0}, i1 = {4.0, 5.0, 6.0, 7.0};               \
    kl_v4d dsq[2] = {z, z};                                                            \
    memcpy(&v0, V, sizeof v0);                                                         \
    memcpy(&v1, V + 4, sizeof v1);                                                     \
    for (int t = 0; t < KL_BLOCK / 8; t++, i0 += 8.0, i1 += 8.0) {                     \
        kl_v4d u = {U[t], U[t], U[t], U[t]};                                           \
        GK_QT_HALF(0, 0, v0, i0, NMOM)                                                 \
        GK_QT_HALF(4, 1, v1, i1, NMOM)                                                 \
    }                                                                                  \
    {                                                                                  \
        kl_v4d dd = dsq[0] + dsq[1];                                                   \
        if (!((dd[0] + dd[1]) + (dd[2] + dd[3]) <= 1e-16)) return 1;   /* NaN too */   \
    }                                                                                  \
    GK_LANES_OUT(a0, v_a0[0], v_a0[1]); GK_LANES_OUT(a1, v_a1[0], v_a1[1]);            \
    GK_LANES_OUT(a2, v_a2[0], v_a2[1]); GK_LANES_OUT(a3, v_a3[0], v_a3[1]);            \
    GK_LANES_OUT(a4, v_a4[0], v_a4[1]); GK_LANES_OUT(ap, v_ap[0], v_ap[1]);            \
    GK_TOTALS(NMOM);                                                                   \
    return 0;                                                                          \
}
#else
/* without vector types the point-by-point map is as good */
#define GK_QT_SUMS(NMOM)                                                               \
static int KLM_FN(gk_qt##NMOM##_sums)(const double *p, const double *x, const double *t2, \
                                      double xk, double dk, double h, double mu,          \
                                      double dx, double *tot)                             \
{                                                                                         \
    (void)p; (void)x; (void)t2; (void)xk; (void)dk; (void)h; (void)mu; (void)dx;          \
    (void)tot;                                                                            \
    return 1;                                                                             \
}
#endif
GK_QT_SUMS(0)
GK_QT_SUMS(2)
GK_QT_SUMS(4)
#undef GK_QT_SUMS
#undef GK_QT_HALF

#undef GK_Q_MAIN
#undef GK_Q_SUMS
#undef GK_Q_VEC
#undef GK_Q_SCALAR
#undef GK_LANES_OUT
#undef GK_LOAD
#undef GK_POS
#undef GK_VEC
