"""Server-rendered pages (see executions/views.py)."""

urlpatterns: list = []
