"""The dataset pages, as each persona sees them: real services, real templates, no mocks."""

import csv
import io
import json
import re

import pytest
from django.core.files import File
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from accounts.models import AuditEvent
from curation import services
from curation.models import DatasetVersion, DedupeRun, Example, Upload
from curation.services import redaction as services_redaction
from tests.factories import ExampleFactory, VersionFactory

PERSONAS = ("curator", "annotator", "privacy_reviewer", "engineer", "manager", "admin", "outsider")
CURATORS = {"curator", "engineer", "admin"}
READERS = CURATORS | {"privacy_reviewer"}
DATASET_VIEWERS = READERS | {"manager"}

TICKETS_CSV = (
    "question,answer,segment\n"
    "Where is my refund for order 1001?,We sent the refund on Monday; it takes 3 to 5 days.,retail\n"
    "My invoice shows the wrong amount,Thanks; we corrected the invoice and emailed you a new copy.,business\n"
    "How do I change my delivery address?,Open your order and choose Change address before it ships.,retail\n"
    "<script>alert('row')</script> why was I charged twice?,We refunded the second charge today.,retail\n"
    "Can I pay by bank transfer?,Yes: choose Bank transfer at checkout.,business\n"
)


def _import(actor, write_file, name="Support tickets", content=TICKETS_CSV, **mapping):
    path = write_file(f"{name.replace(' ', '_')}.csv", content)
    upload = services.dataset_import(
        path=path,
        dataset_name=name,
        actor=actor,
        mapping=mapping or {"input": "question", "target": "answer", "group": "segment"},
    )
    return upload.version


def _upload(actor, write_file, content, name="new.csv", dataset="New tickets", task_type="sft"):
    path = write_file(name, content)
    with open(path, "rb") as handle:
        return services.upload_create(
            actor=actor, file=File(handle, name=name), original_name=name, dataset_name=dataset, task_type=task_type
        )


@pytest.fixture
def site(make_user, write_file):
    """One of everything a page can show, made by a curator called “owner”."""
    owner = make_user("curator", username="owner")
    version = _import(owner, write_file)
    # The same tickets again in lower case: not repeated rows (the import keeps them), but duplicates in text.
    repeated = TICKETS_CSV + TICKETS_CSV.split("\n", 1)[1].lower()
    duplicate = _import(owner, write_file, name="Duplicated", content=repeated)
    run = services.dedupe_run_start(version=duplicate, actor=owner, mode=DedupeRun.Mode.EXACT)
    services.dedupe_run_execute(run_id=run.pk)
    upload = _upload(owner, write_file, "prompt,response\nHello,Hi there\n")
    # Stands for a version that passed privacy review (the review itself is tested with the redaction services).
    DatasetVersion.objects.filter(pk=version.pk).update(privacy=DatasetVersion.Privacy.APPROVED)
    version.refresh_from_db()
    return {
        "owner": owner,
        "version": version,
        "example": version.examples.order_by("row_index").first(),
        "run": DedupeRun.objects.get(pk=run.pk),
        "upload": upload,
    }


def _url(site, name):
    args = {
        "home": ("home", []),
        "profile": ("accounts:profile", []),
        "audit_list": ("accounts:audit_list", []),
        "dataset_list": ("curation:dataset_list", []),
        "dataset_detail": ("curation:dataset_detail", [site["version"].dataset_id]),
        "version_detail": ("curation:version_detail", [site["version"].pk]),
        "version_export_jsonl": ("curation:version_export", [site["version"].pk, "jsonl"]),
        "version_export_csv": ("curation:version_export", [site["version"].pk, "csv"]),
        "example_detail": ("curation:example_detail", [site["example"].pk]),
        "dedupe_detail": ("curation:dedupe_detail", [site["run"].pk]),
        "dedupe_progress": ("curation:dedupe_progress", [site["run"].pk]),
        "upload_list": ("curation:upload_list", []),
        "upload_create": ("curation:upload_create", []),
        "upload_detail": ("curation:upload_detail", [site["upload"].pk]),
        "upload_preview": ("curation:upload_preview", [site["upload"].pk]),
        "upload_progress": ("curation:upload_progress", [site["upload"].pk]),
        "upload_report": ("curation:upload_report", [site["upload"].pk]),
    }[name]
    return reverse(args[0], args=args[1])


PAGES = {
    "home": set(PERSONAS),
    "profile": set(PERSONAS),
    "audit_list": {"admin"},
    "dataset_list": DATASET_VIEWERS,
    "dataset_detail": DATASET_VIEWERS,
    "version_detail": DATASET_VIEWERS,
    "version_export_jsonl": CURATORS,
    "version_export_csv": CURATORS,
    "example_detail": READERS,
    "dedupe_detail": CURATORS,
    "dedupe_progress": CURATORS,
    "upload_list": CURATORS,
    "upload_create": CURATORS,
    "upload_detail": CURATORS,
    "upload_preview": CURATORS,
    "upload_progress": CURATORS,
    "upload_report": CURATORS,
}

OWN_UPLOAD_PAGES = {"upload_detail", "upload_preview", "upload_progress", "upload_report"}


