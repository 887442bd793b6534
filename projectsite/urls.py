from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from accounts import views as account_views
from projectsite import api

urlpatterns = [
    path("", account_views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/", include("accounts.urls")),
    path("datasets/", include("curation.urls")),
    path("training/", include("training.urls")),
    path("evaluation/", include("evaluation.urls")),
    path("annotation/", include("annotation.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("projectsite.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up script as a file (api/docs/?script=), not inline: see the CSP.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    # Last: any other /api/.../ address answers a JSON 404, not an HTML page (no slash: Django adds one first).
    re_path(r"^api/(?:.*/)?$", api.api_not_found),
]

# Error pages: JSON under /api/, Django's HTML pages elsewhere.
handler400 = "projectsite.api.bad_request"
handler403 = "projectsite.api.permission_denied"
handler404 = "projectsite.api.page_not_found"
handler500 = "projectsite.api.server_error"
