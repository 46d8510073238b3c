# The table of kernels one compiled core exports (see _core.pxi).  Each
# instruction-set build of the core fills one; kl_fast._kernels picks one at
# import (the only dispatch) and every Cython module calls the kernels through
# it (kl_fast._kernels.core_table()).
from libc.math cimport fabs, log

# Row statuses of the row kernels.
cdef enum:
    ROW_OK = 0
    ROW_BAD = 1          # a negative, NaN or infinite input (check=True)
    ROW_NEEDS_CARE = 2   # internal: the row goes to the careful path
    ROW_CAREFUL = 3      # computed on the careful path
    ROW_ZERO_SUM_P = 4   # normalize: the first input cannot be normalised (its sum
    ROW_ZERO_SUM_Q = 5   # is 0, overflows or is NaN; log-space: -inf everywhere)

# Elements per block of the float64 and float32 KL rows (_core.pxi).
cdef enum:
    BLOCK_F64 = 256
    BLOCK_F32 = 1024

# The longest contiguous row sent to kl_rows_across (measured: beyond ~40 elements the row
# kernel, vectorised along the row, is faster), and to kl_log_rows_across (one exp per
# element: the row kernel catches up from about 24 elements).
cdef enum:
    SHORT_N = 40
    LOG_SHORT_N = 20


cdef inline double product_bound(double raw, double gamma) noexcept nogil:
    """kl_pairwise's product form without normalize: the error bound of an entry
    from raw = h_abs - c, the scale of its rounding errors: raw gamma, raw first
    raised by 2^-1021 where it is not 0, which adds (n + 64) 2^-1074 or so, the
    absolute rounding errors (up to 2^-1075 each) of products of subnormal p
    that no relative bound covers (rows of values below 2^-1022 had entries off
    by 1e-4 relative and a nonzero diagonal).  A raw above 2^-968 is left as it
    is; a raw of 0 (a row of p all zero) keeps the bound 0: the entry is exact."""
    return (raw + (4.4501477170144028e-308 if raw != 0.0 else 0.0)) * gamma   # 2^-1021


cdef inline bint product_unresolved(double v, double a, double factor) noexcept nogil:
    """kl_pairwise's product form: the entry v with the error bound a is not
    resolved from 0 within factor bounds (it is recomputed exactly).  A
    comparison with no sum a compiler could fuse the product into, so every
    build decides alike."""
    return not (fabs(v) > factor * a or a == 0.0)


cdef inline bint sumexp_narrow_fits(double mx) noexcept nogil:
    """A float row's sums of exp(x - mx) are taken in float (|mx| <= 2^16: the low
    part of mx as a float pair stays below 2^-8); else in double."""
    return -65536.0 <= mx <= 65536.0


# kl_div_log's normalisers.  A row's terms are formed with its log-sum-exp
# rounded, lp0 = mx + log(sumexp), whose rounding error lo (up to half an ulp
# of mx: 0.06 at mx = 1e15) would shift every a = lp - lp0 alike; the terms'
# sum is corrected for it once (log_normalised in the core, which every
# path calls through the table: one compiled copy, the same bits), so the
# result does not depend on how far the logs lie from 0.  The sum of
# exp(x - mx) is taken as count + rest, count the entries equal to mx (each
# exp(0) = 1) and rest the sum of the others: with w = 1 + u rounded, u =
# (count - 1) + rest, log(sumexp) = log w + (e + d) / w to first order, e and
# d the rounding errors of w and u (TwoSum), which go into lo.  With one
# largest entry a rest below eps is then kept (1 + rest rounds it away, and
# with it the difference of two near-equal rows' normalisers), at the cost
# of one log, as log1p would keep it (libm's takes 3 times as long).

cdef inline double log_normaliser(double mx, double count, double rest,
                                  double *lo) noexcept nogil:
    """lp0 = mx + log(count + rest) rounded (count >= 1), and in lo[0] its
    rounding error: exactly that of mx + log w (Knuth's TwoSum, no
    products: the same bits in every module), plus (e + d) / w."""
    cdef double c = count - 1.0, u = c + rest, bu = u - c
    cdef double d = (c - (u - bu)) + (rest - bu)
    cdef double w = 1.0 + u, bw = w - 1.0
    cdef double e = (1.0 - (w - bw)) + (u - bw)
    cdef double l = log(w), hi = mx + l, b = hi - mx
    lo[0] = ((mx - (hi - b)) + (l - b)) + (e + d) / w
    return hi

