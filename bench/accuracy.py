"""Worst relative errors of kl_fast, NumPy and SciPy against mpmath (200-bit),
case class by case class, on every kernel path: the table in docs/accuracy.md.

    python bench/accuracy.py            # prints the markdown table (about 35 s)

Each class draws several inputs; an error is |value - exact| / |exact| (for an
exact value of 0, the absolute error; where the terms cancel -- long rows of
mixed-sign terms, float32 p ~ q -- |value - exact| / (eps sum |p log(p/q)|), the
rounding floor of such a sum, since the relative error of one draw is luck).  NumPy is the one-liner
np.sum(np.where(p > 0, p * np.log(p / q), 0)) on inputs it is given divided by
their sums where the class normalises; SciPy is rel_entr(p, q).sum() likewise
(scipy.stats.entropy for the normalising classes).
"""
import sys

import mpmath
import numpy as np
from scipy import special, stats

import kl_fast
from kl_fast import _config, _kernels
from kl_fast.bench import truth

mpmath.mp.prec = 200


def rel(value, exact):
    value = float(value)
    if exact == 0:
        return abs(value)
    return float(abs((mpmath.mpf(value) - exact) / exact))


def numpy_kl(p, q):
    with np.errstate(all="ignore"):
        return np.sum(np.where(p > 0, p * np.log(p / q), 0))


def cases(rng):
    """(class, inputs, exact, {name: callable}) per drawn input."""
    out = []
    for _ in range(5):
        a = rng.uniform(0.1, 0.9)
        p, q = np.array([a]), np.array([a * (1 + rng.uniform(1e-13, 1e-12))])
        out.append(("one term, p/q - 1 ~ 1e-12 (float64)", p, q, truth.kl(p, q), False))
    for n in (1000, 10_000):
        q = rng.dirichlet(np.ones(n))
        p = q * (1 + 1e-8 * rng.standard_normal(n))
        p /= p.sum()
        out.append(("p ~ q, n = 1,000 and 10,000 (float64)", p, q, truth.kl(p, q), False))
    more = np.random.default_rng(7)   # the draws after the first three
    for i, n in enumerate((2, 100, 1000) * 33):
        g = rng if i < 3 else more
        q = g.dirichlet(np.ones(n)).astype(np.float32)
        p = (q * (1 + 1e-4 * g.standard_normal(n))).astype(np.float32)
        p64, q64 = p.astype(np.float64), q.astype(np.float64)
        unit = float(np.abs(p64 * np.log(p64 / q64)).sum()) * float(np.finfo(np.float32).eps)
        out.append(("p ~ q (float32), 99 draws (units: eps32 x terms' size)", p, q,
                    truth.kl(p, q), False, unit))
    for scale in (1e300, 1e-300):
        p, q = np.array([0.25, 0.75]) * scale, np.array([0.5, 0.5])
        out.append(("normalize, sums 1e300 apart", p, q, truth.kl(p, q, True), True))
    for _ in range(3):
        counts = rng.multinomial(5_000_000, rng.dirichlet(np.ones(50))).astype(float)
        q = rng.dirichlet(np.ones(50))
        out.append(("normalize, counts summing to 5e6 against probabilities", counts, q,
                    truth.kl(counts, q, True), True))
    p, q = np.array([5e-324, 5e-324]), np.array([1e-323, 5e-324])
    out.append(("normalize, subnormal sums", p, q, truth.kl(p, q, True), True))
    # a sum that cancels: errors in units of eps * sum |p log(p/q)| (its rounding
    # floor), not of the result, which one draw's luck decides
    more = np.random.default_rng(1)
    for i in range(20):
        g = rng if i == 0 else more
        p = g.random(100_000)
        q = p * np.exp(g.standard_normal(p.size) * 0.5)
        with np.errstate(all="ignore"):
            unit = float(np.abs(p * np.log(p / q)).sum()) * np.finfo(float).eps
        out.append(("long row, mixed-sign terms, n = 100,000, 20 draws (units: eps x terms' size)",
                    p, q, truth.kl(p, q), False, unit))
    return out


