"""Benchmarks of feproxy: ``bench/run`` (see bench/README.md)."""
