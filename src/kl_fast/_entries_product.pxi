# kl_pairwise's matrix-product form for small inputs (included by _div_kernels.pyx).
#
# Design: _pairwise._kl_matrix computes the all-pairs KL as each row's term
# against the column maxima r minus one matrix product with the centred logs of
# Q, in some fifteen NumPy and kernel calls whose fixed cost (~50 us) outweighs
# small products' work.  _kl_product_small is the same computation for the
# common case, step for step, through the same kernels, error bound and BLAS
# call, so it gives the Python layer's entries: rows of finite non-negative
# values without normalize, no row sum near the top of the range and, with
# base, no p below 2**-968.  For anything else it returns None and the Python
# layer computes (or explains) the call.

# Entries of the matrix-product form within this many error bounds of zero are
# recomputed by the exact row kernel, so every other entry has a relative error
# below 1 / _REFINE_FACTOR.
cdef double _REFINE_FACTOR = 2.0 ** 24
# ... and so are entries below this fraction of their error scale (the bound
# before its factor gamma): near-duplicate rows, whose small divergences the
# product's rounding (about eps sqrt(n) times that scale) would leave at
# NumPy's accuracy or worse, get the row kernel's (SciPy's level).  Rows far
# from one another (the common case) are not touched.
cdef double _REFINE_RELATIVE = 2.0 ** -12
REFINE_FACTOR, REFINE_RELATIVE = _REFINE_FACTOR, _REFINE_RELATIVE   # for the Python layer

cdef enum:
    # m k n and m k up to these: the compiled product form, on one thread.
    # Measured against the Python layer's (its finish on two threads), one call,
    # 2-core Intel Xeon: 100 x 100, n = 100, 179 -> 141 us; 500 x 500, n = 4,
    # 937 -> 426 us; 200 x 200, n = 200 (2**22.9), 725 -> 589 us; 1000 x 1000,
    # n = 8, 1287 -> 1227 us.
    SMALL_PRODUCT = 1 << 22
    SMALL_PRODUCT_ENTRIES = 1 << 20
    MIN_LANES = 8   # running minima of _least_positive

# Set by the Python layer (configure_product): the m k n above which BLAS runs
# a product on threads (-1: never), and what to call then (its threads spin on
# after it: _kernels.note_busy_core).
cdef Py_ssize_t _blas_threaded = -1
cdef object _note_busy_core = None


def configure_product(Py_ssize_t blas_threaded, object note_busy_core):
    """Install the Python layer's view of BLAS's threads (see above)."""
    global _blas_threaded, _note_busy_core
    _blas_threaded, _note_busy_core = blas_threaded, note_busy_core


cdef double _PRODUCT_TINY = 4.008336720017946e-292   # 2**-968 (kl_div's raw_tiny)
# row sums up to this keep every entry's raw sum in range (|log(p / q)| <= 1455)
cdef double _PRODUCT_BIG = DBL_MAX / 1500.0
PRODUCT_BIG = _PRODUCT_BIG


cdef inline double _product_gamma(Py_ssize_t n) noexcept nogil:
    """The relative factor of the product form's error bound for rows of n
    elements: (n + 64) u / (1 - (n + 64) u), u = 2**-53."""
    return (n + 64) * 2.0 ** -53 / (1.0 - (n + 64) * 2.0 ** -53)


def product_gamma(Py_ssize_t n):
    """_product_gamma, for the Python layer."""
    return _product_gamma(n)


cdef void _error_scales(const double *P, Py_ssize_t m, Py_ssize_t n, const double *r,
                        double *abs_lr, double *h) noexcept nogil:
    """h[i], holding sum p log p of row p = P[i] on entry, becomes the scale of
    the product form's rounding errors in that row's entries: sum p |L| (= -C,
    added in the finish) plus sum |p log(p / r)| <= sum |p log p| + sum p |log r|,
    taken as -sum p log p + sum p |log r| + 2 sum_{p > 1} p log p.  abs_lr:
    room for the n values |log r|."""
    cdef Py_ssize_t i, l
    cdef double big
    cdef const double *p
    for l in range(n):
        abs_lr[l] = fabs(log(r[l]))
    for i in range(m):
        p, big = P + i * n, 0.0
        h[i] = -h[i]
        for l in range(n):
            h[i] += p[l] * abs_lr[l]
            if p[l] > 1.0:
                big += p[l] * log(p[l])
        h[i] += 2.0 * big


