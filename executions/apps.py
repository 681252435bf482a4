from django.apps import AppConfig


class ExecutionsConfig(AppConfig):
    name = "executions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the built-in targets of the contract and the system checks.
        from progress.services import terminal_listeners

        from . import checks, targets  # noqa: F401
        from .webhooks import on_terminal_event

        if on_terminal_event not in terminal_listeners:
            terminal_listeners.append(on_terminal_event)
