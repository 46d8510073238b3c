/* Body of one row kernel for element type KL_IMPL_T; terms are computed in
   KL_IMPL_W and accumulated in double.  The row is cut into blocks of
   KL_BLOCK elements: a map loop writes the block's terms to an L1-resident
   buffer (simple enough for the compiler to vectorise), then the buffer is
   summed in KL_LANES lanes; block totals are added with Neumaier
   compensation.  The error stays near one rounding whatever n is, and the
   order of operations depends only on n (never on threads). */

static inline __attribute__((always_inline)) int
KL_IMPL_NAME(const KL_IMPL_T *p, ptrdiff_t sp, const KL_IMPL_T *q, ptrdiff_t sq,
             ptrdiff_t n, double *res)
{
    double kl = 0.0, kl_c = 0.0, ps = 0.0, ps_c = 0.0, qs = 0.0, qs_c = 0.0;
    KL_IMPL_W t[KL_BLOCK], o[KL_BLOCK];
    ptrdiff_t start = 0;
    while (start < n) {
        ptrdiff_t len = n - start < KL_BLOCK ? n - start : KL_BLOCK;
        ptrdiff_t full = len - len % KL_LANES;
        double a[KL_LANES], b[KL_LANES], c[KL_LANES];
        KL_IMPL_W odd[KL_LANES];
        const KL_IMPL_T *pb = p + start * sp;
        const KL_IMPL_T *qb = q + start * sq;
        for (ptrdiff_t i = 0; i < len; i++) {
            KL_IMPL_W pv = (KL_IMPL_W)pb[i * sp];
            KL_IMPL_W qv = (KL_IMPL_W)qb[i * sq];
            t[i] = KL_IMPL_TERM(pv, qv);
            o[i] = KL_IMPL_ODD(pv, qv);
        }
        for (int j = 0; j < KL_LANES; j++) { a[j] = 0.0; b[j] = 0.0; c[j] = 0.0; odd[j] = 0; }
        for (ptrdiff_t i = 0; i < full; i += KL_LANES) {
            for (int j = 0; j < KL_LANES; j++) {
                a[j] += (double)t[i + j];
                b[j] += (double)pb[(i + j) * sp];
                c[j] += (double)qb[(i + j) * sq];
                odd[j] += o[i + j];
            }
        }
        for (ptrdiff_t i = full; i < len; i++) {
            int j = (int)(i - full);
            a[j] += (double)t[i];
            b[j] += (double)pb[i * sp];
            c[j] += (double)qb[i * sq];
            odd[j] += o[i];
        }
        if (KL_LANE_SUM(odd) != 0) return KL_ROW_NEEDS_CARE;
        kl_neumaier(&kl, &kl_c, KL_LANE_SUM(a));
        kl_neumaier(&ps, &ps_c, KL_LANE_SUM(b));
        kl_neumaier(&qs, &qs_c, KL_LANE_SUM(c));
        start += len;
    }
    res[0] = kl + kl_c;
    res[1] = ps + ps_c;
    res[2] = qs + qs_c;
    if (!(res[0] <= DBL_MAX && res[0] >= -DBL_MAX)) return KL_ROW_NEEDS_CARE;
    return KL_ROW_OK;
}

#undef KL_IMPL_T
#undef KL_IMPL_W
#undef KL_IMPL_TERM
#undef KL_IMPL_ODD
#undef KL_IMPL_NAME
