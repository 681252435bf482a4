"""How the service is served: the processes and the ASGI server beneath Django.

``supervisor`` is the parent of ``manage.py serve`` (its command is in
``management/``): N daphne processes on one port. ``daphne.tune_daphne()`` is
the one call, from ``config/asgi.py``, that installs every adjustment to daphne
and its libraries (``websocket``: autobahn; ``http``: request bodies).
Importing a module here changes nothing in those libraries: only
``tune_daphne()`` does, and a second call changes nothing more.
"""
