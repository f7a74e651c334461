"""Benchmarks of forkhooks against the alternatives: run ``python bench/run.py``."""
