"""Benchmark cases and the runner that prints kl_fast-vs-baseline ratio tables.

Run ``python bench/compare.py`` from a checkout or ``kl-fast bench``.
"""