def run_class_values(p, q, normalize):
    values = {}
    for path in _kernels.available_isas():
        _config.select_isa(path)
        values[f"kl_fast ({path})"] = kl_fast.kl_div(p, q, normalize=normalize)
    _config.select_isa()
    with np.errstate(all="ignore"):
        pn, qn = (p / p.sum(), q / q.sum()) if normalize else (p, q)
        values["NumPy"] = numpy_kl(pn, qn)
        values["SciPy"] = stats.entropy(p, q) if normalize else special.rel_entr(p, q).sum()
    return values


def log_normalized_values(lp, lq):
    """kl_div_log(lp, lq, normalize=True) on every kernel path, NumPy's reference
    and SciPy's log_softmax of each input, then the sum."""
    from kl_fast import reference
    values = {}
    for path in _kernels.available_isas():
        _config.select_isa(path)
        values[f"kl_fast ({path})"] = kl_fast.kl_div_log(lp, lq, normalize=True)
    _config.select_isa()
    values["NumPy"] = reference.kl_div_log(lp, lq, normalize=True)
    sa, sb = special.log_softmax(lp), special.log_softmax(lq)
    values["SciPy"] = np.sum(np.exp(sa) * (sa - sb))
    return values


def log_normalize_offsets(rng, worst):
    """kl_div_log(normalize=True) on rows of logs offset by 1e4 ... 1e300 (n = 10
    and 1,000; beyond 1e14 the logs are the offset plus a few of its ulps), errors
    in units of eps times the terms' size, 1 + sum p (|log p| + |log q|); SciPy is
    its log_softmax of each input, then the sum."""
    label = "kl_div_log normalize, logs offset by 1e4 ... 1e300 (units: eps x terms' size)"
    with mpmath.workprec(160):
        for offset in (1e4, 1e8, 1e12, 1e15, 1e300):
            for n in (10, 1000):
                if offset > 1e14:
                    lp = offset + rng.integers(-8, 9, n) * np.spacing(offset)
                    lq = offset + rng.integers(-8, 9, n) * np.spacing(offset)
                else:
                    lp = 2.0 * rng.standard_normal(n) + offset
                    lq = lp + 0.1 * rng.standard_normal(n) + rng.standard_normal()
                a = [mpmath.mpf(float(v)) - mpmath.mpf(float(lp.max())) for v in lp]
                b = [mpmath.mpf(float(v)) - mpmath.mpf(float(lq.max())) for v in lq]
                la = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in a))
                lb = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in b))
                exact = mpmath.fsum(mpmath.exp(x - la) * ((x - la) - (y - lb)) for x, y in zip(a, b))
                unit = np.finfo(float).eps * float(1 + mpmath.fsum(
                    mpmath.exp(x - la) * (abs(x - la) + abs(y - lb)) for x, y in zip(a, b)))
                for name, value in log_normalized_values(lp, lq).items():
                    err = float(abs(mpmath.mpf(float(value)) - exact)) / unit
                    worst[label, name] = max(worst.get((label, name), 0.0), err)


def log_normalize_near_equal(rng, worst):
    """kl_div_log(normalize=True) on near-equal rows whose entries beside the
    largest sum to less than eps: [0, -40 - u ...] against the same with the
    others lowered by 0.05 .. 0.15 (n = 2, 10 and 1,000; KL about 1e-20 ..
    1e-17), relative errors; NumPy is the reference, SciPy its log_softmax."""
    label = "kl_div_log normalize, near-equal rows, the rest below eps beside the max"
    for n in (2, 10, 1000):
        for _ in range(3):
            lp = np.concatenate([[0.0], -40.0 - rng.random(n - 1)])
            lq = lp.copy()
            lq[1:] -= rng.uniform(0.05, 0.15, n - 1)
            exact = truth.kl_log(lp, lq)
            for name, value in log_normalized_values(lp, lq).items():
                worst[label, name] = max(worst.get((label, name), 0.0), rel(value, exact))


