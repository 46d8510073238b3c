# Compiled entries of kl_div, js_div, kl_div_log and, for small inputs,
# kl_pairwise and js_pairwise (included by _div_kernels.pyx).
#
# Design: each public function is a ``def`` here that parses its options, lays
# the two inputs out as (rows, n) with element strides, runs the row kernel
# and applies normalize/base/dx, all without Python-level helpers.  It takes
# every call whose layout needs no copy: float32 or float64 arrays (or lists)
# of the same dtype, native and aligned, broadcasting by stride 0, an int,
# tuple or None axis whose reduced and kept dimensions each merge into one
# stride, ``out`` of the result's shape and dtype.  Anything else -- a copy,
# a cast, a scalar pair, a bad value, an error to explain, a sum that
# overflows -- is handed to the Python implementation registered with
# ``register_general``, which computes the same bits by the same kernels and
# ``finish_kl``, or raises the documented error.  Bad input is only detected
# here; explaining it is the Python layer's job.
from libc.math cimport log, fabs, isfinite, isnan, HUGE_VAL, NAN
from libc.float cimport DBL_MAX, DBL_MIN, FLT_MIN
from libc.stdlib cimport calloc, malloc, free

cimport numpy as cnp

cnp.import_array()

cdef extern from "numpy/arrayobject.h":
    object PyArray_Scalar(void *data, cnp.dtype descr, object base)

cdef enum:
    KIND_KL = 0
    KIND_JS = 1
    KIND_KL_LOG = 2
    MAX_DIMS = 32
    STACK_ROWS = 64
    # all-pairs inputs with m * k * (n + PAIR_COST) up to SMALL_KL_PAIRWISE
    # (kl_pairwise) or SMALL_PAIRWISE (js_pairwise) go pair by pair through the
    # row kernel; larger kl_pairwise inputs take the matrix-product form (compiled
    # up to SMALL_PRODUCT, _entries_product.pxi), larger js_pairwise ones
    # the Python layer's pairs on threads.  A pair costs about 16 elements' time.
    # Measured on one thread, square P and Q, n = 3 to 100, on a 2-core Intel
    # Xeon: the row kernel and the compiled product form (~2 us of fixed cost)
    # cross near m * k * (n + 16) = 2**11 to 2**13 (at 2**12: n = 3, 8 x 8, the
    # row kernel 1.2x as long; n = 100, 8 x 8, the product form 1.1x as long).
    PAIR_COST = 16
    SMALL_PAIRWISE = 1 << 17
    SMALL_KL_PAIRWISE = 1 << 12
    # a row of more than SHORT_N elements costs about ROW_COST elements beyond
    # its own in the thread rule (_row_work)
    ROW_COST = 32
    # a single row of at least LONG_ROW elements is shared by the threads, at
    # most one per LONG_TASK elements (_rows_threads; BLOCK_F64 and BLOCK_F32
    # divide it)
    LONG_ROW = 1 << 13
    LONG_TASK = 1 << 12
    # ... in tasks of about half a thread's share of the row, at most
    # LONG_TASK_MAX elements each (_task_blocks)
    LONG_TASK_MAX = 1 << 16

import numpy as _numpy
from operator import index as _operator_index

cdef object _MEMMAP = _numpy.memmap
cdef object _NP_BOOL = _numpy.bool_


cpdef bint flag(object value, str name, str func) except -1:
    """A boolean option, taken as NumPy takes ``keepdims``: True, False, NumPy's
    bool_ or an integer (nonzero is true); anything else (a string, None, a
    float, a list) is a TypeError naming it, since its truth value would be
    silently wrong ("False" is true).  Every public function reads its flags
    through this."""
    if value is True:
        return True
    if value is False:
        return False
    if type(value) is _NP_BOOL or type(value) is int:
        return bool(value)
    try:
        return _operator_index(value) != 0
    except TypeError:
        raise TypeError(f"{func}: {name} must be True or False, got {value!r} "
                        f"({type(value).__name__})") from None
cdef cnp.dtype _DESCR_F64 = cnp.PyArray_DescrFromType(cnp.NPY_DOUBLE)
cdef cnp.dtype _DESCR_F32 = cnp.PyArray_DescrFromType(cnp.NPY_FLOAT)

# Set by configure and register_general from the Python layer: the Python
# implementations (by function name) the entries hand rare layouts and errors
# to, the threshold for threads (_kernels.choose_threads has the rest of the
# rule) and the function that writes a result into an unusual ``out``.
cdef dict _general = {}
cdef object _deliver_python = None
cdef Py_ssize_t _parallel_min_elements = 1


def configure(Py_ssize_t parallel_min_elements, object deliver):
    """Install the Python layer's threshold for threads (one thread below
    ``parallel_min_elements`` elements by default) and the function that
    writes a result into an ``out`` of another dtype or layout (or explains
    why it cannot)."""
    global _parallel_min_elements, _deliver_python
    _parallel_min_elements = parallel_min_elements
    _deliver_python = deliver


def register_general(str func, object implementation):
    """Install the Python implementation ``func``'s compiled entry falls back to;
    its docstring becomes the entry's, which is returned."""
    entry = {"kl_div": kl_div, "js_div": js_div, "kl_div_log": kl_div_log,
             "kl_pairwise": kl_pairwise, "js_pairwise": js_pairwise}[func]
    _general[func] = implementation
    entry.__doc__ = implementation.__doc__
    return entry


cdef struct Layout:
    Py_ssize_t m, n                    # rows and the length of each reduction
    Py_ssize_t sp1, sq1                # element strides along a row
    # row i starts at (i // m_in) * (sp_out, sq_out) + (i % m_in) * (sp0, sq0):
    # the kept dimensions merged into at most two groups (m_in 0: one group,
    # row i at i * (sp0, sq0))
    Py_ssize_t m_in, sp0, sq0, sp_out, sq_out
    int out_ndim
    cnp.npy_intp out_shape[MAX_DIMS]
    bint watched                       # the call watches SIGINT: its loops may stop early


cdef int _merge(const cnp.npy_intp *size, const Py_ssize_t *sp, const Py_ssize_t *sq,
                const int *dims, int k, Py_ssize_t *length, Py_ssize_t *st_p,
                Py_ssize_t *st_q) noexcept:
    """Merge dimensions dims[0:k] into as few as possible, innermost first: group
    g gets length[g] elements of strides st_p[g], st_q[g].  Returns the number of
    groups (at least 1; 0 when there are more than two)."""
    cdef int i, d, g = 0
    length[0] = 1
    st_p[0] = 0
    st_q[0] = 0
    for i in range(k):
        if size[dims[i]] == 0:
            length[0] = 0  # nothing to lay out
            return 1
    for i in range(k - 1, -1, -1):
        d = dims[i]
        if size[d] == 1:
            continue
        if length[g] == 1:
            st_p[g] = sp[d]
            st_q[g] = sq[d]
        elif sp[d] != st_p[g] * length[g] or sq[d] != st_q[g] * length[g]:
            g += 1
            if g == 2:
                return 0
            st_p[g] = sp[d]
            st_q[g] = sq[d]
            length[g] = 1
        length[g] *= size[d]
    return g + 1


cdef bint _reduced_axes(object axis, int d, bint *reduced) noexcept:
    """Mark the axes ``axis`` (int, tuple of ints or None) reduces; False for
    anything else, an axis out of range or repeated (the Python layer explains)."""
    cdef int i, a
    for i in range(d):
        reduced[i] = axis is None
    if axis is None:
        return True
    if type(axis) is int:
        axis = (axis,)
    elif type(axis) is not tuple:
        return False
    for ax in <tuple>axis:
        if type(ax) is not int or not -d <= ax < d:
            return False
        a = <int>ax
        if a < 0:
            a += d
        if reduced[a]:
            return False
        reduced[a] = True
    return True


cdef bint _layout(cnp.ndarray p, cnp.ndarray q, object axis, bint keepdims, Layout *L) noexcept:
    """Lay p and q (same itemsize) out as L.m rows of L.n elements; False when
    that needs a copy or the Python layer must explain something."""
    cdef int pd = cnp.PyArray_NDIM(p), qd = cnp.PyArray_NDIM(q)
    cdef int d = pd if pd > qd else qd, k, pk, qk, nk = 0, nr = 0
    cdef Py_ssize_t item = cnp.PyArray_ITEMSIZE(p), a, b
    cdef cnp.npy_intp size[MAX_DIMS]
    cdef Py_ssize_t sp[MAX_DIMS]
    cdef Py_ssize_t sq[MAX_DIMS]
    cdef int keep[MAX_DIMS]
    cdef int red[MAX_DIMS]
    cdef bint reduced[MAX_DIMS]
    L.watched = False   # set by the entry once it knows the call's work
    if d == 0 or d > MAX_DIMS:
        return False
    for k in range(d):  # broadcast, right-aligned; a size-1 dimension gets stride 0
        pk = k - (d - pd)
        qk = k - (d - qd)
        a = cnp.PyArray_DIM(p, pk) if pk >= 0 else 1
        b = cnp.PyArray_DIM(q, qk) if qk >= 0 else 1
        if a != b and a != 1 and b != 1:
            return False
        size[k] = a if a != 1 else b
        sp[k] = cnp.PyArray_STRIDE(p, pk) // item if pk >= 0 and a != 1 else 0
        sq[k] = cnp.PyArray_STRIDE(q, qk) // item if qk >= 0 and b != 1 else 0
    if not _reduced_axes(axis, d, reduced):
        return False
    L.out_ndim = 0
    for k in range(d):
        if reduced[k]:
            red[nr] = k
            nr += 1
            if keepdims:
                L.out_shape[L.out_ndim] = 1
                L.out_ndim += 1
        else:
            keep[nk] = k
            nk += 1
            L.out_shape[L.out_ndim] = size[k]
            L.out_ndim += 1
    cdef Py_ssize_t length[2]
    cdef Py_ssize_t st_p[2]
    cdef Py_ssize_t st_q[2]
    if _merge(size, sp, sq, red, nr, length, st_p, st_q) != 1:
        return False
    L.n, L.sp1, L.sq1 = length[0], st_p[0], st_q[0]
    k = _merge(size, sp, sq, keep, nk, length, st_p, st_q)
    if k == 0:
        return False
    L.m, L.sp0, L.sq0 = length[0], st_p[0], st_q[0]
    L.m_in, L.sp_out, L.sq_out = 0, 0, 0
    if k == 2:
        L.m_in, L.sp_out, L.sq_out = length[0], st_p[1], st_q[1]
        L.m = length[0] * length[1]
    return True


