"""Regression tests for faults found by adversarial testing."""
import math
import os
import re

import numpy as np
import pytest

import kl_fast
from kl_fast import _validation
from kl_fast.bench import truth


# ---- an absurd thread count is capped, never passed to OpenMP ----------------------

@pytest.mark.parametrize("threads", [10**9, 40_000])
def test_huge_num_threads_is_capped(threads):
    rng = np.random.default_rng(1)
    P = rng.random((40_000, 2))
    np.testing.assert_array_equal(kl_fast.kl_div(P, np.ones(2), num_threads=threads),
                                  kl_fast.kl_div(P, np.ones(2), num_threads=1))
    A = rng.random((300, 20))
    np.testing.assert_array_equal(kl_fast.js_pairwise(A, num_threads=threads),
                                  kl_fast.js_pairwise(A, num_threads=1))
    x = np.linspace(-3, 3, 3)
    G = rng.random((2000, 3)) + 0.1
    np.testing.assert_array_equal(kl_fast.fit_gaussian(G, x, num_threads=threads).mu,
                                  kl_fast.fit_gaussian(G, x, num_threads=1).mu)


@pytest.mark.parametrize("count", ["50000", str(2**40)])
def test_huge_default_thread_count_from_the_environment(monkeypatch, count):
    monkeypatch.setenv("KL_FAST_NUM_THREADS", count)
    rng = np.random.default_rng(2)
    P = rng.random((40_000, 2))
    np.testing.assert_array_equal(kl_fast.kl_div(P, np.ones(2)),
                                  kl_fast.kl_div(P, np.ones(2), num_threads=1))
    x = np.linspace(-4, 4, 20_000)
    g = np.exp(-x * x)
    assert kl_fast.gaussian_kl(g, x, 0.1, 1.0) == kl_fast.gaussian_kl(g, x, 0.1, 1.0,
                                                                      num_threads=1)


@pytest.mark.parametrize("count", ["0", "-1", "abc", "2.5"])
def test_bad_default_thread_count_fails_the_import(count):
    """A bad KL_FAST_NUM_THREADS fails the import, naming the variable and its
    value: it was read only by calls large enough to use threads, so a program
    ran its small calls and failed on the first large one."""
    import subprocess
    import sys

    env = dict(os.environ, KL_FAST_NUM_THREADS=count)
    run = subprocess.run([sys.executable, "-c", "import kl_fast"], env=env,
                         capture_output=True, text=True)
    assert run.returncode != 0
    assert f"KL_FAST_NUM_THREADS must be a positive integer, got {count!r}" in run.stderr
    env["KL_FAST_NUM_THREADS"] = "1"
    run = subprocess.run([sys.executable, "-c", "import kl_fast; print(kl_fast.kl_div([1.0], [2.0]))"],
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0 and float(run.stdout) == math.log(0.5), run.stderr


def _import_in_a_child(**env):
    """kl_fast imported and run on two threads in a fresh interpreter with the
    OpenMP variables as given (the others removed), the runtime asked to
    display its settings: (what brief_spin applied, GOMP_SPINCOUNT afterwards,
    the runtime's display on stderr)."""
    import subprocess
    import sys

    child = {k: v for k, v in os.environ.items()
             if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    child.update(env, OMP_DISPLAY_ENV="verbose")
    code = ("import os, numpy as np, kl_fast; from kl_fast import _openmp; "
            "kl_fast.kl_div(np.ones((4, 10**5)), np.ones((4, 10**5)), num_threads=2); "
            "print(_openmp.applied, os.environ.get('GOMP_SPINCOUNT'))")
    run = subprocess.run([sys.executable, "-c", code], env=child, capture_output=True,
                         text=True, check=True)
    return tuple(run.stdout.split()) + (run.stderr,)


def test_openmp_spins_briefly_unless_the_user_chose():
    """The runtime loads with GOMP_SPINCOUNT=3000 and the environment is put back
    (no variable left behind); a user's GOMP_SPINCOUNT or OMP_WAIT_POLICY is
    left as it is.  Where the runtime is libgomp (it displays GOMP_ settings),
    its own display shows the value it took."""
    from kl_fast import _openmp

    applied, after, shown = _import_in_a_child()
    assert (applied, after) == (_openmp.SPINCOUNT, "None")
    if kl_fast.openmp_enabled() and "GOMP_" in shown:
        assert f"GOMP_SPINCOUNT = '{_openmp.SPINCOUNT}'" in shown
    applied, after, shown = _import_in_a_child(GOMP_SPINCOUNT="7")
    assert (applied, after) == ("None", "7")
    if kl_fast.openmp_enabled() and "GOMP_" in shown:
        assert "GOMP_SPINCOUNT = '7'" in shown
    applied, after, shown = _import_in_a_child(OMP_WAIT_POLICY="active")
    assert (applied, after) == ("None", "None")


def test_thread_cap_is_the_usable_cpu_count():
    assert _validation.resolve_threads(10**9, 10**6, 10**9, "f") == _validation._CPU_COUNT
    assert _validation.resolve_threads(1, 10**6, 10**9, "f") == 1
    assert 1 <= _validation._CPU_COUNT <= (os.cpu_count() or 1)


def test_one_rule_for_explicit_counts():
    # the compiled rule (_kernels.threads, what every entry calls) takes an int >= 1,
    # capped by the rows and the CPUs, and leaves anything else to the Python layer,
    # which converts or explains it
    from kl_fast import _kernels
    cpus, hot = _validation._CPU_COUNT, _validation._PARALLEL_MIN_ELEMENTS
    assert _kernels.threads(1, 100, 1e9, hot) == 1
    assert _kernels.threads(10**6, 100, 1.0, hot) == min(cpus, 100)
    assert _kernels.threads(5, 1, 1e9, hot) == 1
    for other in (np.int64(2), 0, -1, 2.0, True, 10**30):
        assert _kernels.threads(other, 100, 1e9, hot) == 0
    resolve = _validation.resolve_threads
    assert resolve(np.int64(2), 100, 1, "f") == min(2, cpus)
    for flag in (True, False, np.True_):   # a bool is not a count (as kl_topk's k)
        with pytest.raises(TypeError, match="num_threads must be an integer or None"):
            resolve(flag, 100, 1, "f")
    assert resolve(10**30, 100, 1, "f") == min(cpus, 100)
    with pytest.raises(ValueError, match="num_threads must be >= 1, got 0"):
        resolve(0, 100, 1, "f")
    with pytest.raises(ValueError, match="num_threads must be >= 1, got 0"):
        resolve(np.int64(0), 100, 1, "f")
    with pytest.raises(TypeError, match="num_threads must be an integer or None, got 2.0"):
        resolve(2.0, 100, 1, "f")


# ---- byte-swapped float32 stays float32 --------------------------------------------

def _pair32(rng, shape):
    p = rng.random(shape).astype(np.float32)
    q = rng.random(shape).astype(np.float32)
    return p, q


@pytest.mark.parametrize("func", [kl_fast.kl_div, kl_fast.js_div])
def test_byte_swapped_float32_gives_float32(func):
    p, q = _pair32(np.random.default_rng(3), (4, 7))
    want = func(p, q)
    got = func(p.astype(">f4"), q.astype(">f4"))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    assert func(p.astype(">f4"), q).dtype == np.float32


def test_byte_swapped_float32_log_space_and_pairwise():
    p, q = _pair32(np.random.default_rng(4), (5, 6))
    lp, lq = np.log(p), np.log(q)
    got = kl_fast.kl_div_log(lp.astype(">f4"), lq.astype(">f4"))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, kl_fast.kl_div_log(lp, lq))
    for pair in (kl_fast.kl_pairwise, kl_fast.js_pairwise):
        got = pair(p.astype(">f4"), q.astype(">f4"))
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, pair(p, q))


