# KL divergence from log-probabilities (kl_div_log), included by _core.pxi.
#
# With log-normalisers lp0, lq0 (the rows' log-sum-exp with normalize, else 0)
# the term of element i is exp(lp - lp0) ((lp - lp0) - (lq - lq0)): 0 where
# lp = -inf, and the divergence is +inf where lq = -inf under a finite lp.
# Each input is taken minus its own normaliser first: (lp - lq) - (lp0 - lq0)
# would cancel when lp0 and lq0 are large (lp0 = 1e15 left no correct digit).
#
# The fast paths map a block of terms into a buffer (a flat loop gcc
# vectorises), a term that would not be exact becomes NaN, the careful path's
# cue; the block is added in the fixed lanes (lane_sum) and the block totals
# with Neumaier compensation, so the order depends on n only.  float32 rows go
# first to the narrow kernel (the exponential in float, as a float pair times
# 2^k, the rest of the term in double), then to the wide one (the float64
# kernel on float input) when a value or a normaliser is out of its range.
# Each row function is an inline body called twice, with literal strides 1
# for contiguous rows and with the row's strides otherwise: strided operands
# are read in place (the terms are elementwise; measured faster than
# gathering them as the KL kernels do), and each copy of the loops keeps its
# own hoisted constants (one loop nest holding both spilled them).
from libc.math cimport exp, copysign, floor, frexp, ldexp, NAN
from libc.stdint cimport int32_t, int64_t, INT32_MAX, INT64_MAX

from kl_fast._core_table cimport (
    ROW_ZERO_SUM_P, ROW_ZERO_SUM_Q, sumexp_narrow_fits, log_normaliser,
)

cdef extern from "kl_math.h" nogil:
    float klm_exp_split_f32(float x, float xlo, float *ylo, int32_t *k)
    # ln 2 = HI + LO, k HI exact for |k| < 2^21
    double LN2_HI "KLM_LN2HI_D"
    double LN2_LO "KLM_LN2LO_D"
    double klm_scale_pair_f64(float y, float ylo, int32_t k)

cdef extern from *:
    float FLT_MAX_F "FLT_MAX"
    float NINF_F "(-(float)HUGE_VAL)"
    # the narrow kernel's exponents a: taken as they are inside [A_MIN, A_MAX]
    # (e = y 2^k is a normal double, e times any float difference finite),
    # terms below exp(NEGLIGIBLE) count 0 (e |diff| < 2^-1074), others need
    # the wide kernel
    float LOG_A_MIN_F "(-700.0f)"
    float LOG_A_MAX_F "88.0f"
    float LOG_NEGLIGIBLE_F "(-1500.0f)"
    # |lp0| up to 2^16 keeps the low part of lp0 as a float pair below 2^-8
    double LOG_LP0_MAX_F32 "0x1p16"
    double LOG_C_MAX_F32 "0x1p100"
    double LN2 "0.693147180559945309417232121458"

cdef enum:
    LOG_NEGLIGIBLE = -1500   # below this exponent exp(a) |diff| < 2^-1074
    LOG_SHIFT_ABOVE = 600    # careful path: larger terms are summed scaled
    LOG_EXP_SCALED_MAX = 1 << 20   # exp_scaled's range of a (k ln2's high part exact)
    LOG_TERM_NEGLIGIBLE = -2000    # careful path: a term whose exponent (scaled or not)
                                   # lies below this is 0 beside the sum


# ---- sums ---------------------------------------------------------------------

