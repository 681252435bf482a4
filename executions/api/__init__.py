"""The REST API (``/api/v1``): DRF views, serializers, routes, the OpenAPI schema's hooks.

An edge: its views parse, call one service or selector, and render; the answer
to each domain error is ``errors.py``'s, the same for every view.
"""
