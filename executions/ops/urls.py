"""Routes of the operator's endpoints, at the site root (with or without a trailing slash, no redirect)."""

from django.urls import re_path

from . import views

urlpatterns = [
    re_path(r"^healthz/?$", views.healthz, name="healthz"),
    re_path(r"^health/?$", views.healthz, name="health"),
    re_path(r"^readyz/?$", views.readyz, name="readyz"),
    re_path(r"^metrics/?$", views.metrics_view, name="metrics"),
]
