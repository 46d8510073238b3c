# The kernels of kl_fast: row reductions over contiguous or strided rows.
#
# Design: this one source is compiled once per instruction-set target
# (_core_baseline.pyx, _core_avx2.pyx include it; setup.py gives each its
# flags) and exports its kernels in one CoreTable (_core_table.pxd);
# kl_fast._kernels picks a table at import.  The loops are plain Cython over
# pointers into the caller's memoryviews: each row is cut into blocks, a block
# is reduced in LANES fixed lanes (lane j takes the elements with i % LANES
# == j) that gcc and clang vectorise, the lanes are added in one fixed
# pairwise order and the block totals with Neumaier compensation, so a result
# depends only on the data and n, never on threads or layout.  The only C is
# kl_math.h (log/exp and exact residuals, inlined into the loops).
#
# A row is tried on the fast path, which checks its inputs as it goes
# (ratios in the normal range, no negative, NaN or infinite q); a row it
# cannot take goes to the careful path (libm, every special case), and with
# check=True a row holding a negative, NaN or infinite value is reported bad.
from libc.math cimport log, fabs, HUGE_VAL
from libc.float cimport DBL_MAX, DBL_MIN
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy
from cpython.pycapsule cimport PyCapsule_New

from cython cimport floating

from kl_fast._core_table cimport (
    CoreTable, ROW_BAD, ROW_CAREFUL, ROW_NEEDS_CARE, ROW_OK,
)

cdef extern from "kl_math.h" nogil:
    double klm_log_f64(double x)
    float klm_log_f32(float x)
    double klm_exp_f64(double x)
    float klm_exp_f32(float x)
    double klm_log_parts_f64(double r, double *k)
    float klm_log_normal_f32(float r)
    double klm_residual_f64(double p, double r, double q)
    float klm_residual_f32(float p, float r, float q)
    double klm_join_k_f64(double k, double a)
    double FLT_MAX_D "((double)FLT_MAX)"

cdef enum:
    LANES = 8
    BLOCK_F64 = 256      # elements per block of the float64 kernels
    BLOCK_F32 = 1024     # and of the float32 ones (terms widened per block)


# ---- sums -----------------------------------------------------------------

cdef inline double lane_total(const double *v) noexcept nogil:
    """The lanes added in the one fixed pairwise order."""
    return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]))


cdef inline void neumaier(double *s, double *c, double x) noexcept nogil:
    """Neumaier's compensated addition of x into (s, c).  Once the sum leaves
    the finite range the compensation is left alone (it would be inf - inf),
    so an overflowing sum stays +-inf instead of turning into NaN."""
    cdef double t = s[0] + x
    if fabs(t) <= DBL_MAX:
        if fabs(s[0]) >= fabs(x):
            c[0] += (s[0] - t) + x
        else:
            c[0] += (x - t) + s[0]
    s[0] = t


cdef inline void add_tail_sums(const floating *p, const floating *q, Py_ssize_t rem,
                               double *ps, double *qs) noexcept nogil:
    """The last rem (< LANES) elements of a block into lanes 0 .. rem-1 of the
    sums (lane j takes the elements with i % LANES == j, the same order as
    every other kernel that sums p and q)."""
    cdef Py_ssize_t j
    for j in range(rem):
        ps[j] += p[j]
        qs[j] += q[j]


# ---- float64 KL block -----------------------------------------------------

ctypedef struct LanesF64:
    double acc[LANES]      # p log z + (p - r q), per lane
    double acck[LANES]     # p k (r = 2^k z), joined with acc once per block
    double ps[LANES]       # sum p
    double qs[LANES]       # sum q
    double rmax[LANES]     # max r over the elements with p != 0 (and 0)
    double rmin[LANES]     # min r over the elements with p != 0 (and 1)
    uint64_t qbits[LANES]  # sign bits of q and of q's bits + 2^52


