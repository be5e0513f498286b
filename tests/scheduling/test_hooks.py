"""scheduling.hooks: the apps above scheduling plug in there; reporting's three contributions, in place and in order."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from reporting import channels, metrics, schedule
from scheduling import hooks
from scheduling.engine.beat import PURGE_TASK_NAME, SWEEP_TASK_NAME, install_periodic_tasks
from scheduling.metrics import render


def test_reporting_contributes_from_its_app_config():
    assert hooks.periodic_tasks.names() == ["reporting"]
    assert list(hooks.periodic_tasks) == [schedule.install]
    assert list(hooks.metrics) == [metrics.collect]
    assert list(hooks.config_summary) == [channels.summary]


def test_adding_under_a_taken_name_replaces_it():
    hook: hooks.Hook = hooks.Hook("test")
    hook.add("a", len)
    hook.add("b", str)
    hook.add("a", repr)  # a second ready() registers nothing twice

    assert (hook.names(), list(hook)) == (["a", "b"], [repr, str])
    hook.remove("a")
    assert list(hook) == [str]


@pytest.mark.django_db
def test_beat_installs_sweep_then_reporting_then_purge():
    install_periodic_tasks()

    names = list(
        PeriodicTask.objects.filter(name__startswith="taskhub: ").order_by("pk").values_list("name", flat=True)
    )
    assert names == [SWEEP_TASK_NAME, schedule.REPORT_TASK_NAME, PURGE_TASK_NAME]


@pytest.mark.django_db
def test_metrics_show_reporting_between_fires_and_workers():
    text = render().decode()

    order = [
        text.index("# TYPE taskhub_fires_skipped_last_hour "),
        text.index("# TYPE taskhub_reports_last_hour "),
        text.index("# TYPE taskhub_report_channel_failures "),
        text.index("# TYPE taskhub_workers_online "),
    ]
    assert order == sorted(order)


def test_check_config_ends_with_the_reporting_line():
    out = io.StringIO()
    call_command("check_config", stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[-2].startswith("  jira environments: ")
    assert lines[-1] == f"  {channels.summary()}"
