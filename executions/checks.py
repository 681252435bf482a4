"""The app's system checks (Django runs them with ``manage.py check``, ``migrate`` and the like).

Each warns about a setting that works but is unsafe in production; none stops
the service (a setting that must be set fails in ``config/settings.py``).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks


@checks.register()
def webhook_secret_check(app_configs: Any, **kwargs: Any) -> list[checks.Warning]:
    """A warning at start-up when webhooks would go out unsigned."""
    if settings.WEBHOOK_SECRET:
        return []
    return [
        checks.Warning(
            "WEBHOOK_SECRET is not set: webhooks are sent without an X-Signature-256 header.",
            hint="Set WEBHOOK_SECRET to a long random string so receivers can verify the sender.",
            id="executions.W001",
        )
    ]
