"""Runtime adapters: when to call the core in gunicorn, uWSGI, Celery, RQ and plain forks."""
