from django.urls import path

from annotation import apis

urlpatterns = [
    path("annotation/projects/", apis.ProjectListApi.as_view(), name="api-annotation-projects"),
    path("annotation/projects/<int:project_id>/", apis.ProjectDetailApi.as_view(), name="api-annotation-project"),
    path("annotation/projects/<int:project_id>/next/", apis.ProjectNextApi.as_view(), name="api-annotation-next"),
    path("annotation/projects/<int:project_id>/undo/", apis.ProjectUndoApi.as_view(), name="api-annotation-undo"),
    path(
        "annotation/projects/<int:project_id>/agreement/",
        apis.ProjectAgreementApi.as_view(),
        name="api-annotation-agreement",
    ),
    path("annotation/projects/<int:project_id>/tasks/", apis.ProjectTaskListApi.as_view(), name="api-annotation-tasks"),
    path(
        "annotation/projects/<int:project_id>/publish/",
        apis.ProjectPublishApi.as_view(),
        name="api-annotation-publish",
    ),
    path("annotation/publish-runs/<int:run_id>/", apis.PublishRunApi.as_view(), name="api-annotation-publish-run"),
    path(
        "annotation/projects/<int:project_id>/label-studio/push/",
        apis.ProjectLabelStudioPushApi.as_view(),
        name="api-annotation-label-studio-push",
    ),
    path(
        "annotation/projects/<int:project_id>/label-studio/pull/",
        apis.ProjectLabelStudioPullApi.as_view(),
        name="api-annotation-label-studio-pull",
    ),
    path("annotation/assignments/", apis.AssignmentListApi.as_view(), name="api-annotation-assignments"),
    path(
        "annotation/assignments/<int:assignment_id>/",
        apis.AssignmentDetailApi.as_view(),
        name="api-annotation-assignment",
    ),
    path(
        "annotation/assignments/<int:assignment_id>/draft/",
        apis.AssignmentDraftApi.as_view(),
        name="api-annotation-draft",
    ),
    path(
        "annotation/assignments/<int:assignment_id>/submit/",
        apis.AssignmentSubmitApi.as_view(),
        name="api-annotation-submit",
    ),
    path(
        "annotation/assignments/<int:assignment_id>/skip/",
        apis.AssignmentSkipApi.as_view(),
        name="api-annotation-skip",
    ),
    path("annotation/tasks/<int:task_id>/", apis.TaskDetailApi.as_view(), name="api-annotation-task"),
    path(
        "annotation/tasks/<int:task_id>/adjudicate/",
        apis.TaskAdjudicateApi.as_view(),
        name="api-annotation-adjudicate",
    ),
    path("annotation/tasks/<int:task_id>/gold/", apis.TaskGoldApi.as_view(), name="api-annotation-gold"),
    path(
        "annotation/datasets/<int:dataset_id>/schema/",
        apis.LabelSchemaApi.as_view(),
        name="api-annotation-label-schema",
    ),
    path("annotation/label-studio/", apis.LabelStudioConnectionApi.as_view(), name="api-annotation-label-studio"),
]