cdef inline int _row(int kind, bint f32, const char *p, Py_ssize_t sp, const char *q,
                     Py_ssize_t sq, Py_ssize_t n, bint normalize, bint check,
                     double *res) noexcept nogil:
    """One row through the kernel of ``kind``; the kernel's status."""
    if kind == KIND_KL:
        if f32:
            return core_table().kl_row_f32(<const float *>p, sp, <const float *>q, sq, n, check, normalize, res)
        return core_table().kl_row_f64(<const double *>p, sp, <const double *>q, sq, n, check, normalize, res)
    if kind == KIND_JS:
        if f32:
            return core_table().js_row_f32(<const float *>p, sp, <const float *>q, sq, n, normalize, check, res)
        return core_table().js_row_f64(<const double *>p, sp, <const double *>q, sq, n, normalize, check, res)
    if f32:
        return core_table().kl_log_row_f32(<const float *>p, sp, <const float *>q, sq, n, normalize, check, res)
    return core_table().kl_log_row_f64(<const double *>p, sp, <const double *>q, sq, n, normalize, check, res)


# Row sums of normalize above 2**-960 (float32: 2**-100) keep every term normal;
# above 2**960 (2**100) a term p*log(p/q) may overflow; see _normalize_rescale.
cdef double _SUM_TINY_F64 = 2.0 ** -960
cdef double _SUM_BIG_F64 = 2.0 ** 960
cdef double _SUM_TINY_F32 = 2.0 ** -100
cdef double _SUM_BIG_F32 = 2.0 ** 100


# Sums this factor apart or more are normalised by dividing the inputs by them
# first (_kl_divided, _api.rescaled_pair): kl/ps + log(qs/ps) cancels about
# log(factor) of 1.  Measured on 3,000 near-equal rows of 30 per factor against
# mpmath, the worst error beyond NumPy's normalise-then-sum: 2.75 eps at a factor
# 1.99; with the bound at 4, 3.6 eps at 3.99; at 16 (before), 4.2 at 15.9; rows
# divided first, 1.5 eps.
cdef double SUMS_APART_C = 2.0
SUMS_APART = SUMS_APART_C   # for the Python layer


cdef inline bint _normalize_rescale(double kl, double ps, double qs, bint f32) noexcept nogil:
    """True when kl_div's normalize must redo a row on rescaled inputs (the
    Python layer's path, _api.rescaled_pair, or _kl_divided): a sum overflowed,
    is below the tiny bound (subnormal terms), or is large while the raw sum kl
    is not finite (an overflowing term), or is not positive (an error); or the
    sums differ by a factor SUMS_APART or more."""
    cdef double tiny = _SUM_TINY_F32 if f32 else _SUM_TINY_F64
    cdef double big = _SUM_BIG_F32 if f32 else _SUM_BIG_F64
    if not (ps >= tiny and ps <= DBL_MAX and qs >= tiny and qs <= DBL_MAX):
        return True
    if not isfinite(kl) and (ps > big or qs > big):
        return True
    return qs >= SUMS_APART_C * ps or ps >= SUMS_APART_C * qs


def normalize_rescale(const double[::1] kl, const double[::1] ps, const double[::1] qs,
                      bint f32, unsigned char[::1] out):
    """Set out[i] to 1 for the rows (given by their raw sum and sums of p and q)
    that normalize redoes on rescaled inputs, the compiled entries' rule."""
    cdef Py_ssize_t i
    for i in range(ps.shape[0]):
        out[i] = _normalize_rescale(kl[i], ps[i], qs[i], f32)


cdef inline double _kl_normalized(double kl, double ps, double qs) noexcept nogil:
    """KL of p/ps against q/qs from the raw sum kl = sum p log(p/q)."""
    cdef double ratio = qs / ps
    if ratio >= DBL_MIN and ratio <= DBL_MAX:
        return kl / ps + log(ratio)
    return kl / ps + (log(qs) - log(ps))


cdef inline double _scale(double value, double log_base, double dx) noexcept nogil:
    """Apply base (log_base 0: natural log) and dx (0: none); where dividing by a
    log_base below 1 overflows, dx is applied first (it may bring it back)."""
    cdef double v = value
    if log_base != 0.0:
        v = v / log_base
    if dx != 0.0:
        v = v * dx if isfinite(v) or not isfinite(value) else (value * dx) / log_base
    return v


cdef enum:
    ROW_DONE = 0      # value written
    ROW_PYTHON = 1    # a bad value or a sum that cannot normalise: the Python layer explains
    ROW_RESCALE = 2   # the Python layer's rescaling path computes it: kl_div with
                      # normalize, or a raw sum beyond the range (or kl_div's below it)
                      # that base or dx scale


cdef inline int _row_value(int kind, bint f32, const char *p, Py_ssize_t sp, const char *q,
                           Py_ssize_t sq, Py_ssize_t n, bint normalize, bint check,
                           double log_base, double dx, double *value) noexcept nogil:
    """The finished value of one row into value[0] (ROW_DONE), or what the
    Python layer must do instead (ROW_PYTHON, ROW_RESCALE)."""
    cdef double res[3]
    cdef int st = _row(kind, f32, p, sp, q, sq, n, normalize, check, res)
    return _finish(kind, f32, st, res, normalize, log_base, dx, p, sp, q, sq, n, value)


cdef inline double _element(bint f32, const char *x, Py_ssize_t i) noexcept nogil:
    return (<const float *>x)[i] if f32 else (<const double *>x)[i]


cdef bint _infinite_term(int kind, bint f32, const char *p, Py_ssize_t sp, const char *q,
                         Py_ssize_t sq, Py_ssize_t n) noexcept nogil:
    """Some term of the row is +inf whatever base and dx are: kl_div's p > 0
    meeting q == 0, kl_div_log's finite log_p meeting a -inf log_q."""
    cdef Py_ssize_t i
    cdef double pv, qv
    for i in range(n):
        pv = _element(f32, p, i * sp)
        qv = _element(f32, q, i * sq)
        if kind == KIND_KL_LOG:
            if pv > -HUGE_VAL and qv == -HUGE_VAL:
                return True
        elif pv > 0.0 and qv == 0.0:
            return True
    return False


cdef inline bint _raw_beyond_range(int kind, bint f32, double raw, double log_base, double dx,
                                   bint normalize, const char *p, Py_ssize_t sp,
                                   const char *q, Py_ssize_t sq, Py_ssize_t n) noexcept nogil:
    """The raw sum of a row left the range although the divergence may be in
    it (not one made infinite by a term, _infinite_term): for kl_div always
    (a term beyond the range may be brought back by negative ones), for
    js_div and kl_div_log where base or dx may bring it back, and for
    kl_div_log with normalize (the weights of the rounded normaliser may sum
    to up to n, log_normalised).  The Python layer redoes it (kl_div and
    js_div on inputs scaled by a power of two, kl_div_log term by term in
    scaled form)."""
    if isfinite(raw) or (kind != KIND_KL and isnan(raw)):
        # (js_div's and kl_div_log's NaN is a bad input's, under check=False)
        return False
    if kind != KIND_KL and log_base == 0.0 and dx == 0.0:
        # without base, only kl_div_log's normalised overflow
        if not (kind == KIND_KL_LOG and normalize):
            return False
    return kind == KIND_JS or not _infinite_term(kind, f32, p, sp, q, sq, n)


cdef inline bint _small_value(int kind, double v, double tiny) noexcept nogil:
    """v is an input whose terms may be subnormal: 0 < v < tiny, or for
    kl_div_log a finite log below tiny (the caller passes log(tiny))."""
    if kind == KIND_KL_LOG:
        return -HUGE_VAL < v < tiny
    return 0.0 < v < tiny


cdef inline bint _raw_too_small(int kind, bint f32, double raw, double log_base, double dx,
                                const char *p, Py_ssize_t sp, const char *q, Py_ssize_t sq,
                                Py_ssize_t n) noexcept nogil:
    """A row's raw sum is below 2**-968 (float32, whose terms are floats,
    2**-102), it holds an input that small (kl_div: a p; js_div: a p or q;
    kl_div_log: a log_p below the log of it), whose terms may be subnormal and
    keep few bits, and base or dx magnify the sum: the Python layer redoes the
    row with those terms at full precision (_api.kl_below_range,
    _divergences._below_range)."""
    cdef double tiny = 1.9721522630525295e-31 if f32 else 4.008336720017946e-292  # 2**-102, 2**-968
    cdef double mag = fabs(dx) if dx != 0.0 else 1.0
    cdef Py_ssize_t i
    # an exact 0 too: subnormal terms can cancel to it when rounded (p = (1, 2) and
    # q = (2, 1) units of 2**-149 give terms of -1 and +1 units)
    if not fabs(raw) < tiny:
        return False
    if log_base != 0.0:
        mag = mag / fabs(log_base)
    if not mag > 1.0:
        return False
    if kind == KIND_KL_LOG:
        tiny = log(tiny)
    for i in range(n):
        if _small_value(kind, _element(f32, p, i * sp), tiny):
            return True
        if kind == KIND_JS and _small_value(kind, _element(f32, q, i * sq), tiny):
            return True
    return False


