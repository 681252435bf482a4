"""How the service is served: the processes and the ASGI server beneath Django.

``supervisor`` is the parent of ``manage.py serve`` (its command is in
``management/``): generations of N processes on one port, each a ``child``
running ``server.DrainingServer`` (daphne that drains on SIGTERM; ``drain``
is the process's draining state). ``daphne.tune_daphne()`` is the one call,
from ``config/asgi.py``, that installs every adjustment to daphne and its
libraries (``websocket``: autobahn; ``http``: request bodies, connections).
Importing a module here changes nothing in those libraries (``server`` and
``child`` import daphne's server, which installs Twisted's asyncio reactor, as
daphne always does): only ``tune_daphne()`` does, and a second call changes
nothing more.
"""
