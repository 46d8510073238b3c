"""The ``kl-fast`` command: the tutorial as a demo, the benchmark table, KL over files.

    kl-fast demo [--out DIR]
    kl-fast bench [--quick] [--json FILE] [--plot FILE] [--only TOPIC]
    kl-fast compute P Q [--axis A] [--normalize] [--base B] [--out FILE] [--chunk-rows N]

``python -m kl_fast`` is the same command.  Figures need matplotlib
(``pip install "kl_fast[plot]"``); everything else needs only NumPy.

Exit status: 0 on success, 2 for a usage error or bad input (a one-line message
on stderr naming the file and the problem, never a traceback).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, List, Literal, Optional, Sequence, TypedDict, Union

import numpy as np

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

    Examples
    --------
    >>> import io
    >>> bar = Progress(4, "rows", stream=io.StringIO())
    >>> for done in range(1, 5):
    ...     bar.update(done)
    >>> bar.close()
    """

    width = 24

    def __init__(self, total: int, label: str, *, stream=None, enabled: bool = True):
        self.total = max(int(total), 0)
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self._last_bucket = -1
        self._last_draw = 0.0
        self._drawn = False

    def update(self, done: int, detail: str = "") -> None:
        if not self.enabled:
            return
        frac = 1.0 if self.total == 0 else min(max(done / self.total, 0.0), 1.0)
        filled = int(round(frac * self.width))
        line = (f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
                f"{done:,}/{self.total:,} {detail}").rstrip()
        if self.tty:
            now = time.monotonic()
            if done < self.total and now - self._last_draw < 0.1:
                return
            self._last_draw = now
            self.stream.write("\r\x1b[2K" + line)
            self._drawn = True
        else:
            # Logs get at most one line per tenth of the work.
            bucket = int(frac * 10)
            if bucket == self._last_bucket:
                return
            self._last_bucket = bucket
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
         lambda: reference.gaussian_kl_grad(p, x, 0.5, 1.5)),
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
    written.append((path, "KL per iteration for both methods (log scale)"))
    for path, what in written:
        say(f"   {path}: {what}")
    return 0


def _save(fig, path: str) -> None:
    try:
        fig.savefig(path, format="png", dpi=110)
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
    ax.plot(x, p, color="black", lw=2.5, label="p = N(0, 2)")
    cmap = colormaps["viridis"]
    shown = list(range(0, len(gd.steps), 10))
    for j, i in enumerate(shown):
        q = _grid_q(x, gd.mu[i], gd.sigma[i], dx)
        ax.plot(x, q, color=cmap(j / max(len(shown) - 1, 1)), lw=1.2,
                label=f"GD epoch {int(gd.steps[i])}" if j in (0, len(shown) - 1) else None)
    qn = _grid_q(x, newton.mu[-1], newton.sigma[-1], dx)
    ax.plot(x, qn, color="tab:red", lw=2, ls="--",
            label=f"Newton: mu = {newton.mu[-1]:.3g}, sigma = {newton.sigma[-1]:.4f}")
    ax.set_title("Fitting q to p by gradient descent on KL(p || q), every 10th epoch")
    ax.set_xlabel("x")
    ax.set_ylabel(f"density (q shown as q_i / dx, dx = {dx:g})")
    ax.legend()
    _save(fig, path)


