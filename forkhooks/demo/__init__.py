"""``forkhooks demo``: the bug and the fix, side by side, on a throw-away PostgreSQL.

``site`` is the demo's Django project (pooling on); ``run`` drives it under real
gunicorn without and with forkhooks; ``embedded``, ``loadgen``, ``process`` and
``procnet`` are its machinery (a PostgreSQL, a load generator, a server process,
a socket counter), which forkhooks' tests and benchmark reuse.
"""
