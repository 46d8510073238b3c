"""GaussianTarget: the same values as gaussian_kl / gaussian_kl_grad / fit_gaussian,
an analytic Hessian checked against finite differences and mpmath, scipy.optimize."""
import pickle
import warnings

import mpmath
import numpy as np
import pytest

import kl_fast
from kl_fast import GaussianTarget
from kl_fast.bench import truth


@pytest.fixture(scope="module")
def tutorial():
    x = np.arange(-10, 10, 0.001)
    p = np.exp(-x ** 2 / 8) / np.sqrt(8 * np.pi)
    return p, x


def _same(a, b):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_values_equal_the_one_shot_functions(tutorial, normalize, dtype):
    p, x = tutorial
    p = p.astype(dtype)
    t = GaussianTarget(p, x, normalize=normalize)
    for mu, sigma in [(0.0, 2.0), (1.3, 0.7), (-25.0, 3.0), (0.2, 1e-4), (0.0, 1e6)]:
        _same(t.kl(mu, sigma), kl_fast.gaussian_kl(p, x, mu, sigma, normalize=normalize))
        for a, b in zip(t.kl_grad(mu, sigma),
                        kl_fast.gaussian_kl_grad(p, x, mu, sigma, normalize=normalize)):
            _same(a, b)
        kl, grad, _ = t.kl_hess(mu, sigma)
        ref = kl_fast.gaussian_kl_grad(p, x, mu, sigma, normalize=normalize)
        _same(kl, ref[0])
        _same(grad, np.array(ref[1:]))


def test_batch_and_broadcasting(rng):
    x = np.linspace(-3, 4, 57)
    P = rng.random((3, 1, 57))
    mu = np.linspace(-1, 1, 4)
    sigma = np.array([[0.5], [1.0], [2.0]])[:, :, None]  # (3, 1, 1) against (3, 1) x (4,)
    t = GaussianTarget(P, x, normalize=False)
    assert t.batch_shape == (3, 1)
    kl = t.kl(mu, sigma)
    _same(kl, kl_fast.gaussian_kl(P, x, mu, sigma))
    assert kl.shape == (3, 3, 4)
    kl2, grad, hess = t.kl_hess(mu, sigma)
    assert grad.shape == (3, 3, 4, 2) and hess.shape == (3, 3, 4, 2, 2)
    _same(hess[..., 0, 1], hess[..., 1, 0])
    ref = kl_fast.gaussian_kl_grad(P, x, mu, sigma)
    _same(kl2, ref[0])
    _same(grad[..., 0], ref[1])
    _same(grad[..., 1], ref[2])


def test_surface_is_one_call(tutorial):
    p, x = tutorial
    t = GaussianTarget(p, x)
    mu, sigma = np.meshgrid(np.linspace(-2, 2, 200), np.linspace(0.5, 4, 200))
    surf = t.kl(mu, sigma)
    assert surf.shape == (200, 200)
    idx = [(0, 0), (57, 131), (199, 199), (100, 3)]
    for i, j in idx:
        _same(surf[i, j], kl_fast.gaussian_kl(p, x, mu[i, j], sigma[i, j], normalize=True))


def _fd_hessian(t, mu, sigma):
    """Central differences of the analytic gradient (step scaled to each variable)."""
    hm, hs = 1e-5 * max(1.0, abs(mu)), 1e-5 * sigma
    gp, gm = t.kl_grad(mu + hm, sigma), t.kl_grad(mu - hm, sigma)
    sp, sm = t.kl_grad(mu, sigma + hs), t.kl_grad(mu, sigma - hs)
    return np.array([[(gp[1] - gm[1]) / (2 * hm), (sp[1] - sm[1]) / (2 * hs)],
                     [(gp[2] - gm[2]) / (2 * hm), (sp[2] - sm[2]) / (2 * hs)]])


@pytest.mark.parametrize("mu,sigma", [(0.3, 1.7), (0.0, 2.0), (-4.0, 0.8), (9.5, 3.0),
                                      (1.0, 12.0), (0.05, 0.05)])