def _plot_history(Figure, path, gd: FitTrace, newton: FitTrace) -> None:
    best = min(float(np.min(gd.kl)), float(np.min(newton.kl)))
    fig = Figure(figsize=(10.0, 4.0), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
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
    _save(fig, path)


# --------------------------------------------------------------------------- bench


def bench_topics() -> List[str]:
    """Topics of the benchmark table: one per ``kl_fast.bench.cases_<topic>`` module."""
    import pkgutil

    from kl_fast import bench

    return sorted(i.name[len("cases_"):] for i in pkgutil.iter_modules(bench.__path__)
                  if i.name.startswith("cases_"))


def bench(quick: bool, json_path: Optional[str], plot_path: Optional[str],
          only: Optional[Sequence[str]], show_progress: bool = True) -> int:
    import json

    from kl_fast.bench.runner import discover_cases, environment, format_table, run, steady_allocator

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
    bar.update(0, cases[0].group if cases else "")

    def progress(group, impl):
        bar.update(index[group], f"{group} / {impl}")

    try:
        results = run(cases, quick=quick, progress=progress)
        bar.update(len(cases), "done")
    finally:
        bar.close()
    env = environment()
    env["allocator"] = allocator
    print(format_table(results, env))
    memory: List[str] = []
    if not only or "kl" in only:
        from kl_fast.bench import cases_kl

        report = getattr(cases_kl, "memory_report", None)
        memory = report(quick) if report is not None else []
        if memory:
            print()
            print("| memory | tracemalloc | extra |")
            print("|---|---:|---:|")
            print("\n".join(memory))
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


def _plot_speedups(Figure, path: str, results) -> None:
    bars = [r for r in results if r.impl != r.baseline and r.speedup]
    labels = [f"{r.group}: {r.impl}" for r in bars]
    values = [r.speedup for r in bars]
    colors = ["tab:blue" if r.impl.startswith("kl_fast") else "tab:gray" for r in bars]
    fig = Figure(figsize=(10.0, 1.0 + 0.28 * max(len(bars), 1)), layout="constrained")
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
    ax.set_xlabel("speed-up vs the NumPy baseline (baseline time / time; log scale; 1 = baseline)")
    ax.set_title("kl_fast (blue) and peers (grey) against the NumPy baseline, one run")
    _save(fig, path)


# --------------------------------------------------------------------------- compute

TEXT_SUFFIXES = (".csv", ".txt")
CHUNK_BYTES = 32 << 20    # default size of the P part of a chunk
REMAP_BYTES = 128 << 20   # reopen memory maps after reading this much


@dataclass
class Table:
    """A distribution file: the array as stored, and how to name places in it."""

    path: str
    role: str                 # "P" or "Q"
    data: np.ndarray          # as stored: 1-D or 2-D, memory-mapped for .npy
    text: bool                # .csv/.txt: one distribution per line
    transposed: bool = False  # distributions are the file's columns (--axis 0)

    def remap(self) -> None:
        """Drop the memory map and open a fresh one, so pages already read leave memory."""
        if not self.text:
            self.data = np.load(self.path, mmap_mode="r", allow_pickle=False)

    def rows(self) -> np.ndarray:
        """The distributions as rows of a 2-D view (no copy)."""
        d = self.data if self.data.ndim == 2 else self.data.reshape(1, -1)
        return d.T if self.transposed else d

    def place(self, r: int, c: int) -> str:
        """Where element c of distribution r is, in the file's own terms."""
        i, j = (c, r) if self.transposed else (r, c)
        if self.text:
            return f"line {_data_line_numbers(self.path)[i]}, column {j + 1}"
        if self.data.ndim == 1:
            return f"index [{j}]"
        return f"index [{i}, {j}]"

    def name_row(self, r: int) -> str:
        if self.text:
            if self.transposed:
                return f"column {r + 1}"
            return f"line {_data_line_numbers(self.path)[r]}"
        if self.data.ndim == 1:
            return "the distribution"
        return f"column {r}" if self.transposed else f"row {r}"


def _is_data_line(line: str) -> bool:
    return bool(line.split("#", 1)[0].strip())


def _data_line_numbers(path: str) -> List[int]:
    """1-based line numbers of the lines holding data (blank and # comment lines skipped)."""
    with open(path, "r", errors="replace") as fh:
        return [k for k, line in enumerate(fh, start=1) if _is_data_line(line)]


def _text_problem(path: str, delimiter: Optional[str]) -> str:
    """Find the first unreadable value or ragged line of a text file, for the error message."""
    width = None
    first = None
    with open(path, "r", errors="replace") as fh:
        for k, line in enumerate(fh, start=1):
            body = line.split("#", 1)[0]
            if not body.strip():
                continue
            fields = [f.strip() for f in body.split(delimiter)] if delimiter else body.split()
            for j, f in enumerate(fields, start=1):
                try:
                    float(f)
                except ValueError:
                    shown = f if len(f) <= 40 else f[:37] + "..."
                    hint = " (a header line? remove it or start it with #)" if first is None else ""
                    if f == "":
                        return f"line {k}, column {j}: empty field{hint}"
                    return f"line {k}, column {j}: {shown!r} is not a number{hint}"
            if width is None:
                width, first = len(fields), k
            elif len(fields) != width:
                return (f"wrong shape: line {k} has {len(fields)} values but line {first} has {width}; "
                        f"every line must hold one distribution of the same length")
    return ""


def _unparsed_line(lines: List[str], delimiter: Optional[str]) -> str:
    """The first line the parser rejects on its own, for the error message."""
    import warnings

    for k, line in enumerate(lines, start=1):
        if not line:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                np.loadtxt([line], delimiter=delimiter, comments="#", dtype=np.float64)
        except ValueError:
            shown = line.strip()
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            return f"line {k}: {shown!r} is not a line of numbers"
    return "the values cannot be read as numbers"


def _read_text(path: str, role: str) -> np.ndarray:
    import warnings

    delimiter = "," if path.lower().endswith(".csv") else None
    try:
        with open(path, "rb") as fh:
            if b"\0" in fh.read(4096):
                raise CommandError(f"{role} file {path}: binary data in a text file")
    except OSError as exc:
        raise CommandError(f"{role} file {path}: cannot read ({exc.strerror})") from None
    try:
        with open(path, "r", encoding="utf-8") as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        with open(path, "rb") as fh:
            line = fh.read()[:exc.start].count(b"\n") + 1
        raise CommandError(f"{role} file {path}: line {line}: not UTF-8 text") from None
    except OSError as exc:
        raise CommandError(f"{role} file {path}: cannot read ({exc.strerror})") from None
    # Blank lines (also whitespace-only, or only a comment) are skipped; they are
    # kept as empty lines so the parser's line numbers stay those of the file.
    lines = [line if line.split("#", 1)[0].strip() else "" for line in text.split("\n")]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data" is reported below
            data = np.loadtxt(lines, delimiter=delimiter, comments="#", ndmin=2, dtype=np.float64)
    except ValueError:
        problem = _text_problem(path, delimiter) or _unparsed_line(lines, delimiter)
        raise CommandError(f"{role} file {path}: {problem}") from None
    if data.size == 0:
        raise CommandError(f"{role} file {path}: no numbers in the file")
    return data


NPY_MAGIC = b"\x93NUMPY"


def _read_npy(path: str, role: str) -> np.ndarray:
    try:
        with open(path, "rb") as fh:
            magic = fh.read(len(NPY_MAGIC))
    except OSError as exc:
        raise CommandError(f"{role} file {path}: cannot read ({exc.strerror or exc})") from None
    if magic != NPY_MAGIC:
        what = "an empty file" if not magic else "no .npy header"
        raise CommandError(f"{role} file {path}: not a valid .npy file ({what})")
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "allow_pickle" in msg or "Python objects" in msg:
            raise CommandError(f"{role} file {path}: holds Python objects, not numbers") from None
        if "mmap" in msg or "length" in msg:
            raise CommandError(f"{role} file {path}: not a valid .npy file (truncated: {msg})") from None
        raise CommandError(f"{role} file {path}: not a valid .npy file ({msg})") from None
    except OSError as exc:
        raise CommandError(f"{role} file {path}: cannot read ({exc.strerror or exc})") from None
    except Exception as exc:  # np.load's parser raises several kinds on corrupt headers
        raise CommandError(f"{role} file {path}: not a valid .npy file ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, np.ndarray):
        raise CommandError(f"{role} file {path}: an .npz archive, not a single .npy array")
    if data.dtype.kind not in "biuf":
        raise CommandError(f"{role} file {path}: holds {data.dtype} values; the distributions must be "
                           f"real numbers")
    return data


def load_table(path: str, role: str, axis: int) -> Table:
    """Read ``path`` (P or Q): .npy memory-mapped, .csv/.txt parsed; check its shape."""
    low = path.lower()
    if not (low.endswith(".npy") or low.endswith(TEXT_SUFFIXES)):
        ext = os.path.splitext(path)[1] or "(no extension)"
        raise CommandError(f"{role} file {path}: unsupported file type {ext}; use .npy, .csv or .txt")
    if not os.path.exists(path):
        raise CommandError(f"{role} file {path}: no such file")
    if os.path.isdir(path):
        raise CommandError(f"{role} file {path}: is a directory, not a file")
    text = not low.endswith(".npy")
    data = _read_text(path, role) if text else _read_npy(path, role)
    if data.ndim not in (1, 2):
        raise CommandError(f"{role} file {path}: wrong shape {data.shape}; expected one distribution "
                           f"(1-D) or one distribution per row (2-D)")
    if data.ndim == 1 and axis not in (0, -1):
        raise CommandError(f"{role} file {path}: --axis {axis} does not exist for a 1-D array (shape "
                           f"{data.shape}); use 0 or -1")
    if data.ndim == 2 and axis not in (0, 1, -1, -2):
        raise CommandError(f"{role} file {path}: --axis {axis} does not exist for a 2-D array (shape "
                           f"{data.shape}); use 0, 1, -1 or -2")
    transposed = data.ndim == 2 and axis in (0, -2)
    return Table(path, role, data, text, transposed)


def _first_bad(rows: np.ndarray):
    """(row, col, value) of the first negative, NaN or infinite value in rows, or None."""
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(rows) | (rows < 0)
    if not bad.any():
        return None
    r, c = np.argwhere(bad)[0]
    return int(r), int(c), rows[r, c]


def _describe(value) -> str:
    v = float(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return f"an infinite value ({v!r})"
    return f"a negative value ({v!r})"


def _explain_failure(tables, chunks, offsets, normalize: bool, exc: ValueError) -> CommandError:
    """Turn kl_div's ValueError on a chunk into a message about a place in a file."""
    for table, rows, off in zip(tables, chunks, offsets):
        found = _first_bad(np.asarray(rows))
        if found is not None:
            r, c, v = found
            return CommandError(f"{table.role} file {table.path}: {_describe(v)} at {table.place(off + r, c)}; "
                                f"probabilities must be finite and non-negative")
    if normalize:
        for table, rows, off in zip(tables, chunks, offsets):
            sums = np.asarray(rows, dtype=np.float64).sum(axis=1)
            zero = np.flatnonzero(~(sums > 0))
            if zero.size:
                r = int(zero[0])
                return CommandError(f"{table.role} file {table.path}: {table.name_row(off + r)} sums to "
                                    f"{float(sums[r])!r}; --normalize needs every distribution to have a positive sum")
    return CommandError(str(exc))


def _format_values(values: np.ndarray) -> List[str]:
    """Shortest strings that read back to the same float32/float64 values."""
    if values.dtype == np.float64:
        return [repr(v) for v in values.tolist()]
    return [str(v) for v in values]


def compute(p_path: str, q_path: str, *, axis: int = -1, normalize: bool = False,
            base: Optional[float] = None, out_path: Optional[str] = None,
            chunk_rows: Optional[int] = None, show_progress: bool = True) -> int:
    import kl_fast
    from kl_fast._validation import result_dtype

    if base is not None and not (base > 0 and math.isfinite(base) and base != 1):
        raise CommandError(f"--base must be positive, finite and not 1, got {base!r}")
    if chunk_rows is not None and chunk_rows < 1:
        raise CommandError(f"--chunk-rows must be at least 1, got {chunk_rows}")
    if out_path is not None:
        if not out_path.lower().endswith((".npy",) + TEXT_SUFFIXES):
            ext = os.path.splitext(out_path)[1] or "(no extension)"
            raise CommandError(f"--out {out_path}: unsupported file type {ext}; use .npy, .csv or .txt")
        _check_writable_dir(out_path, "--out")

    P = load_table(p_path, "P", axis)
    Q = load_table(q_path, "Q", axis)
    pr, qr = P.rows(), Q.rows()
    if pr.shape[1] != qr.shape[1]:
        raise CommandError(f"Q file {q_path}: wrong shape: its distributions have {qr.shape[1]} values, "
                           f"those of P ({p_path}) have {pr.shape[1]}")
    mp, mq = pr.shape[0], qr.shape[0]
    if mp != mq and 1 not in (mp, mq):
        raise CommandError(f"Q file {q_path}: wrong shape: {mq} distributions against {mp} in P ({p_path}); "
                           f"Q must hold one distribution or as many as P")
    m, n = (mq if mp == 1 else mp), pr.shape[1]
    dtype = result_dtype(pr, qr)
    if chunk_rows is None:
        chunk_rows = max(1, CHUNK_BYTES // max(1, n * pr.dtype.itemsize))
    result = np.empty(m, dtype=dtype)
    starts = range(0, m, chunk_rows)
    bar = Progress(m, "rows", enabled=show_progress and len(starts) > 1)
    mapped = 0
    for start in starts:
        stop = min(m, start + chunk_rows)
        pc = pr[start:stop] if mp > 1 else pr
        qc = qr[start:stop] if mq > 1 else qr
        try:
            kl_fast.kl_div(pc, qc, axis=-1, normalize=normalize, base=base, out=result[start:stop])
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

    scalar = P.data.ndim == 1 and Q.data.ndim == 1
    value = result.reshape(()) if scalar else result
    lines = "".join(v + "\n" for v in _format_values(result))
    if out_path is None:
        sys.stdout.write(lines)
        return 0
    try:
        if out_path.lower().endswith(".npy"):
            np.save(out_path, value)
        else:
            with open(out_path, "w") as fh:
                fh.write(lines)
    except OSError as exc:
        raise CommandError(f"--out {out_path}: cannot write ({exc.strerror or exc})") from None
    return 0


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    from kl_fast import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="kl_fast from the command line: the tutorial as a demo, the benchmark table, "
                    "and KL divergences between distributions stored in files.",
    )
    parser.add_argument("--version", action="version", version=f"kl_fast {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{demo,bench,compute}")

    d = sub.add_parser("demo", help="reproduce the KL tutorial: values, fits, speed, figures",
                       description="Reproduce the KL-divergence tutorial with kl_fast: the three "
                                   "divergences on the grid against their closed forms, the asymmetry, "
                                   "the gradient-descent and Newton fits, a speed comparison with NumPy, "
                                   f"and PNG figures (needs matplotlib: {PLOT_HINT}).")
    d.add_argument("--out", metavar="DIR", default="kl_fast_demo",
                   help="directory for the figures (default: ./kl_fast_demo)")

    b = sub.add_parser("bench", help="speed-up table against the NumPy baseline",
                       description="Time kl_fast against the NumPy baseline (and SciPy, numba when "
                                   "installed) and print the ratio table. Progress goes to stderr.")
    b.add_argument("--quick", action="store_true", help="smaller inputs and fewer repeats")
    b.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    b.add_argument("--plot", metavar="FILE", help="also draw a bar chart of the speed-ups (PNG)")
    b.add_argument("--only", metavar="TOPIC", action="append",
                   help="run only this topic (repeatable), e.g. kl")
    b.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    c = sub.add_parser("compute", help="KL(P || Q) for distributions stored in files",
                       description="KL(P_i || Q_i) for every distribution P_i in P. Files: .npy "
                                   "(memory-mapped, processed in chunks of rows) or .csv/.txt (one "
                                   "distribution per line; # starts a comment). Q may hold a single "
                                   "distribution, used for every row of P. Prints one value per line, "
                                   "or writes them with --out (.npy, .csv or .txt).")
    c.add_argument("p", metavar="P", help="file of distributions P (.npy, .csv or .txt)")
    c.add_argument("q", metavar="Q", help="file of distributions Q: one, or as many as P")
    c.add_argument("--axis", type=int, default=-1,
                   help="axis along which each distribution lies (default -1: one per row; 0: one per column)")
    c.add_argument("--normalize", action="store_true", help="divide each distribution by its sum first")
    c.add_argument("--base", type=float, default=None, help="logarithm base (2 gives bits; default e)")
    c.add_argument("--out", metavar="FILE", help="write the values to FILE (.npy, .csv or .txt)")
    c.add_argument("--chunk-rows", type=int, metavar="N", default=None,
                   help="distributions per chunk (default: about 32 MB of P per chunk)")
    c.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the ``kl-fast`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        if args.command == "demo":
            return demo(args.out, say=lambda s: print(s, flush=True))
        if args.command == "bench":
            return bench(args.quick, args.json, args.plot, args.only, show_progress=not args.no_progress)
        return compute(args.p, args.q, axis=args.axis, normalize=args.normalize, base=args.base,
                       out_path=args.out, chunk_rows=args.chunk_rows, show_progress=not args.no_progress)
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
