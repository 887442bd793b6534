import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from curation.models import Dataset

pytestmark = pytest.mark.django_db


def run(*args):
    out, err = StringIO(), StringIO()
    call_command("import_dataset", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_import_dataset_prints_one_json_line_last(write_file):
    path = write_file("t.tsv", "Question\tAnswer\tRegion\nWhere is my refund?\tSent today.\teu\nHi\t\teu\n")
    out, err = run(str(path), "--name", "Refunds", "--map", "input=Question,target=Answer,group=Region")
    result = json.loads(out.strip().splitlines()[-1])
    dataset = Dataset.objects.get(name="Refunds")
    assert result == {"dataset_id": dataset.pk, "version_id": dataset.latest_version().pk, "rows": 1, "rejected": 1}
    assert "line 3: “Answer” is empty." in err


def test_import_dataset_fails_loudly_on_bad_input(write_file):
    with pytest.raises(CommandError, match="No file"):
        run("/nonexistent/file.csv", "--name", "x")
    with pytest.raises(CommandError, match="UTF-16"):
        run(str(write_file("u.csv", "q,a\n1,2\n".encode("utf-16"))), "--name", "x")
    with pytest.raises(CommandError, match="no column “nope”"):
        run(str(write_file("t.csv", "q,a\n1,2\n")), "--name", "x", "--map", "input=nope,target=a")
    with pytest.raises(CommandError, match="role=COLUMN"):
        run(str(write_file("t2.csv", "q,a\n1,2\n")), "--name", "x", "--map", "prompt=q")
    with pytest.raises(CommandError, match="No row"):
        run(str(write_file("t3.csv", "q,a\n,\n")), "--name", "x", "--map", "input=q,target=a")
    assert not Dataset.objects.visible().exists()


def test_seed_demo_creates_accounts_and_a_dataset_with_planted_pii():
    out = StringIO()
    call_command("seed_demo", stdout=out)
    call_command("seed_demo", stdout=StringIO())  # safe to run again
    text = out.getvalue()
    assert "curator-demo-2026" in text and "privacy_reviewer" in text
    version = Dataset.objects.get(name="Support tickets (demo)").latest_version()
    assert version.row_count == 300
    inputs = " ".join(version.examples.values_list("input", flat=True))
    assert "MRN-" in inputs and "@" in inputs
    assert set(version.stats["groups"]) == {"clinic", "hospital", "pharmacy"}
    # Ready for engineers and managers on first start: reviewed data, base models, an evaluated adapter, KPIs.
    from evaluation.models import EvalRun, KpiObservation, UseCase
    from training.models import BaseModel, TrainedModel

    approved = Dataset.objects.filter(versions__privacy="approved").distinct()
    assert approved.count() == 2
    assert set(BaseModel.objects.values_list("name", flat=True)) == {"tiny-llama-demo", "all-MiniLM-L6-v2"}
    adapter = TrainedModel.objects.get()
    runs = EvalRun.objects.filter(status="succeeded")
    assert {run.subject_name for run in runs} == {adapter.name, "tiny-llama-demo"}
    assert runs.get(trained_model=adapter).metrics["rougeL"] > runs.get(kind="base").metrics["rougeL"]
    weeks = KpiObservation.objects.filter(model_name=adapter.name).values("period_start").distinct().count()
    assert weeks == 8
    assert UseCase.objects.get(slug="client-replies").gate
    # Annotation: two annotators have started the routing check, with a disagreement waiting for a reviewer.
    from annotation.models import AnnotationProject
    from annotation.selectors import project_agreement

    routing = AnnotationProject.objects.get(name="Routing check (demo)")
    assert routing.tasks.filter(status="agreed").count() == 8
    assert routing.tasks.filter(status="disagreement").count() == 2
    kappa = next(f for f in project_agreement(routing)["fields"] if f["name"] == "category")["summary"]["cohen_kappa"]
    assert 0 < kappa < 1
    assert AnnotationProject.objects.get(name="Reply corrections (demo)").task_count == 30
    assert "annotator2" in text
