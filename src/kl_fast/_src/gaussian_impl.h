/* Grid passes of the Gaussian KL, instantiated once per instruction-set
   target (KLM_FN gives the suffix).  No include guard on purpose.

   Each pass works on blocks of KL_BLOCK grid points, either in one loop that
   computes and sums the terms in registers (the p side; the q side on evenly
   spaced blocks) or by a plain map loop (which the compiler vectorises,
   exp/log included) into an L1-resident buffer summed in fixed KL_LANES
   lanes.  gk_run_blocks adds the block totals in block order with Neumaier
   compensation, so the result depends only on n, never on threads. */

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

/* w_i = exp(-a_i), a_i = ((x_i - mu)^2 - dk^2) / (2 sigma^2) = 2 e (e / 2 + dk) h >= 0
   with e = x_i - xk, h = 1 / (2 sigma^2) (may be inf or 0: the select keeps
   a = 0 at xk and never forms 0 * inf). */
static __attribute__((noinline)) void
KLM_FN(gk_wmap)(const double *restrict x, ptrdiff_t len, double xk, double dk, double h,
                double *restrict w)
{
    for (ptrdiff_t i = 0; i < len; i++) {
        double e = x[i] - xk;
        double r = e * (0.5 * e + dk);
        w[i] = KLM_FN(exp_f64)(r > 0.0 ? -(2.0 * (r * h)) : 0.0);
    }
}

/* The factors of w on a full block of an evenly spaced grid (spacing dx),
   without an exp per point.  With i the index in the block, the exponent on
   the ideal grid x_0 + i dx is a^_i = A + B i + C i^2, and with i = j + 8 t
       exp(-a^_i) = exp(-(A + B j)) exp(-8 B t) exp(-C i^2),
   the last factor from the pass's table t2: 8 + 4 + 8 exps per 256 points,
   into V[j] and U[t] (the middle factor as a product of two).  The exact
   exponent a_i of each point then corrects the product by 1 - (a_i - a^_i),
   exp(-(a_i - a^_i)) to within rounding while |a_i - a^_i| <= 1e-8 (gk_qt*_sums,
   gaussian_blocks.h).  Returns 1 when the
   exponents are too spread for the factors to stay in range. */
static int KLM_FN(gk_table_factors)(const double *restrict x, double xk, double dk, double h,
                                    double mu, double dx, double *restrict abc,
                                    double *restrict V, double *restrict U)
{
    double e0 = x[0] - xk, r0 = e0 * (0.5 * e0 + dk);
    double A = r0 > 0.0 ? 2.0 * (r0 * h) : 0.0;
    double B = 2.0 * h * dx * (x[0] - mu), C = h * dx * dx;
    double arg[20], ex[20];
    if (!(A + 255.0 * fabs(B) + 65025.0 * C <= 700.0)) return 1;
    /* exp(-8 B t) = exp(-8 B (t % 4)) exp(-32 B (t / 4)): 20 exps, not 40 */
    for (int j = 0; j < 8; j++) arg[j] = -(A + B * j);
    for (int k = 0; k < 4; k++) arg[8 + k] = -(8.0 * B) * k;
    for (int m = 0; m < 8; m++) arg[12 + m] = -(32.0 * B) * m;
    for (int j = 0; j < 20; j++) ex[j] = KLM_FN(exp_f64)(arg[j]);
    for (int j = 0; j < 8; j++) V[j] = ex[j];
    for (int m = 0; m < 8; m++)
        for (int k = 0; k < 4; k++) U[4 * m + k] = ex[8 + k] * ex[12 + m];
    abc[0] = A; abc[1] = B; abc[2] = C;
    return 0;
}

/* t2[i] = exp(-C i^2) for the KL_BLOCK indices of a block. */
static void KLM_FN(gk_t2_table)(double C, double *restrict t2)
{
    for (int i = 0; i < KL_BLOCK; i++) t2[i] = KLM_FN(exp_f64)(-(C * i) * i);
}

/* t_i = p_i log p_i, 0 for p_i == 0; NaN or inf for a negative, NaN or infinite p_i.
   log_f64 of klmath.h (same reduction, same polynomial) split into two loops at the
   division: one long dependency chain per point fills the out-of-order window and
   leaves the vector units idle, two shorter ones overlap across points. */
static __attribute__((noinline)) void
KLM_FN(gk_plogp)(const double *restrict p, ptrdiff_t len, double *restrict t)
{
    double sb[KL_BLOCK] __attribute__((aligned(32)));
    double fb[KL_BLOCK] __attribute__((aligned(32)));
    double kb[KL_BLOCK] __attribute__((aligned(32)));
    if (len > KL_BLOCK) {   /* callers pass blocks; keep the plain form for anything else */
        for (ptrdiff_t i = 0; i < len; i++) t[i] = KLM_FN(xlogy_f64)(p[i], p[i]);
        return;
    }
    /* p = 2^k z, z in [sqrt2/2, sqrt2), f = z - 1, s = f / (z + 1) (see log_f64) */
    for (ptrdiff_t i = 0; i < len; i++) {
        double k, z = KLM_FN(log_reduce_f64)(p[i], &k);
        kb[i] = k;
        fb[i] = z - 1.0;
        sb[i] = (z - 1.0) / (z + 1.0);
    }
    for (ptrdiff_t i = 0; i < len; i++) {
        double x = p[i], corr, v;
        double r = KLM_FN(log_tail_f64)(sb[i], fb[i], kb[i]);
        /* r is finite; x r is then inf or NaN for x = inf or NaN as it must be,
           NaN is added for x < 0, and x = 0 is masked to +0 below */
        corr = x < 0.0 ? (double)NAN : 0.0;
        v = x * r + corr;
        t[i] = KLM_FN(zero_where_zero_f64)(v, x);
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
