from django.urls import include, path

urlpatterns = [
    path("", include("accounts.api_urls")),
    path("", include("curation.api_urls")),
    path("", include("training.api_urls")),
    path("", include("evaluation.api_urls")),
    path("", include("annotation.api_urls")),
]
