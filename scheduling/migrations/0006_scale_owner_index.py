"""Index found by bench/scale.py: a plain user's GET /tasks (own tasks only) in the default order."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("scheduling", "0005_scale_indexes"),
    ]

    operations = [
        # WHERE owner_id = ? ORDER BY priority, created_at, id: an index walk instead of sorting the user's tasks.
        migrations.AddIndex(
            model_name="task",
            index=models.Index(fields=["owner", "priority", "created_at", "id"], name="task_owner_list_idx"),
        ),
    ]
