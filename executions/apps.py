from django.apps import AppConfig


class ExecutionsConfig(AppConfig):
    name = "executions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported for their side effects, which need the models loaded (hence
        # here and not at the top, the one place a function may import; see
        # tests/test_architecture.py): the built-in targets register themselves,
        # the system checks register, and the tasks module connects the webhook
        # receiver to ``event_recorded``.
        from . import checks, targets, tasks  # noqa: F401, PLC0415 - see above
