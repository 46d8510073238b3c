"""Compiled kernels of kl_fast.

The ``def`` functions here loop over rows (in parallel with OpenMP when it was
available at build time) and write into arrays the caller allocated; they do no
validation beyond the fused bad-value check.  The Python layer in ``_api.py``
converts, broadcasts, allocates and explains errors.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.stdlib cimport getenv

cimport numpy as cnp

cnp.import_array()

import os as _os

import numpy as _np

include "_interrupt.pxi"

cdef extern from *:
    """
    #ifdef KL_FAST_OPENMP
    #include <omp.h>
    static int kl_openmp_enabled(void) { return 1; }
    static double kl_wtime(void) { return omp_get_wtime(); }
    #else
    static int kl_openmp_enabled(void) { return 0; }
    static double kl_wtime(void) { return 0.0; }
    #endif
    """
    int kl_openmp_enabled()
    double kl_wtime() noexcept nogil


from cpython.pycapsule cimport PyCapsule_GetPointer

# The one dispatch: the CoreTable of each core build this CPU can run, by name,
# and the one every kernel call goes through.
cdef dict _TABLES = {}
cdef const CoreTable *_table = NULL


cdef const CoreTable *core_table() noexcept nogil:
    return _table


# Instruction-set targets, best first: the name of each core build, its module,
# the CPU features (NumPy's names) it needs, and those it needs to be the
# default: 512-bit vectors lower the clock of Intel cores before Ice Lake, so
# there the AVX2 build stays the default (KL_FAST_ISA=avx512 still chooses it).
_TARGETS = (
    ("avx512", "_core_avx512",
     ("AVX2", "FMA3", "AVX512F", "AVX512CD", "AVX512DQ", "AVX512BW", "AVX512VL"),
     ("AVX512_ICL",)),
    ("avx2+fma", "_core_avx2", ("AVX2", "FMA3"), ()),
)
_KNOWN_ISAS = tuple(target[0] for target in _TARGETS) + ("baseline",)
_DEFAULT_ISA = "baseline"


def _cpu_features():
    """What NumPy's own CPU detection (which checks the OS saves the vector state) says."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # NumPy < 2
        from numpy.core._multiarray_umath import __cpu_features__ as features
    return features


def _has(features, names):
    return all(features.get(name) for name in names)


def _load_tables():
    """The table of every core build this CPU can run, best first; the default
    is the best whose default features the CPU has too.  A build that is
    missing (not made for this platform) is skipped; one that fails to load
    is skipped with a warning, since its CPU then runs a slower path."""
    global _DEFAULT_ISA
    import importlib
    import warnings
    from kl_fast import _core_baseline
    features = _cpu_features()
    for name, module, needs, default_needs in _TARGETS:
        if not _has(features, needs):
            continue
        try:
            core = importlib.import_module("kl_fast." + module)
        except ModuleNotFoundError as exc:
            if exc.name != "kl_fast." + module:
                raise
            continue
        except ImportError as exc:
            warnings.warn(f"kl_fast: the {name} kernels failed to load ({exc}); "
                          "using the next instruction set", RuntimeWarning, stacklevel=2)
            continue
        _TABLES[name] = core.table(name)
        if _DEFAULT_ISA == "baseline" and _has(features, default_needs):
            _DEFAULT_ISA = name
    _TABLES["baseline"] = _core_baseline.table("baseline")


cdef const CoreTable *_table_of(str name) except NULL:
    return <const CoreTable *>PyCapsule_GetPointer(_TABLES[name], b"kl_fast.CoreTable")


def default_isa():
    """The instruction set the kernels run with unless told otherwise."""
    return _DEFAULT_ISA


def select_isa(str name=None):
    """Choose the kernel instruction set by name ("baseline", "avx2+fma", "avx512"),
    or the default for this CPU (default_isa()) when name is None; returns its name."""
    global _table, _item_seconds
    if name is None:
        name = _DEFAULT_ISA
    elif name not in _TABLES:
        what = "unknown" if name not in _KNOWN_ISAS else "not available on this CPU or build"
        raise ValueError(f"kernel instruction set {name!r} is {what}; "
                         f"available: {', '.join(available_isas())}")
    _table = _table_of(name)
    # one thread's pace is the new kernels' to learn, from 1 ns per item (the
    # baseline build's, about 4 ns: a guess of 1 would make its teams look slow)
    _item_seconds = ITEM_SECONDS * (4.0 if name == "baseline" else 1.0)
    return name


