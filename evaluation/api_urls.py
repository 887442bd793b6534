from django.urls import path

from evaluation import apis

urlpatterns = [
    path("evaluation-runs/", apis.EvalRunListApi.as_view(), name="api-eval-runs"),
    path("evaluation-runs/<int:run_id>/", apis.EvalRunDetailApi.as_view(), name="api-eval-run"),
    path("evaluation-runs/<int:run_id>/predictions/", apis.PredictionListApi.as_view(), name="api-eval-predictions"),
    path("evaluation-runs/<int:run_id>/rescore/", apis.EvalRunRescoreApi.as_view(), name="api-eval-rescore"),
    path("kpis/", apis.KpiListApi.as_view(), name="api-kpis"),
    path("kpi-observations/", apis.KpiObservationListApi.as_view(), name="api-kpi-observations"),
    path("kpi-import-runs/<int:run_id>/", apis.KpiImportRunApi.as_view(), name="api-kpi-import-run"),
    path("kpi-dashboard/", apis.KpiDashboardApi.as_view(), name="api-kpi-dashboard"),
    path("comparison/", apis.ComparisonApi.as_view(), name="api-comparison"),
    path("use-cases/", apis.UseCaseListApi.as_view(), name="api-use-cases"),
    path("use-cases/<slug:slug>/gate/", apis.GateApi.as_view(), name="api-use-case-gate"),
    path("use-cases/<slug:slug>/promote/", apis.PromoteApi.as_view(), name="api-use-case-promote"),
    path("use-cases/<slug:slug>/rollback/", apis.RollbackApi.as_view(), name="api-use-case-rollback"),
    path("endpoints/", apis.EndpointListApi.as_view(), name="api-endpoints"),
    path("pilots/", apis.PilotListApi.as_view(), name="api-pilots"),
    path("versions/<int:version_id>/balance/", apis.VersionBalanceApi.as_view(), name="api-version-balance"),
]
