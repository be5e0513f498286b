"""Run-scoped dependencies (scheduling/engine/pipelines.py).

The dependency table stays Django's automatic many-to-many (a backup's task rows keep ``dependencies``); the
dependencies whose mode is ``any`` are a second automatic many-to-many, ``any_run_dependencies``. Existing
edges are ``fresh``: a dependent's next run waits for an upstream run that finished after its previous run
started. ``dependency_timeout`` per task; the index answers "a DONE attempt of U finished after T".
"""

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('django_celery_beat', '0019_alter_periodictasks_options'),
        ('scheduling', '0010_owned_model_owner_help_text'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='task',
            name='any_run_dependencies',
            field=models.ManyToManyField(blank=True, help_text="Among the dependencies, those for which any DONE run counts, however old (the former rule); the others need a run that finished after this task's previous run started.", related_name='+', to='scheduling.task', verbose_name='dependencies met by any successful run'),
        ),
        migrations.AddField(
            model_name='task',
            name='dependency_timeout',
            field=models.PositiveIntegerField(blank=True, help_text='A run still waiting for its dependencies this long after it was due fails, naming the upstream. Empty: scheduler.dependency_timeout for SCHEDULED tasks; an IMMEDIATE task waits as long as it takes.', null=True, verbose_name='dependency timeout (s)'),
        ),
        migrations.AlterField(
            model_name='task',
            name='dependencies',
            field=models.ManyToManyField(blank=True, help_text="Tasks that must be DONE before this one starts, each with a run that finished after this task's previous run started (unless listed in any_run_dependencies).", related_name='dependents', to='scheduling.task', verbose_name='dependencies'),
        ),
        migrations.AddIndex(
            model_name='taskresult',
            index=models.Index(fields=['task', 'status', 'finished_at'], name='result_task_done_idx'),
        ),
        migrations.AddConstraint(
            model_name='task',
            constraint=models.CheckConstraint(condition=models.Q(('dependency_timeout__isnull', True), ('dependency_timeout__gt', 0), _connector='OR'), name='task_dependency_timeout_positive'),
        ),
    ]
