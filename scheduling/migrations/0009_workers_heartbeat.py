"""Workers report a heartbeat (Worker rows); an attempt records the worker node that ran it."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("scheduling", "0008_attempt_log"),
    ]

    operations = [
        migrations.AddField(
            model_name="taskresult",
            name="worker_node",
            field=models.CharField(
                blank=True,
                db_default="",
                default="",
                help_text="The Celery worker (node name, as in Workers) whose pool process ran the attempt.",
                max_length=200,
                verbose_name="worker node",
            ),
        ),
        migrations.CreateModel(
            name="Worker",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "name",
                    models.CharField(
                        help_text="Celery node name, e.g. w1@host.", max_length=200, unique=True, verbose_name="name"
                    ),
                ),
                ("host", models.CharField(max_length=200, verbose_name="host")),
                ("pid", models.PositiveIntegerField(verbose_name="main process id")),
                ("pool", models.CharField(help_text="prefork, threads, solo, ...", max_length=32, verbose_name="pool")),
                (
                    "concurrency",
                    models.PositiveIntegerField(
                        help_text="Attempts it runs at once at most.", verbose_name="concurrency"
                    ),
                ),
                (
                    "processes",
                    models.JSONField(
                        blank=True, default=list, help_text="Pool process ids.", verbose_name="pool processes"
                    ),
                ),
                ("queues", models.JSONField(blank=True, default=list, verbose_name="queues")),
                ("heartbeat_interval", models.FloatField(verbose_name="heartbeat interval (s)")),
                ("started_at", models.DateTimeField(verbose_name="started")),
                (
                    "last_seen",
                    models.DateTimeField(help_text="Its latest heartbeat (database clock).", verbose_name="last seen"),
                ),
                (
                    "offline_after",
                    models.DateTimeField(
                        help_text="Two heartbeat intervals after the last one: silent past this, it is offline.",
                        verbose_name="offline after",
                    ),
                ),
                (
                    "stopped_at",
                    models.DateTimeField(
                        blank=True, help_text="Set by a clean shutdown.", null=True, verbose_name="stopped"
                    ),
                ),
            ],
            options={
                "ordering": ["name"],
                "indexes": [models.Index(fields=["offline_after"], name="worker_offline_after_idx")],
            },
        ),
    ]
