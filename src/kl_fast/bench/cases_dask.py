"""kl_fast.dask cases: what scaling out costs on one machine.

A large batch of rows against one q, computed by single-process
``kl_fast.kl_div`` (the baseline of this group), by ``kl_fast.dask.kl_div`` on
the threaded scheduler (row blocks, and blocks that also split the reduction
axis) and on a local ``dask.distributed`` cluster of two single-threaded
worker processes holding the data (persisted once, outside the timed region).
No rows when dask is not installed; no cluster row without distributed.
"""
from __future__ import annotations

import logging
from typing import Callable, Dict

import numpy as np

from kl_fast.bench.runner import Case

BASELINE = "kl_fast.kl_div (in memory, 1 process)"


class _Impls(Dict[str, Callable[[], object]]):
    """Implementations of a case, with the cluster they started (closed after timing)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._closers = []

    def close(self):
        while self._closers:
            self._closers.pop()()


def _start_cluster(impls, n_workers=2):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=None,
                           silence_logs=logging.ERROR)
    impls._closers.append(cluster.close)
    client = Client(cluster, set_as_default=False)
    impls._closers.append(client.close)
    return client


def _aligned(block):
    if not block.flags.aligned:
        raise RuntimeError("a block on a worker is not aligned")


def _batch(m, n, row_block, split_n):
    def setup():
        import dask.array as da

        import kl_fast
        import kl_fast.dask as kd

        rng = np.random.default_rng(m + n)
        P = rng.random((m, n))
        q = rng.random(n) + 0.01
        blocks = m // row_block
        P_rows = da.from_array(P, chunks=(row_block, n))
        P_split = da.from_array(P, chunks=(2 * row_block, n // split_n))
        impls = _Impls()
        impls[BASELINE] = lambda: kl_fast.kl_div(P, q)
        impls[f"kl_fast.dask threads, {blocks} row blocks"] = \
            lambda: kd.kl_div(P_rows, q).compute(scheduler="threads")
        impls[f"kl_fast.dask threads, {P_split.npartitions} blocks (n split in {split_n})"] = \
            lambda: kd.kl_div(P_split, q).compute(scheduler="threads")
        try:
            import distributed  # noqa: F401
        except ImportError:
            return impls
        try:
            client = _start_cluster(impls)
            # The row blocks live on the workers, as data loaded there would.  Arrays
            # that arrive over the network can be unaligned (the kernels would then
            # copy them on every call): a copy made on the worker is aligned.
            sent = client.scatter([P[i:i + row_block] for i in range(0, m, row_block)])
            parts = client.map(np.copy, sent)
            client.gather(client.map(_aligned, parts))
            del sent
            P_cluster = da.concatenate([da.from_delayed(f, shape=(row_block, n), dtype=P.dtype)
                                        for f in parts])
            impls[f"kl_fast.dask 2-worker LocalCluster, {blocks} row blocks"] = \
                lambda: client.compute(kd.kl_div(P_cluster, q)).result()
        except BaseException:
            impls.close()
            raise
        return impls
    return setup


def cases(quick: bool):
    try:
        import dask.array  # noqa: F401
    except ImportError:
        return []
    m, n = (4_000, 1_000) if quick else (40_000, 1_000)
    return [Case(f"dask kl_div float64 batch {m:,} x {n:,} vs one q", _batch(m, n, m // 8, 4),
                 baseline=BASELINE)]
