"""``/healthz`` (``/health``), ``/readyz`` and ``/metrics`` (docs/operations/metrics.md).

Plain Django views, outside DRF on purpose: no authentication, throttling or
content negotiation stands between a probe and its answer, and nothing here
writes, so CSRF does not arise. The probes' bodies say pass or fail per check
and nothing else (no hostnames, versions or errors: they are public).

``/metrics`` is for staff (a browser session) or a scraper sending
``Authorization: Bearer <METRICS_TOKEN>``; refusals are JSON with a ``detail``
like the API's.
"""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from core import metrics
from core.serving import drain
from executions.models import ExecutionStatus
from executions.selectors import execution_counts_by_status

from .probes import readiness

PASS = "pass"
FAIL = "fail"
BEARER = "bearer"
#: The check a draining process fails.
DRAINING = "draining"


def _verdict(ok: bool) -> str:
    return PASS if ok else FAIL


@require_safe
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: this process answers HTTP. Checks nothing else, so a database or
    Redis outage never makes an orchestrator restart healthy web processes."""
    return JsonResponse({"status": PASS})


@require_safe
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: 200 when the database, Redis and at least one worker are there, else 503.

    A draining process (``manage.py serve`` after SIGTERM) answers 503 at once,
    with its one ``draining`` check, so that a balancer sends it nothing new.
    """
    if drain.draining():
        return JsonResponse({"status": FAIL, "checks": {DRAINING: FAIL}}, status=503)
    checks = readiness()
    ready = all(checks.values())
    body = {"status": _verdict(ready), "checks": {name: _verdict(ok) for name, ok in checks.items()}}
    return JsonResponse(body, status=200 if ready else 503)


def _bearer_token(request: HttpRequest) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != BEARER:
        return None
    return token.strip()


def _token_matches(presented: str, expected: str) -> bool:
    """Constant time, and over digests so not even the length is compared early."""
    if not expected:
        return False
    return hmac.compare_digest(hashlib.sha256(presented.encode()).digest(), hashlib.sha256(expected.encode()).digest())


def _refused(detail: str, status: int) -> JsonResponse:
    response = JsonResponse({"detail": detail}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


def metrics_refusal(request: HttpRequest) -> JsonResponse | None:
    """Why ``request`` may not scrape (401 or 403), or None if it may.

    A valid bearer token is enough, and is checked first: a scraper's request
    never touches the session or the database. A token that does not match
    is refused even for a staff session, so a misconfigured scraper is noticed.
    """
    token = _bearer_token(request)
    if token is not None:
        return None if _token_matches(token, settings.METRICS_TOKEN) else _refused("Invalid metrics token", 401)
    user = request.user
    if not user.is_authenticated:
        return _refused("Authentication required", 401)
    if not (user.is_active and user.is_staff):
        return _refused("Staff only", 403)
    return None


#: Read per scrape from the database (see ``execution_counts_by_status``).
EXECUTIONS_BY_STATUS = metrics.CountsCollector(
    "stored",
    f"Executions stored, by status ({', '.join(ExecutionStatus.values)}), counted at scrape time.",
    "status",
    execution_counts_by_status,
)


@require_safe
@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The Prometheus scrape: every process's counters (multiprocess mode) plus executions by status."""
    refusal = metrics_refusal(request)
    if refusal is not None:
        return refusal
    body, content_type = metrics.exposition(request.headers.get("Accept"), EXECUTIONS_BY_STATUS)
    return HttpResponse(body, content_type=content_type)
