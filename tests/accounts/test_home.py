"""The home page as each role's work queue, and the styled 403 and 404 pages (with DEBUG off, as in production)."""

from __future__ import annotations

import logging
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.roles import ROLES
from tests.accounts import home_work
from tests.factories import UserFactory


def _text(response) -> str:
    """The page's words without tags or repeated spaces, as a person reads them."""
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))
    return re.sub(r" ([:;,.)])", r"\1", text)


def _home(client, user) -> str:
    client.force_login(user)
    response = client.get(reverse("home"))
    assert response.status_code == 200
    return _text(response)


@pytest.mark.django_db
def test_privacy_reviewer_sees_versions_to_search_and_findings_to_decide(client, reviewer):
    work = home_work.privacy_work()
    text = _home(client, reviewer)
    assert "1 review has findings to decide (3 findings in all)" in text
    assert "Clinic letters (second batch) v" in text and "3 findings not decided yet" in text
    assert "1 version waits for a search for personal data" in text
    html = client.get(reverse("home")).content.decode()
    assert reverse("curation:redaction_review", args=[work["run"].pk]) in html
    assert reverse("curation:version_detail", args=[work["waiting"].pk]) in html


@pytest.mark.django_db
def test_privacy_queue_is_empty_in_words(client, reviewer):
    text = _home(client, reviewer)
    assert "0 reviews have findings to decide" in text and "No finding is waiting for a decision." in text


@pytest.mark.django_db
def test_annotator_sees_projects_with_examples_left_and_progress(client, engineer, annotator, make_user):
    second = make_user("annotator", username="annotator2")
    project = home_work.annotation_work(engineer=engineer, annotators=[annotator, second])
    text = _home(client, annotator)
    # Three examples, the annotator answered one: two left for them.
    assert "Ticket routing: 2 examples left for you; you answered 1 (33.3% of yours)" in text
    assert reverse("annotation:label", args=[project.pk]) in client.get(reverse("home")).content.decode()
    # Someone with no answers yet: the first example already has its two answers, so two are left for them too.
    assert "2 examples left for you; you answered 0 (0.0% of yours)" in _home(
        client, make_user("annotator", username="new")
    )


@pytest.mark.django_db
def test_annotation_reviewer_sees_disagreements_waiting(client, engineer, annotator, make_user):
    second = make_user("annotator", username="annotator2")
    project = home_work.annotation_work(engineer=engineer, annotators=[annotator, second])
    reviewer = make_user("annotation_reviewer", username="rhea")
    text = _home(client, reviewer)
    assert "Disagreements to settle" in text and "Ticket routing: 1 example where annotators disagree" in text
    assert reverse("annotation:review_queue", args=[project.pk]) in client.get(reverse("home")).content.decode()
    # Annotators do not settle disagreements: their page has no such section.
    assert "Disagreements to settle" not in _home(client, annotator)


@pytest.mark.django_db
def test_curator_sees_imports_waiting_and_unreviewed_versions(client, curator):
    upload = home_work.curator_work(curator=curator)
    home_work.privacy_work()
    text = _home(client, curator)
    assert "1 import waits for your decision" in text
    assert "replies.csv into “Support replies”: 40 usable rows, 2 rejected" in text
    assert "2 versions are not approved by a privacy reviewer yet" in text
    assert "privacy review under way" in text and "not reviewed: may contain personal data" in text
    assert reverse("curation:upload_detail", args=[upload.pk]) in client.get(reverse("home")).content.decode()


@pytest.mark.django_db
def test_engineer_sees_jobs_unevaluated_models_and_candidates_passing_the_gate(client, engineer):
    work = home_work.engineer_work(engineer=engineer)
    text = _home(client, engineer)
    assert "1 training job is running or waiting" in text
    assert f"Job #{work['running'].pk}: tiny-llama on Support answers" in text
    assert "1 job failed in the last week" in text and "ran out of GPU memory" in text
    assert "1 trained model has no evaluation" in text and "answers-unevaluated" in text
    assert "1 candidate passes the promotion gate" in text
    assert "answers-v2 passes the gate of Client replies" in text
    # The production model is not a candidate any more.
    assert "answers-v1 passes" not in text


@pytest.mark.django_db
def test_manager_sees_the_kpi_headline_and_last_promotions(client, engineer, manager):
    home_work.engineer_work(engineer=engineer)
    home_work.manager_work(actor=engineer)
    text = _home(client, manager)
    assert "Customer satisfaction: answers-v1 in production averages 4.10 points (1–5)" in text
    assert "best other: answers-v2 at 4.40 points (1–5)" in text
    assert "answers-v1 went into production for Client replies (engineer)" in text


@pytest.mark.django_db
def test_admin_sees_failed_tasks_and_recent_audit_events(client, admin_user):
    home_work.admin_work(actor=admin_user)
    text = _home(client, admin_user)
    assert "1 background task failed in the last 7 days" in text
    assert "Personal-data detection on Broken file" in text and "could not be loaded" in text
    assert "admin · redaction.fail" in text


