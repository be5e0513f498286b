"""Settings for benchmarks: TaskHub's settings plus a no-op handler and a raw Celery no-op task."""

import os
import tempfile
from pathlib import Path

_storage = os.environ.setdefault("TASKHUB_BENCH_STORAGE", tempfile.mkdtemp(prefix="taskhub-bench-"))
os.environ.setdefault("TASKHUB_CONFIG", str(Path(__file__).with_name("config.bench.yaml")))
os.environ.setdefault("TASKHUB_STORAGE_PATH", _storage)
os.environ.setdefault("TASKHUB_STORAGE_REPORTS_PATH", str(Path(_storage) / "reports"))
os.environ.setdefault("TASKHUB_LOG_FILENAME", str(Path(_storage) / "taskhub.log"))
os.environ.setdefault("TASKHUB_DATABASE_URL", f"sqlite:///{_storage}/bench.sqlite3")

from taskhub.settings import *  # noqa: E402,F403
from taskhub.settings import INSTALLED_APPS  # noqa: E402

INSTALLED_APPS = [*INSTALLED_APPS, "bench.benchapp"]
