"""Executions: long jobs (pipelines and agents) run by Celery workers, with their numbered progress events.

The domain (models, registry, events, services, selectors, broker) sits
below its edges (``api``, ``pages``, ``ops``, ``admin``, ``templatetags``) and
the running code (tasks, runner, context, sweepers, worker, webhooks): both
import the domain, never the reverse (``tests/test_architecture.py``).
"""
