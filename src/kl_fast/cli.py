"""The ``kl-fast`` command: the tutorial as a demo, the benchmark table, KL over files.

    kl-fast demo [--out DIR]
    kl-fast bench [--quick] [--json FILE] [--plot FILE] [--only TOPIC]
    kl-fast compute P Q [--axis A] [--normalize] [--base B] [--dx DX] [--js] [--out FILE] [--force]
                        [--key NAME] [--q-key NAME] [--chunk-rows N]
    kl-fast pairwise P [Q] [--axis A] [--normalize] [--base B] [--js] [--out FILE] [--force]
                           [--key NAME] [--q-key NAME]

``python -m kl_fast`` is the same command.  Figures need matplotlib
(``pip install "kl_fast[plot]"``); everything else needs only NumPy.

Exit status: 0 on success, 2 for a usage error or bad input (a one-line message
on stderr naming the file and the problem, never a traceback).
"""
from __future__ import annotations

import argparse
import io
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from typing import (TYPE_CHECKING, Any, BinaryIO, Callable, Dict, Iterable, List, Literal, Optional,
                    Sequence, TextIO, Tuple, TypedDict, Union)

import numpy as np

if TYPE_CHECKING:
    from kl_fast.bench.runner import Result

PROG = "kl-fast"
PLOT_HINT = 'pip install "kl_fast[plot]"'


class CommandError(Exception):
    """A problem the user can fix; reported as one line on stderr, exit status 2."""


# --------------------------------------------------------------------------- common


def _figure_class():
    """matplotlib's Figure (drawn with the Agg canvas, no GUI), or None without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return Figure


class Progress:
    """A progress bar on stderr: redrawn in place on a terminal, a few plain lines otherwise.

    ``total=None`` is work of unknown size (standard input): the count alone, redrawn on a
    terminal, a line every few seconds otherwise.  ``unit="MB"`` shows byte counts in MB.

    Examples
    --------
    >>> import io
    >>> bar = Progress(4, "rows", stream=io.StringIO())
    >>> for done in range(1, 5):
    ...     bar.update(done)
    >>> bar.close()
    """

    width = 24
    unbounded_every = 5.0   # seconds between the plain lines of work of unknown size

    def __init__(self, total: Optional[int], label: str, *, stream: Optional[TextIO] = None,
                 enabled: bool = True, unit: str = "") -> None:
        self.total = None if total is None else max(int(total), 0)
        self.label = label
        self.unit = unit
        self.stream: TextIO = sys.stderr if stream is None else stream
        self.enabled = enabled
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self._last_bucket = -1
        self._last_draw = 0.0
        self._drawn = False

    def _count(self, n: int) -> str:
        return f"{n / 1e6:,.1f}" if self.unit == "MB" else f"{n:,}"

    def update(self, done: int, detail: str = "") -> None:
        if not self.enabled:
            return
        unit = f" {self.unit}" if self.unit else ""
        now = time.monotonic()
        if self.total is None:
            line = f"{self.label} {self._count(done)}{unit} {detail}".rstrip()
            if now - self._last_draw < (0.1 if self.tty else self.unbounded_every):
                return
        else:
            frac = 1.0 if self.total == 0 else min(max(done / self.total, 0.0), 1.0)
            filled = int(round(frac * self.width))
            line = (f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
                    f"{self._count(done)}/{self._count(self.total)}{unit} {detail}").rstrip()
            if self.tty:
                if done < self.total and now - self._last_draw < 0.1:
                    return
            else:
                # Logs get at most one line per tenth of the work.
                bucket = int(frac * 10)
                if bucket == self._last_bucket:
                    return
                self._last_bucket = bucket
        self._last_draw = now
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
            self._drawn = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def _median_seconds(fn: Callable[[], object]) -> float:
    from kl_fast.bench.runner import time_callable

    return time_callable(fn, quick=True)


def _fmt_seconds(sec: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if sec >= scale:
            return f"{sec / scale:.2f} {unit}"
    return f"{sec / 1e-9:.0f} ns"


def _check_writable_dir(path: str, what: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise CommandError(f"{what} {path}: the directory {parent} does not exist")


# --------------------------------------------------------------------------- demo

GRID = (-10.0, 10.0, 0.001)
# The tutorial's three pairs, N(mean, standard deviation).
PAIRS = (((0.0, 2.0), (2.0, 2.0)), ((0.0, 2.0), (5.0, 4.0)), ((5.0, 4.0), (0.0, 2.0)))


def normal_pdf(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    """Density of N(mean, std) at x (what the tutorial gets from scipy.stats.norm.pdf)."""
    z = (x - mean) / std
    return np.exp(-0.5 * z * z) / (std * math.sqrt(2.0 * math.pi))


def normal_kl(m1: float, s1: float, m2: float, s2: float) -> float:
    """Continuous KL(N(m1, s1) || N(m2, s2)) in closed form (s1, s2 standard deviations).

    Examples
    --------
    >>> normal_kl(0.0, 2.0, 2.0, 2.0)
    0.5
    """
    return math.log(s2 / s1) + (s1 * s1 + (m1 - m2) ** 2) / (2.0 * s2 * s2) - 0.5


def mass_outside(mean: float, std: float, lo: float, hi: float) -> float:
    """Probability that N(mean, std) falls outside [lo, hi)."""
    r2 = math.sqrt(2.0)
    return 0.5 * math.erfc((hi - mean) / (std * r2)) + 0.5 * math.erfc((mean - lo) / (std * r2))


def _pair_label(a, b) -> str:
    return f"N({a[0]:g}, {a[1]:g}) || N({b[0]:g}, {b[1]:g})"


@dataclass
class FitTrace:
    """One fitting run as the demo shows it: the start and every step."""

    name: str
    steps: np.ndarray          # 0 is the start, then one entry per epoch / Newton step
    kl: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray          # standard deviation
    variance: np.ndarray
    seconds: float             # median time of the whole fit
    result: object             # the GaussianFit


# The tutorial's run: (mu, variance) from (0, 1), learning rate 0.001, 100 epochs, no early stop.
class _GDOptions(TypedDict):
    method: Literal["gd"]
    parametrization: Literal["variance"]
    mu0: float
    sigma0: float
    lr: float
    epochs: int
    tol: float


TUTORIAL_GD: _GDOptions = dict(method="gd", parametrization="variance", mu0=0.0, sigma0=1.0,
                               lr=0.001, epochs=100, tol=0.0)


def _trace(name: str, fit, seconds: float) -> FitTrace:
    h = fit.history
    kl = np.asarray(h["kl"], dtype=np.float64)
    return FitTrace(name, np.arange(kl.size), kl, np.asarray(h["mu"], dtype=np.float64),
                    np.asarray(h["sigma"], dtype=np.float64), np.asarray(h["variance"], dtype=np.float64),
                    seconds, fit)


def _fits(p: np.ndarray, x: np.ndarray):
    """The tutorial's gradient-descent fit and the Newton fit, each with its median time."""
    import kl_fast

    gd = kl_fast.fit_gaussian(p, x, **TUTORIAL_GD)
    newton = kl_fast.fit_gaussian(p, x, method="newton")
    gd_sec = _median_seconds(lambda: kl_fast.fit_gaussian(p, x, **TUTORIAL_GD, history=False))
    newton_sec = _median_seconds(lambda: kl_fast.fit_gaussian(p, x, method="newton", history=False))
    return _trace("gradient descent", gd, gd_sec), _trace("Newton", newton, newton_sec)


# seconds measured already, or the zero-argument call to time
_Timed = Union[float, Callable[[], object]]