def pairwise_near_duplicates(rng, worst):
    """kl_pairwise's product form on rows near one another (KL 1e-5 .. 1e-4,
    n = 100, 120 x 120 pairs), sampled entries; NumPy and SciPy all-pairs
    one-liners by broadcasting."""
    label = "kl_pairwise, near-duplicate rows (KL 1e-5 ... 1e-4), product form"
    n, m = 100, 120
    for spread in (1e-2, 3e-3):
        base = rng.dirichlet(np.ones(n))
        P = base * (1 + spread * rng.standard_normal((m, n)))
        Q = base * (1 + spread * rng.standard_normal((m, n)))
        P /= P.sum(axis=1, keepdims=True)
        Q /= Q.sum(axis=1, keepdims=True)
        values = {}
        for path in _kernels.available_isas():
            _config.select_isa(path)
            values[f"kl_fast ({path})"] = kl_fast.kl_pairwise(P, Q)
        _config.select_isa()
        values["NumPy"] = np.sum(P[:, None] * np.log(P[:, None] / Q[None]), axis=-1)
        values["SciPy"] = special.rel_entr(P[:, None], Q[None]).sum(axis=-1)
        for i in range(0, m, 4):
            j = (7 * i + 1) % m
            exact = truth.kl(P[i], Q[j])
            for name, matrix in values.items():
                worst[label, name] = max(worst.get((label, name), 0.0), rel(matrix[i, j], exact))


def js_where_logs_cancel(rng, worst):
    """js_div's pair terms where they take the two logs, |p - q| / (p + q) in
    [0.5, 1) (300 pairs, one per row); NumPy is the textbook
    0.5 (p log(p / m) + q log(q / m)), m = (p + q) / 2, in the inputs' dtype,
    SciPy the same with rel_entr."""
    d = rng.uniform(0.5, 1.0, 300)
    q = rng.uniform(0.5, 2.0, 300)
    p = q * (1 + d) / (1 - d)
    for dtype, label in ((np.float64, "js_div pair terms, d = (p - q) / (p + q) in [0.5, 1) (float64)"),
                         (np.float32, "js_div pair terms, d = (p - q) / (p + q) in [0.5, 1) (float32)")):
        a, b = p.astype(dtype), q.astype(dtype)
        m = (a + b) / dtype(2)
        values = {}
        for path in _kernels.available_isas():
            _config.select_isa(path)
            values[f"kl_fast ({path})"] = kl_fast.js_div(a[:, None], b[:, None])
        _config.select_isa()
        values["NumPy"] = dtype(0.5) * (a * np.log(a / m) + b * np.log(b / m))
        values["SciPy"] = dtype(0.5) * (special.rel_entr(a, m) + special.rel_entr(b, m))
        for i in range(a.size):
            exact = truth.js(a[i:i + 1], b[i:i + 1])
            for name, v in values.items():
                worst[label, name] = max(worst.get((label, name), 0.0), rel(v[i], exact))


