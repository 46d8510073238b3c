/* Grid passes of the Gaussian KL, instantiated once per instruction-set
   target (KLM_FN gives the suffix).  No include guard on purpose.

   Each pass works on blocks of KL_BLOCK grid points: a plain map loop (which
   the compiler vectorises, exp/log included) writes the block's
   transcendental terms to an L1-resident buffer, then fixed KL_LANES lanes
   sum the block.  gk_run_blocks adds the block totals in block order with
   Neumaier compensation, so the result depends only on n, never on threads. */

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
        if (fabs(x[i] - mu) < bd[j] || (fabs(x[i] - mu) == bd[j] && (x[i] - bx[j]) * (mu - bx[j]) > 0.0)) {
            bd[j] = fabs(x[i] - mu); bx[j] = x[i];
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

/* w_i = exp(-a_i), a_i = ((x_i - mu)^2 - dk^2) / (2 sigma^2) = e (e + 2 dk) h >= 0
   with e = x_i - xk, h = 1 / (2 sigma^2) (may be inf or 0: the select keeps
   a = 0 at xk and never forms 0 * inf). */
static __attribute__((noinline)) void
KLM_FN(gk_wmap)(const double *restrict x, ptrdiff_t len, double xk, double twodk, double h,
                double *restrict w)
{
    for (ptrdiff_t i = 0; i < len; i++) {
        double e = x[i] - xk;
        double r = e * (e + twodk);
        w[i] = KLM_FN(exp_f64)(r > 0.0 ? -(r * h) : 0.0);
    }
}

/* t_i = p_i log p_i, 0 for p_i == 0; NaN or inf for a negative, NaN or infinite p_i. */
static __attribute__((noinline)) void
KLM_FN(gk_plogp)(const double *restrict p, ptrdiff_t len, double *restrict t)
{
    for (ptrdiff_t i = 0; i < len; i++) {
        double v = p[i];
        t[i] = v * KLM_FN(log_f64)(v == 0.0 ? 1.0 : v);
    }
}

/* How many i in [1, len) have x[i] < x[i-1] (an integer count: it vectorises). */
static __attribute__((noinline)) ptrdiff_t
KLM_FN(gk_count_down)(const double *restrict x, ptrdiff_t len)
{
    long long c = 0;
    for (ptrdiff_t i = 1; i < len; i++) c += x[i] < x[i - 1];
    return (ptrdiff_t)c;
}

#include "gaussian_blocks.h"

#define GK_B_T double
#define GK_B_S f64
#include "gaussian_pass.h"

#define GK_B_T float
#define GK_B_S f32
#include "gaussian_pass.h"
