"""A test-only app: someone else's plain page with the drop-in progress widget.

The browser tests load it from the live stack (``tests/settings.py`` installs the
app and routes ``/widget-demo/`` before the project's URLs): a template that knows
nothing of the project's pages, base template or stylesheet, with the three lines
docs/guides/widget.md shows.
"""
