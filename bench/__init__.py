"""Benchmarks (not tests: nothing here asserts on time). Run from the repository root, e.g.
``.venv/bin/python -m bench.store_bench``; results go to ``bench/results/`` (git-ignored) and
docs/benchmarks.md."""
