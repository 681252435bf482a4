"""``python -m tests.security``: print the permission matrix as markdown.

Set ``DJANGO_DEBUG=1`` (or ``DJANGO_SECRET_KEY``) as for any command: the
matrix module imports the project's models and clients.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from .test_permission_matrix import render_markdown  # noqa: E402 - after django.setup()

print(render_markdown(), end="")
