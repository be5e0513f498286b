"""Settings for the test suite: an isolated storage folder, config and test-only handlers.

Environment defaults are set before taskhub.settings loads, and are inherited by
the worker and beat processes the end-to-end tests start, so they all share one
storage folder, one database and one broker.
"""

import os
import tempfile
from pathlib import Path

_storage = os.environ.setdefault("TASKHUB_TEST_STORAGE", tempfile.mkdtemp(prefix="taskhub-test-"))

# Parallel runs (pytest-xdist, as `make test` runs): each worker process gwN inherits the controller's
# environment, so on its first import it moves into a folder of its own (storage, log, SQLite file, the
# filesystem broker's queue under storage) and takes its own Redis database (the configured number
# minus N), so one worker's broker flush or queue never reaches another's Celery processes. The
# processes a worker starts inherit the result (TASKHUB_TEST_WORKER says it is done). A PostgreSQL
# test database gets its _gwN suffix from pytest-django.
_xdist_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if _xdist_worker and os.environ.get("TASKHUB_TEST_WORKER") != _xdist_worker:
    _shared, _storage = _storage, str(Path(_storage) / _xdist_worker)
    Path(_storage).mkdir(exist_ok=True)
    os.environ["TASKHUB_TEST_STORAGE"] = _storage
    os.environ["TASKHUB_TEST_WORKER"] = _xdist_worker
    _derived = ("TASKHUB_STORAGE_PATH", "TASKHUB_STORAGE_REPORTS_PATH", "TASKHUB_LOG_FILENAME", "TASKHUB_DATABASE_URL")
    for _key in _derived:
        if _shared in os.environ.get(_key, ""):  # the controller's default, not a value the caller chose
            os.environ[_key] = os.environ[_key].replace(_shared, _storage)
    _broker, _, _number = os.environ.get("TASKHUB_BROKER_URL", "").rpartition("/")
    if _broker.startswith("redis") and _number.isdigit():
        os.environ["TASKHUB_BROKER_URL"] = f"{_broker}/{int(_number) - int(_xdist_worker.removeprefix('gw'))}"

os.environ.setdefault("TASKHUB_CONFIG", str(Path(__file__).with_name("config.test.yaml")))
os.environ.setdefault("TASKHUB_STORAGE_PATH", _storage)
os.environ.setdefault("TASKHUB_STORAGE_REPORTS_PATH", str(Path(_storage) / "reports"))
os.environ.setdefault("TASKHUB_LOG_FILENAME", str(Path(_storage) / "taskhub.log"))
os.environ.setdefault("TASKHUB_DATABASE_URL", f"sqlite:///{_storage}/taskhub.sqlite3")

from taskhub.settings import *  # noqa: E402,F403
from taskhub.settings import INSTALLED_APPS  # noqa: E402

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
# In-process tests travel in time (time_machine), which a correction to the database's clock
# would undo; worker and beat processes started by the tests use the database's clock.
TASKHUB_CLOCK = os.environ.get("TASKHUB_TEST_CLOCK", "local")
