"""The ``kl-fast`` command, driven as a user would: ``python -m kl_fast ...`` in a subprocess.

The child process imports the kl_fast under test (installed, or via PYTHONPATH=src).
"""
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from scipy.special import rel_entr

import kl_fast
from kl_fast import cli, reference
from kl_fast.bench.runner import discover_cases

try:
    import matplotlib  # noqa: F401

    HAVE_MPL = True
except ImportError:
    HAVE_MPL = False

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOT_HINT = 'pip install "kl_fast[plot]"'
NUMBER = r"(-?(?:\d+\.?\d*(?:e[-+]?\d+)?|inf))"


def run_cli(*args, cwd=None, env=None, timeout=300):
    """Run ``python -m kl_fast ARGS``; returns the CompletedProcess (text mode)."""
    full_env = os.environ.copy()
    full_env.setdefault("MPLBACKEND", "Agg")
    if env:
        full_env.update(env)
    return subprocess.run([sys.executable, "-m", "kl_fast", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=full_env, timeout=timeout)


def without_matplotlib(tmp_path):
    """Environment in which ``import matplotlib`` fails, as on a machine without it."""
    shadow = tmp_path / "no_matplotlib"
    shadow.mkdir()
    (shadow / "matplotlib.py").write_text("raise ImportError(\"No module named 'matplotlib'\")\n")
    path = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": str(shadow) + (os.pathsep + path if path else "")}


def assert_png(path: Path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert len(data) > 1000
    import matplotlib.image

    img = matplotlib.image.imread(str(path))
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


def one_line_error(proc, *fragments):
    """The command failed with status 2 and one stderr line (besides progress) holding every fragment."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines()
             if ln.strip() and not ln.startswith(("rows [", "reading "))]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("kl-fast ") and ": error: " in lines[0]
    for frag in fragments:
        assert frag in lines[0], (frag, lines[0])
    return lines[0]


# ----------------------------------------------------------------------------- entry points


def test_console_script_declared():
    text = (ROOT / "pyproject.toml").read_text()
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = None
    if tomllib is not None:
        meta = tomllib.loads(text)
        assert meta["project"]["scripts"]["kl-fast"] == "_kl_fast_cli:main"
        assert meta["project"]["optional-dependencies"]["plot"] == ["matplotlib>=3.7"]
    else:
        assert re.search(r'^kl-fast = "_kl_fast_cli:main"$', text, re.M)
    from _kl_fast_cli import main

    assert callable(main)
    # Where the package is installed (CI), the script is registered and runs.
    from importlib.metadata import entry_points

    installed = [e for e in entry_points(group="console_scripts") if e.name == "kl-fast"]
    if installed:
        assert installed[0].value == "_kl_fast_cli:main"
        script = shutil.which("kl-fast")
        if script is not None:
            proc = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=120)
            assert proc.returncode == 0 and kl_fast.__version__ in proc.stdout


def test_ctrl_c_while_the_command_starts_exits_130_without_a_traceback(monkeypatch, capsys):
    import types

    import _kl_fast_cli

    class Loading(types.ModuleType):
        def __getattr__(self, name):  # the import is interrupted by a Ctrl-C
            raise KeyboardInterrupt

    monkeypatch.setitem(sys.modules, "kl_fast.cli", Loading("kl_fast.cli"))
    assert _kl_fast_cli.main() == 130
    assert capsys.readouterr().err.strip() == "kl-fast: interrupted"


def test_version_and_help():
    proc = run_cli("--version")
    assert proc.returncode == 0 and kl_fast.__version__ in proc.stdout
    proc = run_cli()
    assert proc.returncode == 2 and "demo" in proc.stderr and "compute" in proc.stderr
    proc = run_cli("compute", "--help")
    assert proc.returncode == 0 and "--chunk-rows" in proc.stdout


@pytest.mark.parametrize("args", [("pairwise", "P.npy", "Q.npy", "--chunk-rows", "2"),
                                  ("compute", "P.npy", "Q.npy", "--bogus"),
                                  ("pairwise", "P.npy", "--dx", "0.1"), ("--bogus",),
                                  ("--bogus", "compute", "P.npy", "Q.npy")])
def test_unknown_option_is_reported_with_its_commands_usage(args):
    """An option the command does not take is reported with that command's usage
    (it was the top level's, which lists no command's options), one before the
    command with the top level's; exit status 2."""
    proc = run_cli(*args)
    assert proc.returncode == 2
    command = "" if args[0].startswith("-") else " " + args[0]
    assert proc.stderr.startswith(f"usage: kl-fast{command} [-h]"), proc.stderr
    assert f"kl-fast{command}: error: unrecognized arguments: " in proc.stderr


# ----------------------------------------------------------------------------- demo

PAIRS = (((0, 2), (2, 2)), ((0, 2), (5, 4)), ((5, 4), (0, 2)))


def normal_kl(m1, s1, m2, s2):
    return math.log(s2 / s1) + (s1 ** 2 + (m1 - m2) ** 2) / (2 * s2 ** 2) - 0.5


def pair_label(a, b):
    return re.escape(f"N({a[0]}, {a[1]}) || N({b[0]}, {b[1]})")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "figures"
    proc = run_cli("demo", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout, out


def test_demo_tutorial_values(demo_run):
    stdout, _ = demo_run
    x = np.arange(-10, 10, 0.001)
    for a, b in PAIRS:
        m = re.search(pair_label(a, b) + r"\s+" + r"\s+".join([NUMBER] * 3), stdout)
        assert m, f"no line for {a} || {b}"
        grid, scaled, exact = map(float, m.groups())
        expected = reference.kl_div(stats.norm.pdf(x, *a), stats.norm.pdf(x, *b))
        assert grid == pytest.approx(expected, rel=1e-10, abs=1e-7)
        assert scaled == pytest.approx(expected * 0.001, abs=1e-9)
        assert exact == pytest.approx(normal_kl(*a, *b), abs=1e-9)
    # The tutorial's numbers (DESIGN.md).
    assert "499.9997171" in stdout and "1099.4021278" in stdout and "2259.9214595" in stdout
    # The explanation: a factor 1/dx, and the tail of N(5, 4) outside the grid.
    assert "1,000 times the continuous KL" in stdout
    outside = stats.norm.sf(10, 5, 4) + stats.norm.cdf(-10, 5, 4)
    assert f"{100 * outside:.1f}% of its mass outside [-10, 10)" in stdout


def test_demo_asymmetry(demo_run):
    stdout, _ = demo_run
    section = stdout.split("2. KL is not symmetric")[1].split("3. ")[0]
    x = np.arange(-10, 10, 0.001)
    for a, b in PAIRS[1:]:
        m = re.search(r"KL\(" + pair_label(a, b) + r"\) = " + NUMBER + " on the grid, " + NUMBER, section)
        assert m
        expected = reference.kl_div(stats.norm.pdf(x, *a), stats.norm.pdf(x, *b))
        assert float(m.group(1)) == pytest.approx(expected, abs=1e-4)
        assert float(m.group(2)) == pytest.approx(normal_kl(*a, *b), abs=1e-4)


def tutorial_gd(p, x, mu, v, lr, epochs):
    """The tutorial's gradient descent on (mu, variance), in NumPy: rows (epoch, kl, mu, v)."""
    def kl_grad(mu, v):
        d = x - mu
        logw = -d * d / (2 * v)
        logq = logw - np.log(np.sum(np.exp(logw)))
        q = np.exp(logq)
        kl = np.sum(p * (np.log(p) - logq))
        g_mu = (p.sum() * np.sum(q * d) - np.sum(p * d)) / v
        g_v = (p.sum() * np.sum(q * d * d) - np.sum(p * d * d)) / (2 * v * v)
        return kl, g_mu, g_v

    rows = []
    _, g_mu, g_v = kl_grad(mu, v)
    for epoch in range(1, epochs + 1):
        mu, v = mu - lr * g_mu, v - lr * g_v
        kl, g_mu, g_v = kl_grad(mu, v)
        rows.append((epoch, kl, mu, v))
    return rows


def test_demo_fits(demo_run):
    stdout, _ = demo_run
    section = stdout.split("3. Fitting")[1].split("4. Speed")[0]
    x = np.arange(-10, 10, 0.001)
    p = stats.norm.pdf(x, 0, 2)
    gd = {int(m.group(1)): tuple(map(float, m.groups()[1:])) for m in re.finditer(
        r"^\s+(\d+)\s+" + r"\s+".join([NUMBER] * 3) + "$", section.split("Newton's method")[0], re.M)}
    assert sorted(gd) == list(range(10, 101, 10))
    for epoch, kl, mu, v in tutorial_gd(p, x, 0.0, 1.0, 0.001, 100):
        if epoch % 10 == 0:
            assert gd[epoch][0] == pytest.approx(kl, abs=1e-6)
            assert gd[epoch][1] == pytest.approx(mu, rel=1e-6, abs=1e-15)
            assert gd[epoch][2] == pytest.approx(v, abs=1e-6)
    # The tutorial's final values (DESIGN.md).
    assert gd[100][2] == pytest.approx(3.9675094, abs=1e-7)
    assert gd[100][0] == pytest.approx(6907.7674169, abs=1e-6)

    newton = [tuple(map(float, m.groups()[1:])) for m in re.finditer(
        r"^\s+(\d+)\s+" + r"\s+".join([NUMBER] * 3) + "$", section.split("Newton's method in")[1], re.M)]
    assert 1 <= len(newton) <= 11
    kl_n, mu_n, sigma_n = newton[-1]
    # The optimum matches p's grid moments: mean and variance of the fitted grid Gaussian.
    w = np.exp(-(x - mu_n) ** 2 / (2 * sigma_n ** 2))
    q = w / w.sum()
    mean_p = np.sum(p * x) / p.sum()
    assert np.sum(q * x) == pytest.approx(mean_p, abs=1e-8)
    var_p = np.sum(p * (x - mean_p) ** 2) / p.sum()
    assert np.sum(q * (x - mean_p) ** 2) == pytest.approx(var_p, rel=1e-8)
    assert kl_n == pytest.approx(reference.kl_div(p, q), abs=1e-6)
    assert sigma_n == pytest.approx(2.0, abs=1e-7)
    assert kl_n < gd[100][0]
    assert re.search(r"Newton reaches\s+KL = " + NUMBER, section)


def test_demo_speed_section(demo_run):
    stdout, _ = demo_run
    section = stdout.split("4. Speed")[1].split("5. Figures")[0]
    for label in ("kl_div float64", "kl_div float32", "gaussian_kl_grad", "tutorial GD fit, 100 epochs",
                  "Newton fit vs NumPy GD loop"):
        assert re.search(re.escape(label) + r"\s+[\d.]+ [mun]?s\s+[\d.]+ [mun]?s\s+[\d,]+\.\dx", section), label


def test_demo_figures(demo_run):
    stdout, out = demo_run
    if not HAVE_MPL:
        assert PLOT_HINT in stdout
        assert not out.exists() or not list(out.glob("*.png"))
        return
    names = ["kl_pair_1.png", "kl_pair_2.png", "kl_pair_3.png"]
    if hasattr(kl_fast, "fit_gaussian"):
        names += ["fit_trajectory.png", "fit_kl_history.png", "fit_kl_surface.png"]
    assert sorted(p.name for p in out.glob("*.png")) == sorted(names)
    for name in names:
        assert_png(out / name)
        assert str(out / name) in stdout


def test_demo_kl_surface_values():
    from kl_fast import cli

    x = np.arange(-10, 10, 0.001)
    p = np.exp(-x ** 2 / 8) / np.sqrt(8 * np.pi)
    mu, sigma, kl, seconds = cli.kl_surface(p, x, size=7)
    assert kl.shape == mu.shape == sigma.shape == (7, 7) and seconds >= 0
    assert (mu.min(), mu.max()) == cli.SURFACE_MU and (sigma.min(), sigma.max()) == cli.SURFACE_SIGMA
    np.testing.assert_array_equal(kl, kl_fast.gaussian_kl(p, x, mu, sigma))
    # the minimum of the mesh lies next to the tutorial's optimum (0, 2)
    i, j = np.unravel_index(np.argmin(kl), kl.shape)
    assert abs(mu[i, j]) <= 0.5 and abs(sigma[i, j] - 2.0) <= 0.4


def test_demo_without_matplotlib(tmp_path):
    out = tmp_path / "figures"
    proc = run_cli("demo", "--out", out, env=without_matplotlib(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert PLOT_HINT in proc.stdout
    assert "499.9997171" in proc.stdout and "4. Speed" in proc.stdout
    assert not out.exists()


# ----------------------------------------------------------------------------- bench


def test_bench_quick_json_plot(tmp_path):
    js, png = tmp_path / "bench.json", tmp_path / "bench.png"
    proc = run_cli("bench", "--quick", "--only", "kl", "--json", js, "--plot", png)
    groups = [c.group for c in discover_cases(True, ["kl"])]
    if not HAVE_MPL:
        one_line_error(proc, "--plot needs matplotlib", PLOT_HINT)
        proc = run_cli("bench", "--quick", "--only", "kl", "--json", js)
    assert proc.returncode == 0, proc.stderr
    # The ratio table on stdout, progress on stderr.
    assert "| case | implementation | time (median) | speed-up vs baseline |" in proc.stdout
    for g in groups:
        assert f"| {g} |" in proc.stdout
    assert "timing [" in proc.stderr and f"{len(groups)}/{len(groups)} done" in proc.stderr
    # The time elapsed, and an estimate of the time left while cases remain.
    assert re.search(rf"{len(groups)}/{len(groups)} done in \d+:\d\d$", proc.stderr, re.M), proc.stderr
    assert re.search(r"\[\d+:\d\d elapsed, about \d+:\d\d left\] ", proc.stderr), proc.stderr
    doc = json.loads(js.read_text())
    assert doc["quick"] is True and doc["environment"]["kl_fast"] == kl_fast.__version__
    assert [g for g in dict.fromkeys(r["group"] for r in doc["results"])] == groups
    for r in doc["results"]:
        assert r["seconds"] > 0
        if r["impl"] == r["baseline"]:
            assert r["speedup"] == 1.0
    assert {r["impl"] for r in doc["results"]} >= {"kl_fast", "numpy reference"}
    if HAVE_MPL:
        assert_png(png)


def test_bench_errors(tmp_path):
    one_line_error(run_cli("bench", "--only", "nosuchtopic"), "--only nosuchtopic", "available: ", "kl")
    one_line_error(run_cli("bench", "--json", tmp_path / "missing" / "b.json"), "--json", "does not exist")
    proc = run_cli("bench", "--plot", tmp_path / "b.png", env=without_matplotlib(tmp_path))
    one_line_error(proc, "--plot needs matplotlib", PLOT_HINT)
    if HAVE_MPL:
        # refused before any timing: PNG bytes under another name were written before
        proc = run_cli("bench", "--plot", tmp_path / "b.xyz")
        one_line_error(proc, "--plot", "b.xyz", "cannot write .xyz files", ".png", ".svg")
        assert not (tmp_path / "b.xyz").exists()
        # a writer that fails here (.pgf needs a TeX system): refused before timing too
        import shutil
        if not (shutil.which("xelatex") or shutil.which("lualatex") or shutil.which("pdflatex")):
            proc = run_cli("bench", "--plot", tmp_path / "b.pgf")
            one_line_error(proc, "--plot", "b.pgf", "cannot write .pgf here")


@pytest.mark.skipif(not HAVE_MPL, reason="matplotlib is an optional extra (the plot extra)")
def test_figures_take_the_format_of_their_suffix(tmp_path):
    from matplotlib.figure import Figure
    starts = {"f.png": b"\x89PNG", "f.svg": b"<?xml", "f.pdf": b"%PDF", "f": b"\x89PNG"}
    for name, start in starts.items():
        fig = Figure()
        fig.add_subplot().plot([0, 1], [1, 0])
        cli._save(fig, str(tmp_path / name))
        assert (tmp_path / name).read_bytes().startswith(start), name


# ----------------------------------------------------------------------------- compute


def parse_values(stdout):
    return np.array([float(v) for v in stdout.split()])


def random_rows(rng, m, n, *, zeros=0.2, dtype=np.float64):
    a = rng.random((m, n))
    a[rng.random((m, n)) < zeros] = 0.0
    return a.astype(dtype)


@pytest.mark.parametrize("fmt", ["npy", "csv", "txt"])
def test_compute_matches_kl_div(tmp_path, rng, fmt):
    P = random_rows(rng, 7, 5)
    Q = random_rows(rng, 7, 5, zeros=0.0) + 0.01
    Q[2, 3] = 0.0  # P[2, 3] > 0 makes that row infinite
    P[2, 3] = 0.5
    paths = []
    for name, a in (("P", P), ("Q", Q)):
        path = tmp_path / f"{name}.{fmt}"
        if fmt == "npy":
            np.save(path, a)
        else:
            np.savetxt(path, a, delimiter="," if fmt == "csv" else " ", fmt="%.17g")
        paths.append(path)
    proc = run_cli("compute", *paths)
    assert proc.returncode == 0, proc.stderr
    got = parse_values(proc.stdout)
    np.testing.assert_array_equal(got, kl_fast.kl_div(P, Q))
    np.testing.assert_allclose(got, reference.kl_div(P, Q), rtol=1e-13)
    assert got[2] == np.inf


def test_compute_single_q_row_options_and_outputs(tmp_path, rng):
    P = random_rows(rng, 6, 4)
    q = rng.random(4) + 0.1
    np.save(tmp_path / "P.npy", P)
    np.save(tmp_path / "q.npy", q)
    np.savetxt(tmp_path / "q.csv", q[None, :], delimiter=",", fmt="%.17g")  # a single line
    for qfile in ("q.npy", "q.csv"):
        proc = run_cli("compute", tmp_path / "P.npy", tmp_path / qfile, "--base", "2", "--normalize")
        assert proc.returncode == 0, proc.stderr
        got = parse_values(proc.stdout)
        np.testing.assert_array_equal(got, kl_fast.kl_div(P, q, base=2, normalize=True))
        expected = stats.entropy(P, q[None, :], base=2, axis=1)
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    # --out in each format.
    expected = kl_fast.kl_div(P, q)
    for name in ("r.npy", "r.csv", "r.txt"):
        proc = run_cli("compute", tmp_path / "P.npy", tmp_path / "q.npy", "--out", tmp_path / name)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == f"wrote {len(P)} KL divergences (float64) to {tmp_path / name}\n"
        back = np.load(tmp_path / name) if name.endswith(".npy") else np.loadtxt(tmp_path / name)
        np.testing.assert_array_equal(back, expected)
    # Distributions as columns.
    proc = run_cli("compute", tmp_path / "P.npy", tmp_path / "P.npy", "--axis", "0")
    np.testing.assert_array_equal(parse_values(proc.stdout), np.zeros(4))
    proc = run_cli("compute", tmp_path / "P.npy", tmp_path / "q.npy", "--axis", "0")
    one_line_error(proc, "Q file", "q.npy", "4 values", "6")


def test_out_with_an_upper_case_suffix_writes_that_name(tmp_path, rng):
    # np.save / np.savez add ".npy" / ".npz" to a name not ending in the lower-case
    # suffix: "R.NPY" was written as "R.NPY.npy" while the message named "R.NPY"
    P = random_rows(rng, 6, 4)
    np.save(tmp_path / "P.npy", P)
    for args, name in ((("compute", "P.npy", "P.npy"), "R.NPY"), (("pairwise", "P.npy"), "M.Npy"),
                       (("pairwise", "P.npy", "--topk", "2"), "T.NPZ")):
        argv = [str(tmp_path / a) if a.endswith(".npy") else a for a in args]
        assert cli.main(argv + ["--out", str(tmp_path / name)]) == 0
        assert sorted(f.name for f in tmp_path.iterdir()) == sorted(["P.npy", name])
        back = np.load(tmp_path / name)
        if name == "T.NPZ":
            values, indices = kl_fast.kl_topk(P, P, 2)
            np.testing.assert_array_equal(back["values"], values)
            np.testing.assert_array_equal(back["indices"], indices)
            back.close()
        else:
            expected = (kl_fast.kl_div(P, P) if args[0] == "compute" else kl_fast.kl_pairwise(P))
            np.testing.assert_array_equal(back, expected)
        (tmp_path / name).unlink()


def test_compute_two_single_distributions(tmp_path):
    p, q = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "q.npy", q)
    proc = run_cli("compute", tmp_path / "p.npy", tmp_path / "q.npy", "--out", tmp_path / "r.npy")
    assert proc.returncode == 0
    r = np.load(tmp_path / "r.npy")
    assert r.shape == ()
    assert r == pytest.approx(0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1), rel=1e-15, abs=0)


def test_compute_float32_stays_float32(tmp_path, rng):
    P = random_rows(rng, 5, 8, dtype=np.float32)
    Q = random_rows(rng, 5, 8, zeros=0, dtype=np.float32) + np.float32(0.01)
    np.save(tmp_path / "P.npy", P)
    np.save(tmp_path / "Q.npy", Q)
    proc = run_cli("compute", tmp_path / "P.npy", tmp_path / "Q.npy", "--out", tmp_path / "r.npy")
    assert proc.returncode == 0
    r = np.load(tmp_path / "r.npy")
    assert r.dtype == np.float32
    np.testing.assert_array_equal(r, kl_fast.kl_div(P, Q))
    proc = run_cli("compute", tmp_path / "P.npy", tmp_path / "Q.npy")
    np.testing.assert_array_equal(np.array(proc.stdout.split(), dtype=np.float32), r)


def test_compute_large_memory_mapped_in_chunks(tmp_path, rng):
    m, n, chunk = 40_000, 64, 6_000
    path = tmp_path / "P.npy"
    P = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(m, n))
    P[:] = rng.random((m, n))
    P[::7, ::3] = 0.0
    P.flush()
    del P
    q = rng.random(n) + 0.05
    np.save(tmp_path / "q.npy", q)
    proc = run_cli("compute", path, tmp_path / "q.npy", "--chunk-rows", chunk, "--out", tmp_path / "r.npy")
    assert proc.returncode == 0, proc.stderr
    P = np.load(path, mmap_mode="r")
    np.testing.assert_array_equal(np.load(tmp_path / "r.npy"), kl_fast.kl_div(P, q))
    # A progress line per chunk (stderr is not a terminal here), ending at the last row.
    progress = [ln for ln in proc.stderr.splitlines() if ln.startswith("rows [")]
    assert len(progress) == math.ceil(m / chunk)
    assert progress[-1].endswith(f"{m:,}/{m:,}")
    # The same with the default chunk size, and without progress output.
    proc = run_cli("compute", path, tmp_path / "q.npy", "--out", tmp_path / "r2.npy", "--no-progress")
    assert proc.returncode == 0
    assert not [ln for ln in proc.stderr.splitlines() if "note: " not in ln], proc.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "r2.npy"), np.load(tmp_path / "r.npy"))


