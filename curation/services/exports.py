"""The privacy gate every consumer of rows calls first, and exports of approved versions."""

from __future__ import annotations

from collections.abc import Iterator

from django.core.exceptions import ValidationError

from accounts.services import audit_record
from curation.models import DatasetVersion


class VersionNotApproved(ValidationError):
    """The version has not passed privacy review: its rows may not leave (HTTP 409, never a file)."""


def version_require_approved(version: DatasetVersion) -> DatasetVersion:
    """The privacy gate: every consumer of rows (export, annotation, training, evaluation) calls this first.

    Only a ready version whose personal data was redacted and approved by a privacy reviewer passes.
    """
    if not version.is_ready:
        raise ValidationError("This version is not ready yet.")
    if version.privacy != DatasetVersion.Privacy.APPROVED:
        raise VersionNotApproved(
            f"“{version}” has not passed privacy review, so it may still hold personal data. "
            "Run personal-data detection on it, review the findings and approve; then use the approved version."
        )
    return version


def version_export(*, version: DatasetVersion, actor, fmt: str, via: str = "web") -> tuple[Iterator[str], str, str]:
    """Rows of an approved version as JSONL or CSV: (chunks, file name, content type). Audited."""
    from django.utils.text import slugify

    from curation import selectors

    version_require_approved(version)
    if fmt not in ("jsonl", "csv"):
        raise ValidationError({"format": "Choose jsonl or csv."})
    audit_record(actor=actor, action="version.export", obj=version, after={"format": fmt, "via": via})
    name = f"{slugify(version.dataset.name) or 'dataset'}-v{version.number}"
    if fmt == "csv":
        return selectors.version_export_csv(version), f"{name}.csv", "text/csv; charset=utf-8"
    return selectors.version_export_jsonl(version), f"{name}.jsonl", "application/x-ndjson; charset=utf-8"
