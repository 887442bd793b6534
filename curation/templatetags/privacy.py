"""The Privacy panel of the version page.

An inclusion tag, so the version view (curation/views.py) stays unchanged: the panel loads its own few
reads (this version's detection runs) and the start form for reviewers.
"""

from django import template

from accounts.roles import REVIEW_REDACTION, VIEW_REDACTION
from curation import selectors
from curation.forms_review import RedactionStartForm

register = template.Library()

RUNS_SHOWN = 5


@register.inclusion_tag("curation/_review_panel.html", takes_context=True)
def privacy_panel(context):
    version = context["version"]
    user = context["request"].user
    can_view = user.has_perm(VIEW_REDACTION)
    can_review = user.has_perm(REVIEW_REDACTION)
    runs = list(selectors.redaction_runs_of(version)[:RUNS_SHOWN]) if can_view else []
    return {
        "version": version,
        "csrf_token": context.get("csrf_token"),
        "can_view": can_view,
        "can_review": can_review,
        "runs": runs,
        "open_run": next((run for run in runs if run.status in run.ACTIVE_STATUSES), None),
        "made_by": selectors.redaction_run_that_made(version) if can_view and version.is_approved else None,
        "form": RedactionStartForm() if can_review and not version.is_approved else None,
    }