def test_compute_npy_is_memory_mapped(tmp_path):
    from kl_fast.cli import load_table

    np.save(tmp_path / "P.npy", np.ones((3, 2)))
    table = load_table(str(tmp_path / "P.npy"), "P", -1)
    assert isinstance(table.data, np.memmap)


def _write(path, text):
    path.write_text(text)
    return path


BAD_FILES = [
    # (name, writer, expected fragments of the message)
    ("missing.npy", None, ["no such file"]),
    ("P.json", lambda p: _write(p, "[1, 2]"), ["unsupported file type .json"]),
    ("garbage.npy", lambda p: p.write_bytes(b"not an array"), ["not a valid .npy file"]),
    ("empty.npy", lambda p: p.write_bytes(b""), ["not a valid .npy file", "empty"]),
    ("truncated.npy", lambda p: (np.save(p, np.ones((50, 50))), p.write_bytes(p.read_bytes()[:3000])),
     ["not a valid .npy file", "truncated"]),
    ("objects.npy", lambda p: np.save(p, np.array([{}, None], dtype=object), allow_pickle=True),
     ["Python objects"]),
    ("strings.npy", lambda p: np.save(p, np.array(["a", "b", "c"])), ["<U1", "real numbers"]),
    ("complex.npy", lambda p: np.save(p, np.ones(3, dtype=complex)), ["complex128", "real numbers"]),
    ("cube.npy", lambda p: np.save(p, np.ones((2, 3, 3))), ["wrong shape (2, 3, 3)"]),
    ("scalar.npy", lambda p: np.save(p, np.float64(1.0)), ["wrong shape ()"]),
    ("negative.npy", lambda p: np.save(p, np.array([[0.2, 0.3, 0.5], [0.1, -0.25, 1.0]])),
     ["a negative value (-0.25) at index [1, 1]"]),
    ("nan.npy", lambda p: np.save(p, np.array([[0.2, 0.3, 0.5], [0.1, 0.2, np.nan]])),
     ["NaN at index [1, 2]"]),
    ("inf.npy", lambda p: np.save(p, np.array([0.2, np.inf, 0.5])), ["infinite value (inf) at index [1]"]),
    ("empty.csv", lambda p: _write(p, "# nothing here\n\n"), ["no numbers"]),
    ("text.csv", lambda p: _write(p, "0.2,0.3,0.5\n0.1,abc,0.7\n"), ["line 2, column 2: 'abc' is not a number"]),
    ("header.csv", lambda p: _write(p, "a,b,c\n0.1,0.2,0.7\n"), ["line 1, column 1", "header"]),
    ("blank_field.csv", lambda p: _write(p, "0.2,,0.5\n"), ["line 1, column 2: empty field"]),
    ("ragged.csv", lambda p: _write(p, "# p\n0.2,0.3,0.5\n\n0.1,0.9\n"),
     ["wrong shape: line 4 has 2 values but line 2 has 3"]),
    ("negative.csv", lambda p: _write(p, "# p\n0.2,0.3,0.5\n\n0.1,0.9,-1e-3\n"),
     ["a negative value (-0.001) at line 4, column 3"]),
    ("nan.txt", lambda p: _write(p, "0.2 0.3 0.5\nnan 0.1 0.9\n"), ["NaN at line 2, column 1"]),
    # below the smallest double: the parser would read it as 0 without a word
    ("underflow.csv", lambda p: _write(p, "0.2,0.3,0.5\n# 1e-400\n0.0e-999,1,2.5e-400\n"),
     ["line 3, column 3: '2.5e-400' is below the smallest double"]),
    ("underflow_digits.txt", lambda p: _write(p, "1e-310 0 0.0000000000000000000000001e-299\n"),
     ["line 1, column 3:", "is below the smallest double"]),
    ("underflow_zeros.txt", lambda p: _write(p, "0.2 0.%s1 0.5\n" % ("0" * 400)),
     ["line 1, column 2:", "is below the smallest double"]),
    ("overflow.txt", lambda p: _write(p, "0.2 0.3 0.5\n0.1 1e400 0.7\n"),
     ["line 2, column 2: '1e400' is beyond the largest double"]),
    ("semicolons.csv", lambda p: _write(p, "0.2;0.3;0.5\n"),
     ["line 1, column 1:", "values separated by ';'", "read as separated by commas"]),
    ("commas.txt", lambda p: _write(p, "0.2,0.3,0.5\n"),
     ["line 1, column 1:", "values separated by ','", "read as separated by white space"]),
    # extended precision beyond or below what the float64 kernels hold: its place in the file
    ("beyond.npy", lambda p: np.save(p, _long_rows(1, 2, "1e400")),
     ["1e+400, beyond the float64 range", "at index [1, 2]; values are computed in float64"]),
    ("below.npy", lambda p: np.save(p, _long_rows(1, 0, "1e-400")),
     ["1e-400, below the float64 range", "at index [1, 0]"]),
    ("binary.csv", lambda p: p.write_bytes(b"\x00\x01\x02garbage"), ["binary data"]),
    # float() accepts "1_0" but the parser does not: still the command's own message
    ("underscore.csv", lambda p: _write(p, "0.2,0.3,0.5\n0.1,1_0,0.7\n"), ["line 2, column 2: '1_0' is not a number"]),
    ("latin1.txt", lambda p: p.write_bytes(b"0.2 0.3 0.5\n0.1 \xe9 0.7\n"), ["line 2: not UTF-8 text"]),
]


