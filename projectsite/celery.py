import os

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "projectsite.settings")

app = Celery("projectsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
def _advertise(sender, **kwargs):
    from training.worker import start_heartbeat

    queues = sorted(queue.name for queue in sender.task_consumer.queues) if sender.task_consumer else []
    start_heartbeat(hostname=sender.hostname, queues=queues)


@worker_shutdown.connect
def _retire(sender, **kwargs):
    from training.worker import stop_heartbeat

    stop_heartbeat(hostname=getattr(sender, "hostname", ""))
