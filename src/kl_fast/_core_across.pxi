# KL rows computed across rows (included by _core.pxi): many short rows, and
# float64 rows that are the columns of a C-order matrix.
#
# Design: a row of n <= SHORT_N elements through kl_row costs a call, a block
# set-up and, for n = 10, sixteen terms (two groups of LANES, the last one
# partly skipped) before a few additions, all in one row's lanes; a column of
# a C-order matrix is gathered element by element, one cache line each.  Here
# a chunk of rows is worked on element-major: lane j of row r lives at
# a[j * rows + r], and every step -- the terms, the lane sums, the joins, the
# lane totals -- is one loop across the chunk's rows, which the compiler
# vectorises (and which reads a matrix's columns along its rows).  float64
# adds each element's term into its lane as it goes; float32 keeps the
# block's three passes (ratios, logs, pairs) in element-major buffers.  Each
# row's lanes are formed in exactly the order kl_block_f64 / kl_block_f32
# forms them, and its blocks are added as kl_row_fast adds them, so every row
# gets the bits kl_row would give it; that needs every product the two add
# rounded alike, so both add them with klm_mul_add_* (a product left to the
# compiler is fused into an FMA in one loop and not in another).  A chunk
# holding an element the checks flag, and a row whose total is not finite,
# are handed to kl_row itself (careful path, check).

cdef enum:
    SHORT_ROWS = 128     # rows of a chunk at most
    SHORT_ELEMS = 2048   # and elements of the buffers of one block of a chunk
                         # (float32 KL, float64 JS)


cdef enum:
    # how across_element_f64 puts an element into its lane
    LANE_ADD = 0      # added into the lane
    LANE_START = 1    # the lane's first element: added to a zero lane (no zeroing pass)
    LANE_SHORT = 2    # a row shorter than LANES: set as kl_block_f64 sets it


cdef inline uint64_t across_element_f64(const double *p, Py_ssize_t sp, const double *q,
                                        Py_ssize_t sq, Py_ssize_t rows, int how,
                                        double *a, double *ak) noexcept nogil:
    """One element of each of rows rows (row r's at p[r sp], q[r sq]) into its
    lane (a[r], and the p k of its ratio into ak[r], kl_term_f64), as
    kl_block_f64 adds it (LANE_* says how).  Returns the elements' check bits."""
    cdef uint64_t bad = 0, b
    cdef double pv, t, k
    cdef Py_ssize_t r
    if how == LANE_SHORT:
        for r in range(rows):
            pv = p[r * sp]
            t = kl_term_f64(pv, q[r * sq], &k, &b)
            a[r] = t
            ak[r] = pv * k
            bad |= b
    elif how == LANE_START:
        # 0 + t and p k + 0 round (and sign a zero) as the zeroed lane's first addition
        for r in range(rows):
            pv = p[r * sp]
            t = kl_term_f64(pv, q[r * sq], &k, &b)
            a[r] = 0.0 + t
            ak[r] = klm_mul_add_f64(pv, k, 0.0)
            bad |= b
    else:
        for r in range(rows):
            pv = p[r * sp]
            t = kl_term_f64(pv, q[r * sq], &k, &b)
            a[r] += t
            ak[r] = klm_mul_add_f64(pv, k, ak[r])
            bad |= b
    return bad


cdef bint across_lanes_f64(const double *p, Py_ssize_t sp0, Py_ssize_t sp1, const double *q,
                           Py_ssize_t sq0, Py_ssize_t sq1, Py_ssize_t rows, Py_ssize_t n,
                           double *a, double *ak) noexcept nogil:
    """kl_block_f64's lanes of one block of rows rows (n <= BLOCK_F64) into a
    and ak (lane j of row r at j * rows + r).  Lane j adds the elements
    e % LANES == j of the full groups, then the last n % LANES elements go to
    the last lanes (the block reads its last group in place and skips the
    lanes already counted; those add an exact zero, which changes no lane, so
    they are left out here).  Elements 0 .. LANES - 1 start their lanes, so only
    a row shorter than LANES has lanes to zero.  True when an element needs the
    careful path.  Rows whose elements are adjacent (a matrix's columns) take a
    copy of the loop with literal unit strides."""
    cdef Py_ssize_t e, i, j, full = n - n % LANES, rem = n - full
    cdef uint64_t bad = 0
    cdef int how
    if n < LANES:
        for i in range(n * rows, LANES * rows):
            a[i] = 0.0
            ak[i] = 0.0
    for e in range(n):
        j = e % LANES if e < full or n < LANES else LANES - rem + (e - full)
        how = LANE_SHORT if n < LANES else (LANE_START if e < LANES else LANE_ADD)
        if sp0 == 1 and sq0 == 1:
            bad |= across_element_f64(p + e * sp1, 1, q + e * sq1, 1, rows, how,
                                      a + j * rows, ak + j * rows)
        else:
            bad |= across_element_f64(p + e * sp1, sp0, q + e * sq1, sq0, rows, how,
                                      a + j * rows, ak + j * rows)
    return (bad >> 63) != 0


