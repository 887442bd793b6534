from django.urls import path

from curation import views

app_name = "curation"
urlpatterns = [
    path("", views.dataset_list, name="dataset_list"),
    path("uploads/", views.upload_list, name="upload_list"),
    path("uploads/new/", views.upload_create, name="upload_create"),
]
