"""Benchmarks for oneroute-relay (issue 7): `python -m bench [ingest|e2e|drain|memory]`.

Each benchmark runs the relay as a separate process (`python -m relay serve`) on a
generated config with its SQLite store in a temporary directory, drives it from other
processes, and reports its figures as ratios against a baseline measured in the same
invocation. Results are printed as tables and written to bench/results/*.json.
Nothing here runs under `make test`. Method and figures: BENCHMARKS.md.
"""
