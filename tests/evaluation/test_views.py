"""The evaluation pages as each persona sees them: real services, real templates, no mocks.

No worker runs here, so evaluations are written as the worker leaves them (EvalRun rows with their scores and
predictions); KPI figures go through the real CSV import, promotion through the real gate.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from curation.models import DatasetVersion
from evaluation import services
from evaluation.models import EvalRun, Kpi, KpiImportRun, KpiObservation, Prediction, RetrainRun, StageChange
from tests.factories import ExampleFactory, VersionFactory
from training import runner
from training.models import BaseModel, TrainedModel, TrainingJob

PERSONAS = ("curator", "annotator", "privacy_reviewer", "engineer", "manager", "admin", "outsider")
READERS = {"engineer", "manager", "admin"}  # view evaluations, KPIs and use cases
WRITERS = {"engineer", "admin"}  # run evaluations, import KPIs, promote
ESCAPE_ME = "<script>alert('boom')</script><b>bold</b>"
WEEKS = [dt.date(2026, 9, 7) + dt.timedelta(weeks=i) for i in range(8)]


# --- what the worker and the importers leave behind ------------------------------------------------


def _version(approved_version, *, rows: int = 12, test: int = 4) -> DatasetVersion:
    """An approved SFT version whose last rows are test rows, in two groups."""
    version = approved_version(rows=rows, validation=0)
    for example in version.examples.all():
        example.group = "hospital" if example.row_index % 2 else "pharmacy"
        example.split = "test" if example.row_index >= rows - test else "train"
        example.save(update_fields=["group", "split"])
    return version


def _base(name: str = "tiny-llama", **fields) -> BaseModel:
    defaults = {
        "source": "/models/tiny-llama",
        "architecture": "LlamaForCausalLM",
        "model_type": "llama",
        "parameter_count": 412_000,
        "hidden_size": 64,
        "num_layers": 2,
        "vocab_size": 1000,
        "task_types": ["sft", "classification"],
    }
    return BaseModel.objects.create(name=name, **{**defaults, **fields})


def _trained(name: str, version: DatasetVersion, base: BaseModel, *, task: str = "sft") -> TrainedModel:
    job = TrainingJob.objects.create(
        dataset_version=version,
        base_model=base,
        task=task,
        preset="quick",
        config=runner.apply_preset("quick", {}, task=task).to_dict(),
        status=TrainingJob.Status.SUCCEEDED,
    )
    return TrainedModel.objects.create(
        name=name,
        job=job,
        base_model=base,
        dataset_version=version,
        task=task,
        artifact_prefix=f"jobs/{job.pk}/adapter",
        files=[{"name": "adapter_model.safetensors", "size": 8, "sha256": "0" * 64}],
        sha256="0" * 64,
    )


def _run(subject, version: DatasetVersion, metrics: dict, *, outputs: str | None = None, **fields) -> EvalRun:
    """A finished evaluation as eval_run_execute leaves it; each test row gets ``outputs`` as the answer."""
    if isinstance(subject, TrainedModel):
        subject_fields = {"kind": EvalRun.Kind.ADAPTER, "trained_model": subject, "base_model": subject.base_model}
    else:
        subject_fields = {"kind": EvalRun.Kind.BASE, "base_model": subject}
    now = timezone.now()
    run = EvalRun.objects.create(
        **subject_fields,
        dataset_version=version,
        task=version.dataset.task_type,
        status=EvalRun.Status.SUCCEEDED,
        progress=1.0,
        total=version.examples.filter(split="test").count(),
        metrics=metrics,
        started_at=now,
        finished_at=now,
        **fields,
    )
    for example in version.examples.filter(split="test"):
        Prediction.objects.create(run=run, example=example, output=outputs or f"Answer {example.row_index}")
    return run


def _kpis():
    csat = services.kpi_ensure(slug="csat", name="Customer satisfaction", unit="points (1–5)", higher_is_better=True)
    escalation = services.kpi_ensure(
        slug="escalation_rate",
        name="Escalation rate",
        unit="share",
        higher_is_better=False,
        kind=Kpi.Kind.PROPORTION,
    )
    return csat, escalation


def _kpi_csv(rows: list[tuple]) -> str:
    lines = ["kpi,model,period_start,period_end,segment,value,sample_size"]
    for kpi, model, start, value, size in rows:
        lines.append(f"{kpi},{model},{start.isoformat()},{(start + dt.timedelta(days=6)).isoformat()},,{value},{size}")
    return "\n".join(lines) + "\n"


def _eight_weeks(base: str, adapter: str) -> str:
    """The adapter is clearly better on satisfaction (higher) and on escalations (lower), week after week."""
    rows = []
    for i, week in enumerate(WEEKS):
        wobble = (i % 3 - 1) * 0.02
        rows += [
            ("csat", base, week, round(3.9 + wobble, 3), 200),
            ("csat", adapter, week, round(4.3 - wobble, 3), 210),
            ("escalation_rate", base, week, round(0.15 + wobble / 4, 4), 200),
            ("escalation_rate", adapter, week, round(0.09 - wobble / 4, 4), 210),
        ]
    return _kpi_csv(rows)


@pytest.fixture
def world(db, approved_version):
    """A version, the base model and an adapter, both evaluated with scores per group, and eight weeks of KPIs."""
    version = _version(approved_version)
    base = _base()
    adapter = _trained("support-v2", version, base)
    per_group = {"hospital": {"rougeL": 0.52, "n": 2}, "pharmacy": {"rougeL": 0.38, "n": 2}}
    fairness = {
        "rougeL": {
            "best_group": "hospital",
            "worst_group": "pharmacy",
            "best": 0.52,
            "worst": 0.38,
            "gap": 0.14,
            "ratio": 0.38 / 0.52,
            "flagged": True,
        },
        # Scored since limits are stored with each gap: the threshold on the metric's own scale.
        "bleu": {
            "best_group": "hospital",
            "worst_group": "pharmacy",
            "best": 24.0,
            "worst": 19.5,
            "gap": 4.5,
            "ratio": 19.5 / 24.0,
            "flagged": False,
            "limit": 10.0,
        },
        "exact_match": {
            "best_group": "pharmacy",
            "worst_group": "hospital",
            "best": 0.5,
            "worst": 0.25,
            "gap": 0.25,
            "ratio": 0.5,
            "flagged": True,
            "limit": 0.1,
        },
    }
    base_run = _run(base, version, {"rougeL": 0.30, "bleu": 12.5, "exact_match": 0.0, "pred_length_mean": 31.0})
    adapter_run = _run(
        adapter,
        version,
        {"rougeL": 0.45, "bleu": 21.0, "exact_match": 0.25, "pred_length_mean": 18.0},
        per_group=per_group,
        fairness=fairness,
        fairness_threshold=0.1,
        outputs=ESCAPE_ME,
    )
    _kpis()
    result = services.kpi_import_csv(text=_eight_weeks(base.name, adapter.name), actor=None)
    assert result == {"imported": 32, "problems": []}
    return {"version": version, "base": base, "adapter": adapter, "base_run": base_run, "adapter_run": adapter_run}


def _use_case(world, gate: list[dict], actor=None):
    return services.use_case_save(
        slug="client-replies",
        name="Client replies",
        task="sft",
        dataset=world["version"].dataset,
        eval_version=world["version"],
        gate=gate,
        actor=actor,
    )


def _kpi_run() -> KpiImportRun:
    text = _kpi_csv([("csat", "support-v2", dt.date(2026, 12, 14), 4.4, 120)])
    return services.kpi_import_run_start(file=_kpi_file(text), actor=None)


def _client(client, user):
    client.force_login(user)
    return client


# --- who may open what -------------------------------------------------------------------------------


PAGES = {
    "dashboard": (READERS, lambda w: reverse("evaluation:dashboard")),
    "dashboard_json": (READERS, lambda w: reverse("evaluation:dashboard_json")),
    "kpi_import": (WRITERS, lambda w: reverse("evaluation:kpi_import")),
    "kpi_import_run": (WRITERS, lambda w: reverse("evaluation:kpi_import_run", args=[_kpi_run().pk])),
    "kpi_import_run_progress": (
        WRITERS,
        lambda w: reverse("evaluation:kpi_import_run_progress", args=[_kpi_run().pk]),
    ),
    "run_list": (READERS, lambda w: reverse("evaluation:run_list")),
    "run_detail": (READERS, lambda w: reverse("evaluation:run_detail", args=[w["adapter_run"].pk])),
    "run_progress_json": (READERS, lambda w: reverse("evaluation:run_progress_json", args=[w["adapter_run"].pk])),
    "run_create": (WRITERS, lambda w: reverse("evaluation:run_create")),
    "compare": (READERS, lambda w: reverse("evaluation:compare") + "?models=tiny-llama,support-v2"),
    "compare_csv": (READERS, lambda w: reverse("evaluation:compare_csv") + "?models=tiny-llama,support-v2"),
    "use_case_list": (READERS, lambda w: reverse("evaluation:use_case_list")),
    "use_case_detail": (READERS, lambda w: reverse("evaluation:use_case_detail", args=["client-replies"])),
}


@pytest.mark.parametrize("page", sorted(PAGES))
@pytest.mark.parametrize("persona", PERSONAS)
def test_each_page_opens_for_its_roles_and_is_forbidden_to_the_others(client, make_user, world, persona, page):
    _use_case(world, [{"kind": "metric", "name": "rougeL", "rule": "improve", "margin": 0.01}])
    allowed, url = PAGES[page]
    response = _client(client, make_user(persona)).get(url(world))
    assert response.status_code == (200 if persona in allowed else 403)


def test_anonymous_visitors_are_sent_to_the_login_page(client, world):
    response = client.get(reverse("evaluation:dashboard"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize(
    "name,args",
    [("promote", ["client-replies"]), ("rollback", ["client-replies"]), ("run_rescore", None)],
)
def test_writes_accept_post_only(client, engineer, world, name, args):
    _use_case(world, [{"kind": "metric", "name": "rougeL", "rule": "improve"}])
    url = reverse(f"evaluation:{name}", args=args or [world["adapter_run"].pk])
    assert _client(client, engineer).get(url).status_code == 405


@pytest.mark.parametrize("persona", ["manager", "curator"])
def test_promotion_and_rescoring_are_refused_to_readers(client, make_user, world, persona):
    use_case = _use_case(world, [{"kind": "metric", "name": "rougeL", "rule": "improve"}])
    c = _client(client, make_user(persona))
    promote = c.post(reverse("evaluation:promote", args=[use_case.slug]), {"model": world["adapter"].pk})
    rescore = c.post(reverse("evaluation:run_rescore", args=[world["adapter_run"].pk]), {"metrics": ["rouge1"]})
    assert promote.status_code == rescore.status_code == 403
    assert TrainedModel.objects.get(pk=world["adapter"].pk).stage == TrainedModel.Stage.CANDIDATE


def test_unknown_objects_are_404(client, engineer, world):
    c = _client(client, engineer)
    assert c.get(reverse("evaluation:run_detail", args=[999_999])).status_code == 404
    assert c.get(reverse("evaluation:use_case_detail", args=["nope"])).status_code == 404


def test_navigation_shows_the_evaluation_pages_by_role(client, make_user, world):
    manager_page = _client(client, make_user("manager")).get(reverse("home")).content.decode()
    for label in ("Dashboard", "Evaluations", "Promotion"):
        assert f">{label}</a>" in manager_page
    client.logout()
    curator_page = _client(client, make_user("curator")).get(reverse("home")).content.decode()
    for label in ("Dashboard", "Evaluations", "Promotion"):
        assert f">{label}</a>" not in curator_page


# --- KPI dashboard -----------------------------------------------------------------------------------


def test_dashboard_json_feeds_the_charts_with_series_means_and_intervals(client, manager, world):
    use_case = _use_case(world, [{"kind": "kpi", "name": "csat", "rule": "improve"}])
    use_case.production = world["adapter"]
    use_case.save(update_fields=["production"])
    response = _client(client, manager).get(reverse("evaluation:dashboard_json"))
    assert response.status_code == 200
    data = response.json()
    assert data["filters"] == {"start": None, "end": None, "segment": "", "reference": ""}
    by_slug = {item["kpi"]["slug"]: item for item in data["kpis"]}
    assert set(by_slug) == {"csat", "escalation_rate"}
    csat = by_slug["csat"]
    assert csat["kpi"] == {
        "slug": "csat",
        "name": "Customer satisfaction",
        "unit": "points (1–5)",
        "higher_is_better": True,
        "kind": "mean",
    }
    assert csat["reference"] == "support-v2"  # the production model by default
    assert [s["model"] for s in csat["series"]] == ["support-v2", "tiny-llama"]
    for series in csat["series"]:
        assert [p["period"] for p in series["points"]] == [w.isoformat() for w in WEEKS]
        assert all(set(p) == {"period", "value", "n"} for p in series["points"])
    bars = {bar["model"]: bar for bar in csat["bars"]}
    assert bars["support-v2"]["is_reference"] and bars["support-v2"]["comparison"] is None
    base = bars["tiny-llama"]
    assert base["low"] < base["mean"] < base["high"]
    assert base["n"] == 8 * 200
    assert set(base["comparison"]) >= {"delta", "low", "high", "p_value", "significant", "better"}
    assert base["comparison"]["significant"] and not base["comparison"]["better"]
    assert base["comparison"]["delta"] == pytest.approx(-0.4, abs=0.01)

    # Against the base model instead: the adapter is significantly better, for escalations because it is lower.
    data = _client(client, manager).get(reverse("evaluation:dashboard_json") + "?reference=tiny-llama").json()
    for item in data["kpis"]:
        adapter = next(bar for bar in item["bars"] if bar["model"] == "support-v2")
        assert item["reference"] == "tiny-llama"
        assert adapter["comparison"]["better"], item["kpi"]["slug"]
    escalation = next(item for item in data["kpis"] if item["kpi"]["slug"] == "escalation_rate")
    adapter = next(bar for bar in escalation["bars"] if bar["model"] == "support-v2")
    assert adapter["comparison"]["delta"] < 0 and 0 <= adapter["low"] < adapter["high"] <= 1


def test_dashboard_json_follows_the_filters(client, manager, world):
    url = reverse("evaluation:dashboard_json") + f"?start={WEEKS[4].isoformat()}&reference=support-v2"
    data = _client(client, manager).get(url).json()
    csat = next(item for item in data["kpis"] if item["kpi"]["slug"] == "csat")
    assert data["filters"]["start"] == WEEKS[4].isoformat()
    assert csat["reference"] == "support-v2"
    assert all(len(s["points"]) == 4 for s in csat["series"])


def test_dashboard_table_says_in_words_which_model_is_better_with_intervals(client, manager, world):
    use_case = _use_case(world, [{"kind": "kpi", "name": "csat", "rule": "improve"}])
    # The base model is not a trained model; make the adapter production and compare the base model with it.
    use_case.production = world["adapter"]
    use_case.save(update_fields=["production"])
    html = _client(client, manager).get(reverse("evaluation:dashboard")).content.decode()
    assert "Difference from support-v2 (production)" in html
    # Both KPIs: the base model is significantly worse, for escalations because its rate is higher.
    assert html.count("significantly worse") == 2
    assert "significantly better" not in html
    assert re.search(r"3\.\d\d to 3\.\d\d", html)  # the base model's satisfaction interval
    assert re.search(r"\d+\.\d % to \d+\.\d %", html)  # escalation rate is a share: shown in percent
    assert "percentage points" in html
    assert 'data-chart="trend"' in html and 'data-chart="interval"' in html
    assert 'evaluation/dashboard.js"' in html


def test_dashboard_says_when_a_difference_is_not_significant(client, manager, world, engineer):
    _kpis()
    close = [("csat", "tiny-llama", w, 4.0 + (i % 2) * 0.3, 30) for i, w in enumerate(WEEKS)]
    close += [("csat", "support-v2", w, 4.05 + ((i + 1) % 2) * 0.3, 30) for i, w in enumerate(WEEKS)]
    KpiObservation.objects.all().delete()
    services.kpi_import_csv(text=_kpi_csv(close), actor=engineer)
    html = _client(client, manager).get(reverse("evaluation:dashboard")).content.decode()
    assert "no significant difference" in html


def test_dashboard_without_figures_says_what_to_do(client, engineer, db):
    html = _client(client, engineer).get(reverse("evaluation:dashboard")).content.decode()
    assert "No KPIs are defined yet" in html
    assert 'dashboard.js"' not in html  # no chart script (dashboard.json is the data address)


# --- KPI import ----------------------------------------------------------------------------------


def test_kpi_import_with_a_bad_csv_shows_the_line_report_and_imports_nothing(client, engineer, world):
    before = KpiObservation.objects.count()
    bad = (
        "kpi,model,period_start,period_end,segment,value,sample_size\n"
        "csat,support-v2,2026-12-07,2026-12-13,,4.4,100\n"
        "csat,nobody,2026-12-07,2026-12-13,,4.4,100\n"
        "escalation_rate,support-v2,2026-12-07,2026-12-13,,12,0\n"
    )
    response = _client(client, engineer).post(reverse("evaluation:kpi_import"), {"text": bad})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Nothing was imported" in html
    report = re.findall(r'<td class="num">(\d+)</td><td><code>(\w+)</code></td><td>([^<]+)</td>', html)
    messages = {(line, field): message for line, field, message in report}
    assert set(messages) == {("3", "model"), ("4", "value"), ("4", "sample_size")}
    assert "Unknown model “nobody”" in messages[("3", "model")]
    assert "give it between 0 and 1" in messages[("4", "value")]
    assert KpiObservation.objects.count() == before


def test_kpi_import_of_a_file_without_the_columns_says_which_are_missing(client, engineer, world):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("kpis.csv", b"kpi,model\ncsat,support-v2\n", content_type="text/csv")
    response = _client(client, engineer).post(reverse("evaluation:kpi_import"), {"file": upload})
    assert response.status_code == 400
    assert "missing: period_start, value, sample_size" in response.content.decode()


def test_kpi_import_of_pasted_rows_goes_back_to_the_dashboard(client, engineer, world):
    text = _kpi_csv([("csat", "support-v2", dt.date(2026, 12, 7), 4.4, 120)])
    response = _client(client, engineer).post(reverse("evaluation:kpi_import"), {"text": text}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("evaluation:dashboard")
    assert "Imported 1 KPI figure." in response.content.decode()
    assert KpiObservation.objects.filter(period_start=dt.date(2026, 12, 7)).count() == 1


def _kpi_file(text: str):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("kpis.csv", text.encode(), content_type="text/csv")


def test_kpi_import_of_a_file_runs_in_the_worker_with_a_progress_bar_then_shows_what_was_imported(
    client, engineer, world
):
    # A file used to be imported inside the request (a 40,000-line file took 112 s); now the worker does it.
    text = _kpi_csv([("csat", "support-v2", dt.date(2026, 12, 7), 4.4, 120)])
    c = _client(client, engineer)
    response = c.post(reverse("evaluation:kpi_import"), {"file": _kpi_file(text)})
    run = KpiImportRun.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("evaluation:kpi_import_run", args=[run.pk])
    page = c.get(response["Location"]).content.decode()
    assert 'id="progress"' in page and "Waiting for a worker" in page and "curation/live.js" in page
    assert not KpiObservation.objects.filter(period_start=dt.date(2026, 12, 7)).exists()
    progress = c.get(reverse("evaluation:kpi_import_run_progress", args=[run.pk])).json()
    assert progress["status"] == "queued" and progress["fraction"] == 0 and progress["finished"] is False

    services.kpi_import_run_execute(run_id=run.pk)  # the worker's part, run here

    assert c.get(reverse("evaluation:kpi_import_run_progress", args=[run.pk])).json()["finished"] is True
    page = c.get(reverse("evaluation:kpi_import_run", args=[run.pk])).content.decode()
    assert "Imported 1 KPI figure." in page and 'id="progress"' not in page
    assert reverse("evaluation:dashboard") in page
    assert KpiObservation.objects.filter(period_start=dt.date(2026, 12, 7)).count() == 1


def test_kpi_file_with_a_bad_line_shows_the_line_report_after_the_worker_and_imports_nothing(client, engineer, world):
    before = KpiObservation.objects.count()
    bad = (
        "kpi,model,period_start,period_end,segment,value,sample_size\n"
        "csat,support-v2,2026-12-07,2026-12-13,,4.4,100\n"
        "csat,nobody,2026-12-07,2026-12-13,,4.4,100\n"
    )
    c = _client(client, engineer)
    response = c.post(reverse("evaluation:kpi_import"), {"file": _kpi_file(bad)})
    services.kpi_import_run_execute(run_id=KpiImportRun.objects.get().pk)
    html = c.get(response["Location"]).content.decode()
    assert "Nothing was imported" in html
    report = re.findall(r'<td class="num">(\d+)</td><td><code>(\w+)</code></td><td>([^<]+)</td>', html)
    assert [(line, field) for line, field, _ in report] == [("3", "model")]
    assert "Unknown model “nobody”" in report[0][2]
    assert KpiObservation.objects.count() == before


# --- evaluation runs ------------------------------------------------------------------------------


def test_run_detail_shows_labelled_scores_and_fairness_gaps_in_words(client, manager, world):
    html = _client(client, manager).get(reverse("evaluation:run_detail", args=[world["adapter_run"].pk])).content
    html = html.decode()
    assert "ROUGE-L" in html and "0.45" in html
    assert "Exact match" in html and "25.0 %" in html
    assert "The gap in ROUGE-L between hospital and pharmacy is 0.14, above the 0.10 threshold." in html
    assert "The gap in BLEU between hospital and pharmacy is 4.50, within the 10.00 threshold." in html
    assert (
        "The gap in Exact match between pharmacy and hospital is 25.0 percentage points, "
        "above the threshold of 10.0 percentage points." in html
    )
    assert "2 gaps above the threshold." in html


def test_managers_see_scores_but_not_the_text_of_rows_or_answers(client, manager, world):
    c = _client(client, manager)
    run_page = c.get(reverse("evaluation:run_detail", args=[world["adapter_run"].pk])).content.decode()
    compare_page = c.get(reverse("evaluation:compare") + "?models=tiny-llama,support-v2").content.decode()
    export = c.get(reverse("evaluation:compare_csv") + "?models=tiny-llama,support-v2").content.decode()
    texts = [e.input for e in world["version"].examples.filter(split="test")]
    for page in (run_page, compare_page, export):
        assert not any(text in page for text in texts)
        assert "alert" not in page and "Answer 9" not in page
    assert "Your role sees the scores" in run_page and "Your role sees the scores" in compare_page
    assert "ROUGE-L" in compare_page and "ROUGE-L" in export


def test_engineers_read_the_answers_with_html_escaped(client, engineer, world):
    c = _client(client, engineer)
    run_page = c.get(reverse("evaluation:run_detail", args=[world["adapter_run"].pk])).content.decode()
    compare_page = c.get(reverse("evaluation:compare") + "?models=tiny-llama,support-v2").content.decode()
    for page in (run_page, compare_page):
        assert "&lt;script&gt;alert(&#x27;boom&#x27;)&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;" in page
        assert "<script>alert" not in page and "<b>bold</b>" not in page
    example = world["version"].examples.filter(split="test").first()
    assert example.input in run_page and example.input in compare_page
    assert "Answer 9" in compare_page  # the base model's answer next to the adapter's


def test_run_detail_of_a_classification_run_shows_the_confusion_matrix(client, engineer, approved_version):
    version = approved_version(rows=9, task_type="classification", validation=0)
    version.examples.filter(row_index__gte=3).update(split="test")
    base = _base("minilm", task_types=["classification"])
    confusion = {
        "labels": ["billing", "login", "records"],
        "matrix": [[2, 0, 0], [1, 1, 0], [0, 0, 1]],
        "other": [0, 0, 1],
    }
    run = _run(base, version, {"accuracy": 4 / 6, "macro_f1": 0.7, "confusion": confusion})
    html = _client(client, engineer).get(reverse("evaluation:run_detail", args=[run.pk])).content.decode()
    assert "Which labels it confuses" in html
    assert '<td class="num diagonal">2</td>' in html
    assert '<td class="num confused">1</td>' in html
    assert "Something else" in html
    assert "66.7 %" in html  # accuracy as a percentage


def test_an_active_run_shows_progress_and_its_json_reports_it(client, manager, world):
    run = EvalRun.objects.create(
        kind=EvalRun.Kind.BASE,
        base_model=world["base"],
        dataset_version=world["version"],
        task="sft",
        status=EvalRun.Status.RUNNING,
        progress=0.5,
        total=4,
    )
    c = _client(client, manager)
    html = c.get(reverse("evaluation:run_detail", args=[run.pk])).content.decode()
    assert "2 of 4 rows answered" in html and "run_detail.js" in html
    data = c.get(reverse("evaluation:run_progress_json", args=[run.pk])).json()
    assert data == {
        "status": "running",
        "status_display": "Generating",
        "progress": 0.5,
        "percent": 50,
        "done": 2,
        "total": 4,
        "is_active": True,
    }


def test_starting_an_evaluation_queues_it(client, engineer, world):
    response = _client(client, engineer).post(
        reverse("evaluation:run_create"),
        {
            "model": "support-v2",
            "dataset_version": world["version"].pk,
            "split": "test",
            "fairness_threshold": "0.05",
        },
    )
    run = EvalRun.objects.order_by("-pk").first()
    assert response.status_code == 302 and response["Location"] == reverse("evaluation:run_detail", args=[run.pk])
    assert (run.status, run.trained_model, run.fairness_threshold) == ("queued", world["adapter"], 0.05)


def test_starting_an_evaluation_on_an_unapproved_version_shows_the_privacy_gate(client, engineer, world):
    raw = VersionFactory(row_count=1, privacy=DatasetVersion.Privacy.RAW)
    ExampleFactory(version=raw, split="test")
    before = EvalRun.objects.count()
    response = _client(client, engineer).post(
        reverse("evaluation:run_create"),
        {"model": "tiny-llama", "dataset_version": raw.pk, "split": "test", "fairness_threshold": "0.1"},
    )
    assert response.status_code == 200
    assert "has not passed privacy review" in response.content.decode()
    assert EvalRun.objects.count() == before


def test_the_evaluation_form_offers_every_kind_of_model_by_name(client, engineer, world):
    html = _client(client, engineer).get(reverse("evaluation:run_create")).content.decode()
    assert '<optgroup label="Trained models">' in html and '<option value="support-v2">' in html
    assert '<optgroup label="Base models (without an adapter)">' in html
    assert world["version"].dataset.name in html


def test_rescoring_adds_metrics_from_the_saved_answers(client, engineer, world):
    run = world["adapter_run"]
    response = _client(client, engineer).post(
        reverse("evaluation:run_rescore", args=[run.pk]), {"metrics": ["rouge1", "chrf"]}
    )
    assert response.status_code == 302
    run.refresh_from_db()
    assert "rouge1" in run.metrics and "chrf" in run.metrics and run.metrics["rougeL"] == 0.45


def test_rescoring_without_a_metric_says_so(client, engineer, world):
    response = _client(client, engineer).post(reverse("evaluation:run_rescore", args=[world["adapter_run"].pk]), {})
    assert response.status_code == 400
    assert "Tick at least one metric." in response.content.decode()


def test_run_list_shows_main_scores_and_filters_by_status(client, manager, world):
    c = _client(client, manager)
    html = c.get(reverse("evaluation:run_list")).content.decode()
    assert f"Evaluation #{world['adapter_run'].pk}" in html and "ROUGE-L <strong>0.45</strong>" in html
    assert "2 gaps above the threshold" in html
    assert "Evaluation #" not in c.get(reverse("evaluation:run_list") + "?status=failed").content.decode()


# --- comparison ----------------------------------------------------------------------------------


def test_comparison_puts_the_best_score_in_bold_and_shows_kpis_with_intervals(client, engineer, world):
    html = _client(client, engineer).get(reverse("evaluation:compare") + "?models=tiny-llama,support-v2").content
    html = html.decode()
    assert '<strong class="best" title="Best of these models">0.45</strong>' in html  # ROUGE-L, higher is better
    assert '<strong class="best" title="Best of these models">21.00</strong>' in html  # BLEU
    assert '<strong class="best" title="Best of these models">31.0 words</strong>' not in html  # length: no best
    assert "Customer satisfaction" in html and "95% interval" in html
    assert "hospital vs pharmacy" in html
    # The same through the form's four lists.
    again = _client(client, engineer).get(
        reverse("evaluation:compare") + "?models=tiny-llama&models=support-v2&models="
    )
    assert again.content.decode().count('class="best"') == html.count('class="best"')


def test_comparison_asks_for_two_to_four_known_models(client, engineer, world):
    c = _client(client, engineer)
    one = c.get(reverse("evaluation:compare") + "?models=support-v2")
    assert one.status_code == 200 and "Choose at least two models" in one.content.decode()
    five = c.get(reverse("evaluation:compare") + "?models=a,b,c,d,e")
    assert five.status_code == 400 and "Choose at most 4 models" in five.content.decode()
    unknown = c.get(reverse("evaluation:compare") + "?models=support-v2,ghost")
    assert unknown.status_code == 400 and "No trained model, base model or endpoint is called “ghost”" in (
        unknown.content.decode()
    )


def test_comparison_csv_has_one_column_per_model_and_neutralised_text(client, engineer, world):
    response = _client(client, engineer).get(reverse("evaluation:compare_csv") + "?models=tiny-llama,support-v2")
    assert response["Content-Type"].startswith("text/csv")
    assert "comparison-tiny-llama-vs-support-v2.csv" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["section", "item", "reference", "group", "tiny-llama", "support-v2"]
    assert ["metric", "ROUGE-L", "", "", "0.3", "0.45"] in rows
    assert any(r[0] == "kpi" and r[1].startswith("Customer satisfaction") and "average" in r[1] for r in rows)
    outputs = [r for r in rows if r[0] == "output"]
    assert len(outputs) == 4 and outputs[0][5] == ESCAPE_ME


# --- promotion -----------------------------------------------------------------------------------


def test_use_case_page_states_the_gate_in_words(client, manager, world):
    _use_case(
        world,
        [
            {"kind": "metric", "name": "rougeL", "rule": "improve", "margin": 0.05},
            {"kind": "kpi", "name": "escalation_rate", "rule": "no_regress", "margin": 0.01},
        ],
    )
    html = _client(client, manager).get(reverse("evaluation:use_case_detail", args=["client-replies"])).content
    html = html.decode()
    assert "ROUGE-L on the evaluation rows must be better by at least 0.05." in html
    assert "Escalation rate in the business results must not get worse by more than 1.0 percentage points." in html
    assert "Promote to production" not in html  # managers read, engineers promote
    assert "Passes the gate" in html


def test_promote_is_refused_with_the_gates_reasons_then_accepted(client, engineer, world):
    use_case = _use_case(world, [{"kind": "metric", "name": "rougeL", "rule": "improve", "margin": 0.2}])
    c = _client(client, engineer)
    url = reverse("evaluation:promote", args=[use_case.slug])

    refused = c.post(url, {"model": world["adapter"].pk, "stage": "production"})
    assert refused.status_code == 400
    html = refused.content.decode()
    assert "Not promoted" in html
    assert "The gate does not pass, so support-v2 cannot be promoted." in html
    assert "Fails: must improve by at least 0.2" in html
    assert '<td class="num">0.45</td>' in html and '<td class="num">0.30</td>' in html  # candidate vs baseline
    assert "+0.15" in html
    assert TrainedModel.objects.get(pk=world["adapter"].pk).stage == TrainedModel.Stage.CANDIDATE
    assert not StageChange.objects.exists()

    services.use_case_save(
        slug=use_case.slug,
        name=use_case.name,
        task="sft",
        dataset=use_case.dataset,
        eval_version=world["version"],
        gate=[{"kind": "metric", "name": "rougeL", "rule": "improve", "margin": 0.1}],
        actor=engineer,
    )
    accepted = c.post(url, {"model": world["adapter"].pk, "stage": "production"}, follow=True)
    html = accepted.content.decode()
    assert "support-v2 is now the production model for Client replies." in html
    assert re.search(r'id="production-model"><strong>support-v2</strong>', html)
    assert TrainedModel.objects.get(pk=world["adapter"].pk).stage == TrainedModel.Stage.PRODUCTION
    change = StageChange.objects.get()
    assert (change.from_stage, change.to_stage, change.actor) == ("candidate", "production", engineer)
    assert "candidate → production" not in html and "Candidate → Production" in html


def test_rollback_puts_back_the_production_model_that_was_replaced(client, engineer, world):
    use_case = _use_case(world, [{"kind": "metric", "name": "rougeL", "rule": "no_regress", "margin": 0.5}])
    newer = _trained("support-v3", world["version"], world["base"])
    _run(newer, world["version"], {"rougeL": 0.5})
    c = _client(client, engineer)
    url = reverse("evaluation:promote", args=[use_case.slug])
    assert c.post(url, {"model": world["adapter"].pk, "stage": "production"}).status_code == 302
    page = c.get(reverse("evaluation:use_case_detail", args=[use_case.slug])).content.decode()
    assert "Roll back to" not in page  # nothing earlier to go back to
    assert c.post(url, {"model": newer.pk, "stage": "production"}).status_code == 302
    page = c.get(reverse("evaluation:use_case_detail", args=[use_case.slug])).content.decode()
    assert "Roll back to support-v2" in page

    response = c.post(reverse("evaluation:rollback", args=[use_case.slug]), follow=True)
    assert "Rolled back: support-v2 is the production model again; support-v3 is a candidate." in (
        response.content.decode()
    )
    use_case.refresh_from_db()
    assert use_case.production == world["adapter"]


def test_use_case_page_lists_retraining_runs_in_words(client, manager, world):
    use_case = _use_case(world, [{"kind": "metric", "name": "rougeL", "rule": "improve"}])
    use_case.retrain_enabled, use_case.retrain_every_hours = True, 168
    use_case.save(update_fields=["retrain_enabled", "retrain_every_hours"])
    RetrainRun.objects.create(
        use_case=use_case,
        dataset_version=world["version"],
        status=RetrainRun.Status.NOT_BETTER,
        message="Did not beat the current model.",
    )
    html = _client(client, manager).get(reverse("evaluation:use_case_detail", args=[use_case.slug])).content
    html = html.decode()
    assert "On: every week" in html
    assert "Did not pass the gate" in html and "Did not beat the current model." in html


def test_use_case_list_shows_production_and_rules(client, manager, world):
    _use_case(world, [{"kind": "kpi", "name": "csat", "rule": "improve", "margin": 0.1}])
    html = _client(client, manager).get(reverse("evaluation:use_case_list")).content.decode()
    assert "Client replies" in html
    assert (
        "Customer satisfaction in the business results must be better by at least 0.10 points (1–5), "
        "and the difference must be statistically significant." in html
    )
