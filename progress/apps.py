"""The streaming edge's app: its publisher listens to the domain's signals once the app is ready."""

from django.apps import AppConfig


class ProgressConfig(AppConfig):
    """The streaming edge: WebSocket consumers, their routing, auth and transport."""

    name = "progress"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Connects the publisher to ``executions.signals.event_recorded``; it
        # imports the channel layer, which needs the settings loaded (AppConfig.ready(),
        # the one place a function may import; see tests/test_architecture.py).
        from . import broadcast  # noqa: F401, PLC0415 - see above
