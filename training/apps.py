from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"

    def ready(self):
        # A Celery worker advertises itself (queues, GPUs) while it runs; connected here so that the Celery
        # configuration (projectsite/celery.py) does not import training. Web processes never send these signals.
        from celery.signals import worker_ready, worker_shutdown

        worker_ready.connect(_advertise, dispatch_uid="training.worker.advertise")
        worker_shutdown.connect(_retire, dispatch_uid="training.worker.retire")


def _advertise(sender, **kwargs):
    from training.worker import start_heartbeat

    queues = sorted(queue.name for queue in sender.task_consumer.queues) if sender.task_consumer else []
    start_heartbeat(hostname=sender.hostname, queues=queues)


def _retire(sender, **kwargs):
    from training.worker import stop_heartbeat

    stop_heartbeat(hostname=getattr(sender, "hostname", ""))
