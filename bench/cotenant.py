"""Calls back to back beside a co-tenant: ``python bench/cotenant.py`` prints a
markdown table (about 90 s).

Another program holds a core: here one Python busy loop per spinner, in other
processes (``--spinners 1,3``: one loop, then three).  A thread team then waits
for its second thread whenever the scheduler gives that core to the loop, and a
call on the team can take far longer than one thread would.  The default thread
count should notice (kl_fast/_kernels.pyx, "A busy core") and cost about what
one thread does.

Each cell is the mean time per call of ``kl_div`` called back to back for 1 s
(a mean, not a median: the slow calls are the point), the median over 3 such
blocks, the three thread settings taking turns (so each default block starts
where the busy core is still to be found).
"""
import argparse
import multiprocessing
import time

import numpy as np

import kl_fast

SIZES = {"n=20,000": (20000,), "200 x 1,000": (200, 1000), "n=200,000": (200000,)}
SETTINGS = (("default", None), ("1 thread", 1), ("num_threads=2", 2))


def spin(stop):
    while not stop.is_set():
        pass


def per_call(p, q, threads, seconds=1.0):
    calls = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        kl_fast.kl_div(p, q, num_threads=threads)
        calls += 1
    return (time.perf_counter() - start) / calls


def row(shape, blocks=3):
    rng = np.random.default_rng(0)
    p, q = rng.random(shape), rng.random(shape)
    times = {name: [] for name, _ in SETTINGS}
    for _ in range(blocks):
        for name, threads in SETTINGS:
            times[name].append(per_call(p, q, threads))
    return {name: float(np.median(t)) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spinners", default="0,1,3",
                        help="comma-separated counts of busy loops to run beside (default 0,1,3)")
    args = parser.parse_args()
    ctx = multiprocessing.get_context("spawn")
    print("| co-tenant loops | rows | " + " | ".join(name for name, _ in SETTINGS)
          + " | default / 1 thread |")
    print("|---|---|" + "---:|" * (len(SETTINGS) + 1))
    for count in (int(c) for c in args.spinners.split(",")):
        stop = ctx.Event()
        loops = [ctx.Process(target=spin, args=(stop,)) for _ in range(count)]
        for loop in loops:
            loop.start()
        time.sleep(0.5)
        try:
            for label, shape in SIZES.items():
                t = row(shape)
                cells = " | ".join(f"{t[name] * 1e6:.1f} us" for name, _ in SETTINGS)
                print(f"| {count} | {label} | {cells} | {t['default'] / t['1 thread']:.2f} |",
                      flush=True)
        finally:
            stop.set()
            for loop in loops:
                loop.join()


if __name__ == "__main__":
    main()
