# The kernels of kl_fast: row reductions over contiguous or strided rows.
#
# Design: this one source is compiled once per instruction-set target
# (_core_baseline.pyx, _core_avx2.pyx, _core_avx512.pyx include it; setup.py gives each its
# flags) and exports its kernels in one CoreTable (_core_table.pxd);
# kl_fast._kernels picks a table at import.  The loops are plain Cython over
# pointers into the caller's memoryviews: each row is cut into blocks, a block
# is reduced in LANES fixed lanes (lane j takes the elements with i % LANES
# == j) that gcc and clang vectorise, the lanes are added in one fixed
# pairwise order and the block totals with Neumaier compensation, so a result
# depends only on the data and n, never on threads or layout.  The only C is
# kl_math.h (log/exp and exact residuals, inlined into the loops).  The KL
# rows are here, many KL rows computed across rows in _core_across.pxi, the
# Jensen-Shannon rows in _core_js.pxi (included below, and built on the same
# sums, lanes, gather and find_bad).
#
# A row is tried on the fast path, which checks its inputs as it goes
# (ratios in the normal range, no negative, NaN or infinite q); a row it
# cannot take goes to the careful path (libm, every special case), and with
# check=True a row holding a negative, NaN or infinite value is reported bad.
from libc.math cimport log, fabs, HUGE_VAL
from libc.float cimport DBL_MAX, DBL_MIN, FLT_MIN
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy
from cpython.pycapsule cimport PyCapsule_New

from cython cimport floating

