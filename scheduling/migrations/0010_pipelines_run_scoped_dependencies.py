"""Run-scoped dependencies: the dependency edge gets a mode, attempts record when their run was admitted.

The automatic many-to-many table (scheduling_task_dependencies: id, from_task_id, to_task_id) becomes the
TaskDependency model without moving a row (state only), then gains ``mode``. Existing edges take the new
default, ``fresh`` (what the issue asks for: a daily report no longer starts on yesterday's export); an
owner who wants the former rule sets ``any`` on the edge. ``run_started_at`` is filled for finished and
in-flight attempts from their own start (or queue) time, so the first run after the upgrade does not
consume an upstream run that an earlier run already used.
"""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models.functions import Coalesce


def fill_run_started_at(apps, schema_editor):
    TaskResult = apps.get_model("scheduling", "TaskResult")
    TaskResult.objects.filter(status__in=["QUEUED", "RUNNING", "DONE"]).update(
        run_started_at=Coalesce("started_at", "queued_at")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("scheduling", "0009_workers_heartbeat"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="TaskDependency",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        (
                            "from_task",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="+",
                                to="scheduling.task",
                                verbose_name="task",
                            ),
                        ),
                        (
                            "to_task",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="+",
                                to="scheduling.task",
                                verbose_name="depends on",
                            ),
                        ),
                    ],
                    options={
                        "verbose_name": "dependency",
                        "verbose_name_plural": "dependencies",
                        "db_table": "scheduling_task_dependencies",
                        "unique_together": {("from_task", "to_task")},
                    },
                ),
                migrations.AlterField(
                    model_name="task",
                    name="dependencies",
                    field=models.ManyToManyField(
                        blank=True,
                        help_text="Tasks that must be DONE before this one starts.",
                        related_name="dependents",
                        through="scheduling.TaskDependency",
                        through_fields=("from_task", "to_task"),
                        to="scheduling.task",
                        verbose_name="dependencies",
                    ),
                ),
            ],
            database_operations=[],
        ),
        migrations.AddField(
            model_name="taskdependency",
            name="mode",
            field=models.CharField(
                choices=[
                    ("fresh", "A run that finished after this task's previous run started"),
                    ("any", "Any successful run (the dependency's latest status is DONE)"),
                ],
                db_default="fresh",
                default="fresh",
                help_text="fresh: a run of the dependency that finished after this task's previous run started "
                "(each upstream run is consumed once); any: the dependency's latest run is DONE, whenever it ran.",
                max_length=8,
                verbose_name="counts when",
            ),
        ),
        migrations.AddField(
            model_name="taskresult",
            name="run_started_at",
            field=models.DateTimeField(
                blank=True,
                help_text="When the run this attempt belongs to was admitted (queued, then started): a dependency's "
                "run is fresh for the task's next run only if it finished after this.",
                null=True,
                verbose_name="run started",
            ),
        ),
        migrations.RunPython(fill_run_started_at, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="taskresult",
            index=models.Index(fields=["task", "run_started_at"], name="result_run_start_idx"),
        ),
        migrations.AddIndex(
            model_name="taskresult",
            index=models.Index(fields=["task", "status", "finished_at"], name="result_task_done_idx"),
        ),
    ]