def current_isa():
    """Name of the instruction set the kernels run with."""
    return _table.name.decode("ascii")


def available_isas():
    """Kernel paths this CPU and build can run."""
    return list(_TABLES)


def openmp_enabled():
    """True when the kernels were compiled with OpenMP (rows run in parallel)."""
    return bool(kl_openmp_enabled())


# ---- when a thread team pays for itself -------------------------------------
# After a parallel call OpenMP's idle threads spin briefly (_openmp.py), then
# sleep, and a call that needs a sleeping thread waits for it at the team's
# barrier.  Measured on a 2-core VM (docs/core.md, "A team that has slept"):
# the wake costs ~20 us when the team slept under 0.5 ms and 0.2-0.7 ms after
# longer; a hot team already pays from 8,192 kl_div elements (1.45-1.6x).  So
# by default a call takes the team from `hot_min` items of work (kl_div
# elements, or what costs as much) when the last call that could use it ended
# less than HOT_GAP ago; from warm_min(hot_min) when that was under COLD_GAP
# ago; from cold_min(hot_min) after that.  A burst of calls pays one cold wake
# (its second call), an isolated call none.  The state is the process's (OpenMP
# gives each calling thread a team of its own, so calls from several Python
# threads see each other's times), and the clock is OpenMP's (a jump in it
# misjudges one call).  Results are the same for every thread count: only the
# time depends on this.
cdef double HOT_GAP = 50e-6
cdef double COLD_GAP = 500e-6
cdef double WARM_WORK = 65536.0     # about 65 us on one thread: repays a 20 us wake
cdef double COLD_WORK = 2097152.0   # about 2 ms on one thread: repays a 0.7 ms wake
cdef double ITEM_SECONDS = 1e-9     # time per item assumed until a call's end is seen
cdef double _last_end = -1e300      # when the last call of hot_min items or more ended
cdef unsigned long long _calls = 0       # calls noted so far (their tokens)
cdef unsigned long long _estimated = 0   # the call whose end _last_end estimates, 0 if none

# A team does not survive fork(): GNU OpenMP's threads are not copied into the
# child, whose next parallel region waits for them forever.  So a process forked
# after this one ran a call on more than one thread runs every call on one (the
# same bits, as for every thread count); one forked before any team keeps its
# threads.  (multiprocessing's "spawn" and "forkserver" start methods give
# workers their own teams.)
cdef bint _team_used = False     # a call of this process started a team
cdef bint _forked_alone = False  # forked after one: every call on one thread

# A busy core.  Another library's threads may hold the other core: OpenBLAS's
# workers spin for about 100 ms after each multi-threaded matrix product
# (NumPy's own `@`), and a co-tenant, a Dask worker or a joblib pool may run
# there.  Then a team waits for its second thread whenever the scheduler gives
# that core to the other program: most calls run at the team's speed, some wait
# a time slice (measured beside a Python busy loop, kl_div n = 20,000 back to
# back: 15 us median, 75 us mean, against 27 us on one thread; docs/core.md,
# "A busy core").  So the rule's team calls are judged together, in windows
# of BUSY_WINDOW of their time (the time between calls does not count: under
# load the caller itself is descheduled between them): a window whose calls
# took longer in all than BUSY_MARGIN times what one thread would have (at
# _item_seconds, the mean time per item of the last calls the rule ran on one
# thread, but at least ITEM_SECONDS, plus BUSY_SLACK a call) marks the core
# busy for BUSY_SPAN.  (The margin and the slack: a call's work counts its cost
# only roughly, and teams that merely do not pay, such as short columns with
# axis=0, are no busy core.)  Meanwhile the rule takes the team only from
# BUSY_WORK items, where half a core still pays; the first call after the span
# tries the team again.  Only a call whose team had worked less than COLD_GAP
# before counts (a team that slept longer wakes slowly anyway).  A team warming up after a pause (up to five slow calls on this VM,
# 0.15-0.4 ms each) or one call preempted for a few ms is paid back by the
# window's other calls.  kl_pairwise marks the core busy for BLAS_SPAN after a
# product BLAS ran on threads (their spin).
cdef double BUSY_SPAN = 0.5
cdef double BUSY_WINDOW = 0.02
cdef double BUSY_MARGIN = 1.25
cdef double BUSY_SLACK = 10e-6      # a call's own cost beside its items', roughly
cdef double BLAS_SPAN = 0.1
cdef double BUSY_WORK = 8388608.0   # about 8 ms on one thread
cdef double _window_end = -1e300    # when the last call of the window ended
cdef double _window_team = 0.0      # the window's calls' time on the team
cdef double _window_alone = 0.0     # and on one thread, estimated
cdef double _item_seconds = 1e-9    # one thread's time per item: a mean of the last calls
cdef double _busy_until = -1e300    # default calls avoid the team until then
cdef double _started = 0.0          # when the call _estimated notes started, and its work,
cdef double _started_items = 0.0    # if the rule (not the caller) gave it the team
cdef bint _started_by_rule = False
cdef int _started_threads = 1
cdef double _team_end = -1e300      # when the last noted call on a team ended
cdef double _team_gap = 1e300       # how long before the call _estimated notes that was


