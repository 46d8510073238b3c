# The all-pairs product form's finish (included by _core.pxi).
#
# Design: kl_pairwise forms C = P L^T with BLAS and then, row by row of the
# matrix, the divergences hp - C and the test of each against its a-priori
# error bound (kl_fast._pairwise._kl_matrix; the pass with normalize, a log per
# entry, stays in _entries.pxi).  A first loop, written in bits so that every
# build vectorises it (SSE2 included: a comparison narrowed to a flag does not
# vectorise there), finds the rows that may hold an entry to redo with a wider
# bound, |factor| (1 + 2^-40) |a| + 2^-1000, so that however the compiler
# rounds or fuses it, it never passes a row the test flags; the test itself
# (product_unresolved in _core_table.pxd, which _entries.pxi's pass with
# normalize uses too) then runs on those rows only.


cdef inline uint64_t maybe_unresolved_bits(double c, double hp, double h_abs, double gamma,
                                           double wide_factor) noexcept nogil:
    """The sign bit is set unless the entry hp - c is resolved from 0 by its
    bound a = product_bound(h_abs - c, gamma) with room to spare: |hp - c| > wide_factor |a|
    + 2^-1000 (then d, their difference, is positive, and its bits less 1 stay
    below +inf's), or a == 0 (a's bits without the sign are 0).  NaN entries
    or bounds are not resolved."""
    cdef double a = product_bound(h_abs - c, gamma)
    cdef double d = fabs(hp - c) - (wide_factor * fabs(a) + 9.332636185032189e-302)
    cdef uint64_t db, ab, z
    memcpy(&db, &d, 8)
    memcpy(&ab, &a, 8)
    z = db - 1
    return ((z | (z + <uint64_t>0x0010000000000000))
            & ((((ab & <uint64_t>0x7FFFFFFFFFFFFFFF) - 1) >> 63) - 1))


cdef int product_row(double *ob, Py_ssize_t k, double hp, double h_abs, double gamma,
                     double factor, unsigned char *redo) noexcept nogil:
    """One row of the product form without normalize: ob[j] = hp - ob[j], and
    redo[j] = 1 (redo zeroed by the caller) where the entry is not resolved
    from 0 (product_unresolved, with a = product_bound(h_abs - c, gamma)).
    Returns 1 when the row has such an entry."""
    cdef Py_ssize_t j
    cdef uint64_t maybe = 0
    cdef double wide_factor = fabs(factor) * (1.0 + 1.0 / 1099511627776.0)   # 1 + 2^-40
    cdef unsigned char any_redo = 0
    for j in range(k):
        maybe |= maybe_unresolved_bits(ob[j], hp, h_abs, gamma, wide_factor)
    if maybe >> 63:
        for j in range(k):
            redo[j] = product_unresolved(hp - ob[j], product_bound(h_abs - ob[j], gamma),
                                         factor)
            any_redo |= redo[j]
    for j in range(k):
        ob[j] = hp - ob[j]
    return any_redo