def error_scales(const double[:, ::1] P, const double[::1] r, double[::1] h):
    """_error_scales of the rows of P against the column maxima r, in place
    of their sums p log p in h (the Python layer's product form)."""
    cdef double[::1] abs_lr = _numpy.empty(r.shape[0])
    if P.shape[1] != r.shape[0] or P.shape[0] != h.shape[0]:
        raise ValueError("error_scales: P, r and h differ in shape")
    if P.shape[0] and P.shape[1]:
        with nogil:
            _error_scales(&P[0, 0], P.shape[0], P.shape[1], &r[0], &abs_lr[0], &h[0])


cdef double _least_positive(const double *x, Py_ssize_t count) noexcept nogil:
    """The least positive value of x (HUGE_VAL where there is none; NaN and
    +inf are passed over), in MIN_LANES running minima a compiler vectorises."""
    cdef double lo[MIN_LANES]
    cdef double v, least = HUGE_VAL
    cdef Py_ssize_t t, l, full = count - count % MIN_LANES
    for l in range(MIN_LANES):
        lo[l] = HUGE_VAL
    for t in range(0, full, 8):   # (a literal step: Cython's C loops need one)
        for l in range(MIN_LANES):
            v = x[t + l]
            lo[l] = v if (v > 0.0) & (v < lo[l]) else lo[l]
    for t in range(full, count):
        v = x[t]
        least = v if (v > 0.0) & (v < least) else least
    for l in range(MIN_LANES):
        least = min(least, lo[l])
    return least


cdef void _column_scan(const double *Q, Py_ssize_t k, Py_ssize_t n, double *hi, double *lo,
                       double *zeros) noexcept nogil:
    """Per column l of Q (k, n), in one pass a compiler vectorises (a row at a
    time, the columns side by side): hi[l] its maximum (NaN where the column
    holds one, as NumPy's max), lo[l] its minimum and zeros[l] its number of
    zeros; each starts at 0."""
    cdef Py_ssize_t j, l
    cdef double v
    for l in range(n):
        hi[l], lo[l], zeros[l] = 0.0, 0.0, 0.0
    for j in range(k):
        for l in range(n):
            v = Q[j * n + l]
            hi[l] = hi[l] if ((hi[l] >= v) | (hi[l] != hi[l])) else v
            lo[l] = lo[l] if lo[l] <= v else v
            zeros[l] += 1.0 if v == 0.0 else 0.0


cdef inline void _centre(double *r, Py_ssize_t n) noexcept nogil:
    """Column maxima r become the product form's centring: 1 where not positive."""
    cdef Py_ssize_t l
    for l in range(n):
        if not r[l] > 0.0:
            r[l] = 1.0


def column_maxima(const double[:, ::1] Q):
    """The centring r of the product form for Q (k, n): its column maxima, 1
    where those are not positive (a new array of n values; the Python layer)."""
    cdef Py_ssize_t k = Q.shape[0], n = Q.shape[1]
    cdef cnp.ndarray r = _numpy.empty(n)
    cdef double[::1] scratch = _numpy.empty(2 * n + 1)
    _column_scan(&Q[0, 0] if k and n else NULL, k, n, <double *>cnp.PyArray_DATA(r),
                 &scratch[0], &scratch[n])
    _centre(<double *>cnp.PyArray_DATA(r), n)
    return r


cdef Py_ssize_t _checked_columns(const double *Q, Py_ssize_t k, Py_ssize_t n, double *r,
                                 double *scratch, Py_ssize_t *cols) noexcept nogil:
    """r = the centring of Q (k, n) (column_maxima's) and cols = the columns
    holding a zero; their number, or -1 where Q holds a negative, NaN or
    infinite value.  scratch: room for 2 n values."""
    cdef Py_ssize_t l, ncols = 0
    _column_scan(Q, k, n, r, scratch, scratch + n)
    for l in range(n):
        if not (scratch[l] >= 0.0 and r[l] <= DBL_MAX):
            return -1
        if scratch[n + l] > 0.0:
            cols[ncols] = l
            ncols += 1
    _centre(r, n)
    return ncols


