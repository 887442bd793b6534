from django.urls import path

from curation import apis, apis_review

urlpatterns = [
    path("datasets/", apis.DatasetListApi.as_view(), name="api-dataset-list"),
    path("datasets/<int:dataset_id>/", apis.DatasetDetailApi.as_view(), name="api-dataset-detail"),
    path("datasets/<int:dataset_id>/versions/", apis.DatasetVersionListApi.as_view(), name="api-dataset-versions"),
    path("versions/<int:version_id>/", apis.VersionDetailApi.as_view(), name="api-version-detail"),
    path("versions/<int:version_id>/examples/", apis.ExampleListApi.as_view(), name="api-version-examples"),
    path("versions/<int:version_id>/export/", apis.VersionExportApi.as_view(), name="api-version-export"),
    path("versions/<int:version_id>/split/", apis.VersionSplitApi.as_view(), name="api-version-split"),
    path("versions/<int:version_id>/filter/", apis.VersionFilterApi.as_view(), name="api-version-filter"),
    path("versions/<int:version_id>/dedupe-runs/", apis.DedupeRunStartApi.as_view(), name="api-dedupe-start"),
    path("examples/<int:example_id>/", apis.ExampleDetailApi.as_view(), name="api-example-detail"),
    path("dedupe-runs/<int:run_id>/", apis.DedupeRunDetailApi.as_view(), name="api-dedupe-detail"),
    path("dedupe-runs/<int:run_id>/groups/", apis.DedupeGroupListApi.as_view(), name="api-dedupe-groups"),
    path("dedupe-runs/<int:run_id>/apply/", apis.DedupeRunApplyApi.as_view(), name="api-dedupe-apply"),
    path(
        "versions/<int:version_id>/redaction-runs/",
        apis_review.RedactionRunStartApi.as_view(),
        name="api-redaction-start",
    ),
    path("redaction-runs/<int:run_id>/", apis_review.RedactionRunDetailApi.as_view(), name="api-redaction-detail"),
    path("redaction-runs/<int:run_id>/findings/", apis_review.FindingListApi.as_view(), name="api-redaction-findings"),
    path(
        "redaction-runs/<int:run_id>/bulk-decide/",
        apis_review.RedactionBulkDecideApi.as_view(),
        name="api-redaction-bulk-decide",
    ),
    path(
        "redaction-runs/<int:run_id>/approve/",
        apis_review.RedactionRunApproveApi.as_view(),
        name="api-redaction-approve",
    ),
    path(
        "redaction-runs/<int:run_id>/summary/", apis_review.RedactionSummaryApi.as_view(), name="api-redaction-summary"
    ),
    path(
        "redaction-runs/<int:run_id>/pseudonyms/",
        apis_review.PseudonymMapApi.as_view(),
        name="api-redaction-pseudonyms",
    ),
    path("findings/<int:finding_id>/", apis_review.FindingDetailApi.as_view(), name="api-finding-detail"),
    path("uploads/", apis.UploadListApi.as_view(), name="api-upload-list"),
    path("uploads/<int:upload_id>/", apis.UploadDetailApi.as_view(), name="api-upload-detail"),
    path("uploads/<int:upload_id>/mapping/", apis.UploadMappingApi.as_view(), name="api-upload-mapping"),
    path("uploads/<int:upload_id>/preview/", apis.UploadPreviewApi.as_view(), name="api-upload-preview"),
    path("uploads/<int:upload_id>/validate/", apis.UploadValidateApi.as_view(), name="api-upload-validate"),
    path("uploads/<int:upload_id>/import/", apis.UploadImportApi.as_view(), name="api-upload-import"),
    path("uploads/<int:upload_id>/cancel/", apis.UploadCancelApi.as_view(), name="api-upload-cancel"),
    path("uploads/<int:upload_id>/problems/", apis.UploadProblemListApi.as_view(), name="api-upload-problems"),
    path("uploads/<int:upload_id>/report/", apis.UploadReportApi.as_view(), name="api-upload-report"),
]