from kl_fast._core_gaussian cimport (
    gk_psums_f64_fn, gk_psums_f32_fn, gk_eval_f64_fn, gk_eval_f32_fn, gk_newton_f64_fn,
    gk_newton_f32_fn, gk_gd_f64_fn, gk_gd_f32_fn,
)

ctypedef int (*kl_row_f64_fn)(const double *p, Py_ssize_t sp, const double *q,
                              Py_ssize_t sq, Py_ssize_t n, int check, int want_sums,
                              double *res) noexcept nogil
ctypedef int (*kl_row_f32_fn)(const float *p, Py_ssize_t sp, const float *q,
                              Py_ssize_t sq, Py_ssize_t n, int check, int want_sums,
                              double *res) noexcept nogil
# kl_row of m rows of n elements computed across rows (_core_across.pxi),
# element e of row i at p[i sp0 + e sp1], q[i sq0 + e sq1]: res[3 i : 3 i + 3]
# and status[i] as kl_row gives them.
ctypedef void (*kl_rows_across_f64_fn)(const double *p, Py_ssize_t sp0, Py_ssize_t sp1,
                                      const double *q, Py_ssize_t sq0, Py_ssize_t sq1,
                                      Py_ssize_t m, Py_ssize_t n, int check, int want_sums,
                                      double *res, int *status) noexcept nogil
ctypedef void (*js_rows_across_f64_fn)(const double *p, Py_ssize_t sp0, Py_ssize_t sp1,
                                       const double *q, Py_ssize_t sq0, Py_ssize_t sq1,
                                       Py_ssize_t m, Py_ssize_t n, int check, double *res,
                                       int *status) noexcept nogil
ctypedef void (*kl_log_rows_across_f64_fn)(const double *p, Py_ssize_t sp0, Py_ssize_t sp1,
                                           const double *q, Py_ssize_t sq0, Py_ssize_t sq1,
                                           Py_ssize_t m, Py_ssize_t n, int normalize,
                                           int check, double *res, int *status) noexcept nogil
ctypedef void (*kl_rows_across_f32_fn)(const float *p, Py_ssize_t sp0, Py_ssize_t sp1,
                                      const float *q, Py_ssize_t sq0, Py_ssize_t sq1,
                                      Py_ssize_t m, Py_ssize_t n, int check, int want_sums,
                                      double *res, int *status) noexcept nogil
# Blocks b0 .. b1 - 1 of one row (block sums into sums[3 (b - b0) :]), and a
# row's result from all its block sums: a long row shared by threads.
ctypedef int (*kl_blocks_f64_fn)(const double *p, Py_ssize_t sp, const double *q,
                                 Py_ssize_t sq, Py_ssize_t n, Py_ssize_t b0, Py_ssize_t b1,
                                 int want_sums, double *sums) noexcept nogil
ctypedef int (*kl_blocks_f32_fn)(const float *p, Py_ssize_t sp, const float *q,
                                 Py_ssize_t sq, Py_ssize_t n, Py_ssize_t b0, Py_ssize_t b1,
                                 int want_sums, double *sums) noexcept nogil
ctypedef int (*kl_blocks_total_fn)(const double *sums, Py_ssize_t count,
                                   double *res) noexcept nogil
# x / s into a contiguous out of x's dtype, 0 where an element is neither 0 nor
# divided into the normal range (kl_div's normalize of sums far apart).
ctypedef int (*divide_f64_fn)(const double *x, Py_ssize_t sx, Py_ssize_t n, double s,
                              double *out) noexcept nogil
ctypedef int (*divide_f32_fn)(const float *x, Py_ssize_t sx, Py_ssize_t n, double s,
                              float *out) noexcept nogil
ctypedef int (*find_bad_f64_fn)(const double *p, Py_ssize_t sp, const double *q,
                                Py_ssize_t sq, Py_ssize_t n, int *which,
                                Py_ssize_t *index, double *value) noexcept nogil
