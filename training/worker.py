"""A Celery worker advertises what it has (GPUs, memory, queues) and that it is alive.

Started from the worker's ``worker_ready`` signal (connected in training/apps.py): a daemon thread in the
main worker process calls ``worker_heartbeat`` every few seconds; the worker's row goes on shutdown.
"""

from __future__ import annotations

import logging
import os
import platform
import threading

log = logging.getLogger(__name__)
_stop = threading.Event()


def machine_facts() -> dict:
    facts = {
        "gpu_count": 0,
        "gpu_names": [],
        "gpu_memory_bytes": 0,
        "cpu_count": os.cpu_count() or 0,
        "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "software": {"python": platform.python_version()},
    }
    try:
        import torch

        facts["software"]["torch"] = torch.__version__
        if torch.cuda.is_available():
            count = torch.cuda.device_count()
            props = [torch.cuda.get_device_properties(index) for index in range(count)]
            facts.update(
                gpu_count=count,
                gpu_names=[p.name for p in props],
                gpu_memory_bytes=min(p.total_memory for p in props),
            )
    except Exception:  # noqa: BLE001 (a worker without torch still serves the default queue)
        log.warning("Could not read the GPUs of this worker", exc_info=True)
    return facts


def start_heartbeat(*, hostname: str, queues: list[str]) -> None:
    from django.conf import settings
    from django.db import close_old_connections, connection

    from training.services import worker_heartbeat

    facts = machine_facts()

    def beat():
        try:
            while True:
                try:
                    close_old_connections()
                    worker_heartbeat(hostname=hostname, queues=queues, facts=facts)
                except Exception:  # noqa: BLE001 (the database may be briefly away; try again)
                    log.warning("Worker heartbeat failed", exc_info=True)
                if _stop.wait(settings.TRAINING_HEARTBEAT_SECONDS):
                    return
        finally:
            connection.close()

    _stop.clear()
    threading.Thread(target=beat, name="worker-heartbeat", daemon=True).start()


def stop_heartbeat(*, hostname: str) -> None:
    from training.services import worker_gone

    _stop.set()
    try:
        worker_gone(hostname=hostname)
    except Exception:  # noqa: BLE001
        log.warning("Could not remove the worker row", exc_info=True)
