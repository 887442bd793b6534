from django.contrib import admin

from training.models import BaseModel, JobAttempt, TrainedModel, TrainingJob, Worker


@admin.register(BaseModel)
class BaseModelAdmin(admin.ModelAdmin):
    list_display = ["name", "architecture", "parameter_count", "source"]
    search_fields = ["name", "source"]


class JobAttemptInline(admin.TabularInline):
    model = JobAttempt
    extra = 0
    readonly_fields = ["number", "worker", "outcome", "resumed_from_step", "error", "started_at", "finished_at"]


@admin.register(TrainingJob)
class TrainingJobAdmin(admin.ModelAdmin):
    list_display = ["id", "status", "base_model", "dataset_version", "queue", "step", "max_steps", "created_at"]
    list_filter = ["status", "queue"]
    readonly_fields = ["config", "final_metrics", "hardware", "log_tail"]
    inlines = [JobAttemptInline]


@admin.register(TrainedModel)
class TrainedModelAdmin(admin.ModelAdmin):
    list_display = ["name", "stage", "base_model", "dataset_version", "size_bytes", "created_at"]
    list_filter = ["stage"]


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ["hostname", "gpu_count", "gpu_memory_bytes", "memory_bytes", "last_seen"]
