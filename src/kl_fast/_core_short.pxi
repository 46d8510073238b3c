# Many short KL rows at once (included by _core.pxi).
#
# Design: a row of n <= SHORT_N elements through kl_row costs a call, a block
# set-up and, for n = 10, sixteen terms (two groups of LANES, the last one
# partly skipped) before a few additions, all in one row's lanes.  Here a
# chunk of rows is worked on element-major: element e of row r goes to
# position e * rows + r of the term buffers, so that every step -- the terms,
# the lane sums, the joins, the lane totals -- is one loop over the chunk's
# rows that the compiler vectorises across rows.  Each row's lanes are formed
# in exactly the order kl_block_f64 / kl_block_f32 forms them, so every row
# gets the bits kl_row would give it; that needs every product the two add
# rounded alike, so both add them with klm_mul_add_* (a product left to the
# compiler is fused into an FMA in one loop and not in another).  A chunk
# holding an element the checks flag, and a row whose total is not finite,
# are handed to kl_row itself (careful path, check).

cdef enum:
    SHORT_ELEMS = 1024   # elements of one chunk of rows at most
    SHORT_ROWS = 64      # and rows


cdef inline void short_lanes(const double *t, Py_ssize_t rows, Py_ssize_t n,
                             double *a) noexcept nogil:
    """kl_block_f64's lane sums of rows element-major terms t (element e of
    row r at t[e * rows + r]) into a (lane j of row r at a[j * rows + r]).
    Lane j adds the elements e % LANES == j of the full groups, then the last
    n % LANES elements go to the last lanes (the block reads its last group in
    place and skips the lanes already counted; those add an exact zero, which
    changes no lane, so they are left out here).  A row shorter than LANES has
    element j in lane j."""
    cdef Py_ssize_t g, i, full = n - n % LANES, rem = n - full, width = LANES * rows
    cdef const double *tg
    cdef double *tail = a + (LANES - rem) * rows
    if n < LANES:
        for i in range(n * rows):
            a[i] = t[i]
        for i in range(n * rows, width):
            a[i] = 0.0
        return
    for i in range(width):
        a[i] = 0.0
    for g in range(full // LANES):
        tg = t + g * width
        for i in range(width):
            a[i] += tg[i]
    tg = t + full * rows
    for i in range(rem * rows):
        tail[i] += tg[i]


cdef inline void short_lanes_k(const double *p, const double *k, Py_ssize_t rows,
                               Py_ssize_t n, double *a) noexcept nogil:
    """kl_block_f64's lane sums of p k (element-major p and exponents k of
    the ratios) into a, as short_lanes places them, each product added with
    klm_mul_add_f64 as the block adds it."""
    cdef Py_ssize_t g, i, full = n - n % LANES, rem = n - full, width = LANES * rows, o
    cdef double *tail = a + (LANES - rem) * rows
    if n < LANES:
        for i in range(n * rows):
            a[i] = p[i] * k[i]
        for i in range(n * rows, width):
            a[i] = 0.0
        return
    for i in range(width):
        a[i] = 0.0
    for g in range(full // LANES):
        o = g * width
        for i in range(width):
            a[i] = klm_mul_add_f64(p[o + i], k[o + i], a[i])
    o = full * rows
    for i in range(rem * rows):
        tail[i] = klm_mul_add_f64(p[o + i], k[o + i], tail[i])


cdef inline void short_lanes_f32(const float *p, float *lr, const float *s,
                                 Py_ssize_t rows, Py_ssize_t n, double *a) noexcept nogil:
    """kl_block_f32's lane sums of rows element-major (as short_lanes): the
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


cdef void short_chunk(const floating *p, Py_ssize_t sp0, Py_ssize_t sp1, const floating *q,
                      Py_ssize_t sq0, Py_ssize_t sq1, Py_ssize_t rows, Py_ssize_t n, int check,
                      int want_sums, double *res, int *status) noexcept nogil:
    """kl_rows_short for one chunk: rows * n <= SHORT_ELEMS, rows <= SHORT_ROWS."""
    cdef double t[SHORT_ELEMS]
    cdef double tk[SHORT_ELEMS]      # float64: the exponents k of the ratios
    cdef floating pt[SHORT_ELEMS]
    cdef float lr[SHORT_ELEMS]
    cdef float s[SHORT_ELEMS]
    cdef double a[LANES * SHORT_ROWS]
    cdef double ak[LANES * SHORT_ROWS]
    cdef double total[SHORT_ROWS]
    cdef double psum[SHORT_ROWS]
    cdef double qsum[SHORT_ROWS]
    cdef uint64_t bad = 0, b
    cdef Py_ssize_t e, i, r
    for e in range(n):
        for r in range(rows):
            i = e * rows + r
            pt[i] = p[r * sp0 + e * sp1]
            if floating is double:
                t[i] = kl_term_f64(pt[i], q[r * sq0 + e * sq1], &tk[i], &b)
                bad |= b
            else:
                bad |= kl_ratio_f32(pt[i], q[r * sq0 + e * sq1], &lr[i], &s[i])
    if bad >> (63 if floating is double else 31):
        # an element the fast path cannot take: every row of the chunk goes to kl_row
        for r in range(rows):
            status[r] = kl_row(p + r * sp0, sp1, q + r * sq0, sq1, n, check, want_sums,
                               res + 3 * r)
        return
    if floating is double:
        short_lanes(t, rows, n, a)
        short_lanes_k(pt, tk, rows, n, ak)
    else:
        for i in range(n * rows):
            lr[i] = klm_log_normal_f32(lr[i])
        short_lanes_f32(pt, lr, s, rows, n, a)
    short_totals(a, ak, rows, floating is double, total)
    for r in range(rows):
        res[3 * r + 1] = 0.0
        res[3 * r + 2] = 0.0
    if want_sums:
        short_sums(p, sp0, sp1, rows, n, a, psum)
        short_sums(q, sq0, sq1, rows, n, a, qsum)
    for r in range(rows):
        if not (fabs(total[r]) <= DBL_MAX):
            status[r] = kl_row(p + r * sp0, sp1, q + r * sq0, sq1, n, check, want_sums,
                               res + 3 * r)
            continue
        res[3 * r] = total[r]
        if want_sums:
            res[3 * r + 1] = psum[r]
            res[3 * r + 2] = qsum[r]
        status[r] = ROW_OK


cdef void kl_rows_short(const floating *p, Py_ssize_t sp0, Py_ssize_t sp1, const floating *q,
                        Py_ssize_t sq0, Py_ssize_t sq1, Py_ssize_t m, Py_ssize_t n, int check,
                        int want_sums, double *res, int *status) noexcept nogil:
    """kl_row of m rows of n elements (0 < n <= SHORT_N), element e of row i
    at p[i sp0 + e sp1] and q[i sq0 + e sq1] (strides in elements, 0 for a
    broadcast operand): row i's results into res[3 i : 3 i + 3] and its
    status into status[i], the same bits and statuses as kl_row.  The rows
    of a reduction along axis 0 of a C-order matrix (sp0 = 1) are read
    across rows at unit stride, the kernel's best case."""
    cdef Py_ssize_t r0 = 0, rows = min(<Py_ssize_t>SHORT_ROWS, SHORT_ELEMS // n)
    while r0 < m:
        short_chunk(p + r0 * sp0, sp0, sp1, q + r0 * sq0, sq0, sq1, min(rows, m - r0), n,
                    check, want_sums, res + 3 * r0, status + r0)
        r0 += rows
