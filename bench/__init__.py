"""Benchmarks of forkhooks against the alternatives (issue #4 §5): run ``python bench/run.py``."""
