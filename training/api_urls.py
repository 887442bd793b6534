from django.urls import path

from training import apis

urlpatterns = [
    path("base-models/", apis.BaseModelListApi.as_view(), name="api-base-models"),
    path("training-jobs/", apis.TrainingJobListApi.as_view(), name="api-training-jobs"),
    path("training-jobs/estimate/", apis.TrainingEstimateApi.as_view(), name="api-training-estimate"),
    path("training-jobs/<int:job_id>/", apis.TrainingJobDetailApi.as_view(), name="api-training-job"),
    path("training-jobs/<int:job_id>/curves/", apis.TrainingJobCurvesApi.as_view(), name="api-training-curves"),
    path("training-jobs/<int:job_id>/cancel/", apis.TrainingJobCancelApi.as_view(), name="api-training-cancel"),
    path("training-jobs/<int:job_id>/retry/", apis.TrainingJobRetryApi.as_view(), name="api-training-retry"),
    path("training-queues/", apis.TrainingQueueApi.as_view(), name="api-training-queues"),
    path("models/", apis.TrainedModelListApi.as_view(), name="api-models"),
    path("models/<int:model_id>/", apis.TrainedModelDetailApi.as_view(), name="api-model"),
    path("models/<int:model_id>/download/", apis.TrainedModelDownloadApi.as_view(), name="api-model-download"),
    path("models/<int:model_id>/merge/", apis.TrainedModelMergeApi.as_view(), name="api-model-merge"),
]
