/* C core of the Gaussian KL on a grid.

   q_i = exp(-(x_i - mu)^2 / (2 sigma^2)) / Z is the normalised Gaussian
   sampled on the grid x; for p >= 0 with P = sum p and H = sum p log p,

       KL(p || q) = H + sum p (x - mu)^2 / (2 sigma^2) + P log Z.

   The p-side sums (P, H and p's first two moments) are taken once per p
   (gk_psums_*); every (mu, sigma) then costs one pass over the grid
   (gk_qsums*_*) that gives log Z and the moments of q, shifted so that
   nothing overflows.  The passes are compiled for the baseline target and,
   on x86-64 with GCC or Clang, for AVX2+FMA, with the elementary functions
   from klmath.h (through kl_core.h, whose instantiations they share);
   gk_core_init() picks one at import time.  The scalar combination, the
   Newton solver and the gradient-descent loop sit on top. */
#ifndef GAUSSIAN_CORE_H
#define GAUSSIAN_CORE_H

#include <stdlib.h>
#include "kl_core.h"
#include "kl_interrupt.h"

/* p-side sums: c is p's mean (moments are about it), scale multiplies the
   p-weighted sums of the q pass (1, or 1/P when p is normalised), xgrid says
   what the q pass may assume of x: 0 nothing, GK_X_SORTED non-decreasing (the
   anchor is found by bisection; full blocks evenly spaced get exp by factorised
   tables, each point checked against its exact exponent). */
typedef struct { double c, P, S1, S2, H, scale, xgrid; } gk_psums;
#define GK_X_SORTED 1
#define GK_TABLE_MIN_POINTS 512   /* the factorised exp pays off from here */

/* q-side sums of one (mu, sigma): xk the grid point nearest mu, dk = xk - mu,
   W = sum w, Wk = sum w (x - xk)^k, Ap = sum p (x - xk)(x - xk + 2 dk) / 2,
   with w = exp(-((x - mu)^2 - dk^2) / (2 sigma^2)). */
typedef struct { double xk, dk, W, W1, W2, W3, W4, Ap; } gk_qsums;

/* Arguments of the block functions of one pass (p is float or double). */
typedef struct { const void *p; ptrdiff_t sp; const double *x; ptrdiff_t n; double ctr; } gk_pctx;
typedef struct { const void *p; ptrdiff_t sp; const double *x; ptrdiff_t n;
                 double xk, dk, h, mu, dx; int sorted; const double *t2; } gk_qctx;
typedef void (*gk_block_fn)(const void *ctx, ptrdiff_t blk, double *tot);
#if defined(__GNUC__) || defined(__clang__)
typedef long long gk_v4i __attribute__((vector_size(32)));
#endif

#define GK_MAXQ 6            /* most sums a pass produces */
#define GK_STACK_BLOCKS 128  /* block totals kept on the stack before malloc */

/* Run fn over the blocks of a pass of n points and add the nq block totals in
   block order with Neumaier compensation into sums[0:nq].  With nthreads > 1
   (and OpenMP) the blocks are computed in parallel into a buffer first; the
   additions are the same, so the result does not depend on nthreads. */
static void gk_run_blocks(gk_block_fn fn, const void *ctx, ptrdiff_t n, int nq, int nthreads,
                          double *sums)
{
    ptrdiff_t nb = (n + KL_BLOCK - 1) / KL_BLOCK;
    double s[GK_MAXQ], c[GK_MAXQ], t[GK_MAXQ];
    for (int k = 0; k < nq; k++) { s[k] = 0.0; c[k] = 0.0; }
#ifdef _OPENMP
    if (nthreads > 1 && nb > 1) {
        double local[GK_STACK_BLOCKS * GK_MAXQ];
        double *tot = nb <= GK_STACK_BLOCKS ? local : (double *)malloc((size_t)nb * nq * sizeof(double));
        if (tot != NULL) {
            ptrdiff_t b;
            #pragma omp parallel for schedule(static) num_threads(nthreads)
            for (b = 0; b < nb; b++) fn(ctx, b, tot + b * nq);
            for (b = 0; b < nb; b++)
                for (int k = 0; k < nq; k++) kl_neumaier(&s[k], &c[k], tot[b * nq + k]);
            if (tot != local) free(tot);
            for (int k = 0; k < nq; k++) sums[k] = s[k] + c[k];
            return;
        }
    }
#else
    (void)nthreads;
#endif
    for (ptrdiff_t b = 0; b < nb; b++) {
        fn(ctx, b, t);
        for (int k = 0; k < nq; k++) kl_neumaier(&s[k], &c[k], t[k]);
    }
    for (int k = 0; k < nq; k++) sums[k] = s[k] + c[k];
}

