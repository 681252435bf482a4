"""The ``executions`` app: the domain, its edges (API, pages, ops, admin) and its running code.

``ready()`` is where the modules that need the models loaded are imported for
their side effects (targets, system checks, the webhook receiver), the one
place the architecture test lets a function import.
"""

from importlib import import_module

from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class ExecutionsConfig(AppConfig):
    """The domain app: loads the targets, system checks and task receivers once models are ready."""

    name = "executions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported for their side effects, which need the models loaded (hence
        # here and not at the top, the one place a function may import; see
        # tests/test_architecture.py): the built-in targets register themselves,
        # the system checks register, and the tasks module connects the webhook
        # receiver to ``event_recorded``.
        from . import checks, targets, tasks  # noqa: F401, PLC0415 - see above

        # The deployment's own targets (EXECUTION_TARGET_MODULES), registered the same way.
        for module in settings.EXECUTION_TARGET_MODULES:
            try:
                import_module(module)
            except ImportError as exc:
                raise ImproperlyConfigured(
                    f"EXECUTION_TARGET_MODULES names {module!r}, which cannot be imported: {exc}"
                ) from exc