def gaussian_near_optimum(worst):
    """gaussian_kl(_grad) with p = q(0.3, 2) itself (n = 301 and 1001 on [-10, 10]),
    mu or sigma moved so the KL is 1e-9 ... 1e-13.  NumPy is kl_fast.reference
    (the explicit q), SciPy rel_entr(p, q).sum() of the same q; the gradient's
    error is in units of the gradient's length."""
    from kl_fast import reference
    rows = {np.float64: ("gaussian_kl near its optimum, KL 1e-9 ... 1e-13 (float64)", False),
            np.float32: ("gaussian_kl near its optimum, float32 p, normalize=True", True)}
    grad_label = "gaussian_kl_grad there: gradient error / gradient length (float64)"
    for n in (301, 1001):
        x = np.linspace(-10, 10, n)
        for dtype, (label, normalize) in rows.items():
            p = reference.gaussian_q(x, 0.3, 2.0).astype(dtype)
            for target in (1e-9, 1e-11, 1e-13):
                for mu, sigma in ((0.3 + 2 * np.sqrt(2 * target), 2.0),
                                  (0.3, 2 + 2 * np.sqrt(target / 2))):
                    kl, g1, g2 = truth.gaussian(p, x, mu, sigma, normalize)
                    values = {}
                    for path in _kernels.available_isas():
                        _config.select_isa(path)
                        values[f"kl_fast ({path})"] = kl_fast.gaussian_kl_grad(
                            p, x, mu, sigma, normalize=normalize)
                    _config.select_isa()
                    values["NumPy"] = reference.gaussian_kl_grad(p, x, mu, sigma,
                                                                 normalize=normalize)
                    p64 = p.astype(np.float64)
                    scipy = special.rel_entr(p64 / p64.sum() if normalize else p64,
                                             reference.gaussian_q(x, mu, sigma)).sum()
                    worst[label, "SciPy"] = max(worst.get((label, "SciPy"), 0.0), rel(scipy, kl))
                    length = mpmath.sqrt(g1 * g1 + g2 * g2)
                    for name, v in values.items():
                        worst[label, name] = max(worst.get((label, name), 0.0), rel(v[0], kl))
                        if normalize:
                            continue
                        err = max(abs(mpmath.mpf(float(v[1])) - g1),
                                  abs(mpmath.mpf(float(v[2])) - g2)) / length
                        worst[grad_label, name] = max(worst.get((grad_label, name), 0.0),
                                                      float(err))


def main():
    rng = np.random.default_rng(2026)
    worst = {}
    squares = {}
    for label, p, q, exact, normalize, *unit in cases(rng):
        for name, value in run_class_values(p, q, normalize).items():
            if not unit:
                worst[label, name] = max(worst.get((label, name), 0.0), rel(value, exact))
                continue
            err = float(abs(mpmath.mpf(float(value)) - exact)) / unit[0]
            key = (label + ", worst", name)
            worst[key] = max(worst.get(key, 0.0), err)
            worst.setdefault((label + ", root mean square", name), 0.0)   # its row next
            squares.setdefault((label + ", root mean square", name), []).append(err * err)
    for key, sq in squares.items():
        worst[key] = float(np.sqrt(np.mean(sq)))
    # log-space normalize: ln 2 for every M
    for M in (1e8, 1e15, 1e20, 1e300):
        lp, lq = np.array([M, 0.0]), np.array([0.0, 0.0])
        exact = mpmath.log(2) if M > 1e3 else truth.kl_log(lp, lq)
        for path in _kernels.available_isas():
            _config.select_isa(path)
            key = ("kl_div_log([M, 0], [0, 0], normalize=True), M = 1e8 ... 1e300", f"kl_fast ({path})")
            worst[key] = max(worst.get(key, 0.0), rel(kl_fast.kl_div_log(lp, lq, normalize=True),
                                                      exact))
        _config.select_isa()
        from kl_fast import reference
        key = ("kl_div_log([M, 0], [0, 0], normalize=True), M = 1e8 ... 1e300", "NumPy")
        worst[key] = max(worst.get(key, 0.0), rel(reference.kl_div_log(lp, lq, normalize=True),
                                                  exact))
    pairwise_near_duplicates(rng, worst)
    js_where_logs_cancel(np.random.default_rng(11), worst)   # its own draws: the others keep theirs
    gaussian_near_optimum(worst)
    log_normalize_offsets(rng, worst)
    log_normalize_near_equal(np.random.default_rng(12), worst)   # its own draws too
    labels = list(dict.fromkeys(k[0] for k in worst))
    names = list(dict.fromkeys(k[1] for k in worst))
    print("| case | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for label in labels:
        cells = [f"{worst[(label, n)]:.1e}" if (label, n) in worst else "" for n in names]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(f"\n{sys.version.split()[0]}, numpy {np.__version__}, kl_fast {kl_fast.__version__}")


if __name__ == "__main__":
    main()
