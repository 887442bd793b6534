"""Logging plumbing: a refused request is one line, not a traceback."""

import logging


class ForbiddenOneLine(logging.Filter):
    """Django logs every PermissionDenied with its traceback; a refusal is ordinary, so keep the line, drop the
    traceback, and say who was refused."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", None) == 403 and record.exc_info:
            record.exc_info = None
            record.exc_text = None
            user = getattr(getattr(record, "request", None), "user", None)
            if user is not None and user.is_authenticated:
                record.msg = f"{record.msg} (user {user.get_username()})"
        return True