def demo(out_dir: str, say: Callable[[str], None] = print) -> int:
    import kl_fast
    from kl_fast import reference

    Figure = _figure_class()
    if Figure is not None:
        try:
            os.makedirs(out_dir, exist_ok=True)
        except OSError as exc:
            raise CommandError(f"--out {out_dir}: cannot create the directory ({exc.strerror})") from None
    x = np.arange(*GRID)
    dx = GRID[2]
    lo, hi = GRID[0], GRID[1]
    say(f"kl-fast demo: the KL-divergence-by-gradient-descent tutorial, with kl_fast {kl_fast.__version__}")
    say("")
    say(f"Grid: x = np.arange({lo:g}, {hi:g}, {dx:g}), {x.size:,} points, dx = {dx:g}.")
    say("p and q are normal densities N(mean, std) evaluated on x (as scipy.stats.norm.pdf).")
    say("")

    # 1. The three divergences and the "500 vs 0.5" puzzle.
    say("1. Three divergences on the grid")
    say("")
    say(f"   {'KL(p || q)':<22} {'kl_div(p, q)':>15} {'kl_div(p, q, dx=dx)':>20} {'continuous KL':>16}")
    rows = []
    for a, b in PAIRS:
        p, q = normal_pdf(x, *a), normal_pdf(x, *b)
        grid = float(kl_fast.kl_div(p, q))
        scaled = float(kl_fast.kl_div(p, q, dx=dx))
        exact = normal_kl(a[0], a[1], b[0], b[1])
        rows.append((a, b, p, q, grid, scaled, exact))
        say(f"   {_pair_label(a, b):<22} {grid:15.7f} {scaled:20.10f} {exact:16.10f}")
    say("")
    say("   continuous KL = log(s2/s1) + (s1^2 + (m1 - m2)^2) / (2 s2^2) - 1/2, for N(m1, s1) || N(m2, s2).")
    say("")
    say(f"   Why {rows[0][4]:.0f} and not {rows[0][6]:g}: kl_div(p, q) adds p_i log(p_i / q_i) over "
        f"{x.size:,} density values.")
    say(f"   That sum is the integral of p log(p / q) divided by dx: {1 / dx:,.0f} times the continuous KL.")
    say("   Multiplied by dx (kl_div(p, q, dx=dx)) it approximates the continuous KL of the two normals.")
    a3, b3, *_, scaled3, exact3 = rows[2]
    outside = mass_outside(a3[0], a3[1], lo, hi)
    say(f"   The last row still differs ({scaled3:.4f} vs {exact3:.4f}): N({a3[0]:g}, {a3[1]:g}) has "
        f"{100 * outside:.1f}% of its mass outside [{lo:g}, {hi:g}),")
    say("   which the grid never sees.")
    say("")

    # 2. Asymmetry.
    (a2, b2, _, _, g2, s2, e2), (_, _, _, _, g3, s3, e3) = rows[1], rows[2]
    say("2. KL is not symmetric")
    say("")
    say(f"   KL({_pair_label(a2, b2)}) = {g2:.4f} on the grid, {e2:.4f} continuous")
    say(f"   KL({_pair_label(b2, a2)}) = {g3:.4f} on the grid, {e3:.4f} continuous")
    say("   Swapping the arguments changes the value: KL(p || q) weighs log(p / q) by p, so it is large")
    say("   when p has mass where q is thin (the wide N(5, 4) against the narrow N(0, 2)).")
    say("")

    # 3. Fitting a Gaussian to p = N(0, 2) by minimising KL(p || q).
    p = normal_pdf(x, 0.0, 2.0)
    say("3. Fitting a Gaussian q(mu, sigma) to p = N(0, 2) by minimising KL(p || q)")
    say("")
    say("   q_i = exp(-(x_i - mu)^2 / (2 v)) / sum_j exp(-(x_j - mu)^2 / (2 v)), v = sigma^2; p is left")
    say(f"   unnormalised as in the tutorial (it sums to {p.sum():.4f}), so the KL is about 1000 log 1000.")
    say("")
    gd, newton = _fits(p, x)
    say("   The tutorial's gradient descent: mu0 = 0, v0 = 1, learning rate 0.001, 100 epochs,")
    say("   stepping in (mu, v) with v the variance (the tutorial calls it sigma):")
    say("")
    say(f"   {'epoch':>7} {'KL(p || q)':>16} {'mu':>16} {'variance':>14}")
    for i in range(10, len(gd.steps), 10):
        say(f"   {int(gd.steps[i]):7d} {gd.kl[i]:16.7f} {gd.mu[i]:16.7g} {gd.variance[i]:14.7f}")
    say(f"   {gd.result.message}; {_fmt_seconds(gd.seconds)}")
    say("")
    say("   Newton's method in the natural parameters (mu / v, -1 / (2 v)), where KL is convex,")
    say("   from p's grid mean and standard deviation (iteration 0):")
    say("")
    say(f"   {'iter':>7} {'KL(p || q)':>16} {'mu':>16} {'sigma':>14}")
    for i in range(len(newton.steps)):
        say(f"   {int(newton.steps[i]):7d} {newton.kl[i]:16.7f} {newton.mu[i]:16.7g} {newton.sigma[i]:14.10f}")
    say(f"   {newton.result.message}; {_fmt_seconds(newton.seconds)}")
    say("")
    say(f"   Gradient descent ends at KL = {gd.kl[-1]:.7f} with sigma = {gd.sigma[-1]:.7f}; Newton reaches")
    say(f"   KL = {newton.kl[-1]:.7f} with sigma = {newton.sigma[-1]:.7f} in {newton.result.nit} "
        f"step{'s' if newton.result.nit != 1 else ''}, "
        f"{gd.seconds / newton.seconds:,.0f}x faster.")
    say("")

    # 4. Speed on the tutorial grid.
    say("4. Speed on the tutorial grid (median of repeats; ratio = NumPy time / kl_fast time)")
    say("")
    q = normal_pdf(x, 2.0, 2.0)
    p32, q32 = p.astype(np.float32), q.astype(np.float32)
    numpy_gd_sec = _median_seconds(lambda: reference.fit_gaussian_gd(
        p, x, mu0=0.0, sigma0=1.0, lr=0.001, epochs=100, parametrization="variance"))
    speed: List[tuple[str, _Timed, _Timed]] = [
        ("kl_div float64", lambda: kl_fast.kl_div(p, q), lambda: reference.kl_div(p, q, check=False)),
        ("kl_div float32", lambda: kl_fast.kl_div(p32, q32),
         lambda: reference.kl_div(p32, q32, check=False)),
        ("gaussian_kl_grad", lambda: kl_fast.gaussian_kl_grad(p, x, 0.5, 1.5),
         lambda: reference.gaussian_kl_grad(p, x, 0.5, 1.5, check=False)),
        ("tutorial GD fit, 100 epochs", gd.seconds, numpy_gd_sec),
        ("Newton fit vs NumPy GD loop", newton.seconds, numpy_gd_sec),
    ]
    say(f"   {'n = 20,000':<30} {'kl_fast':>10} {'NumPy':>10} {'ratio':>8}")
    for label, fast, slow in speed:
        tf = fast if isinstance(fast, float) else _median_seconds(fast)
        ts = slow if isinstance(slow, float) else _median_seconds(slow)
        say(f"   {label:<30} {_fmt_seconds(tf):>10} {_fmt_seconds(ts):>10} {ts / tf:7.1f}x")
    say("   (kl-fast bench shows the full table, with SciPy as well)")
    say("")

    # 5. Figures.
    say("5. Figures")
    say("")
    if Figure is None:
        say(f"   matplotlib is not installed, so no figures were written. To get them: {PLOT_HINT}")
        return 0
    written = []
    for k, (a, b, pa, qb, grid, scaled, exact) in enumerate(rows, start=1):
        path = os.path.join(out_dir, f"kl_pair_{k}.png")
        _plot_pair(Figure, path, x, a, b, pa, qb, grid, scaled, exact)
        written.append((path, f"p = N({a[0]:g}, {a[1]:g}) and q = N({b[0]:g}, {b[1]:g}), KL in the title"))
    path = os.path.join(out_dir, "fit_trajectory.png")
    _plot_trajectory(Figure, path, x, p, gd, newton)
    written.append((path, "q during gradient descent (every 10th epoch) over p, and Newton's result"))
    path = os.path.join(out_dir, "fit_kl_history.png")
    _plot_history(Figure, path, gd, newton)
    written.append((path, "KL, mu and the variance per iteration for both methods"))
    surface = kl_surface(p, x)
    start = kl_fast.fit_gaussian(p, x, mu0=SURFACE_START[0], sigma0=SURFACE_START[1])
    path = os.path.join(out_dir, "fit_kl_surface.png")
    _plot_surface(Figure, path, surface, gd,
                  [(newton, "Newton from p's moments"),
                   (_trace("Newton", start, 0.0),
                    f"Newton from (mu, sigma) = {SURFACE_START}")])
    written.append((path, f"the KL over (mu, sigma) ({surface[2].size:,} points in one "
                          f"GaussianTarget call, {_fmt_seconds(surface[3])}) with both paths"))
    for path, what in written:
        say(f"   {path}: {what}")
    return 0


def _figure_format(fig: Any, path: str, what: str) -> str:
    """The format of a figure file from its name's suffix (PNG without one); a
    CommandError naming ``what`` where matplotlib has no writer for it."""
    fmt = os.path.splitext(path)[1][1:].lower() or "png"
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:
        raise CommandError(f"{what} {path}: matplotlib cannot write .{fmt} files; it writes "
                           + ", ".join(f".{name}" for name in sorted(supported)))
    return fmt


def _check_figure_writer(Figure: Any, path: str) -> None:
    """A small figure written to memory in the format of ``path`` (before any
    timing): a CommandError where matplotlib has no writer for it, or its writer
    fails (.pgf without a TeX system)."""
    fig = Figure()
    fmt = _figure_format(fig, path, "--plot")
    fig.add_subplot().set_title("x")   # text: the writers that lay it out with TeX need it
    try:
        fig.savefig(io.BytesIO(), format=fmt, bbox_inches="tight")
    except Exception as exc:   # matplotlib's backends raise what they raise
        raise CommandError(f"--plot {path}: matplotlib cannot write .{fmt} here "
                           f"({type(exc).__name__}: {exc})") from None


def _save(fig, path: str, tight: bool = False) -> None:
    fmt = _figure_format(fig, path, "figure")
    try:
        fig.savefig(path, format=fmt, dpi=110, bbox_inches="tight" if tight else None)
    except OSError as exc:
        raise CommandError(f"{path}: cannot write the figure ({exc.strerror or exc})") from None


