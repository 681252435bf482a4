"""WSGI entry point, for servers and tools that speak only WSGI.

The service runs under ASGI (``config/asgi.py``, what the Procfile starts):
the WebSocket stream exists only there. Under WSGI the pages, the admin and
the REST API work, and the pages fall back to polling.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_wsgi_application()
