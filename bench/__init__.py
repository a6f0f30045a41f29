"""Benchmarks for trio_timehttp: ``python -m bench`` and ``python -m bench.soak``.

Run by ``nox -s bench`` / ``nox -s soak``; not part of the test suite and not
installed with the package. See bench/README.md for the method.
"""