@pytest.mark.django_db
def test_someone_with_every_role_sees_every_queue_in_few_queries(
    client, engineer, annotator, make_user, django_assert_max_num_queries
):
    everyone = UserFactory(username="everyone", roles=[role.slug for role in ROLES])
    home_work.privacy_work()
    home_work.annotation_work(engineer=engineer, annotators=[annotator, everyone])
    home_work.curator_work(curator=everyone)
    home_work.engineer_work(engineer=engineer)
    home_work.manager_work(actor=engineer)
    home_work.admin_work(actor=everyone)
    client.force_login(everyone)
    with CaptureQueriesContext(connection) as first:
        assert client.get(reverse("home")).status_code == 200
    assert len(first) <= 40, [query["sql"][:120] for query in first.captured_queries]
    # More work of every kind adds no query (no query per row).
    home_work.privacy_work(dataset_name="Pharmacy notes")
    home_work.annotation_work(engineer=engineer, annotators=[annotator, everyone], name="Second routing")
    home_work.curator_work(curator=everyone, dataset_name="Billing replies")
    home_work.admin_work(actor=everyone, dataset_name="Another broken file")
    with django_assert_max_num_queries(len(first)):
        response = client.get(reverse("home"))
    text = _text(response)
    for title in (
        "Privacy review",
        "Examples to label",
        "Disagreements to settle",
        "Imports and versions",
        "Training and evaluation",
        "Business results",
        "Recent activity",
    ):
        assert title in text, title


# --- 403 and 404 -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_forbidden_page_has_the_menu_the_role_and_a_way_home(client, annotator, settings):
    settings.DEBUG = False
    client.force_login(annotator)
    response = client.get(reverse("accounts:audit_list"))
    assert response.status_code == 403 and response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    text = _text(response)
    assert "You cannot open this page" in text
    assert "Annotator Writes and corrects target responses" in text  # what the role can do
    assert re.search(r'<nav aria-label="Main">.*Annotate', html, re.S)  # the menu
    assert f'href="{reverse("home")}">Go to your home page' in html
    assert "403 Forbidden" not in html


@pytest.mark.django_db
def test_a_service_refusal_is_shown_on_the_forbidden_page(rf, annotator):
    from django.core.exceptions import PermissionDenied

    from projectsite import api

    request = rf.get("/annotation/projects/1/label/")
    request.user = annotator
    response = api.permission_denied(request, PermissionDenied("This example is reserved for someone else."))
    assert response.status_code == 403 and "This example is reserved for someone else." in response.content.decode()


@pytest.mark.django_db
def test_not_found_page_in_the_same_style(client, curator, settings):
    settings.DEBUG = False
    client.force_login(curator)
    response = client.get("/datasets/versions/999999/")
    assert response.status_code == 404
    text = _text(response)
    assert "There is nothing at this address" in text and "Curator Uploads datasets" in text
    assert '<nav aria-label="Main">' in response.content.decode()
    # Signed out: the same page, without a menu or roles.
    client.logout()
    response = client.get("/no-such-page/")
    assert response.status_code == 404 and "There is nothing at this address" in _text(response)
    assert '<nav aria-label="Main">' not in response.content.decode()


@pytest.mark.django_db
def test_api_errors_stay_json(client, annotator, settings):
    settings.DEBUG = False
    client.force_login(annotator)
    response = client.get("/api/v1/no-such-thing/")
    assert response.status_code == 404 and response["Content-Type"] == "application/json"


@pytest.mark.django_db
def test_a_refusal_is_one_log_line_without_a_traceback(client, annotator, caplog):
    client.force_login(annotator)
    with caplog.at_level(logging.INFO):
        response = client.get(reverse("accounts:audit_list"))
    assert response.status_code == 403
    refusals = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(refusals) == 1, [record.getMessage() for record in refusals]
    record = refusals[0]
    assert record.exc_info is None and not record.exc_text
    assert record.getMessage() == "Forbidden (Permission denied): /accounts/audit/ (user annotator)"
    assert "Traceback" not in caplog.text


def test_django_logs_reach_the_console_once_with_debug_on():
    """With DEBUG on, Django's own console handler and the root's both printed every warning (two tracebacks)."""
    import logging.config

    from django.conf import settings
    from django.utils.log import DEFAULT_LOGGING

    logging.config.dictConfig(DEFAULT_LOGGING)
    logging.config.dictConfig(settings.LOGGING)
    try:
        handlers = logging.getLogger("django").handlers + logging.getLogger("django.request").handlers
        assert not [h for h in handlers if type(h) is logging.StreamHandler]
        assert [type(h) for h in logging.getLogger().handlers].count(logging.StreamHandler) == 1
    finally:
        logging.config.dictConfig(settings.LOGGING)
