"""Calls spaced out in time, and the CPU the idle OpenMP threads burn:
``python bench/threads.py`` prints a markdown table (about half a minute).

A benchmark loop calls back to back; a program calls now and then.  Each case
is timed after a gap (busy Python for gaps under 1 ms, a sleep from 1 ms), median
of the repeats, with the default threads and with num_threads=2 and 1, each in a
fresh interpreter: kl_fast as it loads (GOMP_SPINCOUNT=3000, see kl_fast/_openmp.py)
and with GOMP_SPINCOUNT=300000, libgomp's own default.  The default takes the
team only where waking it pays (kl_fast/_kernels.pyx, default_team).  "burn" is the CPU time
the process uses in the 50 ms after a multi-threaded call.
"""
import json
import os
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import numpy as np
import kl_fast

rng = np.random.default_rng(0)
p, q = rng.random(20000), rng.random(20000)
P, Q = rng.random((1000, 1000)), rng.random((1000, 1000))
threads = None if sys.argv[1] == "default" else int(sys.argv[1])


def wait(gap_us):
    if gap_us >= 1000:
        time.sleep(gap_us * 1e-6)
        return
    end = time.perf_counter() + gap_us * 1e-6
    while time.perf_counter() < end:
        pass


row = {}
for gap in (0, 100, 1000, 20000):
    for name, args in (("n=20,000", (p, q)), ("1,000 x 1,000", (P, Q))):
        kl_fast.kl_div(*args, num_threads=threads)
        times = []
        for _ in range(40 if gap >= 1000 else 200):
            wait(gap)
            t0 = time.perf_counter()
            kl_fast.kl_div(*args, num_threads=threads)
            times.append(time.perf_counter() - t0)
        row[f"{name}, gap {gap} us"] = float(np.median(times))
kl_fast.kl_div(P, Q, num_threads=threads)
r0 = resource.getrusage(resource.RUSAGE_SELF)
time.sleep(0.05)
r1 = resource.getrusage(resource.RUSAGE_SELF)
row["burn"] = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
print(json.dumps(row))
"""


def measure(threads, spincount=None):
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    if spincount is not None:
        env["GOMP_SPINCOUNT"] = spincount
    out = subprocess.run([sys.executable, "-c", CHILD, threads], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def fmt(seconds):
    return f"{seconds * 1e6:.0f} us" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


def main():
    columns = {
        "kl_fast, default threads": measure("default"),
        "libgomp's spin (300000), default threads": measure("default", "300000"),
        "kl_fast, num_threads=2": measure("2"),
        "kl_fast, num_threads=1": measure("1"),
    }
    print("| case | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for case in next(iter(columns.values())):
        label = "CPU burned in the 50 ms after a call" if case == "burn" else case
        print(f"| {label} | " + " | ".join(fmt(c[case]) for c in columns.values()) + " |")


if __name__ == "__main__":
    main()
