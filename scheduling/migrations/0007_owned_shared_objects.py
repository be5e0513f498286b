"""Retry policies and tags get an owner (empty = shared), and deleting attempts gets its audit action.

Existing rows: a policy or tag used only by tasks of exactly one owner becomes that owner's; any other
(unused, used by several owners, used by a task without owner, or a tag that is some task's handler)
becomes shared, so no task loses access to what it uses.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def assign_owners(apps, schema_editor) -> None:
    Task = apps.get_model("scheduling", "Task")
    RetryPolicy = apps.get_model("scheduling", "RetryPolicy")
    Tag = apps.get_model("scheduling", "Tag")
    by_policy: dict[int, set] = {}
    for policy_id, owner_id in Task.objects.filter(retry_policy__isnull=False).values_list("retry_policy_id", "owner_id"):
        by_policy.setdefault(policy_id, set()).add(owner_id)
    for policy_id, owners in by_policy.items():
        if len(owners) == 1 and None not in owners:
            RetryPolicy.objects.filter(pk=policy_id).update(owner_id=next(iter(owners)))
    handlers = set(Task.objects.values_list("handler", flat=True).distinct())
    by_tag: dict[int, set] = {}
    for tag_id, owner_id in Task.tags.through.objects.values_list("tag_id", "task__owner_id"):
        by_tag.setdefault(tag_id, set()).add(owner_id)
    names = dict(Tag.objects.values_list("pk", "name"))
    for tag_id, owners in by_tag.items():
        if len(owners) == 1 and None not in owners and names.get(tag_id) not in handlers:
            Tag.objects.filter(pk=tag_id).update(owner_id=next(iter(owners)))


class Migration(migrations.Migration):

    dependencies = [
        ('scheduling', '0006_scale_owner_index'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='retrypolicy',
            options={'ordering': ['name'], 'permissions': [('share_retrypolicy', 'Can create, change and delete shared retry policies')], 'verbose_name': 'retry policy', 'verbose_name_plural': 'retry policies'},
        ),
        migrations.AlterModelOptions(
            name='tag',
            options={'ordering': ['name'], 'permissions': [('share_tag', 'Can create, change and delete shared tags')]},
        ),
        migrations.AddField(
            model_name='retrypolicy',
            name='owner',
            field=models.ForeignKey(blank=True, help_text='Empty: shared with every user (set by a user allowed to share retry policies).', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='owner'),
        ),
        migrations.AddField(
            model_name='tag',
            name='owner',
            field=models.ForeignKey(blank=True, help_text='Empty: shared with every user (handler tags, or set by a user allowed to share tags).', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='owner'),
        ),
        migrations.RunPython(assign_owners, migrations.RunPython.noop),
        migrations.AlterField(
            model_name='retrypolicy',
            name='name',
            field=models.CharField(max_length=100, verbose_name='name'),
        ),
        migrations.AlterField(
            model_name='tag',
            name='name',
            field=models.CharField(max_length=64, verbose_name='name'),
        ),
        migrations.AlterField(
            model_name='taskaudit',
            name='action',
            field=models.CharField(choices=[('created', 'Created'), ('changed', 'Changed'), ('run', 'Run now'), ('cancelled', 'Cancelled'), ('retried', 'Retried'), ('paused', 'Paused'), ('resumed', 'Resumed'), ('deleted', 'Deleted'), ('attempts_deleted', 'Attempts deleted')], max_length=16, verbose_name='action'),
        ),
        migrations.AddConstraint(
            model_name='retrypolicy',
            constraint=models.UniqueConstraint(fields=('owner', 'name'), name='retrypolicy_owner_name_uniq'),
        ),
        migrations.AddConstraint(
            model_name='retrypolicy',
            constraint=models.UniqueConstraint(condition=models.Q(('owner__isnull', True)), fields=('name',), name='retrypolicy_shared_name_uniq'),
        ),
        migrations.AddConstraint(
            model_name='tag',
            constraint=models.UniqueConstraint(fields=('owner', 'name'), name='tag_owner_name_uniq'),
        ),
        migrations.AddConstraint(
            model_name='tag',
            constraint=models.UniqueConstraint(condition=models.Q(('owner__isnull', True)), fields=('name',), name='tag_shared_name_uniq'),
        ),
    ]
