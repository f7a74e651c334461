"""Plain WSGI apps (no Django) that create their database pool at import, as many apps do."""
