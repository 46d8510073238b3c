# The static split of a loop over an OpenMP team, written out where a prange
# would do (included by _core.pxi and _div_kernels.pyx).
#
# Design: in a `with parallel()` block each thread takes one contiguous share
# (static_share), so the same thread reads the same part of a row in every call
# (it stays in that core's cache), and the calling thread (thread 0) takes the
# last share: it starts last, since it first wakes the others, and the last
# share is most often the shortest (a partial block or task); when it also
# finishes first, it does not wait on the others' wake-up at the end.  Nor is
# there a loop-end barrier besides the region's own, as a prange has.  Timed
# inside the region of a Gaussian pass on 20,000 points (two threads, docs/core.md),
# the other thread began its share 0.7-0.9 us after the region did, the caller
# 0.9-1.0 us, and a caller that finished last ended the region 0.4-0.5 us later.

cdef extern from *:
    """
    #ifdef KL_FAST_OPENMP
    #include <omp.h>
    static int kl_team_size(void) { return omp_get_num_threads(); }
    #else
    static int kl_team_size(void) { return 1; }
    #endif
    """
    int kl_team_size() noexcept nogil   # threads of the enclosing parallel region


cdef inline void static_share(Py_ssize_t count, int tid, int team, Py_ssize_t *lo,
                              Py_ssize_t *hi) noexcept nogil:
    """[lo, hi): thread tid's share of count items split over team threads,
    thread 0 (the caller) the last."""
    cdef Py_ssize_t r = team - 1 - tid
    lo[0] = count * r // team
    hi[0] = count * (r + 1) // team
