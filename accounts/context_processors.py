from django.urls import reverse

from accounts.roles import (
    UPLOAD,
    VIEW_AUDIT,
    VIEW_DATASETS,
    VIEW_EVALUATIONS,
    VIEW_JOBS,
    VIEW_KPIS,
    VIEW_MODELS,
    VIEW_PROJECTS,
    VIEW_USE_CASES,
    role_names_of,
)


def navigation(request):
    """The navigation bar: only the places the signed-in person may open."""
    user = request.user
    if not user.is_authenticated:
        return {"nav_items": [], "user_roles": []}
    items = [("Home", reverse("home"))]
    if user.has_perm(VIEW_DATASETS):
        items.append(("Datasets", reverse("curation:dataset_list")))
    if user.has_perm(UPLOAD):
        items.append(("Upload", reverse("curation:upload_create")))
        items.append(("Imports", reverse("curation:upload_list")))
    if user.has_perm(VIEW_PROJECTS):
        items.append(("Annotate", reverse("annotation:project_list")))
    if user.has_perm(VIEW_JOBS):
        items.append(("Training", reverse("training:job_list")))
    if user.has_perm(VIEW_MODELS):
        items.append(("Models", reverse("training:model_list")))
    if user.has_perm(VIEW_KPIS):
        items.append(("Dashboard", reverse("evaluation:dashboard")))
    if user.has_perm(VIEW_EVALUATIONS):
        items.append(("Evaluations", reverse("evaluation:run_list")))
    if user.has_perm(VIEW_USE_CASES):
        items.append(("Promotion", reverse("evaluation:use_case_list")))
    if user.has_perm(VIEW_AUDIT):
        items.append(("Audit log", reverse("accounts:audit_list")))
    items.append(("API", reverse("api-docs")))
    return {"nav_items": items, "user_roles": role_names_of(user)}
