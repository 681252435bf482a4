"""API routes. Each path is served with and without a trailing slash (no
redirect: a redirected POST turns into a GET in many clients)."""

from django.urls import re_path
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authtoken.views import ObtainAuthToken

from . import api
from .api_errors import SafeJSONParser
from .serializers import ValidationErrorSerializer
from .throttles import TokenThrottle

EXECUTION = r"executions/(?P<execution_id>[^/]+)"


class TokenView(ObtainAuthToken):
    """DRF's obtain_auth_token, JSON only, and open to anyone with a username and password."""

    # ObtainAuthToken sets DRF's plain JSONParser (and form parsers): deeply
    # nested JSON would then be a RecursionError's 500.
    parser_classes = [SafeJSONParser]
    # No authentication: a client holding a stale token (or a browser session
    # without the CSRF token) can still exchange its password for a token,
    # instead of getting 401/403 from the credentials it is trying to replace.
    authentication_classes: list[type] = []
    throttle_classes = [TokenThrottle]

    @extend_schema(
        operation_id="auth_token",
        request=inline_serializer("TokenRequest", {"username": serializers.CharField(), "password": serializers.CharField()}),
        responses={
            200: inline_serializer("TokenResponse", {"token": serializers.CharField()}),
            400: OpenApiResponse(ValidationErrorSerializer, description="Missing fields or bad credentials"),
        },
        auth=[],
    )
    def post(self, request, *args, **kwargs):  # noqa: ANN001, ANN201
        return super().post(request, *args, **kwargs)


def both(pattern: str) -> str:
    return rf"^{pattern}/?$"


urlpatterns = [
    re_path(both("executions"), api.ExecutionCollectionView.as_view(), name="api-executions"),
    re_path(both(EXECUTION), api.ExecutionDetailView.as_view(), name="api-execution"),
    re_path(both(EXECUTION + "/progress"), api.ExecutionProgressView.as_view(), name="api-execution-progress"),
    re_path(both(EXECUTION + "/cancel"), api.ExecutionCancelView.as_view(), name="api-execution-cancel"),
    re_path(both(EXECUTION + "/events"), api.ExecutionEventsView.as_view(), name="api-execution-events"),
    re_path(both("targets"), api.TargetListView.as_view(), name="api-targets"),
    re_path(both("auth/token"), TokenView.as_view(), name="api-token"),
]
