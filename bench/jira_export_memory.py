"""Peak memory of a large Jira project export: ``manage.py jira_export`` against the fake Jira.

The fake Jira (tests/fakes/jira_server.py) runs in this process with N generated issues;
the export runs as a child process (the real command, the real ``jira`` client, openpyxl
write-only), and its peak resident set size is read from ``wait4``'s rusage, so the
number covers Python, Django, the client, every page and the workbook, not just the heap.

The export uses no database or broker, so the figure is the same on every backend
(bench/run.py runs it once, on the embedded default).

Usage (from the repository root):
    .venv/bin/python -m bench.jira_export_memory [--quick]       # 50,000 issues (quick: 5,000)
    .venv/bin/python -m bench.jira_export_memory --issues 50000 --page-size 1000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

from bench import harness  # noqa: E402
from bench.common import metric, write_result  # noqa: E402
from tests.fakes.jira_server import FakeJira  # noqa: E402

LIMIT_MB = 300


def run(command: list[str], env: dict[str, str]) -> tuple[int, float, float]:
    """Run ``command``; return (exit status, peak RSS in MB, seconds)."""
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = b""
    assert process.stdout is not None
    for line in process.stdout:
        output += line
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        print(output.decode(errors="replace")[-3000:])
    # Linux reports ru_maxrss in kilobytes.
    return process.returncode, usage.ru_maxrss / 1024, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small size: 5,000 issues")
    parser.add_argument("--issues", type=int, help="issues in the fake project (default 50000; quick 5000)")
    parser.add_argument("--page-size", type=int, default=100)
    args = parser.parse_args()
    args.issues = args.issues or (5_000 if args.quick else 50_000)

    jira = FakeJira(username="bench", password="bench-pass").start()
    started = time.monotonic()
    jira.generate("BIG", args.issues)
    print(f"fake Jira: {args.issues} issues generated in {time.monotonic() - started:.1f} s at {jira.url}")
    with tempfile.TemporaryDirectory(prefix="taskhub-jira-bench-") as folder:
        config = {
            "jira": {
                "url": "",
                "environments": {
                    "bench": {"url": jira.url, "username": "bench", "password": "bench-pass", "timeout": 60}
                },
            },
            "storage": {"path": f"{folder}/storage", "reports_path": f"{folder}/reports"},
            "log": {"filename": f"{folder}/taskhub.log"},
            "database": {"url": f"sqlite:///{folder}/db.sqlite3"},
        }
        (Path(folder) / "config.yaml").write_text(yaml.safe_dump(config))
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "taskhub.settings",
            "TASKHUB_CONFIG": f"{folder}/config.yaml",
        }
        for key in [k for k in env if k.startswith("TASKHUB_") and k != "TASKHUB_CONFIG"]:
            env.pop(key)
        manage = [sys.executable, "manage.py"]
        _, baseline, _ = run([*manage, "jira_export", "--help"], env)
        out = Path(folder) / "big.xlsx"
        command = [*manage, "jira_export", "--env", "bench", "--project", "BIG", "--out", str(out)]
        code, peak, seconds = run([*command, "--page-size", str(args.page_size)], env)
        if code:
            raise SystemExit(f"export failed with exit status {code}")
        searches = len(jira.searches())
        jira.stop()

        from openpyxl import load_workbook

        book = load_workbook(out, read_only=True)
        rows = sum(1 for _ in book["bench"].iter_rows(min_row=2, values_only=True))
        book.close()
        size = out.stat().st_size / 1024 / 1024
    print(f"issues exported: {rows} (of {args.issues}) in {searches} search requests of {args.page_size}")
    print(f"workbook: {size:.1f} MB, export took {seconds:.1f} s")
    if rows != args.issues:
        raise SystemExit(f"the export wrote {rows} issues of {args.issues}")

    import django

    django.setup()  # for the result file's backend and machine line only
    write_result(
        "jira_export_memory",
        quick=args.quick,
        params={"issues": args.issues, "page_size": args.page_size, "seconds": round(seconds, 1)},
        metrics=[
            metric("Django + jira_export command baseline RSS", round(baseline, 1), "MB"),
            metric(
                f"Jira export of {args.issues:,} issues: peak RSS",
                round(peak, 1),
                "MB",
                bar=f"<= {LIMIT_MB} MB",
                ok=peak <= LIMIT_MB,
            ),
        ],
        series={"workbook_mb": round(size, 1), "search_requests": searches},
    )
    harness.cleanup()


if __name__ == "__main__":
    main()
