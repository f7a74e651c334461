"""A Django PostgreSQL backend that rebuilds its pool when os.getpid() changes (the benchmark's baseline)."""
