"""A service's ValidationError in the two shapes the pages, the API and the commands show: one place reads one.

Services raise Django ValidationErrors with sentences meant for people, with field names (``{"name": [...]}``) or
without. Pages put the field messages next to their field, the API keys them by field, a command or a flash
message shows them all on one line.
"""

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError


def error_messages(error: ValidationError) -> dict[str, list[str]]:
    """``{field name or "__all__": [sentences]}``, whether the service named fields or not."""
    if hasattr(error, "error_dict"):
        return error.message_dict
    return {NON_FIELD_ERRORS: error.messages}


def error_text(error: ValidationError) -> str:
    """Every sentence of the error on one line, field messages included, in the order the service gave them."""
    return " ".join(message for messages in error_messages(error).values() for message in messages)
