"""How the idle threads of kl_fast's OpenMP runtime wait.

GNU OpenMP (libgomp) reads its settings from the environment once, when the
library loads, and by default an idle thread spins for several milliseconds
after every parallel region before it sleeps.  Measured on a 2-core virtual
machine (docs/core.md, "Threads that do not spin"): 8.7 ms of CPU burned after
each multi-threaded call, and a call made 20 ms after the last one took 7.8 ms
instead of 14 us, the idle core having spun its share away; with
GOMP_SPINCOUNT=3000 the burn was 0.06 ms, the isolated call 0.24 ms, and calls
back to back as fast as before.

So while the compiled modules load (and with them the runtime), kl_fast sets
GOMP_SPINCOUNT=3000 unless the user has set GOMP_SPINCOUNT or OMP_WAIT_POLICY
(GOMP_SPINCOUNT=300000 restores libgomp's own default), and removes it right
after.  The setting is the runtime's, for the whole process: a library that
shares the same libgomp and is loaded later spins as briefly (wheels bundle a
private copy, so there only kl_fast's runtime has it); a libgomp loaded before
kl_fast keeps its settings.  Runtimes other than libgomp ignore the variable.
The environment is changed for the moment of the import only; another thread
reading it (or starting a process) in that moment would see the variable.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

SPINCOUNT = "3000"

# What brief_spin did at import: the value it set, or None when the user's
# environment chose (or when it has not run).
applied: str | None = None


@contextlib.contextmanager
def brief_spin() -> Iterator[None]:
    """GOMP_SPINCOUNT=SPINCOUNT in the environment for the body, unless the
    user set GOMP_SPINCOUNT or OMP_WAIT_POLICY; the environment is restored."""
    global applied
    if "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ:
        yield
        return
    os.environ["GOMP_SPINCOUNT"] = SPINCOUNT
    try:
        yield
    finally:
        os.environ.pop("GOMP_SPINCOUNT", None)
    applied = SPINCOUNT