def test_byte_swapped_float64_and_mixed_widths():
    p, q = _pair32(np.random.default_rng(5), (8,))
    assert kl_fast.kl_div(p.astype(">f8"), q.astype(">f8")).dtype == np.float64
    assert kl_fast.kl_div(p.astype(">f4"), q.astype(np.float64)).dtype == np.float64
    np.testing.assert_allclose(kl_fast.kl_div(p.astype(">f8"), q.astype(">f8")),
                               kl_fast.reference.kl_div(p.astype(np.float64), q.astype(np.float64)),
                               rtol=1e-13)


# ---- masked arrays are refused, not silently unmasked ------------------------------

def test_masked_arrays_are_refused_naming_the_argument():
    p = np.ma.masked_array([0.5, 0.5, 9.0], mask=[False, False, True])
    q = np.array([0.25, 0.25, 0.5])
    with pytest.raises(TypeError, match=r"kl_div: p is a masked array.*p\.filled\(0\)"):
        kl_fast.kl_div(p, q)
    with pytest.raises(TypeError, match=r"js_div: q is a masked array"):
        kl_fast.js_div(q, p)
    with pytest.raises(TypeError, match=r"kl_pairwise: P is a masked array"):
        kl_fast.kl_pairwise(p[None, :], q[None, :])
    with pytest.raises(TypeError, match=r"gaussian_kl: p is a masked array"):
        kl_fast.gaussian_kl(p, np.arange(3.0), 0.0, 1.0)
    # what the message suggests works
    assert float(kl_fast.kl_div(p.filled(0), q)) == pytest.approx(
        float(kl_fast.reference.kl_div(p.filled(0), q)), rel=1e-14, abs=0)


def test_a_masked_log_array_is_told_to_fill_with_log_zero():
    # in log space a zero probability is -inf: filling with 0 would mean probability 1
    lp = np.ma.masked_array(np.log([0.5, 0.25, 0.25]), mask=[False, False, True])
    lq = np.log([0.25, 0.5, 0.25])
    with pytest.raises(TypeError, match=r"kl_div_log: log_p is a masked array.*"
                                        r"log_p\.filled\(-np\.inf\)"):
        kl_fast.kl_div_log(lp, lq)
    # what the message suggests is the masked entry taken as probability zero
    assert float(kl_fast.kl_div_log(lp.filled(-np.inf), lq)) == pytest.approx(
        float(kl_fast.reference.kl_div([0.5, 0.25, 0.0], [0.25, 0.5, 0.25])), rel=1e-14, abs=0)


# ---- unaligned float64 inputs reach the Gaussian kernels only as aligned copies --------