def test_hessian_against_finite_differences(tutorial, mu, sigma):
    p, x = tutorial
    t = GaussianTarget(p, x)
    _, _, h = t.kl_hess(mu, sigma)
    fd = _fd_hessian(t, mu, sigma)
    scale = np.abs(h).max()
    np.testing.assert_allclose(h, fd, rtol=2e-5, atol=2e-6 * scale)


def _mp_kl(p, x, mu, sigma):
    return truth.gaussian_of(p, x, mu, sigma, normalize=True, grad=False)


@pytest.mark.parametrize("mu,sigma", [(0.4, 0.9), (-1.2, 2.5), (2.9, 0.35)])
def test_hessian_against_mpmath(mu, sigma):
    rng = np.random.default_rng(7)
    x = np.sort(rng.uniform(-3, 3, 40))
    p = rng.random(40)
    t = GaussianTarget(p, x)   # normalize=True: the mpmath KL divides by P
    kl, grad, hess = t.kl_hess(mu, sigma)
    with mpmath.workdps(50):
        pm = [mpmath.mpf(float(v)) for v in p]
        xm = [mpmath.mpf(float(v)) for v in x]
        f = lambda a, b: _mp_kl(pm, xm, a, b)  # noqa: E731
        exact_h = [[mpmath.diff(f, (mu, sigma), (2, 0)), mpmath.diff(f, (mu, sigma), (1, 1))],
                   [mpmath.diff(f, (mu, sigma), (1, 1)), mpmath.diff(f, (mu, sigma), (0, 2))]]
        exact_g = [mpmath.diff(f, (mu, sigma), (1, 0)), mpmath.diff(f, (mu, sigma), (0, 1))]
        exact_kl = f(mu, sigma)
    exact_h = np.array(exact_h, dtype=float)
    assert kl == pytest.approx(float(exact_kl), rel=1e-13)
    np.testing.assert_allclose(grad, np.array(exact_g, dtype=float), rtol=1e-11)
    np.testing.assert_allclose(hess, exact_h, rtol=1e-10, atol=1e-12 * np.abs(exact_h).max())


@pytest.mark.parametrize("scale", [2.0 ** -300, 2.0 ** 300])
def test_hessian_at_any_scale(scale):
    rng = np.random.default_rng(3)
    x = np.linspace(-2, 3, 80)
    p = rng.random(80)
    _, g1, h1 = GaussianTarget(p, x).kl_hess(0.3, 0.8)
    kl, g, h = GaussianTarget(p, x * scale).kl_hess(0.3 * scale, 0.8 * scale)
    assert kl == GaussianTarget(p, x).kl(0.3, 0.8)
    np.testing.assert_array_equal(g, g1 / scale)
    np.testing.assert_array_equal(h, h1 / scale ** 2)


@pytest.mark.parametrize("kwargs", [dict(), dict(method="gd", parametrization="variance",
                                                 mu0=0.0, sigma0=1.0, epochs=100)])
def test_fit_equals_fit_gaussian(tutorial, kwargs):
    p, x = tutorial
    for normalize in (False, True):
        a = GaussianTarget(p, x, normalize=normalize).fit(**kwargs)
        b = kl_fast.fit_gaussian(p, x, normalize=normalize, **kwargs)
        for name in ("mu", "sigma", "kl", "grad", "nit", "nfev", "converged", "message"):
            assert getattr(a, name) == getattr(b, name), name
        for key in b.history:
            _same(a.history[key], b.history[key])


def test_fit_batch(rng):
    x = np.linspace(-4, 4, 101)
    P = np.exp(-(x - rng.uniform(-1, 1, (2, 3, 1))) ** 2 / 2)
    a = GaussianTarget(P, x).fit(history=False)
    b = kl_fast.fit_gaussian(P, x, normalize=True, history=False)
    _same(a.mu, b.mu)
    _same(a.sigma, b.sigma)
    assert a.mu.shape == (2, 3)


@pytest.mark.parametrize("method", ["L-BFGS-B", "BFGS", "trust-exact", "Newton-CG", "trust-ncg",
                                    "trust-krylov", "CG", "SLSQP"])
