from django.urls import path

from annotation import views

app_name = "annotation"
urlpatterns = [
    path("", views.project_list, name="project_list"),
    path("new/", views.project_create, name="project_create"),
    path("datasets/<int:dataset_id>/schema/", views.schema_edit, name="schema_edit"),
    path("projects/<int:project_id>/", views.project_detail, name="project_detail"),
    path("projects/<int:project_id>/publish/", views.project_publish, name="project_publish"),
    path("publish/<int:run_id>/progress/", views.publish_progress, name="publish_progress"),
    path("projects/<int:project_id>/reopen/", views.project_reopen, name="project_reopen"),
    path("projects/<int:project_id>/label/", views.label, name="label"),
    path("projects/<int:project_id>/label/next/", views.label_next, name="label_next"),
    path("projects/<int:project_id>/label/submit/", views.label_submit, name="label_submit"),
    path("projects/<int:project_id>/label/skip/", views.label_skip, name="label_skip"),
    path("projects/<int:project_id>/label/undo/", views.label_undo, name="label_undo"),
    path("projects/<int:project_id>/label/done/", views.label_done, name="label_done"),
    path("assignments/<int:assignment_id>/draft/", views.assignment_draft, name="assignment_draft"),
    path("projects/<int:project_id>/review/", views.review_queue, name="review_queue"),
    path("tasks/<int:task_id>/", views.task_detail, name="task_detail"),
    path("tasks/<int:task_id>/adjudicate/", views.task_adjudicate, name="task_adjudicate"),
    path("tasks/<int:task_id>/adjudicate/undo/", views.task_adjudicate_undo, name="task_adjudicate_undo"),
    path("tasks/<int:task_id>/gold/", views.task_gold, name="task_gold"),
    path("projects/<int:project_id>/label-studio/push/", views.label_studio_push, name="label_studio_push"),
    path("projects/<int:project_id>/label-studio/pull/", views.label_studio_pull, name="label_studio_pull"),
    path("label-studio/", views.label_studio_settings, name="label_studio_settings"),
]
