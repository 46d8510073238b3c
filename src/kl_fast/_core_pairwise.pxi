# The all-pairs product form's finish (included by _core.pxi).
#
# Design: kl_pairwise forms C = P L^T with BLAS and then, row by row of the
# matrix, the divergences hp - C and the test of each against its a-priori
# error bound (kl_fast._pairwise._kl_matrix; the pass with normalize, a log per
# entry, stays in _entries.pxi).  The test is written in bits, not as a
# comparison narrowed to a byte flag, so that every build vectorises it (SSE2
# included), and the row's flags are written by a loop of their own, only in
# the rare row that has one.


cdef inline uint64_t unresolved_bits(double c, double hp, double h_abs, double gamma,
                                     double factor) noexcept nogil:
    """The sign bit is set where the entry hp - c is not resolved from 0 by its
    bound a = (h_abs - c) gamma: unless |hp - c| > factor a (then d = |hp - c| -
    factor a is positive, and its bits less 1 stay below +inf's) or a == 0 (a's
    bits without the sign are 0).  NaN entries or bounds are unresolved."""
    cdef double a = (h_abs - c) * gamma
    cdef double d = fabs(hp - c) - factor * a
    cdef uint64_t db, ab, z
    memcpy(&db, &d, 8)
    memcpy(&ab, &a, 8)
    z = db - 1
    return ((z | (z + <uint64_t>0x0010000000000000))
            & ((((ab & <uint64_t>0x7FFFFFFFFFFFFFFF) - 1) >> 63) - 1))


cdef int product_row(double *ob, Py_ssize_t k, double hp, double h_abs, double gamma,
                     double factor, unsigned char *redo) noexcept nogil:
    """One row of the product form without normalize: ob[j] = hp - ob[j], and
    redo[j] = 1 (redo zeroed by the caller) where unresolved_bits flags the
    entry.  Returns 1 when the row has such an entry."""
    cdef Py_ssize_t j
    cdef uint64_t unresolved = 0
    for j in range(k):
        unresolved |= unresolved_bits(ob[j], hp, h_abs, gamma, factor)
    if unresolved >> 63:
        for j in range(k):
            redo[j] = <unsigned char>(unresolved_bits(ob[j], hp, h_abs, gamma, factor) >> 63)
    for j in range(k):
        ob[j] = hp - ob[j]
    return <int>(unresolved >> 63)