cdef inline void short_lanes_f32(const float *p, float *lr, const float *s,
                                 Py_ssize_t rows, Py_ssize_t n, double *a) noexcept nogil:
    """kl_block_f32's lane sums of rows rows element-major (element e of row
    r at e * rows + r; lane j of row r into a[j * rows + r]): the
    terms p log r + (p - r q) from p, the logs of the ratios lr and their
    residuals s, the pairs of kl_block_f32 (elements e and e + half) added in
    float first (kl_pair_f32, into lr in place)."""
    cdef Py_ssize_t g, i, full = n - n % LANES, rem = n - full, width = LANES * rows
    cdef Py_ssize_t pairs = full // (2 * LANES), half = pairs * width, o
    cdef double *tail = a + (LANES - rem) * rows
    if n < LANES:
        for i in range(n * rows):
            a[i] = klm_mul_add_f32(p[i], lr[i], s[i])
        for i in range(n * rows, width):
            a[i] = 0.0
        return
    for i in range(width):
        a[i] = 0.0
    for i in range(half):
        lr[i] = kl_pair_f32(p, lr, s, i, half)
    for g in range(pairs):
        o = g * width
        for i in range(width):
            a[i] += lr[o + i]
    if full % (2 * LANES):
        o = 2 * half
        for i in range(width):
            a[i] += kl_term_f32(p + o, lr + o, s + o, 0, i)
    o = full * rows
    for i in range(rem * rows):
        tail[i] += kl_term_f32(p + o, lr + o, s + o, 0, i)


cdef inline void short_totals(double *a, const double *ak, Py_ssize_t rows,
                              bint join, double *total) noexcept nogil:
    """Each row's lanes (a, element-major) joined with their exponent parts ak
    when join (float64), then added by lane_total's order, into total[r]."""
    cdef Py_ssize_t i, r
    if join:
        for i in range(LANES * rows):
            a[i] = klm_join_k_f64(ak[i], a[i])
    for r in range(rows):
        total[r] = (((a[r] + a[rows + r]) + (a[2 * rows + r] + a[3 * rows + r]))
                    + ((a[4 * rows + r] + a[5 * rows + r]) + (a[6 * rows + r] + a[7 * rows + r])))


cdef inline void short_sums(const floating *x, Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t rows,
                            Py_ssize_t n, double *a, double *total) noexcept nogil:
    """block_sums of rows rows of x (element e of row r at x[r s0 + e s1]),
    row r's into total[r]: lane j adds the elements e % LANES == j of the
    full groups, then element full + j; a is scratch for the lanes."""
    cdef Py_ssize_t e, i, j, r, full = n - n % LANES
    for i in range(LANES * rows):
        a[i] = 0.0
    for e in range(n):
        j = e % LANES if e < full else e - full
        for r in range(rows):
            a[j * rows + r] += x[r * s0 + e * s1]
    short_totals(a, a, rows, False, total)


cdef bint across_block(const floating *p, Py_ssize_t sp0, Py_ssize_t sp1, const floating *q,
                       Py_ssize_t sq0, Py_ssize_t sq1, Py_ssize_t rows, Py_ssize_t n,
                       int want_sums, double *out) noexcept nogil:
    """One block of rows rows (n <= the row kernel's block; float32:
    rows * n <= SHORT_ELEMS): row r's block sum into out[3 r], with want_sums
    its sums of p and q into out[3 r + 1 : 3 r + 3] (else 0).  True when an
    element needs the careful path."""
    cdef float pt[SHORT_ELEMS]
    cdef float lr[SHORT_ELEMS]
    cdef float s[SHORT_ELEMS]
    cdef double a[LANES * SHORT_ROWS]
    cdef double ak[LANES * SHORT_ROWS]
    cdef double total[SHORT_ROWS]
    cdef uint32_t bad = 0
    cdef Py_ssize_t e, i, r
    if floating is double:
        if across_lanes_f64(p, sp0, sp1, q, sq0, sq1, rows, n, a, ak):
            return True
    else:
        for e in range(n):
            for r in range(rows):
                i = e * rows + r
                pt[i] = p[r * sp0 + e * sp1]
                bad |= kl_ratio_f32(pt[i], q[r * sq0 + e * sq1], &lr[i], &s[i])
        if bad >> 31:
            return True
        for i in range(n * rows):
            lr[i] = klm_log_normal_f32(lr[i])
        short_lanes_f32(pt, lr, s, rows, n, a)
    short_totals(a, ak, rows, floating is double, total)
    for r in range(rows):
        out[3 * r] = total[r]
    if want_sums:
        short_sums(p, sp0, sp1, rows, n, a, total)
        for r in range(rows):
            out[3 * r + 1] = total[r]
        short_sums(q, sq0, sq1, rows, n, a, total)
        for r in range(rows):
            out[3 * r + 2] = total[r]
    else:
        for r in range(rows):
            out[3 * r + 1] = 0.0
            out[3 * r + 2] = 0.0
    return False


