/* Body of one row kernel for element type KL_IMPL_T.  The row is cut into
   blocks (KL_IMPL_BLOCK_LEN elements, KL_BLOCK by default) whose totals are
   added with Neumaier compensation, so the error stays near one rounding
   whatever n is and the order of operations depends only on n (never on the
   thread count).  Two kinds of block:
   - KL_IMPL_BLOCK(p, q, len, want_sums, sums): a fused block kernel that
     computes the terms, their lane sums and its own range checks, and
     returns nonzero for a block the careful path must see; strided operands
     are gathered into L1 buffers first.
   - otherwise KL_IMPL_MAP / KL_IMPL_MAP_STRIDED write the terms (in
     KL_IMPL_W; NaN marks an element the careful path must see) to an L1
     buffer that KL_IMPL_SUM adds in KL_LANES fixed lanes.
   A non-finite block total returns KL_ROW_NEEDS_CARE. */

#ifndef KL_IMPL_BLOCK
/* Terms of a contiguous block: a plain loop the compiler vectorises. */
static __attribute__((noinline)) void
KL_IMPL_MAP(const KL_IMPL_T *restrict p, const KL_IMPL_T *restrict q,
            KL_IMPL_W *restrict t, ptrdiff_t len)
{
    for (ptrdiff_t i = 0; i < len; i++)
        t[i] = KL_IMPL_TERM((KL_IMPL_W)p[i], (KL_IMPL_W)q[i]);
}

/* Terms of a strided block (0 for a broadcast operand). */
static __attribute__((noinline)) void
KL_IMPL_MAP_STRIDED(const KL_IMPL_T *restrict p, ptrdiff_t sp, const KL_IMPL_T *restrict q,
                    ptrdiff_t sq, KL_IMPL_W *restrict t, ptrdiff_t len)
{
    for (ptrdiff_t i = 0; i < len; i++)
        t[i] = KL_IMPL_TERM((KL_IMPL_W)p[i * sp], (KL_IMPL_W)q[i * sq]);
}
#endif

static int
KL_IMPL_NAME(const KL_IMPL_T *p, ptrdiff_t sp, const KL_IMPL_T *q, ptrdiff_t sq,
             ptrdiff_t n, int want_sums, double *res)
{
    double kl = 0.0, kl_c = 0.0, ps = 0.0, ps_c = 0.0, qs = 0.0, qs_c = 0.0;
#ifndef KL_IMPL_BLOCK_LEN
#define KL_IMPL_BLOCK_LEN KL_BLOCK
#endif
#ifdef KL_IMPL_BLOCK
    KL_IMPL_T pbuf[KL_IMPL_BLOCK_LEN] __attribute__((aligned(32)));
    KL_IMPL_T qbuf[KL_IMPL_BLOCK_LEN] __attribute__((aligned(32)));
#else
    KL_IMPL_W t[KL_BLOCK] __attribute__((aligned(32)));
    double buf[KL_BLOCK] __attribute__((aligned(32)));
#endif
    ptrdiff_t start = 0;
    while (start < n) {
        ptrdiff_t len = n - start < KL_IMPL_BLOCK_LEN ? n - start : KL_IMPL_BLOCK_LEN;
        const KL_IMPL_T *pb = p + start * sp;
        const KL_IMPL_T *qb = q + start * sq;
#ifdef KL_IMPL_BLOCK
        {
            /* strided operands are gathered first, so every layout gives the
               same bits as the contiguous one */
            double sums[3] = {0.0, 0.0, 0.0};
            KL_GATHER(pb, sp, len, pbuf);
            KL_GATHER(qb, sq, len, qbuf);
            if (KL_IMPL_BLOCK(pb, qb, len, want_sums, sums)) return KL_ROW_NEEDS_CARE;
            /* an infinite term or block total */
            if (!(sums[0] <= DBL_MAX && sums[0] >= -DBL_MAX)) return KL_ROW_NEEDS_CARE;
            kl_neumaier(&kl, &kl_c, sums[0]);
            if (want_sums) {
                kl_neumaier(&ps, &ps_c, sums[1]);
                kl_neumaier(&qs, &qs_c, sums[2]);
            }
        }
#else
        double block;
        if (sp == 1 && sq == 1) KL_IMPL_MAP(pb, qb, t, len);
        else KL_IMPL_MAP_STRIDED(pb, sp, qb, sq, t, len);
        block = KL_IMPL_SUM(t, len);
        if (!(block <= DBL_MAX && block >= -DBL_MAX)) return KL_ROW_NEEDS_CARE;
        kl_neumaier(&kl, &kl_c, block);
        if (want_sums) {
            for (ptrdiff_t i = 0; i < len; i++) buf[i] = (double)pb[i * sp];
            kl_neumaier(&ps, &ps_c, KLM_FN(kl_lane_sum_f64)(buf, len));
            for (ptrdiff_t i = 0; i < len; i++) buf[i] = (double)qb[i * sq];
            kl_neumaier(&qs, &qs_c, KLM_FN(kl_lane_sum_f64)(buf, len));
        }
#endif
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
#undef KL_IMPL_SUM
#undef KL_IMPL_NAME
#undef KL_IMPL_MAP
#undef KL_IMPL_MAP_STRIDED
#undef KL_IMPL_BLOCK
#undef KL_IMPL_BLOCK_LEN