def test_the_owner_opens_their_own_upload_pages(client, site):
    client.force_login(site["owner"])
    for page in sorted(OWN_UPLOAD_PAGES):
        assert client.get(_url(site, page)).status_code == 200, page


POST_ONLY = {
    "accounts:token_create": lambda site: [],
    "accounts:token_revoke": lambda site: [1],
    "curation:version_split": lambda site: [site["version"].pk],
    "curation:version_filter": lambda site: [site["version"].pk],
    "curation:dedupe_start": lambda site: [site["version"].pk],
    "curation:dedupe_apply": lambda site: [site["run"].pk],
    "curation:upload_map": lambda site: [site["upload"].pk],
    "curation:upload_cancel": lambda site: [site["upload"].pk],
    "curation:upload_commit": lambda site: [site["upload"].pk],
}


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("page", sorted(PAGES))
def test_each_page_opens_for_the_roles_that_may_see_it_and_no_one_else(client, site, make_user, page, persona):
    client.force_login(make_user(persona))
    response = client.get(_url(site, page))
    expected = 200 if persona in PAGES[page] else 403
    if page in OWN_UPLOAD_PAGES and expected == 200 and persona != "admin":
        expected = 404  # someone else's upload: only its owner (and admins) may see that it exists
    assert response.status_code == expected, f"{persona} on {page}"
    if expected == 200 and response.get("Content-Type", "").startswith("text/html") and page != "upload_preview":
        assert b"Log out" in response.content  # the full page, with the navigation bar


@pytest.mark.parametrize("page", sorted(PAGES))
def test_anonymous_visitors_are_sent_to_the_login_page(client, site, page):
    url = _url(site, page)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", sorted(POST_ONLY))
def test_views_that_change_data_refuse_get(client, site, admin_user, name):
    client.force_login(admin_user)
    response = client.get(reverse(name, args=POST_ONLY[name](site)))
    assert response.status_code == 405


@pytest.mark.parametrize("name", sorted(set(POST_ONLY) - {"accounts:token_create", "accounts:token_revoke"}))
def test_views_that_change_data_refuse_people_without_permission(client, site, make_user, name):
    client.force_login(make_user("manager"))
    response = client.post(reverse(name, args=POST_ONLY[name](site)))
    assert response.status_code == 403


# --- navigation ------------------------------------------------------------------------------


def test_navigation_shows_only_the_places_a_person_may_open(client, make_user):
    client.force_login(make_user("manager"))
    html = client.get(reverse("home")).content.decode()
    nav = re.search(r'<nav aria-label="Main">(.*?)</nav>', html, re.S).group(1)
    assert "Datasets" in nav and "API" in nav
    assert "Upload" not in nav and "Audit log" not in nav
    assert "Manager" in html  # the person's role, next to their name

    client.force_login(make_user("curator"))
    nav = re.search(r'<nav aria-label="Main">(.*?)</nav>', client.get(reverse("home")).content.decode(), re.S).group(1)
    for item in ("Home", "Datasets", "Upload", "Imports", "API"):
        assert f">{item}</a>" in nav
    assert "Audit log" not in nav


# --- datasets and versions -------------------------------------------------------------------


def test_dataset_list_shows_latest_version_and_rows(client, site, curator):
    client.force_login(curator)
    html = client.get(reverse("curation:dataset_list")).content.decode()
    assert "Support tickets" in html
    assert "Instruction / response" in html
    assert reverse("curation:version_detail", args=[site["version"].pk]) in html
    assert ">5<" in html  # rows of the latest version


def test_dataset_list_and_detail_show_each_versions_privacy_state_in_words(
    client, curator, reviewer, write_file, django_assert_max_num_queries
):
    _import(curator, write_file, name="Raw tickets")
    in_review = _import(curator, write_file, name="Tickets in review")
    services_redaction.redaction_run_start(version=in_review, actor=reviewer)
    clean = _import(curator, write_file, name="Clean tickets")
    older = _import(curator, write_file, name="Reimported tickets")
    DatasetVersion.objects.filter(pk__in=[clean.pk, older.pk]).update(privacy=DatasetVersion.Privacy.APPROVED)
    _import(curator, write_file, name="Reimported tickets")  # version 2, not reviewed yet
    client.force_login(curator)
    with django_assert_max_num_queries(8):  # the states come with the list, not one query per dataset
        html = client.get(reverse("curation:dataset_list")).content.decode()

    def privacy_cell(name: str) -> str:
        row = re.search(rf">{name}</a>.*?</tr>", html, re.S).group(0)
        cell = re.findall(r"<td>(.*?)</td>", row, re.S)[2]
        return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", cell)).strip()

    assert privacy_cell("Raw tickets") == "Not reviewed"
    assert privacy_cell("Tickets in review") == "Review in progress"
    assert privacy_cell("Clean tickets") == "Approved"
    assert privacy_cell("Reimported tickets") == "Not reviewed · version 1 is approved"
    assert reverse("curation:version_detail", args=[older.pk]) in html

    detail = client.get(reverse("curation:dataset_detail", args=[older.dataset_id])).content.decode()
    states = re.findall(r'<span class="status status-privacy-\w+" title="[^"]+">([^<]+)</span>', detail)
    assert states == ["Not reviewed", "Approved"]  # newest version first


