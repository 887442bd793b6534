from django.urls import path

from training import views

app_name = "training"
urlpatterns = [
    path("", views.job_list, name="job_list"),
    path("queue/", views.queue, name="queue"),
    path("new/", views.job_create, name="job_create"),
    path("new/estimate/", views.job_estimate, name="job_estimate"),
    path("jobs/<int:job_id>/", views.job_detail, name="job_detail"),
    path("jobs/<int:job_id>/progress/", views.job_progress_json, name="job_progress_json"),
    path("jobs/<int:job_id>/cancel/", views.job_cancel, name="job_cancel"),
    path("jobs/<int:job_id>/retry/", views.job_retry, name="job_retry"),
    path("models/", views.model_list, name="model_list"),
    path("models/<int:model_id>/", views.model_detail, name="model_detail"),
    path("models/<int:model_id>/download/", views.model_download, name="model_download"),
    path("models/<int:model_id>/merge/", views.model_merge, name="model_merge"),
    path("models/<int:model_id>/try/", views.model_try, name="model_try"),
    path("base-models/", views.base_model_list, name="base_model_list"),
    path("base-models/register/", views.base_model_register, name="base_model_register"),
]
