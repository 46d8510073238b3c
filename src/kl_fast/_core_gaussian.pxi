# The Gaussian KL on a grid (included by _core.pxi; the sums, results and
# statuses are declared in _core_gaussian.pxd).
#
# Design: the p-side sums (P, H = sum p log p and p's first two moments) are
# taken once per p (gk_psums_row); every (mu, sigma) then costs one pass over
# the grid (gk_qsums_row) that gives log Z and the moments of q, shifted by
# the grid point xk nearest mu so that nothing overflows.  A pass cuts the
# grid into blocks of GK_BLOCK points; a block of p (float or double, any
# stride) is read as contiguous doubles and reduced in fixed lanes like the
# KL kernels; gk_run_blocks adds the block totals of each chunk of GK_CHUNK
# blocks in block order with Neumaier compensation, then the chunks' sums in
# chunk order, the chunks in parallel when threads are given: the result
# depends only on the data and n, never on the thread count.  On the
# q side the weights w = exp(-a) come from a map loop over the block (klm_exp
# vectorised), or, on a full block of an evenly spaced sorted grid, from
# factorised tables (20 exps per block instead of 256, taken for the blocks
# of a chunk in one loop), each point corrected by its exact exponent.
# The value, gradient and Hessian are combined from
# the two sets of sums; the Newton and gradient-descent fits sit on top and
# poll the caller's stop function between iterations (Ctrl-C).  The q pass is
# specialised for 0, 2 and 4 moments, and the sums they share must round
# alike (the value from gaussian_kl equals the one from gaussian_kl_grad): the
# loops add products with klm_mul_add_f64, explicitly, rather than leave the
# compiler to contract some of them into FMAs in one copy and not another.
# Near the optimum (p itself close to a grid Gaussian) the value from the sums
# is a small difference of large ones; gk_refine then redoes the value and the
# gradient term by term in two more passes (the section "careful value").
from libc.stdlib cimport malloc, free
from libc.string cimport memset
from libc.math cimport sqrt, fmax, fmin, isfinite, frexp, ldexp, nextafter, INFINITY
from libc.float cimport DBL_EPSILON
from cython.parallel cimport prange, parallel, threadid

from kl_fast._core_gaussian cimport (
    gk_psums, gk_qsums, gk_eval, gk_fit, gk_stop_fn, GK_BLOCK, GK_CHUNK, GK_X_SORTED,
    GK_P_NORMALIZED,
    GK_P_OK, GK_P_BAD_P, GK_P_BAD_X, GK_P_ZERO, GK_P_OVERFLOW,
    GK_FIT_CONVERGED, GK_FIT_MAXITER, GK_FIT_NONPOSITIVE, GK_FIT_LINESEARCH,
    GK_FIT_DEGENERATE, GK_FIT_SINGULAR, GK_FIT_NONFINITE, GK_FIT_INTERRUPTED, GK_FIT_TILT,
    GK_FIT_RESOLVED,
)

cdef extern from "kl_math.h" nogil:
    double klm_xlogy_f64(double x, double y)
    double klm_mul_add_f64(double a, double b, double c)

cdef enum:
    GK_GROUPS = 32             # GK_BLOCK // LANES
    GK_MAXQ = 6                # most sums a block gives
    GK_CHUNK_SUMS = 12         # a chunk's sums and their compensations (2 GK_MAXQ)
    GK_STACK_CHUNKS = 64       # chunks' sums kept on the stack before malloc
    GK_STATIC_BLOCKS = 256     # blocks per thread up to which a pass is split statically
    GK_TABLE_MIN_POINTS = 512  # the factorised exp pays off from here
    GK_FACTOR_EXPS = 20        # exps of one block's table factors

# what a pass sums
cdef enum:
    GK_PASS_A = 0   # p side: P, sum p d, H, sum p d^2 (d = x - ctr), falls of x
    GK_PASS_B = 1   # p side again: sum p d, sum p d^2 about p's mean
    GK_PASS_Q = 2   # q side: W, W1 .. W4, Ap
    GK_PASS_N = 3   # careful value: sum w and sum p, each as an exact part and the rest
    GK_PASS_C = 4   # careful value: sum p log(p R / w) as hi + lo, sum e d, sum e d^2

# how a q block's weights are made
cdef enum:
    GK_W_ZERO = 0   # all 0: the whole block beyond exp's range
    GK_W_TABLE = 1  # by the factorised tables
    GK_W_EXP = 2    # point by point

ctypedef struct GkPass:
    const double *x
    Py_ssize_t n
    int kind            # GK_PASS_*
    int nmom            # q pass: moments 0, 2 or 4
    double ctr          # p side: centre of the moments
    double xk, dk, h, mu, dx   # q side (see gk_qsums_row)
    bint sorted
    const double *t2    # exp(-c2[i]) for the block indices, or NULL
    const double *c2    # C i^2 (rounded) for the block indices, with t2
    double mw, mp               # pass N: the shifts of gk_quantum_shift for w and p
    double rh, rl, ch, cl, lr   # pass C: R = rh + rl, C = ch + cl, lr = log rh

ctypedef struct GkFactors:
    # a full block's factors of the tabled weights (gk_chunk_factors)
    double A, B
    double V[LANES]
    double U[GK_GROUPS]
    bint bad            # out of range: the block takes an exp per point


# ---- blocks -------------------------------------------------------------------

cdef inline const double *gk_as_f64(const floating *p, Py_ssize_t sp, Py_ssize_t length,
                                    double *buf) noexcept nogil:
    """p[0:length] (stride sp) as contiguous doubles: p itself when it already
    is, else a copy in buf."""
    cdef Py_ssize_t i
    if floating is double:
        if sp == 1:
            return p
    for i in range(length):
        buf[i] = p[i * sp]
    return buf


ctypedef struct GkPLanes:
    double P[LANES]
    double S1[LANES]
    double S2[LANES]
    double K[LANES]      # sum p k, p = 2^k z
    double L[LANES]      # sum p log z
    double pmin[LANES]   # min p over p != 0 (and 1)


cdef inline void gk_pa_point(GkPLanes *A, Py_ssize_t j, double pv, double xv,
                             double ctr) noexcept nogil:
    """One point into lane j; log p = k ln2 + log z with no check of p: pmin and
    a non-finite H send the block to gk_pa_careful."""
    cdef double kd, pm
    cdef double lz = klm_log_parts_f64(pv, &kd)
    cdef double d = xv - ctr
    cdef double pd = pv * d
    A.K[j] = klm_mul_add_f64(pv, kd, A.K[j])
    A.L[j] = klm_mul_add_f64(pv, lz, A.L[j])
    A.P[j] += pv
    A.S1[j] += pd
    A.S2[j] = klm_mul_add_f64(pd, d, A.S2[j])
    pm = pv if pv != 0.0 else 1.0
    A.pmin[j] = pm if pm < A.pmin[j] else A.pmin[j]


