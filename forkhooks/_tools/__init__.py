"""Operator tools: the connection budget, per-process application names, the backends report, the CLI."""
