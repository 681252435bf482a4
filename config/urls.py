from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from core.api_errors import api_not_found
from core.login import login_throttled

urlpatterns = [
    path("api/v1/", include("executions.api.urls")),
    # Server-Sent Events, served by the streaming edge (an async view).
    path("api/v1/", include("progress.urls")),
    re_path(r"^api/v1/schema/?$", SpectacularAPIView.as_view(), name="api-schema"),
    # A page: anonymous visitors go to the login page (the schema it loads needs a login).
    re_path(r"^api/v1/docs/?$", login_required(SpectacularSwaggerView.as_view(url_name="api-schema")), name="api-docs"),
    # Last of the API: any other /api/ path gets the API's JSON 404, whatever the method.
    re_path(r"^api/", api_not_found, name="api-not-found"),
    # Both login pages count failed attempts per address (before the routes they shadow).
    path("admin/login/", login_throttled(admin.site.login)),
    path("admin/", admin.site.urls),
    path("accounts/login/", login_throttled(auth_views.LoginView.as_view()), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    # Probes and the Prometheus scrape, unauthenticated except /metrics (docs/operations/metrics.md).
    path("", include("executions.ops.urls")),
    path("", include("executions.pages.urls")),
]
