"""Compiled kernels of the Gaussian KL on a grid.

The per-element passes are C (``_src/gaussian_core.h``, compiled per
instruction set with run-time dispatch); the ``def`` functions here loop over
rows or parameter sets (in parallel with OpenMP when it was available at build
time) and write into arrays the caller allocated.  They validate nothing but
shapes: the Python layer in ``gaussian.py`` converts, checks, allocates and
explains errors.

psums rows hold (c, P, S1, S2, H, scale): p's mean c, P = sum p, the first two
moments of p about c, H = sum p log p over p > 0, and the factor applied to
p-weighted sums of the q pass (1, or 1/P for normalised p).
"""
from cython cimport floating
from cython.parallel cimport prange


cdef extern from "gaussian_core.h" nogil:
    ctypedef struct gk_psums:
        double c, P, S1, S2, H, scale
    ctypedef struct gk_qsums:
        double xk, dk, W, W1, W2, W3, W4, Ap
    ctypedef struct gk_eval:
        double kl, g1, g2, dmu, dsigma, grad_rel, noise
    ctypedef struct gk_fit:
        double mu, sigma, kl, dmu, dsigma, grad_rel
        int nit, nfev, status

    const char *gk_core_init(int force_baseline)
    int gk_psums_f64(const double *p, Py_ssize_t sp, const double *x, Py_ssize_t n, gk_psums *out)
    int gk_psums_f32(const float *p, Py_ssize_t sp, const double *x, Py_ssize_t n, gk_psums *out)
    void gk_qsums0_f64(const double *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                       double mu, double sigma, gk_qsums *out)
    void gk_qsums2_f64(const double *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                       double mu, double sigma, gk_qsums *out)
    void gk_qsums0_f32(const float *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                       double mu, double sigma, gk_qsums *out)
    void gk_qsums2_f32(const float *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                       double mu, double sigma, gk_qsums *out)
    void gk_value(const gk_psums *ps, const gk_qsums *qs, double sigma, gk_eval *ev)
    void gk_value_grad(const gk_psums *ps, const gk_qsums *qs, double sigma, gk_eval *ev)
    void gk_newton_f64(const double *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                       const gk_psums *ps, double mu0, double sigma0, double tol,
                       int max_iter, double *hist, gk_fit *res)
    void gk_newton_f32(const float *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                       const gk_psums *ps, double mu0, double sigma0, double tol,
                       int max_iter, double *hist, gk_fit *res)
    void gk_gd_f64(const double *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                   const gk_psums *ps, double mu0, double par0, int variance, double lr,
                   int epochs, double tol, double *hist, gk_fit *res)
    void gk_gd_f32(const float *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                   const gk_psums *ps, double mu0, double par0, int variance, double lr,
                   int epochs, double tol, double *hist, gk_fit *res)


P_OK = 0
P_BAD_P = 1
P_BAD_X = 2
P_ZERO = 3
P_OVERFLOW = 4

FIT_CONVERGED = 0
FIT_MAXITER = 1
FIT_NONPOSITIVE = 2
FIT_LINESEARCH = 3
FIT_DEGENERATE = 4
FIT_SINGULAR = 5
FIT_NONFINITE = 6

_ISA = "baseline"


def select_isa(bint force_baseline=False):
    """Choose the passes' instruction set; returns its name ("baseline" or "avx2+fma")."""
    global _ISA
    _ISA = gk_core_init(force_baseline).decode("ascii")
    return _ISA


def current_isa():
    """Name of the instruction set the passes run with."""
    return _ISA


cdef inline int psums_one(const floating *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                          gk_psums *out) noexcept nogil:
    if floating is double:
        return gk_psums_f64(p, sp, x, n, out)
    else:
        return gk_psums_f32(p, sp, x, n, out)


