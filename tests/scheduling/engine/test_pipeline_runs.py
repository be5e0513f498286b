"""Pipeline runs (scheduling/engine/pipelines.py): a run with downstream runs each task once, in dependency order,
waiting for its dependencies DONE in the same pipeline run; a failure fails its dependents in that run only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from scheduling import selectors, services
from scheduling.engine import dispatcher, executor, lifecycle
from scheduling.models import AttemptStatus, PipelineRun, Task, TaskResult, TaskStatus

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)  # far from midnight, DST and month ends


def run_wave(clock) -> list[str]:
    """Dispatch and run every attempt picked, in-process; the names of the tasks run."""
    clock.shift(1)
    wave = dispatcher.dispatch()
    for result in wave:
        executor.run_attempt(result.pk)
    return sorted(r.task.name for r in wave)


@pytest.fixture
def diamond(make_task):
    """A -> B, A -> C, B -> D, C -> D, each DONE once already (a first run outside any pipeline run)."""

    def build(**per_task):
        a = make_task("A", **per_task.get("A", {}))
        b = make_task("B", dependencies=[a.pk], **per_task.get("B", {}))
        c = make_task("C", dependencies=[a.pk], **per_task.get("C", {}))
        d = make_task("D", dependencies=[b.pk, c.pk], **per_task.get("D", {}))
        return a, b, c, d

    return build


def test_a_diamond_runs_each_task_exactly_once_in_dependency_order(diamond):
    with time_machine.travel(NOW, tick=False) as clock:
        a, b, c, d = diamond()
        assert [run_wave(clock) for _ in range(3)] == [["A"], ["B", "C"], ["D"]]
        result = services.task_run_now(task=Task.objects.get(pk=a.pk), downstream="all")
        outcome = services.downstream_of(result)
        assert outcome is not None and outcome.pipeline_run is not None
        run = PipelineRun.objects.get(pk=outcome.pipeline_run)
        assert run.root_id == a.pk and run.which == "all" and run.origin == "run"
        assert sorted(outcome.started) == ["B", "C", "D"]
        # D sees B and C DONE (their first runs) but waits for their runs in this pipeline run.
        waves = [run_wave(clock) for _ in range(4)]
        assert waves == [["A"], ["B", "C"], ["D"], []]
        in_run = TaskResult.objects.filter(pipeline_run=run)
        assert sorted(in_run.values_list("task__name", flat=True)) == ["A", "B", "C", "D"]
        assert set(in_run.values_list("status", flat=True)) == {AttemptStatus.DONE}
        d_run = in_run.get(task=d)
        for upstream in (b, c):
            assert in_run.get(task=upstream).finished_at <= d_run.started_at
        view = selectors.pipeline_run_view(None, run)
        assert view["status"] == "DONE" and view["hidden_tasks"] == 0
        assert [t["name"] for t in view["tasks"]][0] == "A" and len(view["tasks"]) == 4


def test_in_run_dependencies_replace_the_status_rule_the_others_keep_it(diamond, make_task):
    with time_machine.travel(NOW, tick=False) as clock:
        a, b, c, d = diamond()
        outside = make_task("outside")
        services.task_update(task=d, data={"dependencies": [b.pk, c.pk, outside.pk]})
        while run_wave(clock):
            pass
        assert Task.objects.get(pk=d.pk).status == TaskStatus.DONE
        # B is RUNNING again outside the pipeline run: D's pipeline-run attempt does not care (B is in the run).
        services.task_run_now(task=Task.objects.get(pk=outside.pk))
        result = services.task_run_now(task=Task.objects.get(pk=a.pk), downstream="all")
        run_id = services.downstream_of(result).pipeline_run
        assert run_wave(clock) == ["A", "outside"]
        assert run_wave(clock) == ["B", "C"]
        # outside's run finished, D's status rule on it passes; B and C DONE in the run.
        assert run_wave(clock) == ["D"]
        assert TaskResult.objects.get(task=d, pipeline_run_id=run_id).status == AttemptStatus.DONE


def test_a_failure_fails_its_dependents_in_the_run_and_the_other_branch_finishes(diamond):
    flaky = {"tags": ["TEST_FLAKY"], "parameters": {"failures": 5, "permanent": True}}
    with time_machine.travel(NOW, tick=False) as clock:
        a, b, c, d = diamond()
        while run_wave(clock):
            pass
        services.task_update(task=b, data=flaky)
        result = services.task_run_now(task=Task.objects.get(pk=a.pk), downstream="all")
        run = PipelineRun.objects.get(pk=services.downstream_of(result).pipeline_run)
        assert run_wave(clock) == ["A"]
        assert run_wave(clock) == ["B", "C"]
        assert run_wave(clock) == []
        in_run = {r.task.name: r for r in TaskResult.objects.filter(pipeline_run=run).select_related("task")}
        assert in_run["B"].status == AttemptStatus.FAILED
        assert in_run["C"].status == AttemptStatus.DONE
        assert in_run["D"].status == AttemptStatus.FAILED
        assert in_run["D"].error_message == "dependency 'B' failed"
        assert Task.objects.get(pk=d.pk).status == TaskStatus.FAILED
        assert in_run["D"].started_at is None  # never ran
        assert selectors.pipeline_run_view(None, run)["status"] == "FAILED"


def test_a_failure_in_one_pipeline_run_leaves_the_other_runs_alone(make_task):
    """Two pipeline runs of U -> D waiting at once (as a backfill makes): U failing in the first fails D there only."""
    with time_machine.travel(NOW, tick=False) as clock:
        up = make_task("U", task_type="SCHEDULED", cron_expr="0 3 * * *")
        down = make_task("D", task_type="SCHEDULED", cron_expr="0 4 * * *", dependencies=[up.pk])
        first = PipelineRun.objects.create(root=up, which="all")
        second = PipelineRun.objects.create(root=up, which="all")
        from scheduling.engine import attempts

        for run in (first, second):
            for task in (up, down):
                attempts.build(task, now=NOW, pipeline_run_id=run.pk).save()
        clock.shift(1)
        wave = dispatcher.dispatch()
        # Both U runs start (max_instances 5); neither D (their U is not DONE in their run).
        assert sorted((r.task.name, r.pipeline_run_id) for r in wave) == [("U", first.pk), ("U", second.pk)]
        by_run = {r.pipeline_run_id: r for r in wave}
        executor.complete(executor.claim(by_run[first.pk].pk), executor.Outcome(AttemptStatus.FAILED, error="boom"))
        assert TaskResult.objects.get(task=down, pipeline_run=first).status == AttemptStatus.FAILED
        assert TaskResult.objects.get(task=down, pipeline_run=second).status == AttemptStatus.PENDING
        executor.complete(executor.claim(by_run[second.pk].pk), executor.Outcome(AttemptStatus.DONE))
        assert run_wave(clock) == ["D"]
        assert TaskResult.objects.get(task=down, pipeline_run=second).status == AttemptStatus.DONE
        assert selectors.pipeline_run_view(None, first)["status"] == "FAILED"
        assert selectors.pipeline_run_view(None, second)["status"] == "DONE"


def test_a_retry_in_a_pipeline_run_stays_in_it(diamond):
    retrying = {
        "tags": ["TEST_FLAKY"],
        "parameters": {"failures": 1},
        "retry_policy": {"max_retries": 2, "retry_delay": 0},
    }
    with time_machine.travel(NOW, tick=False) as clock:
        a, b, c, d = diamond(B=retrying)
        for _ in range(8):  # the first runs, outside any pipeline run; B fails once and is retried
            clock.shift(5)
            run_wave(clock)
        result = services.task_run_now(task=Task.objects.get(pk=a.pk), downstream="all")
        run_id = services.downstream_of(result).pipeline_run
        for _ in range(8):
            clock.shift(5)
            run_wave(clock)
        b_attempts = TaskResult.objects.filter(task=b, pipeline_run_id=run_id).order_by("attempt")
        assert [(r.attempt, r.status) for r in b_attempts] == [(1, AttemptStatus.FAILED), (2, AttemptStatus.DONE)]
        assert TaskResult.objects.get(task=d, pipeline_run_id=run_id).status == AttemptStatus.DONE
        assert selectors.pipeline_run_view(None, PipelineRun.objects.get(pk=run_id))["status"] == "DONE"


def test_dependency_timeout_counts_from_creation_for_a_pipeline_run(make_task, scheduler_conf):
    """A backfilled attempt is due long ago (its fire): its dependency timeout runs from when it was created."""
    scheduler_conf(dependency_timeout=3600)
    from scheduling.engine import attempts, pipelines

    with time_machine.travel(NOW, tick=False):
        up = make_task("U", task_type="SCHEDULED", cron_expr="0 3 * * *")
        down = make_task("D", task_type="SCHEDULED", cron_expr="0 4 * * *", dependencies=[up.pk])
        run = PipelineRun.objects.create(root=up, which="all")
        long_ago = NOW - timedelta(days=20)
        attempts.build(up, now=NOW, available_at=long_ago, fire_time=long_ago, pipeline_run_id=run.pk).save()
        attempts.build(down, now=NOW, available_at=long_ago, pipeline_run_id=run.pk).save()
        lifecycle.refresh_task(up.pk)
        assert pipelines.fail_overdue(NOW + timedelta(minutes=30)) == 0
        assert TaskResult.objects.get(task=down).status == AttemptStatus.PENDING