cdef void short_chunk(const floating *p, Py_ssize_t sp0, Py_ssize_t sp1, const floating *q,
                      Py_ssize_t sq0, Py_ssize_t sq1, Py_ssize_t rows, Py_ssize_t n, int check,
                      int want_sums, double *res, int *status) noexcept nogil:
    """kl_rows_across for one chunk of rows (rows <= SHORT_ROWS; float32:
    rows * n <= SHORT_ELEMS), block by block as kl_row_fast: one block's sums
    are the result, several are added per row with add_blocks."""
    cdef double sums[3 * SHORT_ROWS]
    cdef double acc[6 * SHORT_ROWS]
    cdef bint care[SHORT_ROWS]
    cdef Py_ssize_t i, r, start, length, block = BLOCK_F64 if floating is double else BLOCK_F32
    for r in range(rows):
        care[r] = False
    if n > block:   # (one block's sums are the result)
        for i in range(6 * rows):
            acc[i] = 0.0
    start = 0
    while start < n:
        length = min(block, n - start)
        if across_block(p + start * sp1, sp0, sp1, q + start * sq1, sq0, sq1, rows, length,
                        want_sums, res if length == n else sums):
            # an element the fast path cannot take: every row of the chunk goes to kl_row
            for r in range(rows):
                care[r] = True
            break
        start += length
        if length == n:
            break   # one block: its sums are the result
        for r in range(rows):
            if not (fabs(sums[3 * r]) <= DBL_MAX):
                care[r] = True
            add_blocks(sums + 3 * r, 1, acc + 6 * r)
    for r in range(rows):
        if n > block and not care[r]:
            care[r] = acc_result(acc + 6 * r, res + 3 * r) != ROW_OK
        if care[r] or not (fabs(res[3 * r]) <= DBL_MAX):
            status[r] = kl_row(p + r * sp0, sp1, q + r * sq0, sq1, n, check, want_sums,
                               res + 3 * r)
        else:
            status[r] = ROW_OK


