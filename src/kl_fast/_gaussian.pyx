"""Compiled kernels of the Gaussian KL on a grid.

The per-element passes, the value, gradient and Hessian and the fit loops
are in the compiled core (``_core_gaussian.pxi``, called through the table
``kl_fast._kernels`` selected at import); the ``def`` functions here loop over
rows or parameter sets (in parallel with OpenMP when it was available at build
time) and write into arrays the caller allocated.  They validate nothing but
shapes: the Python layer in ``gaussian.py`` converts, checks, allocates and
explains errors.

psums rows hold (c, P, S1, S2, H, scale, flags): p's mean c, P = sum p, the
first two moments of p about c, H = sum p log p over p > 0, the factor applied
to p-weighted sums of the q pass (1, or 1/P for normalised p), and bits saying
what x is (X_SORTED: non-decreasing) and whether the sums are those of
p / sum(p) (P_NORMALIZED, set by the Python layer).
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.float cimport DBL_EPSILON
from libc.math cimport exp, fabs, fmax, isfinite, ldexp, log, sqrt
from libc.string cimport memcpy

cimport numpy as cnp

cnp.import_array()

import numpy as _np

cdef extern from "numpy/arrayobject.h":
    object PyArray_Scalar(void *data, cnp.dtype descr, object base)

cdef cnp.dtype _F64 = cnp.PyArray_DescrFromType(cnp.NPY_DOUBLE)


cdef inline object _np_float64(double v):
    """v as a NumPy float64 scalar, made in C (a call of np.float64 costs
    about twice as much, three of them 0.1 us of a prepared evaluation)."""
    return PyArray_Scalar(&v, _F64, None)

include "_interrupt.pxi"


from kl_fast._core_gaussian cimport (
    gk_psums, gk_fit, gk_stop_fn, GK_BLOCK, GK_CHUNK, GK_X_SORTED, GK_P_NORMALIZED,
    GK_FIT_CONVERGED, GK_FIT_MAXITER, GK_FIT_NONPOSITIVE,
    GK_FIT_LINESEARCH, GK_FIT_DEGENERATE, GK_FIT_SINGULAR, GK_FIT_NONFINITE,
    GK_FIT_INTERRUPTED, GK_FIT_TWO_POINTS, GK_FIT_UNIFORM, GK_FIT_TILT, GK_FIT_RESOLVED,
)
from kl_fast._core_table cimport CoreTable

from kl_fast._kernels cimport (
    choose_threads, core_table, team_completed, team_finished,
)


P_OK = 0
P_BAD_P = 1
P_BAD_X = 2
P_ZERO = 3
P_OVERFLOW = 4
X_SORTED = GK_X_SORTED          # bits of the psums' flags
P_NORMALIZED = GK_P_NORMALIZED

FIT_CONVERGED = GK_FIT_CONVERGED
FIT_MAXITER = GK_FIT_MAXITER
FIT_NONPOSITIVE = GK_FIT_NONPOSITIVE
FIT_LINESEARCH = GK_FIT_LINESEARCH
FIT_DEGENERATE = GK_FIT_DEGENERATE
FIT_SINGULAR = GK_FIT_SINGULAR
FIT_NONFINITE = GK_FIT_NONFINITE
FIT_INTERRUPTED = GK_FIT_INTERRUPTED
FIT_TWO_POINTS = GK_FIT_TWO_POINTS
FIT_UNIFORM = GK_FIT_UNIFORM
FIT_TILT = GK_FIT_TILT
FIT_RESOLVED = GK_FIT_RESOLVED

# A single row's grid is split into chunks of blocks over the threads by default
# from SPLIT_MIN points (kl_div's long rows split from the same size).  Two
# threads against one, value and gradient cold or prepared and Newton fits,
# measured 0.8-1.0x at 2,048 points, 0.9-1.2x at 4,096 and 8,192, 1.3-1.7x from
# 16,384 (blocks split one by one then; a chunk of 2,048 points now goes to one
# thread); the blocks are added in the same order for every thread count.
SPLIT_MIN = 1 << 14
BLOCK = GK_BLOCK   # grid points per block of the core's passes
CHUNK = GK_CHUNK   # blocks a thread takes at a time

# A grid point of a pass costs about as much as two kl_div elements (the thread
# rule's unit: one thread, 20,000 points, a cold gradient 35 us against 18 us).
cdef double POINT_WORK = 2.0

# A Newton fit is counted as this many passes over the grid when the thread
# count is chosen (from p's own moments it takes a few), gradient descent as
# all its epochs.
cdef int NEWTON_PASSES = 8


cdef int _row_threads(object num_threads, Py_ssize_t n, double work,
                     unsigned long long *token) except -1:
    """Threads for one row of n grid points and `work` points of passes over it:
    by default one below SPLIT_MIN points, else _kernels.choose_threads's rule
    for that work; never more than the row's chunks of blocks.  0 when num_threads is
    not an int >= 1 (the Python layer explains).  A call that may use the
    team is noted (token[0]; team_finished when it is done)."""
    if num_threads is None and n < SPLIT_MIN:
        token[0] = 0
        return 1
    return choose_threads(num_threads, (n + BLOCK * CHUNK - 1) // (BLOCK * CHUNK), POINT_WORK * work,
                          POINT_WORK * SPLIT_MIN, token)


def row_threads(object num_threads, Py_ssize_t n, double work):
    """_row_threads for the Python layer (the call's end stays estimated):
    0 when it must explain num_threads."""
    cdef unsigned long long token
    return _row_threads(num_threads, n, work, &token)


cpdef double fit_passes(bint newton, int iters):
    """The passes over the grid a fit of at most `iters` iterations is counted as."""
    if newton and iters + 1 > NEWTON_PASSES:
        return NEWTON_PASSES
    return iters + 1.0


cdef inline int psums_one(const floating *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                          int nthreads, gk_psums *out) noexcept nogil:
    if floating is double:
        return core_table().gk_psums_f64(p, sp, x, n, nthreads, out)
    else:
        return core_table().gk_psums_f32(p, sp, x, n, nthreads, out)


cdef inline void eval_order(const floating *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                            const gk_psums *ps, double mu, double sigma, int order,
                            int nthreads, double *out) noexcept nogil:
    """out[0:1], out[0:3] or out[0:6]: the value, with the gradient (order 1), and
    with the Hessian's three entries (order 2), from p's sums and one q pass."""
    if floating is double:
        core_table().gk_eval_f64(p, sp, x, n, ps, mu, sigma, order, nthreads, out)
    else:
        core_table().gk_eval_f32(p, sp, x, n, ps, mu, sigma, order, nthreads, out)


cdef inline void fit_one(const floating *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                         const gk_psums *ps, double mu0, double par0, bint newton,
                         bint variance, double lr, double lr_par, int iters, double tol,
                         int nthreads, bint watched,
                         double *hist, double *out, int *counts) noexcept nogil:
    """One row's fit; out gets (mu, sigma, kl, dmu, dsigma, grad_rel), counts (nit, nfev, status).
    watched: the call watches SIGINT (else the fit never stops early)."""
    cdef gk_fit res   # in this frame: private to the calling thread
    cdef int boundary
    cdef const CoreTable *tab = core_table()
    # this module's stop flag (each module has its own, see _interrupt.pxi)
    cdef gk_stop_fn stop = never_stop
    if watched:
        stop = kl_stop_requested
    if newton:
        if floating is double:
            tab.gk_newton_f64(p, sp, x, n, ps, mu0, par0, tol, iters, nthreads, stop, hist,
                              &res)
        else:
            tab.gk_newton_f32(p, sp, x, n, ps, mu0, par0, tol, iters, nthreads, stop, hist,
                              &res)
    else:
        if floating is double:
            tab.gk_gd_f64(p, sp, x, n, ps, mu0, par0, variance, lr, lr_par, iters, tol,
                          nthreads, stop, hist, &res)
        else:
            tab.gk_gd_f32(p, sp, x, n, ps, mu0, par0, variance, lr, lr_par, iters, tol,
                          nthreads, stop, hist, &res)
    if res.status == GK_FIT_CONVERGED or res.status == GK_FIT_RESOLVED:
        boundary = _boundary_status(p, sp, x, n, ps, res.kl)
        if boundary != GK_FIT_CONVERGED:
            res.status = boundary
    out[0] = res.mu
    out[1] = res.sigma
    out[2] = res.kl
    out[3] = res.dmu
    out[4] = res.dsigma
    out[5] = res.grad_rel
    counts[0] = res.nit
    counts[1] = res.nfev
    counts[2] = res.status


cdef inline int _boundary_status(const floating *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                                 const gk_psums *ps, double kl) noexcept nogil:
    """Status of a fit whose gradient test passed: FIT_CONVERGED, unless the KL
    only approaches its infimum at a boundary of the family, where no finite
    (mu, sigma) attains it: FIT_TWO_POINTS (sigma -> 0) or FIT_UNIFORM
    (sigma -> infinity, q uniform on the grid; on a grid of two values q is
    uniform at a finite (mu, sigma) too, and that fit converged)."""
    cdef double limit = ps.H + ps.P * log(<double>n)   # KL against the uniform q
    if kl >= limit - 64.0 * DBL_EPSILON * (fabs(ps.H) + fabs(ps.P * log(<double>n))) \
            and _three_values(x, n):
        return GK_FIT_UNIFORM
    if _on_two_neighbours(p, sp, x, n):
        return GK_FIT_TWO_POINTS
    return GK_FIT_CONVERGED


cdef inline bint _three_values(const double *x, Py_ssize_t n) noexcept nogil:
    """The grid holds at least three distinct values."""
    cdef Py_ssize_t i
    cdef double a = x[0], b = x[0]
    for i in range(n):
        if x[i] != a:
            if b == a:
                b = x[i]
            elif x[i] != b:
                return True
    return False


cdef inline bint _on_two_neighbours(const floating *p, Py_ssize_t sp, const double *x,
                                    Py_ssize_t n) noexcept nogil:
    """p has all its mass on two grid values a < b, no grid value lies strictly
    between them and some lies outside [a, b]: every q of the family keeps mass
    outside, so the KL decreases toward sigma -> 0 (q on {a, b}) and has no
    finite minimiser.  (On a grid of the two values alone, q can equal p.)"""
    cdef Py_ssize_t i
    cdef double a = 0.0, b = 0.0
    cdef int found = 0
    cdef bint outside = False
    for i in range(n):
        if p[i * sp] > 0:
            if found == 0:
                a = x[i]
                found = 1
            elif x[i] != a and found == 1:
                b = x[i]
                found = 2
            elif x[i] != a and x[i] != b:
                return False
    if found < 2:
        return False
    if a > b:
        a, b = b, a
    for i in range(n):
        if a < x[i] < b:
            return False
        outside = outside or x[i] < a or x[i] > b
    return outside


def gaussian_psums_rows(const floating[:, :] p, const double[::1] x, double[:, ::1] out,
                        signed char[::1] status, int n_threads):
    """Per row i of p (m, n): out[i] = (c, P, S1, S2, H, 1, flags); status[i] a P_* code.

    Rows run in parallel; a single row splits its grid over the n_threads
    threads instead (same result for any thread count).

    The pass checks p (negative, NaN, inf) and x (NaN, inf) as it goes; a row
    with a nonzero status has out[i] only partly written.
    """
    cdef Py_ssize_t m = p.shape[0], n = p.shape[1], i
    cdef Py_ssize_t s0 = p.strides[0] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t s1 = p.strides[1] // <Py_ssize_t>sizeof(floating)
    cdef const floating *pp
    if x.shape[0] != n or out.shape[0] != m or out.shape[1] != 7 or status.shape[0] != m:
        raise ValueError("gaussian_psums_rows: shape mismatch between p, x, out and status")
    if m == 0:
        return
    if n == 0:
        out[:, :] = 0.0
        out[:, 5] = 1.0
        out[:, 6] = 1.0
        status[:] = P_ZERO
        return
    pp = &p[0, 0]
    if n_threads <= 1 or m == 1:
        with nogil:
            for i in range(m):
                status[i] = psums_one(pp + i * s0, s1, &x[0], n, n_threads,
                                      <gk_psums *>&out[i, 0])
    else:
        for i in prange(m, nogil=True, schedule="static", num_threads=n_threads):
            status[i] = psums_one(pp + i * s0, s1, &x[0], n, 1, <gk_psums *>&out[i, 0])


def gaussian_eval(const floating[:, :] p, const double[::1] x, const double[:, ::1] psums,
                  const Py_ssize_t[::1] rows, const double[::1] mu, const double[::1] sigma,
                  double[:, ::1] out, int order, int n_threads):
    """For k in range(K): out[k] = the values of KL(p[rows[k]] || q(mu[k], sigma[k])):
    (kl, ...) for order 0, (kl, dmu, dsigma, ...) for order 1 and (kl, dmu, dsigma,
    h_mumu, h_musigma, h_sigmasigma) for order 2; out has shape (K, 3), or (K, 6)
    for order 2 (entries an order does not give are left as they are).

    psums are the rows' p-side sums; rows, mu and sigma must be valid (indices in
    range, sigma > 0, all finite).  Parameter sets run in parallel; a single one
    splits its grid over the n_threads threads (same result for any count).
    """
    cdef Py_ssize_t m = p.shape[0], n = p.shape[1], K = rows.shape[0], k
    cdef Py_ssize_t s0 = p.strides[0] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t s1 = p.strides[1] // <Py_ssize_t>sizeof(floating)
    cdef const floating *pp
    if (x.shape[0] != n or psums.shape[0] != m or psums.shape[1] != 7 or mu.shape[0] != K
            or sigma.shape[0] != K or out.shape[0] != K or not 0 <= order <= 2
            or out.shape[1] != (6 if order == 2 else 3)):
        raise ValueError("gaussian_eval: shape mismatch between the arguments")
    if K == 0:
        return
    if n == 0 or m == 0:
        raise ValueError("gaussian_eval: empty p")
    pp = &p[0, 0]
    cdef bint watched = _watch_interrupts(<double>K * n)
    try:
        if n_threads <= 1 or K == 1:
            with nogil:
                for k in range(K):
                    if stop_requested(watched):
                        break
                    eval_order(pp + rows[k] * s0, s1, &x[0], n,
                               <const gk_psums *>&psums[rows[k], 0], mu[k], sigma[k], order,
                               n_threads, &out[k, 0])
        else:
            for k in prange(K, nogil=True, schedule="static", num_threads=n_threads):
                if not stop_requested(watched):
                    eval_order(pp + rows[k] * s0, s1, &x[0], n,
                               <const gk_psums *>&psums[rows[k], 0], mu[k], sigma[k], order,
                               1, &out[k, 0])
    finally:
        _end_watch(watched)


cdef inline double _step(double lr, const int *shift, Py_ssize_t i) noexcept nogil:
    """A row's gradient step: lr, times 2**-shift[i] where the row is scaled."""
    return lr if shift == NULL else ldexp(lr, -shift[i])


