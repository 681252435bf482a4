"""The API's JSON parser, site-wide (``DEFAULT_PARSER_CLASSES``).

A module of its own, apart from :mod:`core.api_errors`: DRF imports the
parser classes named in the settings while ``rest_framework.views`` is being
imported, so this module must not import ``rest_framework.views`` itself.
"""

from __future__ import annotations

import io

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser

from .serving.http import body_too_large_message


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"

    def __init__(self) -> None:
        super().__init__(body_too_large_message())


class SafeJSONParser(JSONParser):
    """JSONParser with a body-size limit (DRF reads the stream unbounded) that
    answers deeply nested JSON with 400 instead of a RecursionError's 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and stream is not None:
            request = (parser_context or {}).get("request")
            meta = getattr(request, "META", {}) if request is not None else {}
            try:
                declared = int(meta.get("CONTENT_LENGTH") or 0)
            except ValueError:
                declared = 0
            if declared > limit:
                raise PayloadTooLarge()
            body = stream.read(limit + 1)
            if len(body) > limit:
                raise PayloadTooLarge()
            stream = io.BytesIO(body)
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise exceptions.ParseError("JSON parse error - nested too deeply") from exc
