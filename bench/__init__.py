"""Benchmarks: containment latency, cold start, offline replay throughput and an event storm.

Run them with `python -m bench` (or `make bench`); see bench/__main__.py.
"""
