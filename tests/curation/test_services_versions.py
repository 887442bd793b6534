import json
from collections import Counter

import pytest
from django.core.exceptions import ValidationError

from accounts.models import AuditEvent
from curation import services
from curation.models import DatasetVersion, DedupeRun, Flag
from curation.services.versions import EXAMPLE_COLUMNS

pytestmark = pytest.mark.django_db


@pytest.fixture
def version(curator, write_file):
    records = []
    for n in range(120):
        label = ("billing", "login", "records")[n % 3] if n % 10 else "rare"
        records.append(
            {
                "q": f"Ticket {n}: please check the {label} problem we reported on day {n}",
                "a": "Thanks, fixed.",
                "label": label,
            }
        )
    records += [
        {
            "q": "Ticket 1: please check the login problem we reported on day 1!!",
            "a": "thanks, FIXED",
            "label": "login",
        },
        {
            "q": "Bitte prüfen Sie die Rechnung für unsere Klinik, die Beträge stimmen nicht überein.",
            "a": "Danke.",
            "label": "billing",
        },
        {
            "q": "Привет, у нас не работает вход в портал для пациентов уже второй день подряд",
            "a": "ok",
            "label": "login",
        },
    ]
    path = write_file("t.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    upload = services.dataset_import(
        path=path,
        dataset_name="Tickets",
        actor=curator,
        task_type="classification",
        mapping={"input": "q", "target": "a", "label": "label"},
    )
    return upload.version


def split_counts(version):
    return Counter(version.examples.values_list("label", "split"))


def test_split_is_stratified_by_label_and_reproducible(version, curator):
    ratios = {"train": 0.6, "validation": 0.2, "test": 0.2}
    first = services.version_split(version=version, actor=curator, seed=42, ratios=ratios)
    again = services.version_split(version=version, actor=curator, seed=42, ratios=ratios)
    other = services.version_split(version=version, actor=curator, seed=43, ratios=ratios)
    assert first.content_hash == again.content_hash != other.content_hash
    counts = split_counts(first)
    for label, total in Counter(version.examples.values_list("label", flat=True)).items():
        for split, share in ratios.items():
            assert abs(counts[(label, split)] - share * total) <= 1, (label, split, counts)
    assert (first.parent, first.operation, first.row_count) == (version, DatasetVersion.Operation.SPLIT, 123)
    assert first.operation_params == {"seed": 42, "ratios": ratios}


def test_a_version_is_made_in_one_call_with_its_privacy_from_the_start(version, curator):
    rows = list(version.examples.order_by("row_index").values_list(*EXAMPLE_COLUMNS))
    made = services.version_create(
        dataset=version.dataset,
        parent=version,
        operation=DatasetVersion.Operation.REDACT,
        params={"note": "same rows"},
        actor=curator,
        rows=rows,
        seed=version.split_seed,
        ratios=version.split_ratios,
        privacy=DatasetVersion.Privacy.APPROVED,
    )
    assert (made.number, made.row_count, made.content_hash) == (version.number + 1, 123, version.content_hash)
    assert made.is_approved and made.stats["splits"] == version.stats["splits"]
    assert list(DatasetVersion.objects.approved()) == [made]
    assert set(DatasetVersion.objects.ready()) == {version, made}
    # A later step that may add personal data makes its version raw at once, and the audit trail says so.
    derived = services.version_derive(
        parent=made, operation=DatasetVersion.Operation.ANNOTATE, params={}, actor=curator, privacy="raw"
    )
    assert derived.is_ready and not derived.is_approved and derived.row_count == 123
    audited = {event.object_id: event.after["privacy"] for event in AuditEvent.objects.filter(action="version.create")}
    assert audited == {str(version.pk): "raw", str(made.pk): "approved", str(derived.pk): "raw"}


def test_split_ratios_must_add_up(version, curator):
    with pytest.raises(ValidationError, match="add up to 100%"):
        services.version_split(version=version, actor=curator, seed=1, ratios={"train": 0.9, "test": 0.2})


def test_versions_are_immutable_when_children_are_made(version, curator):
    before = (version.content_hash, version.row_count, list(version.examples.values_list("id", "split")))
    services.version_filter(version=version, actor=curator, min_chars=70)
    services.version_split(version=version, actor=curator, seed=5, ratios={"train": 0.5, "validation": 0.5})
    version.refresh_from_db()
    assert before == (version.content_hash, version.row_count, list(version.examples.values_list("id", "split")))


def test_quality_filters(version, curator):
    assert version.examples.flagged(Flag.NOT_ENGLISH).count() == 2
    english = services.version_filter(version=version, actor=curator, drop_not_english=True)
    assert english.row_count == 121
    labelled = services.version_filter(version=version, actor=curator, label_set=["billing", "login"])
    assert set(labelled.examples.values_list("label", flat=True)) == {"billing", "login"}
    short = services.version_filter(version=version, actor=curator, max_chars=80)
    assert all(len(e.input) + len(e.target) <= 80 for e in short.examples.all())
    with pytest.raises(ValidationError, match="at least the minimum"):
        services.version_filter(version=version, actor=curator, min_chars=10, max_chars=5)
    with pytest.raises(ValidationError, match="at least one filter"):
        services.version_filter(version=version, actor=curator)


def test_exact_dedupe_groups_normalised_text_and_keeps_the_choice(version, curator):
    run = services.dedupe_run_start(version=version, actor=curator, mode="exact")
    services.dedupe_run_execute(run_id=run.pk)
    assert services.dedupe_run_execute(run_id=run.pk) is None  # a second delivery does nothing
    run.refresh_from_db()
    assert (run.status, run.group_count, run.duplicate_count) == (DedupeRun.Status.DONE, 1, 1)
    group = run.groups.get()
    first, copy = group.example_ids
    new = services.dedupe_run_apply(run=run, actor=curator, keep={group.pk: [copy]})
    assert new.row_count == 122 and new.parent == version
    kept_rows = set(new.examples.values_list("input", flat=True))
    assert "Ticket 1: please check the login problem we reported on day 1!!" in kept_rows
    assert "Ticket 1: please check the login problem we reported on day 1" not in kept_rows
    run.refresh_from_db()
    assert run.status == DedupeRun.Status.APPLIED and run.result_version == new


def test_near_dedupe_finds_similar_tickets(version, curator):
    run = services.dedupe_run_start(version=version, actor=curator, mode="near", threshold=0.9)
    services.dedupe_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == DedupeRun.Status.DONE
    members = [set(group.example_ids) for group in run.groups.all()]
    originals = dict(version.examples.values_list("input", "id"))
    pair = {
        originals["Ticket 1: please check the login problem we reported on day 1"],
        originals["Ticket 1: please check the login problem we reported on day 1!!"],
    }
    assert any(pair <= group for group in members)
    new = services.dedupe_run_apply(run=run, actor=curator)
    assert new.row_count == version.row_count - run.duplicate_count


def test_dedupe_apply_rejects_bad_choices(version, curator):
    run = services.dedupe_run_start(version=version, actor=curator, mode="exact")
    services.dedupe_run_execute(run_id=run.pk)
    group = run.groups.get()
    with pytest.raises(ValidationError, match="at least one"):
        services.dedupe_run_apply(run=run, actor=curator, keep={group.pk: []})
    with pytest.raises(ValidationError, match="does not contain"):
        services.dedupe_run_apply(run=run, actor=curator, keep={group.pk: [10**9]})
    with pytest.raises(ValidationError, match="threshold|above 0"):
        services.dedupe_run_start(version=version, actor=curator, mode="near", threshold=0)
