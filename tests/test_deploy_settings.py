"""Production settings: ``check --deploy`` and start-up without secrets.

Settings are read once per process, so each case runs ``manage.py`` in a
child process with the environment a deployment would have.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: What ``check --deploy`` may still report with debug off and only the required
#: variables set; each is explained in docs/operations/deployment.md.
DELIBERATE = {
    "security.W004": "HSTS is irreversible for browsers: DJANGO_SECURE_HSTS_SECONDS is the operator's decision",
    "security.W008": "the HTTPS redirect usually belongs to the proxy: DJANGO_SECURE_SSL_REDIRECT=1 turns it on here",
    "executions.W001": "no WEBHOOK_SECRET: webhooks are sent unsigned (the contract's start-up warning)",
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    child = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "WEBHOOK_"))}
    child.pop("DATABASE_URL", None)
    child.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        check=False,
        cwd=ROOT,
        env=child,
        capture_output=True,
        text=True,
        timeout=120,
    )


def settings_values(expression: str, **env: str) -> str:
    """``expression`` evaluated with the settings ``env`` produces (``s`` is the settings)."""
    code = f"import django; django.setup(); from django.conf import settings as s; print({expression})"
    child = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "WEBHOOK_"))}
    child.update(env, DJANGO_SETTINGS_MODULE="config.settings")
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=ROOT, env=child, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def production_env(**extra: str) -> dict[str, str]:
    return {"DJANGO_SECRET_KEY": secrets.token_urlsafe(50), "DJANGO_ALLOWED_HOSTS": "progress.example.com", **extra}


def reported(result: subprocess.CompletedProcess[str]) -> set[str]:
    return set(re.findall(r"\(([a-z_]+\.[EW]\d{3})\)", result.stdout + result.stderr))


def test_check_deploy_reports_only_the_documented_exceptions() -> None:
    result = manage("check", "--deploy", **production_env())
    assert reported(result) == set(DELIBERATE), result.stdout + result.stderr
    assert result.returncode == 0, result.stderr


def test_check_deploy_is_clean_with_a_full_https_configuration() -> None:
    env = production_env(
        WEBHOOK_SECRET=secrets.token_hex(32),
        DJANGO_SECURE_SSL_REDIRECT="1",
        DJANGO_SECURE_HSTS_SECONDS="31536000",
        DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS="yes",
        DJANGO_SECURE_HSTS_PRELOAD="on",
        DJANGO_BEHIND_PROXY="true",
    )
    result = manage("check", "--deploy", "--fail-level", "WARNING", **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize("debug", ["", "0", "false", "off", "nope"])
def test_no_secret_key_and_debug_off_fails_with_a_clear_message(debug: str) -> None:
    result = manage("check", DJANGO_DEBUG=debug, DJANGO_SECRET_KEY="")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr
    assert "Traceback" not in result.stderr.split("ImproperlyConfigured")[-1]


def test_production_settings_keep_browser_protections_on() -> None:
    expression = (
        "s.DEBUG, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY,"
        " 'django.middleware.csrf.CsrfViewMiddleware' in s.MIDDLEWARE,"
        " 'django.middleware.clickjacking.XFrameOptionsMiddleware' in s.MIDDLEWARE, s.X_FRAME_OPTIONS,"
        " 'rest_framework.renderers.BrowsableAPIRenderer' in s.REST_FRAMEWORK['DEFAULT_RENDERER_CLASSES']"
    )
    assert settings_values(expression, **production_env()).split() == [
        "False", "True", "True", "True", "True", "True", "DENY", "False"
    ]


def test_plain_http_deployments_can_opt_out_of_secure_cookies() -> None:
    values = settings_values(
        "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE", **production_env(DJANGO_SECURE_COOKIES="0")
    )
    assert values.split() == ["False", "False"]


def test_proxy_settings_come_from_the_environment() -> None:
    values = settings_values(
        "s.SECURE_PROXY_SSL_HEADER, s.USE_X_FORWARDED_HOST, s.CSRF_TRUSTED_ORIGINS",
        **production_env(DJANGO_BEHIND_PROXY="1", DJANGO_CSRF_TRUSTED_ORIGINS="https://progress.example.com"),
    )
    assert values == "('HTTP_X_FORWARDED_PROTO', 'https') True ['https://progress.example.com']"