/* The point of a non-decreasing grid nearest mu, by bisection (ties to the
   larger; a mu beyond an end gives that end). */
static double gk_nearest_sorted(const double *x, ptrdiff_t n, double mu)
{
    ptrdiff_t lo = 0, hi = n - 1;
    if (!(mu > x[0])) return x[0];
    if (!(mu < x[n - 1])) return x[n - 1];
    while (hi - lo > 1) {     /* x[lo] < mu <= x[hi] */
        ptrdiff_t mid = lo + (hi - lo) / 2;
        if (x[mid] < mu) lo = mid; else hi = mid;
    }
    return mu - x[lo] < x[hi] - mu ? x[lo] : x[hi];
}

#define GK_P_OK 0
#define GK_P_BAD_P 1      /* p holds a negative, NaN or infinite value */
#define GK_P_BAD_X 2      /* x holds a NaN or infinite value */
#define GK_P_ZERO 3       /* p sums to zero */
#define GK_P_OVERFLOW 4   /* a p-side sum overflowed */

/* ---- per-target instantiations ---------------------------------------- */
#define KLM_FN(name) name##_base
#include "gaussian_impl.h"
#undef KLM_FN

#if KL_HAVE_AVX2_PATH
#include "kl_target_avx2_begin.h"
#include "gaussian_impl.h"
#include "kl_target_avx2_end.h"
#endif

/* ---- dispatch ------------------------------------------------------------ */
typedef int (*gk_psums_f64_fn)(const double *, ptrdiff_t, const double *, ptrdiff_t, int, gk_psums *);
typedef int (*gk_psums_f32_fn)(const float *, ptrdiff_t, const double *, ptrdiff_t, int, gk_psums *);
typedef void (*gk_qsums_f64_fn)(const double *, ptrdiff_t, const double *, ptrdiff_t,
                                double, double, int, int, gk_qsums *);
typedef void (*gk_qsums_f32_fn)(const float *, ptrdiff_t, const double *, ptrdiff_t,
                                double, double, int, int, gk_qsums *);

static gk_psums_f64_fn gk_psums_f64 = gk_psums_f64_base;
static gk_psums_f32_fn gk_psums_f32 = gk_psums_f32_base;
static gk_qsums_f64_fn gk_qsums0_f64 = gk_qsums0_f64_base;
static gk_qsums_f64_fn gk_qsums2_f64 = gk_qsums2_f64_base;
static gk_qsums_f64_fn gk_qsums4_f64 = gk_qsums4_f64_base;
static gk_qsums_f32_fn gk_qsums0_f32 = gk_qsums0_f32_base;
static gk_qsums_f32_fn gk_qsums2_f32 = gk_qsums2_f32_base;
static gk_qsums_f32_fn gk_qsums4_f32 = gk_qsums4_f32_base;

/* Select the passes: force_baseline != 0 keeps the portable path. */
static const char *gk_core_init(int force_baseline)
{
#define GK_SET(suffix)                                                         \
    gk_psums_f64 = gk_psums_f64_##suffix; gk_psums_f32 = gk_psums_f32_##suffix; \
    gk_qsums0_f64 = gk_qsums0_f64_##suffix; gk_qsums2_f64 = gk_qsums2_f64_##suffix; \
    gk_qsums4_f64 = gk_qsums4_f64_##suffix; gk_qsums0_f32 = gk_qsums0_f32_##suffix; \
    gk_qsums2_f32 = gk_qsums2_f32_##suffix; gk_qsums4_f32 = gk_qsums4_f32_##suffix;
    GK_SET(base)
#if KL_HAVE_AVX2_PATH
    if (!force_baseline && kl_cpu_has_avx2_fma()) {
        GK_SET(avx2)
        return "avx2+fma";
    }
#endif
#undef GK_SET
    return "baseline";
}

/* ---- value and gradient from the two sets of sums ------------------------ */
typedef struct {
    double kl;        /* KL(p || q) */
    double g1;        /* P E_q[d] - sum p d, with d = x - mu */
    double g2;        /* P E_q[d^2] - sum p d^2 */
    double dmu;       /* dKL/dmu = g1 / sigma^2 */
    double dsigma;    /* dKL/dsigma = g2 / sigma^3 */
    double grad_rel;  /* max(|g1| / L, |g2| / L^2) / P, L p's standard deviation: the
                         mismatch of q's first two moments with p's in p's own units,
                         which does not shrink where sigma is far from the optimum */
    double noise;     /* rounding size of kl (sum of the magnitudes of its terms) */
} gk_eval;

