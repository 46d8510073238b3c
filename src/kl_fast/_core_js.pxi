# The Jensen-Shannon row kernels (included by _core.pxi; the sums, blocks,
# lanes, gather and find_bad are its own).
#
# JS(p, q) = 0.5 KL(p || m) + 0.5 KL(q || m), m = (p + q) / 2, in one pass:
# with s = x + y and d = (x - y) / s the pair (x, y) contributes
#     0.5 x log(2x / s) + 0.5 y log(2y / s) = (s / 4) g(d),
#     g(d) = (1 + d) log(1 + d) + (1 - d) log(1 - d) = sum_k d^(2k) / (k (2k - 1)).
# The two logs cancel to first order when x is close to y, so for |d| < 1/2 g
# comes from its series (no cancellation), otherwise from the logs
# (cancellation by a factor of at most about 4), with the first-order effect
# of rounding u = 1 + d and v = 1 - d added (js_direct).  Both are computed
# and one is selected, so the loops vectorise.
#
# A row of js_row_scaled is the sum of the terms of the pairs (a p_i, b q_i);
# js_row_divided picks a = 1 / ps, b = 1 / qs safely, and js_row computes ps
# and qs (normalize) in the order of the KL kernel's sums, so they equal its
# sums bit for bit.  The fast path (float64: terms in double; float32: in
# float where it can, else in double) flags what it cannot take; the careful
# path (libm, scaling by powers of two) takes every other row.  Terms are
# added in the fixed lanes, blocks with Neumaier compensation: the result
# depends only on the data and n, and swapping (a, p) with (b, q) gives the
# same bits.
from libc.math cimport NAN

cdef extern from "kl_math.h" nogil:
    double klm_log_normal_f64(double x)
    double klm_js_series_f64(double z)
    float klm_js_series_f32(float z)
    double JS_2P54 "0x1p54"
    double JS_2M54 "0x1p-54"
    double JS_2P64 "0x1p64"
    double JS_2M64 "0x1p-64"
    double JS_2P960 "0x1p960"
    # the largest s = x + y of the fast pair term: 1 / s stays normal, and
    # js_rounding's residual is exact (without FMA only up to 2^996)
    double JS_S_MAX "(KLM_RESIDUAL_MAX_D < 0.5 * DBL_MAX ? KLM_RESIDUAL_MAX_D : 0.5 * DBL_MAX)"


# ---- the pair term --------------------------------------------------------

cdef inline floating js_rounding(floating x, floating s, floating inv, floating e,
                                 floating u) noexcept nogil:
    """The rounding error of u against the exact 2x / (x + y), for u
    rounded from 2x / s, s = x + y rounded with the error e = x + y - s
    (TwoSum, exact) and inv = 1 / s: 2x / s = u + r / s with the residual
    r = 2x - u s (klm_residual_*), and s + e divides 2x, so to first order
    the error is (r - u e) / s.  0 where x == 0."""
    if floating is double:
        return klm_mul_add_f64(-u, e, klm_residual_f64(x + x, u, s)) * inv
    else:
        return klm_mul_add_f32(-u, e, klm_residual_f32(x + x, u, s)) * inv


cdef inline floating js_corrected(floating u, floating c, floating lu) noexcept nogil:
    """u log u moved by the error c of u: u lu + c (lu + 1), in explicit
    FMAs, so no sum is left to the compiler to contract: swapping the two
    terms of a pair gives the same bits."""
    if floating is double:
        return klm_mul_add_f64(u, lu, klm_mul_add_f64(c, lu, c))
    else:
        return klm_mul_add_f32(u, lu, klm_mul_add_f32(c, lu, c))


