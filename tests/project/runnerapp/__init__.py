"""The test project's jobs for Huey and django-q2, and the probes the tests read (all through Redis)."""