cdef inline double warm_min(double hot_min) noexcept:
    """Work that repays waking a team that slept under COLD_GAP."""
    return 2.0 * hot_min if 2.0 * hot_min > WARM_WORK else WARM_WORK


cdef inline double cold_min(double hot_min) noexcept:
    """Work that repays waking a team that slept longer."""
    return 64.0 * hot_min if 64.0 * hot_min > COLD_WORK else COLD_WORK


cdef int default_team(int threads, double items, double hot_min,
                      unsigned long long *token) noexcept:
    """Threads for a call of `items` work items by default: `threads`, or 1
    where waking the team would cost more than it saves.  A call of hot_min
    items or more is noted (team_started; its token into token[0], else 0)."""
    cdef double now, gap, need
    token[0] = 0
    if threads <= 1 or items < hot_min:
        return 1
    now = kl_wtime()
    gap = now - _last_end
    if gap < HOT_GAP:
        need = hot_min
    elif gap < COLD_GAP:
        need = warm_min(hot_min)
    else:
        need = cold_min(hot_min)
    if now < _busy_until and need < BUSY_WORK:
        need = BUSY_WORK
    if items < need:
        threads = 1
    token[0] = team_started(threads, items, threads > 1)
    return threads


cdef unsigned long long team_started(int threads, double items, bint by_rule) noexcept:
    """Note a call of `items` items on `threads` threads starting now (by_rule:
    the rule gave it the team): its end is estimated until team_finished(token)
    sees it.  Returns the token."""
    global _last_end, _calls, _estimated, _started, _started_items, _started_by_rule
    global _started_threads, _team_gap, _team_used
    _team_used = _team_used or threads > 1
    _started = kl_wtime()
    _started_items = items
    _started_by_rule = by_rule
    _started_threads = threads
    _team_gap = _started - _team_end
    _last_end = _started + items * ITEM_SECONDS / (threads if threads > 1 else 1)
    _calls += 1
    _estimated = _calls
    return _calls


cdef void team_finished(unsigned long long token) noexcept:
    """Note the end of the call team_started gave `token` (0: none), unless a
    later call has been noted since."""
    team_ended(token, False)


cdef void team_completed(unsigned long long token) noexcept:
    """team_finished for a call that did all the work it was noted with (the
    rows or the Gaussian evaluation, no early return, no Python rescue): its
    time also teaches one thread's pace, or tells a slow team (busy_note)."""
    team_ended(token, True)


cdef void team_ended(unsigned long long token, bint completed) noexcept:
    """team_finished, and with completed team_completed."""
    global _last_end, _estimated, _team_end, _item_seconds
    cdef double seconds, pace
    if token == 0 or token != _estimated:
        return
    _last_end = kl_wtime()
    _estimated = 0
    if _started_threads > 1:
        _team_end = _last_end
    if not completed or _started_items <= 0.0:
        return
    seconds = _last_end - _started
    if _started_threads == 1:
        # one thread's pace (the baseline build's is about 4 ns per item); a
        # sample counts for at most 1.25 times the mean or a quarter of it: a
        # call descheduled for a time slice (a busy machine) must not teach a
        # slow pace (4 times, as before, learned 17-22 ns per item beside three
        # busy loops against 2.4 measured, and no team looked slow)
        pace = seconds / _started_items
        pace = min(max(pace, 0.25 * _item_seconds), 1.25 * _item_seconds)
        _item_seconds += 0.25 * (pace - _item_seconds)
    elif _started_by_rule and _team_gap < COLD_GAP:
        # at least ITEM_SECONDS per item: a pace learned on float32 rows (about
        # 2.7 times as fast as float64's) must not make float64 teams look slow
        busy_note(seconds, _started_items * max(_item_seconds, ITEM_SECONDS) + BUSY_SLACK)


