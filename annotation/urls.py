from django.urls import path  # noqa: F401

from annotation import views  # noqa: F401

app_name = "annotation"
urlpatterns: list = []
