"""End to end: the seed's two Jira tasks on a real Celery worker against the fake Jira servers."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from django.conf import settings
from openpyxl import load_workbook

from scheduling import services
from scheduling.models import AttemptStatus, Task, TaskResult, TaskStatus
from tests.conftest import attempts, wait_until
from tests.fakes.jira_server import FakeJira
from tests.integrations.jira.conftest import API_TOKEN, CLOUD, EMAIL, ENV1, ENV2, PASSWORD, TOKEN, USER

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[3]


def worker_env(
    tmp_path: Path, env1: FakeJira, env2: FakeJira | None = None, cloud: FakeJira | None = None, **secrets: str
) -> dict[str, str]:
    """Write a config file naming the fake Jiras as environments; secrets go through environment variables."""
    config = yaml.safe_load((ROOT / "tests" / "config.test.yaml").read_text())
    environments = {ENV1: {"url": env1.url, "deployment": "server", "username": USER, "timeout": 5}}
    if env2 is not None:
        environments[ENV2] = {"url": env2.url, "timeout": 5}
    if cloud is not None:
        # deployment auto: the worker reads serverInfo and finds Cloud.
        environments[CLOUD] = {"url": cloud.url, "email": EMAIL, "timeout": 5}
    config["jira"] = {"url": "", "environments": environments}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return {
        "TASKHUB_CONFIG": str(path),
        "TASKHUB_JIRA_ENVIRONMENTS_ENV1_JIRA_COM_PASSWORD": secrets.get("password", PASSWORD),
        "TASKHUB_JIRA_ENVIRONMENTS_ENV2_JIRA_COM_TOKEN": TOKEN,
        "TASKHUB_JIRA_ENVIRONMENTS_ACME_ATLASSIAN_NET_API_TOKEN": secrets.get("api_token", API_TOKEN),
    }


def finished(task: Task) -> TaskResult | None:
    return TaskResult.objects.filter(task=task, status__in=[AttemptStatus.DONE, AttemptStatus.FAILED]).first()


def test_seed_example_tasks_produce_correct_workbooks(start_worker, fake_jira, fake_jira2, tmp_path):
    start_worker(env=worker_env(tmp_path, fake_jira, fake_jira2))
    root_task = services.task_create(
        data={
            "name": "JIRA Extraction - Root Ticket",
            "task_type": "IMMEDIATE",
            "tags": ["JIRA_TASK_EXP"],
            "parameters": {
                "jira_envs": ["env1.jira.com", "env2.jira.com"],
                "key_type": "root_ticket",
                "key_value": "PROJ-123",
                "user": "johndoe",
            },
        }
    )
    project_task = services.task_create(
        data={
            "name": "JIRA Extraction - Project",
            "task_type": "SCHEDULED",
            "cron_expr": "0 0 * * *",
            "tags": ["JIRA_TASK_EXP"],
            "parameters": {
                "jira_envs": ["env1.jira.com"],
                "key_type": "project",
                "key_value": "PROJ",
                "user": "johndoe",
            },
        }
    )
    services.task_run_now(task=project_task)  # its cron fires at midnight; run it now as a person would
    root_result = wait_until(lambda: finished(root_task), timeout=60)
    project_result = wait_until(lambda: finished(project_task), timeout=60)
    assert root_result.status == AttemptStatus.DONE, root_result.error_message
    assert project_result.status == AttemptStatus.DONE, project_result.error_message
    assert Task.objects.get(pk=root_task.pk).status == TaskStatus.DONE

    # Root ticket: a sheet per environment, the tree of PROJ-123 in each.
    assert len(root_result.artifacts) == 1
    path = Path(settings.STORAGE_DIR) / root_result.artifacts[0]
    book = load_workbook(path)
    assert book.sheetnames == ["Summary", ENV1, ENV2]
    keys = sorted(row[0] for row in book[ENV1].iter_rows(min_row=2, values_only=True))
    assert keys == ["OTHER-1", "PROJ-123", "PROJ-124", "PROJ-125", "PROJ-126", "PROJ-127", "PROJ-128", "PROJ-130"]
    assert [row[0] for row in book[ENV2].iter_rows(min_row=2, values_only=True)] == ["PROJ-123", "PROJ-140"]
    assert book[ENV1]["A2"].hyperlink.target == f"{fake_jira.url}/browse/PROJ-123"
    assert root_result.result["total"] == 10 and root_result.result["user"] == "johndoe"
    assert Path(root_result.result["report"]).exists()

    # Project: every issue of PROJ on env1, none from other projects.
    book = load_workbook(Path(settings.STORAGE_DIR) / project_result.artifacts[0])
    assert book.sheetnames == ["Summary", ENV1]
    keys = [row[0] for row in book[ENV1].iter_rows(min_row=2, values_only=True)]
    assert keys == [f"PROJ-{n}" for n in (123, 124, 125, 126, 127, 128, 130, 200)]  # 129 is hidden from the user
    assert project_result.result["environments"][ENV1]["by_status"] == {"To Do": 6, "In Progress": 1, "Done": 1}
    assert project_result.progress == 100


def test_jira_500_is_retried_by_the_task_policy_then_succeeds(start_worker, fake_jira, tmp_path):
    start_worker(env=worker_env(tmp_path, fake_jira))
    fake_jira.fail_next(500, path="/issue/PROJ-123")
    task = services.task_create(
        data={
            "name": "flaky jira",
            "tags": ["JIRA_TASK_EXP"],
            "parameters": {"jira_envs": [ENV1], "key_type": "root_ticket", "key_value": "PROJ-123"},
            "retry_policy": {"max_retries": 2, "retry_delay": 0},
        }
    )
    wait_until(lambda: Task.objects.get(pk=task.pk).status == TaskStatus.DONE, timeout=60)
    assert attempts(task) == [(1, "FAILED"), (2, "DONE")]
    first = TaskResult.objects.get(task=task, attempt=1)
    assert "Jira env1.jira.com read issue PROJ-123 (HTTP 500): Jira server error" in first.error_message


def test_wrong_credentials_fail_at_once_without_retries(start_worker, fake_jira, tmp_path):
    start_worker(env=worker_env(tmp_path, fake_jira, password="not-the-password"))
    task = services.task_create(
        data={
            "name": "bad login",
            "tags": ["JIRA_TASK_EXP"],
            "parameters": {"jira_envs": [ENV1], "key_type": "project", "key_value": "PROJ"},
            "retry_policy": {"max_retries": 3, "retry_delay": 0},
        }
    )
    wait_until(lambda: Task.objects.get(pk=task.pk).status == TaskStatus.FAILED, timeout=60)
    assert attempts(task) == [(1, "FAILED")]
    error = TaskResult.objects.get(task=task).error_message
    assert "Jira env1.jira.com" in error and "(HTTP 401): authentication failed" in error
    assert "not-the-password" not in error


def test_missing_root_ticket_fails_with_a_clear_message(start_worker, fake_jira, tmp_path):
    start_worker(env=worker_env(tmp_path, fake_jira))
    task = services.task_create(
        data={
            "name": "no such issue",
            "tags": ["JIRA_TASK_EXP"],
            "parameters": {"jira_envs": [ENV1], "key_type": "root_ticket", "key_value": "PROJ-999"},
            "retry_policy": {"max_retries": 3, "retry_delay": 0},
        }
    )
    wait_until(lambda: Task.objects.get(pk=task.pk).status == TaskStatus.FAILED, timeout=60)
    assert attempts(task) == [(1, "FAILED")]
    assert "read issue PROJ-999 (HTTP 404): not found, or not visible to the Jira user" in (
        TaskResult.objects.get(task=task).error_message
    )


PEOPLE = {"Assignee", "Reporter", "Assignee ID", "Reporter ID"}


def sheet_rows(path: Path, sheet: str) -> list[tuple]:
    return list(load_workbook(path)[sheet].iter_rows(values_only=True))


def test_seed_examples_on_cloud_and_on_server_give_the_same_workbooks_but_people(
    start_worker, fake_jira, fake_cloud, tmp_path
):
    start_worker(env=worker_env(tmp_path, fake_jira, cloud=fake_cloud))
    root_task = services.task_create(
        data={
            "name": "JIRA Extraction - Root Ticket",
            "task_type": "IMMEDIATE",
            "tags": ["JIRA_TASK_EXP"],
            "parameters": {
                "jira_envs": [ENV1, CLOUD],
                "key_type": "root_ticket",
                "key_value": "PROJ-123",
                "user": "johndoe",
            },
        }
    )
    project_task = services.task_create(
        data={
            "name": "JIRA Extraction - Project",
            "task_type": "SCHEDULED",
            "cron_expr": "0 0 * * *",
            "tags": ["JIRA_TASK_EXP"],
            "parameters": {"jira_envs": [ENV1, CLOUD], "key_type": "project", "key_value": "PROJ", "user": "johndoe"},
        }
    )
    services.task_run_now(task=project_task)
    for task, expected in ((root_task, 8), (project_task, 8)):
        result = wait_until(lambda task=task: finished(task), timeout=60)
        assert result.status == AttemptStatus.DONE, result.error_message
        path = Path(settings.STORAGE_DIR) / result.artifacts[0]
        server, cloud = sheet_rows(path, ENV1), sheet_rows(path, CLOUD)
        header = server[0]
        assert cloud[0] == header and len(server) == len(cloud) == expected + 1
        differs = {
            header[col]
            for s_row, c_row in zip(server[1:], cloud[1:], strict=True)
            for col in range(len(header))
            if s_row[col] != c_row[col]
        }
        # Cell for cell the same, but who people are: Cloud has account ids where Server has user names.
        assert differs == {"Assignee ID", "Reporter ID"}, differs
        assert result.result["environments"][CLOUD]["deployment"] == "cloud"
        assert result.result["environments"][ENV1]["deployment"] == "server"
    # Never a removed endpoint on Cloud.
    assert not [p for _, p, _ in fake_cloud.requests if p.endswith("/search")]
    assert fake_cloud.count("GET", "/serverInfo") <= 2  # once per worker process at most


def test_wrong_cloud_token_fails_once_with_the_keys_to_check(start_worker, fake_jira, fake_cloud, tmp_path):
    start_worker(env=worker_env(tmp_path, fake_jira, cloud=fake_cloud, api_token="ATATT-wrong"))
    task = services.task_create(
        data={
            "name": "bad cloud token",
            "tags": ["JIRA_TASK_EXP"],
            "parameters": {"jira_envs": [CLOUD], "key_type": "project", "key_value": "PROJ"},
            "retry_policy": {"max_retries": 3, "retry_delay": 0},
        }
    )
    wait_until(lambda: Task.objects.get(pk=task.pk).status == TaskStatus.FAILED, timeout=60)
    assert attempts(task) == [(1, "FAILED")]
    error = TaskResult.objects.get(task=task).error_message
    assert f"Jira {CLOUD}" in error and "(HTTP 401): authentication failed" in error
    assert f"jira.environments.{CLOUD}.email and .api_token" in error and "ATATT-wrong" not in error


def test_a_retried_cloud_export_resumes_from_the_checkpoint_of_its_run(start_worker, fake_jira, fake_cloud, tmp_path):
    fake_cloud.generate("BIG", 300)
    start_worker(env=worker_env(tmp_path, fake_jira, cloud=fake_cloud))
    # Pages 1-3 answer, the fourth fails (a 5xx): the retry must ask for pages 4-6 only.
    pages: list[int] = []

    original = fake_cloud.handle

    def handle(method, path, query, body):
        if path.endswith("/search/jql"):
            pages.append(1)
            if len(pages) == 4:
                return 502, {"errorMessages": ["Bad gateway"], "errors": {}}
        return original(method, path, query, body)

    fake_cloud.handle = handle
    task = services.task_create(
        data={
            "name": "big cloud export",
            "tags": ["JIRA_TASK_EXP"],
            "parameters": {"jira_envs": [CLOUD], "key_type": "project", "key_value": "BIG", "page_size": 50},
            "retry_policy": {"max_retries": 2, "retry_delay": 0},
        }
    )
    wait_until(lambda: Task.objects.get(pk=task.pk).status == TaskStatus.DONE, timeout=60)
    assert attempts(task) == [(1, "FAILED"), (2, "DONE")]
    assert len(pages) == 4 + 3  # attempt 2 asked for pages 4, 5 and 6 only
    done = TaskResult.objects.get(task=task, attempt=2)
    assert done.result["environments"][CLOUD]["resumed_issues"] == 150
    keys = [row[0] for row in sheet_rows(Path(settings.STORAGE_DIR) / done.artifacts[0], CLOUD)[1:]]
    assert keys == [f"BIG-{n}" for n in range(1, 301)]
    # The workbook is the record now: the run's checkpoint is gone.
    assert not list((Path(settings.STORAGE_DIR) / "checkpoints" / "jira" / str(task.pk)).rglob("state.json"))