ctypedef int (*find_bad_f32_fn)(const float *p, Py_ssize_t sp, const float *q,
                                Py_ssize_t sq, Py_ssize_t n, int *which,
                                Py_ssize_t *index, double *value) noexcept nogil
ctypedef int (*kl_log_row_f64_fn)(const double *lp, Py_ssize_t sp, const double *lq,
                                  Py_ssize_t sq, Py_ssize_t n, int normalize, int check,
                                  double *res) noexcept nogil
ctypedef int (*kl_log_row_f32_fn)(const float *lp, Py_ssize_t sp, const float *lq,
                                  Py_ssize_t sq, Py_ssize_t n, int normalize, int check,
                                  double *res) noexcept nogil
ctypedef void (*centred_log_f64_fn)(const double *x, const double *r, double *y,
                                   Py_ssize_t n) noexcept nogil
# One row of kl_pairwise's product form without normalize (_core_pairwise.pxi):
# (ob = C's row, k, hp, h_abs, gamma, factor, redo) -> 1 when an entry must be redone.
ctypedef int (*product_row_fn)(double *ob, Py_ssize_t k, double hp, double h_abs,
                               double gamma, double factor, unsigned char *redo) noexcept nogil
# JS of one row: (p, q, normalize, check) -> res[0] = JS, res[1:3] = the sums
# with normalize.
ctypedef int (*js_row_f64_fn)(const double *p, Py_ssize_t sp, const double *q,
                              Py_ssize_t sq, Py_ssize_t n, int normalize, int check,
                              double *res) noexcept nogil
ctypedef int (*js_row_f32_fn)(const float *p, Py_ssize_t sp, const float *q,
                              Py_ssize_t sq, Py_ssize_t n, int normalize, int check,
                              double *res) noexcept nogil
# JS of one row with two factors: (a p, b q) (js_row_scaled) or (p / a, q / b)
# (js_row_divided) -> res[0].
ctypedef int (*js_row_ab_f64_fn)(const double *p, Py_ssize_t sp, const double *q,
                                 Py_ssize_t sq, Py_ssize_t n, double a, double b, int check,
                                 double *res) noexcept nogil
ctypedef int (*js_row_ab_f32_fn)(const float *p, Py_ssize_t sp, const float *q,
                                 Py_ssize_t sq, Py_ssize_t n, double a, double b, int check,
                                 double *res) noexcept nogil
# Block totals of blocks b0 .. b1 - 1 of one row (js_blocks: a, b the pairs'
# factors; log_blocks: a, b the normalisers, flag[0] |= a -inf log_q under a
# finite log_p); narrow: float rows' float kernel.  blocks_sum adds them in order.
ctypedef int (*pair_blocks_f64_fn)(const double *p, Py_ssize_t sp, const double *q,
                                   Py_ssize_t sq, Py_ssize_t n, Py_ssize_t b0, Py_ssize_t b1,
                                   double a, double b, int narrow, double *totals,
                                   int *flag) noexcept nogil
ctypedef int (*pair_blocks_f32_fn)(const float *p, Py_ssize_t sp, const float *q,
                                   Py_ssize_t sq, Py_ssize_t n, Py_ssize_t b0, Py_ssize_t b1,
                                   double a, double b, int narrow, double *totals,
                                   int *flag) noexcept nogil
ctypedef void (*blocks_sum_fn)(const double *totals, Py_ssize_t count, double *res) noexcept nogil
ctypedef int (*pair_result_fn)(int is_log, int narrow, double a, double b, double total,
                              int ninf, double *res) noexcept nogil
ctypedef double (*log_normalised_fn)(double kl, double lo_p, double lo_q) noexcept nogil
# The normalisers of one row, in parts threads can share: the sums of p and q
# over blocks (js_sums_blocks), the largest finite entry of a row (log_max) and
# the sums of exp(x - max) over blocks (sumexp_blocks: the entries below the
# max, and apart the count of those equal to it).
ctypedef int (*sums_blocks_f64_fn)(const double *p, Py_ssize_t sp, const double *q,
                                   Py_ssize_t sq, Py_ssize_t n, Py_ssize_t b0, Py_ssize_t b1,
                                   double *psums, double *qsums) noexcept nogil
