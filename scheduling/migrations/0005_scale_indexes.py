"""Indexes found by bench/scale.py (100,000 tasks, 1,000,000 attempts)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("scheduling", "0004_secret_parameters"),
    ]

    operations = [
        # GET /tasks and the admin task list in their default order (priority, created_at, pk):
        # an index walk that stops after one page instead of sorting every task.
        migrations.AddIndex(
            model_name="task",
            index=models.Index(fields=["priority", "created_at", "id"], name="task_list_idx"),
        ),
    ]