cdef bint gk_pa_sums(const double *p, const double *x, Py_ssize_t length, double ctr,
                     double *tot) noexcept nogil:
    """P, sum p d, H, sum p d^2 (d = x - ctr) of a block into tot[0:4], point i
    in lane i % LANES.  Returns True (tot unspecified) when a p is negative
    or subnormal or H is not finite: gk_pa_careful takes those blocks.  A NaN or
    infinite x makes the moments NaN or inf, as it must."""
    cdef GkPLanes A
    cdef Py_ssize_t g, i, j, full = length - length % LANES
    cdef double h
    for j in range(LANES):
        A.P[j] = 0.0
        A.S1[j] = 0.0
        A.S2[j] = 0.0
        A.K[j] = 0.0
        A.L[j] = 0.0
        A.pmin[j] = 1.0
    for g in range(full // LANES):
        i = g * LANES
        for j in range(LANES):
            gk_pa_point(&A, j, p[i + j], x[i + j], ctr)
    for j in range(length - full):
        gk_pa_point(&A, j, p[full + j], x[full + j], ctr)
    for j in range(LANES):
        if not (A.pmin[j] >= DBL_MIN):
            return True
    for j in range(LANES):
        A.L[j] = klm_join_k_f64(A.K[j], A.L[j])
    h = lane_total(A.L)
    if not (fabs(h) <= DBL_MAX):
        return True
    tot[0] = lane_total(A.P)
    tot[1] = lane_total(A.S1)
    tot[2] = h
    tot[3] = lane_total(A.S2)
    return False


cdef void gk_pa_careful(const double *p, const double *x, Py_ssize_t length, double ctr,
                        double *tot) noexcept nogil:
    """gk_pa_sums for the blocks it cannot take (subnormal p, or a negative, NaN
    or infinite one, whose p log p term klm_xlogy makes NaN or inf), point i in
    lane i % LANES."""
    cdef double P[LANES]
    cdef double S1[LANES]
    cdef double S2[LANES]
    cdef double H[LANES]
    cdef double pv, d
    cdef Py_ssize_t i, j
    for j in range(LANES):
        P[j] = 0.0
        S1[j] = 0.0
        S2[j] = 0.0
        H[j] = 0.0
    for i in range(length):
        j = i % LANES
        pv = p[i]
        d = x[i] - ctr
        P[j] += pv
        S1[j] += pv * d
        S2[j] += (pv * d) * d
        H[j] += klm_xlogy_f64(pv, pv)
    tot[0] = lane_total(P)
    tot[1] = lane_total(S1)
    tot[2] = lane_total(H)
    tot[3] = lane_total(S2)


cdef inline double gk_count_down(const double *x, Py_ssize_t length) noexcept nogil:
    """How many i in [1, length) have x[i] < x[i-1]."""
    cdef long long c = 0
    cdef Py_ssize_t i
    for i in range(1, length):
        c += x[i] < x[i - 1]
    return <double>c


cdef void gk_pa_block(const double *p, const double *x, Py_ssize_t start, Py_ssize_t length,
                      double ctr, double *tot) noexcept nogil:
    """Pass A of one block; tot[4] counts the falls of x, the pair across the
    block's start included."""
    if gk_pa_sums(p, x + start, length, ctr, tot):
        gk_pa_careful(p, x + start, length, ctr, tot)
    if start > 0:
        tot[4] = gk_count_down(x + start - 1, length + 1)
    else:
        tot[4] = gk_count_down(x, length)
    tot[5] = 0.0


cdef void gk_pb_block(const double *p, const double *x, Py_ssize_t length, double ctr,
                      double *tot) noexcept nogil:
    """Pass B of one block: sum p d, sum p d^2 (d = x - ctr) into tot[0:2]."""
    cdef double a[LANES]
    cdef double b[LANES]
    cdef double d, pd
    cdef Py_ssize_t g, i, j, full = length - length % LANES
    for j in range(LANES):
        a[j] = 0.0
        b[j] = 0.0
    for g in range(full // LANES):
        i = g * LANES
        for j in range(LANES):
            d = x[i + j] - ctr
            pd = p[i + j] * d
            a[j] += pd
            b[j] += pd * d
    for j in range(length - full):
        d = x[full + j] - ctr
        pd = p[full + j] * d
        a[j] += pd
        b[j] += pd * d
    tot[0] = lane_total(a)
    tot[1] = lane_total(b)


# ---- q side ---------------------------------------------------------------------

ctypedef struct GkQLanes:
    double a0[LANES]    # sum w
    double a1[LANES]    # sum w e, e = x - xk
    double a2[LANES]    # sum w e^2
    double a3[LANES]
    double a4[LANES]
    double ap[LANES]    # sum p max(r, 0), r = e (e / 2 + dk)
    double dsq[LANES]   # table path: sum of the exponent corrections' magnitudes


cdef inline void gk_q_zero(GkQLanes *Q) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(LANES):
        Q.a0[j] = 0.0
        Q.a1[j] = 0.0
        Q.a2[j] = 0.0
        Q.a3[j] = 0.0
        Q.a4[j] = 0.0
        Q.ap[j] = 0.0
        Q.dsq[j] = 0.0


cdef inline void gk_q_add(GkQLanes *Q, Py_ssize_t j, double pv, double e, double rp, double wv,
                          int nmom, bint masked) noexcept nogil:
    """One point into lane j: W += w, Wk += w e^k (k <= nmom), Ap += p rp (masked:
    p == 0 adds 0 even where rp overflowed).  The products are added with
    klm_mul_add_f64, never left to the compiler to contract: every
    specialisation of a loop rounds its sums alike."""
    cdef double we, we2
    if masked:
        rp = rp if pv > 0.0 else 0.0
    Q.ap[j] = klm_mul_add_f64(pv, rp, Q.ap[j])
    Q.a0[j] += wv
    if nmom >= 2:
        we = wv * e
        Q.a1[j] += we
        Q.a2[j] = klm_mul_add_f64(we, e, Q.a2[j])
        if nmom >= 4:
            we2 = we * e
            Q.a3[j] = klm_mul_add_f64(we2, e, Q.a3[j])
            Q.a4[j] = klm_mul_add_f64(we2 * e, e, Q.a4[j])


cdef inline void gk_q_totals(const GkQLanes *Q, double *tot) noexcept nogil:
    tot[0] = lane_total(Q.a0)
    tot[1] = lane_total(Q.a1)
    tot[2] = lane_total(Q.a2)
    tot[3] = lane_total(Q.a3)
    tot[4] = lane_total(Q.a4)
    tot[5] = lane_total(Q.ap)


cdef inline double gk_half_exponent(double xv, double xk, double dk) noexcept nogil:
    """r = e (e / 2 + dk), e = x - xk: half the exponent's numerator
    ((x - mu)^2 - dk^2) / 2, in a form that stays finite where e + 2 dk would
    overflow."""
    cdef double e = xv - xk
    return e * klm_mul_add_f64(0.5, e, dk)


cdef void gk_wmap(const double *x, Py_ssize_t length, double xk, double dk, double h,
                  double *w) noexcept nogil:
    """w_i = exp(-a_i), a_i = 2 r_i h >= 0 (h = 1 / (2 sigma^2) may be inf or 0:
    the select keeps a = 0 where r <= 0 and never uses 0 * inf)."""
    cdef Py_ssize_t i
    cdef double r, a
    for i in range(length):
        r = gk_half_exponent(x[i], xk, dk)
        a = -(2.0 * (r * h))
        w[i] = klm_exp_f64(a if r > 0.0 else 0.0)


cdef inline void gk_q_sums(const double *p, const double *x, const double *w, Py_ssize_t length,
                           double xk, double dk, int nmom, double *tot) noexcept nogil:
    """The q sums of a block from its weights w, point i in lane i % LANES."""
    cdef GkQLanes Q
    cdef Py_ssize_t g, i, j, full = length - length % LANES
    cdef double e, r, rp
    gk_q_zero(&Q)
    for g in range(full // LANES):
        i = g * LANES
        for j in range(LANES):
            e = x[i + j] - xk
            r = e * klm_mul_add_f64(0.5, e, dk)
            rp = r if r > 0.0 else 0.0
            gk_q_add(&Q, j, p[i + j], e, rp, w[i + j], nmom, True)
    for j in range(length - full):
        e = x[full + j] - xk
        r = e * klm_mul_add_f64(0.5, e, dk)
        rp = r if r > 0.0 else 0.0
        gk_q_add(&Q, j, p[full + j], e, rp, w[full + j], nmom, True)
    gk_q_totals(&Q, tot)


cdef bint gk_factor_args(const double *x, const GkPass *cx, GkFactors *f,
                        double *arg) noexcept nogil:
    """The factors of w on a full block of an evenly spaced grid (spacing dx)
    without an exp per point.  With i the index in the block, the exponent on
    the ideal grid x_0 + i dx is a^_i = A + B i + C i^2, and with i = j + 8 t
        exp(-a^_i) = exp(-(A + B j)) exp(-8 B t) exp(-C i^2),
    the last factor from the pass's table t2 (C = h dx^2).  This sets A, B and the
    GK_FACTOR_EXPS arguments whose exps give V[j] and U[t] (gk_factor_products;
    the middle factor as a product of two); returns True (the arguments 0) when
    the exponents are too spread for the factors to stay in range."""
    cdef double r0 = gk_half_exponent(x[0], cx.xk, cx.dk)
    cdef double A = 2.0 * (r0 * cx.h) if r0 > 0.0 else 0.0
    cdef double B = 2.0 * cx.h * cx.dx * (x[0] - cx.mu), C = cx.h * cx.dx * cx.dx
    cdef int j, k, m
    f.A = A
    f.B = B
    if not (klm_mul_add_f64(65025.0, C, klm_mul_add_f64(255.0, fabs(B), A)) <= 700.0):
        memset(arg, 0, GK_FACTOR_EXPS * sizeof(double))
        return True
    # exp(-8 B t) = exp(-8 B (t % 4)) exp(-32 B (t / 4)): 20 exps, not 40
    for j in range(8):
        arg[j] = -klm_mul_add_f64(B, <double>j, A)
    for k in range(4):
        arg[8 + k] = -(8.0 * B) * k
    for m in range(8):
        arg[12 + m] = -(32.0 * B) * m
    return False


cdef inline void gk_factor_products(const double *ex, GkFactors *f) noexcept nogil:
    """V and U of a block from the exps of its gk_factor_args arguments."""
    cdef int j, k, m
    for j in range(8):
        f.V[j] = ex[j]
    for m in range(8):
        for k in range(4):
            f.U[4 * m + k] = ex[8 + k] * ex[12 + m]


cdef void gk_chunk_factors(const GkPass *cx, Py_ssize_t first, int count,
                           GkFactors *F) noexcept nogil:
    """The table factors of the count full blocks from block first on, their exps
    in one loop: independent of each other, they overlap where one block's
    alone would wait on each step (the whole block's time, measured)."""
    cdef double arg[GK_CHUNK * GK_FACTOR_EXPS]
    cdef double ex[GK_CHUNK * GK_FACTOR_EXPS]
    cdef int k, j
    for k in range(count):
        F[k].bad = gk_factor_args(cx.x + (first + k) * GK_BLOCK, cx, &F[k],
                                  arg + k * GK_FACTOR_EXPS)
    for j in range(count * GK_FACTOR_EXPS):
        ex[j] = klm_exp_f64(arg[j])
    for k in range(count):
        gk_factor_products(ex + k * GK_FACTOR_EXPS, &F[k])


# the indices of a block's points, as doubles (read by the tabled q pass)
cdef double GK_INDEX[GK_BLOCK]
for _i in range(GK_BLOCK):
    GK_INDEX[_i] = _i


cdef void gk_t2_table(double C, double *c2, double *t2) noexcept nogil:
    """c2[i] = C i^2 and t2[i] = exp(-c2[i]) for the GK_BLOCK indices of a block."""
    cdef int i
    cdef double di
    for i in range(GK_BLOCK):
        di = <double>i
        c2[i] = (C * di) * di
        t2[i] = klm_exp_f64(-c2[i])


cdef inline bint gk_qt_sums(const double *p, const double *x, const GkPass *cx,
                            const GkFactors *f, int nmom, double *tot) noexcept nogil:
    """The q sums of a full block of an evenly spaced grid, w from the table
    factors f (gk_chunk_factors) corrected by each point's exact exponent a_i:
    exp(-(a_i - a^_i)) = 1 - (a_i - a^_i) to within rounding while the
    corrections' magnitudes add up to at most 1e-8 (each d^2 / 2 <= 5e-17);
    returns True (tot unspecified) when they do not, or the factors are out of
    range.  Their sum, not their squares', keeps the check off the multipliers,
    which the pass keeps busy (one-thread CPU time 4-5% less)."""
    cdef GkQLanes Q
    cdef const double *t2 = cx.t2
    cdef const double *c2 = cx.c2
    cdef double xk = cx.xk, dk = cx.dk
    cdef double h2 = 2.0 * cx.h   # a_i = 2 r_i h: (2 r) h and r (2 h) are the same product
    cdef double A = f.A, B = f.B
    cdef double u, e, r, d, tv
    cdef Py_ssize_t t, i, j
    if f.bad:
        return True
    gk_q_zero(&Q)
    for t in range(GK_GROUPS):
        u = f.U[t]
        i = t * LANES
        for j in range(LANES):
            e = x[i + j] - xk
            # r >= 0 but for rounding (xk is the point nearest mu), and here bounded
            # (the factors' range check): unlike the point-by-point weights, r is
            # not clamped at 0, which cost two operations a point
            r = e * klm_mul_add_f64(0.5, e, dk)
            # d = a_i - a^_i, the point's exponent less the ideal one A + B i + C i^2
            # (the index i and C i^2 read from tables: two operations fewer a point)
            d = klm_mul_add_f64(r, h2, -(klm_mul_add_f64(GK_INDEX[i + j], B, A) + c2[i + j]))
            Q.dsq[j] += fabs(d)
            tv = (f.V[j] * u) * t2[i + j]
            tv = klm_mul_add_f64(-tv, d, tv)
            gk_q_add(&Q, j, p[i + j], e, r, tv, nmom, False)
    if not (lane_total(Q.dsq) <= 1e-8):   # NaN too
        return True
    gk_q_totals(&Q, tot)
    return False


cdef inline int gk_wkind(const GkPass *cx, const double *x, Py_ssize_t length) noexcept nogil:
    """How a block's weights are made (GK_W_*): all 0 when, on a sorted grid,
    the block's point nearest mu is beyond exp's range; by the tables on a full
    block whose middle and last points sit on the pass's even spacing."""
    cdef double xn, r, tol
    if cx.sorted:
        if x[0] < cx.mu:
            xn = x[length - 1] if x[length - 1] < cx.mu else cx.mu
        else:
            xn = x[0]
        r = gk_half_exponent(xn, cx.xk, cx.dk)
        if r > 0.0 and 2.0 * (r * cx.h) > 746.0:
            return GK_W_ZERO
    if cx.t2 != NULL and length == GK_BLOCK:
        tol = 1e-3 * cx.dx
        if (fabs(x[GK_BLOCK // 2] - (x[0] + (GK_BLOCK // 2) * cx.dx)) <= tol
                and fabs(x[GK_BLOCK - 1] - (x[0] + (GK_BLOCK - 1) * cx.dx)) <= tol):
            return GK_W_TABLE
    return GK_W_EXP


cdef bint gk_qt_block(const double *p, const double *x, const GkPass *cx,
                      const GkFactors *f, double *tot) noexcept nogil:
    if cx.nmom == 4:
        return gk_qt_sums(p, x, cx, f, 4, tot)
    if cx.nmom == 2:
        return gk_qt_sums(p, x, cx, f, 2, tot)
    return gk_qt_sums(p, x, cx, f, 0, tot)


cdef void gk_q_block(const double *p, const double *x, Py_ssize_t length, const GkPass *cx,
                     const GkFactors *f, double *tot) noexcept nogil:
    """The q sums of one block into tot[0:6] (f: its table factors, or NULL)."""
    cdef double w[GK_BLOCK]
    cdef int kind = gk_wkind(cx, x, length)
    if kind == GK_W_TABLE and f != NULL and not gk_qt_block(p, x, cx, f, tot):
        return
    if kind == GK_W_ZERO:
        memset(w, 0, sizeof(w))
    else:
        gk_wmap(x, length, cx.xk, cx.dk, cx.h, w)
    if cx.nmom == 4:
        gk_q_sums(p, x, w, length, cx.xk, cx.dk, 4, tot)
    elif cx.nmom == 2:
        gk_q_sums(p, x, w, length, cx.xk, cx.dk, 2, tot)
    else:
        gk_q_sums(p, x, w, length, cx.xk, cx.dk, 0, tot)


# ---- careful value: term by term where the sums cancel -----------------------------
#
# Near the optimum KL = H + quad + P log W is a small difference of large sums,
# and their rounding (about eps (|H| + quad + P |log W|)) swamps it.  There the
# value is redone as sum p log(p R / w), R = W (or W / sum p for normalised p),
# with w the weights of gk_wmap and W their sum, each term's ratio r = p R / w
# close to 1: log r + (p R - r w) / (p R), the residual exact (Dekker or FMA).
# The rounding of each w then moves the term and W alike and cancels to first
# order (the error is sum (P q - p) eta for relative errors eta of w), so W and
# sum p must be exact to well below eps: pass N sums their parts on a grid of
# multiples of about eps times the sum (exactly, in any order) and the small
# rest apart.  The terms of pass C are added with TwoSum in the lanes.  The
# gradient's sums P E_q[f] - sum p f are redone as sum (C w - p) f, C = sum p /
# W; there the rounding of w stays at first order (about that of q in NumPy).

cdef inline void gk_two_sum(double *s, double *c, double v) noexcept nogil:
    """v into s, its rounding error into c (Knuth's TwoSum: no branch, no order)."""
    cdef double t = s[0] + v
    cdef double bv = t - s[0]
    c[0] += (s[0] - (t - bv)) + (v - bv)
    s[0] = t


cdef inline void gk_dd_total(const double *s, const double *c, double *tot) noexcept nogil:
    """The lanes (s, c) as hi + lo into tot[0:2]."""
    cdef double hi = 0.0, lo = 0.0
    cdef Py_ssize_t j
    for j in range(LANES):
        gk_two_sum(&hi, &lo, s[j])
        lo += c[j]
    tot[0] = hi
    tot[1] = lo


cdef inline double gk_quantum_shift(double bound) noexcept nogil:
    """m = 1.5 2^k with 2^k >= 2 bound: for 0 <= v <= bound, (v + m) - m is v
    rounded to a multiple of ulp(m), and sums of such parts below 2 bound are exact."""
    cdef int e
    frexp(bound, &e)
    return ldexp(1.5, e + 1)


ctypedef struct GkNLanes:
    double wh[LANES]    # sum of w rounded to multiples of ulp(mw): exact
    double wl[LANES]    # sum of what that rounding left
    double ph[LANES]
    double pl[LANES]


cdef inline void gk_n_point(GkNLanes *A, Py_ssize_t j, double pv, double wv, double mw,
                            double mp) noexcept nogil:
    cdef double wh = (wv + mw) - mw
    cdef double ph = (pv + mp) - mp
    A.wh[j] += wh
    A.wl[j] += wv - wh
    A.ph[j] += ph
    A.pl[j] += pv - ph


cdef void gk_n_block(const double *p, const double *x, Py_ssize_t length, const GkPass *cx,
                     double *tot) noexcept nogil:
    """Pass N of one block: sum w and sum p, each as an exact high part and the
    rest, into tot[0:4]."""
    cdef double w[GK_BLOCK]
    cdef GkNLanes A
    cdef double mw = cx.mw, mp = cx.mp
    cdef Py_ssize_t g, i, j, full = length - length % LANES
    gk_wmap(x, length, cx.xk, cx.dk, cx.h, w)
    for j in range(LANES):
        A.wh[j] = 0.0
        A.wl[j] = 0.0
        A.ph[j] = 0.0
        A.pl[j] = 0.0
    for g in range(full // LANES):
        i = g * LANES
        for j in range(LANES):
            gk_n_point(&A, j, p[i + j], w[i + j], mw, mp)
    for j in range(length - full):
        gk_n_point(&A, j, p[full + j], w[full + j], mw, mp)
    tot[0] = lane_total(A.wh)
    tot[1] = lane_total(A.wl)
    tot[2] = lane_total(A.ph)
    tot[3] = lane_total(A.pl)


cdef inline double gk_log_ratio(double pv, double wv, double a, double rh, double rl,
                                double lr) noexcept nogil:
    """log(p R / w) for p > 0, R = rh + rl, from the rounded r = (p rh) / w and
    the exact residual p R - r w; where w, p rh or r is not normal (w
    underflowed, p subnormal) from its parts log p + a + lr (a = -log w without
    w's rounding, lr = log R: such a point's w is below 2^-1022 of W >= 1).
    Branch-free, one log (of r or of p)."""
    cdef double u = pv * rh
    cdef double r = u / wv
    cdef double res = (klm_residual_f64(u, r, wv) - klm_residual_f64(u, pv, rh)) + pv * rl
    # v: the least of w, u and r where u and r are finite, else 0
    cdef double v = wv if wv < u else u
    v = v if v < r else r
    v = v if (u if u > r else r) <= DBL_MAX else 0.0
    cdef double lg = klm_log_f64(r if v >= DBL_MIN else pv)
    return lg + res / u if v >= DBL_MIN else (lg + a) + lr


cdef void gk_tmap(const double *p, const double *x, const double *w, Py_ssize_t length,
                  const GkPass *cx, double *t) noexcept nogil:
    """t_i = p_i log(p_i R / w_i), 0 where p_i == 0 (a map loop: vectorised)."""
    cdef double xk = cx.xk, dk = cx.dk, h = cx.h, rh = cx.rh, rl = cx.rl, lr = cx.lr
    cdef double r, a, pv
    cdef Py_ssize_t i
    for i in range(length):
        pv = p[i]
        r = gk_half_exponent(x[i], xk, dk)
        a = 2.0 * (r * h) if r > 0.0 else 0.0
        r = pv * gk_log_ratio(pv, w[i], a, rh, rl, lr)
        t[i] = r if pv > 0.0 else 0.0


ctypedef struct GkCLanes:
    double s[LANES]     # sum p log(p R / w)
    double c[LANES]     # TwoSum errors of s
    double g1[LANES]    # sum (C w - p) d
    double g2[LANES]    # sum (C w - p) d^2


cdef inline void gk_c_point(GkCLanes *A, Py_ssize_t j, double pv, double xv, double wv,
                            double tv, double mu, double ch, double cl) noexcept nogil:
    """Term tv and point (p, x, w) into lane j; C w - p keeps the product's rounding."""
    cdef double cw = wv * ch
    cdef double d = xv - mu
    cdef double ed = (((cw - pv) - klm_residual_f64(cw, wv, ch)) + wv * cl) * d
    gk_two_sum(&A.s[j], &A.c[j], tv)
    A.g1[j] += ed
    A.g2[j] = klm_mul_add_f64(ed, d, A.g2[j])


cdef void gk_c_block(const double *p, const double *x, Py_ssize_t length, const GkPass *cx,
                     double *tot) noexcept nogil:
    """Pass C of one block: sum p log(p R / w) as hi + lo into tot[0:2], and
    sum (C w - p) d, sum (C w - p) d^2 (d = x - mu) into tot[2:4]."""
    cdef double w[GK_BLOCK]
    cdef double t[GK_BLOCK]
    cdef GkCLanes A
    cdef double mu = cx.mu, ch = cx.ch, cl = cx.cl
    cdef Py_ssize_t g, i, j, full = length - length % LANES
    gk_wmap(x, length, cx.xk, cx.dk, cx.h, w)
    gk_tmap(p, x, w, length, cx, t)
    for j in range(LANES):
        A.s[j] = 0.0
        A.c[j] = 0.0
        A.g1[j] = 0.0
        A.g2[j] = 0.0
    for g in range(full // LANES):
        i = g * LANES
        for j in range(LANES):
            gk_c_point(&A, j, p[i + j], x[i + j], w[i + j], t[i + j], mu, ch, cl)
    for j in range(length - full):
        gk_c_point(&A, j, p[full + j], x[full + j], w[full + j], t[full + j], mu, ch, cl)
    gk_dd_total(A.s, A.c, tot)
    tot[2] = lane_total(A.g1)
    tot[3] = lane_total(A.g2)


# ---- passes -----------------------------------------------------------------------

cdef void gk_block(const floating *p, Py_ssize_t sp, const GkPass *cx, Py_ssize_t blk,
                   const GkFactors *f, double *tot) noexcept nogil:
    """The sums of block blk of a pass into tot[0:GK_MAXQ] (f: a q block's table
    factors, or NULL)."""
    cdef double buf[GK_BLOCK]
    cdef Py_ssize_t start = blk * GK_BLOCK
    cdef Py_ssize_t length = min(cx.n - start, <Py_ssize_t>GK_BLOCK)
    cdef const double *pd = gk_as_f64(p + start * sp, sp, length, buf)
    if cx.kind == GK_PASS_A:
        gk_pa_block(pd, cx.x, start, length, cx.ctr, tot)
    elif cx.kind == GK_PASS_B:
        gk_pb_block(pd, cx.x + start, length, cx.ctr, tot)
    elif cx.kind == GK_PASS_Q:
        gk_q_block(pd, cx.x + start, length, cx, f, tot)
    elif cx.kind == GK_PASS_N:
        gk_n_block(pd, cx.x + start, length, cx, tot)
    else:
        gk_c_block(pd, cx.x + start, length, cx, tot)


cdef void gk_chunk(const floating *p, Py_ssize_t sp, const GkPass *cx, Py_ssize_t chunk,
                   int nq, double *acc) noexcept nogil:
    """The nq sums of the GK_CHUNK blocks of chunk (fewer at the end of the
    grid), the block totals added in block order with Neumaier compensation:
    the sums into acc[0:nq], their compensations into acc[GK_MAXQ:GK_MAXQ + nq].
    On a tabled q pass the table factors of its full blocks are taken first."""
    cdef GkFactors F[GK_CHUNK]
    cdef double tot[GK_MAXQ]
    cdef Py_ssize_t first = chunk * GK_CHUNK, nb = (cx.n + GK_BLOCK - 1) // GK_BLOCK
    cdef int count = <int>min(nb - first, <Py_ssize_t>GK_CHUNK)
    cdef int full = <int>min(cx.n // GK_BLOCK - first, <Py_ssize_t>count)
    cdef int b, k
    cdef bint tabled = cx.kind == GK_PASS_Q and cx.t2 != NULL
    if tabled and full > 0:
        gk_chunk_factors(cx, first, full, F)
    for k in range(nq):
        acc[k] = 0.0
        acc[GK_MAXQ + k] = 0.0
    for b in range(count):
        gk_block(p, sp, cx, first + b, &F[b] if tabled and b < full else NULL, tot)
        for k in range(nq):
            neumaier(&acc[k], &acc[GK_MAXQ + k], tot[k])


cdef void gk_static_share(const floating *p, Py_ssize_t sp, const GkPass *cx, Py_ssize_t nc,
                          int nq, int tid, int team, double *acc) noexcept nogil:
    """Thread tid's share of the nc chunks of a pass (static_share), each
    chunk's sums into acc (gk_chunk).  GaussianTarget.kl_grad on the tutorial
    grid, two threads: 9.75 us with a prange, 9.35 us so (medians of six runs)."""
    cdef Py_ssize_t lo, hi, c
    static_share(nc, tid, team, &lo, &hi)
    for c in range(lo, hi):
        gk_chunk(p, sp, cx, c, nq, acc + c * GK_CHUNK_SUMS)


cdef inline void gk_add_chunk(const double *acc, int nq, double *s, double *carry) noexcept nogil:
    """A chunk's sums (gk_chunk) into the pass's: each sum added with Neumaier
    compensation, its compensation added to the pass's."""
    cdef int k
    for k in range(nq):
        neumaier(&s[k], &carry[k], acc[k])
        carry[k] += acc[GK_MAXQ + k]


cdef void gk_run_blocks(const floating *p, Py_ssize_t sp, const GkPass *cx, int nq,
                        int nthreads, double *sums) noexcept nogil:
    """The blocks of a pass into sums[0:nq]: each chunk of GK_CHUNK blocks adds
    its block totals with Neumaier compensation (gk_chunk), and the chunks'
    sums are added in chunk order (gk_add_chunk).  With nthreads > 1 the chunks
    are computed in parallel into a buffer first; the additions are the same,
    so the result does not depend on nthreads, and the serial part is one
    addition per chunk, not per block."""
    cdef Py_ssize_t nb = (cx.n + GK_BLOCK - 1) // GK_BLOCK
    cdef Py_ssize_t nc = (nb + GK_CHUNK - 1) // GK_CHUNK, c
    cdef double local[GK_STACK_CHUNKS * GK_CHUNK_SUMS]
    cdef double *acc = local
    cdef double s[GK_MAXQ]
    cdef double carry[GK_MAXQ]   # the Neumaier compensations of s
    cdef int k
    if nb == 1:
        # Neumaier from (0, 0) gives x + 0.0: the same bits without the bookkeeping
        gk_block(p, sp, cx, 0, NULL, local)
        for k in range(nq):
            sums[k] = local[k] + 0.0
        return
    for k in range(nq):
        s[k] = 0.0
        carry[k] = 0.0
    if nthreads > 1 and nc > GK_STACK_CHUNKS:
        acc = <double *>malloc(nc * GK_CHUNK_SUMS * sizeof(double))
    if nthreads > 1 and nc > 1 and acc != NULL:
        if nb <= GK_STATIC_BLOCKS * nthreads:
            # static: each thread reads the same part of the grid in every call,
            # which stays in its core's cache (a dynamic split moved it from core
            # to core: GaussianTarget.kl_grad on 20,000 points took 12.5 us
            # against 10.5 where the cores did not share a cache; docs/core.md)
            with parallel(num_threads=nthreads):
                gk_static_share(p, sp, cx, nc, nq, threadid(), kl_team_size(), acc)
        else:
            # dynamic: a thread that is descheduled (a busy core) holds back few blocks
            for c in prange(nc, schedule="dynamic", num_threads=nthreads):
                gk_chunk(p, sp, cx, c, nq, acc + c * GK_CHUNK_SUMS)
        for c in range(nc):
            gk_add_chunk(acc + c * GK_CHUNK_SUMS, nq, s, carry)
        if acc != local:
            free(acc)
    else:
        # one thread (or no memory for the chunks' sums): chunk after chunk
        for c in range(nc):
            gk_chunk(p, sp, cx, c, nq, local)
            gk_add_chunk(local, nq, s, carry)
    for k in range(nq):
        sums[k] = s[k] + carry[k]


cdef int gk_psums_row(const floating *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                      int nthreads, gk_psums *out) noexcept nogil:
    """p-side sums: P, H and p's first two moments about its mean c, with the
    check fused in (a negative, NaN or infinite p makes its p log p term NaN or
    inf, a NaN or infinite x its moments; only then is it looked for).  The
    moments come from pass A, about the grid's middle point, recentred on c;
    when c is far from that point in units of p's spread (where recentring
    would cost digits) pass B takes them again about c.  Returns a GK_P_* code."""
    cdef GkPass cx
    cdef double s[GK_MAXQ]
    cdef double mean, var, v, e = 0.0
    cdef Py_ssize_t i
    cx.x = x
    cx.n = n
    cx.kind = GK_PASS_A
    cx.ctr = x[n // 2] if n > 0 else 0.0
    out.c = cx.ctr
    out.P = 0.0
    out.S1 = 0.0
    out.S2 = 0.0
    out.H = 0.0
    out.scale = 1.0
    gk_run_blocks(p, sp, &cx, 6, nthreads, s)
    out.flags = 0.0 if s[4] != 0.0 else GK_X_SORTED
    if not (fabs(s[0]) <= DBL_MAX and fabs(s[1]) <= DBL_MAX and fabs(s[2]) <= DBL_MAX
            and fabs(s[3]) <= DBL_MAX):
        for i in range(n):
            if not (fabs(x[i]) <= DBL_MAX):
                return GK_P_BAD_X
        for i in range(n):
            v = p[i * sp]
            if not (0.0 <= v <= DBL_MAX):
                return GK_P_BAD_P
        return GK_P_OVERFLOW
    out.P = s[0]
    out.H = s[2]
    if not (s[0] > 0.0):
        return GK_P_ZERO
    mean = s[1] / s[0]
    var = s[3] / s[0] - mean * mean
    gk_two_sum(&cx.ctr, &e, mean)       # c + e = the old centre + mean, exactly
    out.c = cx.ctr
    if mean * mean <= 64.0 * var:
        # the moments about c, which is p's mean but for the rounding of the
        # division and of c itself (dropped, they cost the gradient P ulp(c) /
        # sigma^2 on a grid far from 0)
        out.S1 = klm_residual_f64(s[1], mean, s[0]) + s[0] * e
        out.S2 = (s[3] - s[1] * mean) + s[0] * (e * e)
    else:
        cx.kind = GK_PASS_B
        gk_run_blocks(p, sp, &cx, 2, nthreads, s)
        out.S1 = s[0]
        out.S2 = s[1]
    if not (out.S2 <= DBL_MAX):
        return GK_P_OVERFLOW
    return GK_P_OK


cdef double gk_nearest_sorted(const double *x, Py_ssize_t n, double mu) noexcept nogil:
    """The point of a non-decreasing grid nearest mu, by bisection (ties to the
    larger; a mu beyond an end gives that end)."""
    cdef Py_ssize_t lo = 0, hi = n - 1, mid
    if not (mu > x[0]):
        return x[0]
    if not (mu < x[n - 1]):
        return x[n - 1]
    while hi - lo > 1:     # x[lo] < mu <= x[hi]
        mid = lo + (hi - lo) // 2
        if x[mid] < mu:
            lo = mid
        else:
            hi = mid
    return x[lo] if mu - x[lo] < x[hi] - mu else x[hi]


cdef inline bint gk_closer(double xv, double ad, double bd, double bx, double mu) noexcept nogil:
    """xv, at distance ad from mu, beats bx at distance bd: nearer, or as near
    and toward mu."""
    return (ad < bd) | ((ad == bd) & ((xv - bx) * (mu - bx) > 0.0))


cdef double gk_nearest(const double *x, Py_ssize_t n, double mu) noexcept nogil:
    """The grid point nearest mu: smallest |x - mu|, and among equal distances
    the one toward mu (so with |mu| so large that every |x - mu| rounds alike,
    the grid end facing mu).  Its Gaussian exponent is the largest: the shift
    of the log-sum-exp."""
    cdef double bd[LANES]
    cdef double bx[LANES]
    cdef double xv, ad, best, bestx
    cdef bint lt
    cdef Py_ssize_t g, i, j, full = n - n % LANES
    for j in range(LANES):
        bd[j] = HUGE_VAL
        bx[j] = x[0]
    for g in range(full // LANES):
        i = g * LANES
        for j in range(LANES):
            xv = x[i + j]
            ad = fabs(xv - mu)
            lt = gk_closer(xv, ad, bd[j], bx[j], mu)
            bd[j] = ad if lt else bd[j]
            bx[j] = xv if lt else bx[j]
    for j in range(n - full):
        xv = x[full + j]
        ad = fabs(xv - mu)
        if gk_closer(xv, ad, bd[j], bx[j], mu):
            bd[j] = ad
            bx[j] = xv
    best = bd[0]
    bestx = bx[0]
    for j in range(1, LANES):
        if gk_closer(bx[j], bd[j], best, bestx, mu):
            best = bd[j]
            bestx = bx[j]
    return bestx


cdef void gk_qsums_row(const floating *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                       double mu, double sigma, int nmom, int flags, int nthreads,
                       gk_qsums *out) noexcept nogil:
    """q-side sums of one (mu, sigma) with nmom = 0, 2 or 4 moments (the others 0)."""
    cdef GkPass cx
    cdef double s[GK_MAXQ]
    cdef double t2[GK_BLOCK]
    cdef double c2[GK_BLOCK]
    cx.x = x
    cx.n = n
    cx.kind = GK_PASS_Q
    cx.nmom = nmom
    cx.mu = mu
    cx.sorted = (flags & GK_X_SORTED) != 0
    cx.xk = gk_nearest_sorted(x, n, mu) if cx.sorted else gk_nearest(x, n, mu)
    cx.dk = cx.xk - mu
    cx.h = (0.5 / sigma) / sigma
    cx.dx = (x[n - 1] - x[0]) / <double>(n - 1) if n > 1 else 0.0
    cx.t2 = NULL
    if cx.sorted and n >= GK_TABLE_MIN_POINTS and cx.dx > 0.0 and cx.h <= DBL_MAX:
        gk_t2_table(cx.h * cx.dx * cx.dx, c2, t2)
        cx.t2 = t2
        cx.c2 = c2
    gk_run_blocks(p, sp, &cx, 6, nthreads, s)
    out.xk = cx.xk
    out.dk = cx.dk
    out.W = s[0]
    out.W1 = s[1]
    out.W2 = s[2]
    out.W3 = s[3]
    out.W4 = s[4]
    out.Ap = s[5]


# ---- value, gradient and Hessian ---------------------------------------------------

cdef inline void gk_value(const gk_psums *ps, const gk_qsums *qs, double sigma,
                          gk_eval *ev) noexcept nogil:
    """KL = H + quad + P log W.  Here and in gk_value_grad every product that
    is added goes through klm_mul_add_f64: these are inlined into several
    callers, and a product left to the compiler could be fused in one copy and
    not in another (the value of gaussian_kl would then differ from that of
    gaussian_kl_grad in its last bit)."""
    cdef double quad = (ps.scale * qs.Ap / sigma) / sigma
    cdef double lw = log(qs.W)
    ev.kl = klm_mul_add_f64(ps.P, lw, ps.H + quad)
    # P: W's rounding moves log W by a few eps even where log W is tiny (q on
    # one point: W = 1 + its tail, a tail below eps lost), which H, quad and
    # P log W, all near 0 there, would not show
    ev.noise = fabs(ps.H) + fabs(quad) + fabs(ps.P * lw) + fabs(ps.P)


cdef inline void gk_grad_finish(const gk_psums *ps, double sigma, double g1, double g2,
                                gk_eval *ev) noexcept nogil:
    """ev's gradient from g1 = P E_q[d] - sum p d and g2 = P E_q[d^2] - sum p d^2."""
    cdef double P = ps.P
    cdef double mp = ps.S1 / P
    cdef double L = sqrt(fmax(klm_mul_add_f64(-mp, mp, ps.S2 / P), 0.0))
    if not (L > 0.0):
        L = sigma   # p on one point: no finite optimum, any unit
    ev.g1 = g1
    ev.g2 = g2
    ev.dmu = (g1 / sigma) / sigma
    ev.dsigma = ((g2 / sigma) / sigma) / sigma
    ev.grad_rel = fmax(fabs(g1 / L), fabs((g2 / L) / L)) / P


cdef inline void gk_value_grad(const gk_psums *ps, const gk_qsums *qs, double sigma,
                               gk_eval *ev) noexcept nogil:
    cdef double P = ps.P
    # p's moments about xk, from its moments about its mean c
    cdef double u = ps.c - qs.xk
    cdef double sp1 = klm_mul_add_f64(P, u, ps.S1)
    cdef double sp2 = klm_mul_add_f64(u, klm_mul_add_f64(P, u, 2.0 * ps.S1), ps.S2)
    cdef double g1 = klm_mul_add_f64(P, qs.W1 / qs.W, -sp1)
    cdef double g2 = klm_mul_add_f64(P, qs.W2 / qs.W, -sp2)
    gk_value(ps, qs, sigma, ev)
    g2 = klm_mul_add_f64(2.0 * qs.dk, g1, g2)   # moments about xk -> about mu
    gk_grad_finish(ps, sigma, g1, g2, ev)


cdef inline void gk_dd_norm(double hi, double lo, double *q) noexcept nogil:
    """hi + lo (|lo| below |hi|, or hi 0) as q[0] + q[1] with q[0] the rounded sum."""
    q[0] = hi + lo
    q[1] = lo - (q[0] - hi)


cdef inline void gk_dd_div(double ah, double al, double bh, double bl, double *q) noexcept nogil:
    """(ah + al) / (bh + bl) as q[0] + q[1], to about eps^2."""
    cdef double q1 = ah / bh
    cdef double r = (klm_residual_f64(ah, q1, bh) + al) - q1 * bl
    gk_dd_norm(q1, r / bh, q)


cdef bint gk_careful_setup(const floating *p, Py_ssize_t sp, const gk_psums *ps,
                           const gk_qsums *qs, int nthreads, GkPass *cx,
                           double *T) noexcept nogil:
    """Pass N, then cx's R = W (over sum p for normalised p) and C = sum p / W
    for pass C; T = sum p as hi + lo.  False where the sums are not finite."""
    cdef double s[4]
    cdef double W[2]
    cx.kind = GK_PASS_N
    cx.mw = gk_quantum_shift(qs.W)
    cx.mp = gk_quantum_shift(ps.P / ps.scale)
    gk_run_blocks(p, sp, cx, 4, nthreads, s)
    gk_dd_norm(s[0], s[1], W)
    gk_dd_norm(s[2], s[3], T)
    if not (W[0] >= 1.0 and T[0] > 0.0 and W[0] <= DBL_MAX and T[0] <= DBL_MAX):
        return False
    gk_dd_div(T[0], T[1], W[0], W[1], s)
    cx.ch = s[0]
    cx.cl = s[1]
    if (<int>ps.flags & GK_P_NORMALIZED) != 0:
        gk_dd_div(W[0], W[1], T[0], T[1], W)
    cx.rh = W[0]
    cx.rl = W[1]
    cx.lr = log(W[0]) + W[1] / W[0]
    return True


cdef bint gk_careful_row(const floating *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                         const gk_psums *ps, const gk_qsums *qs, double mu, double sigma,
                         int nthreads, double *res) noexcept nogil:
    """KL, g1 and g2 (see gk_eval) term by term into res[0:3] (the section
    "careful value" above).  False (res unspecified) where a sum is not finite."""
    cdef GkPass cx
    cdef double s[4]
    cdef double T[2]
    cdef double f = 1.0
    cx.x = x
    cx.n = n
    cx.mu = mu
    cx.xk = qs.xk
    cx.dk = qs.dk
    cx.h = (0.5 / sigma) / sigma
    if not gk_careful_setup(p, sp, ps, qs, nthreads, &cx, T):
        return False
    cx.kind = GK_PASS_C
    gk_run_blocks(p, sp, &cx, 4, nthreads, s)
    if (<int>ps.flags & GK_P_NORMALIZED) != 0:
        f = 1.0 / T[0]
    res[0] = (s[0] + s[1]) * f
    res[1] = s[2] * f
    res[2] = s[3] * f
    return isfinite(res[0]) and isfinite(res[1]) and isfinite(res[2])


# The fast value is kept where it keeps about 52 - 18 bits: its rounding
# measured about eps * noise (gk_eval.noise), so below 2^-18 noise it is redone.
cdef double GK_CAREFUL_BELOW = 2.0 ** -18


cdef void gk_refine(const floating *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                    const gk_psums *ps, const gk_qsums *qs, double mu, double sigma,
                    int nthreads, gk_eval *ev) noexcept nogil:
    """Redo ev's value and gradient term by term where the fast value cancelled."""
    cdef double res[3]
    if not (fabs(ev.kl) <= GK_CAREFUL_BELOW * ev.noise):
        return
    if gk_careful_row(p, sp, x, n, ps, qs, mu, sigma, nthreads, res):
        ev.kl = res[0]
        gk_grad_finish(ps, sigma, res[1], res[2], ev)


cdef void gk_eval_at(const floating *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                     const gk_psums *ps, double mu, double sigma, int nmom, int nthreads,
                     gk_qsums *qs, gk_eval *ev) noexcept nogil:
    """The value and gradient at (mu, sigma), and q's sums with nmom (2 or 4) moments."""
    gk_qsums_row(p, sp, x, n, mu, sigma, nmom, <int>ps.flags, nthreads, qs)
    gk_value_grad(ps, qs, sigma, ev)
    gk_refine(p, sp, x, n, ps, qs, mu, sigma, nthreads, ev)


cdef inline double gk_over_power(double a, double sigma, int k) noexcept nogil:
    """a / sigma^k, dividing k times (no intermediate sigma^k to under- or overflow)."""
    cdef int i
    for i in range(k):
        a = a / sigma
    return a


cdef void gk_eval_row(const floating *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                      const gk_psums *ps, double mu, double sigma, int order, int nthreads,
                      double *out) noexcept nogil:
    """out[0:1], out[0:3] or out[0:6]: KL(p || q(mu, sigma)), with dKL/dmu and
    dKL/dsigma (order 1), and with the Hessian's three entries (order 2), from
    p's sums and one q pass with q's moments up to 0, 2 or 4.

    With d = x - mu, dE_q[f]/dmu = Cov_q(f, d) / sigma^2 + E_q[df/dmu] and
    dE_q[f]/dsigma = Cov_q(f, d^2) / sigma^3; with e = E_q[d] and k2, k3, k4 the
    central moments of d under q (Cov_q(d, d^2) = k3 + 2 e k2, Var_q(d^2) =
    k4 - k2^2 + 4 e k3 + 4 e^2 k2):
        d2KL/dmu2        = P k2 / sigma^4
        d2KL/dmu dsigma  = P (k3 + 2 e k2) / sigma^5 - 2 g1 / sigma^3
        d2KL/dsigma2     = P (k4 - k2^2 + 4 e k3 + 4 e^2 k2) / sigma^6 - 3 g2 / sigma^4
    where g1 / sigma^2 and g2 / sigma^3 are the gradient."""
    cdef gk_qsums qs
    cdef gk_eval ev
    cdef double m1, m2, m3, m4, k2, k3, k4, e, P
    if order == 0:
        gk_qsums_row(p, sp, x, n, mu, sigma, 0, <int>ps.flags, nthreads, &qs)
        gk_value(ps, &qs, sigma, &ev)
        gk_refine(p, sp, x, n, ps, &qs, mu, sigma, nthreads, &ev)
        out[0] = ev.kl
        return
    gk_eval_at(p, sp, x, n, ps, mu, sigma, 2 if order == 1 else 4, nthreads, &qs, &ev)
    out[0] = ev.kl
    out[1] = ev.dmu
    out[2] = ev.dsigma
    if order != 2:
        return
    m1 = qs.W1 / qs.W
    m2 = qs.W2 / qs.W
    m3 = qs.W3 / qs.W
    m4 = qs.W4 / qs.W
    k2 = m2 - m1 * m1
    k3 = m3 - m1 * (3.0 * m2 - 2.0 * m1 * m1)
    k4 = m4 - m1 * (4.0 * m3 - m1 * (6.0 * m2 - 3.0 * m1 * m1))
    e = m1 + qs.dk
    P = ps.P
    # e times the moments first: e may be near DBL_MAX where q sits on one point
    # (the moments 0), and 4 e would overflow to inf times 0; the powers of
    # sigma one division at a time, since sigma^2 may underflow to 0 (0 / 0)
    out[3] = gk_over_power(P * k2, sigma, 4)
    out[4] = gk_over_power(P * (k3 + 2.0 * (e * k2)), sigma, 5) - 2.0 * ev.dmu / sigma
    out[5] = (gk_over_power(P * ((k4 - k2 * k2) + 4.0 * (e * (k3 + e * k2))), sigma, 6)
              - 3.0 * ev.dsigma / sigma)


# ---- fits ----------------------------------------------------------------------------

cdef inline void gk_fit_set(gk_fit *res, double mu, double sigma, const gk_eval *ev) noexcept nogil:
    res.mu = mu
    res.sigma = sigma
    res.kl = ev.kl
    res.dmu = ev.dmu
    res.dsigma = ev.dsigma
    res.grad_rel = ev.grad_rel


cdef inline void gk_hist(double *hist, int i, double kl, double mu, double par) noexcept nogil:
    if hist != NULL:
        hist[3 * i] = kl
        hist[3 * i + 1] = mu
        hist[3 * i + 2] = par


cdef void gk_fit_degenerate(const floating *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                            const gk_psums *ps, gk_fit *res, double mu,
                            double *hist) noexcept nogil:
    """All of p on one grid value v: as sigma -> 0 q spreads evenly over the
    m grid points at v, so KL -> H + P log m; no finite optimum."""
    cdef Py_ssize_t i, first = -1, m = 0
    cdef double kl
    for i in range(n):
        if first < 0 and p[i * sp] > 0:
            first = i
    for i in range(n):
        if first >= 0 and x[i] == x[first]:
            m += 1
    kl = ps.H + ps.P * log(<double>max(m, 1))
    res.mu = mu
    res.sigma = 0.0
    res.kl = kl
    res.dmu = 0.0
    res.dsigma = 0.0
    res.grad_rel = 0.0
    res.status = GK_FIT_DEGENERATE
    gk_hist(hist, 0, kl, mu, 0.0)


ctypedef struct GkNewtonStep:
    double h11, h12, h22   # the Hessian in t = (x - c) / L, over P
    double gn1, gn2        # the gradient there, over P
    double b               # mu in t
    bint sigma_only        # the step keeps mu (gk_mu_resolved)


cdef inline bint gk_newton_system(const gk_psums *ps, const gk_qsums *qs, const gk_eval *ev,
                                  double mu, double L, GkNewtonStep *st) noexcept nogil:
    """The 2x2 system of a Newton step in the natural parameters of t = (x - c) / L:
    gradient P (E_q[T] - E_p[T]), Hessian P Cov_q[T], T = (t, t^2).  False when q
    has collapsed to one point (no curvature left)."""
    cdef double P = ps.P, c = ps.c, W = qs.W
    cdef double m1 = qs.W1 / W, m2 = qs.W2 / W, m3 = qs.W3 / W, m4 = qs.W4 / W
    cdef double k2 = m2 - m1 * m1
    cdef double k3 = m3 - m1 * (3.0 * m2 - 2.0 * m1 * m1)
    cdef double k4 = m4 - m1 * (4.0 * m3 - m1 * (6.0 * m2 - 3.0 * m1 * m1))
    cdef double a = (m1 + (qs.xk - c)) / L
    cdef double K2 = k2 / (L * L), K3 = k3 / (L * L * L), K4 = k4 / ((L * L) * (L * L))
    cdef double b = mu - c
    st.h11 = K2
    st.h12 = K3 + 2.0 * a * K2
    st.h22 = K4 - K2 * K2 + 4.0 * a * (K3 + a * K2)
    st.gn1 = ev.g1 / (P * L)
    st.gn2 = (ev.g2 + 2.0 * b * ev.g1) / (P * L * L)
    st.b = b / L
    st.sigma_only = False
    # on two points the Hessian has rank one, which the damping (nu > 0) handles
    return st.h11 > 0.0 and st.h22 > 0.0


ctypedef struct GkIterate:
    double mu, sigma
    double eta1, eta2      # the natural parameters in t = (x - c) / L
    gk_qsums qs
    gk_eval ev


cdef inline void gk_record(const GkIterate *it, gk_fit *res, double *hist) noexcept nogil:
    """it as a Newton fit's next iterate: counted, made the result, recorded in hist."""
    res.nit += 1
    gk_fit_set(res, it.mu, it.sigma, &it.ev)
    gk_hist(hist, res.nit, it.ev.kl, it.mu, it.sigma)


cdef inline bint gk_from_natural(const gk_psums *ps, double L, GkIterate *it) noexcept nogil:
    """it's mu and sigma from its natural parameters; False where they leave
    the family (eta2 >= 0) or the finite range."""
    cdef double v
    if not (it.eta2 < 0.0):
        return False
    v = -0.5 / it.eta2
    it.mu = ps.c + L * (it.eta1 * v)
    it.sigma = L * sqrt(v)
    return it.sigma > 0.0 and it.sigma <= DBL_MAX and fabs(it.mu) <= DBL_MAX


cdef inline void gk_to_natural(const gk_psums *ps, double L, GkIterate *it) noexcept nogil:
    """it's natural parameters from its mu and sigma."""
    cdef double v = (it.sigma / L) * (it.sigma / L)
    it.eta1 = ((it.mu - ps.c) / L) / v
    it.eta2 = -0.5 / v


cdef bint gk_widen(const floating *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                   const gk_psums *ps, double L, int nthreads, GkIterate *cur, gk_fit *res,
                   double *hist) noexcept nogil:
    """A Newton iterate by widening: cur's sigma doubled for as long as that
    lowers the KL (at most 64 times), with its sums, evaluation and natural
    parameters, counted and recorded as an iteration.  The start of a Newton
    fit from p's grid standard deviation can lie far below the spacing, where
    q sits on one point and the second-order model fails.  False (nothing
    changed) when the first doubling does not lower the KL.  From an infinite
    KL the first step goes to L (p's standard deviation) and later ones by
    2**32 while the KL stays infinite."""
    cdef GkIterate t = cur[0]
    cdef int doubled = 0
    cdef bint infinite
    while doubled < 64:
        # from an infinite KL (a user's start far below the spacing) to p's
        # standard deviation L, then by 2**32 at a time while it stays infinite
        infinite = cur.ev.kl == HUGE_VAL
        t.sigma = fmax(L, 4294967296.0 * cur.sigma) if infinite else 2.0 * cur.sigma
        if not (t.sigma <= DBL_MAX):
            break
        gk_eval_at(p, sp, x, n, ps, t.mu, t.sigma, 4, nthreads, &t.qs, &t.ev)
        res.nfev += 1
        if not (t.ev.kl < cur.ev.kl or (infinite and t.ev.kl == HUGE_VAL)):
            break
        cur[0] = t
        doubled += 1
    if doubled == 0:
        return False
    gk_to_natural(ps, L, cur)
    gk_record(cur, res, hist)
    return True


# ---- no finite optimum: the exponential tilt --------------------------------

cdef enum:
    TILT_LANES = 8       # lanes of gk_tilt_moments's sums (a loop gcc vectorises)
    TILT_NOT_WIDER = 0   # sigma is not wider than the grid: not checked
    TILT_NONE = 1        # a Gaussian on the grid attains the infimum
    TILT_BOUNDARY = 2    # p's variance is the tilt's to 1e-9: left to the fit
    TILT_INFIMUM = 3     # no finite optimum: the infimum is the tilt
    TILT_START_ABOVE = 1 << 30   # |a| times the grid's span beyond which a search starts at 0


cdef void gk_tilt_moments(const double *x, Py_ssize_t n, double c, double top_t, double a,
                          double *mean, double *var) noexcept nogil:
    """Mean and variance of t = x - c under the exponential tilt q ~ exp(a t)
    of the uniform distribution on the grid, in one pass (one exp per point,
    point i in lane i % TILT_LANES): the weights are scaled by the largest,
    exp(top_t) with top_t = max a t at an end of the grid, and the moments
    taken about c (p's mean, near the tilt's at the a sought, so the variance
    does not cancel there)."""
    cdef double W[TILT_LANES]
    cdef double W1[TILT_LANES]
    cdef double W2[TILT_LANES]
    cdef double w, t, s0 = 0.0, s1 = 0.0, s2 = 0.0
    cdef Py_ssize_t g, j, full = n - n % TILT_LANES
    for j in range(TILT_LANES):
        W[j] = 0.0
        W1[j] = 0.0
        W2[j] = 0.0
    for g in range(full // TILT_LANES):
        for j in range(TILT_LANES):
            t = x[g * TILT_LANES + j] - c
            w = klm_exp_f64(a * t - top_t)
            W[j] += w
            W1[j] += w * t
            W2[j] += (w * t) * t
    for j in range(n - full):
        t = x[full + j] - c
        w = klm_exp_f64(a * t - top_t)
        W[j] += w
        W1[j] += w * t
        W2[j] += (w * t) * t
    for j in range(TILT_LANES):
        s0 += W[j]
        s1 += W1[j]
        s2 += W2[j]
    mean[0] = s1 / s0
    var[0] = fmax(s2 / s0 - mean[0] * mean[0], 0.0)


cdef inline int gk_tilt_verdict(double var_p, double var_tilt) noexcept nogil:
    """TILT_INFIMUM, TILT_BOUNDARY or TILT_NONE from p's variance against the
    tilt's with p's mean (gk_tilt_state)."""
    if var_p >= var_tilt * (1.0 + 1e-9):
        return TILT_INFIMUM
    return TILT_BOUNDARY if var_p >= var_tilt * (1.0 - 1e-9) else TILT_NONE


cdef int gk_tilt_state(const double *x, Py_ssize_t n, const gk_psums *ps, double x_lo,
                       double x_hi, double mu, double sigma, double *a_tilt) noexcept nogil:
    """Where a Newton iterate's sigma is wider than the grid [x_lo, x_hi]
    (where the infimum is a tilt Newton's steps widen sigma without end),
    whether a Gaussian on the grid attains the infimum of the KL: it does not
    where p's grid variance is at least that of the exponential tilt q ~
    exp(a x) with p's mean.  The grid Gaussians are the family exp(b1 x + b2
    x^2), b2 < 0; the KL is convex in (b1, b2) and its optimum matches q's mean
    and variance to p's; for a given mean the variance grows toward the tilt's
    as b2 -> 0, so where p's is as large no b2 < 0 matches it and the KL
    decreases toward the tilt, as sigma -> infinity with mu / sigma^2 -> a.
    The tilt's a is found from its mean (increasing in a, with the variance as
    derivative): a bracket grown from the iterate's (mu - c) / sigma^2, then
    Newton's method kept in it by bisection, to 1e-12 of p's mean's distance
    from the nearer end of the grid, into a_tilt.  The verdict does not depend
    on the iterate, which only starts the search (but for a bracket that
    leaves the double range, or a root not found in 200 steps: TILT_NONE): a
    fit checks once."""
    cdef double lo_t = x_lo - ps.c, hi_t = x_hi - ps.c, span = hi_t - lo_t
    cdef double m = ps.S1 / ps.P, var_p = ps.S2 / ps.P - m * m, tol
    cdef double a = (mu - ps.c) / (sigma * sigma)
    cdef double b, lo, hi, step, mean, var, mean_b, var_b, d
    cdef int it
    if sigma <= x_hi - x_lo:
        return TILT_NOT_WIDER
    if not (span > 0.0 and lo_t < m < hi_t and var_p > 0.0):
        return TILT_NONE
    tol = 1e-12 * fmin(m - lo_t, hi_t - m)
    # an iterate far off the grid (a user's mu0 of 1e60) says nothing of the tilt:
    # the search then starts from the uniform distribution
    a = a if fabs(a * span) <= TILT_START_ABOVE else 0.0
    gk_tilt_moments(x, n, ps.c, fmax(a * lo_t, a * hi_t), a, &mean, &var)
    if fabs(mean - m) <= tol:   # the fit ran off along the tilt: a is its parameter
        a_tilt[0] = a
        return gk_tilt_verdict(var_p, var)
    # the bracket: from a toward the side where the tilt's mean passes m
    d = 1.0 if mean < m else -1.0
    step = fmax(fabs(a), 1.0 / span)
    b = a
    for it in range(1100):
        b = a + d * step
        if not isfinite(b):
            return TILT_NONE
        gk_tilt_moments(x, n, ps.c, fmax(b * lo_t, b * hi_t), b, &mean_b, &var_b)
        if (mean_b - m) * d >= 0.0:
            break
        a, mean, var = b, mean_b, var_b
        step *= 2.0
    lo = fmin(a, b)
    hi = fmax(a, b)
    # Newton from the end of the bracket nearer the root (by the mean's slope)
    a = a - (mean - m) / var if var > 0.0 else 0.5 * (lo + hi)
    if not (lo < a < hi):
        a = 0.5 * (lo + hi)
    for it in range(200):
        gk_tilt_moments(x, n, ps.c, fmax(a * lo_t, a * hi_t), a, &mean, &var)
        if fabs(mean - m) <= tol:
            break
        if mean < m:
            lo = a
        else:
            hi = a
        a = a - (mean - m) / var
        if not (lo < a < hi):
            a = 0.5 * (lo + hi)
            if not (lo < a < hi):
                break
    else:
        return TILT_NONE   # not found: no verdict (the fit goes on)
    a_tilt[0] = a
    return gk_tilt_verdict(var_p, var)


cdef void gk_grid_ends(const double *x, Py_ssize_t n, double *lo, double *hi) noexcept nogil:
    """The smallest and the largest grid value."""
    cdef Py_ssize_t i
    lo[0] = x[0]
    hi[0] = x[0]
    for i in range(n):
        lo[0] = fmin(lo[0], x[i])
        hi[0] = fmax(hi[0], x[i])


cdef enum:
    VALLEY_HALVINGS = 10   # points a valley step tries: from 1/2 to 1/1024 of the way


cdef inline double gk_direction(const GkNewtonStep *st, double nu, bint keep_mu, double *d1,
                                double *d2, double *gd) noexcept nogil:
    """The Newton step with nu times the Hessian's diagonal added
    (Levenberg-Marquardt) into d1, d2 and its directional derivative into gd;
    returns the determinant (a descent direction only where it is > 0).  With
    keep_mu the step keeps mu: it lies on the line (-2 b, 1) of the natural
    parameters (b = (mu - c) / L, eta1 = -2 b eta2 there), whose curvature
    u'Hu = Var_q[(t - b)^2] takes the determinant's place."""
    cdef double a11 = st.h11 * (1.0 + nu), a22 = st.h22 * (1.0 + nu)
    cdef double b = st.b, det, s
    if keep_mu:
        det = ((4.0 * b) * (b * st.h11 - st.h12) + st.h22) * (1.0 + nu)
        s = -(st.gn2 - 2.0 * b * st.gn1) / det
        d1[0] = -2.0 * b * s
        d2[0] = s
    else:
        det = a11 * a22 - st.h12 * st.h12
        d1[0] = -(a22 * st.gn1 - st.h12 * st.gn2) / det
        d2[0] = -(a11 * st.gn2 - st.h12 * st.gn1) / det
    gd[0] = st.gn1 * d1[0] + st.gn2 * d2[0]
    return det


cdef inline bint gk_mu_resolved(const GkNewtonStep *st, double mu, double sigma, double c,
                                double L) noexcept nogil:
    """True where mu is the double nearest its optimum: where the full Newton
    step would move it by at most half the spacing of the doubles there (and
    1/64 of it for a near-tie).  The step's mu part is L v (d1 + 2 b d2), v =
    (sigma / L)^2, from mu = c + L eta1 v, v = -1 / (2 eta2): it accounts for
    sigma's pull on mu, which mu's own gradient does not.  On a grid far from 0
    the doubles near the optimum can be too coarse for the relative gradient
    to reach tol (ulp(mu) / L is 2e-6 at mu = 1e10, L = 1).  Only near p (mu
    within 8 L of p's mean c, sigma at most 8 L), where an optimum can be: along
    a tilt mu runs off with sigma^2, and the tilt's own rules end the fit."""
    cdef double d1, d2, gd, v = (sigma / L) * (sigma / L), a = fabs(mu)
    if not (fabs(mu - c) <= 8.0 * L and sigma <= 8.0 * L):
        return False
    if not (gk_direction(st, 0.0, False, &d1, &d2, &gd) > 0.0):
        return False
    return fabs(L * (v * klm_mul_add_f64(2.0 * st.b, d2, d1))) \
        <= 0.515625 * (nextafter(a, INFINITY) - a)


cdef inline bint gk_system_at(const gk_psums *ps, const GkIterate *cur, double L,
                              GkNewtonStep *st) noexcept nogil:
    """The Newton system at cur into st (gk_newton_system; False where there is
    none), its steps keeping mu (st.sigma_only) where mu is resolved."""
    if not gk_newton_system(ps, &cur.qs, &cur.ev, cur.mu, L, st):
        return False
    st.sigma_only = gk_mu_resolved(st, cur.mu, cur.sigma, ps.c, L)
    return True


cdef inline bint gk_try(const floating *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                        const gk_psums *ps, double L, const GkIterate *cur, double d1,
                        double d2, double lam, int nthreads, GkIterate *out,
                        gk_fit *res) noexcept nogil:
    """The point lam (d1, d2) from cur, evaluated into out; False (nothing
    evaluated) where it leaves the family or the finite range."""
    out.eta1 = cur.eta1 + lam * d1
    out.eta2 = cur.eta2 + lam * d2
    if not gk_from_natural(ps, L, out):
        return False
    gk_eval_at(p, sp, x, n, ps, out.mu, out.sigma, 4, nthreads, &out.qs, &out.ev)
    res.nfev += 1
    return True


cdef extern from *:
    # the approximate Wolfe condition's allowance: a KL level with the start's to 1e-6
    double WOLFE_EPS "1e-6"
    # ... taken only near the optimum: a relative gradient below this
    double WOLFE_NEAR "1e-3"


cdef inline bint gk_wolfe_near(const gk_psums *ps, double L, const GkIterate *out, double d1,
                               double d2, double gd) noexcept nogil:
    """Hager and Zhang's approximate Wolfe condition on the step (d1, d2) whose
    directional derivative at its start is gd < 0: the derivative at out lies
    in [0.9 gd, -0.8 gd]."""
    cdef GkNewtonStep so
    cdef double g
    gk_newton_system(ps, &out.qs, &out.ev, out.mu, L, &so)
    g = so.gn1 * d1 + so.gn2 * d2
    return 0.9 * gd <= g <= -0.8 * gd


cdef bint gk_damped_step(const floating *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                         const gk_psums *ps, double L, const GkNewtonStep *st,
                         const GkIterate *cur, double noise, int nthreads, GkIterate *out,
                         int *tries, gk_fit *res) noexcept nogil:
    """A Newton step from cur into out, True where one lowered the KL: damped
    by the Newton decrement far from the optimum (full steps near it); a step
    that leaves sigma > 0 or raises the KL beyond rounding turns
    Levenberg-Marquardt: nu times the Hessian's diagonal is added, which turns
    the step toward the (scaled) gradient and shortens it.  The steps tried
    in tries."""
    cdef double nu = 0.0, d1, d2, gd, lam, det, dec
    cdef int tr
    for tr in range(60):
        tries[0] = tr + 1
        det = gk_direction(st, nu, st.sigma_only, &d1, &d2, &gd)
        lam = 1.0
        if nu == 0.0:
            dec = sqrt(fmax(-gd, 0.0))
            if dec > 0.25:
                lam = 1.0 / (1.0 + dec)
        nu = 1e-3 if nu == 0.0 else 10.0 * nu
        if det > 0.0 and gk_try(p, sp, x, n, ps, L, cur, d1, d2, lam, nthreads, out, res) \
                and (out.ev.kl <= cur.ev.kl + 1e-4 * lam * ps.P * gd + noise
                     or (cur.ev.grad_rel < WOLFE_NEAR
                         and out.ev.kl <= cur.ev.kl + WOLFE_EPS * fabs(cur.ev.kl) + noise
                         and (out.mu != cur.mu or out.sigma != cur.sigma)
                         and gk_wolfe_near(ps, L, out, d1, d2, gd))):
            return True
    return False


cdef bint gk_valley_step(const floating *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                         const gk_psums *ps, double L, const GkNewtonStep *st,
                         const GkIterate *cur, double noise, int nthreads, GkIterate *out,
                         gk_fit *res) noexcept nogil:
    """Where the full Newton step from cur crosses eta2 = 0 (sigma -> infinity),
    the point along its direction from half way there, halved (up to
    VALLEY_HALVINGS points) for as long as that lowers the KL (convex along
    the line), into out; True where it
    lowers the KL.  Where q sits near one grid point the Hessian is near
    singular along a valley toward a Gaussian centred off the grid: the
    Newton step is right in direction but far too long (N(6, 0.5) on the grid
    0, 1, ..., 5: 10^5 times), and the damped steps crawled along the valley."""
    cdef GkIterate trial
    cdef double d1, d2, gd, t, lam = 0.0
    cdef bint found = False
    cdef int h
    if not (gk_direction(st, 0.0, st.sigma_only, &d1, &d2, &gd) > 0.0 and d2 > 0.0
            and not (cur.eta2 + d2 < 0.0)):
        return False
    t = 0.5 * (-cur.eta2 / d2)
    for h in range(VALLEY_HALVINGS):
        if gk_try(p, sp, x, n, ps, L, cur, d1, d2, t, nthreads, &trial, res):
            if found and not (trial.ev.kl < out.ev.kl):
                break
            found = True
            lam = t
            out[0] = trial
        t *= 0.5
    return found and out.ev.kl <= cur.ev.kl + 1e-4 * lam * ps.P * gd + noise


cdef enum:
    TILT_SIGMA_EXP = 26   # the point along a tilt: sigma 2**26 times the grid's span


cdef void gk_along_tilt(const floating *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                        const gk_psums *ps, double span, double a, int nthreads,
                        GkIterate *cur, gk_fit *res, double *hist) noexcept nogil:
    """A fit that runs off toward the tilt exp(a (x - c)) moved far along it:
    sigma = 2**TILT_SIGMA_EXP times the grid's span and mu = c + a sigma**2,
    where the Gaussian differs from the tilt by (span / sigma)**2 = 2**-52 in
    relative terms and the KL is the infimum's to rounding (fewer powers of
    two where mu or sigma would leave the double range); taken, as one more
    iterate, where it lowers the KL.  (The point's KL is accurate however far
    mu lies: each weight's exponent is formed from x's offset from the grid
    point nearest mu.)"""
    cdef GkIterate t
    cdef int e
    for e in range(TILT_SIGMA_EXP, 0, -1):
        t.sigma = ldexp(span, e)
        t.mu = ps.c + (a * t.sigma) * t.sigma
        if t.sigma <= DBL_MAX and fabs(t.mu) <= DBL_MAX:
            break
    else:
        return
    gk_eval_at(p, sp, x, n, ps, t.mu, t.sigma, 4, nthreads, &t.qs, &t.ev)
    res.nfev += 1
    if t.ev.kl < cur.ev.kl:
        cur[0] = t
        gk_record(cur, res, hist)


cdef enum:
    NEWTON_RISES = 3   # accepted steps in a row that raise the KL (within rounding): the floor


cdef inline bint gk_start_hopeless(double x_lo, double x_hi, double mu0,
                                   const GkIterate *start) noexcept nogil:
    """A caller's Newton start that gives way to p's moments (where they have
    the lower KL, as the first iterate): mu0 beyond an end of the grid by more
    than its span (natural parameters of 1e60 over the grid lose every digit
    of the steps), or an infinite KL.  A start nearer is the caller's, however
    ill-conditioned the fit: it may lead to a better end."""
    cdef double span = x_hi - x_lo
    return not (x_lo - span <= mu0 <= x_hi + span) or not isfinite(start.ev.kl)


cdef void gk_newton_row(const floating *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                        const gk_psums *ps, double mu0, double sigma0, double tol,
                        int max_iter, int nthreads, gk_stop_fn stop, double *hist,
                        gk_fit *res) noexcept nogil:
    """Newton in the natural parameters of the grid Gaussian, in the coordinate
    t = (x - c) / L (c, L: p's mean and standard deviation) so the 2x2 system is
    well conditioned.  There the KL is convex; each iterate is the damped step
    (gk_damped_step) or, where that needed Levenberg-Marquardt and the full
    step leaves the family, the point along the full step (gk_valley_step),
    whichever has the lower KL; where no damped step lowers the KL,
    sigma is widened (gk_widen).  hist gets (kl, mu, sigma) of the start and of
    every accepted iterate."""
    cdef double mp = ps.S1 / ps.P, L = sqrt(fmax(ps.S2 / ps.P - mp * mp, 0.0)), noise
    cdef double x_lo = 0.0, x_hi = -1.0, a_tilt = 0.0
    cdef GkIterate cur, nxt, alt, best
    cdef GkNewtonStep st
    cdef bint accepted, system
    cdef int tries, tilt = TILT_NOT_WIDER, rises = 0
    res.nit = 0
    res.nfev = 0
    if not (L > 0.0):
        gk_fit_degenerate(p, sp, x, n, ps, res, ps.c + mp, hist)
        return
    cur.mu = mu0
    cur.sigma = sigma0
    gk_eval_at(p, sp, x, n, ps, cur.mu, cur.sigma, 4, nthreads, &cur.qs, &cur.ev)
    res.nfev = 1
    gk_fit_set(res, cur.mu, cur.sigma, &cur.ev)
    gk_hist(hist, 0, cur.ev.kl, cur.mu, cur.sigma)
    if max_iter > 0 and (mu0 != ps.c + mp or sigma0 != L):
        gk_grid_ends(x, n, &x_lo, &x_hi)
        if gk_start_hopeless(x_lo, x_hi, mu0, &cur):
            alt.mu = ps.c + mp
            alt.sigma = L
            gk_eval_at(p, sp, x, n, ps, alt.mu, alt.sigma, 4, nthreads, &alt.qs, &alt.ev)
            res.nfev += 1
            if alt.ev.kl < cur.ev.kl:
                cur = alt
                gk_record(&cur, res, hist)
    gk_to_natural(ps, L, &cur)
    best = cur
    while True:
        if cur.ev.grad_rel < tol:
            res.status = GK_FIT_CONVERGED
            return
        # mu the double nearest its optimum: done once sigma's part of the
        # gradient is below tol (else steps that keep mu finish sigma, below)
        system = gk_system_at(ps, &cur, L, &st)
        if st.sigma_only and fabs((cur.ev.g2 / L) / L) / ps.P < tol:
            res.status = GK_FIT_RESOLVED
            return
        # where the infimum is a tilt sigma grows without end: once it is wider
        # than the grid (at least 2 L wide) the tilt is checked, and where it is
        # the infimum the fit ends far along it
        if tilt == TILT_NOT_WIDER and cur.sigma > 1.5 * L:
            if x_hi < x_lo:
                gk_grid_ends(x, n, &x_lo, &x_hi)
            tilt = gk_tilt_state(x, n, ps, x_lo, x_hi, cur.mu, cur.sigma, &a_tilt)
            if tilt == TILT_INFIMUM:
                if res.nit < max_iter:
                    gk_along_tilt(p, sp, x, n, ps, x_hi - x_lo, a_tilt, nthreads, &cur, res, hist)
                res.status = GK_FIT_TILT
                return
            if tilt == TILT_BOUNDARY and res.nit < max_iter:
                # p is a tilt to 1e-9: the point far along it, where it lowers
                # the KL, and the fit goes on from there
                gk_along_tilt(p, sp, x, n, ps, x_hi - x_lo, a_tilt, nthreads, &cur, res, hist)
                gk_to_natural(ps, L, &cur)
                system = gk_system_at(ps, &cur, L, &st)
                if cur.ev.kl <= best.ev.kl:
                    best = cur
                    rises = 0
        if res.nit >= max_iter:
            res.status = GK_FIT_TILT if tilt == TILT_BOUNDARY else GK_FIT_MAXITER
            return
        if rises >= NEWTON_RISES:
            gk_record(&best, res, hist)   # back to the iterate before the rises
            res.status = GK_FIT_LINESEARCH
            return
        if stop():
            res.status = GK_FIT_INTERRUPTED
            return
        if system:
            noise = 64.0 * DBL_EPSILON * cur.ev.noise
            accepted = gk_damped_step(p, sp, x, n, ps, L, &st, &cur, noise, nthreads, &nxt,
                                      &tries, res)
            # a damped step that needed Levenberg-Marquardt competes with the valley
            # (a step that failed widens sigma instead, below)
            if accepted and tries > 1 and not st.sigma_only \
                    and gk_valley_step(p, sp, x, n, ps, L, &st, &cur, noise, nthreads, &alt, res) \
                    and alt.ev.kl < nxt.ev.kl:
                nxt = alt
            if accepted:
                rises = rises + 1 if nxt.ev.kl > cur.ev.kl else 0
                if nxt.ev.kl <= best.ev.kl:
                    best = nxt   # the lowest iterate, where rises end the fit
                cur = nxt
                gk_record(&cur, res, hist)
                continue
        # q has collapsed onto one grid point (sigma far below the spacing
        # there; no curvature left), or the system is too far from the KL's
        # shape: where widening lowers the KL (p has mass elsewhere) that is
        # the iterate, else the optimum is at sigma -> 0 or no step helps
        if not gk_widen(p, sp, x, n, ps, L, nthreads, &cur, res, hist):
            if best.ev.kl < cur.ev.kl:
                gk_record(&best, res, hist)   # back to the iterate before the rises
            if tilt == TILT_BOUNDARY:
                res.status = GK_FIT_TILT
            else:
                res.status = GK_FIT_LINESEARCH if system else GK_FIT_SINGULAR
            return
        rises = 0
        if cur.ev.kl <= best.ev.kl:
            best = cur


cdef void gk_gd_row(const floating *p, Py_ssize_t sp, const double *x, Py_ssize_t n,
                    const gk_psums *ps, double mu0, double par0, bint variance, double lr,
                    double lr_par, int epochs, double tol, int nthreads, gk_stop_fn stop,
                    double *hist, gk_fit *res) noexcept nogil:
    """Plain gradient descent for `epochs` steps of sizes lr (mu) and lr_par
    (sigma or v; the two differ only when the caller works in rescaled units), on
    (mu, sigma) or, with variance set, on (mu, v = sigma^2) as the tutorial does.
    Stops early when the relative gradient drops below tol, and before any step
    that would make sigma (or v) <= 0.  hist gets (kl, mu, sigma or v) before
    every step and at the end: row j holds the state after j steps."""
    cdef double mu = mu0, par = par0, sigma, dmu, dpar, mun, parn
    cdef gk_qsums qs
    cdef gk_eval ev
    cdef int it = 0
    res.nit = 0
    res.nfev = 0
    if not (par0 > 0.0):
        # start at sigma = 0: only when p sits on one point (no finite optimum)
        gk_fit_degenerate(p, sp, x, n, ps, res, mu0, hist)
        return
    while True:
        sigma = sqrt(par) if variance else par
        gk_eval_at(p, sp, x, n, ps, mu, sigma, 2, nthreads, &qs, &ev)
        res.nfev += 1
        res.nit = it
        gk_fit_set(res, mu, sigma, &ev)
        gk_hist(hist, it, ev.kl, mu, par)
        if ev.grad_rel < tol:
            res.status = GK_FIT_CONVERGED
            return
        if it >= epochs:
            res.status = GK_FIT_MAXITER
            return
        if stop():
            res.status = GK_FIT_INTERRUPTED
            return
        if variance:
            dmu = ev.g1 / par
            dpar = 0.5 * ((ev.g2 / par) / par)
        else:
            dmu = ev.dmu
            dpar = ev.dsigma
        mun = mu - lr * dmu
        parn = par - lr_par * dpar
        if not (fabs(mun) <= DBL_MAX and fabs(parn) <= DBL_MAX):
            res.status = GK_FIT_NONFINITE
            return
        if not (parn > 0.0):
            res.status = GK_FIT_NONPOSITIVE
            return
        mu = mun
        par = parn
        it += 1
