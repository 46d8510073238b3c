# The Gaussian KL on a grid: the sums, results and statuses its kernels
# (_core_gaussian.pxi) exchange with kl_fast._gaussian, and the types of
# their CoreTable entries.
#
# q_i = exp(-(x_i - mu)^2 / (2 sigma^2)) / Z is the normalised Gaussian
# sampled on the grid x; for p >= 0 with P = sum p and H = sum p log p,
#     KL(p || q) = H + sum p (x - mu)^2 / (2 sigma^2) + P log Z.

# p-side sums (one row of gaussian_psums_rows' output: the field order is the
# column order): c is p's mean (moments are about it), scale multiplies the
# p-weighted sums of the q pass (1, or 1/P when p is normalised), flags (a
# double holding GK_* bits) say what the q pass may assume of x (GK_X_SORTED:
# non-decreasing) and whether the sums are those of p / sum(p)
# (GK_P_NORMALIZED: the careful value divides by the exact sum).
ctypedef struct gk_psums:
    double c, P, S1, S2, H, scale, flags

# q-side sums of one (mu, sigma): xk the grid point nearest mu, dk = xk - mu,
# W = sum w, Wk = sum w (x - xk)^k, Ap = sum p (x - xk)(x - xk + 2 dk) / 2,
# with w = exp(-((x - mu)^2 - dk^2) / (2 sigma^2)).
ctypedef struct gk_qsums:
    double xk, dk, W, W1, W2, W3, W4, Ap

ctypedef struct gk_eval:
    double kl        # KL(p || q)
    double g1        # P E_q[d] - sum p d, with d = x - mu
    double g2        # P E_q[d^2] - sum p d^2
    double dmu       # dKL/dmu = g1 / sigma^2
    double dsigma    # dKL/dsigma = g2 / sigma^3
    double grad_rel  # max(|g1| / L, |g2| / L^2) / P, L p's standard deviation
    double noise     # rounding size of kl (sum of the magnitudes of its terms)

ctypedef struct gk_fit:
    double mu, sigma, kl, dmu, dsigma, grad_rel
    int nit, nfev, status

# the blocking of a pass over the grid (the thread rule of kl_fast._gaussian uses it too)
cdef enum:
    GK_BLOCK = 256             # grid points per block
    GK_CHUNK = 8               # blocks a thread takes at a time (their table factors together)

cdef enum:
    GK_X_SORTED = 1
    GK_P_NORMALIZED = 2

# statuses of the p-side pass
cdef enum:
    GK_P_OK = 0
    GK_P_BAD_P = 1      # p holds a negative, NaN or infinite value
    GK_P_BAD_X = 2      # x holds a NaN or infinite value
    GK_P_ZERO = 3       # p sums to zero
    GK_P_OVERFLOW = 4   # a p-side sum overflowed

# statuses of a fit
cdef enum:
    GK_FIT_CONVERGED = 0    # relative gradient below tol
    GK_FIT_MAXITER = 1      # iteration / epoch budget used up
    GK_FIT_NONPOSITIVE = 2  # a gradient step would make sigma (or the variance) <= 0
    GK_FIT_LINESEARCH = 3   # no Newton step lowered the KL
    GK_FIT_DEGENERATE = 4   # p sits on one grid point: no finite optimum
    GK_FIT_SINGULAR = 5     # q collapsed on the grid: singular Hessian
    GK_FIT_NONFINITE = 6    # a parameter left the finite range
    GK_FIT_INTERRUPTED = 7  # Ctrl-C: the caller raises KeyboardInterrupt
    GK_FIT_TWO_POINTS = 8   # p on two neighbouring grid points: optimum at sigma -> 0
    GK_FIT_UNIFORM = 9      # the KL is at its limit as sigma -> infinity (q uniform)
    GK_FIT_TILT = 10        # no finite optimum: the infimum is an exponential tilt
    GK_FIT_RESOLVED = 11    # converged as far as the doubles near mu allow (newton)

# Polled between fit iterations: nonzero asks the fit to stop (Ctrl-C).
ctypedef int (*gk_stop_fn)() noexcept nogil

ctypedef int (*gk_psums_f64_fn)(const double *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                                int nthreads, gk_psums *out) noexcept nogil
ctypedef int (*gk_psums_f32_fn)(const float *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                                int nthreads, gk_psums *out) noexcept nogil
ctypedef void (*gk_eval_f64_fn)(const double *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                                const gk_psums *ps, double mu, double sigma, int order,
                                int nthreads, double *out) noexcept nogil
ctypedef void (*gk_eval_f32_fn)(const float *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                                const gk_psums *ps, double mu, double sigma, int order,
                                int nthreads, double *out) noexcept nogil
ctypedef void (*gk_newton_f64_fn)(const double *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                                  const gk_psums *ps, double mu0, double sigma0, double tol,
                                  int max_iter, int nthreads, gk_stop_fn stop, double *hist,
                                  gk_fit *res) noexcept nogil
ctypedef void (*gk_newton_f32_fn)(const float *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                                  const gk_psums *ps, double mu0, double sigma0, double tol,
                                  int max_iter, int nthreads, gk_stop_fn stop, double *hist,
                                  gk_fit *res) noexcept nogil
ctypedef void (*gk_gd_f64_fn)(const double *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                              const gk_psums *ps, double mu0, double par0, bint variance,
                              double lr, double lr_par, int epochs, double tol, int nthreads,
                              gk_stop_fn stop, double *hist, gk_fit *res) noexcept nogil
ctypedef void (*gk_gd_f32_fn)(const float *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                              const gk_psums *ps, double mu0, double par0, bint variance,
                              double lr, double lr_par, int epochs, double tol, int nthreads,
                              gk_stop_fn stop, double *hist, gk_fit *res) noexcept nogil
