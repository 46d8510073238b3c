"""Compiled kernels for Jensen-Shannon, log-space KL and all-pairs matrices, and
the compiled entries of kl_div, js_div and kl_div_log (``_entries.pxi``).

The ``def`` functions loop over rows (or row pairs), in parallel with OpenMP
when it was available at build time, and write into arrays the caller
allocated.  Row statuses: 0 ok, 1 a bad value (check=True), 2 / 3 the first /
second input cannot be normalised (normalize=True).  Validation messages,
broadcasting and allocation live in the Python layer.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.float cimport DBL_MAX
from libc.math cimport HUGE_VAL, fabs

from kl_fast._core_table cimport (
    BLOCK_F32, BLOCK_F64, LOG_SHORT_N, ROW_BAD, ROW_NEEDS_CARE, ROW_OK, ROW_ZERO_SUM_P, CoreTable,
    ROW_ZERO_SUM_Q, SHORT_N, sumexp_narrow_fits, log_normaliser, product_unresolved,
    product_bound,
)
from kl_fast._kernels cimport (
    TASK_ROWS, choose_threads, core_table, kl_log_row, kl_row, kl_rows_task, team_completed,
    team_finished,
)


cdef inline signed char _status(int st) noexcept nogil:
    if st == ROW_BAD:
        return 1
    if st == ROW_ZERO_SUM_P:
        return 2
    if st == ROW_ZERO_SUM_Q:
        return 3
    return 0


def _check_rows(p, q, out, status, str func):
    if q.shape[0] != p.shape[0] or q.shape[1] != p.shape[1] or out.shape[0] != p.shape[0] \
            or out.shape[1] != 3 or status.shape[0] != p.shape[0]:
        raise ValueError(f"{func}: shape mismatch between p, q, out and status")


cdef inline int _pair_row(bint log_space, const floating *p, Py_ssize_t sp, const floating *q,
                          Py_ssize_t sq, Py_ssize_t n, bint normalize, bint check,
                          double *res) noexcept nogil:
    if log_space:
        return kl_log_row(p, sp, q, sq, n, normalize, check, res)
    return js_row(p, sp, q, sq, n, normalize, check, res)


cdef _pair_rows(const floating[:, :] p, const floating[:, :] q, double[:, ::1] out,
                signed char[::1] status, bint normalize, bint check, int n_threads,
                bint log_space, str func):
    """The row loop of js_rows (log_space False) and kl_log_rows (True)."""
    cdef Py_ssize_t m = p.shape[0], n = p.shape[1], i
    cdef Py_ssize_t sp0 = p.strides[0] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t sp1 = p.strides[1] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t sq0 = q.strides[0] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t sq1 = q.strides[1] // <Py_ssize_t>sizeof(floating)
    cdef const floating *pp
    cdef const floating *qp
    _check_rows(p, q, out, status, func)
    if m == 0:
        return
    pp = &p[0, 0] if n > 0 else <const floating *>NULL
    qp = &q[0, 0] if n > 0 else <const floating *>NULL
    cdef bint watched = _watch_interrupts(<double>m * n)
    try:
        if n_threads <= 1 or m == 1:
            with nogil:
                for i in range(m):
                    if stop_requested(watched):
                        break
                    status[i] = _status(_pair_row(log_space, pp + i * sp0, sp1, qp + i * sq0,
                                                  sq1, n, normalize, check, &out[i, 0]))
        else:
            for i in prange(m, nogil=True, schedule="static", num_threads=n_threads):
                if not stop_requested(watched):
                    status[i] = _status(_pair_row(log_space, pp + i * sp0, sp1, qp + i * sq0,
                                                  sq1, n, normalize, check, &out[i, 0]))
    finally:
        _end_watch(watched)


def js_rows(const floating[:, :] p, const floating[:, :] q, double[:, ::1] out,
            signed char[::1] status, bint normalize, bint check, int n_threads):
    """Per row i: out[i] = (JS(p_i, q_i), sum p_i, sum q_i); status[i] = row status.

    The sums are written only with normalize (which divides each row by its sum
    first).  p and q have the same shape (m, n) and any strides (0 included).
    """
    _pair_rows(p, q, out, status, normalize, check, n_threads, False, "js_rows")


def kl_log_rows(const floating[:, :] lp, const floating[:, :] lq, double[:, ::1] out,
                signed char[::1] status, bint normalize, bint check, int n_threads):
    """Per row i: out[i] = (KL from log-probabilities, lp0_i, lq0_i); status[i].

    lp0, lq0 are the log-sum-exp normalisers with normalize, else 0.
    """
    _pair_rows(lp, lq, out, status, normalize, check, n_threads, True, "kl_log_rows")


def kl_log_find_bad(const floating[:] lp, const floating[:] lq):
    """First NaN or +inf of a row pair, lp before lq: (which, index, value) or None."""
    cdef int which = 0, found
    cdef Py_ssize_t index = 0
    cdef double value = 0.0
    cdef Py_ssize_t n = lp.shape[0]
    if lq.shape[0] != n:
        raise ValueError("kl_log_find_bad: lp and lq differ in length")
    if n == 0:
        return None
    if floating is double:
        found = core_table().kl_log_find_bad_f64(&lp[0], lp.strides[0] // 8, &lq[0],
                                                 lq.strides[0] // 8, n, &which, &index, &value)
    else:
        found = core_table().kl_log_find_bad_f32(&lp[0], lp.strides[0] // 4, &lq[0],
                                                 lq.strides[0] // 4, n, &which, &index, &value)
    if not found:
        return None
    return which, index, value


def js_pairs(const floating[:, :] P, const floating[:, :] Q, const double[::1] a,
             const double[::1] b, double[:, ::1] out, bint symmetric, int n_threads):
    """out[i, j] = JS(P_i / a_i, Q_j / b_j) for all row pairs (no validation).

    a and b are positive finite divisors (the row sums with normalize, else 1);
    each entry equals js_rows' value for the pair bit for bit.

    With symmetric (Q is P, a is b) only j >= i is computed and mirrored; the
    kernel is exactly symmetric, so the mirror equals the direct value.
    """
    cdef Py_ssize_t m = P.shape[0], k = Q.shape[0], n = P.shape[1], i
    cdef Py_ssize_t sp0 = P.strides[0] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t sp1 = P.strides[1] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t sq0 = Q.strides[0] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t sq1 = Q.strides[1] // <Py_ssize_t>sizeof(floating)
    cdef const floating *pp
    cdef const floating *qp
    if Q.shape[1] != n or a.shape[0] != m or b.shape[0] != k or out.shape[0] != m \
            or out.shape[1] != k or (symmetric and m != k):
        raise ValueError("js_pairs: shape mismatch between P, Q, a, b and out")
    if m == 0 or k == 0:
        return
    pp = &P[0, 0] if n > 0 else <const floating *>NULL
    qp = &Q[0, 0] if n > 0 else <const floating *>NULL
    cdef bint watched = _watch_interrupts(<double>m * k * n)
    try:
        if n_threads <= 1 or m == 1:
            with nogil:
                for i in range(m):
                    if stop_requested(watched):
                        break
                    _js_pair_row(pp, sp0, sp1, qp, sq0, sq1, n, k, a, b, out, i, symmetric)
        else:
            for i in prange(m, nogil=True, schedule="dynamic", chunksize=1,
                            num_threads=n_threads):
                if not stop_requested(watched):
                    _js_pair_row(pp, sp0, sp1, qp, sq0, sq1, n, k, a, b, out, i, symmetric)
    finally:
        _end_watch(watched)


cdef inline void _js_pair_row(const floating *pp, Py_ssize_t sp0, Py_ssize_t sp1,
                              const floating *qp, Py_ssize_t sq0, Py_ssize_t sq1, Py_ssize_t n,
                              Py_ssize_t k, const double[::1] a, const double[::1] b,
                              double[:, ::1] out, Py_ssize_t i, bint symmetric) noexcept nogil:
    """Row i of js_pairs' matrix (from column i on when symmetric, mirrored)."""
    cdef Py_ssize_t j
    for j in range(i if symmetric else 0, k):
        js_row_divided(pp + i * sp0, sp1, qp + j * sq0, sq1, n, a[i], b[j], False, &out[i, j])
        if symmetric:
            out[j, i] = out[i, j]


