"""Development tooling: the launcher behind ``dev.py`` and the child processes of tests.

Nothing in the service imports this package; it is what a developer, the test
suite and the benchmarks use to run the service's processes on one machine.
Importing it never loads Django settings or the Celery app, so it can set the
environment up before either is imported.
"""