cdef inline int _finish(int kind, bint f32, int st, double *res, bint normalize,
                        double log_base, double dx, const char *p, Py_ssize_t sp,
                        const char *q, Py_ssize_t sq, Py_ssize_t n,
                        double *value) noexcept nogil:
    """_row_value's work on a row the kernel has done: its status st and res
    (the row itself for _raw_beyond_range)."""
    if kind == KIND_KL:
        if st == ROW_BAD:
            return ROW_PYTHON
        if normalize:
            if not (res[1] > 0.0 and res[2] > 0.0):
                return ROW_PYTHON
            if _normalize_rescale(res[0], res[1], res[2], f32):
                if not _apart_only(res[0], res[1], res[2], f32) or \
                        _kl_divided(f32, p, sp, q, sq, n, res) != ROW_DONE:
                    return ROW_RESCALE
            res[0] = _kl_normalized(res[0], res[1], res[2])
    elif st == ROW_BAD or st == ROW_ZERO_SUM_P or st == ROW_ZERO_SUM_Q:
        return ROW_PYTHON
    if _raw_beyond_range(kind, f32, res[0], log_base, dx, normalize, p, sp, q, sq, n):
        return ROW_RESCALE
    if not normalize and _raw_too_small(kind, f32, res[0], log_base, dx, p, sp, q, sq, n):
        return ROW_RESCALE
    value[0] = _scale(res[0], log_base, dx)
    return ROW_DONE


