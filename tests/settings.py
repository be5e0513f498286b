"""Settings for the test suite: an isolated storage folder, config and test-only handlers.

Environment defaults are set before taskhub.settings loads, and are inherited by
the worker and beat processes the end-to-end tests start, so they all share one
storage folder, one database and one broker.
"""

import os
import tempfile
from pathlib import Path

_storage = os.environ.setdefault("TASKHUB_TEST_STORAGE", tempfile.mkdtemp(prefix="taskhub-test-"))
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
