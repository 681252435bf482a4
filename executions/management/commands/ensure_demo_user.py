"""Create the local demo accounts, idempotently, and say how to log in (``dev.py run`` calls it).

The passwords are random, never a well-known default, and kept in
``var/<user>_password`` (mode 0600) so that every start prints the same ones.
``--credentials-file PATH`` also writes them as JSON (mode 0600) for a
program: ``dev.py run`` reads its banner's credentials there, not this output.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from rest_framework.authtoken.models import Token


@dataclass(frozen=True)
class Account:
    username: str
    description: str
    superuser: bool


ACCOUNTS = (
    Account("demo", "demo user (pages and API)", superuser=False),
    Account("admin", "admin user (/admin/)", superuser=True),
)


def var_dir() -> Path:
    return Path(settings.BASE_DIR) / "var"


def read_password(path: Path) -> str | None:
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        return None
    return value or None


def write_private(path: Path, text: str) -> None:
    """Write the file readable by the owner only, created that way (no chmod race)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def ensure_account(account: Account, password_file: Path) -> tuple[AbstractBaseUser, str, str]:
    """Make the user exist with the stored password and a token; return (user, password, token)."""
    User = get_user_model()  # noqa: N806 - the model class, named as Django names it
    stored = read_password(password_file)
    password = stored or secrets.token_urlsafe(12)
    with transaction.atomic():
        user, created = User.objects.get_or_create(username=account.username)
        changed = created
        # Someone may have changed the password (e.g. in the admin); the file is
        # what gets printed, so the account is brought back in line with it.
        if created or stored is None or not user.check_password(password):
            user.set_password(password)
            changed = True
        for flag in ("is_active", "is_staff", "is_superuser"):
            wanted = True if flag == "is_active" else account.superuser
            if getattr(user, flag) != wanted:
                setattr(user, flag, wanted)
                changed = True
        if changed:
            user.save()
        token, _ = Token.objects.get_or_create(user=user)
    if stored is None:
        write_private(password_file, password + "\n")
    return user, password, token.key


class Command(BaseCommand):
    """``manage.py ensure_demo_user`` (the module docstring)."""

    help = "Create the demo and admin users if missing (idempotent) and print their credentials."
    # dev.py runs migrate (which runs the checks) just before; once is enough.
    requires_system_checks = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--credentials-file",
            type=Path,
            help='Also write the credentials to this file as JSON (mode 0600): '
            '{"accounts": [{"username", "password", "token", "description", "superuser"}, ...]}.',
        )

    def handle(self, *args: Any, **options: Any) -> None:
        accounts = []
        for account in ACCOUNTS:
            _, password, token = ensure_account(account, var_dir() / f"{account.username}_password")
            accounts.append(
                {
                    "username": account.username,
                    "password": password,
                    "token": token,
                    "description": account.description,
                    "superuser": account.superuser,
                }
            )
            if options["verbosity"] >= 1:
                self.stdout.write(f"{account.description}:")
                self.stdout.write(f"  username: {account.username}")
                self.stdout.write(f"  password: {password}")
                self.stdout.write(f"  token: {token}")
        if options["credentials_file"] is not None:
            write_private(options["credentials_file"], json.dumps({"accounts": accounts}, indent=2) + "\n")
