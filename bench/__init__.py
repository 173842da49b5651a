"""Benchmarks: ``python -m bench.bench`` (see the README)."""
