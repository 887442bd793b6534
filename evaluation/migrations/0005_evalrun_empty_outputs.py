from django.db import migrations, models


def count_empty_outputs(apps, schema_editor):
    """Runs scored before the count was kept: count their empty answers once, from the stored predictions."""
    EvalRun = apps.get_model("evaluation", "EvalRun")
    Prediction = apps.get_model("evaluation", "Prediction")
    for run_id in EvalRun.objects.filter(status="succeeded").values_list("pk", flat=True).iterator():
        outputs = Prediction.objects.filter(run_id=run_id).values_list("output", flat=True).iterator()
        empty = sum(1 for output in outputs if not output.strip())
        if empty:
            EvalRun.objects.filter(pk=run_id).update(empty_outputs=empty)


class Migration(migrations.Migration):
    dependencies = [
        ("evaluation", "0004_kpi_import_run"),
    ]

    operations = [
        migrations.AddField(
            model_name="evalrun",
            name="empty_outputs",
            field=models.PositiveIntegerField(
                default=0, help_text="Answers with no text (blank or only spaces), counted when the run is scored."
            ),
        ),
        migrations.RunPython(count_empty_outputs, migrations.RunPython.noop),
    ]