def test_dataset_detail_lists_versions_with_lineage(client, site, curator):
    version = site["version"]
    filtered = services.version_filter(version=version, actor=curator, min_chars=70)
    client.force_login(curator)
    html = client.get(reverse("curation:dataset_detail", args=[version.dataset_id])).content.decode()
    assert "Version 2" in html and "Quality filter" in html
    assert version.content_hash[:12] in html and filtered.content_hash[:12] in html
    assert reverse("curation:version_detail", args=[version.pk]) in html  # “made from” links to the parent


def test_version_page_shows_stats_rows_and_lineage(client, site, curator):
    version = site["version"]
    child = services.version_split(
        version=version, actor=curator, seed=7, ratios={"train": 0.6, "validation": 0.2, "test": 0.2}
    )
    client.force_login(curator)
    html = client.get(reverse("curation:version_detail", args=[child.pk])).content.decode()
    assert "Where is my refund for order 1001?" in html
    assert "Re-split" in html
    lineage = re.search(r'<ol class="lineage">(.*?)</ol>', html, re.S).group(1)
    assert "Version 1" in lineage and "Version 2" in lineage
    assert "retail" in html and "business" in html  # group counts
    assert "Download JSON Lines" in html and "Remove duplicates" in html


def test_manager_sees_version_statistics_but_not_the_text_of_rows(client, site, manager):
    client.force_login(manager)
    response = client.get(reverse("curation:version_detail", args=[site["version"].pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Splits" in html and "retail" in html
    assert "Where is my refund" not in html
    assert "not the text of its rows" in html
    assert "Download CSV" not in html and "Make a new version" not in html
    # Asking for rows through the search box shows nothing more.
    html = client.get(reverse("curation:version_detail", args=[site["version"].pk]), {"q": "refund"}).content.decode()
    assert "Where is my refund" not in html
    assert client.get(reverse("curation:example_detail", args=[site["example"].pk])).status_code == 403


def test_privacy_reviewer_reads_rows_but_cannot_curate_or_export(client, site, reviewer):
    client.force_login(reviewer)
    html = client.get(reverse("curation:version_detail", args=[site["version"].pk])).content.decode()
    assert "Where is my refund" in html
    assert "Make a new version" not in html and "Download CSV" not in html


def test_staged_versions_are_not_shown(client, curator):
    staged = VersionFactory(status=DatasetVersion.Status.STAGED)
    example = ExampleFactory(version=staged)
    client.force_login(curator)
    assert client.get(reverse("curation:version_detail", args=[staged.pk])).status_code == 404
    assert client.get(reverse("curation:example_detail", args=[example.pk])).status_code == 404


def test_browse_pages_by_row_number_both_ways(client, curator):
    version = VersionFactory(row_count=120, stats={"splits": {"train": 120}})
    for index in range(1, 121):
        ExampleFactory(version=version, row_index=index, input=f"Ticket number {index:03d} about billing")
    url = reverse("curation:version_detail", args=[version.pk])
    client.force_login(curator)

    first = client.get(url).context
    assert [row.row_index for row in first["rows"]] == list(range(1, 51))
    assert first["previous_url"] == "" and "after=50" in first["next_url"]

    second = client.get(first["next_url"]).context
    assert [row.row_index for row in second["rows"]] == list(range(51, 101))
    assert "before=51" in second["previous_url"] and "after=100" in second["next_url"]

    third = client.get(second["next_url"]).context
    assert [row.row_index for row in third["rows"]] == list(range(101, 121))
    assert third["next_url"] == ""

    back = client.get(third["previous_url"]).context
    assert [row.row_index for row in back["rows"]] == list(range(51, 101))
    # Nonsense in the address is ignored rather than an error.
    assert client.get(url, {"after": "abc", "flag": "x"}).status_code == 200


def test_search_and_filters_keep_each_other_across_pages(client, curator):
    version = VersionFactory(row_count=80, stats={"splits": {"train": 80}, "groups": {"retail": 60, "business": 20}})
    for index in range(1, 81):
        ExampleFactory(
            version=version,
            row_index=index,
            group="retail" if index <= 60 else "business",
            input=f"Refund request {index}" if index % 2 else f"Address change {index}",
        )
    client.force_login(curator)
    url = reverse("curation:version_detail", args=[version.pk])
    context = client.get(url, {"q": "refund", "group": "retail"}).context
    assert len(context["rows"]) == 30
    assert all(row.group == "retail" and "Refund" in row.input for row in context["rows"])
    assert context["next_url"] == ""

    html = client.get(url, {"group": "business"}).content.decode()
    assert "Address change 62" in html and "Refund request 3<" not in html


def test_flag_filter(client, curator):
    version = VersionFactory(row_count=2, stats={"splits": {"train": 2}, "flags": {"Very short": 1}})
    ExampleFactory(version=version, row_index=1, input="Hi", target="", flags=1)
    ExampleFactory(version=version, row_index=2, input="A long enough question about an invoice", flags=0)
    client.force_login(curator)
    context = client.get(reverse("curation:version_detail", args=[version.pk]), {"flag": "1"}).context
    assert [row.row_index for row in context["rows"]] == [1]


def test_example_page_shows_every_part_of_the_row(client, curator):
    version = VersionFactory()
    example = ExampleFactory(
        version=version,
        label="billing",
        group="retail",
        source_line=17,
        flags=4,
        metadata={"priority": "high", "channel": "email"},
    )
    client.force_login(curator)
    html = client.get(reverse("curation:example_detail", args=[example.pk])).content.decode()
    for text in (
        example.input,
        example.target,
        "billing",
        "retail",
        "line 17",
        "priority",
        "high",
        "Probably not English",
        "Train",
    ):
        assert text in html


def test_html_in_example_text_is_escaped(client, site, curator):
    client.force_login(curator)
    example = Example.objects.get(version=site["version"], input__contains="<script>")
    for url in (
        reverse("curation:version_detail", args=[site["version"].pk]),
        reverse("curation:example_detail", args=[example.pk]),
    ):
        html = client.get(url).content.decode()
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert" in html


# --- exports ---------------------------------------------------------------------------------


def test_jsonl_export_streams_every_row_with_a_sensible_name(client, site, curator):
    client.force_login(curator)
    response = client.get(reverse("curation:version_export", args=[site["version"].pk, "jsonl"]))
    assert response.status_code == 200
    assert 'filename="support-tickets-v1.jsonl"' in response["Content-Disposition"]
    rows = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert len(rows) == 5
    assert rows[0]["input"] == "Where is my refund for order 1001?"
    assert AuditEvent.objects.filter(action="version.export", actor=curator).exists()


def test_csv_export_neutralises_cells_that_spreadsheets_would_run(client, curator):
    version = VersionFactory(dataset__name="Formulas", privacy=DatasetVersion.Privacy.APPROVED)
    dangerous = ['=HYPERLINK("http://evil")', "+1+2", "-3", "@SUM(A1)"]
    for index, text in enumerate(dangerous, start=1):
        ExampleFactory(version=version, row_index=index, input=text, target="fine")
    client.force_login(curator)
    response = client.get(reverse("curation:version_export", args=[version.pk, "csv"]))
    assert response.status_code == 200
    assert 'filename="formulas-v' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["input"] for row in rows] == ["'" + text for text in dangerous]


def test_unknown_export_format_is_not_found(client, site, curator):
    client.force_login(curator)
    assert client.get(f"/datasets/versions/{site['version'].pk}/export.xlsx").status_code == 404


# --- curation steps --------------------------------------------------------------------------


def test_a_mapped_label_column_of_instruction_data_gets_its_card_column_and_filter(client, curator, write_file):
    # As found: instruction/response data with a category column kept the labels but showed them nowhere.
    content = TICKETS_CSV.replace("question,answer,segment", "question,answer,category")
    version = _import(
        curator, write_file, name="Categorised", content=content, input="question", target="answer", label="category"
    )
    client.force_login(curator)
    html = client.get(reverse("curation:version_detail", args=[version.pk])).content.decode()
    card = re.search(r"<h3>Labels</h3>.*?</div>", html, re.S).group(0)
    assert re.search(r"retail</th><td class=\"num\">3<", card) and re.search(r"business</th><td class=\"num\">2<", card)
    header = re.search(r"<thead>.*?</thead>", html, re.S).group(0)
    assert ">Target</th>" in header and ">Label</th>" in header
    assert "<td>retail</td>" in html
    assert '<option value="business">business</option>' in html  # the rows can be filtered by label

    plain = _import(curator, write_file, name="Plain", input="question", target="answer")
    html = client.get(reverse("curation:version_detail", args=[plain.pk])).content.decode()
    assert "<h3>Labels</h3>" not in html and ">Label</th>" not in html


def test_resplit_makes_a_new_version(client, site, curator):
    client.force_login(curator)
    response = client.post(
        reverse("curation:version_split", args=[site["version"].pk]),
        {"seed": 99, "train": "60", "validation": "20", "test": "20"},
    )
    new = DatasetVersion.objects.get(parent=site["version"], operation="split")
    assert response.status_code == 302 and response["Location"] == reverse("curation:version_detail", args=[new.pk])
    assert new.split_seed == 99 and new.split_ratios == {"train": 0.6, "validation": 0.2, "test": 0.2}
    assert "is ready" in client.get(response["Location"]).content.decode()


def test_resplit_shares_that_do_not_add_up_are_explained(client, site, curator):
    client.force_login(curator)
    response = client.post(
        reverse("curation:version_split", args=[site["version"].pk]),
        {"seed": 1, "train": "70", "validation": "20", "test": "20"},
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "must add up to 100%" in html
    # The search box of the page shown at the POST address still searches the version page.
    assert f'action="{reverse("curation:version_detail", args=[site["version"].pk])}"' in html
    assert not DatasetVersion.objects.filter(parent=site["version"]).exists()


def test_quality_filter_makes_a_new_version(client, site, curator):
    client.force_login(curator)
    response = client.post(reverse("curation:version_filter", args=[site["version"].pk]), {"min_chars": "70"})
    new = DatasetVersion.objects.get(parent=site["version"], operation="filter")
    assert response["Location"] == reverse("curation:version_detail", args=[new.pk])
    assert 0 < new.row_count < 5
    page = client.get(response["Location"]).content.decode()
    assert f"Version {new.number} is ready: {5 - new.row_count} rows removed, {new.row_count} kept." in page


def test_quality_filter_errors_appear_next_to_the_field(client, site, curator):
    client.force_login(curator)
    response = client.post(
        reverse("curation:version_filter", args=[site["version"].pk]), {"min_chars": "50", "max_chars": "10"}
    )
    html = response.content.decode()
    field = re.search(r'id="field-max_chars".*?</div>', html, re.S).group(0)
    assert "at least the minimum length" in field
    response = client.post(reverse("curation:version_filter", args=[site["version"].pk]), {})
    assert "Choose at least one filter." in response.content.decode()


def test_deduplicate_review_and_apply(client, site, curator):
    run = site["run"]
    assert run.status == DedupeRun.Status.DONE and run.group_count == 5
    client.force_login(curator)
    html = client.get(reverse("curation:dedupe_detail", args=[run.pk])).content.decode()
    assert "Found <strong>5</strong> groups" in html
    text = re.sub(r"</?mark[^>]*>", "", html)
    assert "we sent the refund on monday" in text and "We sent the refund on Monday" in text
    # What sets the rows of a group apart is marked: here only the case of some words.
    assert '<mark class="diff">Where</mark> is my refund for order 1001?' in html
    assert '<mark class="diff">where</mark> is my refund for order 1001?' in html
    assert '<mark class="diff">is</mark>' not in html
    first_group = run.groups.order_by("id").first()
    kept, second = first_group.example_ids[0], first_group.example_ids[1]
    assert re.search(rf'value="{kept}"\s+checked', html)  # the first member is kept by default
    assert not re.search(rf'value="{second}"\s+checked', html)

    # Keep both rows of the first group; every other group keeps its first row.
    response = client.post(
        reverse("curation:dedupe_apply", args=[run.pk]),
        {
            "groups": [first_group.pk],
            f"keep_{first_group.pk}": [kept, second],
            "action": "apply",
        },
    )
    run.refresh_from_db()
    assert run.status == DedupeRun.Status.APPLIED
    assert response["Location"] == reverse("curation:version_detail", args=[run.result_version.pk])
    assert run.result_version.row_count == 10 - 4


def test_deduplicate_refuses_a_group_with_nothing_kept(client, site, curator):
    run = site["run"]
    group = run.groups.order_by("id").first()
    client.force_login(curator)
    response = client.post(
        reverse("curation:dedupe_apply", args=[run.pk]), {"groups": [group.pk], "action": "apply"}, follow=True
    )
    assert f"Keep at least one row of group {group.pk}." in response.content.decode()
    run.refresh_from_db()
    assert run.status == DedupeRun.Status.DONE


def test_deduplicate_start_queues_a_run_and_shows_progress(client, site, curator):
    client.force_login(curator)
    response = client.post(
        reverse("curation:dedupe_start", args=[site["version"].pk]), {"mode": "near", "threshold": "0.9"}
    )
    run = DedupeRun.objects.get(version=site["version"])
    assert response["Location"] == reverse("curation:dedupe_detail", args=[run.pk])
    html = client.get(response["Location"]).content.decode()
    assert 'id="progress"' in html and "curation/live.js" in html
    assert f"Looking for duplicates in version {site['version'].number}." in html
    data = client.get(reverse("curation:dedupe_progress", args=[run.pk])).json()
    assert data["status"] == "queued" and data["finished"] is False


def test_deduplicate_threshold_out_of_range_is_explained(client, site, curator):
    client.force_login(curator)
    response = client.post(
        reverse("curation:dedupe_start", args=[site["version"].pk]), {"mode": "near", "threshold": "3"}
    )
    field = re.search(r'id="field-threshold".*?</div>', response.content.decode(), re.S).group(0)
    assert "less than or equal to 1" in field


def test_dedupe_choices_are_remembered_between_pages(client, make_user, write_file):
    owner = make_user("curator")
    lines = "question,answer\n" + "".join(f"Question {i},Answer {i}\nquestion {i}!,answer {i}\n" for i in range(25))
    version = _import(owner, write_file, name="Many", content=lines, input="question", target="answer")
    run = services.dedupe_run_start(version=version, actor=owner, mode=DedupeRun.Mode.EXACT)
    services.dedupe_run_execute(run_id=run.pk)
    groups = list(run.groups.order_by("id"))
    assert len(groups) == 25
    client.force_login(owner)
    apply_url = reverse("curation:dedupe_apply", args=[run.pk])
    first = groups[0]
    response = client.post(
        apply_url,
        {
            "groups": [g.pk for g in groups[:20]],
            f"keep_{first.pk}": first.example_ids[1],
            **{f"keep_{g.pk}": g.example_ids[0] for g in groups[1:20]},
            "goto": "2",
        },
    )
    assert response["Location"].endswith("?page=2")
    page_two = client.get(response["Location"]).content.decode()
    assert "other pages are remembered" in page_two
    response = client.post(
        apply_url,
        {
            "groups": [g.pk for g in groups[20:]],
            **{f"keep_{g.pk}": g.example_ids[0] for g in groups[20:]},
            "action": "apply",
        },
    )
    run.refresh_from_db()
    kept = set(run.result_version.examples.values_list("input", flat=True))
    assert "question 0!" in kept and "Question 0" not in kept
    assert len(kept) == 25


# --- uploads ---------------------------------------------------------------------------------


def test_upload_form_creates_an_upload_and_opens_the_mapping(client, curator):
    client.force_login(curator)
    file = SimpleUploadedFile("tickets.csv", b"Customer message,Agent answer\nHello,Hi\n", content_type="text/csv")
    response = client.post(
        reverse("curation:upload_create"), {"dataset_name": "Tickets", "task_type": "sft", "format": "", "file": file}
    )
    upload = Upload.objects.get()
    assert response["Location"] == reverse("curation:upload_detail", args=[upload.pk])
    assert upload.columns == ["Customer message", "Agent answer"]
    html = client.get(response["Location"]).content.decode()
    assert "Which column holds what?" in html and "Check rows" in html


def test_upload_errors_from_the_service_appear_next_to_the_field(client, curator):
    client.force_login(curator)
    file = SimpleUploadedFile("tickets.xlsx", b"PK\x03\x04 not text")
    response = client.post(reverse("curation:upload_create"), {"dataset_name": "T", "task_type": "sft", "file": file})
    assert response.status_code == 200
    field = re.search(r'id="field-format".*?</div>', response.content.decode(), re.S).group(0)
    assert "Cannot tell the format" in field

    file = SimpleUploadedFile("tickets.csv", b"\xff\xfeh\x00i\x00")
    response = client.post(reverse("curation:upload_create"), {"dataset_name": "T", "task_type": "sft", "file": file})
    field = re.search(r'id="field-file".*?</div>', response.content.decode(), re.S).group(0)
    assert "UTF-16" in field
    assert not Upload.objects.exists()


def test_upload_without_a_file_says_so_next_to_the_file_box_and_keeps_the_fields(client, curator):
    client.force_login(curator)
    response = client.post(
        reverse("curation:upload_create"), {"dataset_name": "Kept name", "task_type": "classification", "format": "csv"}
    )
    html = response.content.decode()
    field = re.search(r'id="field-file".*?</div>', html, re.S).group(0)
    assert "Choose a file to upload." in field
    assert 'value="Kept name"' in html
    assert re.search(r'value="classification"[^>]*checked', html)
    assert re.search(r'<option value="csv" selected>', html)
    assert "file-chosen-before" not in html  # no file was chosen, so none to ask for again
    assert not Upload.objects.exists()


def test_after_a_server_side_error_the_page_names_the_chosen_file_and_keeps_the_fields(client, curator, settings):
    client.force_login(curator)
    huge = b"question,answer\n" + b"x" * (65 * 1024) + b",answer\n"
    file = SimpleUploadedFile("long-rows.csv", huge)
    settings.TUNINGDESK_MAX_ROW_BYTES = 64 * 1024
    response = client.post(
        reverse("curation:upload_create"), {"dataset_name": "Long rows", "task_type": "sft", "file": file}
    )
    html = response.content.decode()
    field = re.search(r'id="field-file".*?</div>', html, re.S).group(0)
    assert "Line 2 is longer than the limit of 64 KB (65,536 bytes) per row" in field
    assert "You chose “long-rows.csv”" in html and "choose it again, or a corrected one" in html
    assert 'value="Long rows"' in html
    assert not Upload.objects.exists()


def test_a_too_large_upload_gets_a_clear_message(client, curator, settings):
    settings.TUNINGDESK_MAX_UPLOAD_BYTES = 2048
    client.force_login(curator)
    file = SimpleUploadedFile("big.csv", b"question,answer\n" + b"a,b\n" * 2000)
    response = client.post(reverse("curation:upload_create"), {"dataset_name": "Big", "task_type": "sft", "file": file})
    assert response.status_code == 413
    html = response.content.decode()
    assert "The file is larger than the limit of 2 KB." in html
    assert "This field is required" not in html
    assert not Upload.objects.exists()


def test_a_slightly_too_large_upload_keeps_the_other_fields(client, curator, settings):
    # Under the handler's early refusal (limit + 1 MB), the fields before the file still arrive.
    settings.TUNINGDESK_MAX_UPLOAD_BYTES = 100
    client.force_login(curator)
    file = SimpleUploadedFile("big.csv", b"question,answer\n" + b"a,b\n" * 100)
    response = client.post(
        reverse("curation:upload_create"), {"dataset_name": "Kept name", "task_type": "sft", "file": file}
    )
    html = response.content.decode()
    assert "The file is larger than the limit of 100 bytes." in html
    assert 'value="Kept name"' in html


def test_html_in_column_names_and_preview_rows_is_escaped(client, curator, write_file):
    upload = _upload(curator, write_file, '<script>alert("col")</script>,answer\n<script>alert("row")</script>,fine\n')
    client.force_login(curator)
    html = client.get(reverse("curation:upload_detail", args=[upload.pk])).content.decode()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&quot;col&quot;)" in html  # the column name, in the mapping choices
    preview = client.get(
        reverse("curation:upload_preview", args=[upload.pk]),
        {"input": '<script>alert("col")</script>', "target": "answer", "task_type": "sft"},
    )
    html = preview.content.decode()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&quot;row&quot;)" in html  # the row text, in the preview


def test_preview_follows_the_mapping(client, curator, write_file):
    upload = _upload(curator, write_file, "Customer message,Agent answer,Team\nWhere is my parcel?,On its way.,north\n")
    client.force_login(curator)
    url = reverse("curation:upload_preview", args=[upload.pk])
    html = client.get(url, {"task_type": "sft", "input": "Customer message"}).content.decode()
    assert "needs a target (response) column" in html
    html = client.get(
        url, {"task_type": "sft", "input": "Customer message", "target": "Agent answer", "metadata": ["Team"]}
    ).content.decode()
    assert "Where is my parcel?" in html and "On its way." in html and "north" in html


def test_mapping_errors_appear_next_to_the_fields(client, curator, write_file):
    upload = _upload(curator, write_file, "text,answer,category\nHello,Hi,greeting\n")
    client.force_login(curator)
    url = reverse("curation:upload_map", args=[upload.pk])
    response = client.post(url, {"task_type": "classification", "input": "text", "action": "check"})
    html = response.content.decode()
    label_field = re.search(r'id="field-label".*?</div>', html, re.S).group(0)
    assert "Classification data needs a label column." in label_field
    response = client.post(url, {"task_type": "sft", "input": "", "target": "answer", "action": "check"})
    input_field = re.search(r'id="field-input".*?</div>', response.content.decode(), re.S).group(0)
    assert "Choose the column that holds the input" in input_field
    response = client.post(url, {"task_type": "sft", "input": "text", "target": "text", "action": "check"})
    assert "Each column can fill only one role." in response.content.decode()
    upload.refresh_from_db()
    assert upload.status == Upload.Status.UPLOADED


def test_preview_button_shows_the_preview_without_saving(client, curator, write_file):
    upload = _upload(curator, write_file, "a,b\nWhere is my parcel?,On its way.\n")
    client.force_login(curator)
    response = client.post(
        reverse("curation:upload_map", args=[upload.pk]),
        {"task_type": "sft", "input": "a", "target": "b", "action": "preview"},
    )
    assert response.status_code == 200
    assert "Where is my parcel?" in response.content.decode()
    upload.refresh_from_db()
    assert upload.status == Upload.Status.UPLOADED and upload.mapping.get("input") is None


def test_upload_check_decide_and_import(client, curator, write_file):
    content = (
        "question,answer\nWhere is my refund?,Sent on Monday.\nNo answer here,\nHow do I log in?,Use your email.\n"
    )
    upload = _upload(curator, write_file, content)
    client.force_login(curator)
    response = client.post(
        reverse("curation:upload_map", args=[upload.pk]),
        {"task_type": "sft", "input": "question", "target": "answer", "action": "check"},
    )
    assert response["Location"] == reverse("curation:upload_detail", args=[upload.pk])
    upload.refresh_from_db()
    assert upload.status == Upload.Status.VALIDATING
    html = client.get(response["Location"]).content.decode()
    assert 'id="progress"' in html and "Cancel" in html
    progress = client.get(reverse("curation:upload_progress", args=[upload.pk])).json()
    assert progress["status"] == "validating" and progress["finished"] is False

    services.upload_stage(upload_id=upload.pk)  # what the worker runs

    assert client.get(reverse("curation:upload_progress", args=[upload.pk])).json()["finished"] is True
    html = client.get(reverse("curation:upload_detail", args=[upload.pk])).content.decode()
    assert "Import 2 good rows" in html
    assert "“answer” is empty." in html and ">3<" in html  # the problem and its line
    report = b"".join(client.get(reverse("curation:upload_report", args=[upload.pk])).streaming_content).decode()
    assert "“answer” is empty." in report

    response = client.post(reverse("curation:upload_commit", args=[upload.pk]))
    upload.refresh_from_db()
    assert upload.status == Upload.Status.IMPORTED
    assert response["Location"] == reverse("curation:version_detail", args=[upload.version_id])
    assert "Imported 2 rows" in client.get(response["Location"]).content.decode()
    html = client.get(reverse("curation:upload_detail", args=[upload.pk])).content.decode()
    assert reverse("curation:version_detail", args=[upload.version_id]) in html


def test_upload_cancel_after_the_check(client, curator, write_file):
    upload = _upload(curator, write_file, "question,answer\nWhere?,Here.\n")
    services.upload_set_mapping(upload=upload, actor=curator, mapping={"input": "question", "target": "answer"})
    services.upload_start_validation(upload=upload, actor=curator)
    services.upload_stage(upload_id=upload.pk)
    client.force_login(curator)
    response = client.post(reverse("curation:upload_cancel", args=[upload.pk]), follow=True)
    upload.refresh_from_db()
    assert upload.status == Upload.Status.CANCELLED
    assert "nothing from it was imported" in response.content.decode()


def test_failed_upload_says_why_in_plain_words(client, curator, write_file):
    upload = _upload(curator, write_file, "question,answer\nWhere?,Here.\n", dataset="Clash")
    Upload.objects.filter(pk=upload.pk).update(status=Upload.Status.FAILED, error="The file is empty.")
    client.force_login(curator)
    html = client.get(reverse("curation:upload_detail", args=[upload.pk])).content.decode()
    assert "could not be imported" in html and "The file is empty." in html


def test_a_second_import_into_a_busy_dataset_is_refused_with_a_message(client, curator, write_file):
    first = _upload(curator, write_file, "question,answer\nA?,B.\n", name="one.csv", dataset="Busy")
    services.upload_set_mapping(upload=first, actor=curator, mapping={"input": "question", "target": "answer"})
    services.upload_start_validation(upload=first, actor=curator)
    second = _upload(curator, write_file, "question,answer\nC?,D.\n", name="two.csv", dataset="Busy")
    client.force_login(curator)
    response = client.post(
        reverse("curation:upload_map", args=[second.pk]),
        {"task_type": "sft", "input": "question", "target": "answer", "action": "check"},
    )
    assert response.status_code == 200
    assert "is being imported into" in response.content.decode()


def test_upload_list_shows_status_and_counts(client, site, curator):
    client.force_login(site["owner"])
    html = client.get(reverse("curation:upload_list")).content.decode()
    assert "Support_tickets.csv" in html and "Imported" in html
    assert "new.csv" in html and "Waiting for column mapping" in html
    assert "owner" in html
    client.force_login(curator)  # another curator sees only their own uploads
    html = client.get(reverse("curation:upload_list")).content.decode()
    assert "Support_tickets.csv" not in html and "new.csv" not in html


def test_a_far_too_large_upload_from_a_browser_form_gets_the_clear_message(curator, settings):
    from django.test import Client

    settings.TUNINGDESK_MAX_UPLOAD_BYTES = 100
    client = Client(enforce_csrf_checks=True, raise_request_exception=False)
    client.force_login(curator)
    html = client.get(reverse("curation:upload_create")).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    file = SimpleUploadedFile("huge.csv", b"a" * (2 * 1024 * 1024))
    response = client.post(
        reverse("curation:upload_create"),
        {"csrfmiddlewaretoken": token, "dataset_name": "Huge", "task_type": "sft", "file": file},
    )
    assert "The file is larger than the limit of 100 bytes." in response.content.decode()


def _export(client, api, version, fmt: str):
    """Through the REST API when ``api`` is its client, else the web page's link."""
    if api is not None:
        return api.get(reverse("api-version-export", args=[version.pk]) + f"?format={fmt}")
    return client.get(reverse("curation:version_export", args=[version.pk, fmt]))


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.parametrize("via", ["web", "api"])
def test_an_unreviewed_version_never_answers_with_a_file(client, api_client, curator, reviewer, write_file, via, fmt):
    # As found: "Download CSV" on an unreviewed version saved the version page with the refusal as download.html.
    raw = _import(curator, write_file, name="Raw tickets")
    in_review = _import(curator, write_file, name="Tickets in review")
    services_redaction.redaction_run_start(version=in_review, actor=reviewer)
    approved = _import(curator, write_file, name="Approved tickets")
    DatasetVersion.objects.filter(pk=approved.pk).update(privacy=DatasetVersion.Privacy.APPROVED)
    client.force_login(curator)
    api = api_client(curator) if via == "api" else None

    for version in (raw, in_review):
        response = _export(client, api, version, fmt)
        assert response.status_code == 409
        assert not response.has_header("Content-Disposition")
        assert not response.streaming
        if via == "api":
            assert response["Content-Type"] == "application/json"
            assert "has not passed privacy review" in response.json()["error"]
        else:
            page = response.content.decode()
            assert response["Content-Type"].startswith("text/html")
            assert "Nothing was downloaded." in page and "has not passed privacy review" in page
            assert 'id="export-why"' in page
    assert not AuditEvent.objects.filter(action="version.export").exists()

    response = _export(client, api, approved, fmt)
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment;")
    assert f'filename="approved-tickets-v1.{fmt}"' in response["Content-Disposition"]
    body = b"".join(response.streaming_content).decode()
    assert "Where is my refund for order 1001?" in body and "<html" not in body


def test_the_version_page_offers_downloads_only_once_privacy_review_passed(client, site, curator, write_file):
    raw = _import(curator, write_file, name="Raw tickets")
    client.force_login(curator)
    page = client.get(reverse("curation:version_detail", args=[raw.pk])).content.decode()
    assert reverse("curation:version_export", args=[raw.pk, "csv"]) not in page
    assert reverse("curation:version_export", args=[raw.pk, "jsonl"]) not in page
    assert page.count('disabled aria-describedby="export-why"') == 2
    assert "Downloads are off: this version has not passed privacy review" in page

    approved = client.get(reverse("curation:version_detail", args=[site["version"].pk])).content.decode()
    assert reverse("curation:version_export", args=[site["version"].pk, "csv"]) in approved
    assert "export-why" not in approved and " download>" not in approved
