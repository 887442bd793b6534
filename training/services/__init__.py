"""Writes for training, one sub-domain per module: base models, configs (presets, overrides, estimate), jobs (create,
claim, run with the job reporter, cancel, retry), adapters (the registry, try, merge) and workers (heartbeat, reaper).

The public names stay importable from ``training.services``; callers need not know which module holds one.
"""

from training.infra import artifact_storage, training_queues
from training.services.adapters import (
    TRY_MAX_NEW_TOKENS,
    TRY_MAX_PARAMETERS,
    TRY_MAX_PROMPT_CHARS,
    TRY_MAX_SECONDS,
    TryAnswer,
    adapter_download,
    model_card_markdown,
    trained_model_download_record,
    trained_model_merge_execute,
    trained_model_merge_start,
    trained_model_stage_set,
    trained_model_try,
)
from training.services.base_models import (
    BASE_MODEL_UNREADABLE,
    base_model_ensure,
    base_model_register,
    demo_base_models_ensure,
)
from training.services.configs import (
    SETTABLE_FIELDS,
    training_config_build,
    training_estimate,
    training_overrides_parse,
)
from training.services.jobs import (
    LOG_TAIL_LINES,
    PROGRESS_INTERVAL_SECONDS,
    base_model_task_problem,
    training_job_cancel,
    training_job_check,
    training_job_claim,
    training_job_create,
    training_job_execute,
    training_job_retry,
    training_processes,
)
from training.services.workers import training_jobs_reap, worker_gone, worker_heartbeat

__all__ = [
    "BASE_MODEL_UNREADABLE",
    "LOG_TAIL_LINES",
    "PROGRESS_INTERVAL_SECONDS",
    "SETTABLE_FIELDS",
    "TRY_MAX_NEW_TOKENS",
    "TRY_MAX_PARAMETERS",
    "TRY_MAX_PROMPT_CHARS",
    "TRY_MAX_SECONDS",
    "TryAnswer",
    "adapter_download",
    "artifact_storage",
    "base_model_ensure",
    "base_model_register",
    "base_model_task_problem",
    "demo_base_models_ensure",
    "model_card_markdown",
    "trained_model_download_record",
    "trained_model_merge_execute",
    "trained_model_merge_start",
    "trained_model_stage_set",
    "trained_model_try",
    "training_config_build",
    "training_estimate",
    "training_job_cancel",
    "training_job_check",
    "training_job_claim",
    "training_job_create",
    "training_job_execute",
    "training_job_retry",
    "training_jobs_reap",
    "training_overrides_parse",
    "training_processes",
    "training_queues",
    "worker_gone",
    "worker_heartbeat",
]