static inline void gk_value(const gk_psums *ps, const gk_qsums *qs, double sigma, gk_eval *ev)
{
    double quad = (ps->scale * qs->Ap / sigma) / sigma;
    double lz = ps->P * log(qs->W);
    ev->kl = ps->H + quad + lz;
    ev->noise = fabs(ps->H) + fabs(quad) + fabs(lz);
}

static inline void gk_value_grad(const gk_psums *ps, const gk_qsums *qs, double sigma, gk_eval *ev)
{
    double P = ps->P;
    /* p's moments about xk, from its moments about its mean c */
    double u = ps->c - qs->xk;
    double sp1 = ps->S1 + P * u;
    double sp2 = ps->S2 + u * (2.0 * ps->S1 + P * u);
    double g1 = P * (qs->W1 / qs->W) - sp1;
    double g2 = P * (qs->W2 / qs->W) - sp2;
    gk_value(ps, qs, sigma, ev);
    g2 += 2.0 * qs->dk * g1;   /* moments about xk -> about mu */
    ev->g1 = g1;
    ev->g2 = g2;
    ev->dmu = (g1 / sigma) / sigma;
    ev->dsigma = ((g2 / sigma) / sigma) / sigma;
    double mp = ps->S1 / P, L = sqrt(fmax(ps->S2 / P - mp * mp, 0.0));
    if (!(L > 0.0)) L = sigma;   /* p on one point: no finite optimum, any unit */
    ev->grad_rel = fmax(fabs(g1 / L), fabs((g2 / L) / L)) / P;
}

/* ---- fitting ---------------------------------------------------------------- */
#define GK_FIT_CONVERGED 0    /* relative gradient below tol */
#define GK_FIT_MAXITER 1      /* iteration / epoch budget used up */
#define GK_FIT_NONPOSITIVE 2  /* a gradient step would make sigma (or the variance) <= 0 */
#define GK_FIT_LINESEARCH 3   /* no Newton step lowered the KL */
#define GK_FIT_DEGENERATE 4   /* p sits on one grid point: no finite optimum */
#define GK_FIT_SINGULAR 5     /* q collapsed on the grid: singular Hessian */
#define GK_FIT_NONFINITE 6    /* a parameter left the finite range */
#define GK_FIT_INTERRUPTED 7  /* Ctrl-C (kl_interrupt.h): the caller raises KeyboardInterrupt */
#define GK_FIT_TWO_POINTS 8   /* p on two neighbouring grid points: optimum at sigma -> 0 */
#define GK_FIT_UNIFORM 9      /* the KL is at its limit as sigma -> infinity (q uniform) */

typedef struct {
    double mu, sigma, kl, dmu, dsigma, grad_rel;
    int nit, nfev, status;
} gk_fit;

static inline void gk_fit_set(gk_fit *res, double mu, double sigma, const gk_eval *ev)
{
    res->mu = mu; res->sigma = sigma; res->kl = ev->kl;
    res->dmu = ev->dmu; res->dsigma = ev->dsigma; res->grad_rel = ev->grad_rel;
}

static inline void gk_hist(double *hist, int i, double kl, double mu, double par)
{
    if (hist) { hist[3 * i] = kl; hist[3 * i + 1] = mu; hist[3 * i + 2] = par; }
}

/* Newton in the natural parameters of the grid Gaussian, in the coordinate
   t = (x - c) / L (c, L: p's mean and standard deviation) so the 2x2 system is
   well conditioned.  There the KL is convex, its gradient is P (E_q[T] - E_p[T])
   and its Hessian P Cov_q[T], T = (t, t^2); a backtracking line search keeps
   the step inside sigma > 0 and the KL from rising beyond rounding; far from the
   optimum the step is damped by the Newton decrement (full steps near it).  hist gets
   (kl, mu, sigma) of the start and of every accepted iterate. */
