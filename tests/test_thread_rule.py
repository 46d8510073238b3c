"""The default thread count: a team only where waking it pays (kl_fast._kernels.default_team).

The rule reads a clock, so each decision is retried a few times: a test thread
preempted between setting the last call's end and asking could see another gap.
"""
import numpy as np
import pytest

import kl_fast
from kl_fast import _div_kernels, _gaussian, _kernels, gaussian
from kl_fast._validation import _CPU_COUNT, _PARALLEL_MIN_ELEMENTS, default_threads, resolve_threads

TEAM = min(default_threads(), _CPU_COUNT)
pytestmark = pytest.mark.skipif(not _kernels.openmp_enabled() or TEAM < 2,
                                reason="without OpenMP or a second thread there is no team")

HOT = _PARALLEL_MIN_ELEMENTS
_, WARM, COLD = (int(v) for v in _kernels.team_thresholds(HOT))


def decides(idle_seconds, items, expected, ask=lambda items: _kernels.threads_for(2, items, HOT)):
    seen = []
    for _ in range(5):
        _kernels.set_team_idle(idle_seconds)
        seen.append(ask(items))
        if seen[-1] == expected:
            return
    pytest.fail(f"last call {idle_seconds} s ago, {items} items: threads {seen}, "
                f"expected {expected}")


def test_a_hot_team_is_used_from_the_threshold():
    decides(0.0, HOT, 2)
    decides(0.0, HOT - 1, 1)


def test_the_thresholds_are_the_measured_ones():
    # docs/core.md: a hot team pays from 8,192 elements, a 20 us wake from about
    # 65,000, a 0.2-0.7 ms wake from about 2 million
    assert (HOT, WARM, COLD) == (8192, 65536, 2**21)
    assert _kernels.team_thresholds(2**16) == (2**16, 2**17, 2**22)


def test_a_team_that_slept_briefly_needs_more_work():
    decides(250e-6, WARM - 1, 1)
    decides(250e-6, WARM, 2)


def test_a_team_that_slept_long_needs_much_more_work():
    decides(1.0, COLD - 1, 1)
    decides(1.0, COLD, 2)
    decides(1.0, 10**9, 2)


def test_calls_back_to_back_wake_the_team_once():
    # an isolated call runs alone; the next one, right after, takes the team
    for _ in range(5):
        _kernels.set_team_idle(1.0)
        first = _kernels.threads_for(2, HOT, HOT)
        second = _kernels.threads_for(2, HOT, HOT)
        if (first, second) == (1, 2):
            return
    pytest.fail(f"back to back after a long idle: threads {first}, {second}")


def test_small_calls_do_not_count_as_a_stream():
    for _ in range(5):
        _kernels.set_team_idle(1.0)
        _kernels.threads_for(2, HOT - 1, HOT)
        if _kernels.threads_for(2, HOT, HOT) == 1:
            return
    pytest.fail("a call below the threshold warmed the rule")


def test_a_requested_team_counts_as_used():
    for _ in range(5):
        _kernels.set_team_idle(1.0)
        _kernels.threads(2, 2, 1e3, HOT)   # num_threads=2 asked for a small call
        if _kernels.threads_for(2, HOT, HOT) == 2:
            return
    pytest.fail("a call on two threads the user asked for did not mark the team as awake")