def _long_rows(r, c, text):
    a = np.full((2, 3), 0.25, dtype=np.longdouble)
    a[r, c] = np.longdouble(text)
    return a


def test_extended_precision_beyond_float64_named_at_its_place_in_chunks(tmp_path):
    # the place in the file, not in a chunk of rows or in the transposed view
    bad = tmp_path / "P.npy"
    a = np.full((3, 4), 0.25, dtype=np.longdouble)
    a[2, 1] = np.longdouble("1e-400")
    np.save(bad, a)
    np.save(tmp_path / "q4.npy", np.full(4, 0.25))
    np.save(tmp_path / "q3.npy", np.full(3, 1 / 3))
    fragments = ("1e-400, below the float64 range", "at index [2, 1]")
    one_line_error(run_cli("compute", bad, tmp_path / "q4.npy", "--chunk-rows", 1),
                   f"P file {bad}", *fragments)
    one_line_error(run_cli("compute", bad, tmp_path / "q3.npy", "--axis", 0),
                   f"P file {bad}", *fragments)
    one_line_error(run_cli("compute", tmp_path / "q4.npy", bad, "--chunk-rows", 2),
                   f"Q file {bad}", *fragments)
    one_line_error(run_cli("pairwise", bad), f"P file {bad}", *fragments)


