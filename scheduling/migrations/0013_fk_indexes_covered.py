"""Drop the foreign keys' own indexes where a composite index already leads with the column.

Task.owner: task_owner_idx and task_owner_list_idx; TaskResult.task: result_task_idx and
result_task_done_idx. Each is one index less to write on every attempt's insert and status change and
on every task a beat tick fires (measured: bench/cron.py, 1,000 due of 10,000).
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("scheduling", "0012_runs_pipeline_runs"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="task",
            name="owner",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="tasks",
                to=settings.AUTH_USER_MODEL,
                verbose_name="owner",
            ),
        ),
        migrations.AlterField(
            model_name="taskresult",
            name="task",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="results",
                to="scheduling.task",
                verbose_name="task",
            ),
        ),
    ]
