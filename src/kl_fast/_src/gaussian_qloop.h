/* Body of the q-side pass (GK_Q_NMOM = 0, 2 or 4 moments) for p of type
   GK_Q_T.  With e = x - xk (xk the grid point nearest mu, dk = xk - mu) the
   Gaussian exponent relative to its maximum is
       a = ((x - mu)^2 - dk^2) / (2 sigma^2) = e (e + 2 dk) / (2 sigma^2) >= 0,
   so w = exp(-a) lies in [0, 1] with w = 1 at xk: the shifted log-sum-exp
   never overflows, whatever mu and sigma.  Sums: W = sum w, Wk = sum w e^k,
   and Ap = sum p e (e + 2 dk), the p-weighted exponent, taken here rather
   than from p's moments because it has no cancellation when sigma is tiny. */

static inline __attribute__((always_inline)) void
GK_Q_NAME(const GK_Q_T *p, ptrdiff_t sp, const double *x, ptrdiff_t n,
          double mu, double sigma, double xk, gk_qsums *out)
{
    double dk = xk - mu, twodk = 2.0 * dk;
    double h = (0.5 / sigma) / sigma;
    double s0 = 0.0, s0_c = 0.0, sa = 0.0, sa_c = 0.0;
    double s1 = 0.0, s1_c = 0.0, s2 = 0.0, s2_c = 0.0;
    double s3 = 0.0, s3_c = 0.0, s4 = 0.0, s4_c = 0.0;
    for (ptrdiff_t start = 0; start < n; start += KL_BLOCK) {
        ptrdiff_t len = n - start < KL_BLOCK ? n - start : KL_BLOCK;
        ptrdiff_t full = len - len % KL_LANES;
        const GK_Q_T *pb = p + start * sp;
        const double *xb = x + start;
        double a0[KL_LANES], ap[KL_LANES];
#if GK_Q_NMOM >= 2
        double a1[KL_LANES], a2[KL_LANES];
#endif
#if GK_Q_NMOM >= 4
        double a3[KL_LANES], a4[KL_LANES];
#endif
        for (int j = 0; j < KL_LANES; j++) {
            a0[j] = 0.0; ap[j] = 0.0;
#if GK_Q_NMOM >= 2
            a1[j] = 0.0; a2[j] = 0.0;
#endif
#if GK_Q_NMOM >= 4
            a3[j] = 0.0; a4[j] = 0.0;
#endif
        }
#if GK_Q_NMOM >= 4
#define GK_Q_MOMENTS(J) { double we = w * e, we2 = we * e; a1[J] += we; a2[J] += we2; \
                          a3[J] += we2 * e; a4[J] += (we2 * e) * e; }
#elif GK_Q_NMOM >= 2
#define GK_Q_MOMENTS(J) { double we = w * e; a1[J] += we; a2[J] += we * e; }
#else
#define GK_Q_MOMENTS(J)
#endif
#define GK_Q_BODY(I, J)                                                        \
        {                                                                      \
            double e = xb[(I)] - xk;                                           \
            double r = e * (e + twodk);                                        \
            double rp = r > 0.0 ? r : 0.0;                                     \
            double w = KLM_FN(exp_f64)(r > 0.0 ? -(r * h) : 0.0);              \
            double pv = (double)pb[(I) * sp];                                  \
            a0[J] += w;                                                        \
            ap[J] += pv > 0.0 ? pv * rp : 0.0;                                 \
            GK_Q_MOMENTS(J)                                                    \
        }
        for (ptrdiff_t i = 0; i < full; i += KL_LANES)
            for (int j = 0; j < KL_LANES; j++) GK_Q_BODY(i + j, j)
        for (ptrdiff_t i = full; i < len; i++) GK_Q_BODY(i, (int)(i - full))
#undef GK_Q_BODY
#undef GK_Q_MOMENTS
        kl_neumaier(&s0, &s0_c, KL_LANE_SUM(a0));
        kl_neumaier(&sa, &sa_c, KL_LANE_SUM(ap));
#if GK_Q_NMOM >= 2
        kl_neumaier(&s1, &s1_c, KL_LANE_SUM(a1));
        kl_neumaier(&s2, &s2_c, KL_LANE_SUM(a2));
#endif
#if GK_Q_NMOM >= 4
        kl_neumaier(&s3, &s3_c, KL_LANE_SUM(a3));
        kl_neumaier(&s4, &s4_c, KL_LANE_SUM(a4));
#endif
    }
    out->xk = xk;
    out->dk = dk;
    out->W = s0 + s0_c;
    out->W1 = s1 + s1_c;
    out->W2 = s2 + s2_c;
    out->W3 = s3 + s3_c;
    out->W4 = s4 + s4_c;
    out->Ap = sa + sa_c;
}

#undef GK_Q_T
#undef GK_Q_NMOM
#undef GK_Q_NAME
