"""The roles of Tuning Desk and the Django permissions each one holds.

Roles are Django groups; every view and endpoint checks a permission, never a group name,
so an admin can shape a custom role in the admin site.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Role:
    slug: str
    name: str
    description: str
    permissions: tuple[str, ...]


VIEW_DATASETS = "curation.view_dataset"
VIEW_EXAMPLES = "curation.view_example"
UPLOAD = "curation.add_upload"
CURATE = "curation.change_dataset"
EXPORT = "curation.export_datasetversion"
VIEW_AUDIT = "accounts.view_auditevent"
VIEW_REDACTION = "curation.view_redactionrun"
REVIEW_REDACTION = "curation.review_redactionrun"
VIEW_PSEUDONYMS = "curation.view_pseudonyms"
VIEW_JOBS = "training.view_trainingjob"
LAUNCH_JOBS = "training.add_trainingjob"
MANAGE_JOBS = "training.change_trainingjob"
VIEW_BASE_MODELS = "training.view_basemodel"
REGISTER_BASE_MODELS = "training.add_basemodel"
VIEW_MODELS = "training.view_trainedmodel"
DOWNLOAD_MODELS = "training.download_trainedmodel"
VIEW_EVALUATIONS = "evaluation.view_evalrun"
RUN_EVALUATIONS = "evaluation.add_evalrun"
VIEW_KPIS = "evaluation.view_kpiobservation"
IMPORT_KPIS = "evaluation.add_kpiobservation"
VIEW_USE_CASES = "evaluation.view_usecase"
MANAGE_USE_CASES = "evaluation.change_usecase"
PROMOTE = "evaluation.promote_usecase"
MANAGE_ENDPOINTS = "evaluation.add_externalendpoint"
# Change endpoints that someone else added (their key goes wherever the address points): admins only.
CHANGE_ANY_ENDPOINT = "evaluation.change_externalendpoint"
VIEW_PROJECTS = "annotation.view_annotationproject"
MANAGE_PROJECTS = "annotation.add_annotationproject"
ANNOTATE = "annotation.add_annotation"
VIEW_ANSWERS = "annotation.view_annotation"
ADJUDICATE = "annotation.adjudicate_task"
MANAGE_LABEL_STUDIO = "annotation.change_labelstudioconnection"
EVALUATE = (
    VIEW_EVALUATIONS,
    RUN_EVALUATIONS,
    VIEW_KPIS,
    IMPORT_KPIS,
    VIEW_USE_CASES,
    MANAGE_USE_CASES,
    PROMOTE,
    MANAGE_ENDPOINTS,
)
READ_RESULTS = (VIEW_EVALUATIONS, VIEW_KPIS, VIEW_USE_CASES)
TRAIN = (VIEW_JOBS, LAUNCH_JOBS, MANAGE_JOBS, VIEW_BASE_MODELS, REGISTER_BASE_MODELS, VIEW_MODELS, DOWNLOAD_MODELS)

ROLES: tuple[Role, ...] = (
    Role(
        "curator",
        "Curator",
        "Uploads datasets, cleans them and freezes versions.",
        (
            VIEW_DATASETS,
            VIEW_EXAMPLES,
            UPLOAD,
            CURATE,
            EXPORT,
            VIEW_REDACTION,
            VIEW_PROJECTS,
            MANAGE_PROJECTS,
            VIEW_ANSWERS,
            ADJUDICATE,
        ),
    ),
    Role(
        "annotator",
        "Annotator",
        "Writes and corrects target responses and labels in approved versions.",
        (VIEW_PROJECTS, ANNOTATE),
    ),
    Role(
        "annotation_reviewer",
        "Annotation reviewer",
        "Checks annotators' work: settles disagreements and marks gold examples.",
        (VIEW_PROJECTS, ANNOTATE, VIEW_ANSWERS, ADJUDICATE),
    ),
    Role(
        "privacy_reviewer",
        "Privacy reviewer",
        "Reviews personal and health data found in datasets before anything is used.",
        (VIEW_DATASETS, VIEW_EXAMPLES, VIEW_REDACTION, REVIEW_REDACTION, VIEW_PSEUDONYMS),
    ),
    Role(
        "engineer",
        "Engineer",
        "Imports and curates data, launches training and evaluation.",
        (
            VIEW_DATASETS,
            VIEW_EXAMPLES,
            UPLOAD,
            CURATE,
            EXPORT,
            VIEW_REDACTION,
            *TRAIN,
            *EVALUATE,
            VIEW_PROJECTS,
            MANAGE_PROJECTS,
            VIEW_ANSWERS,
            MANAGE_LABEL_STUDIO,
        ),
    ),
    Role(
        "manager",
        "Manager",
        "Reads dashboards: dataset sizes, model quality and business results.",
        (VIEW_DATASETS, VIEW_JOBS, VIEW_BASE_MODELS, VIEW_MODELS, *READ_RESULTS, VIEW_PROJECTS),
    ),
    Role(
        "admin",
        "Admin",
        "Manages accounts and reads the audit log.",
        (
            VIEW_DATASETS,
            VIEW_EXAMPLES,
            UPLOAD,
            CURATE,
            EXPORT,
            VIEW_AUDIT,
            VIEW_REDACTION,
            REVIEW_REDACTION,
            VIEW_PSEUDONYMS,
            *TRAIN,
            *EVALUATE,
            CHANGE_ANY_ENDPOINT,
            VIEW_PROJECTS,
            MANAGE_PROJECTS,
            ANNOTATE,
            VIEW_ANSWERS,
            ADJUDICATE,
            MANAGE_LABEL_STUDIO,
        ),
    ),
)

ROLE_BY_SLUG = {role.slug: role for role in ROLES}


def role_names_of(user) -> list[str]:
    if not user.is_authenticated:
        return []
    names = set(user.groups.values_list("name", flat=True))
    return [role.name for role in ROLES if role.name in names]
