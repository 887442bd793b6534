"""Writes for datasets, one sub-domain per module; the public names are here, so callers write
``from curation import services`` and ``services.upload_create(...)``.

- ``uploads``: store a file, map its columns, stage its rows in the worker, import or cancel; ``dataset_import``.
- ``versions``: make a version in one call (``version_create``, ``version_derive``), re-split, filter.
- ``dedupe``: find duplicate groups in the worker and keep the rows chosen.
- ``redaction``: privacy review: detection runs, reviewers' decisions, approval into a redacted version.
- ``exports``: the privacy gate every consumer of rows calls first, and exports.

Every service that changes data writes the audit log in the same transaction. Heavy work (staging an import,
finding duplicates, detecting personal data) is plain Python fed row by row, so memory stays flat.
"""

from curation.services.dedupe import dedupe_run_apply, dedupe_run_execute, dedupe_run_start
from curation.services.exports import VersionNotApproved, version_export, version_require_approved
from curation.services.redaction import (
    FindingConflict,
    engine_for,
    engine_for_dataset,
    field_text,
    finding_add,
    finding_decide,
    findings_bulk_decide,
    pseudonyms_read,
    redaction_config_clean,
    redaction_run_approve,
    redaction_run_execute,
    redaction_run_start,
    redaction_runs_stale,
)
from curation.services.uploads import (
    ImportCancelled,
    dataset_import,
    mapping_clean,
    suggest_mapping,
    upload_cancel,
    upload_commit,
    upload_create,
    upload_progress_key,
    upload_set_mapping,
    upload_stage,
    upload_start_validation,
)
from curation.services.versions import BATCH, version_create, version_derive, version_filter, version_split

__all__ = [
    "BATCH",
    "FindingConflict",
    "ImportCancelled",
    "VersionNotApproved",
    "dataset_import",
    "dedupe_run_apply",
    "dedupe_run_execute",
    "dedupe_run_start",
    "engine_for",
    "engine_for_dataset",
    "field_text",
    "finding_add",
    "finding_decide",
    "findings_bulk_decide",
    "mapping_clean",
    "pseudonyms_read",
    "redaction_config_clean",
    "redaction_run_approve",
    "redaction_run_execute",
    "redaction_run_start",
    "redaction_runs_stale",
    "suggest_mapping",
    "upload_cancel",
    "upload_commit",
    "upload_create",
    "upload_progress_key",
    "upload_set_mapping",
    "upload_stage",
    "upload_start_validation",
    "version_create",
    "version_derive",
    "version_export",
    "version_filter",
    "version_require_approved",
    "version_split",
]