cdef void busy_note(double seconds, double alone) noexcept:
    """Note a team call the rule chose (it took `seconds`, and would have taken
    `alone` on one thread) into the window: once the window's calls have taken
    BUSY_WINDOW, a team slower in all than BUSY_MARGIN times one thread marks
    the core busy, and a new window starts.  A window whose last call ended
    over BUSY_SPAN before this one started is dropped (the machine may have
    changed since)."""
    global _busy_until, _window_end, _window_team, _window_alone
    if _started - _window_end > BUSY_SPAN:
        _window_team = 0.0
        _window_alone = 0.0
    _window_end = _last_end
    _window_team += seconds
    _window_alone += alone
    if _window_team >= BUSY_WINDOW:
        if _window_team > BUSY_MARGIN * _window_alone:
            _busy_until = _last_end + BUSY_SPAN
        _window_team = 0.0
        _window_alone = 0.0


def note_busy_core():
    """Mark the other cores busy for BLAS_SPAN (kl_pairwise, after its BLAS
    product, whose threads spin on)."""
    global _busy_until
    _busy_until = max(_busy_until, kl_wtime() + BLAS_SPAN)


# Set by configure_threads from the Python layer: its default thread count (a
# function: it reads KL_FAST_NUM_THREADS) and the CPUs the process may use.
cdef object _read_threads = None
cdef int _cpus = 1


def configure_threads(object default_threads, int cpu_count):
    """Install the Python layer's default thread count and CPU cap."""
    global _read_threads, _cpus
    _read_threads = default_threads
    _cpus = 1 if _forked_alone or cpu_count < 1 else cpu_count


def _after_fork_in_child():
    """os.register_at_fork's hook: one thread in a child forked after a team."""
    global _cpus, _forked_alone
    if _team_used:
        _forked_alone = True
        _cpus = 1


def forked_alone():
    """Whether this process was forked after a team and runs on one thread."""
    return _forked_alone


_os.register_at_fork(after_in_child=_after_fork_in_child)


cdef int default_count() except -1:
    """The default thread count: the CPUs, or where KL_FAST_NUM_THREADS is set
    what the Python layer's default_threads (which explains a bad value)
    makes of it, at most the CPUs."""
    cdef const char *env = getenv("KL_FAST_NUM_THREADS")
    if env == NULL or env[0] == 0:
        return _cpus
    count = _read_threads()
    return _cpus if count > _cpus else count


cdef int choose_threads(object num_threads, Py_ssize_t cap, double items, double hot_min,
                        unsigned long long *token) except -1:
    """The threads for a call of `items` work items split at most `cap` ways,
    the one rule of every entry: by default one below hot_min items, else
    the default count where waking the team pays (default_team); an int
    num_threads as asked; never more than the CPUs.  0 when num_threads is
    not an int >= 1 (the Python layer explains it, or converts another
    integer type).  A call that may use the team is noted (token[0]; pass
    it to team_finished when the call is done)."""
    cdef long req
    token[0] = 0
    if num_threads is None:
        if cap <= 1 or items < hot_min or _read_threads is None:
            return 1
        req = default_count()
        return default_team(<int>min(req, cap), items, hot_min, token)
    if type(num_threads) is not int:
        return 0
    try:
        req = num_threads
    except OverflowError:
        return 0
    if req < 1:
        return 0
    req = min(req, cap, <long>_cpus)
    if req <= 1:
        return 1
    token[0] = team_started(<int>req, items, False)
    return <int>req


def threads(object num_threads, Py_ssize_t cap, double items, double hot_min):
    """choose_threads for the Python layer (the call's end stays estimated)."""
    cdef unsigned long long token
    return choose_threads(num_threads, cap, items, hot_min, &token)


def threads_for(int threads, double items, double hot_min):
    """default_team's choice between 1 and `threads`, for tests (the call's end
    stays estimated)."""
    cdef unsigned long long token
    return default_team(threads, items, hot_min, &token)


def team_thresholds(double hot_min):
    """The work from which the rule takes the team after a gap under HOT_GAP,
    under COLD_GAP, and longer (for tests and docs)."""
    return hot_min, warm_min(hot_min), cold_min(hot_min)