@pytest.mark.parametrize("start", [[5.0, 5.0], [0.5, 0.5]])
def test_scipy_optimize_across_sigma_zero(method, start):
    # Unconstrained methods: from [5, 5] all but trust-ncg evaluate at some sigma < 0
    # (they raised or stopped short when the objective was +inf there); each reaches
    # the fit, up to the sign of sigma, to its own tolerance
    optimize = pytest.importorskip("scipy.optimize")
    x = np.linspace(-3, 3, 31)
    p = np.exp(-(x - 0.4) ** 2 / (2 * 0.8**2))
    t = GaussianTarget(p, x)
    best = t.fit()
    assert best.converged
    fun, jac, hess = t.scipy_objective()
    kwargs = dict(jac=jac, method=method)
    if method in ("trust-exact", "Newton-CG", "trust-ncg", "trust-krylov"):
        kwargs["hess"] = hess
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # scipy's own, at a rejected step
        res = optimize.minimize(fun, start, **kwargs)
    assert res.success, res.message
    np.testing.assert_allclose([res.x[0], abs(res.x[1])], [best.mu, best.sigma], atol=2e-3)
    assert res.fun == pytest.approx(best.kl, abs=1e-6)


@pytest.mark.parametrize("method", ["Newton-CG", "trust-exact", "L-BFGS-B", "trust-ncg"])
def test_scipy_optimize_reaches_the_fit(tutorial, method):
    optimize = pytest.importorskip("scipy.optimize")
    p, x = tutorial
    t = GaussianTarget(p, x, normalize=False)
    best = t.fit()
    fun, jac, hess = t.scipy_objective()
    kwargs = dict(jac=jac, method=method)
    if method != "L-BFGS-B":
        kwargs["hess"] = hess
    else:
        kwargs["bounds"] = [(None, None), (1e-6, None)]
    res = optimize.minimize(fun, [0.5, 1.0], **kwargs)
    assert res.success, res.message
    np.testing.assert_allclose(res.x, [best.mu, best.sigma], atol=2e-5)
    assert res.fun == pytest.approx(best.kl, rel=1e-9)


def test_scipy_objective_domain_and_shapes(tutorial):
    p, x = tutorial
    fun, jac, hess = GaussianTarget(p, x).scipy_objective()
    # q depends on sigma^2 only: sigma < 0 is the mirror image (the derivatives odd in
    # sigma change sign), sigma = 0 outside the family
    assert fun([0.3, -1.5]) == fun([0.3, 1.5])
    _same(jac([0.3, -1.5]), jac([0.3, 1.5]) * [1, -1])
    _same(hess([0.3, -1.5]), hess([0.3, 1.5]) * [[1, -1], [-1, 1]])
    assert fun([0.0, 0.0]) == fun([0.0, -0.0]) == np.inf
    for f in (jac, hess):
        with pytest.raises(ValueError, match="sigma != 0"):
            f([0.0, 0.0])
    # bad input is an error for all three, not a value outside the family
    for theta in ([np.nan, 1.0], [np.inf, 1.0], [0.0, np.nan], [0.0, np.inf], [0.0, -np.inf]):
        for f in (fun, jac, hess):
            with pytest.raises(ValueError, match="finite mu and sigma"):
                f(theta)
    with pytest.raises(ValueError, match="theta"):
        fun([0.0, 1.0, 2.0])
    t = GaussianTarget(p, x)
    f, g, h = fun([0.3, 1.5]), jac([0.3, 1.5]), hess([0.3, 1.5])
    kl, grad, H = t.kl_hess(0.3, 1.5)
    assert f == kl
    _same(g, grad)
    _same(h, H)
    with pytest.raises(ValueError, match="batch"):
        GaussianTarget(np.stack([p, p]), x).scipy_objective()


