"""Time benchmark cases and print speed-up ratios against the NumPy baseline.

A case builds its inputs once (outside the timed region) and returns named
zero-argument callables; each is timed as the median of several repeats, and
the table shows ``baseline time / time``, so 5.0 means five times faster than
the baseline measured in the same run.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import platform
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple


@dataclass
class Case:
    """One group of the table: a shape/dtype with the implementations to compare.

    ``setup`` returns {implementation name: zero-argument callable}; when the
    mapping it returns has a ``close()`` method, that is called once the case
    has been timed.
    """

    group: str
    setup: Callable[[], Dict[str, Callable[[], object]]]
    baseline: str = "numpy reference"
    note: str = ""
    tags: Tuple[str, ...] = field(default_factory=tuple)


@dataclass
class Result:
    group: str
    impl: str
    seconds: float
    speedup: Optional[float]
    baseline: str
    note: str = ""


_BUILT: Dict[str, Dict[str, Callable[[], object]]] = {}


def built_impls(case: Case) -> Dict[str, Callable[[], object]]:
    """``case.setup()``, built once and kept until another case is asked for
    (so only one case's inputs are in memory at a time)."""
    if case.group not in _BUILT:
        _BUILT.clear()
        _BUILT[case.group] = case.setup()
    return _BUILT[case.group]


def discover_cases(quick: bool, only: Optional[List[str]] = None) -> List[Case]:
    """Cases from every ``kl_fast.bench.cases_*`` module, in module-name order."""
    from kl_fast import bench

    found = []
    for info in sorted(pkgutil.iter_modules(bench.__path__), key=lambda i: i.name):
        if not info.name.startswith("cases_"):
            continue
        topic = info.name[len("cases_"):]
        if only and topic not in only:
            continue
        mod = importlib.import_module(f"kl_fast.bench.{info.name}")
        found.extend(mod.cases(quick))
    return found


def time_callable(fn: Callable[[], object], *, quick: bool) -> float:
    """Median seconds per call over repeats of an auto-sized loop."""
    target = 0.01 if quick else 0.05
    repeats = 3 if quick else 7
    # Warm-up until steady (imports, caches, thread pool, the heap of NumPy's
    # temporaries): the first calls of an allocating baseline are slower.
    warm_until = time.perf_counter() + (0.05 if quick else 0.25)
    fn()
    while time.perf_counter() < warm_until:
        fn()
    number = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed >= target or number >= 1 << 20:
            break
        number *= 2 if elapsed == 0 else max(2, min(10, int(target / max(elapsed, 1e-9)) + 1))
    samples = [elapsed / number]
    for _ in range(repeats - 1):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - t0) / number)
    samples.sort()
    return samples[len(samples) // 2]


def run(cases: List[Case], *, quick: bool = False,
        progress: Optional[Callable[[str, str], None]] = None) -> List[Result]:
    results: List[Result] = []
    for case in cases:
        impls = case.setup()
        timings = {}
        try:
            for name, fn in impls.items():
                timings[name] = time_callable(fn, quick=quick)
                if progress is not None:
                    progress(case.group, name)
        finally:
            # a setup that started something (a cluster, say) returns a mapping with close()
            if hasattr(impls, "close"):
                impls.close()
        base = timings.get(case.baseline)
        for name, sec in timings.items():
            results.append(Result(case.group, name, sec, None if base is None else base / sec,
                                  case.baseline, case.note))
        del impls
    return results


def steady_allocator() -> str:
    """Keep freed memory in the heap so NumPy's temporaries are reused.

    With glibc's defaults, a temporary of more than 128 kB is mapped and
    unmapped (or the heap trimmed) on every call, and the NumPy baselines then
    pay page faults that depend on what the process did before.  Raising the
    thresholds gives the baselines their best, steady time: the ratios are
    then lower bounds.  Returns a description for the table header.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 1 << 30) and libc.mallopt(m_trim_threshold, 1 << 31)
        return "glibc, trim/mmap thresholds raised" if ok else "default"
    except (OSError, AttributeError):
        return "default"


def environment() -> Dict[str, object]:
    import numpy as np

    import kl_fast
    from kl_fast._config import config

    env: Dict[str, object] = dict(config())
    env.update(python=platform.python_version(), numpy=np.__version__,
               machine=platform.machine(), kl_fast=kl_fast.__version__)
    try:
        import scipy

        env["scipy"] = scipy.__version__
    except ImportError:
        pass
    return env


def _fmt_time(sec: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if sec >= scale:
            return f"{sec / scale:7.2f} {unit}"
    return f"{sec / 1e-9:7.2f} ns"


def format_table(results: List[Result], env: Optional[Dict[str, object]] = None) -> str:
    lines = []
    if env:
        lines.append("; ".join(f"{k}={v}" for k, v in env.items()))
        lines.append("")
    lines.append("| case | implementation | time (median) | speed-up vs baseline |")
    lines.append("|---|---|---:|---:|")
    last = None
    for r in results:
        group = r.group if r.group != last else ""
        last = r.group
        ratio = "baseline" if r.impl == r.baseline else (f"{r.speedup:.2f}x" if r.speedup else "-")
        lines.append(f"| {group} | {r.impl} | {_fmt_time(r.seconds)} | {ratio} |")
    return "\n".join(lines)


def memory_report(quick: bool, only: Optional[List[str]] = None) -> List[str]:
    """The memory table's rows of the topics run (their cases modules'
    ``memory_report``)."""
    lines: List[str] = []
    for topic in ("kl", "gaussian"):
        if not only or topic in only:
            lines += importlib.import_module(f"kl_fast.bench.cases_{topic}").memory_report(quick)
    return lines


def print_memory(lines: List[str]) -> None:
    if lines:
        print()
        print("| memory | tracemalloc | extra |")
        print("|---|---:|---:|")
        print("\n".join(lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="kl_fast speed-up table (ratios against the NumPy baseline).")
    parser.add_argument("--quick", action="store_true", help="smaller inputs and fewer repeats")
    parser.add_argument("--only", action="append", help="topic(s) to run: kl, gaussian, pairwise, dask, ...")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    allocator = steady_allocator()
    cases = discover_cases(args.quick, args.only)
    env = environment()
    env["allocator"] = allocator

    def progress(group, impl):
        print(f"  timed {group} / {impl}", file=sys.stderr, flush=True)

    results = run(cases, quick=args.quick, progress=progress)
    print(format_table(results, env))
    print_memory(memory_report(args.quick, args.only))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"environment": env, "results": [r.__dict__ for r in results]}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