cdef inline floating js_direct(floating x, floating y, floating s, floating inv, floating u,
                               floating v, floating lu, floating lv) noexcept nogil:
    """g(d) = u log u + v log v from u = 2x / s and v = 2y / s as rounded
    and their logs lu, lv (any finite value where u or v is 0), with the
    first-order effect of their rounding added (js_rounding): the
    cancellation of the two terms had magnified it (|d| just above 1/2: up
    to 9.6 eps, now 3)."""
    cdef floating t = s - x
    cdef floating e = (x - (s - t)) + (y - t)
    return (js_corrected(u, js_rounding(x, s, inv, e, u), lu)
            + js_corrected(v, js_rounding(y, s, inv, e, v), lv))


cdef inline floating js_pair(floating x, floating y, floating diff) noexcept nogil:
    """(s / 4) g(d) for s = x + y and d = diff / s (diff is x - y, or its
    rounding from a wider type), for x, y >= 0 with a normal s that leaves
    1 / s finite; anything else gives some value the callers discard."""
    cdef floating s = x + y
    cdef floating inv = 1 / s
    cdef floating d = diff * inv
    cdef floating z = d * d
    cdef floating u = (x + x) * inv          # 1 + d
    cdef floating v = (y + y) * inv          # 1 - d
    cdef floating direct, series
    if floating is double:
        direct = js_direct(x, y, s, inv, u, v, klm_log_normal_f64(u), klm_log_normal_f64(v))
        series = z * klm_js_series_f64(z)
    else:
        # the division-free log of a normal ratio, finite at 0 (where u == 0)
        direct = js_direct(x, y, s, inv, u, v, klm_log_normal_f32(u), klm_log_normal_f32(v))
        series = z * klm_js_series_f32(z)
    return (<floating>0.25 * s) * (series if z < <floating>0.25 else direct)


cdef inline double js_term_f64(double x, double y) noexcept nogil:
    """The pair term in double; 0 when x == y == 0; NaN (the careful path's
    cue) unless x, y >= 0 and DBL_MIN <= x + y <= JS_S_MAX."""
    cdef double s = x + y
    cdef double t = js_pair(x, y, x - y)
    cdef double m = x if x < y else y
    cdef double w = 0.0 if s == 0.0 else NAN
    t = t if s >= DBL_MIN else w
    t = t if s <= JS_S_MAX else NAN
    return t if m >= 0.0 else NAN


# ---- float32 terms in float -------------------------------------------------
#
# With a == b the pairs are (p, q) as they are and the sum is scaled by a at
# the end (it is homogeneous of degree 1); otherwise x = a p and y = b q are
# rounded to float from double, and diff = a p - b q is formed in double
# before its rounding.  Either way d = diff / s is accurate to a few ulp (in
# float p - q is exact for q / 2 <= p <= 2 q), so the series keeps its
# relative accuracy near p == q.  A block with a negative, NaN or infinite
# value, a sum s that is subnormal or above FLT_MAX / 2, or an a p or b q that
# underflows to 0 is flagged: the row goes to the double terms.

cdef inline uint32_t js_check_bits_f32(float x, float y, float s) noexcept nogil:
    """Sign bit set when x or y is negative (or -0), or when s != 0 is not
    normal or is above FLT_MAX / 2 (s's bits less FLT_MIN's leave [0, 2^31),
    or do after adding 0x01800000); NaN and inf reach it through s."""
    cdef uint32_t xb, yb, sb, z, nonzero = <uint32_t>0 - <uint32_t>(s != 0.0)
    memcpy(&xb, &x, 4)
    memcpy(&yb, &y, 4)
    memcpy(&sb, &s, 4)
    z = sb - <uint32_t>0x00800000
    return xb | yb | ((z | (z + <uint32_t>0x01800000)) & nonzero)


