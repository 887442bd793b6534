import os

from celery import Celery

from projectsite.database import forget_inherited_pools

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "projectsite.settings")

app = Celery("projectsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Prefork children must not close the connections of the pool they inherit: they share the parent's sockets.
os.register_at_fork(after_in_child=forget_inherited_pools)

# The worker's heartbeat (worker_ready / worker_shutdown) is connected by training's AppConfig.ready().