cdef inline void kl_group_f64(const double *p, const double *q, Py_ssize_t skip,
                              bint want_sums, bint masked, LanesF64 *L) noexcept nogil:
    """One group of LANES elements into the lanes: the term p log(p/q) =
    p (k ln2 + log z) + (p - r q) for the rounded r = p/q = 2^k z, and the
    running checks (rmax, rmin, qbits flag a ratio outside the normal range
    and a negative, infinite or NaN q).  Lanes j < skip hold elements already
    counted (the last group of a row overlaps the one before) and take p = 0,
    q = 1 instead.  Unmasked, p == q == 0 gives 0/0 = NaN and the caller
    redoes the block masked."""
    cdef Py_ssize_t j
    cdef double pv, qv, r, kd, t, rm
    cdef uint64_t qb
    for j in range(LANES):
        pv = p[j] if j >= skip else 0.0
        qv = q[j] if j >= skip else 1.0
        r = pv / qv
        t = pv * klm_log_parts_f64(r, &kd) + klm_residual_f64(pv, r, qv)
        if masked:
            t = t if pv != 0.0 else 0.0
        L.acc[j] += t
        L.acck[j] += pv * kd
        L.rmax[j] = r if r > L.rmax[j] else L.rmax[j]
        rm = r if pv != 0.0 else 1.0
        L.rmin[j] = rm if rm < L.rmin[j] else L.rmin[j]
        memcpy(&qb, &qv, 8)
        L.qbits[j] |= qb | (qb + <uint64_t>0x0010000000000000)
        if want_sums:
            L.ps[j] += pv
            L.qs[j] += qv