cdef inline void eval_one(const floating *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                          const gk_psums *ps, double mu, double sigma, bint want_grad,
                          double *kl, double *dmu, double *dsigma) noexcept nogil:
    """Value (and gradient) of KL(p || q(mu, sigma)) from p's sums and one q pass."""
    # The sums live in this frame: private to the calling thread.
    cdef gk_qsums qs
    cdef gk_eval ev
    if want_grad:
        if floating is double:
            gk_qsums2_f64(p, sp, x, n, mu, sigma, &qs)
        else:
            gk_qsums2_f32(p, sp, x, n, mu, sigma, &qs)
        gk_value_grad(ps, &qs, sigma, &ev)
        dmu[0] = ev.dmu
        dsigma[0] = ev.dsigma
    else:
        if floating is double:
            gk_qsums0_f64(p, sp, x, n, mu, sigma, &qs)
        else:
            gk_qsums0_f32(p, sp, x, n, mu, sigma, &qs)
        gk_value(ps, &qs, sigma, &ev)
    kl[0] = ev.kl


cdef inline void fit_one(const floating *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                         const gk_psums *ps, double mu0, double par0, bint newton,
                         bint variance, double lr, int iters, double tol, double *hist,
                         double *out, int *counts) noexcept nogil:
    """One row's fit; out gets (mu, sigma, kl, dmu, dsigma, grad_rel), counts (nit, nfev, status)."""
    cdef gk_fit res   # in this frame: private to the calling thread
    if newton:
        if floating is double:
            gk_newton_f64(p, sp, x, n, ps, mu0, par0, tol, iters, hist, &res)
        else:
            gk_newton_f32(p, sp, x, n, ps, mu0, par0, tol, iters, hist, &res)
    else:
        if floating is double:
            gk_gd_f64(p, sp, x, n, ps, mu0, par0, variance, lr, iters, tol, hist, &res)
        else:
            gk_gd_f32(p, sp, x, n, ps, mu0, par0, variance, lr, iters, tol, hist, &res)
    out[0] = res.mu
    out[1] = res.sigma
    out[2] = res.kl
    out[3] = res.dmu
    out[4] = res.dsigma
    out[5] = res.grad_rel
    counts[0] = res.nit
    counts[1] = res.nfev
    counts[2] = res.status


def gaussian_psums_rows(const floating[:, :] p, const double[::1] x, double[:, ::1] out,
                        signed char[::1] status, int n_threads):
    """Per row i of p (m, n): out[i] = (c, P, S1, S2, H, 1); status[i] a P_* code.

    The pass checks p (negative, NaN, inf) and x (NaN, inf) as it goes; a row
    with a nonzero status has out[i] only partly written.
    """
    cdef Py_ssize_t m = p.shape[0], n = p.shape[1], i
    cdef Py_ssize_t s0 = p.strides[0] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t s1 = p.strides[1] // <Py_ssize_t>sizeof(floating)
    cdef const floating *pp
    if x.shape[0] != n or out.shape[0] != m or out.shape[1] != 6 or status.shape[0] != m:
        raise ValueError("gaussian_psums_rows: shape mismatch between p, x, out and status")
    if m == 0:
        return
    if n == 0:
        out[:, :] = 0.0
        out[:, 5] = 1.0
        status[:] = P_ZERO
        return
    pp = &p[0, 0]
    if n_threads <= 1 or m == 1:
        with nogil:
            for i in range(m):
                status[i] = psums_one(pp + i * s0, s1, &x[0], n, <gk_psums *>&out[i, 0])
    else:
        for i in prange(m, nogil=True, schedule="static", num_threads=n_threads):
            status[i] = psums_one(pp + i * s0, s1, &x[0], n, <gk_psums *>&out[i, 0])


