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

/* The same w on a full block of an evenly spaced grid (spacing dx), without an
   exp per point.  With i the index in the block, the exponent on the ideal
   grid x_0 + i dx is a^_i = A + B i + C i^2, and with i = j + 8 t
       exp(-a^_i) = exp(-(A + B j)) exp(-8 B t) exp(-C i^2),
   the last factor from the pass's table t2: 8 + 32 exps per 256 points.  The
   exact exponent a_i of each point corrects the product by the Taylor series
   of exp(-(a_i - a^_i)), exact to rounding while |a_i - a^_i| <= 1e-6.
   Returns 0 when done, 1 when the block must take gk_wmap (exponents too
   spread for the factors to stay in range, or x off the even spacing). */
static __attribute__((noinline)) int
KLM_FN(gk_wmap_table)(const double *restrict x, double xk, double twodk, double h, double mu,
                      double dx, const double *restrict t2, double *restrict w)
{
#if defined(__GNUC__) || defined(__clang__)
    double e0 = x[0] - xk, r0 = e0 * (e0 + twodk);
    double A = r0 > 0.0 ? r0 * h : 0.0;
    double B = 2.0 * h * dx * (x[0] - mu), C = h * dx * dx;
    double V[8], U[32], arg[32];
    /* lanes j = 0..3 and 4..7 of each group of 8 points */
    kl_v4d v0, v1, i0 = {0.0, 1.0, 2.0, 3.0}, i1 = {4.0, 5.0, 6.0, 7.0};
    gk_v4i nbad = {0, 0, 0, 0};
    if (!(A + 255.0 * fabs(B) + 65025.0 * C <= 700.0)) return 1;
    for (int j = 0; j < 8; j++) arg[j] = -(A + B * j);
    for (int j = 0; j < 8; j++) V[j] = KLM_FN(exp_f64)(arg[j]);
    for (int t = 0; t < 32; t++) arg[t] = -(8.0 * B) * t;
    for (int t = 0; t < 32; t++) U[t] = KLM_FN(exp_f64)(arg[t]);
    memcpy(&v0, V, sizeof v0);
    memcpy(&v1, V + 4, sizeof v1);
    for (int t = 0; t < 32; t++, i0 += 8.0, i1 += 8.0) {
        kl_v4d xv, tv, e, r, a, d, u = {U[t], U[t], U[t], U[t]};
#define GK_TABLE_HALF(OFF, VV, IV)                                                    \
        memcpy(&xv, x + 8 * t + (OFF), sizeof xv);                                    \
        memcpy(&tv, t2 + 8 * t + (OFF), sizeof tv);                                   \
        e = xv - xk;                                                                  \
        r = e * (e + twodk);                                                          \
        a = (kl_v4d)((gk_v4i)(r * h) & (gk_v4i)(r > 0.0));                           \
        d = a - (A + IV * (B + IV * C));                                              \
        nbad -= (gk_v4i)(d > 1e-6) | (gk_v4i)(d < -1e-6);                             \
        tv = ((VV * u) * tv) * (1.0 - d * (1.0 - 0.5 * d));                          \
        memcpy(w + 8 * t + (OFF), &tv, sizeof tv);
        GK_TABLE_HALF(0, v0, i0)
        GK_TABLE_HALF(4, v1, i1)
#undef GK_TABLE_HALF
    }
    return nbad[0] + nbad[1] + nbad[2] + nbad[3] != 0;
#else
    /* without vector types the point-by-point map is as good */
    (void)x; (void)xk; (void)twodk; (void)h; (void)mu; (void)dx; (void)t2; (void)w;
    return 1;
#endif
}

/* t2[i] = exp(-C i^2) for the KL_BLOCK indices of a block. */
static void KLM_FN(gk_t2_table)(double C, double *restrict t2)
{
    for (int i = 0; i < KL_BLOCK; i++) t2[i] = KLM_FN(exp_f64)(-(C * i) * i);
}

/* t_i = p_i log p_i, 0 for p_i == 0; NaN or inf for a negative, NaN or infinite p_i. */
static __attribute__((noinline)) void
KLM_FN(gk_plogp)(const double *restrict p, ptrdiff_t len, double *restrict t)
{
    for (ptrdiff_t i = 0; i < len; i++) t[i] = KLM_FN(xlogy_f64)(p[i], p[i]);
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
