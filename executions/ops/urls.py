"""Routes of the operator's endpoints, at the site root: ``/healthz`` (and ``/health``), ``/readyz``, ``/metrics``.

Each is served with or without a trailing slash, never redirected: a probe
reads the first answer it gets.
"""

from django.urls import re_path

from . import views

urlpatterns = [
    re_path(r"^healthz/?$", views.healthz, name="healthz"),
    re_path(r"^health/?$", views.healthz, name="health"),
    re_path(r"^readyz/?$", views.readyz, name="readyz"),
    re_path(r"^metrics/?$", views.metrics_view, name="metrics"),
]
