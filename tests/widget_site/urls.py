"""The project's URLs, plus the widget demo page (tests/settings.py's ROOT_URLCONF)."""

from django.urls import path

from config import urls as project_urls

from . import views

urlpatterns = [
    path("widget-demo/", views.widget_demo, name="widget-demo"),
    path("event-source-demo/<str:execution_id>", views.event_source_demo, name="event-source-demo"),
    *project_urls.urlpatterns,
]