cdef bint _rows_against(const double *P, Py_ssize_t m, Py_ssize_t n, const double *v,
                        bint stats, double *sums, double *totals) noexcept nogil:
    """sums[i] = sum p log(p / v) of every row p of P, by kl_rows' kernels
    (across rows when they are short); with stats the values are checked and
    totals[i] = sum p.  False for a bad value (the Python layer explains it)."""
    cdef double res[3 * TASK_ROWS]
    cdef signed char bad[TASK_ROWS]
    cdef Py_ssize_t i0 = 0, i, rows
    while i0 < m:
        rows = min(<Py_ssize_t>TASK_ROWS, m - i0)
        if m > 1 and n <= SHORT_N:
            kl_rows_task(P + i0 * n, n, 1, v, 0, 1, rows, n, stats, stats, res, bad)
        else:
            for i in range(rows):
                bad[i] = (kl_row(P + (i0 + i) * n, 1, v, 1, n, stats, stats, res + 3 * i)
                          == ROW_BAD)
        for i in range(rows):
            if bad[i]:
                return False
            sums[i0 + i] = res[3 * i]
            totals[i0 + i] = res[3 * i + 1]
        i0 += rows
    return True


cdef bint _row_terms_small(const double *P, Py_ssize_t m, Py_ssize_t n, const double *r,
                           double *scratch, double *hr, double *h_abs) noexcept nogil:
    """Per row of P: hr = sum p log(p / r) and the scale of the product form's
    rounding errors h_abs (_error_scales), as _pairwise._row_terms gives them.
    scratch: room for 2 n + m values.  False for a bad value or a row sum near
    the top of the range (the Python layer takes the call)."""
    cdef double *ones = scratch
    cdef double *psum = scratch + 2 * n
    cdef Py_ssize_t i
    for i in range(n):
        ones[i] = 1.0
    if not _rows_against(P, m, n, ones, True, h_abs, psum):
        return False
    for i in range(m):
        if not psum[i] <= _PRODUCT_BIG:
            return False
    _error_scales(P, m, n, r, scratch + n, h_abs)
    return _rows_against(P, m, n, r, False, hr, psum)


cdef void _infinite_entries(const double *P, const double *Q, Py_ssize_t m, Py_ssize_t k,
                            Py_ssize_t n, const Py_ssize_t *cols, Py_ssize_t ncols,
                            double *res, Py_ssize_t *zeros) noexcept nogil:
    """res[i, j] = +inf where P[i] has mass on a zero of Q[j]; cols: the ncols
    columns of Q holding a zero; zeros: room for ncols indices."""
    cdef Py_ssize_t i, j, c, z, nz
    for j in range(k):
        nz = 0
        for c in range(ncols):
            if Q[j * n + cols[c]] == 0.0:
                zeros[nz] = cols[c]
                nz += 1
        if nz == 0:
            continue
        for i in range(m):
            for z in range(nz):
                if P[i * n + zeros[z]] > 0.0:
                    res[i * k + j] = HUGE_VAL
                    break


cdef bint _finish_small(const double *P, const double *Q, Py_ssize_t m, Py_ssize_t k,
                        Py_ssize_t n, const double *hr, const double *h_abs,
                        const Py_ssize_t *cols, Py_ssize_t ncols, double *res,
                        unsigned char *redo, Py_ssize_t *zeros) noexcept nogil:
    """res (holding P L^T) becomes the divergences, those the bound cannot
    resolve from 0 recomputed by kl_div's row kernel (False when such a pair
    needs the Python layer's rescaling), and +inf where P[i] has mass on a
    zero of Q[j] (kl_div's value of such a pair too; cols: the ncols columns
    of Q holding a zero).  redo: k zeroed bytes, a row's flags at a time;
    zeros: room for ncols indices."""
    cdef double gamma = _product_gamma(n)
    cdef double factor = max(_REFINE_FACTOR, _REFINE_RELATIVE / gamma)
    cdef Py_ssize_t i, j
    cdef double *row
    for i in range(m):
        row = res + i * k
        if not core_table().product_row(row, k, hr[i], h_abs[i], gamma, factor, redo):
            continue
        for j in range(k):
            if redo[j]:
                redo[j] = 0
                if _row_value(KIND_KL, False, <const char *>(P + i * n), 1,
                              <const char *>(Q + j * n), 1, n, False, False, 0.0, 0.0,
                              &row[j]) != ROW_DONE:
                    return False
    if ncols:
        _infinite_entries(P, Q, m, k, n, cols, ncols, res, zeros)
    return True


