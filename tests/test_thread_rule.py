"""The default thread count: a team only where waking it pays (kl_fast._kernels.default_team).

The rule reads a clock, so each decision is retried a few times: a test thread
preempted between setting the team's idle time and asking could see another gap.
"""
import numpy as np
import pytest

import kl_fast
from kl_fast import _gaussian, _kernels, gaussian
from kl_fast._validation import _CPU_COUNT, _PARALLEL_MIN_ELEMENTS

pytestmark = pytest.mark.skipif(not _kernels.openmp_enabled() or _CPU_COUNT < 2,
                                reason="without OpenMP or a second CPU there is no team")

HOT = _PARALLEL_MIN_ELEMENTS


def decides(idle_seconds, items, expected, ask=lambda items: _kernels.threads_for(2, items, HOT)):
    seen = []
    for _ in range(5):
        _kernels.set_team_idle(idle_seconds)
        seen.append(ask(items))
        if seen[-1] == expected:
            return
    pytest.fail(f"team idle {idle_seconds} s, {items} items: threads {seen}, expected {expected}")


def test_a_hot_team_is_used_from_the_threshold():
    decides(0.0, HOT, 2)
    decides(0.0, HOT - 1, 1)


def test_a_team_that_slept_briefly_needs_twice_the_work():
    decides(250e-6, 2 * HOT - 1, 1)
    decides(250e-6, 2 * HOT, 2)


def test_a_team_that_slept_long_needs_sixty_four_times_the_work():
    decides(1.0, 64 * HOT - 1, 1)
    decides(1.0, 64 * HOT, 2)
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
        _kernels.note_team(2, 1e3)
        if _kernels.threads_for(2, HOT, HOT) == 2:
            return
    pytest.fail("a call on two threads the user asked for did not mark the team as awake")


def test_compiled_entries_follow_the_rule():
    # kl_div's entry: one long row of n elements counts as CPUs x n items
    n = HOT
    p, q = np.random.default_rng(0).random((2, n))
    ref = kl_fast.kl_div(p, q, num_threads=1)
    for idle in (0.0, 1.0):
        _kernels.set_team_idle(idle)
        assert kl_fast.kl_div(p, q) == ref
    # the Gaussian row rule has its own threshold
    m = _gaussian.SPLIT_MIN
    decides(0.0, m, min(gaussian.default_threads(), _CPU_COUNT),
            ask=lambda items: gaussian._threads(None, 1, items, "f"))
    decides(1.0, m, 1, ask=lambda items: gaussian._threads(None, 1, items, "f"))


def test_the_python_layer_follows_the_rule():
    from kl_fast._validation import resolve_threads

    decides(0.0, HOT, 2, ask=lambda items: resolve_threads(None, 100, items, "f"))
    decides(1.0, HOT, 1, ask=lambda items: resolve_threads(None, 100, items, "f"))
    decides(1.0, 64 * HOT, 2, ask=lambda items: resolve_threads(None, 100, items, "f"))