def test_a_byte_order_mark_starts_no_number(tmp_path):
    # spreadsheet programs write one at the start of a UTF-8 CSV file
    (tmp_path / "P.csv").write_bytes(b"\xef\xbb\xbf0.2,0.3,0.5\n0.1,0.2,0.7\n")
    (tmp_path / "Q.csv").write_text("0.3,0.3,0.4\n0.3,0.3,0.4\n")
    proc = run_cli("compute", tmp_path / "P.csv", tmp_path / "Q.csv")
    assert proc.returncode == 0, proc.stderr
    want = kl_fast.kl_div([[0.2, 0.3, 0.5], [0.1, 0.2, 0.7]], [0.3, 0.3, 0.4])
    np.testing.assert_array_equal(parse_values(proc.stdout), want)


def _bad_and_good(tmp_path, name, writer):
    bad = tmp_path / name
    if writer is not None:
        writer(bad)
    good = tmp_path / "good.npy"
    np.save(good, np.array([0.2, 0.3, 0.5]))
    return bad, good


@pytest.mark.parametrize("name, writer, fragments", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_compute_bad_file(tmp_path, name, writer, fragments):
    bad, good = _bad_and_good(tmp_path, name, writer)
    one_line_error(run_cli("compute", bad, good), f"P file {bad}", *fragments)


@pytest.mark.parametrize("name, writer, fragments", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_compute_bad_q_file_in_process(tmp_path, capsys, name, writer, fragments):
    # The same cases as Q, through the command's main() in this process (cheaper than
    # a process each): any exception escaping main() would fail the test.
    from kl_fast.cli import main

    bad, good = _bad_and_good(tmp_path, name, writer)
    status = main(["compute", str(good), str(bad)])
    err = capsys.readouterr().err
    one_line_error(subprocess.CompletedProcess([], status, "", err), f"Q file {bad}", *fragments)


@pytest.mark.parametrize("suffix, sep", [(".csv", ","), (".txt", " ")])
def test_compute_whitespace_only_lines_are_blank(tmp_path, suffix, sep):
    rows = np.array([[1.0, 2.0, 3.0, 4.0], [0.5, 0.5, 0.0, 0.0]])
    text = "\n".join([sep.join(map(str, rows[0].tolist())), "  ", "\t", sep.join(map(str, rows[1].tolist())), " # note", ""])
    (tmp_path / f"P{suffix}").write_text(text)
    q = np.array([0.25, 0.25, 0.25, 0.25])
    np.save(tmp_path / "q.npy", q)
    proc = run_cli("compute", tmp_path / f"P{suffix}", tmp_path / "q.npy")
    assert proc.returncode == 0, proc.stderr
    got = [float(v) for v in proc.stdout.split()]
    np.testing.assert_allclose(got, rel_entr(rows, q).sum(axis=1), rtol=1e-15)
    # a bad value after a whitespace-only line is placed by the file's own line number
    text = text.replace("0.5" + sep + "0.5", "0.5" + sep + "-0.5")
    (tmp_path / f"P{suffix}").write_text(text)
    one_line_error(run_cli("compute", tmp_path / f"P{suffix}", tmp_path / "q.npy"),
                   "a negative value (-0.5) at line 4, column 2")


def test_compute_bad_value_found_in_a_later_chunk(tmp_path, rng):
    P = rng.random((1000, 5))
    P[877, 4] = -2.0
    np.save(tmp_path / "P.npy", P)
    np.save(tmp_path / "q.npy", rng.random(5))
    proc = run_cli("compute", tmp_path / "P.npy", tmp_path / "q.npy", "--chunk-rows", 100)
    one_line_error(proc, "P file", "a negative value (-2.0) at index [877, 4]")
    # Distributions as columns: the index is still the file's own.
    proc = run_cli("compute", tmp_path / "P.npy", tmp_path / "P.npy", "--axis", "0", "--chunk-rows", 2)
    one_line_error(proc, "P file", "at index [877, 4]")
    # In a csv file, the line number counts comments and blank lines.
    lines = ["# header comment", ""] + [",".join(f"{v:.6f}" for v in row) for row in P[:900]]
    (tmp_path / "P.csv").write_text("\n".join(lines) + "\n")
    proc = run_cli("compute", tmp_path / "P.csv", tmp_path / "q.npy", "--chunk-rows", 64)
    one_line_error(proc, "P file", "at line 880, column 5")


def test_compute_shape_mismatch_and_option_errors(tmp_path):
    np.save(tmp_path / "P.npy", np.full((4, 3), 1 / 3))
    np.save(tmp_path / "Q3.npy", np.full((3, 3), 1 / 3))
    np.save(tmp_path / "q5.npy", np.full(5, 0.2))
    np.save(tmp_path / "Z.npy", np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]]))
    P, d = tmp_path / "P.npy", tmp_path
    one_line_error(run_cli("compute", P, d / "Q3.npy"), f"Q file {d / 'Q3.npy'}", "3 distributions against 4")
    one_line_error(run_cli("compute", P, d / "q5.npy"), f"Q file {d / 'q5.npy'}", "5 values", "have 3")
    one_line_error(run_cli("compute", d / "Z.npy", d / "Z.npy", "--normalize"),
                   f"P file {d / 'Z.npy'}", "row 1 sums to 0.0", "--normalize")
    one_line_error(run_cli("compute", P, P, "--axis", "2"), "--axis 2")
    one_line_error(run_cli("compute", P, P, "--base", "1"), "--base")
    one_line_error(run_cli("compute", P, P, "--base", "-2"), "--base")
    one_line_error(run_cli("compute", P, P, "--chunk-rows", "0"), "--chunk-rows")
    one_line_error(run_cli("compute", P, P, "--out", d / "r.json"), "--out", "unsupported file type .json")
    one_line_error(run_cli("compute", P, P, "--out", d / "nodir" / "r.npy"), "--out", "does not exist")
    one_line_error(run_cli("compute", d, P), f"P file {d}")
    (d / "dir.npy").mkdir()
    one_line_error(run_cli("compute", d / "dir.npy", P), "is a directory")


