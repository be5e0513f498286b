"""Settings for benchmarks: TaskHub's settings plus a no-op handler, raw Celery no-op tasks and the
django-celery-results baseline's app (its result table, in the same database, exists only here)."""

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

INSTALLED_APPS = [*INSTALLED_APPS, "django_celery_results", "bench.benchapp"]

# The "Celery + django-celery-results" baseline (bench/throughput.py): what a Django team keeps when it
# wants a record of every run. Results go to the same database; STARTED is recorded too. Only tasks that
# keep their results are affected: TaskHub's own (scheduling.execute, ignore_result=True) and
# bench.raw_noop store nothing, so the other measurements are unchanged.
CELERY_RESULT_BACKEND = "django-db"
CELERY_TASK_TRACK_STARTED = True
CELERY_RESULT_EXTENDED = False
