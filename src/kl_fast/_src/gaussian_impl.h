/* Grid passes of the Gaussian KL, instantiated once per instruction-set
   target (KLM_FN gives the suffix).  No include guard on purpose.

   Every pass sums in KL_LANES lanes over blocks of KL_BLOCK elements, adding
   the block totals with Neumaier compensation: the order of operations
   depends only on n, and the error stays near one rounding whatever n is.
   The lane loops are branch-free (selects only) so that they vectorise once
   exp/log are vectorisable. */

/* The grid point nearest mu: smallest |x - mu|, and among equal distances
   the one toward mu (so with |mu| so large that every |x - mu| rounds alike,
   the grid end facing mu).  Its Gaussian exponent is the largest: the shift
   of the log-sum-exp. */
static double KLM_FN(gk_nearest)(const double *x, ptrdiff_t n, double mu)
{
    double bd[KL_LANES], bx[KL_LANES];
    ptrdiff_t full = n - n % KL_LANES;
    for (int j = 0; j < KL_LANES; j++) { bd[j] = HUGE_VAL; bx[j] = x[0]; }
    for (ptrdiff_t i = 0; i < full; i += KL_LANES) {
        for (int j = 0; j < KL_LANES; j++) {
            double xv = x[i + j];
            double ad = fabs(xv - mu);
            int lt = ad < bd[j] || (ad == bd[j] && (xv - bx[j]) * (mu - bx[j]) > 0.0);
            bd[j] = lt ? ad : bd[j];
            bx[j] = lt ? xv : bx[j];
        }
    }
    for (ptrdiff_t i = full; i < n; i++) {
        int j = (int)(i - full);
        double ad = fabs(x[i] - mu);
        if (ad < bd[j] || (ad == bd[j] && (x[i] - bx[j]) * (mu - bx[j]) > 0.0)) {
            bd[j] = ad; bx[j] = x[i];
        }
    }
    double best = bd[0], bestx = bx[0];
    for (int j = 1; j < KL_LANES; j++) {
        if (bd[j] < best || (bd[j] == best && (bx[j] - bestx) * (mu - bestx) > 0.0)) {
            best = bd[j]; bestx = bx[j];
        }
    }
    return bestx;
}

#define GK_P_T double
#define GK_P_NAME KLM_FN(gk_psums_f64_impl)
#include "gaussian_ploop.h"

#define GK_P_T float
#define GK_P_NAME KLM_FN(gk_psums_f32_impl)
#include "gaussian_ploop.h"

#define GK_Q_T double
#define GK_Q_NMOM 0
#define GK_Q_NAME KLM_FN(gk_qsums0_f64_impl)
#include "gaussian_qloop.h"
#define GK_Q_T double
#define GK_Q_NMOM 2
#define GK_Q_NAME KLM_FN(gk_qsums2_f64_impl)
#include "gaussian_qloop.h"
#define GK_Q_T double
#define GK_Q_NMOM 4
#define GK_Q_NAME KLM_FN(gk_qsums4_f64_impl)
#include "gaussian_qloop.h"

#define GK_Q_T float
#define GK_Q_NMOM 0
#define GK_Q_NAME KLM_FN(gk_qsums0_f32_impl)
#include "gaussian_qloop.h"
#define GK_Q_T float
#define GK_Q_NMOM 2
#define GK_Q_NAME KLM_FN(gk_qsums2_f32_impl)
#include "gaussian_qloop.h"
#define GK_Q_T float
#define GK_Q_NMOM 4
#define GK_Q_NAME KLM_FN(gk_qsums4_f32_impl)
#include "gaussian_qloop.h"

/* Entry points: constant unit stride lets the compiler emit the contiguous loop. */
#define GK_STRIDE_DISPATCH_P(NAME, IMPL, T)                                          \
static int KLM_FN(NAME)(const T *p, ptrdiff_t sp, const double *x, ptrdiff_t n,     \
                        gk_psums *out)                                               \
{                                                                                    \
    if (sp == 1) return KLM_FN(IMPL)(p, 1, x, n, out);                               \
    return KLM_FN(IMPL)(p, sp, x, n, out);                                           \
}
GK_STRIDE_DISPATCH_P(gk_psums_f64, gk_psums_f64_impl, double)
GK_STRIDE_DISPATCH_P(gk_psums_f32, gk_psums_f32_impl, float)
#undef GK_STRIDE_DISPATCH_P

#define GK_STRIDE_DISPATCH_Q(NAME, IMPL, T)                                          \
static void KLM_FN(NAME)(const T *p, ptrdiff_t sp, const double *x, ptrdiff_t n,    \
                         double mu, double sigma, gk_qsums *out)                     \
{                                                                                    \
    double xk = KLM_FN(gk_nearest)(x, n, mu);                                        \
    if (sp == 1) KLM_FN(IMPL)(p, 1, x, n, mu, sigma, xk, out);                       \
    else KLM_FN(IMPL)(p, sp, x, n, mu, sigma, xk, out);                              \
}
GK_STRIDE_DISPATCH_Q(gk_qsums0_f64, gk_qsums0_f64_impl, double)
GK_STRIDE_DISPATCH_Q(gk_qsums2_f64, gk_qsums2_f64_impl, double)
GK_STRIDE_DISPATCH_Q(gk_qsums4_f64, gk_qsums4_f64_impl, double)
GK_STRIDE_DISPATCH_Q(gk_qsums0_f32, gk_qsums0_f32_impl, float)
GK_STRIDE_DISPATCH_Q(gk_qsums2_f32, gk_qsums2_f32_impl, float)
GK_STRIDE_DISPATCH_Q(gk_qsums4_f32, gk_qsums4_f32_impl, float)
#undef GK_STRIDE_DISPATCH_Q