def gaussian_eval(const floating[:, :] p, const double[::1] x, const double[:, ::1] psums,
                  const Py_ssize_t[::1] rows, const double[::1] mu, const double[::1] sigma,
                  double[::1] kl_out, double[::1] dmu_out, double[::1] dsigma_out,
                  bint want_grad, int n_threads):
    """For k in range(K): KL(p[rows[k]] || q(mu[k], sigma[k])) into kl_out[k].

    With want_grad, also dKL/dmu and dKL/dsigma into dmu_out and dsigma_out
    (which may be empty otherwise).  psums are the rows' p-side sums; rows,
    mu and sigma must be valid (indices in range, sigma > 0, all finite).
    """
    cdef Py_ssize_t m = p.shape[0], n = p.shape[1], K = rows.shape[0], k
    cdef Py_ssize_t s0 = p.strides[0] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t s1 = p.strides[1] // <Py_ssize_t>sizeof(floating)
    cdef const floating *pp
    cdef double *g_mu = NULL
    cdef double *g_sigma = NULL
    if (x.shape[0] != n or psums.shape[0] != m or psums.shape[1] != 6 or mu.shape[0] != K
            or sigma.shape[0] != K or kl_out.shape[0] != K
            or (want_grad and (dmu_out.shape[0] != K or dsigma_out.shape[0] != K))):
        raise ValueError("gaussian_eval: shape mismatch between the arguments")
    if K == 0:
        return
    if n == 0 or m == 0:
        raise ValueError("gaussian_eval: empty p")
    pp = &p[0, 0]
    if want_grad:
        g_mu = &dmu_out[0]
        g_sigma = &dsigma_out[0]
    if n_threads <= 1 or K == 1:
        with nogil:
            for k in range(K):
                eval_one(pp + rows[k] * s0, s1, &x[0], n, <const gk_psums *>&psums[rows[k], 0],
                         mu[k], sigma[k], want_grad, &kl_out[k], g_mu + k, g_sigma + k)
    else:
        for k in prange(K, nogil=True, schedule="static", num_threads=n_threads):
            eval_one(pp + rows[k] * s0, s1, &x[0], n, <const gk_psums *>&psums[rows[k], 0],
                     mu[k], sigma[k], want_grad, &kl_out[k], g_mu + k, g_sigma + k)


def gaussian_fit_rows(const floating[:, :] p, const double[::1] x, const double[:, ::1] psums,
                      const double[::1] mu0, const double[::1] par0, bint newton,
                      bint variance, double lr, int iters, double tol,
                      double[:, ::1] out, int[:, ::1] counts, double[:, :, ::1] hist,
                      int n_threads):
    """Fit every row of p (m, n): Newton (newton=True) or gradient descent.

    mu0, par0: start per row (par0 is sigma, or the variance for gradient
    descent with variance set).  iters: max_iter for Newton, epochs for
    gradient descent.  out[i] = (mu, sigma, kl, dmu, dsigma, grad_rel),
    counts[i] = (nit, nfev, status FIT_*), hist[i, j] = (kl, mu, sigma or
    variance) of the j-th recorded state (hist may have zero length, then
    nothing is recorded).
    """
    cdef Py_ssize_t m = p.shape[0], n = p.shape[1], i
    cdef Py_ssize_t s0 = p.strides[0] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t s1 = p.strides[1] // <Py_ssize_t>sizeof(floating)
    cdef const floating *pp
    cdef bint record = hist.shape[1] > 0
    cdef Py_ssize_t need = iters + 1
    if (x.shape[0] != n or psums.shape[0] != m or psums.shape[1] != 6 or mu0.shape[0] != m
            or par0.shape[0] != m or out.shape[0] != m or out.shape[1] != 6
            or counts.shape[0] != m or counts.shape[1] != 3 or hist.shape[0] != m
            or hist.shape[2] != 3 or (record and hist.shape[1] < need)):
        raise ValueError("gaussian_fit_rows: shape mismatch between the arguments")
    if m == 0:
        return
    if n == 0 or iters < 0:
        raise ValueError("gaussian_fit_rows: empty p or negative iteration count")
    pp = &p[0, 0]
    if n_threads <= 1 or m == 1:
        with nogil:
            for i in range(m):
                fit_one(pp + i * s0, s1, &x[0], n, <const gk_psums *>&psums[i, 0], mu0[i], par0[i],
                        newton, variance, lr, iters, tol,
                        &hist[i, 0, 0] if record else <double *>NULL,
                        &out[i, 0], &counts[i, 0])
    else:
        for i in prange(m, nogil=True, schedule="dynamic", num_threads=n_threads):
            fit_one(pp + i * s0, s1, &x[0], n, <const gk_psums *>&psums[i, 0], mu0[i], par0[i],
                    newton, variance, lr, iters, tol,
                    &hist[i, 0, 0] if record else <double *>NULL,
                    &out[i, 0], &counts[i, 0])


select_isa(False)