def gaussian_fit_rows(const floating[:, :] p, const double[::1] x, const double[:, ::1] psums,
                      const double[::1] mu0, const double[::1] par0, bint newton,
                      bint variance, double lr, double lr_par, int iters, double tol,
                      double[:, ::1] out, int[:, ::1] counts, double[:, :, ::1] hist,
                      int n_threads, const int[::1] shift=None):
    """Fit every row of p (m, n): Newton (newton=True) or gradient descent.

    mu0, par0: start per row (par0 is sigma, or the variance for gradient
    descent with variance set).  iters: max_iter for Newton, epochs for
    gradient descent, with steps lr for mu and lr_par for sigma (or the
    variance); shift (None or one per row): row i is p times 2**shift[i]
    (whose gradient is 2**shift[i] times p's), and its steps are lr and lr_par
    times 2**-shift[i], so that it descends as p would.
    out[i] = (mu, sigma, kl, dmu, dsigma, grad_rel),
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
    if (x.shape[0] != n or psums.shape[0] != m or psums.shape[1] != 7 or mu0.shape[0] != m
            or par0.shape[0] != m or out.shape[0] != m or out.shape[1] != 6
            or counts.shape[0] != m or counts.shape[1] != 3 or hist.shape[0] != m
            or hist.shape[2] != 3 or (record and hist.shape[1] < need)
            or (shift is not None and shift.shape[0] != m)):
        raise ValueError("gaussian_fit_rows: shape mismatch between the arguments")
    if m == 0:
        return
    if n == 0 or iters < 0:
        raise ValueError("gaussian_fit_rows: empty p or negative iteration count")
    pp = &p[0, 0]
    cdef const int *sh = &shift[0] if shift is not None else NULL
    cdef bint watched = _watch_interrupts(<double>m * n * (iters + 1))
    try:
        if n_threads <= 1 or m == 1:
            with nogil:
                for i in range(m):
                    if stop_requested(watched):
                        break
                    fit_one(pp + i * s0, s1, &x[0], n, <const gk_psums *>&psums[i, 0], mu0[i],
                            par0[i], newton, variance, _step(lr, sh, i), _step(lr_par, sh, i),
                            iters, tol, n_threads, watched,
                            &hist[i, 0, 0] if record else <double *>NULL,
                            &out[i, 0], &counts[i, 0])
        else:
            for i in prange(m, nogil=True, schedule="dynamic", num_threads=n_threads):
                if not stop_requested(watched):
                    fit_one(pp + i * s0, s1, &x[0], n, <const gk_psums *>&psums[i, 0], mu0[i],
                            par0[i], newton, variance, _step(lr, sh, i), _step(lr_par, sh, i),
                            iters, tol, 1, watched,
                            &hist[i, 0, 0] if record else <double *>NULL,
                            &out[i, 0], &counts[i, 0])
    finally:
        _end_watch(watched)


def pack_states(const double[:, :, ::1] hist, const int[:, ::1] counts, double[:, ::1] out):
    """The states gaussian_fit_rows recorded, row after row: row i's first
    counts[i, 0] + 1 entries of hist into out (rows of 3), which must hold
    exactly their total."""
    cdef Py_ssize_t i, k = 0, s, m = hist.shape[0]
    if counts.shape[0] != m or counts.shape[1] != 3 or hist.shape[2] != 3 or out.shape[1] != 3:
        raise ValueError("pack_states: shape mismatch between hist, counts and out")
    for i in range(m):
        s = counts[i, 0] + 1
        if s < 1 or s > hist.shape[1]:
            raise ValueError(f"pack_states: row {i} records {s} states, hist holds {hist.shape[1]}")
        k += s
    if k != out.shape[0]:
        raise ValueError(f"pack_states: out holds {out.shape[0]} states, the rows {k}")
    k = 0
    with nogil:
        for i in range(m):
            s = counts[i, 0] + 1
            memcpy(&out[k, 0], &hist[i, 0, 0], s * 3 * sizeof(double))
            k += s


# ---- one row, scalar parameters: the whole call without the Python layer --------------
# (on one thread: the Python layer takes the general path when threads are asked for)


# p whose sum is below 2**-MASS_SHIFT is summed (and fitted) scaled by 2**MASS_SHIFT:
# its moments would lose precision in the subnormals (gaussian._psums, _fit_prepared)
MASS_SHIFT = 960
cdef double _MASS_MIN = ldexp(1.0, -MASS_SHIFT)


cdef inline bint _is_plain_vector(object a, int typenum):
    """a is a 1-D, C-contiguous, aligned, native-order ndarray of the given type."""
    cdef cnp.ndarray arr
    if type(a) is not cnp.ndarray:
        return False
    arr = <cnp.ndarray>a
    return (cnp.PyArray_NDIM(arr) == 1 and cnp.PyArray_TYPE(arr) == typenum
            and cnp.PyArray_IS_C_CONTIGUOUS(arr) and cnp.PyArray_ISALIGNED(arr)
            and cnp.PyArray_ISNOTSWAPPED(arr))


cdef inline bint _as_double(object v, double *out):
    """v as a double where it is a float or an int within float64's range (the
    Python path explains the others)."""
    if isinstance(v, float):
        out[0] = <double>v
        return True
    if type(v) is int:
        try:
            out[0] = <double>v
        except OverflowError:
            return False
        return True
    return False


cdef int _row_psums(object p, object x, object num_threads, double passes, gk_psums *ps,
                    const void **pdata, int *is_f32, const double **xdata, Py_ssize_t *n,
                    int *nthreads, unsigned long long *token):
    """p-side sums of a plain 1-D p on a plain x, and the threads for the row;
    -1 when they are not plain or invalid, or num_threads needs explaining."""
    cdef int st
    if _is_plain_vector(p, cnp.NPY_DOUBLE):
        is_f32[0] = 0
    elif _is_plain_vector(p, cnp.NPY_FLOAT):
        is_f32[0] = 1
    else:
        return -1
    if not _is_plain_vector(x, cnp.NPY_DOUBLE):
        return -1
    n[0] = cnp.PyArray_DIM(<cnp.ndarray>p, 0)
    if n[0] < 1 or cnp.PyArray_DIM(<cnp.ndarray>x, 0) != n[0]:
        return -1
    nthreads[0] = _row_threads(num_threads, n[0], passes * n[0], token)
    if nthreads[0] == 0:
        return -1
    pdata[0] = cnp.PyArray_DATA(<cnp.ndarray>p)
    xdata[0] = <const double *>cnp.PyArray_DATA(<cnp.ndarray>x)
    with nogil:
        if is_f32[0]:
            st = psums_one(<const float *>pdata[0], 1, xdata[0], n[0], nthreads[0], ps)
        else:
            st = psums_one(<const double *>pdata[0], 1, xdata[0], n[0], nthreads[0], ps)
    if st != P_OK or not _plain_scale(ps):
        team_finished(token[0])
        return -1
    return 0


# The grid's scale (p's mean and standard deviation) within [2**-100, 2**100]:
# beyond, the Python layer rescales x by a power of two (see gaussian._grid_exponent).
cdef double _SCALE_MIN = 2.0 ** -100
cdef double _SCALE_MAX = 2.0 ** 100


cdef inline bint _plain_scale(const gk_psums *ps) noexcept nogil:
    cdef double mp = ps.S1 / ps.P
    cdef double scale = fmax(fabs(ps.c + mp), sqrt(fmax(ps.S2 / ps.P - mp * mp, 0.0)))
    return _SCALE_MIN <= scale <= _SCALE_MAX


# Below this sigma in the grid's units the squares of distances near mu, of the
# order of sigma, may underflow there (a grid spanning many orders of
# magnitude): the Python layer redoes such evaluations in sigma's units
# (kl_fast.gaussian._evaluate_prepared), and the scalar fast paths leave them to it.
cdef double _SIGMA_NARROW = 2.0 ** -450
SIGMA_NARROW = _SIGMA_NARROW


cdef inline bint _sigma_fast(double s) noexcept:
    """sigma is one the scalar fast paths take: finite and not below SIGMA_NARROW."""
    return isfinite(s) and s >= _SIGMA_NARROW


def kl_grad_1d(object p, object x, object mu, object sigma, bint want_grad,
               object num_threads=None):
    """KL (and gradient) of a plain 1-D p (float64 or float32, contiguous) on a
    plain float64 x at scalar mu, sigma, as float64 scalars, on the threads of
    _row_threads.

    Returns None when the inputs are not of that form or not valid, so the
    caller takes the general path (which explains any error).
    """
    cdef gk_psums ps
    cdef const void *pd
    cdef const double *xd
    cdef int is_f32
    cdef Py_ssize_t n
    cdef double m = 0.0, s = 1.0
    cdef double v[3]
    cdef int order = 1 if want_grad else 0
    cdef int nt
    cdef unsigned long long token
    if not (_as_double(mu, &m) and _as_double(sigma, &s)):
        return None
    if not (isfinite(m) and _sigma_fast(s)):
        return None
    if _row_psums(p, x, num_threads, 1.0, &ps, &pd, &is_f32, &xd, &n, &nt, &token) != 0:
        return None
    v[1] = 0.0
    v[2] = 0.0
    with nogil:
        if is_f32:
            eval_order(<const float *>pd, 1, xd, n, &ps, m, s, order, nt, v)
        else:
            eval_order(<const double *>pd, 1, xd, n, &ps, m, s, order, nt, v)
    team_completed(token)
    if not (isfinite(v[0]) and isfinite(v[1]) and isfinite(v[2])):
        return None  # extreme mu or sigma: the Python layer recomputes in sigma's units
    if not want_grad:
        return _np_float64(v[0])
    return _np_float64(v[0]), _np_float64(v[1]), _np_float64(v[2])


cdef inline bint _is_plain_row(object a, int typenum, Py_ssize_t n):
    """a is a (1, n) C-contiguous, aligned, native-order ndarray of the given type."""
    cdef cnp.ndarray arr
    if type(a) is not cnp.ndarray:
        return False
    arr = <cnp.ndarray>a
    return (cnp.PyArray_NDIM(arr) == 2 and cnp.PyArray_TYPE(arr) == typenum
            and cnp.PyArray_DIM(arr, 0) == 1 and cnp.PyArray_DIM(arr, 1) == n
            and cnp.PyArray_IS_C_CONTIGUOUS(arr) and cnp.PyArray_ISALIGNED(arr)
            and cnp.PyArray_ISNOTSWAPPED(arr))


def prepared_1d(object p2, object xk, object psums, object mu, object sigma, int order,
                object num_threads=None):
    """The values of a prepared single row (GaussianTarget's p2 (1, n), its grid xk
    in the grid's own units and psums (1, 7)) at scalar mu, sigma on the threads
    of _row_threads:
    (kl,), (kl, dmu, dsigma) or those and the Hessian's three entries (order 0, 1,
    2), as float64 scalars.  None when the inputs are not of that form or a value
    is not finite, so the caller takes the general path."""
    cdef const void *pd
    cdef const double *xd
    cdef const gk_psums *ps
    cdef Py_ssize_t n
    cdef int is_f32, nt
    cdef unsigned long long token
    cdef double m = 0.0, s = 1.0
    cdef double v[6]
    if not (_as_double(mu, &m) and _as_double(sigma, &s)):
        return None
    if not (isfinite(m) and _sigma_fast(s)):
        return None
    if not _is_plain_vector(xk, cnp.NPY_DOUBLE):
        return None
    n = cnp.PyArray_DIM(<cnp.ndarray>xk, 0)
    if _is_plain_row(p2, cnp.NPY_DOUBLE, n):
        is_f32 = 0
    elif _is_plain_row(p2, cnp.NPY_FLOAT, n):
        is_f32 = 1
    else:
        return None
    if n < 1 or not _is_plain_row(psums, cnp.NPY_DOUBLE, 7):
        return None
    pd = cnp.PyArray_DATA(<cnp.ndarray>p2)
    xd = <const double *>cnp.PyArray_DATA(<cnp.ndarray>xk)
    ps = <const gk_psums *>cnp.PyArray_DATA(<cnp.ndarray>psums)
    if not 0 <= order <= 2:
        raise ValueError(f"prepared_1d: order must be 0, 1 or 2, got {order}")
    nt = _row_threads(num_threads, n, <double>n, &token)
    if nt == 0:
        return None
    with nogil:
        if is_f32:
            eval_order(<const float *>pd, 1, xd, n, ps, m, s, order, nt, v)
        else:
            eval_order(<const double *>pd, 1, xd, n, ps, m, s, order, nt, v)
    team_completed(token)
    cdef int count = 6 if order == 2 else (3 if order == 1 else 1)
    cdef int i
    for i in range(count):
        if not isfinite(v[i]):
            return None
    if count == 1:
        return (_np_float64(v[0]),)
    if count == 3:
        return _np_float64(v[0]), _np_float64(v[1]), _np_float64(v[2])
    return (_np_float64(v[0]), _np_float64(v[1]), _np_float64(v[2]), _np_float64(v[3]),
            _np_float64(v[4]), _np_float64(v[5]))


def fit_1d(object p, object x, bint newton, bint variance, object mu0, object sigma0,
           double lr, int iters, double tol, bint history, object num_threads=None):
    """Fit of a plain 1-D p on a plain x (see kl_grad_1d); mu0, sigma0 None or scalars.

    Returns None (take the general path) or (out, counts, hist): out = (mu,
    sigma, kl, dmu, dsigma, grad_rel), counts = (nit, nfev, status), hist the
    (nit + 1, 3) recorded states or None.
    """
    cdef gk_psums ps
    cdef const void *pd
    cdef const double *xd
    cdef int is_f32, nt
    cdef unsigned long long token
    cdef Py_ssize_t n
    cdef double m0 = 0.0, par0 = 0.0, mean_off, var
    cdef double out[6]
    cdef int counts[3]
    cdef cnp.ndarray hist = None
    cdef double *hp = NULL
    cdef cnp.npy_intp dims[2]
    if iters < 0:
        return None
    if mu0 is not None and not (_as_double(mu0, &m0) and isfinite(m0)):
        return None
    if sigma0 is not None and not (_as_double(sigma0, &par0) and isfinite(par0) and par0 > 0.0):
        return None
    if _row_psums(p, x, num_threads, fit_passes(newton, iters), &ps, &pd, &is_f32, &xd, &n,
                  &nt, &token) != 0:
        return None
    if ps.P < _MASS_MIN:
        # sums of subnormal p lose precision: the Python layer fits p scaled
        team_finished(token)
        return None
    mean_off = ps.S1 / ps.P
    var = ps.S2 / ps.P - mean_off * mean_off
    if var < 0.0:
        var = 0.0
    if mu0 is None:
        m0 = ps.c + mean_off
    if sigma0 is None:
        par0 = var if (variance and not newton) else sqrt(var)
    elif variance and newton:
        par0 = sqrt(par0)
    cdef bint watched = False
    try:
        if history:
            dims[0] = iters + 1
            dims[1] = 3
            hist = cnp.PyArray_EMPTY(2, dims, cnp.NPY_DOUBLE, 0)
            hp = <double *>cnp.PyArray_DATA(hist)
        watched = _watch_interrupts(<double>n * (iters + 1))
        with nogil:
            if is_f32:
                fit_one(<const float *>pd, 1, xd, n, &ps, m0, par0, newton, variance, lr, lr,
                        iters, tol, nt, watched, hp, out, counts)
            else:
                fit_one(<const double *>pd, 1, xd, n, &ps, m0, par0, newton, variance, lr,
                        lr, iters, tol, nt, watched, hp, out, counts)
    finally:
        _end_watch(watched)
        team_finished(token)
    if history:
        hist = hist[:counts[0] + 1]
    return ((out[0], out[1], out[2], out[3], out[4], out[5]), (counts[0], counts[1], counts[2]),
            hist)

