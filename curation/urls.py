from django.urls import path, re_path

from curation import views

app_name = "curation"
urlpatterns = [
    path("", views.dataset_list, name="dataset_list"),
    path("<int:dataset_id>/", views.dataset_detail, name="dataset_detail"),
    path("versions/<int:version_id>/", views.version_detail, name="version_detail"),
    re_path(
        r"^versions/(?P<version_id>[0-9]+)/export\.(?P<fmt>jsonl|csv)$", views.version_export, name="version_export"
    ),
    path("versions/<int:version_id>/split/", views.version_split, name="version_split"),
    path("versions/<int:version_id>/filter/", views.version_filter, name="version_filter"),
    path("versions/<int:version_id>/dedupe/", views.dedupe_start, name="dedupe_start"),
    path("examples/<int:example_id>/", views.example_detail, name="example_detail"),
    path("dedupe/<int:run_id>/", views.dedupe_detail, name="dedupe_detail"),
    path("dedupe/<int:run_id>/progress/", views.dedupe_progress, name="dedupe_progress"),
    path("dedupe/<int:run_id>/apply/", views.dedupe_apply, name="dedupe_apply"),
    path("uploads/", views.upload_list, name="upload_list"),
    path("uploads/new/", views.upload_create, name="upload_create"),
    path("uploads/<int:upload_id>/", views.upload_detail, name="upload_detail"),
    path("uploads/<int:upload_id>/preview/", views.upload_preview, name="upload_preview"),
    path("uploads/<int:upload_id>/mapping/", views.upload_map, name="upload_map"),
    path("uploads/<int:upload_id>/progress/", views.upload_progress, name="upload_progress"),
    path("uploads/<int:upload_id>/cancel/", views.upload_cancel, name="upload_cancel"),
    path("uploads/<int:upload_id>/import/", views.upload_commit, name="upload_commit"),
    path("uploads/<int:upload_id>/rejected-rows.csv", views.upload_report, name="upload_report"),
]
