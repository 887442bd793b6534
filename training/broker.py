"""Which task messages the broker still holds for a queue, so the reaper can tell a lost message from a waiting one.

Redis (production) and kombu's filesystem transport (the embedded default) are read; for any other broker
``task_ids_held`` returns None and the reaper trusts the broker.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from django.conf import settings

log = logging.getLogger(__name__)


def _task_id(raw) -> str | None:
    try:
        message = json.loads(raw)
    except (TypeError, ValueError):
        return None
    if isinstance(message, list):  # the unacked hash stores [message, exchange, routing_key]
        message = message[0] if message else {}
    headers = message.get("headers") or {}
    return headers.get("id") or (message.get("properties") or {}).get("correlation_id")


def task_ids_held(queue: str) -> set[str] | None:
    url = settings.CELERY_BROKER_URL
    if url.startswith("filesystem://"):
        return _filesystem_ids(queue)
    if url.startswith(("redis://", "rediss://")):
        return _redis_ids(queue)
    return None


def _filesystem_ids(queue: str) -> set[str]:
    folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
    ids = set()
    for path in folder.glob(f"*.{queue}.msg"):
        try:
            task_id = _task_id(path.read_bytes())
        except OSError:  # taken by a worker while we looked
            continue
        if task_id:
            ids.add(task_id)
    return ids


def _redis_ids(queue: str) -> set[str] | None:
    from projectsite.celery import app

    try:
        with app.connection_for_read() as conn:
            channel = conn.default_channel
            client = channel.client
            keys = [queue, *(channel._q_for_pri(queue, pri) for pri in channel.priority_steps)]
            ids = set()
            for key in dict.fromkeys(keys):
                for raw in client.lrange(key, 0, -1):
                    task_id = _task_id(raw)
                    if task_id:
                        ids.add(task_id)
            for raw in client.hvals(channel.unacked_key):
                task_id = _task_id(raw)
                if task_id:
                    ids.add(task_id)
            return ids
    except Exception:  # noqa: BLE001 (a broker we cannot read is a broker we trust)
        log.warning("Could not read the broker's queue %s", queue, exc_info=True)
        return None
