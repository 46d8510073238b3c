# The row kernels, cimportable from other Cython code:
#     from kl_fast._kernels cimport kl_row, kl_log_row
# Every caller goes through the one table kl_fast._kernels selected at import
# (core_table()), so a cimporting module runs the same instruction set.
from cython cimport floating

from kl_fast._core_table cimport (
    CoreTable, ROW_BAD, ROW_CAREFUL, ROW_OK, ROW_ZERO_SUM_P, ROW_ZERO_SUM_Q, SHORT_N,
)


cdef const CoreTable *core_table() noexcept nogil
cdef int choose_threads(object num_threads, Py_ssize_t cap, double items, double hot_min,
                        unsigned long long *token) except -1
cdef void team_finished(unsigned long long token) noexcept
cdef void team_completed(unsigned long long token) noexcept


cdef inline int kl_row(const floating *p, Py_ssize_t sp, const floating *q,
                       Py_ssize_t sq, Py_ssize_t n, bint check, bint want_sums,
                       double *res) noexcept nogil:
    """Masked sum p*log(p/q) of one row into res[0], and with want_sums the
    sums of p and q into res[1] and res[2] (else those are 0).

    Strides are in elements.  Returns ROW_OK / ROW_CAREFUL, or ROW_BAD when
    check is set and the row holds a negative, NaN or infinite value.
    """
    if floating is double:
        return core_table().kl_row_f64(p, sp, q, sq, n, check, want_sums, res)
    else:
        return core_table().kl_row_f32(p, sp, q, sq, n, check, want_sums, res)


cdef enum:
    TASK_ROWS = 128   # rows per call of kl_rows_across (a thread's unit of work)


cdef inline void kl_rows_task(const floating *p, Py_ssize_t sp0, Py_ssize_t sp1,
                              const floating *q, Py_ssize_t sq0, Py_ssize_t sq1,
                              Py_ssize_t rows, Py_ssize_t n, bint check, bint want_sums,
                              double *res, signed char *bad) noexcept nogil:
    """kl_row of up to TASK_ROWS short rows (0 < n <= SHORT_N) at once, across
    rows (kl_rows_across): row r's sums into res[3 r : 3 r + 3], bad[r] = 1
    where check is set and row r holds a bad value (its res is then not
    written), else 0.  Strides in elements."""
    cdef int st[TASK_ROWS]
    cdef Py_ssize_t r
    if floating is double:
        core_table().kl_rows_across_f64(p, sp0, sp1, q, sq0, sq1, rows, n, check, want_sums,
                                        res, st)
    else:
        core_table().kl_rows_across_f32(p, sp0, sp1, q, sq0, sq1, rows, n, check, want_sums,
                                        res, st)
    for r in range(rows):
        bad[r] = 1 if st[r] == ROW_BAD else 0


cdef inline int kl_log_row(const floating *lp, Py_ssize_t sp, const floating *lq,
                           Py_ssize_t sq, Py_ssize_t n, bint normalize, bint check,
                           double *res) noexcept nogil:
    """KL divergence of one row from log-probabilities into res[0]; with
    normalize the rows' log-sum-exp normalisers into res[1] and res[2] (else
    those are 0).

    Strides are in elements.  Returns ROW_OK / ROW_CAREFUL, ROW_BAD when check
    is set and the row holds NaN or +inf, or with normalize ROW_ZERO_SUM_P /
    ROW_ZERO_SUM_Q when log_p / log_q is -inf everywhere.
    """
    if floating is double:
        return core_table().kl_log_row_f64(lp, sp, lq, sq, n, normalize, check, res)
    else:
        return core_table().kl_log_row_f32(lp, sp, lq, sq, n, normalize, check, res)