def team_state():
    """(seconds since the last noted call ended, or will by its estimate;
    whether that end is still an estimate; whether the rule sees a busy core),
    for tests."""
    cdef double now = kl_wtime()
    return now - _last_end, _estimated != 0, now < _busy_until


def set_team_idle(double seconds):
    """Make the rule see the last call ended `seconds` ago, and no busy core
    (for tests)."""
    global _last_end, _estimated, _busy_until, _team_end, _window_team, _window_alone
    global _item_seconds
    _last_end = kl_wtime() - seconds
    _team_end = _last_end
    _estimated = 0
    _busy_until = -1e300
    _window_team = 0.0
    _window_alone = 0.0
    _item_seconds = ITEM_SECONDS


def rule_team_call(double items, double seconds, double team_idle=0.0, int threads=2):
    """Note a call of `items` items that the rule gave `threads` threads,
    `team_idle` seconds after the team's last call, and that took `seconds`
    (for tests)."""
    global _started, _team_end
    _team_end = kl_wtime() - team_idle
    cdef unsigned long long token = team_started(threads, items, threads > 1)
    _started -= seconds
    team_completed(token)


def one_thread_pace():
    """The learned seconds per item of one thread (for tests)."""
    return _item_seconds


def busy_thresholds():
    """(BUSY_SPAN, BUSY_WORK, BUSY_WINDOW, BUSY_MARGIN, BUSY_SLACK, BLAS_SPAN), for
    tests and docs."""
    return BUSY_SPAN, BUSY_WORK, BUSY_WINDOW, BUSY_MARGIN, BUSY_SLACK, BLAS_SPAN


cdef inline void _across_rows(const floating *p, Py_ssize_t sp0, Py_ssize_t sp1,
                              const floating *q, Py_ssize_t sq0, Py_ssize_t sq1,
                              Py_ssize_t m, Py_ssize_t n, Py_ssize_t r0, bint check,
                              bint want_sums, double *out, signed char *status) noexcept nogil:
    """Rows r0 .. r0 + TASK_ROWS - 1 (or to the end) of kl_rows."""
    kl_rows_task(p + r0 * sp0, sp0, sp1, q + r0 * sq0, sq0, sq1,
                 min(<Py_ssize_t>TASK_ROWS, m - r0), n, check, want_sums,
                 out + 3 * r0, status + r0)


def kl_rows(const floating[:, :] p, const floating[:, :] q, double[:, ::1] out,
            signed char[::1] status, bint check, int n_threads, bint want_sums=True):
    """Per row i: out[i] = (sum p*log(p/q), sum p, sum q); status[i] = row status.

    With want_sums False the two sums are skipped (written as 0).

    p and q have the same shape (m, n) and any strides (0 included, for
    broadcasting).  status[i] is 1 when check is set and row i holds a
    negative, NaN or infinite value (out[i] is then not written).
    """
    cdef Py_ssize_t m = p.shape[0], n = p.shape[1], i, g, groups
    cdef Py_ssize_t sp0 = p.strides[0] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t sp1 = p.strides[1] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t sq0 = q.strides[0] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t sq1 = q.strides[1] // <Py_ssize_t>sizeof(floating)
    cdef const floating *pp
    cdef const floating *qp
    cdef int st
    if q.shape[0] != m or q.shape[1] != n or out.shape[0] != m or out.shape[1] != 3 \
            or status.shape[0] != m:
        raise ValueError("kl_rows: shape mismatch between p, q, out and status")
    if m == 0:
        return
    pp = &p[0, 0] if n > 0 else <const floating *>NULL
    qp = &q[0, 0] if n > 0 else <const floating *>NULL
    cdef bint watched = _watch_interrupts(<double>m * n)
    try:
        if m > 1 and 0 < n <= SHORT_N:
            groups = (m + TASK_ROWS - 1) // TASK_ROWS
            if n_threads <= 1:
                with nogil:
                    for g in range(groups):
                        if stop_requested(watched):
                            break
                        _across_rows(pp, sp0, sp1, qp, sq0, sq1, m, n, g * TASK_ROWS, check,
                                     want_sums, &out[0, 0], &status[0])
            else:
                for g in prange(groups, nogil=True, schedule="static", num_threads=n_threads):
                    if not stop_requested(watched):
                        _across_rows(pp, sp0, sp1, qp, sq0, sq1, m, n, g * TASK_ROWS, check,
                                     want_sums, &out[0, 0], &status[0])
        elif n_threads <= 1 or m == 1:
            with nogil:
                for i in range(m):
                    if stop_requested(watched):
                        break
                    st = kl_row(pp + i * sp0, sp1, qp + i * sq0, sq1, n, check, want_sums,
                                &out[i, 0])
                    status[i] = 1 if st == ROW_BAD else 0
        else:
            for i in prange(m, nogil=True, schedule="static", num_threads=n_threads):
                if not stop_requested(watched):
                    st = kl_row(pp + i * sp0, sp1, qp + i * sq0, sq1, n, check, want_sums,
                                &out[i, 0])
                    status[i] = 1 if st == ROW_BAD else 0
    finally:
        _end_watch(watched)