#define GK_NEWTON(NAME, T, QFN)                                                        \
static void NAME(const T *p, ptrdiff_t sp, const double *x, ptrdiff_t n,               \
                 const gk_psums *ps, double mu0, double sigma0, double tol,            \
                 int max_iter, int nthreads, double *hist, gk_fit *res)                \
{                                                                                      \
    double P = ps->P, c = ps->c;                                                       \
    double mp = ps->S1 / P;                                                            \
    double L = sqrt(fmax(ps->S2 / P - mp * mp, 0.0));                                  \
    gk_qsums qs;                                                                       \
    gk_eval ev;                                                                        \
    res->nit = 0; res->nfev = 0;                                                       \
    if (!(L > 0.0)) {                                                                  \
        /* all of p on one point: KL -> H as sigma -> 0 */                             \
        res->mu = c + mp; res->sigma = 0.0; res->kl = ps->H;                           \
        res->dmu = 0.0; res->dsigma = 0.0; res->grad_rel = 0.0;                        \
        res->status = GK_FIT_DEGENERATE;                                               \
        gk_hist(hist, 0, ps->H, res->mu, 0.0);                                         \
        return;                                                                        \
    }                                                                                  \
    double mu = mu0, sigma = sigma0;                                                   \
    QFN(p, sp, x, n, mu, sigma, (int)ps->xgrid, nthreads, &qs);                        \
    gk_value_grad(ps, &qs, sigma, &ev);                                                \
    res->nfev = 1;                                                                     \
    gk_fit_set(res, mu, sigma, &ev);                                                   \
    gk_hist(hist, 0, ev.kl, mu, sigma);                                                \
    double v = (sigma / L) * (sigma / L);                                              \
    double eta1 = ((mu - c) / L) / v, eta2 = -0.5 / v;                                 \
    for (;;) {                                                                         \
        if (ev.grad_rel < tol) { res->status = GK_FIT_CONVERGED; return; }             \
        if (res->nit >= max_iter) { res->status = GK_FIT_MAXITER; return; }            \
        if (kl_stop_requested()) { res->status = GK_FIT_INTERRUPTED; return; }         \
        double W = qs.W, m1 = qs.W1 / W, m2 = qs.W2 / W, m3 = qs.W3 / W, m4 = qs.W4 / W; \
        double k2 = m2 - m1 * m1;                                                        \
        double k3 = m3 - m1 * (3.0 * m2 - 2.0 * m1 * m1);                                \
        double k4 = m4 - m1 * (4.0 * m3 - m1 * (6.0 * m2 - 3.0 * m1 * m1));              \
        double a = (m1 + (qs.xk - c)) / L;                                               \
        double K2 = k2 / (L * L), K3 = k3 / (L * L * L), K4 = k4 / ((L * L) * (L * L));  \
        double h11 = K2, h12 = K3 + 2.0 * a * K2;                                        \
        double h22 = K4 - K2 * K2 + 4.0 * a * (K3 + a * K2);                             \
        double b = mu - c;                                                               \
        double gn1 = ev.g1 / (P * L), gn2 = (ev.g2 + 2.0 * b * ev.g1) / (P * L * L);     \
        /* q on one point: no curvature left; on two points the Hessian has rank         \
           one, which the damping below (nu > 0) handles */                              \
        if (!(h11 > 0.0 && h22 > 0.0)) { res->status = GK_FIT_SINGULAR; return; }        \
        double noise = 64.0 * DBL_EPSILON * ev.noise;                                    \
        /* Newton first, damped by the Newton decrement far from the optimum; if         \
           that step leaves sigma > 0 or raises the KL, Levenberg-Marquardt: add nu      \
           times the Hessian's diagonal, which turns the step toward the (scaled)        \
           gradient and shortens it, until it is feasible and lowers the KL */           \
        double nu = 0.0;                                                                 \
        int accepted = 0;                                                                \
        gk_qsums qn = qs;                                                                \
        gk_eval en = ev;                                                                 \
        double mun = mu, sn = sigma, e1n = eta1, e2n = eta2;                             \
        for (int tr = 0; tr < 60 && !accepted; tr++) {                                   \
            double a11 = h11 * (1.0 + nu), a22 = h22 * (1.0 + nu);                       \
            double det = a11 * a22 - h12 * h12;                                          \
            double d1 = -(a22 * gn1 - h12 * gn2) / det;                                  \
            double d2 = -(a11 * gn2 - h12 * gn1) / det;                                  \
            double gd = gn1 * d1 + gn2 * d2;                                             \
            double lam = 1.0;                                                            \
            if (nu == 0.0) {                                                             \
                double dec = sqrt(fmax(-gd, 0.0));                                       \
                if (dec > 0.25) lam = 1.0 / (1.0 + dec);                                 \
            }                                                                            \
            nu = nu == 0.0 ? 1e-3 : 10.0 * nu;                                           \
            e1n = eta1 + lam * d1;                                                       \
            e2n = eta2 + lam * d2;                                                       \
            if (!(e2n < 0.0 && det > 0.0)) continue;                                     \
            double vn = -0.5 / e2n;                                                      \
            mun = c + L * (e1n * vn);                                                    \
            sn = L * sqrt(vn);                                                           \
            if (!(sn > 0.0 && sn <= DBL_MAX && fabs(mun) <= DBL_MAX)) continue;          \
            QFN(p, sp, x, n, mun, sn, (int)ps->xgrid, nthreads, &qn);                    \
            gk_value_grad(ps, &qn, sn, &en);                                             \
            res->nfev++;                                                                 \
            if (en.kl <= ev.kl + 1e-4 * lam * P * gd + noise) accepted = 1;              \
        }                                                                                \
        if (!accepted) { res->status = GK_FIT_LINESEARCH; return; }                      \
        mu = mun; sigma = sn; eta1 = e1n; eta2 = e2n; qs = qn; ev = en;                  \
        res->nit++;                                                                      \
        gk_fit_set(res, mu, sigma, &ev);                                                 \
        gk_hist(hist, res->nit, ev.kl, mu, sigma);                                       \
    }                                                                                    \
}

