"""The demo annotation projects (annotation.demo), built through the services as `make run` builds them."""

from __future__ import annotations

import pytest

from annotation.demo import ROUTING_PROJECT, demo_projects_ensure
from annotation.models import Annotation, AnnotationProject
from annotation.selectors import agreement_compute
from curation.models import DatasetVersion
from tests.factories import DatasetFactory, ExampleFactory, VersionFactory


@pytest.mark.django_db
def test_the_demo_answers_record_the_time_spent_on_each_example(make_user):
    dataset = DatasetFactory(name="Demo tickets", task_type="classification")
    version = VersionFactory(
        dataset=dataset, privacy=DatasetVersion.Privacy.APPROVED, stats={"labels": {"billing": 6, "login": 6}}
    )
    for i in range(12):
        ExampleFactory(version=version, row_index=i, input=f"Ticket {i}", label=("billing", "login")[i % 2])
    annotators = [make_user("annotator", username="ann1"), make_user("annotator", username="ann2")]
    demo_projects_ensure(
        routing_dataset="Demo tickets", replies_dataset="None", curator=make_user("curator"), annotators=annotators
    )
    project = AnnotationProject.objects.get(name=ROUTING_PROJECT)
    seconds = list(Annotation.objects.filter(task__project=project).values_list("seconds", flat=True))
    assert len(seconds) == 20 and min(seconds) >= 6  # the agreement page showed "0 s" for everyone
    per_annotator = {row["name"]: row["median_seconds"] for row in agreement_compute(project)["annotators"]}
    assert set(per_annotator) == {"ann1", "ann2"} and all(value >= 6 for value in per_annotator.values())