def find_bad(const floating[:] p, const floating[:] q):
    """First negative, NaN or infinite element of a row pair, p before q.

    Returns (which, index, value) with which 0 for p and 1 for q, or None.
    """
    cdef int which = 0, found
    cdef Py_ssize_t index = 0
    cdef double value = 0.0
    cdef Py_ssize_t n = p.shape[0]
    if q.shape[0] != n:
        raise ValueError("find_bad: p and q differ in length")
    if n == 0:
        return None
    if floating is double:
        found = _table.find_bad_f64(&p[0], p.strides[0] // 8, &q[0], q.strides[0] // 8,
                                    n, &which, &index, &value)
    else:
        found = _table.find_bad_f32(&p[0], p.strides[0] // 4, &q[0], q.strides[0] // 4,
                                    n, &which, &index, &value)
    if not found:
        return None
    return which, index, value


def row_status(const floating[:] p, const floating[:] q, bint check=True, bint want_sums=False):
    """One row through the kernel of the selected path, for tests: which path
    gave the result, and the result.

    Returns (status, (kl, sum p, sum q)) with status "fast" (the vectorised
    kernel), "careful" (it handed the row to the exact scalar path) or "bad"
    (check is set and the row holds a negative, NaN or infinite value).
    """
    cdef double res[3]
    cdef int st
    cdef Py_ssize_t n = p.shape[0]
    res[0] = res[1] = res[2] = 0.0
    if q.shape[0] != n:
        raise ValueError("row_status: p and q differ in length")
    if n > 0:
        st = kl_row(&p[0], p.strides[0] // sizeof(floating), &q[0], q.strides[0] // sizeof(floating),
                    n, check, want_sums, res)
    else:
        st = ROW_OK
    name = "bad" if st == ROW_BAD else "careful" if st == ROW_CAREFUL else "fast"
    return name, (res[0], res[1], res[2])


_MATH_FUNCS = {"log": 0, "exp": 1, "log_normal": 2, "exp_split": 3}


def math_map(str name, x, str path):
    """Apply one of the kernels' own functions element-wise (for accuracy tests).

    name is "log", "exp" or "log_normal" (the KL kernels' log, valid for normal
    positive finite input only), for x float64 or float32; or "exp_split", the
    float32 log-space kernels' exp(x[0] + x[1]) for x float32 of shape (2, n),
    returned as float64 of shape (n,).  path is "baseline", "avx2+fma" or "avx512".
    Raises RuntimeError when that path is not available here.
    """
    cdef cnp.ndarray xa = _np.ascontiguousarray(x)
    cdef cnp.ndarray ya
    cdef Py_ssize_t n = xa.size
    if xa.dtype != _np.float64 and xa.dtype != _np.float32:
        raise TypeError("math_map: x must be float32 or float64")
    if path not in _KNOWN_ISAS:
        raise ValueError(f"math_map: unknown path {path!r}")
    if path not in _TABLES:
        raise RuntimeError(f"math_map: the {path} path is not available here")
    if name == "exp_split":
        if xa.dtype != _np.float32 or xa.ndim != 2 or xa.shape[0] != 2:
            raise TypeError("math_map: exp_split takes float32 x of shape (2, n)")
        n = xa.shape[1]
        ya = _np.empty(n, dtype=_np.float64)
    else:
        ya = _np.empty_like(xa)
    _table_of(path).math_map(_MATH_FUNCS[name], xa.dtype == _np.float32,
                             cnp.PyArray_DATA(xa), cnp.PyArray_DATA(ya), n)
    return ya


_load_tables()
select_isa()
