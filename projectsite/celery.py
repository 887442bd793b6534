import os

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from projectsite.database import forget_inherited_pools

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "projectsite.settings")

app = Celery("projectsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Prefork children must not close the connections of the pool they inherit: they share the parent's sockets.
os.register_at_fork(after_in_child=forget_inherited_pools)


@worker_ready.connect
def _advertise(sender, **kwargs):
    from training.worker import start_heartbeat

    queues = sorted(queue.name for queue in sender.task_consumer.queues) if sender.task_consumer else []
    start_heartbeat(hostname=sender.hostname, queues=queues)


@worker_shutdown.connect
def _retire(sender, **kwargs):
    from training.worker import stop_heartbeat

    stop_heartbeat(hostname=getattr(sender, "hostname", ""))