# ----------------------------------------------------------------------------- compute: more inputs and options


def run_cli_stdin(data, *args, timeout=300):
    """``python -m kl_fast ARGS`` with ``data`` (bytes) on standard input; outputs decoded."""
    env = os.environ.copy()
    env.setdefault("MPLBACKEND", "Agg")
    proc = subprocess.run([sys.executable, "-m", "kl_fast", *map(str, args)], input=data,
                          capture_output=True, env=env, timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def npy_bytes(a):
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def positive_rows(rng, m, n):
    a = rng.random((m, n)) + 0.05
    return a / a.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("command", ["compute", "pairwise"])
def test_out_refuses_to_overwrite_an_input(tmp_path, rng, command):
    P, Q = positive_rows(rng, 4, 3), positive_rows(rng, 4, 3)
    np.save(tmp_path / "P.npy", P)
    np.save(tmp_path / "Q.npy", Q)
    before = {name: (tmp_path / name).read_bytes() for name in ("P.npy", "Q.npy")}
    (tmp_path / "sub").mkdir()
    os.symlink(tmp_path / "Q.npy", tmp_path / "link.npy")
    spellings = [(tmp_path / "P.npy", "P"), (tmp_path / "sub" / ".." / "Q.npy", "Q"),
                 (tmp_path / "link.npy", "Q")]
    for out, role in spellings:
        proc = run_cli(command, tmp_path / "P.npy", tmp_path / "Q.npy", "--out", out)
        one_line_error(proc, f"--out {out}", f"is the {role} file", "refusing to overwrite", "--force")
        assert proc.stdout == ""
    for name, data in before.items():
        assert (tmp_path / name).read_bytes() == data
    # --force overwrites it, with the values computed from the original inputs.
    proc = run_cli(command, tmp_path / "P.npy", tmp_path / "Q.npy", "--out", tmp_path / "P.npy", "--force")
    assert proc.returncode == 0, proc.stderr
    expected = kl_fast.kl_div(P, Q) if command == "compute" else kl_fast.kl_pairwise(P, Q)
    np.testing.assert_array_equal(np.load(tmp_path / "P.npy"), expected)
    # An output that is another file is written as usual.
    proc = run_cli(command, tmp_path / "Q.npy", tmp_path / "Q.npy", "--out", tmp_path / "other.npy")
    assert proc.returncode == 0, proc.stderr


def test_overwrite_refused_for_a_text_input_in_process(tmp_path, capsys):
    from kl_fast.cli import main

    path = tmp_path / "P.csv"
    path.write_text("0.25,0.75\n0.5,0.5\n")
    status = main(["compute", str(path), str(path), "--out", str(path)])
    one_line_error(subprocess.CompletedProcess([], status, "", capsys.readouterr().err),
                   f"--out {path}", "is the P file")
    assert path.read_text() == "0.25,0.75\n0.5,0.5\n"


@pytest.mark.parametrize("fmt", ["npy", "csv", "txt", "npz"])
@pytest.mark.parametrize("role", ["P", "Q"])
def test_compute_reads_stdin(tmp_path, rng, fmt, role):
    P, Q = random_rows(rng, 6, 5), random_rows(rng, 6, 5, zeros=0) + 0.01
    piped = P if role == "P" else Q
    if fmt == "npy":
        data = npy_bytes(piped)
    elif fmt == "npz":
        import io

        buf = io.BytesIO()
        np.savez(buf, other=np.ones(2), dist=piped)
        data = buf.getvalue()
    else:
        data = "\n".join(("," if fmt == "csv" else " ").join(repr(v) for v in row) for row in piped.tolist())
        data = ("# piped\n" + data + "\n").encode()
    other = tmp_path / "other.npy"
    np.save(other, Q if role == "P" else P)
    args = ("-", other) if role == "P" else (other, "-")
    extra = ("--key" if role == "P" else "--q-key", "dist") if fmt == "npz" else ()
    proc = run_cli_stdin(data, "compute", *args, *extra)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(parse_values(proc.stdout), kl_fast.kl_div(P, Q))
    np.testing.assert_allclose(parse_values(proc.stdout), reference.kl_div(P, Q), rtol=1e-13)


def test_compute_stdin_errors(tmp_path):
    good = tmp_path / "good.npy"
    np.save(good, np.array([0.2, 0.3, 0.5]))
    one_line_error(run_cli_stdin(b"", "compute", "-", "-"), "P and Q are both -", "standard input")
    one_line_error(run_cli_stdin(b"", "compute", good, "-"), "Q (standard input)", "no numbers")
    one_line_error(run_cli_stdin(b"0.2,0.3,0.5\n0.1,x,0.9\n", "compute", "-", good),
                   "P (standard input)", "line 2, column 2: 'x' is not a number")
    one_line_error(run_cli_stdin(b"0.2 0.3 0.5\n\n0.1 -0.5 0.9\n", "compute", "-", good),
                   "P (standard input)", "a negative value (-0.5) at line 3, column 2")
    one_line_error(run_cli_stdin(npy_bytes(np.ones((20, 3)))[:150], "compute", "-", good),
                   "P (standard input)", "not a valid .npy file")
    one_line_error(run_cli_stdin(npy_bytes(np.array([[0.2, 0.3, 0.5], [0.2, np.nan, 0.5]])), "compute", good, "-"),
                   "Q (standard input)", "NaN at index [1, 1]")


def test_compute_npz_keys(tmp_path, rng):
    P, Q = positive_rows(rng, 5, 4), positive_rows(rng, 5, 4)
    np.savez(tmp_path / "both.npz", p=P, q=Q)
    np.savez(tmp_path / "onlyq.npz", Q)
    np.save(tmp_path / "P.npy", P)
    both, onlyq = tmp_path / "both.npz", tmp_path / "onlyq.npz"
    expected = kl_fast.kl_div(P, Q)
    for args in [(both, both, "--key", "p", "--q-key", "q"),
                 (tmp_path / "P.npy", onlyq),                        # one array: no key needed
                 (tmp_path / "P.npy", both, "--key", "q"),           # --key applies to an .npz Q
                 (both, onlyq, "--key", "p", "--q-key", "arr_0")]:
        proc = run_cli("compute", *args)
        assert proc.returncode == 0, (args, proc.stderr)
        np.testing.assert_array_equal(parse_values(proc.stdout), expected)
    # The same pair with --key for both: P's own rows against themselves.
    proc = run_cli("compute", both, both, "--key", "p")
    np.testing.assert_array_equal(parse_values(proc.stdout), np.zeros(5))
    one_line_error(run_cli("compute", both, onlyq), f"P file {both}", "2 arrays (p, q)", "--key NAME")
    # --key names Q's array too unless --q-key does.
    one_line_error(run_cli("compute", both, onlyq, "--key", "p"), "--key p", f"Q file {onlyq}",
                   "available: arr_0")
    one_line_error(run_cli("compute", both, both, "--key", "r"), "--key r", f"P file {both}",
                   "no array 'r'", "available: p, q")
    one_line_error(run_cli("compute", both, both, "--key", "p", "--q-key", "x"), "--q-key x",
                   f"Q file {both}", "available: p, q")
    one_line_error(run_cli("compute", tmp_path / "P.npy", tmp_path / "P.npy", "--key", "p"), "--key p",
                   "no input is one")
    one_line_error(run_cli("compute", both, tmp_path / "P.npy", "--key", "p", "--q-key", "q"), "--q-key q",
                   f"Q file {tmp_path / 'P.npy'}", "is not one")
    # A bad value is placed in the named array.
    np.savez(tmp_path / "bad.npz", a=P, b=np.where(P > 0.3, -P, P))
    r, c = np.argwhere(P > 0.3)[0]
    one_line_error(run_cli("compute", tmp_path / "bad.npz", tmp_path / "P.npy", "--key", "b"),
                   f"P file {tmp_path / 'bad.npz'}", f"a negative value ({float(-P[r, c])!r}) at index [{r}, {c}] of array 'b'")
    (tmp_path / "junk.npz").write_bytes(b"not a zip archive")
    one_line_error(run_cli("compute", tmp_path / "junk.npz", tmp_path / "P.npy"), "not a valid .npz")


def test_compute_dx(tmp_path):
    x = np.arange(-10, 10, 0.01)
    p, q = stats.norm.pdf(x, 0, 1), stats.norm.pdf(x, 1, 2)
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "q.npy", q)
    proc = run_cli("compute", tmp_path / "p.npy", tmp_path / "q.npy", "--dx", "0.01")
    assert proc.returncode == 0, proc.stderr
    (got,) = parse_values(proc.stdout)
    assert got == kl_fast.kl_div(p, q, dx=0.01)
    assert got == pytest.approx(reference.kl_div(p, q, dx=0.01), rel=1e-13)
    # the continuous KL of N(0, 1) || N(1, 2): log 2 + (1 + 1) / 8 - 1/2
    assert got == pytest.approx(math.log(2) + 2 / 8 - 0.5, abs=1e-6)
    P = tmp_path / "p.npy"
    one_line_error(run_cli("compute", P, P, "--dx", "0.01", "--normalize"), "--dx 0.01", "--normalize")
    one_line_error(run_cli("compute", P, P, "--dx", "0.01", "--js"), "--dx 0.01", "js_div takes no dx")
    one_line_error(run_cli("compute", P, P, "--dx", "-1"), "--dx must be positive", "-1.0")
    one_line_error(run_cli("compute", P, P, "--dx", "inf"), "--dx must be positive", "inf")