def _unaligned(a):
    """A contiguous float64 copy of ``a`` whose data starts one byte off alignment."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    buf = np.zeros(a.nbytes + 1, dtype=np.uint8)
    u = buf[1:].view(np.float64).reshape(a.shape)
    u[...] = a
    assert not u.flags.aligned
    return u


def test_unaligned_gaussian_inputs_give_the_aligned_results():
    from kl_fast import gaussian

    x = np.linspace(-5, 5, 101)
    p = np.exp(-0.5 * ((x - 0.3) / 1.2) ** 2)
    p /= p.sum()
    mu = np.array([0.0, 0.5, 1.0])
    sigma = np.array([1.0, 1.5, 2.0])
    # what reaches the kernels is aligned (x86 does not trap on an unaligned load,
    # so the results alone would not show it; UBSan does)
    p2, xk = gaussian._prepare(_unaligned(p), _unaligned(x), "gaussian_kl", False, None)[:2]
    assert p2.flags.aligned and xk.flags.aligned
    assert gaussian._param(_unaligned(mu), "mu", "gaussian_kl", positive=False).flags.aligned
    want = kl_fast.gaussian_kl_grad(p, x, mu, sigma)
    got = kl_fast.gaussian_kl_grad(_unaligned(p), _unaligned(x), _unaligned(mu), _unaligned(sigma))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    np.testing.assert_array_equal(kl_fast.gaussian_kl(p, _unaligned(x), _unaligned(mu), sigma),
                                  kl_fast.gaussian_kl(p, x, mu, sigma))
    P = np.stack([p, p[::-1]])
    fit = kl_fast.fit_gaussian(_unaligned(P), _unaligned(x), mu0=_unaligned([0.1, -0.1]),
                               sigma0=_unaligned([1.0, 1.0]))
    ref = kl_fast.fit_gaussian(P, x, mu0=[0.1, -0.1], sigma0=[1.0, 1.0])
    np.testing.assert_array_equal(fit.mu, ref.mu)
    np.testing.assert_array_equal(fit.sigma, ref.sigma)


# ---- normalize whatever the scale of the sums ---------------------------------------

def _normalized_kl_mp(p, q):
    """KL(p/sum p || q/sum q) in 200-bit arithmetic, rounded to a double."""
    truth = pytest.importorskip("kl_fast.bench.truth")
    return float(truth.kl(p, q, normalize=True))


NORMALIZE_CASES = [
    ([5e-324, 5e-324], [1e-323, 5e-324]),                    # subnormal sums
    ([1e308, 1e308, 1.5e308], [1.7e308, 1e308, 1e308]),      # both sums overflow
    ([0.2, 0.3, 0.5], [1.7e308, 1e308, 1e308]),              # one sum overflows
    ([0.25e300, 0.75e300], [0.5, 0.5]),                      # sums 1e300 apart
    ([3e-310, 1e-309, 2e-311], [0.2, 0.5, 0.3]),             # subnormal against normal
    # huge sums 200 apart with subnormal elements (scaling q down lost its 3.2e-322: inf)
    ([3e303, 1.9e303, 4.7e-316], [1e306, 1.8e302, 3.2e-322]),
]


@pytest.mark.parametrize("p, q", NORMALIZE_CASES)
def test_normalize_is_accurate_whatever_the_scale_of_the_sums(p, q):
    exact = _normalized_kl_mp(p, q)
    got = kl_fast.kl_div(p, q, normalize=True)
    # NumPy gives nan or inf where a sum overflows, and loses the subnormals'
    # precision: give it the inputs scaled by powers of two (exactly) to
    # largest values in [1/2, 1), then allow its error plus 2 eps: dividing by
    # the sums rounds every input, which moves a normalised KL by about eps
    pn, qn = (np.ldexp(a, -np.frexp(np.max(a))[1]) for a in (np.asarray(p), np.asarray(q)))
    pn, qn = pn / pn.sum(), qn / qn.sum()
    with np.errstate(all="ignore"):
        numpy_err = abs(np.sum(np.where(pn > 0, pn * np.log(pn / qn), 0)) - exact)
    assert abs(got - exact) <= numpy_err + 2 * np.finfo(float).eps, (got, exact, numpy_err)


def test_normalize_counts_against_probabilities_matches_numpy_accuracy():
    rng = np.random.default_rng(7)
    for _ in range(20):
        counts = rng.multinomial(5_000_000, rng.dirichlet(np.ones(50))).astype(float)
        q = rng.dirichlet(np.ones(50))
        exact = _normalized_kl_mp(counts, q)
        pn, qn = counts / counts.sum(), q / q.sum()
        numpy_err = abs(np.sum(np.where(pn > 0, pn * np.log(pn / qn), 0)) - exact)
        got_err = abs(kl_fast.kl_div(counts, q, normalize=True) - exact)
        # NumPy's error plus 2 eps, as above (the sums 5e6 apart cost 35 ulps
        # of the result, 2.7e-15, before they were divided out first)
        assert got_err <= numpy_err + 2 * np.finfo(float).eps, (got_err, numpy_err)


@pytest.mark.parametrize("factor", [1.0, 1.0001, 1.5, 1.999, 2.0, 3.99, 7.9, 15.9, 16.1, 1e3])
def test_normalize_of_near_equal_rows_whatever_the_factor_between_their_sums(factor):
    """Near-equal p and q whose sums are a factor apart, within NumPy's error plus
    8 eps, and 4 eps where the factor is 2 or more (docs/semantics.md's bounds): rows of
    30 uniform values, and rows of 512 where one
    element dominates the sum (the kernels add a block in 8 lanes, so a sum is
    then a few eps off and log(Q/P) with it: 6.0 eps at a factor 1.999 for
    [1e4, 0.1 .. 1]).  Rows with sums up to 16 apart were finished by kl/P +
    log(Q/P) alone, which cancels log(factor) of 1 (10.7 eps at 7.9); rows a factor
    2 or more apart are now divided by their sums first."""
    rng = np.random.default_rng(6)
    eps = np.finfo(float).eps
    rows = []
    for _ in range(100):
        b = rng.random(30)
        rows.append((factor * b * (1 + 1e-6 * rng.standard_normal(30)),
                     b * (1 + 1e-6 * rng.standard_normal(30))))
    for i in range(20):
        b = np.r_[10 ** rng.uniform(1, 6), rng.uniform(0.1, 1.0, 511)]
        if i % 2:
            rng.shuffle(b)
        noise = 0.0 if i % 3 == 0 else 1e-6
        rows.append((factor * b * (1 + noise * rng.standard_normal(512)),
                     b * (1 + noise * rng.standard_normal(512))))
    b = np.r_[1e4, np.linspace(0.1, 1.0, 511)]
    rows.append((factor * b, b))
    bound = (4 if factor >= 2 else 8) * eps
    for p, q in rows:
        exact = _normalized_kl_mp(p, q)
        pn, qn = p / p.sum(), q / q.sum()
        numpy_err = abs(np.sum(pn * np.log(pn / qn)) - exact)
        got = kl_fast.kl_div(p, q, normalize=True)
        assert abs(got - exact) <= numpy_err + bound, (len(p), got, exact, numpy_err)
        pair = kl_fast.kl_pairwise(p[None], q[None], normalize=True)[0, 0]
        assert abs(pair - exact) <= numpy_err + bound, (len(p), pair, exact, numpy_err)


def test_normalize_of_far_apart_sums_has_the_python_layers_bits():
    """Rows whose sums are more than a factor 2 apart are divided by them and
    summed again in the compiled entries (_kl_divided), as the Python layer's
    rescaling path does (it took the whole call: 0.4 -> 220 us for one row of
    100): the same bits from both, for every layout, dtype and zeros in p."""
    from kl_fast._api import kl_div_python

    rng = np.random.default_rng(1)
    for dtype in (np.float64, np.float32):
        for n in (1, 3, 10, 100, 300, 1000):
            P = rng.random((50, n))
            P[rng.random((50, n)) < 0.2] = 0.0
            P[:, 0] += 0.5
            P = (P * np.exp(rng.uniform(-12, 12, (50, 1)))).astype(dtype)
            Q = (rng.random((50, n)) + 1e-3).astype(dtype)
            want = kl_div_python(P, Q, normalize=True)
            for got in (kl_fast.kl_div(P, Q, normalize=True),
                        np.array([kl_fast.kl_div(P[i], Q[i], normalize=True) for i in range(50)]),
                        kl_fast.kl_div(np.asfortranarray(P.T), Q.T, axis=0, normalize=True),
                        kl_fast.kl_div(P, Q, normalize=True, num_threads=2)):
                np.testing.assert_array_equal(got, want)
        # one long row, shared by the threads (the divided pass too) or on one
        for n in (8192, 20_000, 300_001):
            p = (rng.random(n) * 3).astype(dtype)
            p[rng.random(n) < 0.1] = 0.0
            q = (rng.random(n) + 1e-3).astype(dtype)
            want = kl_div_python(p, q, normalize=True)
            for threads in (1, 2):
                assert kl_fast.kl_div(p, q, normalize=True, num_threads=threads) == want


def test_normalize_float32_with_subnormal_sums():
    p = np.float32([1e-40, 3e-40])
    q = np.float32([2e-40, 2e-40])
    exact = _normalized_kl_mp(p, q)
    assert kl_fast.kl_div(p, q, normalize=True).dtype == np.float32
    assert abs(float(kl_fast.kl_div(p, q, normalize=True)) - exact) <= 2 * np.spacing(np.float32(exact))


@pytest.mark.parametrize("chunks", [(1, 3), (1, 1), (2, 2)])
def test_dask_normalize_with_overflowing_sums(chunks):
    da = pytest.importorskip("dask.array")
    import kl_fast.dask as kd

    P = np.array([[1e308, 1e308, 1.5e308], [0.2, 0.3, 0.5], [5e-324, 5e-324, 0.0]])
    Q = np.array([1.7e308, 1e308, 1e308])
    got = kd.kl_div(da.from_array(P, chunks=chunks), Q, normalize=True).compute(scheduler="sync")
    exact = [_normalized_kl_mp(row, Q) for row in P]
    # blocks scale by powers of two (exact); kl/P + log(Q/P) then cancels at most
    # log(2n) of 1, so the error is a few eps of 1 (it was nan and inf)
    np.testing.assert_allclose(got, exact, rtol=0, atol=8 * np.finfo(float).eps)


# ---- extended precision beyond float64, float32 overflow ---------------------------

@pytest.mark.skipif(np.finfo(np.longdouble).max <= np.finfo(np.float64).max,
                    reason="np.longdouble is float64 on this platform")
@pytest.mark.parametrize("func, p, q", [
    ("kl_div", [1.0, "1e400"], [0.5, 0.5]),
    ("js_div", [1.0, "1e400"], [0.5, 0.5]),
    ("kl_pairwise", [[1.0, "-1e400"]], [[0.5, 0.5]]),
    ("js_pairwise", [[1.0, "1e400"]], [[0.5, 0.5]]),
])
def test_longdouble_beyond_float64_is_named_not_called_infinite(func, p, q):
    p = np.array(p, dtype=np.longdouble)
    with pytest.raises(ValueError, match=r"[pP] contains -?1e\+400 at index \[0?,? ?1\], beyond the float64"):
        getattr(kl_fast, func)(p, q)
    ok = np.array(p, dtype=np.longdouble)
    ok[np.abs(ok) > 1e300] = 1.0
    np.testing.assert_allclose(getattr(kl_fast, func)(ok, q),
                               getattr(kl_fast, func)(ok.astype(np.float64), q), rtol=0)


@pytest.mark.skipif(np.finfo(np.longdouble).max <= np.finfo(np.float64).max,
                    reason="np.longdouble is float64 on this platform")
@pytest.mark.parametrize("func", ["kl_div", "js_div", "kl_pairwise", "js_pairwise"])
def test_longdouble_below_float64_is_named_not_rounded_to_zero(func):
    # a q of 1e-400 rounded to 0 made a finite KL infinite without a word; values that
    # round to float64's smallest subnormal (above half of it) are still taken
    def call(q):
        p = [1.0, 1.0]
        return getattr(kl_fast, func)(*(([p], [q]) if func.endswith("pairwise") else (p, q)))

    for v in ("1e-400", "-1e-400", "2.4e-324"):
        with pytest.raises(ValueError, match=rf"[qQ] contains {v} at index \[0?,? ?0\], "
                                             r"below the float64 range"):
            call(np.array([np.longdouble(v), 1.0]))
    q = np.array([np.longdouble("2.6e-324"), 1.0])
    np.testing.assert_array_equal(call(q), call(q.astype(np.float64)))


def test_extended_scalars_the_float64_cast_turns_to_zero_are_named():
    # a scalar is not "at index []"; a positive dx or base that float64 rounds to 0
    # is not called "not positive" without a word on why
    tiny = np.longdouble("1e-400")
    with pytest.raises(ValueError, match=r"^gaussian_kl: mu is 1e-400, below the float64 range"):
        kl_fast.gaussian_kl([1.0, 1.0], [0.0, 1.0], tiny, 1.0)
    for option in ("dx", "base"):      # (the value as NumPy's repr shows it, by version)
        with pytest.raises(ValueError, match=rf"^kl_div: {option} must be positive and finite"
                                             rf".*, got {re.escape(repr(tiny))}, which is 0 "
                                             r"in float64, the precision the kernels compute in$"):
            kl_fast.kl_div([0.5, 0.5], [0.5, 0.5], **{option: tiny})
        with pytest.raises(ValueError, match=rf"{option} must be positive .*, "
                                             rf"got {re.escape(repr(-tiny))}$"):
            kl_fast.kl_div([0.5, 0.5], [0.5, 0.5], **{option: -tiny})


def test_float32_result_beyond_float32_range_is_inf_without_warning_on_every_path():
    p = np.float32([3e38, 3e38])
    q = np.float32([1e-30, 3e38])
    exact = 3e38 * np.log(3e38 / 1e-30)  # > float32 max
    assert exact > np.finfo(np.float32).max
    for got in (kl_fast.kl_div(p, q), kl_fast.kl_div(np.stack([p, p]), q),
                kl_fast.kl_div(np.stack([p, p]), q, out=np.empty(2, np.float32)),
                kl_fast.kl_div(p.astype(">f4"), q)):  # warnings are errors in this suite
        assert np.asarray(got).dtype == np.float32
        assert np.all(np.isposinf(got))


# ---- one normalize policy: sums that overflow are rescaled, on every function -------

def test_every_normalize_handles_sums_that_overflow():
    """Normalising is scale-invariant: each function gives, for rows whose sums
    overflow, what it gives for the same rows divided by their largest value."""
    big = np.array([[1e308, 1e308, 1.5e308], [0.2, 0.3, 0.5]])
    Q = np.array([[1.7e308, 1e308, 1e308], [0.3, 0.3, 0.4]])
    small_p, small_q = big / big.max(1, keepdims=True), Q / Q.max(1, keepdims=True)
    x = np.array([0.0, 1.0, 2.0])
    calls = {
        "kl_div": lambda p, q: kl_fast.kl_div(p, q, normalize=True),
        "js_div": lambda p, q: kl_fast.js_div(p, q, normalize=True),
        "kl_pairwise": lambda p, q: kl_fast.kl_pairwise(p, q, normalize=True),
        "js_pairwise": lambda p, q: kl_fast.js_pairwise(p, q, normalize=True),
        "kl_pairwise product form": lambda p, q: kl_fast.kl_pairwise(
            np.tile(np.repeat(p, 40, axis=1), (40, 1)), np.repeat(q, 40, axis=1),
            normalize=True),
        "gaussian_kl": lambda p, q: kl_fast.gaussian_kl(p, x, 1.0, 1.5, normalize=True),
        "fit_gaussian": lambda p, q: kl_fast.fit_gaussian(p, x, normalize=True).kl,
    }
    for name, call in calls.items():
        got, expected = call(big, Q), call(small_p, small_q)
        assert np.all(np.isfinite(got)), name
        # kl_pairwise: the small inputs take the row kernel, the rescaled ones the
        # product form (relative error ~1e-13 at KL 1.7e-3; the README's bound is 2**-24)
        # fit_gaussian: two fits that stop at tol 1e-9 from different rounding
        rtol = 1e-12 if name.startswith("kl_pairwise") else 1e-9 if name == "fit_gaussian" \
            else 1e-14
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=1e-16, err_msg=name)
    with pytest.raises(ValueError, match=r"overflow \(.*\); pass normalize=True"):
        kl_fast.gaussian_kl(big, x, 1.0, 1.5)


def test_gaussian_p_whose_own_sums_overflow_is_named():
    """normalize=False: sum p (x - mean)**2 beyond the double range is refused,
    naming p's largest value, its index and the grid's span, though the
    divergence is finite (2.0e293 by mpmath, as documented); p scaled down by c
    gives it through KL(c p || q) = c (KL(p || q) + P log c)."""
    p = np.full(3, 1e290)
    x = np.array([0.0, 1e10, 2e10])
    with pytest.raises(ValueError, match=r"gaussian_kl: the sums of p overflow \(p's largest "
                       r"value 1e\+290 at index \[0\], the grid spanning 0 to 2e\+10"):
        kl_fast.gaussian_kl(p, x, 1e10, 1e10)
    # a grid rescaled into units near its own scale is named in the caller's units
    with pytest.raises(ValueError, match=r"the grid spanning 1e\+300 to 2e\+300"):
        kl_fast.fit_gaussian(np.array([1e308, 1e308]), np.array([1e300, 2e300]))
    want, _, _ = truth.gaussian(p, x, 1e10, 1e10, prec=200)
    assert float(want) == pytest.approx(2.0e293, rel=5e-3)
    c = 2.0 ** -900
    scaled = float(kl_fast.gaussian_kl(p * c, x, 1e10, 1e10))
    P = 3e290
    assert (scaled / c - P * math.log(c)) == pytest.approx(float(want), rel=1e-12)


def test_dask_pairwise_normalize_handles_sums_that_overflow():
    da = pytest.importorskip("dask.array")
    import kl_fast.dask as kd

    big = np.array([[1e308, 1e308, 1.5e308], [0.2, 0.3, 0.5]])
    Q = np.array([[1.7e308, 1e308, 1e308], [0.3, 0.3, 0.4]])
    got = kd.kl_pairwise(da.from_array(big, chunks=(1, 3)), Q, normalize=True).compute(
        scheduler="sync")
    np.testing.assert_allclose(got, kl_fast.kl_pairwise(big, Q, normalize=True), rtol=1e-15)
    assert np.all(np.isfinite(got))


# ---- fit_gaussian says converged only at a finite optimum ---------------------------

def _grid_optimum_mp(p, x):
    """The grid Gaussian's optimum by its moment conditions, from a Newton fit
    started at the answer of an independent NumPy minimiser (scipy)."""
    scipy_opt = pytest.importorskip("scipy.optimize")
    from kl_fast import reference

    def f(t):
        return reference.gaussian_kl(p, x, t[0], math.exp(t[1]))

    res = scipy_opt.minimize(f, [float(np.sum(p * x) / np.sum(p)), 0.0], method="Nelder-Mead",
                             options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000})
    return res.x[0], math.exp(res.x[1]), res.fun


def test_fit_from_a_huge_sigma0_reaches_the_optimum():
    x = np.linspace(-5, 5, 101)
    p = np.exp(-(x - 1) ** 2 / 2)
    mu, sigma, kl = _grid_optimum_mp(p, x)
    fit = kl_fast.fit_gaussian(p, x, sigma0=1e10)
    # it used to stop at the start (nit 0, kl 103.15) claiming convergence
    assert fit.converged and fit.nit > 0
    assert fit.kl == pytest.approx(kl, rel=1e-9)
    assert fit.mu == pytest.approx(mu, abs=1e-4) and fit.sigma == pytest.approx(sigma, rel=1e-4)


def test_fit_on_a_two_point_grid_reaches_kl_zero():
    fit = kl_fast.fit_gaussian([0.3, 0.7], [0.0, 1.0])
    # q(mu, sigma) on {0, 1} equals p when (2 mu - 1) / (2 sigma^2) = log(7/3)
    assert fit.converged and abs(fit.kl) < 1e-12
    assert (2 * fit.mu - 1) / (2 * fit.sigma ** 2) == pytest.approx(math.log(7 / 3), rel=1e-8)


def test_fit_reports_no_finite_optimum_at_either_boundary():
    x = np.linspace(-5, 5, 101)
    flat = kl_fast.fit_gaussian(np.ones(101), x)
    assert not flat.converged and "sigma -> infinity" in flat.message
    assert flat.kl == pytest.approx(101 * math.log(101), rel=1e-12)  # KL against uniform q
    two = kl_fast.fit_gaussian([0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0])
    assert not two.converged and "two neighbouring grid points" in two.message
    assert two.kl == pytest.approx(2 * math.log(2), rel=1e-9)  # P log P, the infimum
    batch = kl_fast.fit_gaussian(np.stack([np.ones(101), np.exp(-(x - 1) ** 2 / 2)]), x)
    assert list(batch.converged) == [False, True]


# ---- the Gaussian functions at any finite scale --------------------------------------

@pytest.mark.parametrize("scale", [1e-170, 1e-156, 2.0 ** -1000, 1e-100, 1e77, 1e100, 1e200,
                                   2.0 ** 1000])
def test_gaussian_functions_are_scale_invariant(scale):
    """q depends on (x - mu) / sigma only: scaling x, mu and sigma together
    leaves the KL unchanged and scales the gradient by 1/scale (it used to give
    -1.4e-12, -0.001 or 103.15 for 80.749 at 1e-156 ... 1e-170)."""
    x = np.linspace(-5, 5, 101)
    p = np.exp(-(x - 1) ** 2 / 2)
    kl, d_mu, d_sigma = kl_fast.gaussian_kl_grad(p, x, 1.5, 0.8)
    s_kl, s_mu, s_sigma = kl_fast.gaussian_kl_grad(p, x * scale, 1.5 * scale, 0.8 * scale)
    assert s_kl == pytest.approx(kl, rel=1e-14)
    assert s_mu * scale == pytest.approx(d_mu, rel=1e-13)
    assert s_sigma * scale == pytest.approx(d_sigma, rel=1e-13)
    assert kl_fast.gaussian_kl(p, x * scale, 1.5 * scale, 0.8 * scale) == pytest.approx(kl, rel=1e-14)
    fit, s_fit = kl_fast.fit_gaussian(p, x), kl_fast.fit_gaussian(p, x * scale)
    assert s_fit.converged and s_fit.kl == pytest.approx(fit.kl, rel=1e-14)
    assert s_fit.mu / scale == pytest.approx(fit.mu, rel=1e-12)
    assert s_fit.sigma / scale == pytest.approx(fit.sigma, rel=1e-12)
    assert s_fit.history["mu"][-1] / scale == pytest.approx(fit.mu, rel=1e-12)
    batch = kl_fast.fit_gaussian(np.stack([p, p[::-1]]), x * scale)
    np.testing.assert_allclose(batch.mu / scale, [fit.mu, -fit.mu], rtol=1e-12)


@pytest.mark.parametrize("scale", [2.0 ** -400, 2.0 ** 300])
def test_gradient_descent_in_rescaled_units_takes_the_same_steps(scale):
    """On a grid scaled by a power of two, with lr scaled by its square, plain
    gradient descent on (mu, sigma) takes the same steps, bit for bit (the
    kernels work in the grid's units; the steps are rescaled exactly)."""
    x = np.linspace(-5, 5, 101)
    p = np.exp(-(x - 1) ** 2 / 2)
    ref = kl_fast.fit_gaussian(p, x, method="gd", mu0=0.0, sigma0=2.0, lr=0.01, epochs=30)
    got = kl_fast.fit_gaussian(p, x * scale, method="gd", mu0=0.0, sigma0=2.0 * scale,
                               lr=0.01 * scale ** 2, epochs=30)
    assert got.kl == ref.kl and got.mu == ref.mu * scale and got.sigma == ref.sigma * scale
    np.testing.assert_array_equal(got.history["sigma"], ref.history["sigma"] * scale)


def test_gaussian_kl_for_mu_and_sigma_far_from_the_grid():
    # q uniform on the grid: exactly 2 log 2 (it was NaN)
    assert kl_fast.gaussian_kl([1.0, 1.0], [0.0, 1.0], 1e308, 1e308) == pytest.approx(
        2 * math.log(2), rel=1e-15, abs=0)
    # q = [1, exp(-1e308 - 1/2)]: the KL is 1e308 + 1/2 - 2 log 2... (it was inf)
    assert kl_fast.gaussian_kl([1.0, 1.0], [0.0, 1.0], -1e308, 1.0) == pytest.approx(1e308,
                                                                                     rel=1e-15)
    kl, d_mu, _ = kl_fast.gaussian_kl_grad([1.0, 1.0], [0.0, 1.0], -1e308, 1.0)
    assert kl == pytest.approx(1e308, rel=1e-15, abs=0) and d_mu == pytest.approx(-1.0, rel=1e-12, abs=0)


# ---- NumPy conventions at the edges of the API ------------------------------------

def test_reference_normalizes_after_broadcasting_as_the_library_does():
    """The NumPy reference's js_div and kl_div_log normalised each input by its
    own sums before broadcasting (a negative KL for a broadcast q); the sums of
    normalize run along axis of the broadcast shape, as in kl_div."""
    from kl_fast import reference
    p = np.array([[1.0, 2.0], [3.0, 4.0]])
    q = np.array([1.0, 3.0])
    qb = np.broadcast_to(q, p.shape).copy()
    for fast, ref, a, b, bb in ((kl_fast.js_div, reference.js_div, p, q, qb),
                                (kl_fast.kl_div_log, reference.kl_div_log, np.log(p),
                                 np.log(q), np.log(qb))):
        want = ref(a, bb, axis=0, normalize=True)
        np.testing.assert_allclose(ref(a, b, axis=0, normalize=True), want, rtol=1e-14)
        np.testing.assert_allclose(fast(a, b, axis=0, normalize=True), want, rtol=1e-14)
    assert np.all(reference.kl_div_log(np.log(p), np.log(q), axis=0, normalize=True) >= 0)
    np.testing.assert_allclose(reference.js_div(0.5, [1.0, 2.0, 3.0], axis=0, normalize=True),
                               kl_fast.js_div(0.5, [1.0, 2.0, 3.0], axis=0, normalize=True),
                               rtol=1e-14)


@pytest.mark.parametrize("axis", [-1, 0, 1, None, (), (0,), (-1,)])
def test_axis_of_two_scalars_has_one_rule(axis):
    """Two scalars reduce over axis -1 (the default), None, () and (-1,); any other
    axis is out of range (AxisError) for kl_div, js_div, kl_div_log and the
    reference alike (js_div and kl_div_log took 0 and (0,), the reference any)."""
    from kl_fast import reference
    for f in (kl_fast.kl_div, kl_fast.js_div, kl_fast.kl_div_log,
              reference.kl_div, reference.js_div, reference.kl_div_log):
        if axis in (-1, None, (), (-1,)):
            assert np.ndim(f(0.5, 0.25, axis=axis)) == 0
            if type(axis) is int:   # a NumPy integer too
                assert np.ndim(f(0.5, 0.25, axis=np.int64(axis))) == 0
        else:
            with pytest.raises(np.exceptions.AxisError, match="out of bounds"):
                f(0.5, 0.25, axis=axis)


@pytest.mark.parametrize("method", ["newton", "gd"])
@pytest.mark.parametrize("option, value, error", [
    ("lr", 0.0, ValueError), ("lr", -1.0, ValueError), ("lr", float("nan"), ValueError),
    ("epochs", -1, ValueError), ("epochs", 1.5, TypeError),
    ("max_iter", -1, ValueError), ("max_iter", 1.5, TypeError), ("lr", True, TypeError),
    ("epochs", True, TypeError), ("max_iter", np.True_, TypeError), ("tol", True, TypeError)])
def test_fit_checks_the_options_the_method_does_not_use(method, option, value, error):
    x = np.linspace(-3, 3, 10)
    with pytest.raises(error, match=f"fit_gaussian: {option} must be"):
        kl_fast.fit_gaussian(np.exp(-x**2), x, method=method, **{option: value})
    with pytest.raises(error, match=f"GaussianTarget.fit: {option} must be"):
        kl_fast.GaussianTarget(np.exp(-x**2), x).fit(method=method, **{option: value})


def test_ragged_sequences_are_named():
    ragged = [[0.5, 0.5], [1.0]]
    x = np.array([0.0, 1.0])
    calls = [("kl_div", "p", lambda: kl_fast.kl_div(ragged, [0.5, 0.5])),
             ("js_div", "q", lambda: kl_fast.js_div([0.5, 0.5], ragged)),
             ("kl_div_log", "log_p", lambda: kl_fast.kl_div_log(ragged, [0.5, 0.5])),
             ("kl_pairwise", "P", lambda: kl_fast.kl_pairwise(ragged, [[0.5, 0.5]])),
             ("kl_topk", "Q", lambda: kl_fast.kl_topk([[0.5, 0.5]], ragged, 1)),
             ("gaussian_kl", "p", lambda: kl_fast.gaussian_kl(ragged, x, 0.0, 1.0)),
             ("fit_gaussian", "p", lambda: kl_fast.fit_gaussian(ragged, x))]
    for func, name, call in calls:
        with pytest.raises(ValueError, match=f"{func}: {name} is not an array of numbers"):
            call()


def _flag_calls():
    """(name, flag, call(value)) for every boolean option of the public API."""
    import kl_fast.dask as kd
    from kl_fast import reference

    p, q = np.array([0.2, 0.3, 0.5]), np.array([0.3, 0.3, 0.4])
    x = np.linspace(-1.0, 1.0, 3)
    P, Q = np.stack([p, q]), np.stack([q, p])
    return [
        ("kl_div", "keepdims", lambda v: kl_fast.kl_div(2 * P, Q, keepdims=v)),
        ("kl_div", "normalize", lambda v: kl_fast.kl_div(2 * P, Q, normalize=v)),
        ("kl_div", "check", lambda v: kl_fast.kl_div(P, Q, check=v)),
        ("js_div", "keepdims", lambda v: kl_fast.js_div(P, Q, keepdims=v)),
        ("js_div", "normalize", lambda v: kl_fast.js_div(2 * P, Q, normalize=v)),
        ("js_div", "check", lambda v: kl_fast.js_div(P, Q, check=v)),
        ("kl_div_log", "keepdims", lambda v: kl_fast.kl_div_log(np.log(P), np.log(Q), keepdims=v)),
        ("kl_div_log", "normalize",
         lambda v: kl_fast.kl_div_log(np.log(2 * P), np.log(Q), normalize=v)),
        ("kl_div_log", "check", lambda v: kl_fast.kl_div_log(np.log(P), np.log(Q), check=v)),
        ("kl_pairwise", "normalize", lambda v: kl_fast.kl_pairwise(2 * P, Q, normalize=v)),
        ("kl_pairwise", "check", lambda v: kl_fast.kl_pairwise(P, Q, check=v)),
        ("js_pairwise", "normalize", lambda v: kl_fast.js_pairwise(2 * P, Q, normalize=v)),
        ("js_pairwise", "check", lambda v: kl_fast.js_pairwise(P, Q, check=v)),
        ("kl_topk", "normalize", lambda v: kl_fast.kl_topk(2 * P, Q, 1, normalize=v)[0]),
        ("kl_topk", "check", lambda v: kl_fast.kl_topk(P, Q, 1, check=v)[0]),
        ("gaussian_kl", "normalize", lambda v: kl_fast.gaussian_kl(2 * p, x, 0.1, 1.0, normalize=v)),
        ("gaussian_kl_grad", "normalize",
         lambda v: kl_fast.gaussian_kl_grad(2 * p, x, 0.1, 1.0, normalize=v)),
        ("fit_gaussian", "normalize", lambda v: kl_fast.fit_gaussian(2 * p, x, normalize=v).kl),
        ("fit_gaussian", "history",
         lambda v: kl_fast.fit_gaussian(p, x, history=v).history is None),
        ("GaussianTarget", "normalize", lambda v: kl_fast.GaussianTarget(2 * p, x, normalize=v)
         .kl(0.1, 1.0)),
        ("GaussianTarget", "check", lambda v: kl_fast.GaussianTarget(p, x, check=v).kl(0.1, 1.0)),
        ("GaussianTarget.fit", "history",
         lambda v: kl_fast.GaussianTarget(p, x).fit(history=v).history is None),
        ("kl_div", "keepdims", lambda v: kd.kl_div(P, Q, keepdims=v).compute()),
        ("kl_div", "normalize", lambda v: kd.kl_div(2 * P, Q, normalize=v).compute()),
        ("js_div", "check", lambda v: kd.js_div(P, Q, check=v).compute()),
        ("kl_div_log", "normalize",
         lambda v: kd.kl_div_log(np.log(2 * P), np.log(Q), normalize=v).compute()),
        ("kl_pairwise", "normalize", lambda v: kd.kl_pairwise(2 * P, Q, normalize=v).compute()),
        ("kl_topk", "normalize",
         lambda v: kd.kl_topk(2 * P, Q, 1, normalize=v)[0].compute()),
        ("gaussian_kl", "normalize",
         lambda v: kd.gaussian_kl(2 * P, x, 0.1, 1.0, normalize=v).compute()),
        ("fit_gaussian", "normalize", lambda v: kd.fit_gaussian(2 * P, x, normalize=v).kl
         .compute()),
        ("reference.kl_div", "normalize", lambda v: reference.kl_div(2 * P, Q, normalize=v)),
        ("reference.js_div", "keepdims", lambda v: reference.js_div(P, Q, keepdims=v)),
        ("reference.kl_div_log", "check",
         lambda v: reference.kl_div_log(np.log(P), np.log(Q), check=v)),
        ("reference.kl_pairwise", "normalize",
         lambda v: reference.kl_pairwise(2 * P, Q, normalize=v)),
        ("reference.gaussian_kl", "normalize",
         lambda v: reference.gaussian_kl(2 * p, x, 0.1, 1.0, normalize=v)),
    ]


@pytest.mark.parametrize("func, name, call", _flag_calls(),
                         ids=lambda c: c if isinstance(c, str) else "")
def test_boolean_options_take_what_numpy_takes_for_keepdims_and_refuse_the_rest(func, name,
                                                                               call):
    """A flag is True, False, NumPy's bool_ or an integer (as NumPy's keepdims);
    a string, None or a float is a TypeError naming the function and the option:
    by its truth value, normalize="False" computed the normalised divergence."""
    on, off = call(True), call(False)
    for value, want in ((np.True_, on), (np.False_, off), (1, on), (0, off), (np.int64(2), on)):
        got = call(value)
        if isinstance(want, (bool, np.bool_)):
            assert got == want
        else:
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    for bad in ("False", None, 1.0, [True]):
        with pytest.raises(TypeError, match=rf"^{re.escape(func)}: {name} must be True or False"):
            call(bad)