from kl_fast._core_table cimport (
    CoreTable, ROW_BAD, ROW_CAREFUL, ROW_NEEDS_CARE, ROW_OK, ROW_ZERO_SUM_P, ROW_ZERO_SUM_Q,
    SHORT_N, BLOCK_F64, BLOCK_F32, product_unresolved, product_bound,
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
    double klm_mul_add_f64(double a, double b, double c)
    float klm_mul_add_f32(float a, float b, float c)
    double klm_zero_where_zero_f64(double v, double x)
    uint64_t klm_nonzero_mask_f64(double x)
    double FLT_MAX_D "((double)FLT_MAX)"
    void klm_prefetch_ahead(const void *x)

cdef enum:
    LANES = 8
    BLOCK_BATCH = 16     # block results a row keeps at a time before adding them
    PAIRS_TWO_CHAINS = 32  # groups of pairs from which a float32 block adds them in two chains


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


cdef inline void block_sums(const floating *p, const floating *q, Py_ssize_t length,
                            double *out) noexcept nogil:
    """The sums of p and q over a contiguous block into out[0], out[1]: lane j
    takes the elements with i % LANES == j (every kernel that sums p and q
    uses this one order), the lanes added by lane_total."""
    cdef double ps[LANES]
    cdef double qs[LANES]
    cdef Py_ssize_t g, j, full = length - length % LANES
    for j in range(LANES):
        ps[j] = 0.0
        qs[j] = 0.0
    for g in range(full // LANES):
        for j in range(LANES):
            ps[j] += p[g * LANES + j]
            qs[j] += q[g * LANES + j]
    for j in range(length - full):
        ps[j] += p[full + j]
        qs[j] += q[full + j]
    out[0] = lane_total(ps)
    out[1] = lane_total(qs)


cdef inline uint64_t sign_bad_bits(double v) noexcept nogil:
    """v's bits and its bits + 2^52: the sign bit of either is set when v is
    negative (or -0), infinite or NaN (an all-ones exponent carries into it)."""
    cdef uint64_t b
    memcpy(&b, &v, 8)
    return b | (b + <uint64_t>0x0010000000000000)


# ---- float64 KL block -----------------------------------------------------

# The lanes of a block.  bad starts at 1 (only its sign bit is tested), so no
# two zeroed fields are adjacent: gcc would merge their zeroing into one memset
# call (rep stos), which costs a short row more than its terms.
ctypedef struct LanesF64:
    double acc[LANES]      # p log z + (p - r q), per lane
    uint64_t bad[LANES]    # sign bit set: some element the fast path cannot take
    double acck[LANES]     # sum of p k (r = 2^k z), joined with acc once per block


cdef inline double kl_term_f64(double p, double q, double *k, uint64_t *bits) noexcept nogil:
    """The term p log(p/q) = p (k ln2 + log z) + (p - r q) for the rounded
    r = p/q = 2^k z: returns p log z + (p - r q) (exactly 0 where p == 0,
    whatever q) and k in k[0] (the lanes add p k with klm_mul_add_f64, an
    explicit rounding, and join it once per block), and the check bits
    in bits[0]: the sign bit is set when q is negative, -0, infinite or NaN
    (q's bits, and q's bits + 2^52), or when p != 0 and r is not normal,
    positive and finite (r's bits less DBL_MIN's leave [0, 2^63), or do
    after adding 2^53)."""
    cdef double r = p / q, t
    cdef uint64_t rb, z, pmask = klm_nonzero_mask_f64(p)
    t = klm_zero_where_zero_f64(klm_mul_add_f64(p, klm_log_parts_f64(r, k),
                                                klm_residual_f64(p, r, q)), p)
    memcpy(&rb, &r, 8)
    z = rb - <uint64_t>0x0010000000000000
    bits[0] = ((z | (z + <uint64_t>0x0020000000000000)) & pmask) | sign_bad_bits(q)
    return t


cdef inline void kl_group_f64(const double *p, const double *q, Py_ssize_t skip,
                              LanesF64 *L) noexcept nogil:
    """One group of LANES elements into the lanes (kl_term_f64).  Lanes
    j < skip hold elements already counted and take p = 0, q = 1."""
    cdef Py_ssize_t j
    cdef double pv, qv, kd
    cdef uint64_t bits
    for j in range(LANES):
        pv = p[j]
        qv = q[j]
        pv = pv if j >= skip else 0.0
        qv = qv if j >= skip else 1.0
        L.acc[j] += kl_term_f64(pv, qv, &kd, &bits)
        L.acck[j] = klm_mul_add_f64(pv, kd, L.acck[j])
        L.bad[j] |= bits


cdef inline bint kl_block_f64(const double *p, const double *q, Py_ssize_t length,
                              bint want_sums, double *out) noexcept nogil:
    """KL sum of a contiguous block (0 < length <= BLOCK_F64) into out[0], and
    the sums of p and q into out[1:3] when want_sums.  Returns True when an
    element needs the careful path (p or q negative, NaN or infinite, or
    p > 0 with p/q outside the normal range)."""
    cdef LanesF64 L
    cdef Py_ssize_t g, j, full = length - length % LANES, rem = length - full
    cdef uint64_t bad = 0
    cdef double kd
    cdef uint64_t bits
    for j in range(LANES):
        L.acc[j] = 0.0
        L.bad[j] = 1
        L.acck[j] = 0.0
    if length < LANES:
        # a row shorter than a group: element j in lane j, no vector to fill
        for j in range(length):
            L.acc[j] = kl_term_f64(p[j], q[j], &kd, &bits)
            L.acck[j] = p[j] * kd
            L.bad[j] = bits
    for g in range(full // LANES):
        klm_prefetch_ahead(p + g * LANES)   # a group is one cache line of p and of q
        klm_prefetch_ahead(q + g * LANES)
        kl_group_f64(p + g * LANES, q + g * LANES, 0, &L)
    if full and rem:
        # the last LANES elements, the group before's skipped: read in place
        kl_group_f64(p + length - LANES, q + length - LANES, LANES - rem, &L)
    for j in range(LANES):
        bad |= L.bad[j]
    if bad >> 63:
        return True
    for j in range(LANES):
        L.acc[j] = klm_join_k_f64(L.acck[j], L.acc[j])
    out[0] = lane_total(L.acc)
    if want_sums:
        block_sums(p, q, length, out + 1)
    return False


# ---- float32 KL block -----------------------------------------------------

cdef inline uint32_t kl_ratio_f32(float p, float q, float *r, float *s) noexcept nogil:
    """r = p / q and its residual s = p - r q (0 where p == 0), with the check
    bits: the sign bit of the result is set when q is negative, -0, NaN or
    infinite, or when p != 0 and r is not normal, positive and finite (r's
    bits less FLT_MIN's leave [0, 2^31), or do after adding 2^24; q's bits
    + 2^23 reach the sign bit for an infinite or NaN q)."""
    cdef float rv = p / q, sv
    cdef uint32_t rb, qb, z, pmask = <uint32_t>0 - <uint32_t>(p != 0.0)
    memcpy(&rb, &rv, 4)
    memcpy(&qb, &q, 4)
    z = rb - <uint32_t>0x00800000
    sv = klm_residual_f32(p, rv, q)
    r[0] = rv
    s[0] = sv if p != 0.0 else 0.0
    return ((z | (z + <uint32_t>0x01000000)) & pmask) | qb | (qb + <uint32_t>0x00800000)


cdef inline float kl_term_f32(const float *p, const float *r, const float *s, Py_ssize_t skip,
                              Py_ssize_t j) noexcept nogil:
    """Term j of a group: p log r + (p - r q), 0 for a skipped lane."""
    cdef float pv = p[j]
    pv = pv if j >= skip else 0.0
    return klm_mul_add_f32(pv, r[j], s[j])


cdef inline float kl_pair_f32(const float *p, const float *r, const float *s, Py_ssize_t j,
                              Py_ssize_t d) noexcept nogil:
    """Terms j and j + d of p, the logs of the ratios r and the residuals s,
    added in float before they are widened to a double lane (the products
    rounded by klm_mul_add_f32: a product left to the compiler is fused in
    one loop and not in another)."""
    cdef float t = klm_mul_add_f32(p[j], r[j], s[j] + s[d + j])
    return klm_mul_add_f32(p[d + j], r[d + j], t)


cdef inline void add_pairs_two_chains(const float *pr, Py_ssize_t pairs,
                                     double *acc) noexcept nogil:
    """kl_block_f32's groups of pairs pr (LANES each) widened and added into
    the lanes acc (zero on entry) in two chains, the even groups and the odd
    ones, joined at the end: the additions of one chain waited on one another
    (one thread, medians, AVX-512: n = 20,000 4.8 -> 4.5-4.7 us, rows of 600
    15.1 -> 14.4 us per 100).  Blocks of fewer than PAIRS_TWO_CHAINS groups
    (512 elements) keep one chain: with two chains in every block rows of 50
    took 12% longer.  The rows kl_rows_across takes (at most 2 groups) are
    added in one chain there, in the same order."""
    cdef double odd[LANES]
    cdef Py_ssize_t g, j
    for j in range(LANES):
        odd[j] = 0.0
    for g in range(0, pairs - 1, 2):
        for j in range(LANES):
            acc[j] += pr[g * LANES + j]
            odd[j] += pr[(g + 1) * LANES + j]
    if pairs % 2:
        for j in range(LANES):
            acc[j] += pr[(pairs - 1) * LANES + j]
    for j in range(LANES):
        acc[j] += odd[j]


cdef inline bint kl_block_f32(const float *p, const float *q, Py_ssize_t length,
                              bint want_sums, float *rbuf, double *out) noexcept nogil:
    """The float32 block (0 < length <= BLOCK_F32) in three short loops (fewer
    live values than one fused loop, measured faster): ratios, residuals and
    checks; the division-free log of the ratios in place; the terms
    p log r + (p - r q) in float, two added (elements i and i + half) before
    they are widened to the double lanes.  rbuf is the caller's scratch of 2 (BLOCK_F32 + LANES)
    floats (ratios, then their logs; residuals)."""
    cdef float *sbuf = rbuf + BLOCK_F32 + LANES
    cdef double acc[LANES]
    cdef uint32_t bad = 0
    cdef Py_ssize_t g, i, j, full = length - length % LANES, pairs = full // (2 * LANES)
    cdef Py_ssize_t half = pairs * LANES
    cdef Py_ssize_t rem = length - full, skip = LANES - rem
    cdef const float *ptail = p
    cdef const float *qtail = q
    cdef Py_ssize_t padded = full + (LANES if rem else 0)
    cdef float pv, qv, r, sv
    if length < LANES:
        # a row shorter than a group: element j in lane j, no vector to fill
        for j in range(LANES):
            acc[j] = 0.0
        for j in range(length):
            bad |= kl_ratio_f32(p[j], q[j], &r, &sv)
            acc[j] = klm_mul_add_f32(p[j], klm_log_normal_f32(r), sv)
        if bad >> 31:
            return True
        out[0] = lane_total(acc)
        if want_sums:
            block_sums(p, q, length, out + 1)
        return False
    # in pieces of 128 elements, each after the hints for its 8 cache lines (16
    # floats each) ahead of p and of q (a hint per line inside the vectorised
    # loop cost a reduction of bad per line: the tutorial row took 9% longer);
    # literal steps, which Cython's C loops need
    for g in range(0, full, 128):
        for i in range(g, min(g + 128, full), 16):
            klm_prefetch_ahead(p + i)
            klm_prefetch_ahead(q + i)
        for i in range(g, min(g + 128, full)):
            bad |= kl_ratio_f32(p[i], q[i], &rbuf[i], &sbuf[i])
    if rem:
        # the last LANES elements, the group before's skipped: read in place
        ptail = p + length - LANES
        qtail = q + length - LANES
        for j in range(LANES):
            pv = ptail[j]
            qv = qtail[j]
            bad |= kl_ratio_f32(pv if j >= skip else 0.0, qv if j >= skip else 1.0,
                                &rbuf[full + j], &sbuf[full + j])
    if bad >> 31:
        return True
    for i in range(padded):
        rbuf[i] = klm_log_normal_f32(rbuf[i])
    for j in range(LANES):
        acc[j] = 0.0
    # the first 2 half elements in pairs (i, i + half), added in float in place
    # of the first log, then lane j adds the pairs i % LANES == j
    for i in range(half):
        rbuf[i] = kl_pair_f32(p, rbuf, sbuf, i, half)
    if pairs < PAIRS_TWO_CHAINS:
        for g in range(pairs):
            for j in range(LANES):
                acc[j] += rbuf[g * LANES + j]
    else:
        add_pairs_two_chains(rbuf, pairs, acc)
    if full % (2 * LANES):
        i = 2 * half
        for j in range(LANES):
            acc[j] += kl_term_f32(p + i, rbuf + i, sbuf + i, 0, j)
    if rem:
        for j in range(LANES):
            acc[j] += kl_term_f32(ptail, rbuf + full, sbuf + full, skip, j)
    out[0] = lane_total(acc)
    if want_sums:
        block_sums(p, q, length, out + 1)
    return False


# ---- KL rows --------------------------------------------------------------

cdef int divide_row(const floating *x, Py_ssize_t sx, Py_ssize_t n, double s,
                    floating *out) noexcept nogil:
    """x / s element by element into out (contiguous): divided in double and
    rounded to x's dtype, as NumPy divides an array by a float64 sum and casts it
    back (kl_div's normalize of a row whose sums are far apart, _entries.pxi).
    0 where an element is neither 0 nor divided into the normal range of its
    dtype (negative, NaN, too small), else 1; no early exit, so the loops
    vectorise."""
    cdef Py_ssize_t i
    cdef int ok = 1
    cdef double d
    cdef double normal = DBL_MIN if floating is double else <double>FLT_MIN
    if sx == 1:
        for i in range(n):
            d = x[i] / s
            ok &= (x[i] == 0) | (d >= normal)
            out[i] = <floating>d
    else:
        for i in range(n):
            d = x[i * sx] / s
            ok &= (x[i * sx] == 0) | (d >= normal)
            out[i] = <floating>d
    return ok


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


cdef int kl_blocks(const floating *p, Py_ssize_t sp, const floating *q, Py_ssize_t sq,
                   Py_ssize_t n, Py_ssize_t b0, Py_ssize_t b1, int want_sums,
                   double *sums) noexcept nogil:
    """Blocks b0 .. b1 - 1 of a row of n elements (block b holds elements
    b BLOCK .. (b + 1) BLOCK - 1): block b's KL sum, and with want_sums its
    sums of p and q (else 0), into sums[3 (b - b0) :].  Returns ROW_OK, or
    ROW_NEEDS_CARE for an element the careful path must see or a block total
    that is not finite.  Blocks are independent: threads may share a row."""
    cdef floating pbuf[BLOCK_F32]
    cdef floating qbuf[BLOCK_F32]
    cdef float scratch[2 * (BLOCK_F32 + LANES)]
    cdef Py_ssize_t b, start, length, block = BLOCK_F64 if floating is double else BLOCK_F32
    cdef double *out
    cdef bint bad
    for b in range(b0, b1):
        start = b * block
        length = min(n - start, block)
        out = sums + 3 * (b - b0)
        out[1] = 0.0
        out[2] = 0.0
        if floating is double:
            bad = kl_block_f64(gather(p + start * sp, sp, length, pbuf),
                               gather(q + start * sq, sq, length, qbuf), length, want_sums, out)
        else:
            bad = kl_block_f32(gather(p + start * sp, sp, length, pbuf),
                               gather(q + start * sq, sq, length, qbuf), length, want_sums, scratch,
                               out)
        if bad or not (fabs(out[0]) <= DBL_MAX):
            return ROW_NEEDS_CARE
    return ROW_OK


cdef inline void add_blocks(const double *sums, Py_ssize_t count, double *acc) noexcept nogil:
    """count block results (kl_blocks) added in order into acc = (KL, its
    compensation, sum p, its compensation, sum q, its compensation)."""
    cdef Py_ssize_t b, k
    for b in range(count):
        for k in range(3):
            neumaier(&acc[2 * k], &acc[2 * k + 1], sums[3 * b + k])


cdef inline void add_totals(const double *totals, Py_ssize_t count, double *acc) noexcept nogil:
    """count block totals added in order into acc = (sum, its compensation)."""
    cdef Py_ssize_t b
    for b in range(count):
        neumaier(&acc[0], &acc[1], totals[b])


cdef void blocks_sum(const double *totals, Py_ssize_t count, double *res) noexcept nogil:
    """A row's total from all its count block totals (add_totals) into res[0]."""
    cdef double acc[2]
    acc[0] = 0.0
    acc[1] = 0.0
    add_totals(totals, count, acc)
    res[0] = acc[0] + acc[1]


cdef inline int acc_result(const double *acc, double *res) noexcept nogil:
    """A row's results res[0:3] from its compensated sums acc (add_blocks):
    ROW_OK, or ROW_NEEDS_CARE when the KL total is not finite."""
    cdef Py_ssize_t k
    for k in range(3):
        res[k] = acc[2 * k] + acc[2 * k + 1]
    return ROW_OK if fabs(res[0]) <= DBL_MAX else ROW_NEEDS_CARE


cdef int blocks_total(const double *sums, Py_ssize_t count, double *res) noexcept nogil:
    """A row's results from all its count block results (kl_blocks) into
    res[0:3] (acc_result)."""
    cdef double acc[6]
    cdef Py_ssize_t k
    for k in range(6):
        acc[k] = 0.0
    add_blocks(sums, count, acc)
    return acc_result(acc, res)


cdef int kl_row_fast(const floating *p, Py_ssize_t sp, const floating *q, Py_ssize_t sq,
                     Py_ssize_t n, bint want_sums, double *res) noexcept nogil:
    """The fast path of one row: ROW_OK, or ROW_NEEDS_CARE for a row the
    careful path must see (an element its checks flag, or an infinite total).
    A row longer than a block is summed blockwise (kl_blocks, add_blocks)."""
    cdef float scratch[2 * (BLOCK_F32 + LANES)]
    cdef double sums[3 * BLOCK_BATCH]
    cdef double acc[6]
    cdef Py_ssize_t k, b0 = 0, b1, block = BLOCK_F64 if floating is double else BLOCK_F32
    cdef Py_ssize_t nblocks = (n + block - 1) // block
    cdef bint bad
    if n == 0:
        res[0] = res[1] = res[2] = 0.0
        return ROW_OK
    if n <= block and sp == 1 and sq == 1:
        # one contiguous block: no gather, no compensation needed
        res[1] = 0.0
        res[2] = 0.0
        if floating is double:
            bad = kl_block_f64(p, q, n, want_sums, res)
        else:
            bad = kl_block_f32(p, q, n, want_sums, scratch, res)
        return ROW_NEEDS_CARE if bad or not (fabs(res[0]) <= DBL_MAX) else ROW_OK
    for k in range(6):
        acc[k] = 0.0
    while b0 < nblocks:
        b1 = min(b0 + BLOCK_BATCH, nblocks)
        if kl_blocks(p, sp, q, sq, n, b0, b1, want_sums, sums) != ROW_OK:
            return ROW_NEEDS_CARE
        add_blocks(sums, b1 - b0, acc)
        b0 = b1
    return acc_result(acc, res)


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
    """y = f(x) for fn 0 log, 1 exp, 2 the KL kernels' log of a normal ratio;
    fn 3 (float32 only) the float32 log-space kernels' exp(x + xlo) in double,
    for x holding the n values x then the n values xlo, y n doubles."""
    cdef const double *xd = <const double *>x
    cdef double *yd = <double *>y
    cdef const float *xf = <const float *>x
    cdef float *yf = <float *>y
    cdef Py_ssize_t i
    cdef double k, lz
    if fn == 3:
        if not is_f32:
            return -1
        exp_split_map(xf, xf + n, yd, n)
        return 0
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


include "_team.pxi"
include "_core_log.pxi"
include "_core_js.pxi"
include "_core_across.pxi"
include "_core_pairwise.pxi"


cdef int pair_result(int is_log, int narrow, double a, double b, double total, int ninf,
                     double *res) noexcept nogil:
    """A kl_div_log (is_log) or js_div row's result into res[0] from the total
    of its blocks (log_blocks / js_blocks with a, b, narrow; ninf their flag),
    finished as the row functions finish it (log_total, js_narrow_result):
    ROW_OK, or ROW_NEEDS_CARE for the next path."""
    if is_log:
        return log_total(total, ninf, res)
    res[0] = total
    if narrow:
        return js_narrow_result(a, b, res)
    return ROW_OK
include "_core_gaussian.pxi"


# ---- the table --------------------------------------------------------------

cdef CoreTable _TABLE
cdef bytes _NAME = b""
_TABLE.kl_row_f64 = kl_row[double]
_TABLE.kl_row_f32 = kl_row[float]
_TABLE.kl_rows_across_f64 = kl_rows_across[double]
_TABLE.kl_rows_across_f32 = kl_rows_across[float]
_TABLE.js_rows_across_f64 = js_rows_across
_TABLE.kl_log_rows_across_f64 = kl_log_rows_across
_TABLE.kl_blocks_f64 = kl_blocks[double]
_TABLE.kl_blocks_f32 = kl_blocks[float]
_TABLE.kl_blocks_total = blocks_total
_TABLE.divide_f64 = divide_row[double]
_TABLE.divide_f32 = divide_row[float]
_TABLE.find_bad_f64 = find_bad[double]
_TABLE.find_bad_f32 = find_bad[float]
_TABLE.math_map = math_map
_TABLE.kl_log_row_f64 = kl_log_row[double]
_TABLE.log_normalised = log_normalised
_TABLE.kl_log_row_f32 = kl_log_row[float]
_TABLE.kl_log_find_bad_f64 = log_find_bad[double]
_TABLE.kl_log_find_bad_f32 = log_find_bad[float]
_TABLE.centred_log_f64 = centred_log_f64
_TABLE.product_row = product_row
_TABLE.js_row_f64 = js_row[double]
_TABLE.js_row_f32 = js_row[float]
_TABLE.js_row_scaled_f64 = js_row_scaled[double]
_TABLE.js_row_scaled_f32 = js_row_scaled[float]
_TABLE.js_row_divided_f64 = js_row_divided[double]
_TABLE.js_row_divided_f32 = js_row_divided[float]
_TABLE.js_blocks_f64 = js_blocks[double]
_TABLE.js_blocks_f32 = js_blocks[float]
_TABLE.log_blocks_f64 = log_blocks[double]
_TABLE.log_blocks_f32 = log_blocks[float]
_TABLE.blocks_sum = blocks_sum
_TABLE.pair_result = pair_result
_TABLE.js_sums_blocks_f64 = js_sums_blocks[double]
_TABLE.js_sums_blocks_f32 = js_sums_blocks[float]
_TABLE.log_max_f64 = log_max[double]
_TABLE.log_max_f32 = log_max[float]
_TABLE.sumexp_blocks_f64 = sumexp_blocks[double]
_TABLE.sumexp_blocks_f32 = sumexp_blocks[float]
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