def test_scipy_objective_keeps_each_theta_with_its_values():
    """fun and jac shared by threads return their own theta's values: at every
    line of the evaluation another caller's evaluation is run, as a thread switch
    there would run it.  (The remembered evaluation was kept in three attributes;
    a switch between their updates paired one theta with another's values, seen
    once in about 10,000 calls from two threads.)"""
    import inspect
    import sys

    from kl_fast import _target

    x = np.linspace(-5, 5, 200)
    t = GaussianTarget(np.exp(-x ** 2 / 2), x)
    mine, other = [0.3, 1.2], [-0.4, 0.8]
    kl_mine, kl_other = t.kl(*mine), t.kl(*other)
    grad_mine = np.array(t.kl_grad(*mine)[1:])
    code = _target._Objective._at.__code__
    first = code.co_firstlineno
    switched_at = []
    for line in range(first, first + len(inspect.getsourcelines(code)[0])):
        fun, jac, _ = t.scipy_objective()
        fired = []

        def tracer(frame, event, arg, line=line, fun=fun, fired=fired):
            if frame.f_code is not code:
                return None
            if event == "line" and frame.f_lineno == line and not fired:
                fired.append(fun(other))    # untraced: tracing is off inside a tracer
            return tracer

        before = sys.gettrace()
        sys.settrace(tracer)
        try:
            got = fun(mine)
        finally:
            sys.settrace(before)
        if fired:
            switched_at.append(line)
            assert fired == [kl_other]
        assert got == kl_mine, f"another evaluation ran at line {line}"
        assert fun(mine) == kl_mine and np.array_equal(jac(mine), grad_mine)
        assert fun(other) == kl_other
    assert len(switched_at) >= 5


def test_grid_cannot_be_changed_through_x(tutorial):
    p, x = tutorial
    for grid in (x, x * 2.0**600):   # held as is, and as a scaled grid
        t = GaussianTarget(p, grid)
        before = t.kl(0.5, 1.5 * grid[-1] / x[-1])
        for target in (t, pickle.loads(pickle.dumps(t))):
            v = target.x
            _same(v, grid)
            with pytest.raises(ValueError):
                v.setflags(write=True)
            with pytest.raises(ValueError):
                v[0] = 100.0
            assert target.kl(0.5, 1.5 * grid[-1] / x[-1]) == before


def test_empty_batch_as_gaussian_kl(tutorial):
    _, x = tutorial
    x = x[:50]
    for shape in ((0, 50), (2, 0, 50)):
        p = np.zeros(shape)
        t = GaussianTarget(p, x)
        assert t.batch_shape == shape[:-1]
        _same(t.kl(0.0, 1.0), kl_fast.gaussian_kl(p, x, 0.0, 1.0))
        for a, b in zip(t.kl_grad(0.0, 1.0), kl_fast.gaussian_kl_grad(p, x, 0.0, 1.0)):
            _same(a, b)
        kl, grad, hess = t.kl_hess(np.zeros(3)[:, None, None] if len(shape) == 3 else 0.0, 1.0)
        assert hess.shape == kl.shape + (2, 2) and kl.size == 0
        assert t.fit().mu.shape == shape[:-1]


def test_pickle_and_repr(tutorial):
    p, x = tutorial
    t = GaussianTarget(p.astype(np.float32), x)
    t2 = pickle.loads(pickle.dumps(t))
    for a, b in zip(t.kl_hess([0.1, 0.2], 1.9), t2.kl_hess([0.1, 0.2], 1.9)):
        _same(a, b)
    r = repr(t2)
    assert "20000 grid points" in r and "float32" in r and "normalize=True" in r


def test_unpickling_refuses_a_state_of_another_layout(tutorial):
    p, x = tutorial
    t = GaussianTarget(p[::10], x[::10])
    state = t.__getstate__()
    assert state["layout"] == 1
    # a state pickled before the layout stamp reads as layout 1
    old = {k: v for k, v in state.items() if k != "layout"}
    t2 = GaussianTarget.__new__(GaussianTarget)
    t2.__setstate__(old)
    _same(t2.kl_grad(0.1, 1.9), t.kl_grad(0.1, 1.9))
    for bad, words in (({**state, "layout": 2}, "of layout 2, this kl_fast reads layout 1"),
                       ({k: v for k, v in state.items() if k != "_psums"}, "missing _psums"),
                       ({**state, "_psums": state["_psums"][:, :5]},
                        "whose p-side sums are not 7 per row")):
        with pytest.raises(ValueError, match=f"cannot unpickle a state {words}"):
            GaussianTarget.__new__(GaussianTarget).__setstate__(bad)


