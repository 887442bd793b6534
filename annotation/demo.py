"""Demo annotation projects: a routing check that two annotators have started (with a disagreement for the
reviewer), and an empty reply-correction project. Built through the services, as people would."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import F

from annotation import services
from annotation.models import AnnotationProject, Assignment
from curation.models import DatasetVersion

ROUTING_PROJECT = "Routing check (demo)"
REPLIES_PROJECT = "Reply corrections (demo)"
# Examples (by position) where the second demo annotator picks another team than the first.
ROUTING_DISAGREEMENTS = (2, 7)


def _approved(dataset_name: str) -> DatasetVersion:
    return DatasetVersion.objects.approved().filter(dataset__name=dataset_name).order_by("-number").first()


def routing_schema(labels: list[str]) -> dict:
    return {
        "instructions": (
            "Read the customer's message and choose the team that should answer it. Rate how urgent it is for the "
            "clinic: 1 = can wait a week, 5 = patients are affected now. Press the key shown on a button to choose "
            "it; Enter sends your answer."
        ),
        "fields": [
            {"name": "category", "kind": "choice", "title": "Team", "options": labels, "writes": "label"},
            {
                "name": "urgency",
                "kind": "rating",
                "title": "Urgency",
                "scale": 5,
                "required": False,
                "rubric": {"1": "Can wait a week", "3": "Today", "5": "Patients are affected now"},
            },
        ],
    }


REPLIES_SCHEMA = {
    "instructions": (
        "Correct the reply so it is what you would send: warm, precise, no promises we cannot keep, and never a "
        "patient's personal details. Then rate the original reply."
    ),
    "fields": [
        {"name": "reply", "kind": "text", "title": "Reply", "writes": "target"},
        {
            "name": "quality",
            "kind": "rating",
            "title": "Quality of the original reply",
            "scale": 5,
            "required": False,
            "rubric": {"1": "Wrong or harmful", "3": "Usable after edits", "5": "Could be sent as it is"},
        },
    ],
}


def demo_projects_ensure(
    *, routing_dataset: str, replies_dataset: str, curator, annotators: list, answered: int = 10
) -> list[AnnotationProject]:
    """Create the demo projects once; the first ``answered`` routing examples get answers from both annotators."""
    made = []
    routing = _approved(routing_dataset)
    if routing is not None and not AnnotationProject.objects.filter(name=ROUTING_PROJECT).exists():
        labels = sorted(label for label in routing.stats.get("labels", {}) if label)
        services.label_schema_save(dataset=routing.dataset, schema=routing_schema(labels), actor=curator)
        project = services.annotation_project_create(
            name=ROUTING_PROJECT, version=routing, actor=curator, annotations_per_example=2, limit=40
        )
        for who, annotator in enumerate(annotators[:2]):
            for _ in range(answered):
                assignment = services.assignment_next(project=project, annotator=annotator)
                truth = assignment.task.example.label
                if who == 1 and assignment.task.position in ROUTING_DISAGREEMENTS:
                    truth = next(label for label in labels if label != truth)
                urgency = 2 + assignment.task.position % 3 + who * (assignment.task.position % 2)  # a point apart
                spent = 6 + assignment.task.position % 5 + 3 * who
                # The service believes the page's seconds only up to the time since the reservation began (a
                # few milliseconds here): as if reserved that long ago, or every demo answer would take 0 s.
                Assignment.objects.filter(pk=assignment.pk).update(
                    reserved_at=F("reserved_at") - timedelta(seconds=spent)
                )
                services.annotation_submit(
                    assignment=assignment,
                    annotator=annotator,
                    answer={"category": truth, "urgency": urgency},
                    active_seconds=spent,
                )
        made.append(project)
    replies = _approved(replies_dataset)
    if replies is not None and not AnnotationProject.objects.filter(name=REPLIES_PROJECT).exists():
        services.label_schema_save(dataset=replies.dataset, schema=REPLIES_SCHEMA, actor=curator)
        made.append(
            services.annotation_project_create(
                name=REPLIES_PROJECT, version=replies, actor=curator, annotations_per_example=2, limit=30
            )
        )
    return made