cdef object _kl_product_small(cnp.ndarray pa, cnp.ndarray qa, double log_base, bint f32,
                              object out, str func):
    """kl_pairwise of the C-contiguous float64 matrices pa (m, n) and qa (k, n)
    by the product form (_pairwise._kl_matrix), without normalize, divided by
    log_base unless it is 0; None to hand the call to the Python layer."""
    cdef Py_ssize_t m = cnp.PyArray_DIM(pa, 0), n = cnp.PyArray_DIM(pa, 1)
    cdef Py_ssize_t k = cnp.PyArray_DIM(qa, 0), t
    cdef const double *P = <const double *>cnp.PyArray_DATA(pa)
    cdef const double *Q = <const double *>cnp.PyArray_DATA(qa)
    cdef cnp.ndarray L_arr, res
    cdef double *work
    cdef double *r
    cdef double *hr
    cdef double *h_abs
    cdef double *values
    cdef bint ok
    cdef Layout L
    cdef Py_ssize_t ncols
    cdef Py_ssize_t *cols
    # P's values are checked by its row sums (_row_terms_small), Q's by its
    # column scan (_checked_columns); with base, a p below 2**-968 may keep few
    # bits in its term, which base magnifies (_pairwise._small_entries redoes
    # such entries)
    if not (log_base == 0.0 or _least_positive(P, m * n) >= _PRODUCT_TINY):
        return None
    # r, then 2 n + m of scratch, hr, h_abs, 2 n indices (Py_ssize_t, no wider
    # than a double: a row's zeros, then the columns holding a zero) and a
    # row's k redo flags
    work = <double *>calloc(5 * n + 3 * m + k // 8 + 1, sizeof(double))
    if work == NULL:
        raise MemoryError
    r, hr = work, work + 3 * n + m
    h_abs = hr + m
    cols = <Py_ssize_t *>(h_abs + m + n)
    try:
        ncols = _checked_columns(Q, k, n, r, work + n, cols)
        if ncols < 0:
            return None
        L_arr = cnp.PyArray_EMPTY(2, cnp.PyArray_DIMS(qa), cnp.NPY_DOUBLE, 0)
        with nogil:
            for t in range(k):
                core_table().centred_log_f64(Q + t * n, r,
                                             <double *>cnp.PyArray_DATA(L_arr) + t * n, n)
            ok = _row_terms_small(P, m, n, r, work + n, hr, h_abs)
        if not ok:
            return None
        L.out_shape[0], L.out_shape[1] = m, k
        res = cnp.PyArray_EMPTY(2, L.out_shape, cnp.NPY_DOUBLE, 0)
        # (no overflow: |P L^T| <= sum p * 1400 < DBL_MAX, and no inf or NaN enters)
        _numpy.matmul(pa, L_arr.T, out=res)
        if 0 <= _blas_threaded < m * k * n:
            _note_busy_core()
        values = <double *>cnp.PyArray_DATA(res)
        with nogil:
            ok = _finish_small(P, Q, m, k, n, hr, h_abs, cols, ncols, values,
                               <unsigned char *>(h_abs + m + 2 * n), <Py_ssize_t *>(h_abs + m))
            if ok and log_base != 0.0:
                # base: as NumPy divides (without its overflow warning), in the
                # core's vectorised loop (its normal-range flag is not needed)
                core_table().divide_f64(values, 1, m * k, log_base, values)
        if not ok:
            return None
    finally:
        free(work)
    if out is None and not f32:
        return res
    L.m, L.out_ndim = m * k, 2
    delivered = _deliver(values, &L, f32, out)
    if delivered is None:  # an out of another dtype or layout: cast into it, or explain
        delivered = _deliver_python(_deliver(values, &L, f32, None), out,
                                    _DESCR_F32 if f32 else _DESCR_F64, func)
    return delivered