def kl_pairs(const floating[:, :] P, const floating[:, :] Q, const Py_ssize_t[::1] rows,
             const Py_ssize_t[::1] cols, double[:, ::1] out, int n_threads):
    """out[t, 0] = sum p*log(p/q) for p = P[rows[t]], q = Q[cols[t]] (no validation).

    The exact row kernel of kl_div, for the entries of an all-pairs matrix that
    need it.  Indices must be in range (the caller guarantees it).
    """
    cdef Py_ssize_t t, npairs = rows.shape[0], n = P.shape[1]
    cdef Py_ssize_t sp0 = P.strides[0] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t sp1 = P.strides[1] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t sq0 = Q.strides[0] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t sq1 = Q.strides[1] // <Py_ssize_t>sizeof(floating)
    cdef const floating *pp
    cdef const floating *qp
    if Q.shape[1] != n or cols.shape[0] != npairs or out.shape[0] != npairs or out.shape[1] != 3:
        raise ValueError("kl_pairs: shape mismatch between P, Q, rows, cols and out")
    if npairs == 0:
        return
    pp = &P[0, 0] if n > 0 and P.shape[0] > 0 else <const floating *>NULL
    qp = &Q[0, 0] if n > 0 and Q.shape[0] > 0 else <const floating *>NULL
    cdef bint watched = _watch_interrupts(<double>npairs * n)
    try:
        if n_threads <= 1 or npairs == 1:
            with nogil:
                for t in range(npairs):
                    if stop_requested(watched):
                        break
                    kl_row(pp + rows[t] * sp0, sp1, qp + cols[t] * sq0, sq1, n, False, False,
                           &out[t, 0])
        else:
            for t in prange(npairs, nogil=True, schedule="static", num_threads=n_threads):
                if not stop_requested(watched):
                    kl_row(pp + rows[t] * sp0, sp1, qp + cols[t] * sq0, sq1, n, False, False,
                           &out[t, 0])
    finally:
        _end_watch(watched)