def test_compute_js(tmp_path, rng):
    P, Q = random_rows(rng, 6, 5), random_rows(rng, 6, 5)
    np.save(tmp_path / "P.npy", P)
    np.save(tmp_path / "Q.npy", Q)
    proc = run_cli("compute", tmp_path / "P.npy", tmp_path / "Q.npy", "--js", "--normalize", "--base", "2",
                   "--out", tmp_path / "js.npy")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"wrote 6 JS divergences (float64) to {tmp_path / 'js.npy'}\n"
    got = np.load(tmp_path / "js.npy")
    np.testing.assert_array_equal(got, kl_fast.js_div(P, Q, normalize=True, base=2))
    from scipy.spatial.distance import jensenshannon

    np.testing.assert_allclose(got, [jensenshannon(p, q, base=2) ** 2 for p, q in zip(P, Q)], rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("js", [False, True])
def test_pairwise(tmp_path, rng, js):
    P, Q = random_rows(rng, 4, 6), random_rows(rng, 3, 6, zeros=0) + 0.01
    np.save(tmp_path / "P.npy", P)
    np.savetxt(tmp_path / "Q.csv", Q, delimiter=",", fmt="%.17g")
    flag = ["--js"] if js else []
    func, ref = (kl_fast.js_pairwise, reference.js_pairwise) if js else (kl_fast.kl_pairwise, reference.kl_pairwise)
    # Printed: one row of the matrix per line, comma-separated.
    proc = run_cli("pairwise", tmp_path / "P.npy", tmp_path / "Q.csv", "--base", "2", *flag)
    assert proc.returncode == 0, proc.stderr
    got = np.array([[float(v) for v in line.split(",")] for line in proc.stdout.splitlines()])
    np.testing.assert_array_equal(got, func(P, Q, base=2))
    np.testing.assert_allclose(got, ref(P, Q, base=2), rtol=1e-12, atol=1e-15)
    # Written, normalised.
    out = tmp_path / "M.npy"
    proc = run_cli("pairwise", tmp_path / "P.npy", tmp_path / "Q.csv", "--normalize", "--out", out, *flag)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"wrote a 4 x 3 matrix of {'JS' if js else 'KL'} divergences (float64) to {out}\n"
    M = np.load(out)
    assert M.shape == (4, 3)
    np.testing.assert_array_equal(M, func(P, Q, normalize=True))
    Pn, Qn = P / P.sum(axis=1, keepdims=True), Q / Q.sum(axis=1, keepdims=True)
    if js:
        from scipy.spatial.distance import cdist

        np.testing.assert_allclose(M, cdist(Pn, Qn, "jensenshannon") ** 2, rtol=1e-10, atol=1e-15)
    else:
        np.testing.assert_allclose(M, rel_entr(Pn[:, None], Qn[None]).sum(axis=-1), rtol=1e-12)
    # Without Q: all pairs within P; text output.
    proc = run_cli("pairwise", tmp_path / "P.npy", "--out", tmp_path / "M.txt", *flag)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.loadtxt(tmp_path / "M.txt"), func(P))