cdef inline uint32_t js_terms_f32(const float *p, const float *q, Py_ssize_t length, double a,
                                  double b, bint scaled, float *t) noexcept nogil:
    """t[i] = the term of (a p[i], b q[i]) computed in float (scaled), or of
    (p[i], q[i]); returns the OR of the check bits.  Called with length
    LANES or 2 LANES (one group, or two), its loop vectorised whole."""
    cdef uint32_t bad = 0
    cdef Py_ssize_t i
    cdef float x, y, diff, s, term
    cdef double pd, qd
    for i in range(length):
        if scaled:
            pd = a * p[i]
            qd = b * q[i]
            x = <float>pd
            y = <float>qd
            diff = <float>(pd - qd)
            # a p or b q underflowed to 0
            bad |= <uint32_t>0 - <uint32_t>(((p[i] != 0.0) & (x == 0.0))
                                            | ((q[i] != 0.0) & (y == 0.0)))
        else:
            x = p[i]
            y = q[i]
            diff = x - y
        s = x + y
        term = js_pair(x, y, diff)
        t[i] = term if s > 0.0 else 0.0
        bad |= js_check_bits_f32(x, y, s)
    return bad


# ---- fast path: blocks of terms ---------------------------------------------

cdef inline void lane_add(const floating *t, Py_ssize_t length, double *acc) noexcept nogil:
    """t[0:length] (widened) added into the lanes acc: lane j takes the
    elements with i % LANES == j."""
    cdef Py_ssize_t g, j, full = length - length % LANES
    for g in range(full // LANES):
        for j in range(LANES):
            acc[j] += t[g * LANES + j]
    for j in range(length - full):
        acc[j] += t[full + j]


cdef inline bint js_block_wide(const floating *p, const floating *q, Py_ssize_t length,
                               double a, double b, double *t, double *out) noexcept nogil:
    """The JS sum of one contiguous block (length <= BLOCK_F64) with the
    terms in double into out[0]: the terms into t (scratch from the caller)
    in one flat loop, then added in the lanes.  Returns True when the total
    is not finite (a pair flagged, or an overflow)."""
    cdef double acc[LANES]
    cdef Py_ssize_t i, j
    for i in range(length):
        t[i] = js_term_f64(a * p[i], b * q[i])
    for j in range(LANES):
        acc[j] = 0.0
    lane_add(t, length, acc)
    out[0] = lane_total(acc)
    return not (out[0] <= DBL_MAX)


cdef inline bint js_block_f32(const float *p, const float *q, Py_ssize_t length, double a,
                              double b, bint scaled, float *t, double *out) noexcept nogil:
    """The JS sum of one contiguous block (length <= BLOCK_F32) with the
    terms in float into out[0]: the terms of its groups of LANES into t
    (scratch from the caller), then added in the lanes; the last LANES pairs
    as one more group (the lanes of the pairs of the group before skipped),
    or a block shorter than LANES copied to the top lanes.  Returns True
    when a pair needs the double terms.  (Measured: groups with a constant
    trip count beat one flat loop over the block for short rows, where the
    loop's set-up and remainder cost as much as the terms; the groups go two
    at a time, one 16-float vector on AVX-512: one thread, 10,000 x 1,000
    3.47 -> 2.64 ms there, rows of 20 to 20,000 7-30% less time, the same on
    AVX2 and the baseline build.)"""
    cdef double acc[LANES]
    cdef float tt[LANES]
    cdef float pt[LANES]
    cdef float qt[LANES]
    cdef const float *pl = pt
    cdef const float *ql = qt
    cdef Py_ssize_t g, j, full = length - length % LANES, rem = length - full
    cdef Py_ssize_t skip = LANES - rem
    cdef uint32_t bad = 0
    for g in range(0, full // LANES - 1, 2):
        bad |= js_terms_f32(p + g * LANES, q + g * LANES, 2 * LANES, a, b, scaled,
                            t + g * LANES)
    if (full // LANES) % 2:
        g = full // LANES - 1
        bad |= js_terms_f32(p + g * LANES, q + g * LANES, LANES, a, b, scaled, t + g * LANES)
    for j in range(LANES):
        acc[j] = 0.0
    lane_add(t, full, acc)
    if rem:
        if full:
            pl = p + length - LANES
            ql = q + length - LANES
        else:
            for j in range(LANES):
                pt[j] = 0.0
                qt[j] = 0.0
            for j in range(rem):
                pt[skip + j] = p[j]
                qt[skip + j] = q[j]
        bad |= js_terms_f32(pl, ql, LANES, a, b, scaled, tt)
        for j in range(LANES):
            acc[j] += tt[j] if j >= skip else 0.0
    if bad >> 31:
        return True
    out[0] = lane_total(acc)
    return False


cdef int js_wide_blocks(const floating *p, Py_ssize_t sp, const floating *q, Py_ssize_t sq,
                        Py_ssize_t n, Py_ssize_t b0, Py_ssize_t b1, double a, double b,
                        double *totals) noexcept nogil:
    """js_blocks with the terms in double."""
    cdef floating pbuf[BLOCK_F64]
    cdef floating qbuf[BLOCK_F64]
    cdef double t[BLOCK_F64]
    cdef Py_ssize_t k, start, length
    for k in range(b0, b1):
        start = k * BLOCK_F64
        length = min(n - start, BLOCK_F64)
        if js_block_wide(gather(p + start * sp, sp, length, pbuf),
                         gather(q + start * sq, sq, length, qbuf), length, a, b, t,
                         &totals[k - b0]):
            return ROW_NEEDS_CARE
    return ROW_OK


cdef int js_narrow_blocks(const float *p, Py_ssize_t sp, const float *q, Py_ssize_t sq,
                          Py_ssize_t n, Py_ssize_t b0, Py_ssize_t b1, double a, double b,
                          double *totals) noexcept nogil:
    """js_blocks with the terms in float."""
    cdef float pbuf[BLOCK_F32]
    cdef float qbuf[BLOCK_F32]
    cdef float t[BLOCK_F32]
    cdef const float *pb
    cdef const float *qb
    cdef Py_ssize_t k, start, length
    cdef bint bad
    for k in range(b0, b1):
        start = k * BLOCK_F32
        length = min(n - start, BLOCK_F32)
        pb = gather(p + start * sp, sp, length, pbuf)
        qb = gather(q + start * sq, sq, length, qbuf)
        if a != b:
            bad = js_block_f32(pb, qb, length, a, b, True, t, &totals[k - b0])
        else:
            bad = js_block_f32(pb, qb, length, 1.0, 1.0, False, t, &totals[k - b0])
        if bad:
            return ROW_NEEDS_CARE
    return ROW_OK


cdef int js_blocks(const floating *p, Py_ssize_t sp, const floating *q, Py_ssize_t sq,
                   Py_ssize_t n, Py_ssize_t b0, Py_ssize_t b1, double a, double b, int narrow,
                   double *totals, int *flag) noexcept nogil:
    """JS totals of blocks b0 .. b1 - 1 of a row of n elements into
    totals[k - b0]: of the scaled pairs (a p, b q) with the terms in double
    (blocks of BLOCK_F64), or with narrow (float rows) in float (blocks of
    BLOCK_F32; where a == b the pairs (p, q), the row's total then times a).
    Returns ROW_OK, or ROW_NEEDS_CARE when a block needs the next path.  flag
    is not used (the signature of log_blocks).  Blocks are independent:
    threads may share a row."""
    return js_blocks_of(p, sp, q, sq, n, b0, b1, a, b, narrow, totals)


cdef inline int js_blocks_of(const floating *p, Py_ssize_t sp, const floating *q, Py_ssize_t sq,
                             Py_ssize_t n, Py_ssize_t b0, Py_ssize_t b1, double a, double b,
                             bint narrow, double *totals) noexcept nogil:
    """js_blocks' choice of kernel, inlined into the row loop; the float terms
    need normal factors."""
    if floating is float:
        if narrow:
            if not (DBL_MIN <= a <= DBL_MAX and DBL_MIN <= b <= DBL_MAX):
                return ROW_NEEDS_CARE
            return js_narrow_blocks(p, sp, q, sq, n, b0, b1, a, b, totals)
    return js_wide_blocks(p, sp, q, sq, n, b0, b1, a, b, totals)


cdef inline int js_blocks_row(const floating *p, Py_ssize_t sp, const floating *q,
                              Py_ssize_t sq, Py_ssize_t n, double a, double b, bint narrow,
                              double *res) noexcept nogil:
    """All the blocks of a row (js_blocks) added in order (add_totals) into
    res[0]: ROW_OK, or ROW_NEEDS_CARE when a block needs the next path."""
    cdef double totals[BLOCK_BATCH]
    cdef double acc[2]
    cdef Py_ssize_t b0 = 0, b1, block = BLOCK_F32 if narrow else BLOCK_F64
    cdef Py_ssize_t nblocks = (n + block - 1) // block
    acc[0] = 0.0
    acc[1] = 0.0
    while b0 < nblocks:
        b1 = min(b0 + BLOCK_BATCH, nblocks)
        if js_blocks_of(p, sp, q, sq, n, b0, b1, a, b, narrow, totals) != ROW_OK:
            return ROW_NEEDS_CARE
        add_totals(totals, b1 - b0, acc)
        b0 = b1
    res[0] = acc[0] + acc[1]
    return ROW_OK


cdef int js_row_wide(const floating *p, Py_ssize_t sp, const floating *q, Py_ssize_t sq,
                     Py_ssize_t n, double a, double b, double *res) noexcept nogil:
    """The scaled JS sum of one row with the terms in double: ROW_OK, or
    ROW_NEEDS_CARE when a block total is not finite (a pair flagged, or an
    overflow)."""
    return js_blocks_row(p, sp, q, sq, n, a, b, False, res)


cdef inline int js_narrow_result(double a, double b, double *res) noexcept nogil:
    """The narrow path's row total res[0] finished: where a == b the pairs
    were (p, q), and the sum is homogeneous of degree 1."""
    if a == b:
        res[0] = a * res[0]
    if not (res[0] <= DBL_MAX):
        return ROW_NEEDS_CARE
    return ROW_OK


cdef int js_row_narrow(const float *p, Py_ssize_t sp, const float *q, Py_ssize_t sq,
                       Py_ssize_t n, double a, double b, double *res) noexcept nogil:
    """The scaled JS sum of one float row with the terms in float (widened
    to the double lanes): ROW_OK, or ROW_NEEDS_CARE for the double terms."""
    if js_blocks_row(p, sp, q, sq, n, a, b, True, res) != ROW_OK:
        return ROW_NEEDS_CARE
    return js_narrow_result(a, b, res)


cdef inline int js_row_fast(const floating *p, Py_ssize_t sp, const floating *q, Py_ssize_t sq,
                            Py_ssize_t n, double a, double b, double *res) noexcept nogil:
    """float32 tries its float terms first, then the double ones."""
    cdef int st
    if floating is float:
        st = js_row_narrow(p, sp, q, sq, n, a, b, res)
        if st != ROW_NEEDS_CARE:
            return st
    return js_row_wide(p, sp, q, sq, n, a, b, res)


# ---- careful path ---------------------------------------------------------

cdef double js_term_careful(double x, double y) noexcept nogil:
    """The pair term with libm; the term is homogeneous of degree 1, so a
    pair too large (x + y above JS_S_MAX, near overflow, or where
    js_rounding's residual is not exact without FMA) or too small (1 / (x + y)
    overflows) is scaled by a power of two first (the smaller value of a
    large pair may lose bits below 2^-958, where its share of the term is
    below 2^-1900 of the term).  NaN for a negative, NaN or infinite value."""
    cdef double s, inv, d, z, u, v, g
    if not (x >= 0.0 and y >= 0.0 and x <= DBL_MAX and y <= DBL_MAX):
        return NAN
    if not (x + y <= JS_S_MAX):
        return JS_2P64 * js_term_careful(JS_2M64 * x, JS_2M64 * y)
    s = x + y
    if not (s > 0.0):
        return 0.0
    if s < DBL_MIN:
        return JS_2M54 * js_term_careful(JS_2P54 * x, JS_2P54 * y)
    inv = 1.0 / s
    d = (x - y) * inv
    z = d * d
    if z < 0.25:
        g = z * klm_js_series_f64(z)
    else:
        u = (x + x) * inv
        v = (y + y) * inv
        g = js_direct(x, y, s, inv, u, v, log(u) if u > 0.0 else 0.0,
                      log(v) if v > 0.0 else 0.0)
    return (0.25 * s) * g


cdef int js_row_careful(const floating *p, Py_ssize_t sp, const floating *q, Py_ssize_t sq,
                        Py_ssize_t n, double a, double b, bint divide, double *res) noexcept nogil:
    """The JS sum of the pairs (a p, b q), or with divide (p / a, q / b), in
    double with libm, in blocks and lanes."""
    cdef double js = 0.0, js_c = 0.0, x, y
    cdef double acc[LANES]
    cdef Py_ssize_t g, start, i, j, length
    for g in range((n + BLOCK_F64 - 1) // BLOCK_F64):
        start = g * BLOCK_F64
        length = min(n - start, BLOCK_F64)
        for j in range(LANES):
            acc[j] = 0.0
        for i in range(length):
            x = p[(start + i) * sp]
            y = q[(start + i) * sq]
            if divide:
                acc[i % LANES] += js_term_careful(x / a, y / b)
            else:
                acc[i % LANES] += js_term_careful(a * x, b * y)
        neumaier(&js, &js_c, lane_total(acc))
    res[0] = js + js_c
    return ROW_CAREFUL


# ---- rows -----------------------------------------------------------------

cdef int js_sums_blocks(const floating *p, Py_ssize_t sp, const floating *q, Py_ssize_t sq,
                        Py_ssize_t n, Py_ssize_t b0, Py_ssize_t b1, double *psums,
                        double *qsums) noexcept nogil:
    """The sums of p and q over blocks b0 .. b1 - 1 of a row (the KL kernel's
    blocks and block_sums, so the row's sums equal its sums bit for bit) into
    psums[k - b0] and qsums[k - b0].  Returns 1 when the blocks may hold a
    negative, NaN or infinite value, else 0.  Blocks are independent: threads
    may share a row."""
    cdef floating pbuf[BLOCK_F32]
    cdef floating qbuf[BLOCK_F32]
    cdef const floating *pb
    cdef const floating *qb
    cdef double sums[2]
    cdef uint64_t bits = 0
    cdef Py_ssize_t k, start, length, i
    cdef Py_ssize_t block = BLOCK_F64 if floating is double else BLOCK_F32
    for k in range(b0, b1):
        start = k * block
        length = min(n - start, block)
        pb = gather(p + start * sp, sp, length, pbuf)
        qb = gather(q + start * sq, sq, length, qbuf)
        block_sums(pb, qb, length, sums)
        psums[k - b0] = sums[0]
        qsums[k - b0] = sums[1]
        for i in range(length):
            bits |= sign_bad_bits(pb[i]) | sign_bad_bits(qb[i])
    return <int>(bits >> 63)


cdef bint js_sums(const floating *p, Py_ssize_t sp, const floating *q, Py_ssize_t sq,
                  Py_ssize_t n, double *psum, double *qsum) noexcept nogil:
    """The row sums of p and q (js_sums_blocks, each added in block order).
    Returns True when the row may hold a negative, NaN or infinite value."""
    cdef double psums[BLOCK_BATCH]
    cdef double qsums[BLOCK_BATCH]
    cdef double pacc[2]
    cdef double qacc[2]
    cdef Py_ssize_t b0 = 0, b1, block = BLOCK_F64 if floating is double else BLOCK_F32
    cdef Py_ssize_t nblocks = (n + block - 1) // block
    cdef int bad = 0
    pacc[0] = pacc[1] = qacc[0] = qacc[1] = 0.0
    while b0 < nblocks:
        b1 = min(b0 + BLOCK_BATCH, nblocks)
        bad |= js_sums_blocks(p, sp, q, sq, n, b0, b1, psums, qsums)
        add_totals(psums, b1 - b0, pacc)
        add_totals(qsums, b1 - b0, qacc)
        b0 = b1
    psum[0] = pacc[0] + pacc[1]
    qsum[0] = qacc[0] + qacc[1]
    return bad != 0


cdef int js_row_scaled(const floating *p, Py_ssize_t sp, const floating *q, Py_ssize_t sq,
                       Py_ssize_t n, double a, double b, int check, double *res) noexcept nogil:
    """JS sum of the scaled pairs (a p, b q) into res[0]: ROW_OK or
    ROW_CAREFUL, or ROW_BAD when check is set and the row holds a negative,
    NaN or infinite value."""
    cdef int which
    cdef Py_ssize_t index
    cdef double value
    cdef int st = js_row_fast(p, sp, q, sq, n, a, b, res)
    if st == ROW_NEEDS_CARE:
        if check and find_bad(p, sp, q, sq, n, &which, &index, &value):
            return ROW_BAD
        st = js_row_careful(p, sp, q, sq, n, a, b, False, res)
    return st


cdef inline bint js_normal(double a) noexcept nogil:
    """a is a normal positive double: a p keeps every bit of a normal p."""
    return DBL_MIN <= a <= DBL_MAX


cdef int js_row_divided(const floating *p, Py_ssize_t sp, const floating *q, Py_ssize_t sq,
                        Py_ssize_t n, double ps, double qs, int check, double *res) noexcept nogil:
    """JS of the pair (p / ps, q / qs) into res[0], for positive finite ps
    and qs (the row sums with normalize, 1 otherwise).  The pairs are
    (p / ps, q / qs) multiplied by the reciprocals when both are normal;
    else (a sum below 2^-1024, whose reciprocal overflows) scaled by 2^-64,
    the result times 2^64, when that makes both normal; else (one sum below
    2^-1024 and the other above 2^958, or one above 2^1022) each element is
    divided by its sum on the careful path: no factor leaves the range."""
    cdef int which
    cdef Py_ssize_t index
    cdef double value
    cdef double a = 1.0 / ps, b = 1.0 / qs
    cdef int st
    if js_normal(a) and js_normal(b):
        return js_row_scaled(p, sp, q, sq, n, a, b, check, res)
    a = 1.0 / (ps * JS_2P64) if ps <= JS_2P960 else JS_2M64 * (1.0 / ps)
    b = 1.0 / (qs * JS_2P64) if qs <= JS_2P960 else JS_2M64 * (1.0 / qs)
    if js_normal(a) and js_normal(b):
        st = js_row_scaled(p, sp, q, sq, n, a, b, check, res)
        res[0] *= JS_2P64
        return st
    if check and find_bad(p, sp, q, sq, n, &which, &index, &value):
        return ROW_BAD
    return js_row_careful(p, sp, q, sq, n, ps, qs, True, res)


cdef int js_row(const floating *p, Py_ssize_t sp, const floating *q, Py_ssize_t sq,
                Py_ssize_t n, int normalize, int check, double *res) noexcept nogil:
    """One row of js_div: res[0] = JS, and with normalize (which divides p
    and q by their sums first) res[1:3] = the sums; a sum that is 0, NaN or
    overflows gives ROW_ZERO_SUM_P / ROW_ZERO_SUM_Q."""
    cdef int which
    cdef Py_ssize_t index
    cdef double value
    if not normalize:
        return js_row_scaled(p, sp, q, sq, n, 1.0, 1.0, check, res)
    if js_sums(p, sp, q, sq, n, &res[1], &res[2]) and check \
            and find_bad(p, sp, q, sq, n, &which, &index, &value):
        return ROW_BAD
    if not (res[1] > 0.0 and res[1] <= DBL_MAX):
        return ROW_ZERO_SUM_P
    if not (res[2] > 0.0 and res[2] <= DBL_MAX):
        return ROW_ZERO_SUM_Q
    return js_row_divided(p, sp, q, sq, n, res[1], res[2], check, res)
