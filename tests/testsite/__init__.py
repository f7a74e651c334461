"""The demo's Django project with what only the tests and the benchmark use: switches, slow and forking views."""