cdef inline bint kl_block_f64_pass(const double *p, const double *q, Py_ssize_t length,
                                   bint want_sums, bint masked, double *out) noexcept nogil:
    """KL sum of a contiguous block (length <= BLOCK_F64) into out[0], and the
    sums of p and q into out[1:3] when want_sums.  Returns True when an
    element needs the careful path (p or q negative, NaN or infinite, or
    p > 0 with p/q outside the normal range)."""
    cdef LanesF64 L
    cdef double pt[LANES]
    cdef double qt[LANES]
    cdef Py_ssize_t g, j, full = length - length % LANES, rem = length - full
    for j in range(LANES):
        pt[j] = 0.0
        qt[j] = 1.0
        L.acc[j] = 0.0
        L.acck[j] = 0.0
        L.ps[j] = 0.0
        L.qs[j] = 0.0
        L.rmax[j] = 0.0
        L.rmin[j] = 1.0
        L.qbits[j] = 0
    for g in range(full // LANES):
        kl_group_f64(p + g * LANES, q + g * LANES, 0, want_sums, masked, &L)
    if full and rem:
        # the last LANES elements, those of the group before skipped: no copy
        kl_group_f64(p + length - LANES, q + length - LANES, LANES - rem, False, masked, &L)
    elif rem:
        # a block shorter than LANES, copied to the top lanes
        for j in range(rem):
            pt[LANES - rem + j] = p[j]
            qt[LANES - rem + j] = q[j]
        kl_group_f64(pt, qt, LANES - rem, False, masked, &L)
    if want_sums:
        add_tail_sums(p + full, q + full, rem, L.ps, L.qs)
    for j in range(LANES):
        if not (L.rmax[j] <= DBL_MAX) or not (L.rmin[j] >= DBL_MIN) or L.qbits[j] >> 63:
            return True
    for j in range(LANES):
        L.acc[j] = klm_join_k_f64(L.acck[j], L.acc[j])
    out[0] = lane_total(L.acc)
    if want_sums:
        out[1] = lane_total(L.ps)
        out[2] = lane_total(L.qs)
    return False


cdef inline bint kl_block_f64(const double *p, const double *q, Py_ssize_t length,
                              bint want_sums, double *out) noexcept nogil:
    cdef bint bad
    if want_sums:
        bad = kl_block_f64_pass(p, q, length, True, False, out)
    else:
        bad = kl_block_f64_pass(p, q, length, False, False, out)
    if not bad and out[0] != out[0]:
        # p == q == 0 somewhere (see kl_group_f64): the rare block pays the mask
        bad = kl_block_f64_pass(p, q, length, want_sums, True, out)
    return bad


# ---- float32 KL block -----------------------------------------------------

ctypedef struct LanesF32:
    double acc[LANES]      # the terms, widened
    double ps[LANES]
    double qs[LANES]


cdef inline uint32_t kl_ratio_f32(float p, float q, bint masked, float *r,
                                  float *s) noexcept nogil:
    """r = p / q and its residual s = p - r q, with the check bits: the sign
    bit of the result is set when q is negative, -0, NaN or infinite, or when
    p != 0 and r is not normal, positive and finite (r's bits less FLT_MIN's
    leave [0, 2^31), or do after adding 2^24; q's bits + 2^23 reach the sign
    bit for an infinite or NaN q)."""
    cdef float rv = p / q, sv
    cdef uint32_t rb, qb, z, pmask = <uint32_t>0 - <uint32_t>(p != 0.0)
    memcpy(&rb, &rv, 4)
    memcpy(&qb, &q, 4)
    z = rb - <uint32_t>0x00800000
    sv = klm_residual_f32(p, rv, q)
    if masked:
        sv = sv if p != 0.0 else 0.0
    r[0] = rv
    s[0] = sv
    return ((z | (z + <uint32_t>0x01000000)) & pmask) | qb | (qb + <uint32_t>0x00800000)


cdef inline float kl_terms_f32(const float *p, const float *r, const float *s, Py_ssize_t skip,
                               Py_ssize_t j) noexcept nogil:
    """Term j of a group: p log r + (p - r q), 0 for a skipped lane."""
    cdef float pv = p[j] if j >= skip else 0.0
    return pv * r[j] + s[j]


cdef inline bint kl_block_f32_pass(const float *p, const float *q, Py_ssize_t length,
                                   bint want_sums, bint masked, float *rbuf,
                                   double *out) noexcept nogil:
    """The float32 block (length <= BLOCK_F32) in three short loops (fewer live
    values than one fused loop, measured faster): ratios, residuals and checks;
    the division-free log of the ratios in place; the terms p log r + (p - r q)
    in float, two groups added before they are widened to the double lanes.
    rbuf is scratch of 2 (BLOCK_F32 + LANES) floats (ratios, then their logs;
    residuals), from the caller so that this function stays small enough to
    inline with constant flags."""
    cdef float *sbuf = rbuf + BLOCK_F32 + LANES
    cdef float pt[LANES]
    cdef float qt[LANES]
    cdef const float *ptail = pt
    cdef const float *qtail = qt
    cdef LanesF32 L
    cdef uint32_t bad = 0
    cdef Py_ssize_t g, i, j, full = length - length % LANES, rem = length - full
    cdef Py_ssize_t pairs = full // (2 * LANES), skip = LANES - rem
    cdef float t
    for j in range(LANES):
        L.acc[j] = 0.0
        L.ps[j] = 0.0
        L.qs[j] = 0.0
        pt[j] = 0.0
        qt[j] = 1.0
    for i in range(full):
        bad |= kl_ratio_f32(p[i], q[i], masked, &rbuf[i], &sbuf[i])
    if rem:
        if full:
            # the last LANES elements, those of the group before skipped: no copy
            ptail = p + length - LANES
            qtail = q + length - LANES
        else:
            # a block shorter than LANES, copied to the top lanes
            for j in range(rem):
                pt[skip + j] = p[j]
                qt[skip + j] = q[j]
        for j in range(LANES):
            bad |= kl_ratio_f32(ptail[j] if j >= skip else 0.0, qtail[j] if j >= skip else 1.0,
                                masked, &rbuf[full + j], &sbuf[full + j])
    if bad >> 31:
        return True
    for i in range(full + (LANES if rem else 0)):
        rbuf[i] = klm_log_normal_f32(rbuf[i])
    for g in range(pairs):
        i = g * 2 * LANES
        for j in range(LANES):
            t = p[i + j] * rbuf[i + j] + (sbuf[i + j] + sbuf[i + LANES + j])
            L.acc[j] += p[i + LANES + j] * rbuf[i + LANES + j] + t
            if want_sums:
                L.ps[j] += p[i + j]
                L.qs[j] += q[i + j]
                L.ps[j] += p[i + LANES + j]
                L.qs[j] += q[i + LANES + j]
    if full % (2 * LANES):
        i = pairs * 2 * LANES
        for j in range(LANES):
            L.acc[j] += kl_terms_f32(p + i, rbuf + i, sbuf + i, 0, j)
            if want_sums:
                L.ps[j] += p[i + j]
                L.qs[j] += q[i + j]
    if want_sums:
        add_tail_sums(p + full, q + full, rem, L.ps, L.qs)
    if rem:
        for j in range(LANES):
            L.acc[j] += kl_terms_f32(ptail, rbuf + full, sbuf + full, skip, j)
    out[0] = lane_total(L.acc)
    if want_sums:
        out[1] = lane_total(L.ps)
        out[2] = lane_total(L.qs)
    return False


cdef inline bint kl_block_f32(const float *p, const float *q, Py_ssize_t length,
                              bint want_sums, float *scratch, double *out) noexcept nogil:
    cdef bint bad
    if want_sums:
        bad = kl_block_f32_pass(p, q, length, True, False, scratch, out)
    else:
        bad = kl_block_f32_pass(p, q, length, False, False, scratch, out)
    if not bad and out[0] != out[0]:
        bad = kl_block_f32_pass(p, q, length, want_sums, True, scratch, out)
    return bad


# ---- KL rows --------------------------------------------------------------

cdef inline const floating *gather(const floating *x, Py_ssize_t stride, Py_ssize_t length,
                                   floating *buf) noexcept nogil:
    """x itself when contiguous, else its elements copied into buf (a strided
    or broadcast operand is reduced in the same order as a contiguous one)."""
    cdef Py_ssize_t i
    if stride == 1:
        return x
    for i in range(length):
        buf[i] = x[i * stride]
    return buf


cdef int kl_row_fast(const floating *p, Py_ssize_t sp, const floating *q, Py_ssize_t sq,
                     Py_ssize_t n, bint want_sums, double *res) noexcept nogil:
    """The fast path of one row: ROW_OK, or ROW_NEEDS_CARE for a row the
    careful path must see (an element its checks flag, or an infinite total)."""
    cdef floating pbuf[BLOCK_F32]
    cdef floating qbuf[BLOCK_F32]
    cdef float scratch[2 * (BLOCK_F32 + LANES)]
    cdef double sums[3]
    cdef double kl = 0.0, kl_c = 0.0, ps = 0.0, ps_c = 0.0, qs = 0.0, qs_c = 0.0
    cdef Py_ssize_t start = 0, length, block = BLOCK_F64 if floating is double else BLOCK_F32
    cdef bint bad
    if n <= block and sp == 1 and sq == 1:
        # one contiguous block: no gather, no compensation needed
        res[1] = 0.0
        res[2] = 0.0
        if floating is double:
            bad = kl_block_f64(p, q, n, want_sums, res)
        else:
            bad = kl_block_f32(p, q, n, want_sums, scratch, res)
        return ROW_NEEDS_CARE if bad or not (fabs(res[0]) <= DBL_MAX) else ROW_OK
    while start < n:
        length = min(n - start, block)
        sums[1] = 0.0
        sums[2] = 0.0
        if floating is double:
            bad = kl_block_f64(gather(p + start * sp, sp, length, pbuf),
                               gather(q + start * sq, sq, length, qbuf), length, want_sums, sums)
        else:
            bad = kl_block_f32(gather(p + start * sp, sp, length, pbuf),
                               gather(q + start * sq, sq, length, qbuf), length, want_sums, scratch,
                               sums)
        if bad or not (fabs(sums[0]) <= DBL_MAX):
            return ROW_NEEDS_CARE
        neumaier(&kl, &kl_c, sums[0])
        neumaier(&ps, &ps_c, sums[1])
        neumaier(&qs, &qs_c, sums[2])
        start += length
    res[0] = kl + kl_c
    res[1] = ps + ps_c
    res[2] = qs + qs_c
    if not (fabs(res[0]) <= DBL_MAX):
        return ROW_NEEDS_CARE
    return ROW_OK


cdef inline double kl_term_careful(double p, double q, bint *pos_inf) noexcept nogil:
    """One term with libm and every special case (p, q >= 0 or NaN here)."""
    cdef double r, t
    if not (p > 0.0):
        return 0.0 if p == 0.0 else p * log(p / q)
    if q == 0.0:
        pos_inf[0] = True
        return 0.0
    r = p / q
    if DBL_MIN <= r <= DBL_MAX:
        t = p * log(r) + klm_residual_f64(p, r, q)
    else:
        t = p * (log(p) - log(q))
    if t == HUGE_VAL:
        pos_inf[0] = True
        return 0.0
    return t


cdef int kl_row_careful(const floating *p, Py_ssize_t sp, const floating *q, Py_ssize_t sq,
                        Py_ssize_t n, double *res) noexcept nogil:
    """The row in double with libm, in the block and lane order of the fast path."""
    cdef double kl = 0.0, kl_c = 0.0, ps = 0.0, ps_c = 0.0, qs = 0.0, qs_c = 0.0
    cdef double a[LANES]
    cdef double b[LANES]
    cdef double c[LANES]
    cdef double pv, qv
    cdef bint pos_inf = False
    cdef Py_ssize_t g, start, i, j, length
    for g in range((n + BLOCK_F64 - 1) // BLOCK_F64):
        start = g * BLOCK_F64
        length = min(n - start, BLOCK_F64)
        for j in range(LANES):
            a[j] = 0.0
            b[j] = 0.0
            c[j] = 0.0
        for i in range(length):
            pv = p[(start + i) * sp]
            qv = q[(start + i) * sq]
            j = i % LANES
            b[j] += pv
            c[j] += qv
            a[j] += kl_term_careful(pv, qv, &pos_inf)
        neumaier(&kl, &kl_c, lane_total(a))
        neumaier(&ps, &ps_c, lane_total(b))
        neumaier(&qs, &qs_c, lane_total(c))
    res[0] = HUGE_VAL if pos_inf else kl + kl_c
    res[1] = ps + ps_c
    res[2] = qs + qs_c
    return ROW_CAREFUL


cdef int find_bad(const floating *p, Py_ssize_t sp, const floating *q, Py_ssize_t sq,
                  Py_ssize_t n, int *which, Py_ssize_t *index, double *value) noexcept nogil:
    """First element (in row order, p before q) that is negative, NaN or
    infinite: returns 1 with which (0 = p, 1 = q), index and value, else 0."""
    cdef Py_ssize_t i
    cdef double pv, qv, top = DBL_MAX if floating is double else FLT_MAX_D
    for i in range(n):
        pv = p[i * sp]
        qv = q[i * sq]
        if not (0.0 <= pv <= top):
            which[0] = 0
            index[0] = i
            value[0] = pv
            return 1
        if not (0.0 <= qv <= top):
            which[0] = 1
            index[0] = i
            value[0] = qv
            return 1
    return 0


cdef int kl_row(const floating *p, Py_ssize_t sp, const floating *q, Py_ssize_t sq,
                Py_ssize_t n, int check, int want_sums, double *res) noexcept nogil:
    """Masked sum p log(p/q) of one row into res[0], and with want_sums the
    sums of p and q into res[1:3] (else 0).  Strides in elements (0 for a
    broadcast operand).  Returns ROW_OK or ROW_CAREFUL, or ROW_BAD when check
    is set and the row holds a negative, NaN or infinite value."""
    cdef int which
    cdef Py_ssize_t index
    cdef double value
    cdef int st = kl_row_fast(p, sp, q, sq, n, want_sums, res)
    if st == ROW_NEEDS_CARE:
        if check and find_bad(p, sp, q, sq, n, &which, &index, &value):
            return ROW_BAD
        st = kl_row_careful(p, sp, q, sq, n, res)
    return st


# ---- element-wise maps of the math, for accuracy tests ----------------------

cdef int math_map(int fn, int is_f32, const void *x, void *y, Py_ssize_t n) noexcept nogil:
    """y = f(x) for fn 0 log, 1 exp, 2 the KL kernels' log of a normal ratio."""
    cdef const double *xd = <const double *>x
    cdef double *yd = <double *>y
    cdef const float *xf = <const float *>x
    cdef float *yf = <float *>y
    cdef Py_ssize_t i
    cdef double k, lz
    for i in range(n):
        if is_f32:
            yf[i] = (klm_log_f32(xf[i]) if fn == 0 else klm_exp_f32(xf[i]) if fn == 1
                     else klm_log_normal_f32(xf[i]))
        elif fn == 2:
            lz = klm_log_parts_f64(xd[i], &k)
            yd[i] = klm_join_k_f64(k, lz)
        else:
            yd[i] = klm_log_f64(xd[i]) if fn == 0 else klm_exp_f64(xd[i])
    return 0


include "_core_gaussian.pxi"


# ---- the table --------------------------------------------------------------

cdef CoreTable _TABLE
cdef bytes _NAME = b""
_TABLE.kl_row_f64 = kl_row[double]
_TABLE.kl_row_f32 = kl_row[float]
_TABLE.find_bad_f64 = find_bad[double]
_TABLE.find_bad_f32 = find_bad[float]
_TABLE.math_map = math_map
_TABLE.gk_psums_f64 = gk_psums_row[double]
_TABLE.gk_psums_f32 = gk_psums_row[float]
_TABLE.gk_eval_f64 = gk_eval_row[double]
_TABLE.gk_eval_f32 = gk_eval_row[float]
_TABLE.gk_newton_f64 = gk_newton_row[double]
_TABLE.gk_newton_f32 = gk_newton_row[float]
_TABLE.gk_gd_f64 = gk_gd_row[double]
_TABLE.gk_gd_f32 = gk_gd_row[float]


def table(str name):
    """The kernels of this build as a capsule holding a CoreTable, named name."""
    global _NAME
    _NAME = name.encode("ascii")
    _TABLE.name = _NAME
    return PyCapsule_New(&_TABLE, b"kl_fast.CoreTable", NULL)

