"""Progress of long work, shared between a worker and the pages that poll it.

Long imports run inside one database transaction (so a failure leaves nothing behind), which
means their progress cannot be written to the same rows until they commit. Progress and cancel
requests therefore travel through the cache (a folder under var/ by default, Redis in production).
"""

from __future__ import annotations

import time

from django.core.cache import cache

_TTL = 24 * 3600


class ProgressReporter:
    """Writes at most once per ``interval`` seconds, and always the final value."""

    def __init__(self, key: str, interval: float = 1.0):
        self.key = key
        self.interval = interval
        self.started = time.monotonic()
        self._last = 0.0

    def __call__(self, fraction: float, *, force: bool = False, **extra) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        fraction = min(max(fraction, 0.0), 1.0)
        elapsed = now - self.started
        eta = elapsed * (1 - fraction) / fraction if fraction > 0.01 else None
        cache.set(self.key, {"fraction": fraction, "eta_seconds": eta, **extra}, _TTL)


def progress_read(key: str) -> dict | None:
    return cache.get(key)


def flag_set(key: str) -> None:
    cache.set(key, True, _TTL)


def flag_is_set(key: str) -> bool:
    return bool(cache.get(key))


def flag_clear(key: str) -> None:
    cache.delete(key)
