import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "projectsite.settings")
application = get_wsgi_application()
# Import every view now, while the worker boots, instead of inside the first request it serves (Django loads the
# URL configuration lazily): the first person to reach a fresh worker would otherwise wait for those imports.
get_resolver().url_patterns  # noqa: B018 (the access is the import)