cdef inline Py_ssize_t _offset(Py_ssize_t i, Py_ssize_t m_in, Py_ssize_t s_in,
                               Py_ssize_t s_out) noexcept nogil:
    """Element offset of row i (see Layout; m_in 0 means one group)."""
    if m_in == 0:
        return i * s_in
    return (i // m_in) * s_out + (i % m_in) * s_in


cdef enum:
    # columns gathered together by _run_columns (a 64-byte line of float32), and
    # the longest such column
    TILE_COLS = 16
    TILE_MAX_N = 1 << 14


cdef inline void _gather_tile(const char *a, Py_ssize_t s_row, Py_ssize_t s_col, Py_ssize_t n,
                              Py_ssize_t w, bint f32, char *buf) noexcept nogil:
    """Columns 0..w-1 of a (n rows, stride s_row) tile, column c to buf[c*n:(c+1)*n]:
    the rows are read in order, so each cache line is loaded once for all w columns."""
    cdef Py_ssize_t i, c
    if f32:
        for i in range(n):
            for c in range(w):
                (<float *>buf)[c * n + i] = (<const float *>a)[i * s_row + c * s_col]
    else:
        for i in range(n):
            for c in range(w):
                (<double *>buf)[c * n + i] = (<const double *>a)[i * s_row + c * s_col]


cdef int _columns_group(int kind, bint f32, const char *p, const char *q, Layout *L,
                        Py_ssize_t item, Py_ssize_t j0, bint normalize, bint check,
                        double log_base, double dx, char *pbuf, char *qbuf,
                        double *values) noexcept nogil:
    """Rows j0 .. j0 + TILE_COLS - 1 (columns of a C-order matrix) through the
    row kernel on contiguous copies; the number that needed the Python layer."""
    cdef Py_ssize_t c, n = L.n, w = min(<Py_ssize_t>TILE_COLS, L.m - j0)
    cdef const char *qc
    cdef bint q_tile = L.sq0 != 0 and L.sq1 != 1   # q is a matrix laid out like p
    cdef int failed = 0
    _gather_tile(p + j0 * L.sp0 * item, L.sp1, L.sp0, n, w, f32, pbuf)
    if q_tile:
        _gather_tile(q + j0 * L.sq0 * item, L.sq1, L.sq0, n, w, f32, qbuf)
    for c in range(w):
        if q_tile:
            qc = qbuf + c * n * item
        else:
            qc = q + (j0 + c) * L.sq0 * item
        if _row_value(kind, f32, pbuf + c * n * item, 1, qc, 1 if q_tile else L.sq1, n,
                      normalize, check, log_base, dx, &values[j0 + c]) != ROW_DONE:
            failed += 1
    return failed


cdef bint _run_columns(int kind, bint f32, const char *p, const char *q, Layout *L,
                       Py_ssize_t item, bint normalize, bint check, double log_base, double dx,
                       int n_threads, double *values) noexcept:
    """_run_rows for rows that are the columns of a C-order float32 matrix (a
    reduction along a strided axis, neighbouring rows one element apart):
    TILE_COLS of them (a cache line) are gathered together into contiguous
    buffers, instead of each column's elements being loaded one cache line each.
    The kernels gather a strided row the same way, so the values are the same
    bits.  Measured on (1000, 1000), one thread: kl_div axis=0 1.95 -> 1.10 ms,
    js_div 3.09 -> 2.34 ms, kl_div_log 3.8 -> 2.55 ms.  float64 keeps the
    kernels' own gather: tiled it measured slower (3.3 -> 4.0 ms)."""
    cdef Py_ssize_t g, groups = (L.m + TILE_COLS - 1) // TILE_COLS
    cdef Py_ssize_t size = TILE_COLS * L.n * item
    cdef char *pbuf
    cdef char *qbuf
    cdef int failed = 0
    if n_threads <= 1:
        pbuf = <char *>malloc(2 * size)
        if pbuf == NULL:
            return False
        qbuf = pbuf + size
        with nogil:
            for g in range(groups):
                if stop_requested(L.watched):
                    failed += 1
                    break
                failed += _columns_group(kind, f32, p, q, L, item, g * TILE_COLS, normalize,
                                         check, log_base, dx, pbuf, qbuf, values)
        free(pbuf)
        return failed == 0
    pbuf = qbuf = NULL
    with nogil, parallel(num_threads=n_threads):
        pbuf = <char *>malloc(2 * size)
        qbuf = pbuf + size
        for g in prange(groups, schedule="static"):
            if pbuf == NULL or stop_requested(L.watched):
                failed += 1
            else:
                failed += _columns_group(kind, f32, p, q, L, item, g * TILE_COLS, normalize,
                                         check, log_base, dx, pbuf, qbuf, values)
        free(pbuf)
    return failed == 0


cdef int _across_rows(int kind, bint f32, const char *p, const char *q, Layout *L,
                      Py_ssize_t item, Py_ssize_t r0, bint normalize, bint check,
                      double log_base, double dx, double *values) noexcept nogil:
    """Rows r0 .. r0 + TASK_ROWS - 1 (or to the end) of kl_div or js_div
    through the across-rows kernels; the number that need the Python layer."""
    cdef double res[3 * TASK_ROWS]
    cdef int st[TASK_ROWS]
    cdef Py_ssize_t r, rows = min(<Py_ssize_t>TASK_ROWS, L.m - r0)
    cdef const char *pr = p + r0 * L.sp0 * item
    cdef const char *qr = q + r0 * L.sq0 * item
    cdef int failed = 0
    if kind == KIND_JS:
        core_table().js_rows_across_f64(<const double *>pr, L.sp0, L.sp1, <const double *>qr,
                                        L.sq0, L.sq1, rows, L.n, check, res, st)
    elif kind == KIND_KL_LOG:
        core_table().kl_log_rows_across_f64(<const double *>pr, L.sp0, L.sp1,
                                            <const double *>qr, L.sq0, L.sq1, rows, L.n,
                                            normalize, check, res, st)
    elif f32:
        core_table().kl_rows_across_f32(<const float *>pr, L.sp0, L.sp1, <const float *>qr,
                                       L.sq0, L.sq1, rows, L.n, check, normalize, res, st)
    else:
        core_table().kl_rows_across_f64(<const double *>pr, L.sp0, L.sp1, <const double *>qr,
                                       L.sq0, L.sq1, rows, L.n, check, normalize, res, st)
    for r in range(rows):
        if _finish(kind, f32, st[r], &res[3 * r], normalize, log_base, dx,
                   pr + r * L.sp0 * item, L.sp1, qr + r * L.sq0 * item, L.sq1, L.n,
                   &values[r0 + r]) != ROW_DONE:
            failed += 1
    return failed


cdef bint _run_across(int kind, bint f32, const char *p, const char *q, Layout *L,
                      Py_ssize_t item, bint normalize, bint check, double log_base, double dx,
                      int n_threads, double *values) noexcept:
    """_run_rows for rows computed across rows, TASK_ROWS at a time."""
    cdef Py_ssize_t g, groups = (L.m + TASK_ROWS - 1) // TASK_ROWS
    cdef int failed = 0
    if n_threads <= 1 or groups == 1:
        with nogil:
            for g in range(groups):
                if stop_requested(L.watched) or _across_rows(kind, f32, p, q, L, item,
                                                       g * TASK_ROWS, normalize, check,
                                                       log_base, dx, values):
                    return False
        return True
    for g in prange(groups, nogil=True, schedule="static", num_threads=n_threads):
        if stop_requested(L.watched):
            failed += 1
        else:
            failed += _across_rows(kind, f32, p, q, L, item, g * TASK_ROWS, normalize, check,
                                   log_base, dx, values)
    return failed == 0


# ---- one long row shared by the threads -------------------------------------
# Every pass over a long row is cut the same way: blocks of the kernels' size,
# _task_blocks blocks per task, the tasks over the threads, each block's result
# in its own slot; one thread then combines the slots in block order (added as
# the row function adds its blocks, or PASS_MAX's maximum), so a value has the
# bits of the one-thread row function.  A LongPass says which pass (its block
# function) and over what.

cdef enum:
    PASS_KL = 0        # kl_blocks: (sum, sum p, sum q) per block
    PASS_PAIR = 1      # js_blocks / log_blocks (kind): one total per block
    PASS_SUMS = 2      # js_sums_blocks: sum p per block, then sum q per block
    PASS_MAX = 3       # log_max: the largest finite entry of each LONG_TASK elements
    PASS_SUMEXP = 4    # sumexp_blocks: a total per block, then a count per block
    PASS_KL_DIVIDED = 5  # as PASS_KL, of (p / a, q / b): each block divided on the stack

ctypedef struct LongPass:
    int what           # PASS_*
    int kind           # KIND_JS or KIND_KL_LOG for PASS_PAIR
    bint f32           # float32 inputs
    bint option        # PASS_KL: want the sums; PASS_PAIR, PASS_SUMEXP: narrow
    const char *p      # the row (PASS_MAX, PASS_SUMEXP: the one input)
    const char *q
    Py_ssize_t sp, sq, n
    double a, b        # PASS_PAIR: factors or normalisers; PASS_SUMEXP: a is the max;
                       # PASS_KL_DIVIDED: the divisors of p and q
    Py_ssize_t block   # elements per block
    Py_ssize_t nblocks
    double *out        # the blocks' results (_pass_width doubles per block)
    int ninf           # PASS_PAIR: some task saw a -inf log_q under a finite log_p


cdef LongPass _long_pass(int what, int kind, bint f32, bint option, const char *p, const char *q,
                         Py_ssize_t sp, Py_ssize_t sq, Py_ssize_t n, double a,
                         double b) noexcept nogil:
    """A LongPass over the row (p, q) of n elements, its block size set from the
    pass and the dtype or, for PASS_PAIR and PASS_SUMEXP, from narrow (out is
    set by _over_threads)."""
    cdef LongPass J
    J.what = what
    J.kind = kind
    J.f32 = f32
    J.option = option
    J.p = p
    J.q = q
    J.sp = sp
    J.sq = sq
    J.n = n
    J.a = a
    J.b = b
    if what == PASS_MAX:
        J.block = LONG_TASK
    elif what == PASS_KL or what == PASS_SUMS or what == PASS_KL_DIVIDED:
        J.block = BLOCK_F32 if f32 else BLOCK_F64
    else:
        J.block = BLOCK_F32 if option else BLOCK_F64
    J.nblocks = (n + J.block - 1) // J.block
    J.out = NULL
    J.ninf = 0
    return J


cdef inline Py_ssize_t _pass_width(LongPass *J) noexcept nogil:
    if J.what == PASS_KL or J.what == PASS_KL_DIVIDED:
        return 3
    return 2 if J.what == PASS_SUMS or J.what == PASS_SUMEXP else 1


cdef int _divided_block(LongPass *J, Py_ssize_t b) noexcept nogil:
    """Block b of PASS_KL_DIVIDED into its slot: the block of p / J.a and q / J.b
    divided into buffers on the stack (_divide_side), then kl_blocks (the bits
    of that block of the divided row).  ROW_OK, or ROW_NEEDS_CARE where an
    element does not divide into the normal range or the block needs the
    careful path."""
    cdef float p32[BLOCK_F32]
    cdef float q32[BLOCK_F32]
    cdef double p64[BLOCK_F64]
    cdef double q64[BLOCK_F64]
    cdef char *pb = <char *>p32 if J.f32 else <char *>p64
    cdef char *qb = <char *>q32 if J.f32 else <char *>q64
    cdef Py_ssize_t item = 4 if J.f32 else 8
    cdef Py_ssize_t start = b * J.block, length = min(J.block, J.n - start)
    if not (_divide_side(J.f32, J.p + start * J.sp * item, J.sp, length, J.a, pb)
            and _divide_side(J.f32, J.q + start * J.sq * item, J.sq, length, J.b, qb)):
        return ROW_NEEDS_CARE
    if J.f32:
        return core_table().kl_blocks_f32(p32, 1, q32, 1, length, 0, 1, True, J.out + 3 * b)
    return core_table().kl_blocks_f64(p64, 1, q64, 1, length, 0, 1, True, J.out + 3 * b)


cdef int _pass_blocks(LongPass *J, Py_ssize_t b0, Py_ssize_t b1, int *ninf) noexcept nogil:
    """Blocks b0 .. b1 - 1 of the pass into their slots; nonzero where a block
    needs another path (a value the fast kernel does not take).  PASS_PAIR sets
    ninf[0] where a -inf log_q meets a finite log_p."""
    cdef const CoreTable *tab = core_table()
    cdef const float *p32 = <const float *>J.p
    cdef const float *q32 = <const float *>J.q
    cdef const double *p64 = <const double *>J.p
    cdef const double *q64 = <const double *>J.q
    cdef Py_ssize_t b, i0 = b0 * J.block
    cdef int bad = 0
    if J.what == PASS_KL:
        if J.f32:
            return tab.kl_blocks_f32(p32, J.sp, q32, J.sq, J.n, b0, b1, J.option,
                                     J.out + 3 * b0) != ROW_OK
        return tab.kl_blocks_f64(p64, J.sp, q64, J.sq, J.n, b0, b1, J.option,
                                 J.out + 3 * b0) != ROW_OK
    if J.what == PASS_KL_DIVIDED:
        for b in range(b0, b1):
            if _divided_block(J, b) != ROW_OK:
                return 1
        return 0
    if J.what == PASS_PAIR:
        return _pair_blocks(J.kind, J.f32, J.p, J.sp, J.q, J.sq, J.n, b0, b1, J.a, J.b,
                            J.option, J.out + b0, ninf) != ROW_OK
    if J.what == PASS_SUMS:
        if J.f32:
            return tab.js_sums_blocks_f32(p32, J.sp, q32, J.sq, J.n, b0, b1, J.out + b0,
                                          J.out + J.nblocks + b0)
        return tab.js_sums_blocks_f64(p64, J.sp, q64, J.sq, J.n, b0, b1, J.out + b0,
                                      J.out + J.nblocks + b0)
    if J.what == PASS_MAX:
        for b in range(b0, b1):
            i0 = b * J.block
            if J.f32:
                bad |= tab.log_max_f32(p32 + i0 * J.sp, J.sp, min(J.block, J.n - i0), J.out + b)
            else:
                bad |= tab.log_max_f64(p64 + i0 * J.sp, J.sp, min(J.block, J.n - i0), J.out + b)
        return bad
    if J.f32:
        tab.sumexp_blocks_f32(p32, J.sp, J.n, b0, b1, J.a, J.option, J.out + b0,
                              J.out + J.nblocks + b0)
    else:
        tab.sumexp_blocks_f64(p64, J.sp, J.n, b0, b1, J.a, J.option, J.out + b0,
                              J.out + J.nblocks + b0)
    return 0


cdef inline Py_ssize_t _task_blocks(Py_ssize_t nblocks, Py_ssize_t block,
                                    int n_threads) noexcept nogil:
    """Blocks per task of a long row: two tasks per thread (tasks of LONG_TASK
    elements left one of two threads 3 of the 5 tasks of 20,000 elements), and
    at most LONG_TASK_MAX elements each, so that a busy core holds back little
    of a long row."""
    cdef Py_ssize_t per = (nblocks + 2 * n_threads - 1) // (2 * n_threads)
    return max(1, min(per, LONG_TASK_MAX // block))


cdef inline int _pass_task(LongPass *J, Py_ssize_t t, Py_ssize_t per_task, bint watched,
                           int *flag) noexcept nogil:
    """Task t of a long row's pass (blocks t per_task .. (t + 1) per_task - 1):
    0, 1 when a block needs another path, -1 on Ctrl-C (in a watched call)."""
    cdef Py_ssize_t b0 = t * per_task
    if stop_requested(watched):
        return -1
    return _pass_blocks(J, b0, min(b0 + per_task, J.nblocks), flag) != 0


cdef void _static_tasks(LongPass *J, Py_ssize_t tasks, Py_ssize_t per_task, bint watched,
                        int tid, int team, int *counts) noexcept nogil:
    """Thread tid's share of a long row's tasks (static_share); its counts of
    tasks stopped, needing another path and with an infinite term into
    counts[3 tid: 3 tid + 3]."""
    cdef Py_ssize_t lo, hi, t
    cdef int flag, r
    static_share(tasks, tid, team, &lo, &hi)
    for t in range(lo, hi):
        flag = 0
        r = _pass_task(J, t, per_task, watched, &flag)
        counts[3 * tid] += r < 0
        counts[3 * tid + 1] += r > 0
        counts[3 * tid + 2] += flag


cdef int _over_threads(LongPass *J, int n_threads, bint watched) noexcept:
    """The pass's blocks over n_threads threads, _task_blocks blocks per task,
    into J.out (allocated here: free it with free(J.out) whatever the result).
    Returns the number of tasks with a block needing another path, or -1 on
    Ctrl-C or out of memory.

    A row of two tasks per thread (tasks under LONG_TASK_MAX elements) is
    scheduled statically, each thread one contiguous share (_static_tasks;
    the caller the last): a row reused from call to call then stays in the
    cache of the core that read it.  With a
    dynamic schedule the halves changed cores from call to call, and where
    the two cores did not share a cache (some periods on a virtual machine)
    n = 20,000 took 8.6 us on two threads instead of 7.2 (docs/core.md,
    "Threads on cores that do not share a cache").  Longer rows, read from memory anyway, keep the dynamic schedule, so a
    busy core takes fewer of their tasks."""
    cdef Py_ssize_t per_task = _task_blocks(J.nblocks, J.block, n_threads)
    cdef Py_ssize_t t, tasks = (J.nblocks + per_task - 1) // per_task
    cdef int failed = 0, stopped = 0, ninf = 0, flag = 0, r = 0
    J.out = <double *>malloc(_pass_width(J) * J.nblocks * sizeof(double))
    if J.out == NULL:
        return -1
    cdef int *counts
    if tasks <= 2 * n_threads:
        counts = <int *>calloc(3 * n_threads, sizeof(int))
        if counts == NULL:
            return -1
        with nogil, parallel(num_threads=n_threads):
            _static_tasks(J, tasks, per_task, watched, threadid(), kl_team_size(), counts)
        for t in range(n_threads):
            stopped += counts[3 * t]
            failed += counts[3 * t + 1]
            ninf += counts[3 * t + 2]
        free(counts)
    else:
        for t in prange(tasks, nogil=True, schedule="dynamic", num_threads=n_threads):
            flag = 0
            r = _pass_task(J, t, per_task, watched, &flag)
            stopped += r < 0
            failed += r > 0
            ninf += flag
    J.ninf = ninf != 0
    return -1 if stopped else failed


cdef inline bint _apart_only(double kl, double ps, double qs, bint f32) noexcept nogil:
    """A row _normalize_rescale redoes only because its sums are far apart:
    both within [tiny, big] (the Python layer's first_shifts leave it
    unscaled) and the raw sum finite (no p > 0 meets q == 0)."""
    cdef double tiny = _SUM_TINY_F32 if f32 else _SUM_TINY_F64
    cdef double big = _SUM_BIG_F32 if f32 else _SUM_BIG_F64
    return isfinite(kl) and tiny <= ps <= big and tiny <= qs <= big


cdef enum:
    DIVIDED_STACK = 256   # elements per side a divided row holds on the stack


cdef inline bint _divide_side(bint f32, const char *x, Py_ssize_t sx, Py_ssize_t n, double s,
                              char *out) noexcept nogil:
    """x / s element by element into out (contiguous, x's dtype) by the core's
    divide: as NumPy divides an array by a float64 sum and rescaled_pair casts
    it back.  False where an element is neither 0 nor divided into the normal
    range (negative, NaN, or too small): the Python layer scales such a row by
    powers of two instead."""
    if f32:
        return core_table().divide_f32(<const float *>x, sx, n, s, <float *>out) != 0
    return core_table().divide_f64(<const double *>x, sx, n, s, <double *>out) != 0


cdef int _kl_divided(bint f32, const char *p, Py_ssize_t sp, const char *q, Py_ssize_t sq,
                     Py_ssize_t n, double *res) noexcept nogil:
    """kl_div's normalize of a row whose sums res[1], res[2] are far apart
    (_apart_only): the row again with each side divided by its sum, into res,
    as the Python layer's rescaling path (_api.rescaled_pair) divides it and
    sums it, so the value has that path's bits.  That path took the whole call
    before (a 1-D call of 100 elements: 0.4 -> 220 us).  A short row is divided
    into buffers on the stack; a longer one block by block (PASS_KL_DIVIDED:
    the bits of the row kernel's fast path; a row that needs its careful path
    goes to the Python layer).  ROW_DONE, or ROW_RESCALE where that path must
    scale the row otherwise, or no memory."""
    cdef double stack[2 * DIVIDED_STACK]
    cdef Py_ssize_t item = 4 if f32 else 8
    cdef LongPass J
    cdef int flag = 0, done = ROW_RESCALE
    if n <= DIVIDED_STACK:
        if _divide_side(f32, p, sp, n, res[1], <char *>stack) and \
                _divide_side(f32, q, sq, n, res[2], <char *>stack + n * item) and \
                _row(KIND_KL, f32, <char *>stack, 1, <char *>stack + n * item, 1, n, True, True,
                     res) != ROW_BAD:
            done = ROW_DONE
        return done
    J = _long_pass(PASS_KL_DIVIDED, KIND_KL, f32, True, p, q, sp, sq, n, res[1], res[2])
    J.out = <double *>malloc(3 * J.nblocks * sizeof(double))
    if J.out != NULL and _pass_blocks(&J, 0, J.nblocks, &flag) == 0 and \
            core_table().kl_blocks_total(J.out, J.nblocks, res) == ROW_OK:
        done = ROW_DONE
    free(J.out)
    return done


cdef int _long_divided(bint f32, const char *p, const char *q, Layout *L, int n_threads,
                       double *res) noexcept:
    """_kl_divided of one long row over the threads (PASS_KL_DIVIDED, its blocks
    added by kl_blocks_total: the same bits): res replaced where it succeeds.
    0, 1 where a block needs another path (_finish then tries the row on one
    thread), -1 on Ctrl-C or out of memory."""
    cdef LongPass J = _long_pass(PASS_KL_DIVIDED, KIND_KL, f32, True, p, q, L.sp1, L.sq1, L.n,
                                 res[1], res[2])
    cdef double divided[3]
    cdef int failed = _over_threads(&J, n_threads, L.watched)
    if failed == 0 and core_table().kl_blocks_total(J.out, J.nblocks, divided) == ROW_OK:
        res[0], res[1], res[2] = divided[0], divided[1], divided[2]
    elif failed == 0:
        failed = 1
    free(J.out)
    return -1 if failed < 0 else failed != 0


cdef bint _run_long_row(bint f32, const char *p, const char *q, Layout *L, bint normalize,
                        bint check, double log_base, double dx, int n_threads,
                        double *value) noexcept:
    """kl_div of one long row shared by n_threads threads (PASS_KL; the blocks'
    results added by kl_blocks_total), the bits of kl_row on one thread; with
    normalize, a row whose sums are only far apart divided by them over the
    threads too (_long_divided).  A row the fast path cannot take, or any
    failure, goes to kl_row on one thread."""
    cdef LongPass J = _long_pass(PASS_KL, KIND_KL, f32, normalize, p, q, L.sp1, L.sq1, L.n,
                                 0.0, 0.0)
    cdef double res[3]
    cdef int st = ROW_NEEDS_CARE
    if _over_threads(&J, n_threads, L.watched) == 0:
        st = core_table().kl_blocks_total(J.out, J.nblocks, res)
    free(J.out)
    if st == ROW_OK and normalize and res[1] > 0.0 and res[2] > 0.0 and \
            _normalize_rescale(res[0], res[1], res[2], f32) and \
            _apart_only(res[0], res[1], res[2], f32) and \
            _long_divided(f32, p, q, L, n_threads, res) < 0:
        return False
    with nogil:
        if st == ROW_OK:
            return _finish(KIND_KL, f32, st, res, normalize, log_base, dx, p, L.sp1, q, L.sq1,
                           L.n, value) == ROW_DONE
        if stop_requested(L.watched):
            return False
        return _row_value(KIND_KL, f32, p, L.sp1, q, L.sq1, L.n, normalize, check, log_base, dx,
                          value) == ROW_DONE


cdef int _pair_blocks(int kind, bint f32, const char *p, Py_ssize_t sp, const char *q,
                      Py_ssize_t sq, Py_ssize_t n, Py_ssize_t b0, Py_ssize_t b1, double a,
                      double b, bint narrow, double *totals, int *flag) noexcept nogil:
    """Blocks b0 .. b1 - 1 of a js_div or kl_div_log row (js_blocks with the
    pairs' factors a, b; log_blocks with the normalisers a, b)."""
    cdef const CoreTable *tab = core_table()
    if kind == KIND_JS:
        if f32:
            return tab.js_blocks_f32(<const float *>p, sp, <const float *>q, sq, n, b0, b1,
                                     a, b, narrow, totals, flag)
        return tab.js_blocks_f64(<const double *>p, sp, <const double *>q, sq, n, b0, b1,
                                 a, b, narrow, totals, flag)
    if f32:
        return tab.log_blocks_f32(<const float *>p, sp, <const float *>q, sq, n, b0, b1,
                                  a, b, narrow, totals, flag)
    return tab.log_blocks_f64(<const double *>p, sp, <const double *>q, sq, n, b0, b1,
                              a, b, narrow, totals, flag)


cdef int _pair_pass(int kind, bint f32, const char *p, const char *q, Layout *L, double a,
                    double b, bint narrow, int n_threads, double *res) noexcept:
    """One fast pass over a long js_div / kl_div_log row shared by n_threads
    threads (PASS_PAIR), finished as the row functions finish it (pair_result),
    so res[0] holds the bits of the one-thread pass.  ROW_OK, or
    ROW_NEEDS_CARE (the next path), or -1 (out of memory, or Ctrl-C)."""
    cdef LongPass J = _long_pass(PASS_PAIR, kind, f32, narrow, p, q, L.sp1, L.sq1, L.n, a, b)
    cdef double total = 0.0
    cdef int failed = _over_threads(&J, n_threads, L.watched)
    if failed == 0:
        core_table().blocks_sum(J.out, J.nblocks, &total)
    free(J.out)
    if failed:
        return -1 if failed < 0 else ROW_NEEDS_CARE
    return core_table().pair_result(kind == KIND_KL_LOG, narrow, a, b, total, J.ninf, res)


cdef bint _js_sums(bint f32, const char *p, const char *q, Layout *L, int n_threads,
                   double *ps, double *qs) noexcept:
    """The row sums of p and q of one long js_div row shared by the threads
    (PASS_SUMS, each added in block order: js_sums' bits); False when the row
    may hold a bad value, or out of memory or Ctrl-C."""
    cdef LongPass J = _long_pass(PASS_SUMS, KIND_JS, f32, False, p, q, L.sp1, L.sq1, L.n,
                                 0.0, 0.0)
    cdef int failed = _over_threads(&J, n_threads, L.watched)
    if failed == 0:
        core_table().blocks_sum(J.out, J.nblocks, ps)
        core_table().blocks_sum(J.out + J.nblocks, J.nblocks, qs)
    free(J.out)
    return failed == 0


cdef bint _log_normaliser(bint f32, const char *x, Py_ssize_t sx, Py_ssize_t n, int n_threads,
                          bint watched, double *lx0, double *lo) noexcept:
    """The log-sum-exp of one long row shared by the threads (kl_log_row's
    normaliser and its rounding error lo, their bits): its largest finite
    entry (PASS_MAX: a maximum of maxima, the same for any split), then the
    sums of exp(x - max) over blocks (PASS_SUMEXP, added in order).  False
    when the row holds NaN or +inf or is -inf everywhere (the row function
    explains), or out of memory or Ctrl-C."""
    cdef LongPass J = _long_pass(PASS_MAX, KIND_KL_LOG, f32, False, x, NULL, sx, 0, n, 0.0, 0.0)
    cdef double mx = -HUGE_VAL, total, top = 0.0
    cdef Py_ssize_t t
    cdef int failed = _over_threads(&J, n_threads, watched)
    if failed == 0:
        for t in range(J.nblocks):
            if J.out[t] > mx:
                mx = J.out[t]
    free(J.out)
    if failed or mx == -HUGE_VAL:
        return False
    J = _long_pass(PASS_SUMEXP, KIND_KL_LOG, f32, f32 and sumexp_narrow_fits(mx), x, NULL, sx,
                   0, n, mx, 0.0)
    failed = _over_threads(&J, n_threads, watched)
    if failed == 0:
        core_table().blocks_sum(J.out, J.nblocks, &total)
        for t in range(J.nblocks):
            top += J.out[J.nblocks + t]
        lx0[0] = log_normaliser(mx, top, total, lo)
    free(J.out)
    return failed == 0


cdef bint _long_factors(int kind, bint f32, const char *p, const char *q, Layout *L,
                        int n_threads, double *a, double *b, double *lo) noexcept:
    """With normalize, what a long row's passes take, over the threads: js_div's
    factors 1 / sum p, 1 / sum q, or kl_div_log's normalisers (their rounding
    errors into lo[0:2]).  False where the row function must see the row (a
    bad value, a sum that cannot normalise, a factor that is not normal), or
    out of memory or Ctrl-C."""
    cdef double ps, qs
    if kind == KIND_KL_LOG:
        return (_log_normaliser(f32, p, L.sp1, L.n, n_threads, L.watched, a, &lo[0])
                and _log_normaliser(f32, q, L.sq1, L.n, n_threads, L.watched, b, &lo[1]))
    if not _js_sums(f32, p, q, L, n_threads, &ps, &qs):
        return False
    if not (0.0 < ps <= DBL_MAX and 0.0 < qs <= DBL_MAX):
        return False
    a[0] = 1.0 / ps
    b[0] = 1.0 / qs
    return DBL_MIN <= a[0] <= DBL_MAX and DBL_MIN <= b[0] <= DBL_MAX


cdef bint _run_long_pair(int kind, bint f32, const char *p, const char *q, Layout *L,
                         bint normalize, bint check, double log_base, double dx, int n_threads,
                         double *value) noexcept:
    """js_div or kl_div_log of one long row shared by n_threads threads, with
    the bits of the row function: with normalize the factors or normalisers
    first (_long_factors), then float rows' narrow pass and the double pass,
    as the row function tries them, each over the threads (_pair_pass).  A row
    neither takes, or any failure, goes to the row function on one thread."""
    cdef double res[3]
    cdef double lo[2]
    cdef double a = 1.0 if kind == KIND_JS else 0.0, b = a
    cdef int st = ROW_NEEDS_CARE
    res[1] = 0.0
    res[2] = 0.0
    lo[0] = 0.0
    lo[1] = 0.0
    if not normalize or _long_factors(kind, f32, p, q, L, n_threads, &a, &b, lo):
        if f32:
            st = _pair_pass(kind, f32, p, q, L, a, b, True, n_threads, res)
        if st == ROW_NEEDS_CARE:
            st = _pair_pass(kind, f32, p, q, L, a, b, False, n_threads, res)
    with nogil:
        if st == ROW_OK:
            if kind == KIND_KL_LOG:
                res[0] = core_table().log_normalised(res[0], lo[0], lo[1])
            return _finish(kind, f32, st, res, normalize, log_base, dx, p, L.sp1, q, L.sq1,
                           L.n, value) == ROW_DONE
        if stop_requested(L.watched):
            return False
        return _row_value(kind, f32, p, L.sp1, q, L.sq1, L.n, normalize, check, log_base, dx,
                          value) == ROW_DONE


cdef inline bint _long_row(int kind, Layout *L) noexcept nogil:
    """A single row the threads share (_run_long_row, _run_long_pair)."""
    return L.m == 1 and L.n >= LONG_ROW


cdef inline bint _across(int kind, bint f32, bint normalize, Layout *L) noexcept nogil:
    """Rows computed across rows (_run_across): kl_div's short rows in any
    layout and float64 columns of a C-order matrix; js_div's short float64
    rows without normalize; kl_div_log's float64 rows of up to LOG_SHORT_N elements."""
    if L.m_in != 0 or L.m < 2 or L.n == 0:
        return False
    if kind == KIND_KL:
        return L.n <= SHORT_N or (not f32 and L.sp0 == 1 and (L.sq0 == 1 or L.sq0 == 0))
    if kind == KIND_KL_LOG:
        return not f32 and L.n <= LOG_SHORT_N
    return kind == KIND_JS and not f32 and not normalize and L.n <= SHORT_N


cdef bint _run_rows(int kind, bint f32, const char *p, const char *q, Layout *L, Py_ssize_t item,
                    bint normalize, bint check, double log_base, double dx, int n_threads,
                    double *values) noexcept:
    """Every row's value into values[0:m]; False when some row needs the Python layer."""
    cdef Py_ssize_t i, m = L.m
    cdef bint ok = True
    cdef int failed = 0
    if _long_row(kind, L) and (n_threads > 1 or L.watched):
        # on one thread too where Ctrl-C is watched: the pass goes task by task and
        # stops between them (the whole row in one kernel call could not)
        if kind == KIND_KL:
            return _run_long_row(f32, p, q, L, normalize, check, log_base, dx, n_threads, values)
        return _run_long_pair(kind, f32, p, q, L, normalize, check, log_base, dx, n_threads,
                              values)
    if _across(kind, f32, normalize, L):
        return _run_across(kind, f32, p, q, L, item, normalize, check, log_base, dx, n_threads,
                           values)
    if (f32 and L.m_in == 0 and L.sp0 == 1 and L.sp1 != 1 and L.m >= 2
            and 1 < L.n <= TILE_MAX_N and (L.sq0 == 1 or L.sq0 == 0)):
        return _run_columns(kind, f32, p, q, L, item, normalize, check, log_base, dx,
                            n_threads, values)
    if n_threads <= 1:
        with nogil:
            for i in range(m):
                if stop_requested(L.watched) or \
                        _row_value(kind, f32, p + _offset(i, L.m_in, L.sp0, L.sp_out) * item, L.sp1,
                                   q + _offset(i, L.m_in, L.sq0, L.sq_out) * item, L.sq1, L.n,
                                   normalize, check, log_base, dx, &values[i]) != ROW_DONE:
                    ok = False
                    break
        return ok
    for i in prange(m, nogil=True, schedule="static", num_threads=n_threads):
        if stop_requested(L.watched) or \
                _row_value(kind, f32, p + _offset(i, L.m_in, L.sp0, L.sp_out) * item, L.sp1,
                           q + _offset(i, L.m_in, L.sq0, L.sq_out) * item, L.sq1, L.n,
                           normalize, check, log_base, dx, &values[i]) != ROW_DONE:
            failed += 1
    return failed == 0


cdef inline cnp.ndarray _operand(object a):
    """An ndarray view of ``a`` (lists and tuples converted, a memory-mapped array
    viewed as the plain array it is), else None."""
    if type(a) is cnp.ndarray:
        return <cnp.ndarray>a
    if type(a) is list or type(a) is tuple:
        try:
            return cnp.PyArray_FROMANY(a, cnp.NPY_NOTYPE, 0, 0, 0)
        except ValueError:
            return None   # a ragged sequence, above all: the Python layer explains
    if type(a) is _MEMMAP:
        return <cnp.ndarray>a.view(cnp.ndarray)
    return None


cdef inline bint _kernel_ready(cnp.ndarray a, int type_num) noexcept:
    return (cnp.PyArray_TYPE(a) == type_num and cnp.PyArray_ISALIGNED(a)
            and cnp.PyArray_ISNOTSWAPPED(a))


cdef inline double _positive(object value, bint allow_one) noexcept:
    """value as a positive finite float (not 1 unless allowed), 0 when it is None
    and -1 for anything else (the Python layer explains)."""
    cdef double v
    if value is None:
        return 0.0
    if type(value) is not float and type(value) is not int:
        return -1.0
    try:
        v = value
    except OverflowError:
        return -1.0
    if not (v > 0.0 and v <= DBL_MAX) or (v == 1.0 and not allow_one):
        return -1.0
    return v


cdef inline double _log_base(object base) noexcept:
    """log(base); 0 when base is None, NaN when it is not a valid base (the
    Python layer explains)."""
    cdef double b = _positive(base, False)
    if b < 0.0:
        return NAN
    return log(b) if b != 0.0 else 0.0


cdef double *_values_buffer(Py_ssize_t m, double *stack) except NULL:
    """Room for m row values: ``stack`` (STACK_ROWS of them) when m fits, else
    a malloc'd buffer the caller frees."""
    cdef double *values
    if m <= STACK_ROWS:
        return stack
    values = <double *>malloc(m * sizeof(double))
    if values == NULL:
        raise MemoryError()
    return values


cdef inline double _work(int kind) noexcept nogil:
    """Work per element, in kl_div's elements, for the thread rule (one thread,
    measured: js_div about 3.7 and kl_div_log about 1.9 times kl_div)."""
    if kind == KIND_JS:
        return 4.0
    if kind == KIND_KL_LOG:
        return 2.0
    return 1.0


cdef inline double _row_work(int kind, Py_ssize_t n) noexcept nogil:
    """Work of one of many rows of n elements, in kl_div's elements, for the
    thread rule.  A row costs more than its elements (one thread, float64
    kl_div, in the time of a long row's elements): rows of up to SHORT_N about
    2 n + 8 (4: 16, 10: 26, 16: 43, 40: 108), longer ones about n + ROW_COST
    (64: 98, 128: 157).  Counting a short row as n elements made a team look
    slower than one thread (its time is checked against that count), so a
    default call on 100,000 rows of 10 fell back to one thread."""
    if n <= SHORT_N:
        return _work(kind) * (2 * n + 8)
    return _work(kind) * (n + ROW_COST)


cdef int _rows_threads(int kind, Py_ssize_t m, Py_ssize_t n, bint long_row,
                       object num_threads, unsigned long long *token) except -1:
    """The threads (choose_threads) for m rows of n elements of `kind`, or with
    long_row one row shared by the threads."""
    if long_row:   # at most one thread per task of LONG_TASK elements
        return choose_threads(num_threads, (n + LONG_TASK - 1) // LONG_TASK, _work(kind) * n,
                              _parallel_min_elements, token)
    return choose_threads(num_threads, m, m * _row_work(kind, n), _parallel_min_elements, token)


def rows_work(str func, Py_ssize_t m, Py_ssize_t n):
    """The work of m rows of n elements of ``func`` (kl_div, js_div or
    kl_div_log) in the thread rule (_row_work), for the Python layer."""
    return m * _row_work(KIND_JS if func == "js_div" else KIND_KL_LOG if func == "kl_div_log"
                         else KIND_KL, n)


def entry_threads(object num_threads, Py_ssize_t m, Py_ssize_t n, bint long_row=False):
    """The threads the compiled kl_div entry gives m rows of n elements (one
    row shared by the threads with long_row), for tests; the call is noted done."""
    cdef unsigned long long token
    cdef int nt = _rows_threads(KIND_KL, m, n, long_row, num_threads, &token)
    team_finished(token)
    return nt


cdef object _deliver(double *values, Layout *L, bint f32, object out):
    """The result from the row values: a scalar, a new array or ``out``; None
    when ``out`` does not fit (the Python layer explains or casts)."""
    cdef cnp.ndarray res
    cdef Py_ssize_t i
    cdef float v32
    cdef int type_num = cnp.NPY_FLOAT if f32 else cnp.NPY_DOUBLE
    if out is None:
        if L.out_ndim == 0:
            if f32:
                v32 = <float>values[0]
                return PyArray_Scalar(&v32, _DESCR_F32, None)
            return PyArray_Scalar(values, _DESCR_F64, None)
        res = cnp.PyArray_EMPTY(L.out_ndim, L.out_shape, type_num, 0)
    else:
        if not isinstance(out, cnp.ndarray):
            return None
        res = <cnp.ndarray>out
        if (cnp.PyArray_NDIM(res) != L.out_ndim or not cnp.PyArray_IS_C_CONTIGUOUS(res)
                or not cnp.PyArray_ISWRITEABLE(res) or not _kernel_ready(res, type_num)):
            return None
        for i in range(L.out_ndim):
            if cnp.PyArray_DIM(res, i) != L.out_shape[i]:
                return None
    if f32:
        for i in range(L.m):
            (<float *>cnp.PyArray_DATA(res))[i] = <float>values[i]
    else:
        for i in range(L.m):
            (<double *>cnp.PyArray_DATA(res))[i] = values[i]
    return res


cdef object _entry(int kind, object p, object q, object axis, bint keepdims, object base,
                   bint normalize, object dx, object out, object num_threads, bint check,
                   str func):
    """The result of ``func`` computed here, or None to hand the call to Python."""
    cdef cnp.ndarray pa = _operand(p), qa
    cdef Layout L
    cdef double log_base, dx_v
    cdef int type_num, n_threads
    cdef unsigned long long token
    cdef double stack_values[STACK_ROWS]
    cdef double *values = stack_values
    cdef bint ok, watched = False
    cdef object direct = None
    if pa is None:
        return None
    qa = _operand(q)
    if qa is None:
        return None
    type_num = cnp.PyArray_TYPE(pa)
    if type_num != cnp.NPY_DOUBLE and type_num != cnp.NPY_FLOAT:
        return None
    if not (_kernel_ready(pa, type_num) and _kernel_ready(qa, type_num)):
        return None
    log_base = _log_base(base)
    dx_v = _positive(dx, True)
    if isnan(log_base) or dx_v < 0.0 or (normalize and dx is not None):
        return None
    if not _layout(pa, qa, axis, keepdims, &L):
        return None
    if L.n == 0 and normalize:
        return None  # an empty reduction cannot be normalised: the Python layer explains
    if check and (L.m == 0 or L.n == 0) and (cnp.PyArray_SIZE(pa) or cnp.PyArray_SIZE(qa)):
        return None  # an empty broadcast of a non-empty input: the Python layer checks it
    n_threads = _rows_threads(kind, L.m, L.n, _long_row(kind, &L), num_threads, &token)
    if n_threads == 0:
        return None
    try:
        if out is None and L.out_ndim > 0 and type_num == cnp.NPY_DOUBLE and L.m > STACK_ROWS:
            # a new float64 result: the rows' values go straight into it
            direct = cnp.PyArray_EMPTY(L.out_ndim, L.out_shape, cnp.NPY_DOUBLE, 0)
            values = <double *>cnp.PyArray_DATA(direct)
        else:
            values = _values_buffer(L.m, stack_values)
        watched = _watch_interrupts(<double>L.m * L.n)
        L.watched = watched
        ok = _run_rows(kind, type_num == cnp.NPY_FLOAT,
                       <const char *>cnp.PyArray_DATA(pa), <const char *>cnp.PyArray_DATA(qa),
                       &L, cnp.PyArray_ITEMSIZE(pa), normalize, check, log_base, dx_v,
                       n_threads, values)
        if not ok:
            return None
        team_completed(token)
        if direct is not None:
            return direct
        return _deliver(values, &L, type_num == cnp.NPY_FLOAT, out)
    finally:
        team_finished(token)   # (a no-op after team_completed)
        if values != stack_values and direct is None:
            free(values)
        _end_watch(watched)


def kl_div(p, q, *, axis=-1, keepdims=False, base=None, normalize=False, dx=None,
           out=None, num_threads=None, check=True):
    # docstring installed by register_general from the Python implementation
    keepdims = flag(keepdims, "keepdims", "kl_div")
    normalize, check = flag(normalize, "normalize", "kl_div"), flag(check, "check", "kl_div")
    r = _entry(KIND_KL, p, q, axis, keepdims, base, normalize, dx, out, num_threads, check,
               "kl_div")
    if r is not None:
        return r
    return _general["kl_div"](p, q, axis=axis, keepdims=keepdims, base=base,
                              normalize=normalize, dx=dx, out=out, num_threads=num_threads,
                              check=check)


def js_div(p, q, *, axis=-1, keepdims=False, base=None, normalize=False, out=None,
           num_threads=None, check=True):
    keepdims = flag(keepdims, "keepdims", "js_div")
    normalize, check = flag(normalize, "normalize", "js_div"), flag(check, "check", "js_div")
    r = _entry(KIND_JS, p, q, axis, keepdims, base, normalize, None, out, num_threads, check,
               "js_div")
    if r is not None:
        return r
    return _general["js_div"](p, q, axis=axis, keepdims=keepdims, base=base,
                              normalize=normalize, out=out, num_threads=num_threads, check=check)


def kl_div_log(log_p, log_q, *, axis=-1, keepdims=False, base=None, normalize=False,
               out=None, num_threads=None, check=True):
    keepdims = flag(keepdims, "keepdims", "kl_div_log")
    normalize = flag(normalize, "normalize", "kl_div_log")
    check = flag(check, "check", "kl_div_log")
    r = _entry(KIND_KL_LOG, log_p, log_q, axis, keepdims, base, normalize, None, out,
               num_threads, check, "kl_div_log")
    if r is not None:
        return r
    return _general["kl_div_log"](log_p, log_q, axis=axis, keepdims=keepdims, base=base,
                                  normalize=normalize, out=out, num_threads=num_threads,
                                  check=check)


cdef inline cnp.ndarray _as_c_double(cnp.ndarray a):
    """a as a C-contiguous float64 array in native byte order (itself when it is one)."""
    return cnp.PyArray_FROMANY(a, cnp.NPY_DOUBLE, 0, 0, cnp.NPY_ARRAY_C_CONTIGUOUS
                               | cnp.NPY_ARRAY_ALIGNED | cnp.NPY_ARRAY_NOTSWAPPED)


cdef bint _run_pairs(int kind, bint f32, const char *P, const char *Q, Py_ssize_t m,
                     Py_ssize_t k, Py_ssize_t n, Py_ssize_t sp0, Py_ssize_t sp1, Py_ssize_t sq0,
                     Py_ssize_t sq1, bint normalize, bint check, double log_base, int n_threads,
                     double *values, unsigned char *codes) noexcept:
    """values[i * k + j] = the value of the pair (P[i], Q[j]) (strides in bytes
    between rows, in elements along them), codes[i * k + j] its ROW_* code;
    False when some pair needs the Python layer's explanation (ROW_PYTHON)."""
    cdef Py_ssize_t i, j
    cdef int failed = 0
    if n_threads <= 1:
        with nogil:
            for i in range(m):
                for j in range(k):
                    codes[i * k + j] = _row_value(kind, f32, P + i * sp0, sp1, Q + j * sq0, sq1,
                                                  n, normalize, check, log_base, 0.0,
                                                  &values[i * k + j])
                    if codes[i * k + j] == ROW_PYTHON:
                        return False
        return True
    for i in prange(m, nogil=True, schedule="static", num_threads=n_threads):
        for j in range(k):
            codes[i * k + j] = _row_value(kind, f32, P + i * sp0, sp1, Q + j * sq0, sq1, n,
                                          normalize, check, log_base, 0.0, &values[i * k + j])
            if codes[i * k + j] == ROW_PYTHON:
                failed += 1
    return failed == 0


cdef object _pairwise_entry(int kind, object P, object Q, object base, bint normalize, object out,
                            object num_threads, bint check, str func):
    """The all-pairs matrix of ``func`` for small inputs: pair by pair by the row
    kernel, or kl_pairwise's product form (_kl_product_small); None to hand
    the call to Python."""
    cdef cnp.ndarray pa = _operand(P), qa
    cdef Layout L
    cdef Py_ssize_t m, k, n, item, small
    cdef double log_base
    cdef int n_threads, type_num
    cdef unsigned long long token
    cdef bint f32, kernel_f32, product = False
    cdef double stack_values[STACK_ROWS]
    cdef double *values
    cdef unsigned char *codes
    cdef Py_ssize_t t
    if pa is None:
        return None
    qa = pa if Q is None else _operand(Q)
    if qa is None or cnp.PyArray_NDIM(pa) != 2 or cnp.PyArray_NDIM(qa) != 2:
        return None
    if pa.dtype.kind not in "biuf" or qa.dtype.kind not in "biuf" \
            or pa.dtype.itemsize > 8 or qa.dtype.itemsize > 8:
        return None  # extended precision: the Python layer checks its range
    m, n, k = cnp.PyArray_DIM(pa, 0), cnp.PyArray_DIM(pa, 1), cnp.PyArray_DIM(qa, 0)
    if cnp.PyArray_DIM(qa, 1) != n or n == 0 or m == 0 or k == 0:
        return None
    # sizes in double: the dimensions of broadcast (stride 0) inputs are unbounded
    small = SMALL_KL_PAIRWISE if kind == KIND_KL else SMALL_PAIRWISE
    if <double>m * k * (n + PAIR_COST) > small:
        if kind != KIND_KL or normalize or <double>m * k * n > SMALL_PRODUCT \
                or <double>m * k > SMALL_PRODUCT_ENTRIES:
            return None
        product = True
    log_base = _log_base(base)
    if isnan(log_base):
        return None
    # (the product form runs on one thread: num_threads is only checked)
    n_threads = choose_threads(num_threads, 1 if product else m,
                               _work(kind) * m * k * (n + PAIR_COST), _parallel_min_elements,
                               &token)
    if n_threads == 0:
        return None
    # float32 pairs: JS by its float32 kernel (so entries equal js_div's), KL in
    # float64 (as the matrix-product form is), each rounded once at the end
    f32 = pa.dtype.kind == "f" and pa.dtype.itemsize == 4 and qa.dtype.kind == "f" \
        and qa.dtype.itemsize == 4
    if product:
        try:
            pa = _as_c_double(pa)
            return _kl_product_small(pa, pa if Q is None else _as_c_double(qa), log_base, f32,
                                     out, func)
        finally:
            team_finished(token)
    kernel_f32 = f32 and kind == KIND_JS
    type_num = cnp.NPY_FLOAT if kernel_f32 else cnp.NPY_DOUBLE
    pa = cnp.PyArray_FROMANY(pa, type_num, 2, 2, cnp.NPY_ARRAY_ALIGNED | cnp.NPY_ARRAY_NOTSWAPPED)
    qa = cnp.PyArray_FROMANY(qa, type_num, 2, 2, cnp.NPY_ARRAY_ALIGNED | cnp.NPY_ARRAY_NOTSWAPPED)
    item = cnp.PyArray_ITEMSIZE(pa)
    L.m, L.out_ndim, L.out_shape[0], L.out_shape[1] = m * k, 2, m, k
    L.watched = False
    values = _values_buffer(L.m, stack_values)
    codes = <unsigned char *>malloc(L.m)
    if codes == NULL:
        raise MemoryError
    try:
        if not _run_pairs(kind, kernel_f32, <const char *>cnp.PyArray_DATA(pa),
                          <const char *>cnp.PyArray_DATA(qa), m, k, n,
                          cnp.PyArray_STRIDE(pa, 0), cnp.PyArray_STRIDE(pa, 1) // item,
                          cnp.PyArray_STRIDE(qa, 0), cnp.PyArray_STRIDE(qa, 1) // item,
                          normalize, check, log_base, n_threads, values, codes):
            return None
        row_func = "kl_div" if kind == KIND_KL else "js_div"
        for t in range(L.m):
            if codes[t] == ROW_RESCALE:
                # the row function's rescaling path for this pair, so the entry is its value
                values[t] = _general[row_func](pa[t // k], qa[t % k], normalize=normalize,
                                               base=base, check=check)
        res = _deliver(values, &L, f32, out)
        if res is None:  # an out of another dtype or layout: cast into it, or explain
            res = _deliver_python(_deliver(values, &L, f32, None), out,
                                  _DESCR_F32 if f32 else _DESCR_F64, func)
        return res
    finally:
        team_finished(token)
        free(codes)
        if values != stack_values:
            free(values)


def kl_pairwise(P, Q=None, *, base=None, normalize=False, out=None, num_threads=None,
                check=True):
    normalize = flag(normalize, "normalize", "kl_pairwise")
    check = flag(check, "check", "kl_pairwise")
    r = _pairwise_entry(KIND_KL, P, Q, base, normalize, out, num_threads, check, "kl_pairwise")
    if r is not None:
        return r
    return _general["kl_pairwise"](P, Q, base=base, normalize=normalize, out=out,
                                   num_threads=num_threads, check=check)


def js_pairwise(P, Q=None, *, base=None, normalize=False, out=None, num_threads=None,
                check=True):
    normalize = flag(normalize, "normalize", "js_pairwise")
    check = flag(check, "check", "js_pairwise")
    r = _pairwise_entry(KIND_JS, P, Q, base, normalize, out, num_threads, check, "js_pairwise")
    if r is not None:
        return r
    return _general["js_pairwise"](P, Q, base=base, normalize=normalize, out=out,
                                   num_threads=num_threads, check=check)


def fast_path(str func, p, q, *, axis=-1, keepdims=False, base=None, normalize=False,
              dx=None, out=None, num_threads=None, check=True):
    """What the compiled entry of ``func`` computes by itself, or None where it
    hands the call to the Python implementation (for tests)."""
    if func.endswith("_pairwise"):
        kind = KIND_KL if func == "kl_pairwise" else KIND_JS
        return _pairwise_entry(kind, p, q, base, normalize, out, num_threads, check, func)
    kind = {"kl_div": KIND_KL, "js_div": KIND_JS, "kl_div_log": KIND_KL_LOG}[func]
    return _entry(kind, p, q, axis, keepdims, base, normalize, dx, out, num_threads, check, func)


def finish_kl(const double[::1] kl, const double[::1] ps, const double[::1] qs,
              double[::1] out, bint normalize, double base, double dx):
    """out = kl with normalize, base and dx applied (base 0: natural log, dx 0:
    none), element by element; the same arithmetic as the compiled entries."""
    cdef Py_ssize_t i, n = kl.shape[0]
    cdef double log_base = log(base) if base != 0.0 else 0.0
    if out.shape[0] != n or (normalize and (ps.shape[0] != n or qs.shape[0] != n)):
        raise ValueError("finish_kl: kl, ps, qs and out differ in length")
    with nogil:
        for i in range(n):
            out[i] = _scale(_kl_normalized(kl[i], ps[i], qs[i]) if normalize else kl[i],
                            log_base, dx)


cdef inline unsigned char _product_entry(double *value, double *bound, double c, double a,
                                         double hp, double ps, double qs, double lps,
                                         double lqs, double gamma,
                                         double factor) noexcept nogil:
    """One entry of the product form with normalize: value[0] from c = (P
    L^T)[i, j] and the row's term hp, finished as kl_div finishes it, its error
    bound (into bound[0]) from a = -c + h_abs[i] (the scale of the rounding
    errors) and the factor gamma; 1 when the bound cannot resolve it from 0
    (product_unresolved: its value is then recomputed by the row kernel)."""
    cdef double v = _kl_normalized(hp - c, ps, qs)
    a = (a / ps + (fabs(lqs - lps) + 1.0)) * gamma
    value[0] = v
    bound[0] = a
    return product_unresolved(v, a, factor)


cdef inline Py_ssize_t _product_row(double *ob, Py_ssize_t k, double hp, double h_abs,
                                    double ps, const double *qsum, double lps,
                                    const double *log_qs, bint normalize, double gamma,
                                    double factor, unsigned char *redo,
                                    double *bound) noexcept nogil:
    """Row i of the block: the core's product_row without normalize, else
    _product_entry over it (bound: k doubles, or NULL for none); 1 when an
    entry of it must be recomputed."""
    cdef Py_ssize_t j
    cdef double bnd
    cdef unsigned char any_redo = 0
    if not normalize:
        # the common case: the core's vectorised row (redo zeroed by the caller)
        if bound != NULL:
            for j in range(k):
                bound[j] = product_bound(h_abs - ob[j], gamma)
        return core_table().product_row(ob, k, hp, h_abs, gamma, factor, redo)
    for j in range(k):
        redo[j] = _product_entry(&ob[j], &bnd, ob[j], h_abs - ob[j], hp, ps, qsum[j], lps,
                                 log_qs[j], gamma, factor)
        if bound != NULL:
            bound[j] = bnd
        any_redo |= redo[j]
    return any_redo


def product_form_finish(double[:, ::1] ob, const double[::1] hp, const double[::1] h_abs,
                        const double[::1] psum, const double[::1] qsum,
                        const double[::1] log_ps, const double[::1] log_qs, bint normalize,
                        double gamma, double factor, unsigned char[:, ::1] redo, bound,
                        int n_threads):
    """kl_pairwise's product form after its matrix product, in one pass.

    ob (a block of rows, (b, k)) holds C = P L^T, L <= 0 the centred logs of
    Q's rows, and becomes the divergences hp[i] - C[i, j] (with normalize:
    finished as kl_div finishes them); redo (zeroed by the caller: without
    normalize a row with no entry to redo is left as it is) is set to 1 at [i, j]
    where the a-priori
    error bound gamma (-C[i, j] + h_abs[i]; with normalize divided by psum[i]
    and increased by |log qs - log ps| + 1) cannot resolve the entry from 0
    within ``factor`` bounds (it is recomputed exactly), else 0.  psum, log_ps
    hold the block's rows, qsum, log_qs the columns (read only with
    normalize).  Returns the number of rows holding an entry to recompute.
    ``bound`` (a (b, k) float64 array, or None) receives each entry's error
    bound."""
    cdef Py_ssize_t b = ob.shape[0], k = ob.shape[1], i, count = 0
    cdef double[:, ::1] bd
    cdef double *bp = NULL
    cdef Py_ssize_t b_stride = 0
    if bound is not None:
        bd = bound
        if bd.shape[0] != b or bd.shape[1] != k:
            raise ValueError("product_form_finish: bound has the wrong shape")
        bp = &bd[0, 0] if b and k else NULL
        b_stride = k
    if (hp.shape[0] != b or h_abs.shape[0] != b or redo.shape[0] != b or redo.shape[1] != k
            or (normalize and (psum.shape[0] != b or log_ps.shape[0] != b
                               or qsum.shape[0] != k or log_qs.shape[0] != k))):
        raise ValueError("product_form_finish: shapes differ")
    if b == 0 or k == 0:
        return 0
    for i in prange(b, nogil=True, schedule="static", num_threads=max(1, n_threads)):
        count += _product_row(&ob[i, 0], k, hp[i], h_abs[i], psum[i] if normalize else 1.0,
                              &qsum[0] if normalize else NULL,
                              log_ps[i] if normalize else 0.0,
                              &log_qs[0] if normalize else NULL, normalize, gamma, factor,
                              &redo[i, 0], bp + i * b_stride if bp != NULL else NULL)
    return count
