/* Body of the p-side pass for p of type GK_P_T (float or double), in double.
   Pass A: P = sum p, sum p (x - x_mid), H = sum over p > 0 of p log p, and the
   fused check (p negative/NaN/inf, x NaN/inf).  Pass B: the first two moments
   of p about its own mean c, so later recentring loses nothing. */

static inline __attribute__((always_inline)) int
GK_P_NAME(const GK_P_T *p, ptrdiff_t sp, const double *x, ptrdiff_t n, gk_psums *out)
{
    double ps = 0.0, ps_c = 0.0, s1 = 0.0, s1_c = 0.0, hs = 0.0, hs_c = 0.0;
    double s2 = 0.0, s2_c = 0.0;
    double xm = n > 0 ? x[n / 2] : 0.0;
    double badp = 0.0, badx = 0.0;
    out->c = xm; out->P = 0.0; out->S1 = 0.0; out->S2 = 0.0; out->H = 0.0; out->scale = 1.0;
    for (ptrdiff_t start = 0; start < n; start += KL_BLOCK) {
        ptrdiff_t len = n - start < KL_BLOCK ? n - start : KL_BLOCK;
        ptrdiff_t full = len - len % KL_LANES;
        const GK_P_T *pb = p + start * sp;
        const double *xb = x + start;
        double a[KL_LANES], b[KL_LANES], hh[KL_LANES], bp[KL_LANES], bx[KL_LANES];
        for (int j = 0; j < KL_LANES; j++) { a[j] = 0.0; b[j] = 0.0; hh[j] = 0.0; bp[j] = 0.0; bx[j] = 0.0; }
#define GK_P_BODY(I, J)                                                        \
        {                                                                      \
            double pv = (double)pb[(I) * sp];                                  \
            double xv = xb[(I)];                                               \
            a[J] += pv;                                                        \
            b[J] += pv * (xv - xm);                                            \
            hh[J] += pv * KLM_FN(log_f64)(pv > 0.0 ? pv : 1.0);                \
            bp[J] += (pv >= 0.0 && pv <= DBL_MAX) ? 0.0 : 1.0;                 \
            bx[J] += (fabs(xv) <= DBL_MAX) ? 0.0 : 1.0;                        \
        }
        for (ptrdiff_t i = 0; i < full; i += KL_LANES)
            for (int j = 0; j < KL_LANES; j++) GK_P_BODY(i + j, j)
        for (ptrdiff_t i = full; i < len; i++) GK_P_BODY(i, (int)(i - full))
#undef GK_P_BODY
        badx += KL_LANE_SUM(bx);
        badp += KL_LANE_SUM(bp);
        kl_neumaier(&ps, &ps_c, KL_LANE_SUM(a));
        kl_neumaier(&s1, &s1_c, KL_LANE_SUM(b));
        kl_neumaier(&hs, &hs_c, KL_LANE_SUM(hh));
    }
    if (badx != 0.0) return GK_P_BAD_X;
    if (badp != 0.0) return GK_P_BAD_P;
    ps += ps_c;
    out->P = ps;
    out->H = hs + hs_c;
    if (!(ps > 0.0)) return GK_P_ZERO;
    if (!(ps <= DBL_MAX && out->H <= DBL_MAX && out->H >= -DBL_MAX)) return GK_P_OVERFLOW;
    double c = xm + (s1 + s1_c) / ps;
    s1 = 0.0; s1_c = 0.0;
    for (ptrdiff_t start = 0; start < n; start += KL_BLOCK) {
        ptrdiff_t len = n - start < KL_BLOCK ? n - start : KL_BLOCK;
        ptrdiff_t full = len - len % KL_LANES;
        const GK_P_T *pb = p + start * sp;
        const double *xb = x + start;
        double b[KL_LANES], b2[KL_LANES];
        for (int j = 0; j < KL_LANES; j++) { b[j] = 0.0; b2[j] = 0.0; }
#define GK_P_BODY(I, J)                                                        \
        {                                                                      \
            double pv = (double)pb[(I) * sp];                                  \
            double pd = pv * (xb[(I)] - c);                                    \
            b[J] += pd;                                                        \
            b2[J] += pd * (xb[(I)] - c);                                       \
        }
        for (ptrdiff_t i = 0; i < full; i += KL_LANES)
            for (int j = 0; j < KL_LANES; j++) GK_P_BODY(i + j, j)
        for (ptrdiff_t i = full; i < len; i++) GK_P_BODY(i, (int)(i - full))
#undef GK_P_BODY
        kl_neumaier(&s1, &s1_c, KL_LANE_SUM(b));
        kl_neumaier(&s2, &s2_c, KL_LANE_SUM(b2));
    }
    out->c = c;
    out->S1 = s1 + s1_c;
    out->S2 = s2 + s2_c;
    if (!(out->S2 <= DBL_MAX)) return GK_P_OVERFLOW;
    return GK_P_OK;
}

#undef GK_P_T
#undef GK_P_NAME
