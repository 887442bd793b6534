from django.urls import path

from evaluation import views

app_name = "evaluation"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("dashboard.json", views.dashboard_json, name="dashboard_json"),
    path("kpis/import/", views.kpi_import, name="kpi_import"),
    path("kpis/import/<int:run_id>/", views.kpi_import_run, name="kpi_import_run"),
    path("kpis/import/<int:run_id>/progress/", views.kpi_import_run_progress_json, name="kpi_import_run_progress"),
    path("runs/", views.run_list, name="run_list"),
    path("runs/new/", views.run_create, name="run_create"),
    path("runs/<int:run_id>/", views.run_detail, name="run_detail"),
    path("runs/<int:run_id>/progress/", views.run_progress_json, name="run_progress_json"),
    path("runs/<int:run_id>/rescore/", views.run_rescore, name="run_rescore"),
    path("compare/", views.compare, name="compare"),
    path("compare.csv", views.compare_csv, name="compare_csv"),
    path("use-cases/", views.use_case_list, name="use_case_list"),
    path("use-cases/<slug:slug>/", views.use_case_detail, name="use_case_detail"),
    path("use-cases/<slug:slug>/promote/", views.promote, name="promote"),
    path("use-cases/<slug:slug>/rollback/", views.rollback, name="rollback"),
]
