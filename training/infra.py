"""Where training keeps its files and which worker queues exist: small reads both selectors and services need.

They live here rather than in services so that selectors do not import the services (which import selectors).
"""

from __future__ import annotations

from django.conf import settings
from django.core.files.storage import storages


def artifact_storage():
    return storages["artifacts"]


def training_queues() -> list[str]:
    """The worker classes: one Celery queue each (setting TRAINING_QUEUES)."""
    return list(settings.TRAINING_QUEUES)
