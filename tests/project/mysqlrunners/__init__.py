"""Huey's and django-q2's jobs on MySQL, and the probes the tests read (all through Redis)."""