def _plot_pair(Figure, path, x, a, b, p, q, grid, scaled, exact) -> None:
    fig = Figure(figsize=(7.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(x, p, lw=2, label=f"p = N({a[0]:g}, {a[1]:g})")
    ax.plot(x, q, lw=2, label=f"q = N({b[0]:g}, {b[1]:g})")
    ax.fill_between(x, p, alpha=0.15)
    ax.fill_between(x, q, alpha=0.15)
    ax.set_title(f"KL({_pair_label(a, b)}) = {grid:.4f} on the grid\n"
                 f"times dx: {scaled:.4f};  continuous KL of the two normals: {exact:.4f}")
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    ax.legend()
    _save(fig, path)


def _grid_q(x, mu, sigma, dx):
    """The fitted grid Gaussian q_i, divided by dx so that it overlays the density p."""
    w = np.exp(-((x - mu) ** 2) / (2.0 * sigma * sigma))
    return w / (w.sum() * dx)


def _plot_trajectory(Figure, path, x, p, gd: FitTrace, newton: FitTrace) -> None:
    from matplotlib import colormaps

    dx = GRID[2]
    fig = Figure(figsize=(8.0, 4.5), layout="constrained")
    ax = fig.add_subplot()
    cmap = colormaps["viridis"]
    shown = list(range(0, len(gd.steps), 10))
    for j, i in enumerate(shown):
        q = _grid_q(x, gd.mu[i], gd.sigma[i], dx)
        ax.plot(x, q, color=cmap(j / max(len(shown) - 1, 1)), lw=1.2,
                label=f"GD epoch {int(gd.steps[i])}" if j in (0, len(shown) - 1) else None)
    qn = _grid_q(x, newton.mu[-1], newton.sigma[-1], dx)
    ax.plot(x, qn, color="tab:red", lw=2, ls="--",
            label=f"Newton: mu = {newton.mu[-1]:.3g}, sigma = {newton.sigma[-1]:.4f}")
    # p last and on top, dotted, so the curves of q near the end do not hide it
    ax.plot(x, p, color="black", lw=2.0, ls=":", zorder=5, label="p = N(0, 2)")
    ax.set_title("Fitting q to p by gradient descent on KL(p || q), every 10th epoch")
    ax.set_xlabel("x")
    ax.set_ylabel(f"density (q shown as q_i / dx, dx = {dx:g})")
    ax.legend()
    _save(fig, path)


def _plot_history(Figure, path, gd: FitTrace, newton: FitTrace) -> None:
    best = min(float(np.min(gd.kl)), float(np.min(newton.kl)))
    fig = Figure(figsize=(10.0, 7.5), layout="constrained")
    (ax1, ax2), (ax3, ax4) = fig.subplots(2, 2)
    ax1.plot(gd.steps, gd.kl, label=f"gradient descent ({_fmt_seconds(gd.seconds)})")
    ax1.plot(newton.steps, newton.kl, "o-", label=f"Newton ({_fmt_seconds(newton.seconds)})")
    ax1.set_title("KL(p || q) per iteration")
    ax1.set_xlabel("iteration (epoch)")
    ax1.set_ylabel("KL")
    ax1.legend()
    for tr, style in ((gd, "-"), (newton, "o-")):
        excess = tr.kl - best
        keep = excess > 0
        ax2.semilogy(tr.steps[keep], excess[keep], style, label=tr.name)
    ax2.set_title("KL above the best value found (log scale)")
    ax2.set_xlabel("iteration (epoch)")
    ax2.set_ylabel("KL - min KL")
    ax2.legend()
    for ax, name in ((ax3, "mu"), (ax4, "variance")):
        for tr, style in ((gd, "-"), (newton, "o-")):
            ax.plot(tr.steps, getattr(tr, name), style, label=tr.name)
        ax.set_title(f"{name} per iteration")
        ax.set_xlabel("iteration (epoch)")
        ax.set_ylabel(name)
        ax.legend()
    ax3.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    _save(fig, path)


# the (mu, sigma) window of the KL surface figure, around the tutorial's optimum (0, 2)
SURFACE_MU = (-1.5, 1.5)
SURFACE_SIGMA = (0.8, 3.2)
SURFACE_START = (1.2, 1.0)   # a start off the mu = 0 line that gradient descent follows


def kl_surface(p, x, size: int = 200):
    """(mu, sigma, kl, seconds): KL(p || q(mu, sigma)) on a size x size mesh of the
    surface window, from one prepared target in one call."""
    import time

    import kl_fast

    mu, sigma = np.meshgrid(np.linspace(*SURFACE_MU, size), np.linspace(*SURFACE_SIGMA, size))
    target = kl_fast.GaussianTarget(p, x, normalize=False)
    start = time.perf_counter()
    kl = target.kl(mu, sigma)
    return mu, sigma, kl, time.perf_counter() - start


def _plot_surface(Figure, path, surface, gd: FitTrace, newton_paths) -> None:
    """Contours of log10(KL - min KL) with the gradient-descent path and Newton's steps."""
    mu, sigma, kl, _ = surface
    best = min(float(np.min(kl)), float(np.min(gd.kl)),
               *(float(np.min(tr.kl)) for tr, _ in newton_paths))
    excess = np.log10(np.maximum(kl - best, 1e-12))
    fig = Figure(figsize=(7.5, 6.0), layout="constrained")
    ax = fig.add_subplot()
    filled = ax.contourf(mu, sigma, excess, levels=30, cmap="viridis")
    fig.colorbar(filled, ax=ax, label="log10(KL - min KL)")
    ax.plot(gd.mu, gd.sigma, color="white", lw=3, zorder=3,
            label=f"gradient descent from (0, 1), {len(gd.steps) - 1} epochs")
    ax.plot(gd.mu[-1:], gd.sigma[-1:], "o", color="white", zorder=3)
    for (tr, label), color in zip(newton_paths, ("tab:red", "tab:orange")):
        ax.plot(tr.mu, tr.sigma, "o-", color=color, lw=1.5, ms=5, zorder=4,
                label=f"{label}, {len(tr.steps) - 1} steps")
    ax.set_xlim(*SURFACE_MU)
    ax.set_ylim(*SURFACE_SIGMA)
    ax.set_title("KL(p || q(mu, sigma)) on the tutorial grid, p = N(0, 2)")
    ax.set_xlabel("mu")
    ax.set_ylabel("sigma (standard deviation)")
    ax.legend(loc="upper right")
    _save(fig, path)


# --------------------------------------------------------------------------- bench


# How long `kl-fast bench` takes: both timed once, every topic (dask with its local cluster),
# with --json and --plot, on a 2-core x86-64 Linux machine (5 min 14 s and 26 s).
BENCH_FULL_MINUTES = 5
BENCH_QUICK_SECONDS = 25
BENCH_TIMED_ON = "measured with every topic on a 2-core x86-64 machine"


def bench_topics() -> List[str]:
    """Topics of the benchmark table: one per ``kl_fast.bench.cases_<topic>`` module."""
    import pkgutil

    from kl_fast import bench

    return sorted(i.name[len("cases_"):] for i in pkgutil.iter_modules(bench.__path__)
                  if i.name.startswith("cases_"))


def bench(quick: bool, json_path: Optional[str], plot_path: Optional[str],
          only: Optional[Sequence[str]], show_progress: bool = True) -> int:
    import json

    from kl_fast.bench.runner import (discover_cases, environment, format_table, memory_report,
                                      print_memory, run, steady_allocator)

    topics = bench_topics()
    if only:
        unknown = [t for t in only if t not in topics]
        if unknown:
            raise CommandError(f"--only {unknown[0]}: no such topic; available: {', '.join(topics)}")
    Figure = None
    if plot_path is not None:
        Figure = _figure_class()
        if Figure is None:
            raise CommandError(f"--plot needs matplotlib: {PLOT_HINT}")
        _check_writable_dir(plot_path, "--plot")
        _check_figure_writer(Figure, plot_path)
    if json_path is not None:
        _check_writable_dir(json_path, "--json")

    allocator = steady_allocator()
    try:
        cases = discover_cases(quick, list(only) if only else None)
    except ImportError as exc:
        raise CommandError(f"a benchmark topic needs {exc.name or 'a module'}, which is not installed "
                           f"({exc}); pick topics with --only ({', '.join(topics)})") from None
    bar = Progress(len(cases), "timing", enabled=show_progress)
    index = {c.group: i for i, c in enumerate(cases)}
    started = time.monotonic()
    bar.update(0, cases[0].group if cases else "")

    def progress(group: str, impl: str) -> None:
        done = index[group]   # cases timed before this one
        bar.update(done, f"{_elapsed_and_left(time.monotonic() - started, done, len(cases))} "
                         f"{group} / {impl}")

    try:
        results = run(cases, quick=quick, progress=progress)
        bar.update(len(cases), f"done in {_clock(time.monotonic() - started)}")
    finally:
        bar.close()
    env = environment()
    env["allocator"] = allocator
    print(format_table(results, env))
    memory = memory_report(quick, list(only) if only else None)
    print_memory(memory)
    if json_path is not None:
        doc = {"environment": env, "quick": quick, "topics": list(only) if only else topics,
               "results": [r.__dict__ for r in results], "memory": memory}
        try:
            with open(json_path, "w") as fh:
                json.dump(doc, fh, indent=2)
                fh.write("\n")
        except OSError as exc:
            raise CommandError(f"--json {json_path}: cannot write ({exc.strerror})") from None
        print(f"\nresults written to {json_path}")
    if plot_path is not None:
        _plot_speedups(Figure, plot_path, results)
        print(f"bar chart written to {plot_path}")
    return 0


def _clock(seconds: float) -> str:
    """Seconds as m:ss (or h:mm:ss)."""
    s = int(round(seconds))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


def _elapsed_and_left(elapsed: float, done: int, total: int) -> str:
    """"[1:05 elapsed, about 2:10 left]": the time left estimated from the cases timed so far."""
    if done <= 0 or done >= total:
        return f"[{_clock(elapsed)} elapsed]"
    return f"[{_clock(elapsed)} elapsed, about {_clock(elapsed / done * (total - done))} left]"


def _speedup_label(r: Result) -> str:
    """A bar's label; a baseline other than NumPy's is named (kl_fast.dask against kl_fast)."""
    label = f"{r.group}: {r.impl}"
    return label if r.baseline.startswith("numpy") else f"{label} (vs {r.baseline})"


def _plot_speedups(Figure: Any, path: str, results: Sequence[Result]) -> None:
    _save(speedup_figure(Figure, results), path, tight=True)


def speedup_figure(Figure: Any, results: Sequence[Result]) -> Any:
    """The bar chart of the speed-ups: one bar per implementation that is not its case's baseline."""
    bars = [r for r in results if r.impl != r.baseline and r.speedup]
    labels = [_speedup_label(r) for r in bars]
    values = [r.speedup for r in bars if r.speedup is not None]   # every one of bars
    colors = ["tab:blue" if r.impl.startswith("kl_fast") else "tab:gray" for r in bars]
    # Wide enough for the longest label at 7 points next to a 6-inch plot.
    width = max(10.0, 6.0 + 0.056 * max((len(s) for s in labels), default=0))
    fig = Figure(figsize=(width, 1.6 + 0.28 * max(len(bars), 1)), layout="constrained")
    ax = fig.add_subplot()
    pos = np.arange(len(bars))[::-1]
    ax.set_xscale("log")
    # Bars grow from 1 (the baseline): right is faster, left is slower.
    ax.barh(pos, np.asarray(values) - 1.0, left=1.0, color=colors)
    ax.axvline(1.0, color="black", lw=1)
    lo, hi = min(values + [1.0]), max(values + [1.0])
    ax.set_xlim(lo / 2.5, hi * 2.5)
    ax.set_ylim(-0.7, len(bars) - 0.3)
    ax.set_yticks(pos, labels, fontsize=7)
    for y, v in zip(pos, values):
        ax.text(v, y, f" {v:.2f}x ", va="center", fontsize=7,
                ha="left" if v >= 1 else "right")
    ax.set_xlabel("speed-up: baseline time / time (log scale; 1 = as fast as the baseline)")
    others = sorted({r.baseline for r in bars if not r.baseline.startswith("numpy")})
    title = "kl_fast (blue) and peers (grey) against each case's baseline, one run\n"
    title += ("baseline: NumPy" + (f"; rows marked (vs ...): {', '.join(others)}" if others else ""))
    fig.suptitle(title, fontsize=10)
    return fig


# --------------------------------------------------------------------------- compute

STDIN = "-"
TEXT_SUFFIXES = (".csv", ".txt")
OUT_SUFFIXES = (".npy",) + TEXT_SUFFIXES
CHUNK_BYTES = 32 << 20       # default size of the P part of a chunk
REMAP_BYTES = 128 << 20      # reopen memory maps after reading this much
TEXT_CHUNK_BYTES = 8 << 20   # text is read and parsed this much at a time
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"    # an .npz archive


@dataclass
class Table:
    """A distribution file: the array as stored, and how to name places in it."""

    path: str                 # the file, or "-" for standard input
    role: str                 # "P" or "Q"
    data: np.ndarray          # as stored: 1-D or 2-D, memory-mapped for an .npy file
    kind: str                 # "npy" (memory-mapped file), "array" (in memory), "text"
    transposed: bool = False  # distributions are the file's columns (--axis 0)
    line_numbers: Optional[np.ndarray] = None  # text: the file's line number of each data line
    key: Optional[str] = None  # .npz: the array's name in the archive

    @property
    def text(self) -> bool:
        """One distribution per line of a text file."""
        return self.kind == "text"

    @property
    def source(self) -> str:
        """How messages name the input: "P file x.npy", "Q (standard input)"."""
        return _source(self.role, self.path)

    def remap(self) -> None:
        """Drop the memory map and open a fresh one, so pages already read leave memory."""
        if self.kind == "npy":
            self.data = np.load(self.path, mmap_mode="r", allow_pickle=False)

    def rows(self) -> np.ndarray:
        """The distributions as rows of a 2-D view (no copy; a plain ndarray, also of a memory map,
        so that the library treats it as it does the same values in memory)."""
        d = self.data if self.data.ndim == 2 else self.data.reshape(1, -1)
        return np.asarray(d.T if self.transposed else d)

    def _line(self, i: int) -> int:
        assert self.line_numbers is not None
        return int(self.line_numbers[i])

    def _of_key(self) -> str:
        return f" of array {self.key!r}" if self.key is not None else ""

    def place(self, r: int, c: int) -> str:
        """Where element c of distribution r is, in the file's own terms."""
        i, j = (c, r) if self.transposed else (r, c)
        if self.text:
            return f"line {self._line(i)}, column {j + 1}"
        if self.data.ndim == 1:
            return f"index [{j}]{self._of_key()}"
        return f"index [{i}, {j}]{self._of_key()}"

    def name_row(self, r: int) -> str:
        if self.text:
            if self.transposed:
                return f"column {r + 1}"
            return f"line {self._line(r)}"
        if self.data.ndim == 1:
            return "the distribution"
        return f"column {r}" if self.transposed else f"row {r}"

    def row_sum(self, r: int) -> float:
        """The sum of distribution r, in float64."""
        rows = self.rows()
        return float(np.sum(rows[r if rows.shape[0] > 1 else 0], dtype=np.float64))


def _source(role: str, path: str) -> str:
    return f"{role} (standard input)" if path == STDIN else f"{role} file {path}"


def _is_data_line(line: str) -> bool:
    return bool(line.split("#", 1)[0].strip())


def _shown(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def _fields(body: str, delimiter: Optional[str]) -> List[str]:
    """The fields of a data line's text before its comment, as the parser splits them."""
    return [f.strip() for f in body.split(delimiter)] if delimiter else body.split()


# Text that may hold a number below the smallest double, which the parser reads
# as 0 without a word: a decimal exponent of -300 or below, or 20 zeros after a
# decimal point (with an exponent above -300 a number below 1e-323 needs at
# least 24 of them).  Only parsed zeros in lines with such text are looked at.
_TINY_TEXT = re.compile(r"[eE]-0*(?:[3-9][0-9]{2}|[0-9]{4,})|\.0{20}")
_ZERO_LITERAL = re.compile(r"[+-]?(?:0+\.?0*|\.0+)(?:[eE][+-]?[0-9]+)?")


def _underflow_problem(lines: Sequence[Tuple[int, str]], block: np.ndarray,
                       delimiter: Optional[str]) -> str:
    """The first number among numbered data lines (parsed into the rows of
    block) that is not 0 but reads as 0, below the smallest double (about
    4.9e-324), for the error message; "" if none."""
    for r in np.flatnonzero((block == 0).any(axis=1)):
        k, line = lines[int(r)]
        body = line.split("#", 1)[0]
        if not _TINY_TEXT.search(body):
            continue
        fields = _fields(body, delimiter)
        for j in np.flatnonzero(block[r] == 0):
            if not _ZERO_LITERAL.fullmatch(fields[j]):
                return (f"line {k}, column {j + 1}: {_shown(fields[j])!r} is below the smallest "
                        f"double (about 4.9e-324) and would be read as 0")
    return ""


_INF_LITERAL = re.compile(r"[+-]?(?:inf|infinity)", re.IGNORECASE)


def _overflow_problem(lines: Sequence[Tuple[int, str]], block: np.ndarray,
                      delimiter: Optional[str]) -> str:
    """The first number among numbered data lines (parsed into the rows of
    block) that reads as infinite but is not written as inf, beyond the
    largest double, for the error message; "" if none."""
    for r in np.flatnonzero(np.isinf(block).any(axis=1)):
        k, line = lines[int(r)]
        fields = _fields(line.split("#", 1)[0], delimiter)
        for j in np.flatnonzero(np.isinf(block[r])):
            if not _INF_LITERAL.fullmatch(fields[j]):
                return (f"line {k}, column {j + 1}: {_shown(fields[j])!r} is beyond the largest "
                        f"double (about 1.8e308) and would be read as infinite")
    return ""


def _separator_hint(field: str, delimiter: Optional[str]) -> str:
    """A hint for a field that holds another separator than the file's."""
    for sep in (";", ",", "\t", "|"):
        if sep in field and sep != delimiter:
            read = "commas" if delimiter == "," else "white space"
            return f" (values separated by {sep!r}? this file's values are read as separated by {read})"
    return ""


def _text_problem(lines: Iterable[Tuple[int, str]], delimiter: Optional[str],
                  width: Optional[int], first: Optional[int]) -> str:
    """The first unreadable value or ragged line among numbered data lines, for the error message.

    ``width`` and ``first`` are the number of values per line and the line that set it,
    from the lines before these (None when these are the first).
    """
    for k, line in lines:
        fields = _fields(line.split("#", 1)[0], delimiter)
        for j, f in enumerate(fields, start=1):
            try:
                if "_" in f:     # Python's float reads 1_0 as 10; NumPy's parser does not
                    raise ValueError(f)
                float(f)
            except ValueError:
                hint = _separator_hint(f, delimiter)
                if not hint and first is None:
                    hint = " (a header line? remove it or start it with #)"
                if f == "":
                    return f"line {k}, column {j}: empty field{hint}"
                return f"line {k}, column {j}: {_shown(f)!r} is not a number{hint}"
        if width is None or first is None:
            width, first = len(fields), k
        elif len(fields) != width:
            return (f"wrong shape: line {k} has {len(fields)} values but line {first} has {width}; "
                    f"every line must hold one distribution of the same length")
    return ""


def _unparsed_line(lines: Iterable[Tuple[int, str]], delimiter: Optional[str]) -> str:
    """The first numbered line the parser rejects on its own, for the error message."""
    import warnings

    for k, line in lines:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                np.loadtxt([line], delimiter=delimiter, comments="#", dtype=np.float64)
        except ValueError:
            return f"line {k}: {_shown(line.strip())!r} is not a line of numbers"
    return "the values cannot be read as numbers"


def _parse_text(fh: BinaryIO, source: str, delimiter: Optional[str], *, sniff: bool,
                size: Optional[int], show_progress: bool) -> Tuple[np.ndarray, np.ndarray]:
    """Parse one distribution per line from ``fh``, TEXT_CHUNK_BYTES of text at a time.

    Only a chunk of the text is held at once; the values go into an array sized from
    the file's size (grown if that falls short).  Blank lines and ``#`` comments are
    skipped.  With ``sniff``, the values are comma-separated when the first data line
    holds a comma, else whitespace-separated.  Returns the values (2-D) and the file's
    line number of each row.
    """
    import warnings
    from array import array

    numbers = array("q")      # the file's line number of each data line
    data: Optional[np.ndarray] = None
    rows = 0
    width: Optional[int] = None
    first: Optional[int] = None
    line_no = 0               # lines read so far
    done = 0                  # bytes read so far
    big = size is None or size > TEXT_CHUNK_BYTES
    bar = Progress(size, f"reading {source}", enabled=show_progress and big, unit="MB")
    try:
        while True:
            raw = fh.readlines(TEXT_CHUNK_BYTES)
            if not raw:
                break
            chunk = b"".join(raw)
            del raw
            if done == 0 and b"\0" in chunk[:4096]:
                raise CommandError(f"{source}: binary data in a text file")
            try:
                # a byte order mark (as spreadsheet programs write) starts no number
                text = chunk.decode("utf-8-sig" if done == 0 else "utf-8")
            except UnicodeDecodeError as exc:
                bad = line_no + chunk[:exc.start].count(b"\n") + 1
                raise CommandError(f"{source}: line {bad}: not UTF-8 text") from None
            done += len(chunk)
            del chunk
            tiny = _TINY_TEXT.search(text) is not None
            lines = text.replace("\r\n", "\n").split("\n")
            del text
            if lines and lines[-1] == "":
                lines.pop()   # the text ended with a newline
            kept = [(k, line) for k, line in enumerate(lines, start=line_no + 1) if _is_data_line(line)]
            line_no += len(lines)
            del lines
            if size is not None or done > TEXT_CHUNK_BYTES:  # standard input: once it is large
                bar.update(done)
            if not kept:
                continue
            if sniff and delimiter is None and width is None:
                delimiter = "," if "," in kept[0][1].split("#", 1)[0] else None
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    block = np.loadtxt([line for _, line in kept], delimiter=delimiter, comments="#",
                                       ndmin=2, dtype=np.float64)
            except ValueError:
                problem = _text_problem(kept, delimiter, width, first) or _unparsed_line(kept, delimiter)
                raise CommandError(f"{source}: {problem}") from None
            problem = _underflow_problem(kept, block, delimiter) if tiny else ""
            if not problem and np.isinf(block).any():
                problem = _overflow_problem(kept, block, delimiter)
            if problem:
                raise CommandError(f"{source}: {problem}")
            if width is None or first is None:
                width, first = block.shape[1], kept[0][0]
            elif block.shape[1] != width:
                raise CommandError(f"{source}: wrong shape: line {kept[0][0]} has {block.shape[1]} values "
                                   f"but line {first} has {width}; every line must hold one distribution "
                                   f"of the same length")
            numbers.extend(k for k, _ in kept)
            b = block.shape[0]
            if data is None:
                # Rows expected in the whole file, from the bytes per row so far.
                expect = b if size is None else int(b * size / done * 1.02) + 1
                data = np.empty((max(expect, b), width), dtype=np.float64)
            elif rows + b > data.shape[0]:
                grown = np.empty((max(rows + b, int(data.shape[0] * 1.5)), width), dtype=np.float64)
                grown[:rows] = data[:rows]
                data = grown
            data[rows:rows + b] = block
            rows += b
    except OSError as exc:
        raise CommandError(f"{source}: cannot read ({exc.strerror or exc})") from None
    finally:
        bar.close()
    if data is None or rows == 0:
        raise CommandError(f"{source}: no numbers in the file")
    return data[:rows], np.frombuffer(numbers, dtype=np.int64)


def _check_dtype(data: np.ndarray, source: str) -> np.ndarray:
    if data.dtype.kind not in "biuf":
        raise CommandError(f"{source}: holds {data.dtype} values; the distributions must be real numbers")
    return data


def _npy_error(source: str, exc: Exception) -> CommandError:
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "allow_pickle" in msg or "Python objects" in msg:
        return CommandError(f"{source}: holds Python objects, not numbers")
    if "mmap" in msg or "length" in msg or "EOF" in msg:
        return CommandError(f"{source}: not a valid .npy file (truncated: {msg})")
    if isinstance(exc, ValueError):
        return CommandError(f"{source}: not a valid .npy file ({msg})")
    return CommandError(f"{source}: not a valid .npy file ({type(exc).__name__}: {exc})")


def _read_npy(path: str, role: str) -> np.ndarray:
    source = _source(role, path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(len(NPY_MAGIC))
    except OSError as exc:
        raise CommandError(f"{source}: cannot read ({exc.strerror or exc})") from None
    if magic != NPY_MAGIC:
        what = "an empty file" if not magic else "no .npy header"
        raise CommandError(f"{source}: not a valid .npy file ({what})")
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except OSError as exc:
        raise CommandError(f"{source}: cannot read ({exc.strerror or exc})") from None
    except Exception as exc:  # np.load's parser raises several kinds on corrupt headers
        raise _npy_error(source, exc) from None
    if not isinstance(data, np.ndarray):
        raise CommandError(f"{source}: an .npz archive, not a single .npy array")
    return _check_dtype(data, source)


def _pick_array(archive: "np.lib.npyio.NpzFile", source: str, key: Optional[str],
                key_option: str) -> Tuple[np.ndarray, str]:
    """The array ``key`` of an .npz archive (its only array when key is None)."""
    names = list(archive.files)
    if not names:
        raise CommandError(f"{source}: an .npz archive holding no arrays")
    if key is None:
        if len(names) > 1:
            raise CommandError(f"{source}: an .npz archive of {len(names)} arrays ({', '.join(names)}); "
                               f"pick one with {key_option} NAME")
        key = names[0]
    elif key not in names:
        raise CommandError(f"{key_option} {key}: {source} has no array {key!r}; "
                           f"available: {', '.join(names)}")
    try:
        data = archive[key]
    except ValueError as exc:
        raise _npy_error(f"{source}, array {key!r}", exc) from None
    except Exception as exc:  # zipfile and the .npy parser raise several kinds on corrupt data
        raise CommandError(f"{source}: not a valid .npz archive ({type(exc).__name__}: {exc})") from None
    return _check_dtype(data, f"{source}, array {key!r}"), key


def _read_npz(fh: "str | BinaryIO", source: str, key: Optional[str],
              key_option: str) -> Tuple[np.ndarray, str]:
    try:
        archive = np.load(fh, allow_pickle=False)
    except OSError as exc:
        raise CommandError(f"{source}: cannot read ({exc.strerror or exc})") from None
    except Exception as exc:
        raise CommandError(f"{source}: not a valid .npz archive ({type(exc).__name__}: {exc})") from None
    if isinstance(archive, np.ndarray):
        raise CommandError(f"{source}: a single .npy array, not an .npz archive")
    with archive:
        return _pick_array(archive, source, key, key_option)


class _Prefixed(io.RawIOBase):
    """A binary stream with the bytes already read from it put back in front."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        super().__init__()
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: "memoryview | bytearray") -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(view))
        view[:len(data)] = data
        return len(data)


def _read_head(fh: BinaryIO, n: int) -> bytes:
    """The first n bytes of a stream (fewer only at its end)."""
    head = b""
    while len(head) < n:
        more = fh.read(n - len(head))
        if not more:
            break
        head += more
    return head


def _load_stdin(role: str, key: Optional[str], key_option: str,
                show_progress: bool) -> Tuple[np.ndarray, str, Optional[np.ndarray], Optional[str]]:
    """(data, kind, line numbers, key) of an input read from standard input: .npy, .npz or text."""
    source = _source(role, STDIN)
    stdin = sys.stdin.buffer
    try:
        head = _read_head(stdin, len(NPY_MAGIC))
    except OSError as exc:
        raise CommandError(f"{source}: cannot read ({exc.strerror or exc})") from None
    stream = io.BufferedReader(_Prefixed(head, stdin))
    if head == NPY_MAGIC:
        try:
            data = np.lib.format.read_array(stream, allow_pickle=False)
        except OSError as exc:
            raise CommandError(f"{source}: cannot read ({exc.strerror or exc})") from None
        except Exception as exc:
            raise _npy_error(source, exc) from None
        return _check_dtype(data, source), "array", None, None
    if head.startswith(ZIP_MAGIC):
        # A zip archive is read from its end: the whole archive goes into memory.
        data, name = _read_npz(io.BytesIO(stream.read()), source, key, key_option)
        return data, "array", None, name
    values, numbers = _parse_text(stream, source, None, sniff=True, size=None, show_progress=show_progress)
    return values, "text", numbers, None


def load_table(path: str, role: str, axis: int, key: Optional[str] = None, *,
               key_option: str = "--key", show_progress: bool = False) -> Table:
    """Read ``path`` (P or Q): .npy memory-mapped, .npz array ``key``, .csv/.txt parsed,
    "-" standard input (any of these, told apart by their first bytes); check its shape."""
    source = _source(role, path)
    numbers: Optional[np.ndarray] = None
    if path == STDIN:
        data, kind, numbers, key = _load_stdin(role, key, key_option, show_progress)
    else:
        low = path.lower()
        if not low.endswith((".npy", ".npz") + TEXT_SUFFIXES):
            ext = os.path.splitext(path)[1] or "(no extension)"
            raise CommandError(f"{source}: unsupported file type {ext}; use .npy, .npz, .csv or .txt")
        if not os.path.exists(path):
            raise CommandError(f"{source}: no such file")
        if os.path.isdir(path):
            raise CommandError(f"{source}: is a directory, not a file")
        if low.endswith(".npy"):
            data, kind, key = _read_npy(path, role), "npy", None
        elif low.endswith(".npz"):
            data, key = _read_npz(path, source, key, key_option)
            kind = "array"
        else:
            delimiter = "," if low.endswith(".csv") else None
            try:
                with open(path, "rb") as fh:
                    data, numbers = _parse_text(fh, source, delimiter, sniff=False,
                                                size=os.fstat(fh.fileno()).st_size,
                                                show_progress=show_progress)
            except OSError as exc:
                raise CommandError(f"{source}: cannot read ({exc.strerror or exc})") from None
            kind, key = "text", None
    if key is not None:
        source = f"{source}, array {key!r}"
    if data.ndim not in (1, 2):
        raise CommandError(f"{source}: wrong shape {data.shape}; expected one distribution "
                           f"(1-D) or one distribution per row (2-D)")
    if data.ndim == 1 and axis not in (0, -1):
        raise CommandError(f"{source}: --axis {axis} does not exist for a 1-D array (shape "
                           f"{data.shape}); use 0 or -1")
    if data.ndim == 2 and axis not in (0, 1, -1, -2):
        raise CommandError(f"{source}: --axis {axis} does not exist for a 2-D array (shape "
                           f"{data.shape}); use 0, 1, -1 or -2")
    transposed = data.ndim == 2 and axis in (0, -2)
    return Table(path, role, data, kind, transposed, numbers, key)


def _first_bad(rows: np.ndarray) -> Optional[Tuple[int, int, Any]]:
    """(row, col, value) of the first negative, NaN or infinite value in rows, or
    of an extended-precision value the float64 kernels cannot hold (beyond
    their range, or nonzero and below it), or None."""
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(rows) | (rows < 0)
        if rows.dtype.kind == "f" and rows.dtype.itemsize > 8:
            from kl_fast._validation import beyond_float64

            big, small = beyond_float64(rows)
            bad |= big | small
    if not bad.any():
        return None
    r, c = np.argwhere(bad)[0]
    return int(r), int(c), rows[r, c]


def _describe(value: Any) -> Tuple[str, str]:
    """What a value _first_bad found is, and the rule it breaks."""
    v = float(value)   # an extended-precision value beyond float64's range: +-inf or 0
    rule = "probabilities must be finite and non-negative"
    if math.isnan(v):
        return "NaN", rule
    shown = repr(v) if v == value else str(value)   # extended precision: its own digits
    if value < 0:
        return f"a negative value ({shown})", rule
    if v == value:
        return f"an infinite value ({shown})", rule
    from kl_fast._validation import BELOW_FLOAT64, BEYOND_FLOAT64

    rule = "values are computed in float64"
    return f"{shown}, {BEYOND_FLOAT64 if math.isinf(v) else BELOW_FLOAT64},", rule


def _explain_failure(tables: Sequence[Table], chunks: Sequence[np.ndarray], offsets: Sequence[int],
                     normalize: bool, exc: ValueError) -> CommandError:
    """Turn a library ValueError on a chunk into a message about a place in a file."""
    for table, rows, off in zip(tables, chunks, offsets):
        found = _first_bad(np.asarray(rows))
        if found is not None:
            r, c, v = found
            what, rule = _describe(v)
            return CommandError(f"{table.source}: {what} at {table.place(off + r, c)}; {rule}")
    if normalize:
        for table, rows, off in zip(tables, chunks, offsets):
            sums = np.asarray(rows, dtype=np.float64).sum(axis=1)
            zero = np.flatnonzero(~(sums > 0))
            if zero.size:
                r = int(zero[0])
                return CommandError(f"{table.source}: {table.name_row(off + r)} sums to "
                                    f"{float(sums[r])!r}; --normalize needs every distribution to have a positive sum")
    return CommandError(str(exc))


def _format_values(values: np.ndarray) -> List[str]:
    """Shortest strings that read back to the same float32/float64 values."""
    if values.dtype == np.float64:
        return [repr(v) for v in values.tolist()]
    return [str(v) for v in values]


def _check_options(base: Optional[float], dx: Optional[float] = None, normalize: bool = False,
                   js: bool = False) -> None:
    if base is not None and not (base > 0 and math.isfinite(base) and base != 1):
        raise CommandError(f"--base must be positive, finite and not 1, got {base!r}")
    if dx is not None:
        if not (dx > 0 and math.isfinite(dx)):
            raise CommandError(f"--dx must be positive and finite, got {dx!r}")
        if normalize:
            raise CommandError(f"--dx {dx!r} and --normalize are exclusive: --dx scales sums of density "
                               f"values, --normalize makes each distribution sum to 1")
        if js:
            raise CommandError(f"--dx {dx!r} applies to KL only: js_div takes no dx")


def _check_inputs(p_path: str, q_path: Optional[str]) -> None:
    if p_path == STDIN and q_path == STDIN:
        raise CommandError("P and Q are both - (standard input): only one input can be read from it")


def _check_out(out_path: str, inputs: Sequence[Tuple[str, str]], force: bool,
               suffixes: Tuple[str, ...] = OUT_SUFFIXES) -> None:
    """--out has a known type, its directory exists, and it is none of the inputs (unless force)."""
    if not out_path.lower().endswith(suffixes):
        ext = os.path.splitext(out_path)[1] or "(no extension)"
        raise CommandError(f"--out {out_path}: unsupported file type {ext}; use "
                           f"{', '.join(suffixes[:-1])} or {suffixes[-1]}")
    _check_writable_dir(out_path, "--out")
    if force or not os.path.exists(out_path):
        return
    for role, path in inputs:
        if path == STDIN:
            continue
        try:
            same = os.path.samefile(out_path, path)
        except OSError:
            same = os.path.realpath(out_path) == os.path.realpath(path)
        if same:
            raise CommandError(f"--out {out_path}: is the {role} file {path}; refusing to overwrite an "
                               f"input (write elsewhere, or pass --force to overwrite it)")


def _release(*tables: Table) -> None:
    """Drop the arrays of the inputs (closing memory maps) before an output may replace a file."""
    for t in tables:
        t.data = np.empty(0)


def _write_values(out_path: str, value: np.ndarray, lines: Callable[[], Iterable[str]]) -> None:
    try:
        if out_path.lower().endswith(".npy"):
            # through a file object: np.save given a name ending in ".NPY" adds ".npy"
            with open(out_path, "wb") as bfh:
                np.save(bfh, value)
        else:
            with open(out_path, "w") as fh:
                fh.writelines(lines())
    except OSError as exc:
        raise CommandError(f"--out {out_path}: cannot write ({exc.strerror or exc})") from None


def _negative(values: np.ndarray, base: Optional[float]) -> np.ndarray:
    """Where the divergence is negative in nats: values below 0, or above 0 with a
    base below 1 (whose log is negative)."""
    return values > 0 if base is not None and base < 1 else values < 0


def _negative_note(count: int, total: int, what: str, p_row: str, p_sum: float, q_row: str,
                   q_sum: float, base: Optional[float]) -> str:
    sign = " (in nats; base < 1 turns their sign)" if base is not None and base < 1 else ""
    return (f"note: {count:,} of {total:,} {what} divergences are negative{sign} (the first: P's {p_row} sums "
            f"to {p_sum:.6g}, Q's {q_row} to {q_sum:.6g}); KL is non-negative only between distributions "
            f"of equal sums: pass --normalize to divide each by its sum")


def _row_phrase(table: Table, r: int) -> str:
    """"row 3", "line 7": distribution r of a table (its only one when it has one)."""
    if table.data.ndim == 1:
        return "distribution"
    return table.name_row(r if table.rows().shape[0] > 1 else 0)


def compute(p_path: str, q_path: str, *, axis: int = -1, normalize: bool = False,
            base: Optional[float] = None, dx: Optional[float] = None, js: bool = False,
            out_path: Optional[str] = None, force: bool = False, key: Optional[str] = None,
            q_key: Optional[str] = None, chunk_rows: Optional[int] = None,
            show_progress: bool = True, note: Callable[[str], None] = print) -> int:
    """``kl-fast compute``: KL(P_i || Q_i) (JS with ``js``) for every distribution in P."""
    import kl_fast
    from kl_fast._validation import result_dtype

    _check_options(base, dx, normalize, js)
    if chunk_rows is not None and chunk_rows < 1:
        raise CommandError(f"--chunk-rows must be at least 1, got {chunk_rows}")
    _check_inputs(p_path, q_path)
    if out_path is not None:
        _check_out(out_path, (("P", p_path), ("Q", q_path)), force)

    P, Q = _load_pair(p_path, q_path, axis, key, q_key, show_progress)
    pr, qr = P.rows(), Q.rows()
    if pr.shape[1] != qr.shape[1]:
        raise CommandError(f"{Q.source}: wrong shape: its distributions have {qr.shape[1]} values, "
                           f"those of P ({p_path}) have {pr.shape[1]}")
    mp, mq = pr.shape[0], qr.shape[0]
    if mp != mq and 1 not in (mp, mq):
        raise CommandError(f"{Q.source}: wrong shape: {mq} distributions against {mp} in P ({p_path}); "
                           f"Q must hold one distribution or as many as P")
    m, n = (mq if mp == 1 else mp), pr.shape[1]
    dtype = result_dtype(pr, qr)
    if chunk_rows is None:
        chunk_rows = max(1, CHUNK_BYTES // max(1, n * pr.dtype.itemsize))
    func = kl_fast.js_div if js else kl_fast.kl_div
    options: Dict[str, Any] = dict(axis=-1, normalize=normalize, base=base)
    if dx is not None:
        options["dx"] = dx
    result = np.empty(m, dtype=dtype)
    starts = range(0, m, chunk_rows)
    bar = Progress(m, "rows", enabled=show_progress and len(starts) > 1)
    mapped = 0
    for start in starts:
        stop = min(m, start + chunk_rows)
        pc = pr[start:stop] if mp > 1 else pr
        qc = qr[start:stop] if mq > 1 else qr
        try:
            func(pc, qc, out=result[start:stop], **options)
        except ValueError as exc:
            bar.close()
            offsets = (start if mp > 1 else 0, start if mq > 1 else 0)
            raise _explain_failure((P, Q), (pc, qc), offsets, normalize, exc) from None
        bar.update(stop)
        mapped += (stop - start) * n * (pr.dtype.itemsize + qr.dtype.itemsize)
        if mapped >= REMAP_BYTES:
            # Pages of a memory map count as resident until it is closed: close it now
            # and then so that files larger than memory stream through.
            del pc, qc
            P.remap()
            Q.remap()
            pr, qr, mapped = P.rows(), Q.rows(), 0
    bar.close()
    del pr, qr

    what = "JS" if js else "KL"
    negative = "" if normalize else _compute_negative_note(result, P, Q, what, base)
    scalar = P.data.ndim == 1 and Q.data.ndim == 1
    if out_path is None:
        sys.stdout.write("".join(v + "\n" for v in _format_values(result)))
    else:
        _release(P, Q)
        _write_values(out_path, result.reshape(()) if scalar else result,
                      lambda: (v + "\n" for v in _format_values(result)))
        note(f"wrote {m:,} {what} divergence{'s' if m != 1 else ''} ({result.dtype}) to {out_path}")
    if negative:
        sys.stdout.flush()
        print(f"{PROG} compute: {negative}", file=sys.stderr)
    return 0


def _compute_negative_note(result: np.ndarray, P: Table, Q: Table, what: str,
                           base: Optional[float]) -> str:
    negative = np.flatnonzero(_negative(result, base))
    if negative.size == 0:
        return ""
    r = int(negative[0])
    return _negative_note(int(negative.size), result.size, what, _row_phrase(P, r), P.row_sum(r),
                          _row_phrase(Q, r), Q.row_sum(r), base)


def _load_pair(p_path: str, q_path: Optional[str], axis: int, key: Optional[str], q_key: Optional[str],
               show_progress: bool) -> Tuple[Table, Table]:
    """P and Q (Q is P when q_path is None); --key picks the array of an .npz input, --q-key Q's."""
    if q_path is None and q_key is not None:
        raise CommandError(f"--q-key {q_key}: there is no Q (the pairs are within P); use --key")
    P = load_table(p_path, "P", axis, key, show_progress=show_progress)
    if q_path is None:
        Q = P
    else:
        Q = load_table(q_path, "Q", axis, key if q_key is None else q_key,
                       key_option="--key" if q_key is None else "--q-key", show_progress=show_progress)
    if key is not None and P.key is None and Q.key is None:
        raise CommandError(f"--key {key}: picks an array of an .npz input, and no input is one")
    if q_key is not None and Q.key is None:
        raise CommandError(f"--q-key {q_key}: picks the array of an .npz Q, and {Q.source} is not one")
    return P, Q


def pairwise(p_path: str, q_path: Optional[str], *, axis: int = -1, normalize: bool = False,
             base: Optional[float] = None, js: bool = False, out_path: Optional[str] = None,
             force: bool = False, key: Optional[str] = None, q_key: Optional[str] = None,
             show_progress: bool = True, note: Callable[[str], None] = print,
             topk: Optional[int] = None) -> int:
    """``kl-fast pairwise``: the m x k matrix of KL(P_i || Q_j) (JS with ``js``); Q None: P with
    itself.  With ``topk``, the topk nearest rows of Q per row of P instead (kl_topk)."""
    import kl_fast

    _check_options(base)
    _check_inputs(p_path, q_path)
    if topk is not None and topk < 0:
        raise CommandError(f"--topk must be a non-negative integer, got {topk}")
    if out_path is not None:
        inputs = [("P", p_path)] + ([("Q", q_path)] if q_path is not None else [])
        _check_out(out_path, inputs, force,
                   TOPK_SUFFIXES if topk is not None else OUT_SUFFIXES)
    P, Q = _load_pair(p_path, q_path, axis, key, q_key, show_progress)
    pr, qr = P.rows(), Q.rows()
    if pr.shape[1] != qr.shape[1]:
        raise CommandError(f"{Q.source}: wrong shape: its distributions have {qr.shape[1]} values, "
                           f"those of P ({p_path}) have {pr.shape[1]}")
    if topk is not None:
        return _topk(P, Q, pr, qr if q_path is not None else pr, topk, normalize=normalize,
                     base=base, js=js, out_path=out_path, note=note)
    func = kl_fast.js_pairwise if js else kl_fast.kl_pairwise
    try:
        matrix = func(pr, None if q_path is None else qr, base=base, normalize=normalize)
    except ValueError as exc:
        tables = (P,) if q_path is None else (P, Q)
        raise _explain_failure(tables, (pr, qr), (0, 0), normalize, exc) from None
    del pr, qr

    what = "JS" if js else "KL"
    negative = ""
    if not normalize:
        where = np.argwhere(_negative(matrix, base))
        if where.size:
            i, j = int(where[0][0]), int(where[0][1])
            negative = _negative_note(len(where), matrix.size, what, _row_phrase(P, i), P.row_sum(i),
                                      _row_phrase(Q, j), Q.row_sum(j), base)
    sep = "," if out_path is None or out_path.lower().endswith(".csv") else " "

    def lines() -> Iterable[str]:
        for row in matrix:
            yield sep.join(_format_values(row)) + "\n"

    if out_path is None:
        sys.stdout.writelines(lines())
    else:
        _release(P, Q)
        _write_values(out_path, matrix, lines)
        m, k = matrix.shape
        note(f"wrote a {m:,} x {k:,} matrix of {what} divergences ({matrix.dtype}) to {out_path}")
    if negative:
        sys.stdout.flush()
        print(f"{PROG} pairwise: {negative}", file=sys.stderr)
    return 0


TOPK_SUFFIXES = (".npz", ".csv", ".txt")


def _topk(P, Q, pr: np.ndarray, qr: np.ndarray, k: int, *, normalize: bool,
          base: Optional[float], js: bool, out_path: Optional[str],
          note: Callable[[str], None]) -> int:
    """``kl-fast pairwise --topk K``: per row of P, the K nearest rows of Q (kl_topk)."""
    import kl_fast

    if k > qr.shape[0]:
        raise CommandError(f"--topk {k}: Q has only {qr.shape[0]:,} distributions")
    try:
        values, indices = kl_fast.kl_topk(pr, qr, k, divergence="js" if js else "kl",
                                          normalize=normalize, base=base)
    except ValueError as exc:
        raise _explain_failure((P, Q), (pr, qr), (0, 0), normalize, exc) from None

    def lines() -> Iterable[str]:
        for vrow, irow in zip(values, indices):
            yield ",".join(f"{j}:{v}" for j, v in zip(irow.tolist(), _format_values(vrow))) + "\n"

    what = "JS" if js else "KL"
    if out_path is None:
        sys.stdout.writelines(lines())
        return 0
    _release(P, Q)
    try:
        if out_path.lower().endswith(".npz"):
            with open(out_path, "wb") as bfh:   # the name as given (see _write_values)
                np.savez(bfh, values=values, indices=indices)
        else:
            with open(out_path, "w") as fh:
                fh.writelines(lines())
    except OSError as exc:
        raise CommandError(f"--out {out_path}: cannot write ({exc.strerror or exc})") from None
    note(f"wrote the {k} nearest by {what} for each of {values.shape[0]:,} distributions "
         f"(values {values.dtype} and indices) to {out_path}")
    return 0


# --------------------------------------------------------------------------- main


def _add_common_options(c: argparse.ArgumentParser) -> None:
    """The options compute and pairwise share."""
    c.add_argument("--axis", type=int, default=-1,
                   help="axis along which each distribution lies (default -1: one per row; 0: one per column)")
    c.add_argument("--normalize", action="store_true", help="divide each distribution by its sum first")
    c.add_argument("--base", type=float, default=None, help="logarithm base (2 gives bits; default e)")
    c.add_argument("--out", metavar="FILE", help="write the values to FILE (.npy, .csv or .txt)")
    c.add_argument("--force", action="store_true",
                   help="let --out overwrite an input file (refused otherwise)")
    c.add_argument("--key", metavar="NAME", default=None,
                   help="the array NAME of an .npz input (P, and Q unless --q-key); not needed for an "
                        ".npz holding one array")
    c.add_argument("--q-key", metavar="NAME", default=None, help="the array NAME of an .npz Q")


def build_parser() -> argparse.ArgumentParser:
    from kl_fast import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="kl_fast from the command line: the tutorial as a demo, the benchmark table, "
                    "and KL divergences between distributions stored in files.",
    )
    parser.add_argument("--version", action="version", version=f"kl_fast {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{demo,bench,compute,pairwise}")

    d = sub.add_parser("demo", help="reproduce the KL tutorial: values, fits, speed, figures",
                       description="Reproduce the KL-divergence tutorial with kl_fast: the three "
                                   "divergences on the grid against their closed forms, the asymmetry, "
                                   "the gradient-descent and Newton fits, a speed comparison with NumPy, "
                                   f"and PNG figures (needs matplotlib: {PLOT_HINT}).")
    d.add_argument("--out", metavar="DIR", default="kl_fast_demo",
                   help="directory for the figures (default: ./kl_fast_demo)")

    b = sub.add_parser("bench", help="speed-up table against the NumPy baseline",
                       description="Time kl_fast against the NumPy baseline (and SciPy, numba when "
                                   "installed) and print the ratio table; the kl_fast.dask rows are "
                                   "timed against in-memory kl_fast.kl_div instead. Progress, with the "
                                   "time elapsed and an estimate of the time left, goes to stderr. "
                                   f"A full run takes about {BENCH_FULL_MINUTES} minutes, --quick about "
                                   f"{BENCH_QUICK_SECONDS} seconds ({BENCH_TIMED_ON}); --only runs less.")
    b.add_argument("--quick", action="store_true",
                   help=f"smaller inputs and fewer repeats (about {BENCH_QUICK_SECONDS} seconds)")
    b.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    b.add_argument("--plot", metavar="FILE", help="also draw a bar chart of the speed-ups (PNG, or the format "
                   "of the file's suffix: .pdf, .svg, ...)")
    b.add_argument("--only", metavar="TOPIC", action="append",
                   help="run only this topic (repeatable), e.g. kl")
    b.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    c = sub.add_parser("compute", help="KL(P || Q) for distributions stored in files",
                       description="KL(P_i || Q_i) (or JS with --js) for every distribution P_i in P. "
                                   "Files: .npy (memory-mapped, processed in chunks of rows), .npz "
                                   "(one array of the archive, see --key), or .csv/.txt (one distribution "
                                   "per line; # starts a comment; read in chunks). - reads one of the "
                                   "inputs from standard input (.npy, .npz or text, told apart by the "
                                   "first bytes; text is comma-separated when its first line holds a "
                                   "comma). Q may hold a single distribution, used for every row of P. "
                                   "Prints one value per line, or writes them with --out (.npy, .csv or "
                                   ".txt) and says what it wrote.")
    c.add_argument("p", metavar="P", help="file of distributions P (.npy, .npz, .csv or .txt; - for stdin)")
    c.add_argument("q", metavar="Q", help="file of distributions Q: one, or as many as P")
    _add_common_options(c)
    c.add_argument("--dx", type=float, default=None,
                   help="grid spacing: multiply each KL by dx, so density values on a uniform grid give "
                        "the continuous divergence (KL only; not with --normalize)")
    c.add_argument("--js", action="store_true", help="Jensen-Shannon divergence (js_div) instead of KL")
    c.add_argument("--chunk-rows", type=int, metavar="N", default=None,
                   help="distributions per chunk (default: about 32 MB of P per chunk)")
    c.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    w = sub.add_parser("pairwise", help="the matrix of KL(P_i || Q_j) for all pairs",
                       description="The m x k matrix of KL(P_i || Q_j) (kl_pairwise; JS with --js, "
                                   "js_pairwise) for the m distributions of P and the k of Q; without "
                                   "Q, all pairs within P. Inputs as for compute. Prints one row of the "
                                   "matrix per line (comma-separated), or writes it with --out (.npy, "
                                   ".csv or .txt).")
    w.add_argument("p", metavar="P", help="file of distributions P (.npy, .npz, .csv or .txt; - for stdin)")
    w.add_argument("q", metavar="Q", nargs="?", default=None,
                   help="file of distributions Q (default: P, all pairs within P)")
    _add_common_options(w)
    w.add_argument("--js", action="store_true", help="Jensen-Shannon divergences (js_pairwise) instead of KL")
    w.add_argument("--topk", type=int, metavar="K", default=None,
                   help="only the K nearest distributions of Q for each of P (kl_topk, ascending, "
                        "ties to the lower index), without forming the matrix; prints 'j:value' "
                        "pairs per line, or writes --out .npz (arrays values and indices), .csv or .txt")
    w.add_argument("--no-progress", action="store_true", help="no progress bar on stderr (reading large text)")
    for command in (d, b, c, w):
        command.set_defaults(parser=command)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the ``kl-fast`` command; returns the exit status."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # after the command: the command's own usage (the top level's lists none of
        # its options); before it, the top level's
        words = list(sys.argv[1:] if argv is None else argv)
        after = args.command is not None and unknown[0] in words \
            and words.index(unknown[0]) > words.index(args.command)
        (args.parser if after else parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        if args.command == "demo":
            return demo(args.out, say=lambda s: print(s, flush=True))
        if args.command == "bench":
            return bench(args.quick, args.json, args.plot, args.only, show_progress=not args.no_progress)
        if args.command == "pairwise":
            return pairwise(args.p, args.q, axis=args.axis, normalize=args.normalize, base=args.base,
                            js=args.js, out_path=args.out, force=args.force, key=args.key,
                            q_key=args.q_key, show_progress=not args.no_progress, topk=args.topk)
        return compute(args.p, args.q, axis=args.axis, normalize=args.normalize, base=args.base,
                       dx=args.dx, js=args.js, out_path=args.out, force=args.force, key=args.key,
                       q_key=args.q_key, chunk_rows=args.chunk_rows, show_progress=not args.no_progress)
    except CommandError as exc:
        sys.stdout.flush()
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into e.g. `head`: stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