cdef inline double lane_sum(const double *t, Py_ssize_t length) noexcept nogil:
    """t[0:length] in the fixed lanes (lane j takes t[i] with i % LANES == j,
    the last partial group too), added by lane_total."""
    cdef double lane[LANES]
    cdef Py_ssize_t g, j, full = length - length % LANES
    for j in range(LANES):
        lane[j] = 0.0
    for g in range(full // LANES):
        for j in range(LANES):
            lane[j] += t[g * LANES + j]
    for j in range(length - full):
        lane[j] += t[full + j]
    return lane_total(lane)


# ---- float64 terms (and float32 widened) ---------------------------------------

cdef inline double log_term_f64(double lp, double lq, double lp0, double lq0) noexcept nogil:
    """The term, NaN where it would not be exact: NaN or +inf input, exp that
    overflows, a difference or product that overflows, or exp that underflows
    while the term itself may not.  0 where lp or lq is -inf (the +inf of
    lq == -inf under a finite lp is counted apart)."""
    cdef double a = lp - lp0
    cdef double e = klm_exp_f64(a)
    cdef double diff = a - (lq - lq0)
    cdef double t = e * diff
    cdef bint bad = (not (lp <= DBL_MAX)) | (not (lq <= DBL_MAX))
    cdef bint fin = (lp > -HUGE_VAL) & (lq > -HUGE_VAL)
    cdef bint over = (not (fabs(t) <= DBL_MAX)) | (not (fabs(diff) <= DBL_MAX))
    cdef bint under = (e < DBL_MIN) & (a > LOG_NEGLIGIBLE) & (fabs(diff) > 1.0)
    cdef bint care = bad | (fin & (over | under))
    return NAN if care else (t if fin else 0.0)


cdef inline int log_map_wide(const floating *p, Py_ssize_t sp, const floating *q, Py_ssize_t sq,
                             Py_ssize_t length, double lp0, double lq0, double *t) noexcept nogil:
    """Terms of a block into t; 1 when some lq == -inf under a finite lp.  The
    flag is 64-bit so that gcc runs the loop 4 doubles at a time: with a
    32-bit one it takes 8, about 5% faster on long rows but 25% slower on
    rows of 10 to 30."""
    cdef Py_ssize_t i
    cdef double lp, lq
    cdef int64_t ninf = 0
    for i in range(length):
        lp = p[i * sp]
        lq = q[i * sq]
        t[i] = log_term_f64(lp, lq, lp0, lq0)
        ninf |= (lp > -HUGE_VAL) & (lq == -HUGE_VAL)
    return ninf != 0


cdef inline bint narrow_fits(double lp0, double lq0) noexcept nogil:
    """The normalisers are within the narrow kernel's range."""
    return fabs(lp0) <= LOG_LP0_MAX_F32 and fabs(lp0 - lq0) <= LOG_C_MAX_F32


cdef inline int wide_blocks(const floating *p, Py_ssize_t sp, const floating *q, Py_ssize_t sq,
                            Py_ssize_t n, Py_ssize_t b0, Py_ssize_t b1, double lp0, double lq0,
                            double *totals, int *ninf) noexcept nogil:
    """log_blocks in double."""
    cdef double t[BLOCK_F64]
    cdef double block_total
    cdef Py_ssize_t k, start, length
    for k in range(b0, b1):
        start = k * BLOCK_F64
        length = min(n - start, BLOCK_F64)
        ninf[0] |= log_map_wide(p + start * sp, sp, q + start * sq, sq, length, lp0, lq0, t)
        block_total = lane_sum(t, length)
        if not (fabs(block_total) <= DBL_MAX):
            return ROW_NEEDS_CARE
        totals[k - b0] = block_total
    return ROW_OK


cdef inline int narrow_blocks(const float *p, Py_ssize_t sp, const float *q, Py_ssize_t sq,
                              Py_ssize_t n, Py_ssize_t b0, Py_ssize_t b1, double lp0, double lq0,
                              double *totals, int *ninf) noexcept nogil:
    """log_blocks in float (normalisers within narrow_fits)."""
    cdef double t[BLOCK_F32]
    cdef double c = lp0 - lq0, block_total
    cdef float h0 = <float>lp0, l0 = <float>(lp0 - <double>h0)
    cdef Py_ssize_t k, start, length
    for k in range(b0, b1):
        start = k * BLOCK_F32
        length = min(n - start, BLOCK_F32)
        ninf[0] |= log_map_narrow(p + start * sp, sp, q + start * sq, sq, length, h0, l0, c, t)
        block_total = lane_sum(t, length)
        if block_total != block_total:
            return ROW_NEEDS_CARE
        totals[k - b0] = block_total
    return ROW_OK


cdef inline int blocks_body(const floating *p, Py_ssize_t sp, const floating *q, Py_ssize_t sq,
                            Py_ssize_t n, Py_ssize_t b0, Py_ssize_t b1, double lp0, double lq0,
                            bint narrow, double *totals, int *ninf) noexcept nogil:
    """log_blocks for given strides (called with literal strides 1 for
    contiguous rows)."""
    if floating is float:
        if narrow:
            if not narrow_fits(lp0, lq0):
                return ROW_NEEDS_CARE
            return narrow_blocks(p, sp, q, sq, n, b0, b1, lp0, lq0, totals, ninf)
    return wide_blocks(p, sp, q, sq, n, b0, b1, lp0, lq0, totals, ninf)


cdef int log_blocks(const floating *p, Py_ssize_t sp, const floating *q, Py_ssize_t sq,
                    Py_ssize_t n, Py_ssize_t b0, Py_ssize_t b1, double lp0, double lq0,
                    int narrow, double *totals, int *ninf) noexcept nogil:
    """Block totals of blocks b0 .. b1 - 1 of a row of n elements into
    totals[k - b0], with the terms in double (blocks of BLOCK_F64) or with
    narrow (float rows) in float (blocks of BLOCK_F32); ninf[0] is set to 1
    when some lq == -inf under a finite lp.  Returns ROW_OK, or ROW_NEEDS_CARE
    when a term or block total needs the next path.  Blocks are independent:
    threads may share a row."""
    if sp == 1 and sq == 1:
        return blocks_body(p, 1, q, 1, n, b0, b1, lp0, lq0, narrow, totals, ninf)
    return blocks_body(p, sp, q, sq, n, b0, b1, lp0, lq0, narrow, totals, ninf)


cdef inline int log_total(double total, int ninf, double *res) noexcept nogil:
    """A row's result from its blocks' total: ROW_OK, or ROW_NEEDS_CARE
    when it is not finite; +inf where some lq == -inf under a finite lp."""
    res[0] = total
    if not (fabs(total) <= DBL_MAX):
        return ROW_NEEDS_CARE
    if ninf:
        res[0] = HUGE_VAL
    return ROW_OK


cdef inline int row_blocks(const floating *p, Py_ssize_t sp, const floating *q, Py_ssize_t sq,
                           Py_ssize_t n, double lp0, double lq0, bint narrow,
                           double *res) noexcept nogil:
    """The fast path of one row into res[0] (blocks_body, add_totals): ROW_OK,
    or ROW_NEEDS_CARE when a term or a total needs the next path."""
    cdef double totals[BLOCK_BATCH]
    cdef double acc[2]
    cdef int ninf = 0
    cdef Py_ssize_t b0 = 0, b1, block = BLOCK_F32 if narrow else BLOCK_F64
    cdef Py_ssize_t nblocks = (n + block - 1) // block
    acc[0] = 0.0
    acc[1] = 0.0
    while b0 < nblocks:
        b1 = min(b0 + BLOCK_BATCH, nblocks)
        if blocks_body(p, sp, q, sq, n, b0, b1, lp0, lq0, narrow, totals, &ninf) != ROW_OK:
            return ROW_NEEDS_CARE
        add_totals(totals, b1 - b0, acc)
        b0 = b1
    return log_total(acc[0] + acc[1], ninf, res)


cdef int log_row_wide(const floating *p, Py_ssize_t sp, const floating *q, Py_ssize_t sq,
                      Py_ssize_t n, double lp0, double lq0, double *res) noexcept nogil:
    """The fast path of one row in double into res[0]: ROW_OK, or
    ROW_NEEDS_CARE when a term or a block total is not finite."""
    if sp == 1 and sq == 1:
        return row_blocks(p, 1, q, 1, n, lp0, lq0, False, res)
    return row_blocks(p, sp, q, sq, n, lp0, lq0, False, res)


cdef inline void sumexp_wide_blocks(const floating *x, Py_ssize_t sx, Py_ssize_t n,
                                    Py_ssize_t b0, Py_ssize_t b1, double mx,
                                    double *totals, double *counts) noexcept nogil:
    """Sums of exp(x - mx) over blocks b0 .. b1 - 1 of BLOCK_F64 elements into
    totals[k - b0], in lanes, but for the entries equal to mx (and NaN and +inf,
    which count 0): their number into counts[k - b0] (log_normaliser)."""
    cdef double lane[LANES]
    cdef int64_t top[LANES]
    cdef double v
    cdef Py_ssize_t k, g, j, i, length, full
    for k in range(b0, b1):
        i = k * BLOCK_F64
        length = min(n - i, BLOCK_F64)
        full = length - length % LANES
        for j in range(LANES):
            lane[j] = 0.0
            top[j] = 0
        # lane_sum's order, each group of LANES added as it is made: the lanes'
        # additions overlap the exps (a separate pass waited on each addition)
        for g in range(full // LANES):
            for j in range(LANES):
                v = x[(i + g * LANES + j) * sx]
                top[j] += v == mx
                lane[j] += klm_exp_f64(v - mx) if (v <= DBL_MAX) & (v != mx) else 0.0
        for j in range(length - full):
            v = x[(i + full + j) * sx]
            top[j] += v == mx
            lane[j] += klm_exp_f64(v - mx) if (v <= DBL_MAX) & (v != mx) else 0.0
        totals[k - b0] = lane_total(lane)
        counts[k - b0] = <double>(((top[0] + top[1]) + (top[2] + top[3]))
                                  + ((top[4] + top[5]) + (top[6] + top[7])))


# ---- float32 terms in float (narrow) ------------------------------------------

cdef inline float sub_pair(float x, float h0, float l0, float *lo) noexcept nogil:
    """x - (h0 + l0) as a float pair (hi, lo): Knuth's TwoSum on x - h0."""
    cdef float s = x - h0
    cdef float bb = s - x
    lo[0] = ((x - (s - bb)) + (-h0 - bb)) - l0
    return s


cdef inline double exp_pair(bint keep, float ahi, float alo) noexcept nogil:
    """exp(ahi + alo) in double where keep is set, else 0 (the exponent of a
    lane not kept is never used)."""
    cdef float y, ylo
    cdef int32_t k
    y = klm_exp_split_f32(ahi if keep else 0.0, alo if keep else 0.0, &ylo, &k)
    return klm_scale_pair_f64(y, ylo, k) if keep else 0.0


cdef inline double log_term_f32(float lp, float lq, float h0, float l0, double c) noexcept nogil:
    """The term e ((lp - lq) - c) with e = exp(lp - (h0 + l0)) from the float
    pair a = lp - (h0 + l0); NaN (the wide kernel's cue) for NaN or +inf
    input and for a finite pair whose a is outside [A_MIN, A_MAX] and not
    below NEGLIGIBLE; 0 where lp or lq is -inf."""
    cdef bint fin = (lp > NINF_F) & (lq > NINF_F)
    cdef float lps = lp if fin else 0.0
    cdef float lqs = lq if fin else 0.0
    cdef float alo
    cdef float ahi = sub_pair(lps, h0, l0, &alo)
    cdef bint keep = fin & (ahi >= LOG_A_MIN_F) & (ahi <= LOG_A_MAX_F)
    cdef bint bad = ((not (lp <= FLT_MAX_F)) | (not (lq <= FLT_MAX_F))
                     | (fin & (not keep) & (ahi >= LOG_NEGLIGIBLE_F)))
    cdef double t = exp_pair(keep, ahi, alo) * ((<double>lps - <double>lqs) - c)
    return NAN if bad else t


cdef inline int log_map_narrow(const float *p, Py_ssize_t sp, const float *q, Py_ssize_t sq,
                               Py_ssize_t length, float h0, float l0, double c,
                               double *t) noexcept nogil:
    """log_map_wide for log_term_f32 (strides as there)."""
    cdef Py_ssize_t i
    cdef float lp, lq
    cdef int ninf = 0
    for i in range(length):
        lp = p[i * sp]
        lq = q[i * sq]
        t[i] = log_term_f32(lp, lq, h0, l0, c)
        ninf |= (lp > NINF_F) & (lq == NINF_F)
    return ninf


cdef int log_row_narrow(const float *p, Py_ssize_t sp, const float *q, Py_ssize_t sq,
                        Py_ssize_t n, double lp0, double lq0, double *res) noexcept nogil:
    """log_row_wide's contract for float rows, computed in float where it can
    be: ROW_NEEDS_CARE sends the row to log_row_wide."""
    if sp == 1 and sq == 1:
        return row_blocks(p, 1, q, 1, n, lp0, lq0, True, res)
    return row_blocks(p, sp, q, sq, n, lp0, lq0, True, res)


cdef inline void sumexp_narrow_blocks(const float *x, Py_ssize_t sx, Py_ssize_t n,
                                      Py_ssize_t b0, Py_ssize_t b1, double mx,
                                      double *totals, double *counts) noexcept nogil:
    """sumexp_wide_blocks for a float row with |mx| <= 2^16 (mx its largest
    finite entry), in blocks of BLOCK_F32: NaN, +inf and exponents below A_MIN
    count 0 (e < 2^-1000, against a sum of at least 1)."""
    cdef double t[BLOCK_F32]
    cdef float h0 = <float>mx, l0 = <float>(mx - <double>h0), v, ahi, alo
    cdef int32_t top
    cdef Py_ssize_t k, start, length, i
    for k in range(b0, b1):
        start = k * BLOCK_F32
        length = min(n - start, BLOCK_F32)
        top = 0
        for i in range(length):
            v = x[(start + i) * sx]
            top += v == h0
            ahi = sub_pair(v, h0, l0, &alo)
            t[i] = exp_pair((ahi >= LOG_A_MIN_F) & (v <= FLT_MAX_F) & (v != h0), ahi, alo)
        totals[k - b0] = lane_sum(t, length)
        counts[k - b0] = <double>top


cdef int sumexp_blocks(const floating *x, Py_ssize_t sx, Py_ssize_t n, Py_ssize_t b0,
                       Py_ssize_t b1, double mx, int narrow, double *totals,
                       double *counts) noexcept nogil:
    """Sums of exp(x - mx) over blocks b0 .. b1 - 1 of a row into totals[k - b0],
    but for the entries equal to mx, counted into counts[k - b0]: in double
    (blocks of BLOCK_F64) or with narrow (a float row within
    sumexp_narrow_fits) in float (blocks of BLOCK_F32).  Returns ROW_OK.
    Blocks are independent: threads may share a row."""
    if floating is float:
        if narrow:
            if sx == 1:
                sumexp_narrow_blocks(x, 1, n, b0, b1, mx, totals, counts)
            else:
                sumexp_narrow_blocks(x, sx, n, b0, b1, mx, totals, counts)
            return ROW_OK
    if sx == 1:
        sumexp_wide_blocks(x, 1, n, b0, b1, mx, totals, counts)
    else:
        sumexp_wide_blocks(x, sx, n, b0, b1, mx, totals, counts)
    return ROW_OK


# ---- normalisers ----------------------------------------------------------------

cdef inline int64_t order_key_f64(double x) noexcept nogil:
    """An integer ordered as the doubles x (-0 below +0): x's bits, the
    magnitude bits flipped when negative.  The same map turns a key back."""
    cdef int64_t b
    memcpy(&b, &x, 8)
    return b ^ ((b >> 63) & INT64_MAX)


cdef inline int32_t order_key_f32(float x) noexcept nogil:
    cdef int32_t b
    memcpy(&b, &x, 4)
    return b ^ ((b >> 31) & INT32_MAX)


cdef inline bint max_finite(const floating *x, Py_ssize_t sx, Py_ssize_t n,
                           double *xmax) noexcept nogil:
    """Largest finite entry of a row into xmax (-inf for an empty or all -inf
    row); True when the row holds NaN or +inf.  The maximum is taken over
    order_key integers, a reduction gcc vectorises (the floating-point one
    it would not without -ffinite-math-only); of -0 and +0, +0 is the larger
    (either gives the same normaliser)."""
    cdef Py_ssize_t i
    cdef int64_t k64, ok64, bad64 = 0, m64 = order_key_f64(-HUGE_VAL), ninf64 = m64
    cdef int32_t k32, ok32, bad32 = 0, m32 = order_key_f32(NINF_F), ninf32 = m32
    cdef double vd
    cdef float vf
    if floating is double:
        for i in range(n):
            ok64 = -<int64_t>(x[i * sx] <= DBL_MAX)
            bad64 |= ~ok64
            k64 = (order_key_f64(x[i * sx]) & ok64) | (ninf64 & ~ok64)
            m64 = k64 if k64 > m64 else m64
        k64 = m64 ^ ((m64 >> 63) & INT64_MAX)
        memcpy(&vd, &k64, 8)
        xmax[0] = vd
        return bad64 != 0
    else:
        for i in range(n):
            ok32 = -<int32_t>(x[i * sx] <= FLT_MAX_F)
            bad32 |= ~ok32
            k32 = (order_key_f32(x[i * sx]) & ok32) | (ninf32 & ~ok32)
            m32 = k32 if k32 > m32 else m32
        k32 = m32 ^ ((m32 >> 31) & INT32_MAX)
        memcpy(&vf, &k32, 4)
        xmax[0] = vf
        return bad32 != 0


cdef bint log_max(const floating *x, Py_ssize_t sx, Py_ssize_t n, double *xmax) noexcept nogil:
    if sx == 1:
        return max_finite(x, 1, n, xmax)
    return max_finite(x, sx, n, xmax)


cdef double log_lse(const floating *x, Py_ssize_t sx, Py_ssize_t n, double mx,
                    double *lo) noexcept nogil:
    """The row's log-sum-exp (log_normaliser, its rounding error into lo[0]), mx
    its largest finite entry: the sums of its blocks (sumexp_blocks) added in
    order, the counts of entries equal to mx exactly."""
    cdef double totals[BLOCK_BATCH]
    cdef double counts[BLOCK_BATCH]
    cdef double acc[2]
    cdef double top = 0.0
    cdef bint narrow = floating is float and sumexp_narrow_fits(mx)
    cdef Py_ssize_t k, b0 = 0, b1, block = BLOCK_F32 if narrow else BLOCK_F64
    cdef Py_ssize_t nblocks = (n + block - 1) // block
    acc[0] = 0.0
    acc[1] = 0.0
    while b0 < nblocks:
        b1 = min(b0 + BLOCK_BATCH, nblocks)
        sumexp_blocks(x, sx, n, b0, b1, mx, narrow, totals, counts)
        add_totals(totals, b1 - b0, acc)
        for k in range(b1 - b0):
            top += counts[k]
        b0 = b1
    return log_normaliser(mx, top, acc[0] + acc[1], lo)


# ---- careful path: scalar, libm, exact semantics for every finite input ---------

cdef inline double diff_part(double lp, double lq, double lp0, double lq0,
                             int *half) noexcept nogil:
    """diff = (lp - lp0) - (lq - lq0) where it is finite (half = 0), else the
    difference of the halves, diff / 2 (half = 1): diff = result * 2^half."""
    cdef double diff = (lp - lp0) - (lq - lq0)
    half[0] = not (fabs(diff) <= DBL_MAX)
    if half[0]:
        diff = (0.5 * lp - 0.5 * lp0) - (0.5 * lq - 0.5 * lq0)
    return diff


cdef inline double log_diff_log(double lp, double lq, double lp0, double lq0,
                                double *sign) noexcept nogil:
    """log|diff| and the sign of diff = (lp - lp0) - (lq - lq0), without overflow."""
    cdef int half = 0
    sign[0] = diff_part(lp, lq, lp0, lq0, &half)
    return log(fabs(sign[0])) + half * LN2


cdef inline int diff_exponent(double lp, double lq, double lp0, double lq0) noexcept nogil:
    """e with diff = (lp - lp0) - (lq - lq0) = m 2^e, |m| in [1/2, 1) (frexp's),
    also where diff itself would overflow."""
    cdef int half = 0, e = 0
    frexp(diff_part(lp, lq, lp0, lq0, &half), &e)
    return e + half


cdef inline double exp_scaled(double a, double s, int e) noexcept nogil:
    """s exp(a) 2^e for a <= LOG_EXP_SCALED_MAX, without overflow on the way: a = k ln2 + r
    (Cody-Waite, k ln2's high part exact) and s = m 2^es (m in [1/2, 1)), then
    m exp(r) scaled by 2^(k + es + e) (exactly, but for the result's own over- or
    underflow)."""
    cdef double k = floor(a / LN2 + 0.5)
    cdef double r = (a - k * LN2_HI) - k * LN2_LO
    cdef int es = 0
    cdef double m = frexp(s, &es)
    return ldexp(m * exp(r), <int>k + es + e)


cdef inline double scaled_term(double a, double d, int half, double top_a,
                               int top_e) noexcept nogil:
    """A term exp(a) diff (a = lp - lp0, diff = d 2^half from diff_part) over
    the scale exp(top_a) 2^top_e: exp(s) (diff 2^-top_e) for s = a - top_a,
    with the rounding of s carried (TwoSum) and exp(s) applied as exp_scaled
    does (no under- or overflow on the way), so the term is within about an
    ulp however far a lies from top_a.  (s <= 1455: the largest term's
    a + log|diff| is at least this one's, and log|diff| >= -745.  Below
    s = LOG_TERM_NEGLIGIBLE the term is under 2^-785 of the largest: 0.)"""
    cdef double s = a - top_a, b, err, t
    if s < LOG_TERM_NEGLIGIBLE:
        return 0.0
    b = s - a
    err = (a - (s - b)) + (-top_a - b)
    t = exp_scaled(s, d, half - top_e)
    return t + t * err


cdef inline double unscaled_term(double a, double d, int half) noexcept nogil:
    """A term exp(a) diff (a = lp - lp0, diff = d 2^half from diff_part)
    without a scale: the product where both factors are in range, else as
    exp_scaled forms it (exp(a) under- or overflowing on its own; a <= 1345
    here, as a + log|diff| <= LOG_SHIFT_ABOVE; below a = LOG_TERM_NEGLIGIBLE
    the term is under 2^-1860: 0)."""
    cdef double e = exp(a)
    if e >= DBL_MIN and half == 0:
        return e * d
    if a < LOG_TERM_NEGLIGIBLE:
        return 0.0
    return exp_scaled(a, d, half)


cdef int log_row_careful(const floating *p, Py_ssize_t sp, const floating *q, Py_ssize_t sq,
                         Py_ssize_t n, double lp0, double lq0, double *res) noexcept nogil:
    """The row in double with libm, in the block and lane order of the fast
    path; where some term is beyond exp(LOG_SHIFT_ABOVE) the terms are summed
    scaled by the largest's exp(a*) 2^e* (a* = lp - lp0 and e* the binary
    exponent of its diff): each as exp(a - a*) (diff 2^-e*) (scaled_term), so
    terms of weights far beyond the range (a ~ 1e300) keep their proportions
    and their sum its sign; the sum is scaled back as s exp(a*) 2^e*
    (exp_scaled: no rounding of a large exponent).  Other terms are formed as
    unscaled_term does.  No partial sum overflows and +inf never meets -inf.
    NaN when the row holds NaN or +inf (check=False)."""
    cdef double kl = 0.0, kl_c = 0.0, sign, lp, lq, a, ld, t, s, d
    cdef double top_a = 0.0, top_l = -HUGE_VAL   # the largest term's a and log|diff|
    cdef double acc[LANES]
    cdef bint pos_inf = False, bad = False, scaled
    cdef int top_e = 0, half = 0
    cdef Py_ssize_t g, start, i, j, length
    # first pass: the largest term (compared by the exact-ish difference of the
    # logs of two terms), to pick the scale
    for i in range(n):
        lp = p[i * sp]
        lq = q[i * sq]
        if not (lp <= DBL_MAX and lq <= DBL_MAX):
            bad = True
            continue
        if lp > -HUGE_VAL and lq > -HUGE_VAL:
            a = lp - lp0
            ld = log_diff_log(lp, lq, lp0, lq0, &sign)
            if ld > -HUGE_VAL and (top_l == -HUGE_VAL or (a - top_a) + (ld - top_l) > 0.0):
                top_a = a
                top_l = ld
                top_e = diff_exponent(lp, lq, lp0, lq0)
    scaled = top_l > -HUGE_VAL and top_a + top_l > LOG_SHIFT_ABOVE
    for g in range((n + BLOCK_F64 - 1) // BLOCK_F64):
        start = g * BLOCK_F64
        length = min(n - start, BLOCK_F64)
        for j in range(LANES):
            acc[j] = 0.0
        for i in range(length):
            lp = p[(start + i) * sp]
            lq = q[(start + i) * sq]
            t = 0.0
            if not (lp <= DBL_MAX and lq <= DBL_MAX) or lp == -HUGE_VAL:
                t = 0.0
            elif lq == -HUGE_VAL:
                pos_inf = True
            else:
                d = diff_part(lp, lq, lp0, lq0, &half)
                if d == 0.0:
                    t = 0.0
                elif scaled:
                    t = scaled_term(lp - lp0, d, half, top_a, top_e)
                else:
                    t = unscaled_term(lp - lp0, d, half)
            acc[i % LANES] += t
        neumaier(&kl, &kl_c, lane_total(acc))
    if bad:
        res[0] = NAN
    elif pos_inf:
        res[0] = HUGE_VAL
    elif not scaled:
        res[0] = kl + kl_c
    else:
        s = kl + kl_c
        if s == 0.0:
            res[0] = 0.0
        elif top_a > LOG_EXP_SCALED_MAX:
            res[0] = copysign(HUGE_VAL, s)   # an overflow whatever s is
        else:
            res[0] = exp_scaled(top_a, s, top_e)
    return ROW_CAREFUL


cdef int log_find_bad(const floating *p, Py_ssize_t sp, const floating *q, Py_ssize_t sq,
                      Py_ssize_t n, int *which, Py_ssize_t *index, double *value) noexcept nogil:
    """First element (in row order, lp before lq) that is NaN or +inf: returns
    1 with which (0 = lp, 1 = lq), index and value, else 0."""
    cdef Py_ssize_t i
    cdef double lp, lq
    for i in range(n):
        lp = p[i * sp]
        lq = q[i * sq]
        if not (lp <= DBL_MAX):
            which[0] = 0
            index[0] = i
            value[0] = lp
            return 1
        if not (lq <= DBL_MAX):
            which[0] = 1
            index[0] = i
            value[0] = lq
            return 1
    return 0


# ---- rows -------------------------------------------------------------------------

cdef double log_normalised(double kl, double lo_p, double lo_q) noexcept nogil:
    """The divergence from kl, the row's sum of exp(a) (a - b) with a = lp - lp0
    and b = lq - lq0 for the rounded normalisers: the exact a and b are lo_p
    and lo_q less (log_normaliser), so the weights exp(a) are exp(-lo_p)
    times these and sum to 1 (their sum here is exp(lo_p)): the divergence is
    exp(-lo_p) kl - (lo_p - lo_q).  kl itself where both are 0, or kl is not
    finite.  Its products may be fused on one target and not on another, so
    every path of a row (the long row over threads too) calls this one copy,
    through the table."""
    cdef double w
    if (lo_p == 0.0 and lo_q == 0.0) or not (-DBL_MAX <= kl <= DBL_MAX):
        return kl
    if -9.5367431640625e-07 <= lo_p <= 9.5367431640625e-07:   # 2^-20
        # exp(-lo) - 1 to 2^-60 relative: the usual case, without a call
        w = kl + kl * (lo_p * (0.5 * lo_p - 1.0))
    else:
        w = exp(-lo_p) * kl
    return w - (lo_p - lo_q)


cdef int kl_log_row(const floating *p, Py_ssize_t sp, const floating *q, Py_ssize_t sq,
                    Py_ssize_t n, int normalize, int check, double *res) noexcept nogil:
    """One row of kl_div_log: res = (KL, lp0, lq0), lp0 and lq0 the rows'
    log-sum-exp with normalize (rounded; the result is corrected for their
    rounding, log_normalised), else 0.  Strides in elements (0 for a
    broadcast operand).  Returns ROW_OK or ROW_CAREFUL; ROW_BAD when check is
    set and the row holds NaN or +inf; with normalize ROW_ZERO_SUM_P / _Q when
    log_p / log_q is -inf everywhere."""
    cdef int which, st
    cdef Py_ssize_t index
    cdef double value, mp, mq, lo_p = 0.0, lo_q = 0.0
    cdef bint bad
    res[1] = 0.0
    res[2] = 0.0
    if normalize:
        bad = log_max(p, sp, n, &mp)
        bad |= log_max(q, sq, n, &mq)
        if bad and check and log_find_bad(p, sp, q, sq, n, &which, &index, &value):
            return ROW_BAD
        if mp == -HUGE_VAL:
            return ROW_ZERO_SUM_P
        if mq == -HUGE_VAL:
            return ROW_ZERO_SUM_Q
        res[1] = log_lse(p, sp, n, mp, &lo_p)
        res[2] = log_lse(q, sq, n, mq, &lo_q)
    st = ROW_NEEDS_CARE
    if floating is float:
        st = log_row_narrow(p, sp, q, sq, n, res[1], res[2], res)
    if st == ROW_NEEDS_CARE:
        st = log_row_wide(p, sp, q, sq, n, res[1], res[2], res)
    if st == ROW_NEEDS_CARE:
        if check and log_find_bad(p, sp, q, sq, n, &which, &index, &value):
            return ROW_BAD
        st = log_row_careful(p, sp, q, sq, n, res[1], res[2], res)
    res[0] = log_normalised(res[0], lo_p, lo_q)
    return st


cdef void centred_log_f64(const double *x, const double *r, double *y,
                          Py_ssize_t n) noexcept nogil:
    """y = log(x / r) where x > 0 and 0 where x == 0, for r > 0 (the centred log
    matrix of the all-pairs KL product, whose zeros are handled apart).  The
    ratio t = x / r is rounded; the residual x - t r is exact and adds its
    first-order term, so y is accurate to an ulp of itself even where x ~ r.  A
    ratio in the subnormals (y below log(DBL_MIN) = -708.4) has lost bits that
    one term cannot give back: there y is log(x) - log(r), in a second pass that
    only such rows take, so that the first stays branch-free."""
    cdef Py_ssize_t i
    cdef double t, l
    cdef int low = 0
    for i in range(n):
        t = x[i] / r[i]
        l = klm_log_f64(t) + klm_residual_f64(x[i], t, r[i]) / x[i]
        y[i] = l if x[i] > 0.0 else 0.0
    for i in range(n):
        low |= y[i] < -708.0
    if low:
        for i in range(n):
            if y[i] < -708.0:
                y[i] = klm_log_f64(x[i]) - klm_log_f64(r[i])


cdef void exp_split_map(const float *x, const float *xlo, double *y, Py_ssize_t n) noexcept nogil:
    """y = exp(x + xlo) of the narrow kernels, element-wise (for accuracy tests)."""
    cdef Py_ssize_t i
    for i in range(n):
        y[i] = exp_pair(True, x[i], xlo[i])