def test_compiled_entries_follow_the_rule():
    rows = lambda items: _div_kernels.entry_threads(None, 128, items // 128)  # noqa: E731
    decides(0.0, 4 * HOT, TEAM, ask=rows)
    decides(1.0, 4 * HOT, 1, ask=rows)
    decides(1.0, COLD, TEAM, ask=rows)
    # one row shared by the threads: the same thresholds, whatever the CPUs, and
    # at most one thread per task of 4,096 elements
    row = lambda n: _div_kernels.entry_threads(None, 1, n, True)  # noqa: E731
    decides(0.0, HOT, min(TEAM, HOT // 4096), ask=row)
    assert _div_kernels.entry_threads(64, 1, HOT, True) == min(_CPU_COUNT, HOT // 4096)
    decides(0.0, HOT - 1, 1, ask=row)
    decides(1.0, HOT, 1, ask=row)
    decides(1.0, COLD, TEAM, ask=row)
    # the Gaussian row rule has its own threshold (a point counts two elements),
    # and counts a fit's passes
    m = _gaussian.SPLIT_MIN
    grid = lambda passes: lambda n: gaussian._threads(None, 1, n, "f", passes)  # noqa: E731
    decides(0.0, m, TEAM, ask=grid(1))
    decides(0.0, m - 1, 1, ask=grid(1))
    decides(1.0, m, 1, ask=grid(1))
    decides(1.0, m, TEAM, ask=grid(_gaussian.fit_passes(False, 99)))
    decides(1.0, COLD // 2, TEAM, ask=grid(1))
    decides(1.0, COLD // 2 - 256, 1, ask=grid(1))
    assert _gaussian.fit_passes(True, 50) < _gaussian.fit_passes(False, 50) == 51


def test_rows_weigh_their_elements_and_a_per_row_cost():
    # js_div and kl_div_log elements weigh 4 and 2 kl_div elements, and a row
    # costs more than its elements, most for short rows (per element)
    work = _div_kernels.rows_work
    for func, weight in (("kl_div", 1.0), ("js_div", 4.0), ("kl_div_log", 2.0)):
        assert work(func, 100, 10) == weight * work("kl_div", 100, 10)
        assert work(func, 3, 1000) > weight * 3 * 1000
    per_element = [work("kl_div", 1, n) / n for n in (1, 4, 10, 40, 41, 128, 4096)]
    assert per_element == sorted(per_element, reverse=True)
    assert per_element[2] >= 2.0 and per_element[-1] < 1.01


def test_short_rows_take_the_team_by_their_weight():
    # 512 rows of 10: fewer elements than the threshold, more work than it; the
    # compiled entry and the Python layer's row loop count them alike
    m, n = 512, 10
    assert m * n < HOT <= _div_kernels.rows_work("kl_div", m, n)
    decides(0.0, n, TEAM, ask=lambda n: _div_kernels.entry_threads(None, m, n))
    work = int(_div_kernels.rows_work("kl_div", m, n))
    decides(0.0, work, TEAM, ask=lambda items: resolve_threads(None, m, items, "f"))
    assert _div_kernels.rows_work("kl_div", 256, n) < HOT
    decides(0.0, 256, 1, ask=lambda m: _div_kernels.entry_threads(None, m, n))


def test_the_python_layer_follows_the_rule():
    ask = lambda items: resolve_threads(None, 100, items, "f")  # noqa: E731
    decides(0.0, HOT, min(TEAM, 100), ask=ask)
    decides(1.0, HOT, 1, ask=ask)
    decides(1.0, COLD, min(TEAM, 100), ask=ask)


def test_compiled_calls_record_their_end_and_small_calls_do_not():
    rng = np.random.default_rng(0)
    P, Q = rng.random((2, 100, 4 * HOT // 100))
    x = np.linspace(-5, 5, _gaussian.SPLIT_MIN)
    g = np.exp(-x * x)
    row = np.concatenate(P)
    calls = {"kl_div rows": lambda: kl_fast.kl_div(P, Q),
             "js_div one long row": lambda: kl_fast.js_div(row, row[::-1]),
             "js_pairwise": lambda: kl_fast.js_pairwise(P[:32, :64], Q[:32, :64]),
             "gaussian_kl_grad": lambda: kl_fast.gaussian_kl_grad(g, x, 0.1, 1.2),
             "fit_gaussian": lambda: kl_fast.fit_gaussian(g, x)}
    for name, call in calls.items():
        _kernels.set_team_idle(1.0)
        call()
        gap, estimated, _ = _kernels.team_state()
        assert not estimated and 0.0 <= gap < 0.5, name
    # a call the Python layer noted keeps its estimate through a small call
    _kernels.set_team_idle(1.0)
    _kernels.threads_for(2, 1e10, HOT)       # ends, by the estimate, seconds from now
    kl_fast.kl_div(P[0, :10], Q[0, :10])
    gap, estimated, _ = _kernels.team_state()
    assert estimated and gap < -1.0


SPAN, BUSY_WORK, WINDOW, MARGIN, SLACK, BLAS_SPAN = _kernels.busy_thresholds()
COLD_GAP_SECONDS = 500e-6


def alone(items):
    """One thread's time for `items`, as the rule estimates it after set_team_idle."""
    return items * 1e-9 + SLACK


def test_team_calls_slower_than_one_thread_in_all_mark_the_core_busy():
    # another library's threads (OpenBLAS's spin about 100 ms after a product) or
    # another program held the other core: by default calls then run alone unless
    # they are large
    decides_busy = lambda items: _kernels.threads_for(2, items, HOT)  # noqa: E731
    for _ in range(5):                 # (a pause of the test over 0.5 s would end it)
        _kernels.set_team_idle(0.0)
        _kernels.rule_team_call(4 * HOT, WINDOW / 2)       # half a window: not judged yet
        assert not _kernels.team_state()[2]
        _kernels.rule_team_call(4 * HOT, WINDOW / 2)       # a window, slower than alone
        assert _kernels.team_state()[2]
        seen = (decides_busy(4 * HOT), decides_busy(COLD), decides_busy(BUSY_WORK))
        if seen == (1, 1, 2):
            break
    assert seen == (1, 1, 2)
    # an explicit num_threads is taken as asked
    assert _kernels.threads(2, 2, 4 * HOT, HOT) == 2
    assert (SPAN, BUSY_WORK, WINDOW, MARGIN, SLACK, BLAS_SPAN) == (0.5, 2.0**23, 0.02, 1.25,
                                                                  10e-6, 0.1)


@pytest.mark.parametrize("ratio, busy", [(0.5, False), (1.2, False), (1.3, True), (3.0, True)])
def test_a_window_is_judged_by_its_total_time(ratio, busy):
    # fast calls, then one very slow one (a call descheduled for a while): the
    # window is judged on their total against one thread's, times the margin
    items = 2e7                        # 20 ms alone at 1 ns per item
    _kernels.set_team_idle(0.0)
    for _ in range(5):
        _kernels.rule_team_call(items, 0.002)
    assert not _kernels.team_state()[2]              # 10 ms: not a window yet
    total = ratio * 6 * alone(items)
    _kernels.rule_team_call(items, total - 0.01)      # the window's total: `ratio` alone
    assert total >= WINDOW and (ratio > MARGIN) == busy
    assert _kernels.team_state()[2] == busy


def test_slow_means_slower_than_one_thread_at_its_measured_pace():
    # one thread's pace is learned from the calls the rule ran alone (the baseline
    # build takes about 4 ns per element): a team as slow as that is not a busy core
    items = 2e7                       # 80 ms on one thread, at 4 ns
    _kernels.set_team_idle(0.0)
    for _ in range(40):
        _kernels.rule_team_call(items, items * 4e-9, threads=1)
    assert _kernels.one_thread_pace() == pytest.approx(4e-9, rel=0.01)
    _kernels.rule_team_call(items, items * 4.5e-9)   # slower than 1 ns per item, not 4
    assert not _kernels.team_state()[2]
    _kernels.rule_team_call(items, items * 5.5e-9)
    assert _kernels.team_state()[2]


def test_a_descheduled_call_teaches_little_of_the_pace():
    # a call alone that waited for a time slice (a busy machine) moves the learned
    # pace up by a quarter of a quarter at most; faster calls pull it down
    items = 1e6
    _kernels.set_team_idle(0.0)
    _kernels.rule_team_call(items, 0.004, threads=1)          # 4 ns per item, one slice
    assert _kernels.one_thread_pace() == pytest.approx(1e-9 * (1 + 0.25 * 0.25))
    for _ in range(40):
        _kernels.rule_team_call(items, items * 0.8e-9, threads=1)
    assert _kernels.one_thread_pace() == pytest.approx(0.8e-9, rel=0.01)


def test_only_calls_that_did_their_work_teach_the_pace():
    rng = np.random.default_rng(2)
    P, Q = rng.random((2, 1000, 1000)) + 0.01
    bad = P.copy()
    bad[500, 7] = -1.0
    _kernels.set_team_idle(1.0)
    start = _kernels.one_thread_pace()
    for _ in range(3):
        with pytest.raises(ValueError, match="negative"):
            kl_fast.kl_div(bad, Q)                    # stops at the bad row
    assert _kernels.one_thread_pace() == start
    _kernels.set_team_idle(1.0)
    kl_fast.kl_div(P, Q)                              # alone (the team slept), all its rows
    assert _kernels.one_thread_pace() != start


@pytest.mark.parametrize("pause, busy", [(0.0, True), (SPAN + 0.05, False)])
def test_a_window_from_long_ago_is_dropped(pause, busy):
    import time
    _kernels.set_team_idle(0.0)
    _kernels.rule_team_call(4 * HOT, 0.75 * WINDOW)
    time.sleep(pause)                       # the machine may have changed since
    _kernels.rule_team_call(4 * HOT, 0.3 * WINDOW)
    assert _kernels.team_state()[2] == busy


def test_a_team_that_slept_long_marks_nothing_when_slow():
    # its wake costs 0.2-0.7 ms on a quiet machine too (docs/core.md)
    _kernels.set_team_idle(0.0)
    _kernels.rule_team_call(4 * HOT, 2 * WINDOW, team_idle=2 * COLD_GAP_SECONDS)
    assert not _kernels.team_state()[2]
    _kernels.rule_team_call(4 * HOT, 2 * WINDOW, team_idle=COLD_GAP_SECONDS / 2)
    assert _kernels.team_state()[2]


def test_a_busy_core_is_tried_again_after_the_span():
    import time
    _kernels.set_team_idle(0.0)
    _kernels.note_busy_core()
    assert _kernels.team_state()[2]
    time.sleep(BLAS_SPAN + 0.05)
    assert not _kernels.team_state()[2]


@pytest.mark.parametrize("n", [64, 512])
def test_kl_pairwise_notes_the_spin_of_blas_threads(monkeypatch, n):
    # n = 64: the compiled product form (m k n = 2**20); 512: the Python layer's
    from kl_fast import _div_kernels, _pairwise
    rng = np.random.default_rng(1)
    P, Q = rng.random((2, 128, n)) + 0.01
    _kernels.set_team_idle(0.0)
    kl_fast.kl_pairwise(P[:4, :8], Q[:4, :8])        # a product BLAS keeps to one thread
    assert not _kernels.team_state()[2]
    got = kl_fast.kl_pairwise(P, Q)
    assert _kernels.team_state()[2]
    _kernels.set_team_idle(0.0)
    # the environment kept BLAS to one thread
    monkeypatch.setattr(_pairwise, "_BLAS_ONE_THREAD", True)
    _div_kernels.configure_product(-1, _kernels.note_busy_core)
    try:
        kl_fast.kl_pairwise(P, Q)
    finally:
        _div_kernels.configure_product(_pairwise._BLAS_THREADED, _kernels.note_busy_core)
    assert not _kernels.team_state()[2]
    np.testing.assert_array_equal(got, kl_fast.kl_pairwise(P, Q, num_threads=2))


def test_the_blas_thread_count_is_read_in_openblas_order(monkeypatch):
    from kl_fast import _pairwise
    for name in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS",
                 "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    assert _pairwise._blas_env_threads() == ""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert _pairwise._blas_env_threads() == "1"
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "0")       # OpenBLAS's "unset"
    assert _pairwise._blas_env_threads() == "1"
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    assert _pairwise._blas_env_threads() == "2"


def _child_calls(P, Q):
    """In a forked child: the default call, one asking for two threads, and what
    the rule would give two threads and a large call."""
    return (kl_fast.kl_div(P, Q), kl_fast.kl_div(P, Q, num_threads=2),
            _kernels.threads(2, 1000, 1e9, HOT), _kernels.forked_alone())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")   # fork of a threaded process
def test_a_child_forked_after_a_team_runs_alone():
    # GNU OpenMP's team does not survive fork: a child's parallel region would
    # wait for the parent's threads forever, so the child runs on one thread
    import multiprocessing
    rng = np.random.default_rng(5)
    P, Q = rng.random((2, 4000, 500)) + 0.01
    expected = kl_fast.kl_div(P, Q, num_threads=2)          # the parent starts a team
    assert not _kernels.forked_alone()
    with multiprocessing.get_context("fork").Pool(1) as pool:
        got = pool.apply_async(_child_calls, (P, Q)).get(timeout=120)
    assert got[2:] == (1, True)
    for values in got[:2]:
        np.testing.assert_array_equal(values, expected)


def test_a_child_forked_before_any_team_keeps_its_threads():
    import subprocess
    import sys
    script = (
        "import os, sys, numpy as np, kl_fast\n"
        "from kl_fast import _kernels\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    P = np.random.default_rng(0).random((4000, 500)) + 0.01\n"
        "    ok = (not _kernels.forked_alone() and _kernels.threads(2, 1000, 1e9, 1) == 2\n"
        "          and kl_fast.kl_div(P, P[::-1], num_threads=2).shape == (4000,))\n"
        "    os._exit(0 if ok else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "sys.exit(os.waitstatus_to_exitcode(status))\n")
    done = subprocess.run([sys.executable, "-c", script], timeout=120)
    assert done.returncode == 0