def test_inputs_are_copied_and_untouched(rng):
    x = np.linspace(-3, 3, 64)
    p = rng.random(64)
    before_p, before_x = p.copy(), x.copy()
    t = GaussianTarget(p, x)
    v = t.kl(0.2, 1.1)
    _same(p, before_p)
    _same(x, before_x)
    p[:] = 1.0
    x[:] = np.linspace(0, 1, 64)
    assert t.kl(0.2, 1.1) == v
    with pytest.raises(ValueError):
        t.x[0] = 5.0


def test_errors_name_the_argument():
    x = np.linspace(0, 1, 5)
    with pytest.raises(ValueError, match=r"GaussianTarget: p contains NaN at index \[2\]"):
        GaussianTarget([1, 1, np.nan, 1, 1], x)
    with pytest.raises(ValueError, match="all zero"):
        GaussianTarget(np.zeros(5), x)
    with pytest.raises(ValueError, match="x has 4 points"):
        GaussianTarget(np.ones(5), x[:4])
    t = GaussianTarget(np.ones(5), x)
    with pytest.raises(ValueError, match=r"GaussianTarget.kl: sigma must be positive"):
        t.kl(0.0, -1.0)
    with pytest.raises(ValueError, match=r"GaussianTarget.kl_hess: mu must be finite"):
        t.kl_hess(np.inf, 1.0)
    with pytest.raises(ValueError, match="do not broadcast"):
        GaussianTarget(np.ones((2, 5)), x).kl(np.zeros(3), 1.0)
    with pytest.raises(ValueError, match="method"):
        t.fit(method="bfgs")


def test_unpickled_unaligned_arrays_are_realigned(tutorial):
    # pickle protocol 5 buffers sent over a network can arrive at any address
    p, x = tutorial
    t = GaussianTarget(p[:1001], x[:1001])
    state = t.__getstate__()
    for name, value in list(state.items()):
        if isinstance(value, np.ndarray):
            raw = np.empty(value.nbytes + 1, dtype=np.uint8)
            moved = raw[1:].view(value.dtype).reshape(value.shape)
            moved[...] = value
            assert not moved.flags.aligned
            state[name] = moved
    t2 = GaussianTarget.__new__(GaussianTarget)
    t2.__setstate__(state)
    for name in ("_p2", "_xk", "_psums"):
        assert getattr(t2, name).flags.aligned
    for a, b in zip(t2.kl_hess([0.1, 0.3], 1.9), t.kl_hess([0.1, 0.3], 1.9)):
        np.testing.assert_array_equal(a, b)


def test_kl_hess_has_no_nan_at_extreme_parameters():
    """No NaN for any finite mu and positive finite sigma (docs/semantics.md): q sitting on
    one point with E_q[d] near DBL_MAX (4 E_q[d] overflowed, times a zero
    moment) and sigma^2 underflowing to 0 (0 / 0).  At mu = -1e308, sigma = 1
    the closed form (q on x = 0) gives d2/dmu2 = 0, d2/dmu dsigma = 2 and
    d2/dsigma2 = 3 sum p (x - mu)^2 - ... = +inf."""
    t = kl_fast.GaussianTarget([1, 1], [0, 1], normalize=False)
    kl, grad, hess = t.kl_hess(-1e308, 1.0)
    assert hess.tolist() == [[0.0, 2.0], [2.0, np.inf]]
    for mu, sigma in ((-1.7e308, 1.0), (1.7e308, 1e-300), (0.3, 1e-300), (0.3, 1e300),
                      (1e300, 1e-200)):
        kl, grad, hess = t.kl_hess(mu, sigma)
        assert not np.isnan(hess).any() and not np.isnan(grad).any() and not np.isnan(kl), (mu, sigma)


def test_empty_grid_repr_and_state_rebuilt_from_the_prepared_grid(tutorial):
    assert "on 0 grid points," in repr(GaussianTarget(np.zeros((0, 0)), np.zeros(0)))
    p, x = tutorial
    t = GaussianTarget(p, x)
    state = t.__getstate__()
    state["_x"] = state["_x"] + 1.0            # a grid the sums were not prepared on
    u = GaussianTarget.__new__(GaussianTarget)
    u.__setstate__(state)
    _same(u.x, x)


