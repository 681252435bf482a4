"""The Celery app: ``celery -A config worker`` finds it here."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Every worker sweeps (lost runs and messages, retention): no extra process.
# Named, not imported: the step's module needs Django's apps loaded.
app.steps["worker"].add("executions.worker:MaintenanceStep")