cdef void kl_rows_across(const floating *p, Py_ssize_t sp0, Py_ssize_t sp1, const floating *q,
                         Py_ssize_t sq0, Py_ssize_t sq1, Py_ssize_t m, Py_ssize_t n, int check,
                         int want_sums, double *res, int *status) noexcept nogil:
    """kl_row of m rows of n > 0 elements, element e of row i at
    p[i sp0 + e sp1] and q[i sq0 + e sq1] (strides in elements, 0 for a
    broadcast operand): row i's results into res[3 i : 3 i + 3] and its
    status into status[i], the same bits and statuses as kl_row.  The
    callers send short rows (n <= SHORT_N, any layout) and float64 rows of
    any length that are the columns of a C-order matrix (sp0 = 1), which it
    reads along the matrix's rows."""
    cdef Py_ssize_t r0 = 0, rows = SHORT_ROWS
    if floating is float:
        rows = min(rows, SHORT_ELEMS // n)
    while r0 < m:
        short_chunk(p + r0 * sp0, sp0, sp1, q + r0 * sq0, sq0, sq1, min(rows, m - r0), n,
                    check, want_sums, res + 3 * r0, status + r0)
        r0 += rows


# ---- Jensen-Shannon rows ------------------------------------------------------

cdef void js_across_f64(const double *p, Py_ssize_t sp0, Py_ssize_t sp1, const double *q,
                        Py_ssize_t sq0, Py_ssize_t sq1, Py_ssize_t rows, Py_ssize_t n,
                        double *total) noexcept nogil:
    """js_block_wide's sums of rows rows of n <= SHORT_N elements (rows * n
    <= SHORT_ELEMS) into total[r]: the terms into an element-major buffer
    (a separate pass, as the block has it, so no product is fused into the
    additions), then lane j adds the elements e % LANES == j, the last
    partial group's into the first lanes (lane_add's order).  A total that
    is not finite marks a pair the fast path cannot take, or an overflow."""
    cdef double t[SHORT_ELEMS]
    cdef double a[LANES * SHORT_ROWS]
    cdef Py_ssize_t e, r
    for e in range(n):
        for r in range(rows):
            t[e * rows + r] = js_term_f64(p[r * sp0 + e * sp1], q[r * sq0 + e * sq1])
    # lane_add's order is block_sums's: element e of row r at t[r + e * rows]
    short_sums(t, 1, rows, rows, n, a, total)


cdef void js_rows_across(const double *p, Py_ssize_t sp0, Py_ssize_t sp1, const double *q,
                         Py_ssize_t sq0, Py_ssize_t sq1, Py_ssize_t m, Py_ssize_t n, int check,
                         double *res, int *status) noexcept nogil:
    """js_row (normalize off) of m float64 rows of 0 < n <= SHORT_N elements,
    laid out as kl_rows_across's: res[3 i] and status[i] as js_row gives them
    (res[3 i + 1 : 3 i + 3] are 0)."""
    cdef double total[SHORT_ROWS]
    cdef double *out
    cdef Py_ssize_t r, r0 = 0, step = min(<Py_ssize_t>SHORT_ROWS, SHORT_ELEMS // n), rows
    while r0 < m:
        rows = min(step, m - r0)
        js_across_f64(p + r0 * sp0, sp0, sp1, q + r0 * sq0, sq0, sq1, rows, n, total)
        for r in range(rows):
            out = res + 3 * (r0 + r)
            out[1] = 0.0
            out[2] = 0.0
            if total[r] <= DBL_MAX:
                # js_row_wide's one block added to a zero sum by Neumaier's step
                out[0] = (0.0 + total[r]) + 0.0
                status[r0 + r] = ROW_OK
            else:
                status[r0 + r] = js_row(p + (r0 + r) * sp0, sp1, q + (r0 + r) * sq0, sq1, n,
                                        0, check, out)
        r0 += rows


# ---- log-space rows (kl_div_log) ------------------------------------------------

cdef void across_max_f64(const double *x, Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t rows,
                         Py_ssize_t n, double *xmax, bint *bad) noexcept nogil:
    """max_finite of rows rows (element e of row r at x[r s0 + e s1]): the largest
    finite entry of row r into xmax[r] (-inf for none), bad[r] set when the row
    holds NaN or +inf.  The maximum over order_key integers, as max_finite
    takes it, so the value (and the sign of a zero) is the same."""
    cdef int64_t m[SHORT_ROWS]
    cdef int64_t b[SHORT_ROWS]
    cdef int64_t ninf = order_key_f64(-HUGE_VAL), ok, k
    cdef Py_ssize_t e, r
    cdef double v
    for r in range(rows):
        m[r] = ninf
        b[r] = 0
    for e in range(n):
        for r in range(rows):
            v = x[r * s0 + e * s1]
            ok = -<int64_t>(v <= DBL_MAX)
            b[r] |= ~ok
            k = (order_key_f64(v) & ok) | (ninf & ~ok)
            m[r] = k if k > m[r] else m[r]
    for r in range(rows):
        k = m[r] ^ ((m[r] >> 63) & INT64_MAX)
        memcpy(&xmax[r], &k, 8)
        bad[r] = b[r] != 0


cdef void across_lse_f64(const double *x, Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t rows,
                         Py_ssize_t n, const double *xmax, double *t, double *a,
                         double *lse, double *lo) noexcept nogil:
    """kl_log_row's normaliser of each of rows rows (n <= LOG_SHORT_N, xmax
    finite), log_normaliser of sumexp_wide_blocks's sum and count into lse and
    lo: exp(x - xmax) element-major into t (0 for NaN, +inf and the entries
    equal to xmax, which are counted), added in lane_sum's order; a is scratch
    for the lanes."""
    cdef int64_t top[SHORT_ROWS]
    cdef Py_ssize_t e, r
    cdef double v
    for r in range(rows):
        top[r] = 0
    for e in range(n):
        for r in range(rows):
            v = x[r * s0 + e * s1]
            top[r] += v == xmax[r]
            t[e * rows + r] = klm_exp_f64(v - xmax[r]) if (v <= DBL_MAX) & (v != xmax[r]) else 0.0
    short_sums(t, 1, rows, rows, n, a, lse)
    for r in range(rows):
        # sumexp_wide's one block added to a zero sum by Neumaier's step
        lse[r] = log_normaliser(xmax[r], <double>top[r], (0.0 + lse[r]) + 0.0, &lo[r])


cdef void log_chunk(const double *p, Py_ssize_t sp0, Py_ssize_t sp1, const double *q,
                    Py_ssize_t sq0, Py_ssize_t sq1, Py_ssize_t rows, Py_ssize_t n,
                    int normalize, int check, double *res, int *status) noexcept nogil:
    """kl_log_rows_across for one chunk (rows * n <= SHORT_ELEMS): the
    normalisers (with normalize), then log_row_wide's terms element-major and
    their lanes; a row the fast path cannot take (NaN or +inf input, an
    all -inf row with normalize, a term or total that is not finite) goes to
    kl_log_row."""
    cdef double t[SHORT_ELEMS]
    cdef double a[LANES * SHORT_ROWS]
    cdef double total[SHORT_ROWS]
    cdef double lp0[SHORT_ROWS]
    cdef double lq0[SHORT_ROWS]
    cdef double mp[SHORT_ROWS]
    cdef double mq[SHORT_ROWS]
    cdef double lo_p[SHORT_ROWS]
    cdef double lo_q[SHORT_ROWS]
    cdef bint care[SHORT_ROWS]
    cdef bint bad_q[SHORT_ROWS]
    cdef int64_t ninf[SHORT_ROWS]
    cdef Py_ssize_t e, r
    cdef double lp, lq
    for r in range(rows):
        lp0[r] = 0.0
        lq0[r] = 0.0
        lo_p[r] = 0.0
        lo_q[r] = 0.0
        care[r] = False
        ninf[r] = 0
    if normalize:
        across_max_f64(p, sp0, sp1, rows, n, mp, care)
        across_max_f64(q, sq0, sq1, rows, n, mq, bad_q)
        for r in range(rows):
            care[r] = care[r] | bad_q[r] | (mp[r] == -HUGE_VAL) | (mq[r] == -HUGE_VAL)
            if care[r]:
                mp[r] = 0.0   # kl_log_row redoes the row; any finite value here
                mq[r] = 0.0
        across_lse_f64(p, sp0, sp1, rows, n, mp, t, a, lp0, lo_p)
        across_lse_f64(q, sq0, sq1, rows, n, mq, t, a, lq0, lo_q)
    for e in range(n):
        for r in range(rows):
            lp = p[r * sp0 + e * sp1]
            lq = q[r * sq0 + e * sq1]
            t[e * rows + r] = log_term_f64(lp, lq, lp0[r], lq0[r])
            ninf[r] |= (lp > -HUGE_VAL) & (lq == -HUGE_VAL)
    short_sums(t, 1, rows, rows, n, a, total)
    for r in range(rows):
        # log_row_wide's one block added to a zero sum by Neumaier's step
        total[r] = (0.0 + total[r]) + 0.0
        if care[r] or not (fabs(total[r]) <= DBL_MAX):
            status[r] = kl_log_row(p + r * sp0, sp1, q + r * sq0, sq1, n, normalize, check,
                                   res + 3 * r)
        else:
            res[3 * r] = HUGE_VAL if ninf[r] else log_normalised(total[r], lo_p[r], lo_q[r])
            res[3 * r + 1] = lp0[r]
            res[3 * r + 2] = lq0[r]
            status[r] = ROW_OK


cdef void kl_log_rows_across(const double *p, Py_ssize_t sp0, Py_ssize_t sp1, const double *q,
                             Py_ssize_t sq0, Py_ssize_t sq1, Py_ssize_t m, Py_ssize_t n,
                             int normalize, int check, double *res, int *status) noexcept nogil:
    """kl_log_row of m float64 rows of 0 < n <= LOG_SHORT_N elements, laid out as
    kl_rows_across's: res[3 i : 3 i + 3] and status[i] as kl_log_row gives them."""
    cdef Py_ssize_t r0 = 0, step = min(<Py_ssize_t>SHORT_ROWS, SHORT_ELEMS // n)
    while r0 < m:
        log_chunk(p + r0 * sp0, sp0, sp1, q + r0 * sq0, sq0, sq1, min(step, m - r0), n,
                  normalize, check, res + 3 * r0, status + r0)
        r0 += step