def test_pairwise_errors(tmp_path):
    np.save(tmp_path / "P.npy", np.full((4, 3), 1 / 3))
    np.save(tmp_path / "q5.npy", np.full((2, 5), 0.2))
    np.save(tmp_path / "bad.npy", np.array([[0.5, 0.5, 0.0], [0.2, np.inf, 0.3]]))
    d = tmp_path
    one_line_error(run_cli("pairwise", d / "P.npy", d / "q5.npy"), f"Q file {d / 'q5.npy'}", "5 values", "have 3")
    one_line_error(run_cli("pairwise", d / "P.npy", d / "bad.npy"), f"Q file {d / 'bad.npy'}",
                   "infinite value (inf) at index [1, 1]")
    one_line_error(run_cli("pairwise", d / "bad.npy"), f"P file {d / 'bad.npy'}", "at index [1, 1]")
    one_line_error(run_cli("pairwise", d / "P.npy", "--q-key", "x"), "--q-key x", "no Q")
    one_line_error(run_cli("pairwise", d / "P.npy", "--base", "0"), "--base")


@pytest.mark.parametrize("js", [False, True])
def test_pairwise_topk(tmp_path, rng, js):
    P, Q = random_rows(rng, 5, 6), random_rows(rng, 9, 6, zeros=0) + 0.01
    Q[4] = Q[2]                                        # a tie: the lower index first
    np.save(tmp_path / "P.npy", P)
    np.save(tmp_path / "Q.npy", Q)
    flag = ["--js"] if js else []
    M = (kl_fast.js_div if js else kl_fast.kl_div)(P[:, None], Q[None], normalize=True)
    order = np.lexsort((np.broadcast_to(np.arange(9), M.shape), M), axis=1)[:, :3]
    proc = run_cli("pairwise", tmp_path / "P.npy", tmp_path / "Q.npy", "--topk", "3",
                   "--normalize", *flag)
    assert proc.returncode == 0, proc.stderr
    pairs = [[item.split(":") for item in line.split(",")] for line in proc.stdout.splitlines()]
    np.testing.assert_array_equal([[int(j) for j, _ in row] for row in pairs], order)
    np.testing.assert_array_equal([[float(v) for _, v in row] for row in pairs],
                                  np.take_along_axis(M, order, axis=1))
    out = tmp_path / "near.npz"
    proc = run_cli("pairwise", tmp_path / "P.npy", tmp_path / "Q.npy", "--topk", "3",
                   "--normalize", "--out", out, *flag)
    assert proc.returncode == 0, proc.stderr
    assert str(out) in proc.stdout and "3 nearest" in proc.stdout
    with np.load(out) as z:
        np.testing.assert_array_equal(z["indices"], order)
        np.testing.assert_array_equal(z["values"], np.take_along_axis(M, order, axis=1))
    d = tmp_path
    one_line_error(run_cli("pairwise", d / "P.npy", d / "Q.npy", "--topk", "10"), "--topk 10",
                   "only 9")
    one_line_error(run_cli("pairwise", d / "P.npy", d / "Q.npy", "--topk", "2", "--out",
                           d / "x.npy"), "--out", ".npz")


