"""An in-repo Django test project: one settings module per case, run in subprocesses by tests/test_forks.py."""
