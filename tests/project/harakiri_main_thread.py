"""The graceful harakiri signal handled in the main thread only, as before forkhooks took it in a thread of its own.

A test's control loads it (`import = tests.project.harakiri_main_thread` in the uWSGI ini): with mysqlclient
blocked in C, the handler then runs only after the query, and uWSGI SIGKILLs the worker first.
"""

from forkhooks._adapters import uwsgi_harakiri

uwsgi_harakiri.threads_enabled = lambda: False  # handle() then installs the main thread's handler only