def test_negative_divergences_note(tmp_path):
    # Not normalised: P's rows sum to less than Q's in rows 1 and 2, so their KL is negative.
    P = np.array([[0.5, 0.5], [0.2, 0.1], [0.1, 0.3], [1.0, 0.0]])
    Q = np.array([[0.5, 0.5], [0.6, 0.6], [0.5, 0.5], [0.5, 0.5]])
    np.save(tmp_path / "P.npy", P)
    np.save(tmp_path / "Q.npy", Q)
    expected = kl_fast.kl_div(P, Q)
    negative = np.flatnonzero(expected < 0)
    assert negative.size == 2
    r = negative[0]
    proc = run_cli("compute", tmp_path / "P.npy", tmp_path / "Q.npy", "--out", tmp_path / "r.npy")
    assert proc.returncode == 0
    np.testing.assert_array_equal(np.load(tmp_path / "r.npy"), expected)
    notes = [ln for ln in proc.stderr.splitlines() if "note:" in ln]
    assert len(notes) == 1, proc.stderr
    assert notes[0].startswith("kl-fast compute: note: 2 of 4 KL divergences are negative")
    assert f"P's row {r} sums to {P[r].sum():.6g}, Q's row {r} to {Q[r].sum():.6g}" in notes[0]
    assert "--normalize" in notes[0]
    # Pairwise: the first negative entry in row-major order.
    M = kl_fast.kl_pairwise(P, Q)
    i, j = np.argwhere(M < 0)[0]
    proc = run_cli("pairwise", tmp_path / "P.npy", tmp_path / "Q.npy")
    assert proc.returncode == 0
    assert f"note: {int((M < 0).sum())} of 16 KL divergences are negative" in proc.stderr
    assert f"P's row {i} sums to {P[i].sum():.6g}, Q's row {j} to {Q[j].sum():.6g}" in proc.stderr
    # A base below 1 turns the printed signs: the note follows the divergence in nats.
    for cmd in ("compute", "pairwise"):
        proc = run_cli(cmd, tmp_path / "P.npy", tmp_path / "Q.npy", "--base", "0.5")
        assert proc.returncode == 0
        count = negative.size if cmd == "compute" else int((M < 0).sum())
        assert f"note: {count} of {4 if cmd == 'compute' else 16} KL divergences are negative (in nats" \
            in proc.stderr, proc.stderr
        proc = run_cli(cmd, tmp_path / "P.npy", tmp_path / "P.npy", "--base", "0.5", "--js")
        assert proc.returncode == 0 and "note" not in proc.stderr, proc.stderr
    # No note with --normalize, nor when no value is negative.
    for args in (("--normalize",), ()):
        qfile = tmp_path / "Q.npy" if args else tmp_path / "P.npy"
        proc = run_cli("compute", tmp_path / "P.npy", qfile, *args)
        assert proc.returncode == 0 and "note" not in proc.stderr, proc.stderr


def test_text_parsed_in_chunks_with_progress(tmp_path, rng, monkeypatch, capsys):
    import kl_fast.cli as cli

    monkeypatch.setattr(cli, "TEXT_CHUNK_BYTES", 2000)
    P = random_rows(rng, 300, 7, zeros=0)
    lines = []
    for k, row in enumerate(P):
        if k % 37 == 0:
            lines += ["# a comment", "   "]
        lines.append(",".join(repr(v) for v in row.tolist()) + ("  # tail" if k % 11 == 0 else ""))
    path = tmp_path / "P.csv"
    path.write_text("\n".join(lines) + "\n")
    q = np.full(7, 1 / 7)
    np.save(tmp_path / "q.npy", q)
    status = cli.main(["compute", str(path), str(tmp_path / "q.npy")])
    out, err = capsys.readouterr()
    assert status == 0, err
    np.testing.assert_array_equal(parse_values(out), kl_fast.kl_div(P, q))
    progress = [ln for ln in err.splitlines() if ln.startswith(f"reading P file {path} [")]
    assert 2 <= len(progress) <= 11
    assert progress[-1].endswith(f"{path.stat().st_size / 1e6:,.1f}/{path.stat().st_size / 1e6:,.1f} MB")
    # None with --no-progress.
    assert cli.main(["compute", str(path), str(tmp_path / "q.npy"), "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
    # A bad value and a ragged line in a later chunk are placed by the file's own line number.
    bad = list(lines)
    k = [i for i, line in enumerate(lines) if line[:1].isdigit()][-10]   # a data line near the end
    bad[k] = bad[k].replace(",", ",-", 1)
    path.write_text("\n".join(bad) + "\n")
    assert cli.main(["compute", str(path), str(tmp_path / "q.npy")]) == 2
    err = capsys.readouterr().err
    assert f"at line {k + 1}, column 2" in err and "a negative value" in err
    bad = list(lines)
    bad[k] = bad[k].split("#")[0].rsplit(",", 1)[0]
    path.write_text("\n".join(bad) + "\n")
    assert cli.main(["compute", str(path), str(tmp_path / "q.npy")]) == 2
    err = capsys.readouterr().err
    assert f"wrong shape: line {k + 1} has 6 values but line 3 has 7" in err


def test_text_parse_memory_is_bounded_by_the_chunk(tmp_path, rng, monkeypatch):
    import tracemalloc

    import kl_fast.cli as cli

    chunk = 64 << 10
    monkeypatch.setattr(cli, "TEXT_CHUNK_BYTES", chunk)
    P = rng.random((20_000, 16))
    path = tmp_path / "P.csv"
    np.savetxt(path, P, delimiter=",", fmt="%.17g")
    size = path.stat().st_size
    bound = P.nbytes * 1.05 + 16 * chunk
    assert size > 1.5 * bound   # holding the whole text at once would exceed the bound
    tracemalloc.start()
    try:
        table = cli.load_table(str(path), "P", -1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(table.data, P)
    assert peak < bound, (peak, bound, size)


def test_bench_help_states_durations():
    proc = run_cli("bench", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert re.search(r"--quick.*about \d+ seconds", text), text
    assert re.search(r"full run takes about \d+ minutes", text), text


def test_bench_progress_time_estimates():
    from kl_fast.cli import _clock, _elapsed_and_left

    assert _clock(5) == "0:05" and _clock(3599) == "59:59" and _clock(3725) == "1:02:05"
    assert _elapsed_and_left(30.0, 0, 4) == "[0:30 elapsed]"
    # 30 s for the first of 4 cases: about 3 x 30 s for the other three.
    assert _elapsed_and_left(30.0, 1, 4) == f"[0:30 elapsed, about {_clock(3 * 30.0)} left]"
    assert _elapsed_and_left(90.0, 4, 4) == "[1:30 elapsed]"


@pytest.mark.skipif(not HAVE_MPL, reason="needs matplotlib")
def test_bench_figure_labels_fit_and_name_their_baseline():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from kl_fast.bench import cases_dask
    from kl_fast.bench.runner import Result
    from kl_fast.cli import speedup_figure

    long_group = "dask kl_div float64 batch 40,000 x 1,000 vs one q"
    results = [Result("kl_div float64 n=10", "numpy reference", 1e-5, 1.0, "numpy reference"),
               Result("kl_div float64 n=10", "kl_fast", 1e-6, 10.0, "numpy reference"),
               Result(long_group, cases_dask.BASELINE, 1e-2, 1.0, cases_dask.BASELINE),
               Result(long_group, "kl_fast.dask 2-worker LocalCluster, 8 row blocks", 5e-2, 0.2, cases_dask.BASELINE)]
    fig = speedup_figure(Figure, results)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()   # the constrained layout is computed on drawing
    renderer = canvas.get_renderer()
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert sorted(labels) == sorted(["kl_div float64 n=10: kl_fast",
                                     f"{long_group}: kl_fast.dask 2-worker LocalCluster, 8 row blocks "
                                     f"(vs {cases_dask.BASELINE})"])
    assert cases_dask.BASELINE in fig._suptitle.get_text()
    texts = [fig._suptitle, ax.xaxis.label] + list(ax.get_yticklabels())
    box = fig.bbox
    for t in texts:
        ext = t.get_window_extent(renderer)
        assert box.x0 - 1 <= ext.x0 and ext.x1 <= box.x1 + 1 and box.y0 - 1 <= ext.y0 and ext.y1 <= box.y1 + 1, \
            (t.get_text(), ext, box)