@pytest.mark.parametrize("scale, sigma", [(1e-200, 1e-20), (1e-100, 1e80), (1e-250, 1e-100)])
def test_gradient_on_a_tiny_grid_does_not_underflow(scale, sigma):
    # On a grid below 2**-100 the sums run in its units (2**k); with sigma much
    # wider than it the gradient there, 2**k times the caller's, fell below the
    # normal range and came back 0 (d_mu of 1e-160 read 0)
    p, x = [1.0, 0.0, 0.0], np.array([-1.0, 0.0, 1.0]) * scale
    kl, dmu, dsigma = truth.gaussian(p, x, 0.0, sigma, prec=400)
    got = kl_fast.gaussian_kl_grad(p, x, 0.0, sigma)
    # (approx's default absolute tolerance, 1e-12, would pass a 0 for 1e-160)
    assert got[0] == pytest.approx(float(kl), rel=1e-14, abs=0.0)
    assert got[1] == pytest.approx(float(dmu), rel=1e-12, abs=0.0) and float(dmu) != 0.0
    assert got[2] == pytest.approx(float(dsigma), rel=1e-12, abs=1e-300)
    target = GaussianTarget(p, x, normalize=False)
    assert target.kl_grad(0.0, sigma) == got
    assert tuple(target.kl_hess(0.0, sigma)[1]) == got[1:]


@pytest.mark.parametrize("x, mu, sigma", [([1.0, 1e-170, 0.0], 1e-170, 1e-170),
                                          ([1.0, 1e-160, 0.0], 1e-160, 1e-161),
                                          ([1e200, 1e-100, 0.0, -1e200], 1e-100, 1e-100)])
def test_a_grid_spanning_hundreds_of_orders_of_magnitude(x, mu, sigma):
    # sigma and the spacing near mu far below the grid's largest |x|: in the
    # grid's units the squared distances near mu underflowed (0.693 for 0.474)
    p = np.zeros(len(x))
    p[1] = 1.0
    kl, dmu, dsigma = truth.gaussian(p, x, mu, sigma, prec=800)
    got = kl_fast.gaussian_kl_grad(p, x, mu, sigma)
    assert got[0] == pytest.approx(float(kl), rel=1e-12, abs=1e-300)
    assert got[1] == pytest.approx(float(dmu), rel=1e-10, abs=1e-300)
    assert got[2] == pytest.approx(float(dsigma), rel=1e-10, abs=1e-300)
    assert kl_fast.gaussian_kl(p, x, mu, sigma) == got[0]
    # the target's compiled path for one row at scalar parameters leaves it too
    target = GaussianTarget(p, x, normalize=False)
    assert target.kl_grad(mu, sigma) == got
    assert target.kl([mu], [sigma])[0] == got[0]


def test_ordinary_evaluations_are_not_redone_in_sigmas_units(monkeypatch):
    # the redo of extreme evaluations (in sigma's units, a Python loop) must not
    # catch ordinary ones: surfaces, normalised and batch calls, scaled grids
    import kl_fast.gaussian as gaussian_module
    calls = []
    original = gaussian_module._in_sigma_units
    monkeypatch.setattr(gaussian_module, "_in_sigma_units",
                        lambda *a, **k: calls.append(1) or original(*a, **k))
    x = np.arange(-10, 10, 0.01)
    p = np.exp(-x ** 2 / 8)
    # sigma from a tenth of the spacing (the Hessian's d2/dmu2 underflows to 0 in a
    # tiny grid's units: an exact 0 of the second derivatives is not redone) to 100
    mu, sigma = np.meshgrid(np.linspace(-5, 5, 20), np.geomspace(0.001, 100, 20))
    for scale in (1.0, 1e40, 1e-40, 1e200, 1e-200):
        grid = x * scale
        target = GaussianTarget(p, grid)
        target.kl(mu * scale, sigma * scale)
        target.kl_hess(mu * scale, sigma * scale)   # 1e-200: second derivatives overflow
        kl_fast.gaussian_kl_grad(np.stack([p, p]), grid, 0.3 * scale, [2.0 * scale, scale],
                                 normalize=True)
    assert calls == []