ctypedef int (*sums_blocks_f32_fn)(const float *p, Py_ssize_t sp, const float *q,
                                   Py_ssize_t sq, Py_ssize_t n, Py_ssize_t b0, Py_ssize_t b1,
                                   double *psums, double *qsums) noexcept nogil
ctypedef bint (*row_max_f64_fn)(const double *x, Py_ssize_t sx, Py_ssize_t n,
                                double *xmax) noexcept nogil
ctypedef bint (*row_max_f32_fn)(const float *x, Py_ssize_t sx, Py_ssize_t n,
                                double *xmax) noexcept nogil
ctypedef int (*sumexp_blocks_f64_fn)(const double *x, Py_ssize_t sx, Py_ssize_t n,
                                     Py_ssize_t b0, Py_ssize_t b1, double mx, int narrow,
                                     double *totals, double *counts) noexcept nogil
ctypedef int (*sumexp_blocks_f32_fn)(const float *x, Py_ssize_t sx, Py_ssize_t n,
                                     Py_ssize_t b0, Py_ssize_t b1, double mx, int narrow,
                                     double *totals, double *counts) noexcept nogil
ctypedef int (*math_map_fn)(int fn, int is_f32, const void *x, void *y,
                            Py_ssize_t n) noexcept nogil

ctypedef struct CoreTable:
    const char *name
    kl_row_f64_fn kl_row_f64
    kl_row_f32_fn kl_row_f32
    kl_rows_across_f64_fn kl_rows_across_f64
    kl_rows_across_f32_fn kl_rows_across_f32
    js_rows_across_f64_fn js_rows_across_f64   # js_row, normalize off, n <= SHORT_N
    kl_log_rows_across_f64_fn kl_log_rows_across_f64   # kl_log_row, n <= SHORT_N
    kl_blocks_f64_fn kl_blocks_f64
    kl_blocks_f32_fn kl_blocks_f32
    kl_blocks_total_fn kl_blocks_total
    divide_f64_fn divide_f64
    divide_f32_fn divide_f32
    find_bad_f64_fn find_bad_f64
    find_bad_f32_fn find_bad_f32
    math_map_fn math_map
    kl_log_row_f64_fn kl_log_row_f64
    kl_log_row_f32_fn kl_log_row_f32
    find_bad_f64_fn kl_log_find_bad_f64   # first NaN or +inf (lp before lq)
    find_bad_f32_fn kl_log_find_bad_f32
    centred_log_f64_fn centred_log_f64
    product_row_fn product_row
    js_row_f64_fn js_row_f64
    js_row_f32_fn js_row_f32
    js_row_ab_f64_fn js_row_scaled_f64
    js_row_ab_f32_fn js_row_scaled_f32
    js_row_ab_f64_fn js_row_divided_f64
    js_row_ab_f32_fn js_row_divided_f32
    pair_blocks_f64_fn js_blocks_f64
    pair_blocks_f32_fn js_blocks_f32
    pair_blocks_f64_fn log_blocks_f64
    pair_blocks_f32_fn log_blocks_f32
    blocks_sum_fn blocks_sum
    pair_result_fn pair_result
    log_normalised_fn log_normalised
    sums_blocks_f64_fn js_sums_blocks_f64
    sums_blocks_f32_fn js_sums_blocks_f32
    row_max_f64_fn log_max_f64
    row_max_f32_fn log_max_f32
    sumexp_blocks_f64_fn sumexp_blocks_f64
    sumexp_blocks_f32_fn sumexp_blocks_f32
    # the Gaussian KL on a grid (_core_gaussian.pxi)
    gk_psums_f64_fn gk_psums_f64
    gk_psums_f32_fn gk_psums_f32
    gk_eval_f64_fn gk_eval_f64
    gk_eval_f32_fn gk_eval_f32
    gk_newton_f64_fn gk_newton_f64
    gk_newton_f32_fn gk_newton_f32
    gk_gd_f64_fn gk_gd_f64
    gk_gd_f32_fn gk_gd_f32
