"""Server-rendered pages: the list, one execution (live), and the start form.

See views.py; the README lists the URLs.
"""

from django.urls import path

from . import views

urlpatterns = [
    path("", views.execution_list, name="execution-list"),
    path("executions/new", views.execution_start, name="execution-start"),
    path("executions/<str:execution_id>", views.execution_detail, name="execution-detail"),
    path("executions/<str:execution_id>/cancel", views.execution_cancel_view, name="execution-cancel"),
    path("executions/<str:execution_id>/rerun", views.execution_rerun_view, name="execution-rerun"),
]