def centred_log_rows(const double[:, ::1] x, const double[::1] r, double[:, ::1] out,
                     int n_threads):
    """out[i] = log(x[i] / r) where x > 0 and 0 where x == 0, row by row (r > 0,
    no validation)."""
    cdef Py_ssize_t m = x.shape[0], n = x.shape[1], i
    if out.shape[0] != m or out.shape[1] != n or r.shape[0] != n:
        raise ValueError("centred_log_rows: x, r and out differ in shape")
    if m == 0 or n == 0:
        return
    if n_threads <= 1 or m == 1:
        with nogil:
            for i in range(m):
                core_table().centred_log_f64(&x[i, 0], &r[0], &out[i, 0], n)
    else:
        for i in prange(m, nogil=True, schedule="static", num_threads=n_threads):
            core_table().centred_log_f64(&x[i, 0], &r[0], &out[i, 0], n)


cdef inline signed char _topk_candidate(double a, double e, double t,
                                        unsigned char flags) noexcept nogil:
    """Whether a product-form entry a with error bound e can enter a row whose
    top-k threshold is t: 1 when a - e <= t, and always where a or e is NaN, a
    is -inf (the product form could not evaluate it) or the pair is rounded
    (flags bit 1); a = +inf (mass of p on a zero of q) is exact (a candidate
    only while t is +inf), or -1 where flags are set (a sum that may have
    overflowed, or a rounded row: the caller decides)."""
    if a == HUGE_VAL:
        return -1 if flags else <signed char>(t == HUGE_VAL)
    if a != a or e != e or a == -HUGE_VAL or flags & 2:
        return 1
    return <signed char>(a - e <= t)


cdef inline void _topk_check(const double[:, :] A, const double[:, :] E,
                             const unsigned char[::1] row_flags,
                             const unsigned char[::1] col_flags, str func):
    if (E.shape[0] != A.shape[0] or E.shape[1] != A.shape[1]
            or row_flags.shape[0] != A.shape[0] or col_flags.shape[0] != A.shape[1]):
        raise ValueError(f"{func}: A, E, row_flags and col_flags differ in shape")


def topk_upper(const double[:, :] A, const double[:, :] E, const Py_ssize_t[::1] rows,
               const unsigned char[::1] row_flags, const unsigned char[::1] col_flags,
               double[:, ::1] buf):
    """The upper bounds A + E of the tile's rows ``rows`` into the last columns
    of buf (one row of buf per index; the first columns are the caller's), +inf
    where the entry is not finite, its bound is NaN or its row or column was
    rounded (flags bit 1), as for kl_topk's threshold."""
    cdef Py_ssize_t k = A.shape[1], off = buf.shape[1] - A.shape[1], r, i, j
    cdef double a, e
    _topk_check(A, E, row_flags, col_flags, "topk_upper")
    if buf.shape[0] != rows.shape[0] or off < 0:
        raise ValueError("topk_upper: buf does not fit rows and A")
    with nogil:
        for r in range(rows.shape[0]):
            i = rows[r]
            for j in range(k):
                a = A[i, j]
                e = E[i, j]
                if (row_flags[i] | col_flags[j]) & 2 or not (fabs(a) <= DBL_MAX) or e != e:
                    buf[r, off + j] = HUGE_VAL
                else:
                    buf[r, off + j] = a + e


def topk_screen(const double[:, :] A, const double[:, :] E, const double[::1] t,
                const unsigned char[::1] row_flags, const unsigned char[::1] col_flags,
                Py_ssize_t[::1] rows, Py_ssize_t[::1] cols):
    """kl_topk's screen of one tile in one pass: the entries (i, j) of the
    product form A (error bounds E, any strides) that can enter row i's top k
    (threshold t[i]) into rows[:count], cols[:count] (each of A's size), in
    row-major order; flags as _KLSide.flags gives them (see _topk_candidate).
    Returns count, or -1 (rows and cols unfinished) where an infinite entry
    lies in a flagged row or column."""
    cdef Py_ssize_t m = A.shape[0], k = A.shape[1], i, j, count = 0
    cdef signed char c
    _topk_check(A, E, row_flags, col_flags, "topk_screen")
    if t.shape[0] != m or rows.shape[0] < m * k or cols.shape[0] < m * k:
        raise ValueError("topk_screen: t, rows or cols do not fit A")
    with nogil:
        for i in range(m):
            for j in range(k):
                c = _topk_candidate(A[i, j], E[i, j], t[i], row_flags[i] | col_flags[j])
                if c < 0:
                    count = -1
                    break
                rows[count] = i
                cols[count] = j
                count += c
            if count < 0:
                break
    return count

include "_interrupt.pxi"
include "_team.pxi"
include "_entries.pxi"
include "_entries_product.pxi"

