"""Management commands of the app (``manage.py ensure_demo_user``, ``prune_executions``)."""
