from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("api/v1/", include("executions.urls")),
    re_path(r"^api/v1/schema/?$", SpectacularAPIView.as_view(), name="api-schema"),
    re_path(r"^api/v1/docs/?$", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("executions.page_urls")),
]
