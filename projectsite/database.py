"""The PostgreSQL connection pool (see settings.DATABASES): a 503 when it is exhausted, and forked processes.

Each process has its own pool of at most ``DATABASE_POOL_MAX`` connections, opened on first use.
"""

from __future__ import annotations

import logging
import sys

from django.http import HttpResponse, JsonResponse

log = logging.getLogger(__name__)

BUSY_MESSAGE = "The site is busy right now. Please try again in a minute."


def _pool_timed_out(exc: BaseException | None) -> bool:
    """Whether ``exc`` is, or was caused by, the pool finding no free connection in time."""
    try:
        from psycopg_pool import PoolTimeout, TooManyRequests
    except ImportError:  # SQLite installs without the pool
        return False
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, PoolTimeout | TooManyRequests):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


class DatabaseBusyMiddleware:
    """Every pooled connection stayed busy for DATABASE_POOL_TIMEOUT seconds: answer 503 and a plain sentence.

    Without this the request would end in a 500 page (or a traceback under DEBUG) that says nothing useful to
    the person waiting; a 503 with Retry-After tells people and clients to come back.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not _pool_timed_out(exception):
            return None
        log.warning("No free database connection for %s %s: answered 503", request.method, request.path)
        if request.path.startswith("/api/"):
            response = JsonResponse({"error": BUSY_MESSAGE}, status=503)
        else:
            response = HttpResponse(BUSY_MESSAGE, status=503, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = "10"
        return response


def forget_inherited_pools() -> None:
    """In a forked child (Celery's prefork workers), drop the parent's pools without closing them.

    Their connections share sockets with the parent: closing them here would end the parent's sessions. The
    child opens its own pool on first use; psycopg never closes a connection from a process that did not open
    it when the object is garbage-collected.
    """
    backend = sys.modules.get("django.db.backends.postgresql.base")
    if backend is not None:
        backend.DatabaseWrapper._connection_pools.clear()