GK_NEWTON(gk_newton_f64, double, gk_qsums4_f64)
GK_NEWTON(gk_newton_f32, float, gk_qsums4_f32)

/* Plain gradient descent for `epochs` steps of sizes lr (mu) and lr_par (sigma or v;
   the two differ only when the caller works in rescaled units), on (mu, sigma) or, with
   variance set, on (mu, v = sigma^2) as the tutorial does.  Stops early when
   the relative gradient drops below tol, and before any step that would make
   sigma (or v) <= 0.  hist gets (kl, mu, sigma or v) before every step and at
   the end: row j holds the state after j steps. */
#define GK_GD(NAME, T, QFN)                                                            \
static void NAME(const T *p, ptrdiff_t sp, const double *x, ptrdiff_t n,               \
                 const gk_psums *ps, double mu0, double par0, int variance,            \
                 double lr, double lr_par, int epochs, double tol, int nthreads,       \
                 double *hist,                                                         \
                 gk_fit *res)                                                          \
{                                                                                      \
    double mu = mu0, par = par0;                                                       \
    gk_qsums qs;                                                                       \
    gk_eval ev;                                                                        \
    res->nit = 0; res->nfev = 0;                                                       \
    if (!(par0 > 0.0)) {                                                               \
        /* start at sigma = 0: only when p sits on one point (no finite optimum) */    \
        res->mu = mu0; res->sigma = 0.0; res->kl = ps->H;                              \
        res->dmu = 0.0; res->dsigma = 0.0; res->grad_rel = 0.0;                        \
        res->status = GK_FIT_DEGENERATE;                                               \
        gk_hist(hist, 0, ps->H, mu0, 0.0);                                             \
        return;                                                                        \
    }                                                                                  \
    for (int it = 0;; it++) {                                                          \
        double sigma = variance ? sqrt(par) : par;                                     \
        QFN(p, sp, x, n, mu, sigma, (int)ps->xgrid, nthreads, &qs);                    \
        gk_value_grad(ps, &qs, sigma, &ev);                                            \
        res->nfev++;                                                                   \
        res->nit = it;                                                                 \
        gk_fit_set(res, mu, sigma, &ev);                                               \
        gk_hist(hist, it, ev.kl, mu, par);                                             \
        if (ev.grad_rel < tol) { res->status = GK_FIT_CONVERGED; return; }             \
        if (it >= epochs) { res->status = GK_FIT_MAXITER; return; }                    \
        if (kl_stop_requested()) { res->status = GK_FIT_INTERRUPTED; return; }         \
        double dmu, dpar;                                                              \
        if (variance) { dmu = ev.g1 / par; dpar = 0.5 * ((ev.g2 / par) / par); }       \
        else { dmu = ev.dmu; dpar = ev.dsigma; }                                       \
        double mun = mu - lr * dmu, parn = par - lr_par * dpar;                        \
        if (!(fabs(mun) <= DBL_MAX && fabs(parn) <= DBL_MAX)) {                        \
            res->status = GK_FIT_NONFINITE; return;                                    \
        }                                                                              \
        if (!(parn > 0.0)) { res->status = GK_FIT_NONPOSITIVE; return; }               \
        mu = mun; par = parn;                                                          \
    }                                                                                  \
}

GK_GD(gk_gd_f64, double, gk_qsums2_f64)
GK_GD(gk_gd_f32, float, gk_qsums2_f32)

#endif /* GAUSSIAN_CORE_H */
