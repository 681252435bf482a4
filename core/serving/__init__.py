"""How the service is served: the processes and the ASGI server beneath Django.

``supervisor`` is the parent of ``manage.py serve`` (its command is in
``management/``): N daphne processes on one port. ``websocket`` and ``http``
adjust daphne and its libraries; ``config/asgi.py`` installs them.
"""
