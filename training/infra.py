"""Where training keeps its files (and how it copies them in and out) and which worker queues exist: small
helpers both selectors and services need.

They live here rather than in services so that selectors do not import the services (which import selectors).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from django.conf import settings
from django.core.files.storage import storages


def artifact_storage():
    return storages["artifacts"]


def training_queues() -> list[str]:
    """The worker classes: one Celery queue each (setting TRAINING_QUEUES)."""
    return list(settings.TRAINING_QUEUES)


def storage_download(storage, prefix: str, dest: Path) -> None:
    folders, files = storage.listdir(prefix)
    dest.mkdir(parents=True, exist_ok=True)
    for name in files:
        with storage.open(f"{prefix}/{name}", "rb") as src, (dest / name).open("wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    for folder in folders:
        storage_download(storage, f"{prefix}/{folder}", dest / folder)


def storage_write_text(storage, name: str, text: str) -> None:
    from django.core.files.base import ContentFile

    if storage.exists(name):
        storage.delete(name)
    storage.save(name, ContentFile(text.encode()))


def artifacts_delete(prefix: str) -> None:
    storage = artifact_storage()
    try:
        folders, files = storage.listdir(prefix)
    except FileNotFoundError:
        return
    for name in files:
        storage.delete(f"{prefix}/{name}")
    for folder in folders:
        artifacts_delete(f"{prefix}/{folder}")
    location = getattr(storage, "location", None)
    if location:  # a local folder leaves empty directories behind
        shutil.rmtree(Path(location) / prefix, ignore_errors=True)
