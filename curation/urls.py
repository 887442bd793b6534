from django.urls import path, re_path

from curation import views, views_review

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
    path("versions/<int:version_id>/privacy/", views_review.redaction_start, name="redaction_start"),
    path("privacy/<int:run_id>/", views_review.redaction_detail, name="redaction_detail"),
    path("privacy/<int:run_id>/progress/", views_review.redaction_progress, name="redaction_progress"),
    path("privacy/<int:run_id>/review/", views_review.redaction_review, name="redaction_review"),
    path("privacy/<int:run_id>/add/", views_review.finding_add, name="finding_add"),
    path("privacy/<int:run_id>/bulk/", views_review.findings_bulk, name="findings_bulk"),
    path("privacy/<int:run_id>/approve/", views_review.redaction_approve, name="redaction_approve"),
    path("privacy/<int:run_id>/pseudonyms/", views_review.redaction_pseudonyms, name="redaction_pseudonyms"),
    path("findings/<int:finding_id>/decide/", views_review.finding_decide, name="finding_decide"),
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
