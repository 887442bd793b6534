"""The Privacy panel of the version page.

An inclusion tag, so the version view (curation/views.py) stays unchanged: the panel loads its own few
reads (this version's detection runs) and the start form for reviewers.
"""

from django import template

from accounts.roles import REVIEW_REDACTION, VIEW_REDACTION
from curation import selectors
from curation.forms_review import RedactionStartForm
from curation.models import DatasetVersion

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


# The privacy state in the fewest words, for lists (the version page's panel has the long form).
PRIVACY_WORDS = {
    DatasetVersion.PrivacyState.RAW: "Not reviewed",
    DatasetVersion.PrivacyState.IN_REVIEW: "Review in progress",
    DatasetVersion.PrivacyState.APPROVED: "Approved",
}


@register.inclusion_tag("curation/_privacy_state.html")
def privacy_state(state: str, open_review_id: int | None = None):
    """A version's privacy state as a badge: "Not reviewed", "Review in progress" or "Approved".

    ``state`` is ``DatasetVersion.privacy_state``, or the stored ``privacy`` with ``open_review_id`` beside it.
    """
    if state == DatasetVersion.PrivacyState.RAW and open_review_id:
        state = DatasetVersion.PrivacyState.IN_REVIEW
    return {
        "state": state,
        "words": PRIVACY_WORDS.get(state, state),
        "title": DatasetVersion.PrivacyState(state).label if state in DatasetVersion.PrivacyState.values else "",
    }
