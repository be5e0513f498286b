"""A project export's checkpoint, kept with the run, so a retried attempt resumes from its last completed page.

A run's attempts share a folder (``storage.path/checkpoints/jira/<task>/<run>``): per
environment, a spool of the issues already fetched (JSON lines) and a state file naming
where the next page starts (Server's ``startAt`` or Cloud's ``nextPageToken``) and how
many bytes of the spool are complete. A page is first appended to the spool, then the
state is replaced atomically, so a worker killed at any instant leaves a checkpoint that
points at whole pages only; bytes past the recorded length are cut off when resuming.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VERSION = 1


def _safe(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:16]


@dataclass
class EnvState:
    """Where one environment's export stands."""

    cursor: dict[str, Any] | None = None  # where the next page starts; None: from the beginning
    spooled: int = 0  # bytes of the spool holding whole pages
    issues: int = 0
    pages: int = 0
    done: bool = False


class Checkpoint:
    """The checkpoint of one run of one export (``fingerprint``: the request it belongs to)."""

    def __init__(self, folder: Path, fingerprint: str) -> None:
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        self._state_file = self.folder / "state.json"
        self._envs: dict[str, EnvState] = {}
        self.resumed = False
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self._state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if not isinstance(data, dict) or data.get("version") != VERSION or data.get("fingerprint") != self.fingerprint:
            return  # another request's (the task's parameters changed): start over
        try:
            envs = {env: EnvState(**state) for env, state in (data.get("envs") or {}).items()}
        except TypeError:
            return
        for env, state in envs.items():
            spool = self._spool(env)
            if state.spooled and (not spool.exists() or spool.stat().st_size < state.spooled):
                return  # a spool lost or cut short: the checkpoint cannot be trusted, start over
        self._envs = envs
        self.resumed = any(state.pages for state in self._envs.values())

    def state(self, env: str) -> EnvState:
        """Return the environment's state (a fresh one when it has none)."""
        return self._envs.setdefault(env, EnvState())

    def _spool(self, env: str) -> Path:
        return self.folder / f"{_safe(env)}.jsonl"

    def spooled_issues(self, env: str) -> Iterator[dict[str, Any]]:
        """Yield the issues of the pages already completed, cutting off a page that was half written."""
        state, path = self.state(env), self._spool(env)
        if not state.spooled:
            path.unlink(missing_ok=True)
            return
        with path.open("r+b") as spool:
            spool.truncate(state.spooled)
            spool.seek(0)
            for line in spool:
                yield json.loads(line)

    def page_done(self, env: str, issues: list[dict[str, Any]], cursor: dict[str, Any] | None) -> None:
        """Record a completed page: append its issues, then move the state past it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        state = self.state(env)
        with self._spool(env).open("ab") as spool:
            for issue in issues:
                spool.write(json.dumps(issue, separators=(",", ":")).encode() + b"\n")
            spool.flush()
            os.fsync(spool.fileno())
            state.spooled = spool.tell()
        state.cursor, state.issues, state.pages = cursor, state.issues + len(issues), state.pages + 1
        state.done = cursor is None
        self._save()

    def _save(self) -> None:
        data = {
            "version": VERSION,
            "fingerprint": self.fingerprint,
            "envs": {env: vars(state) for env, state in self._envs.items()},
        }
        partial = self._state_file.with_suffix(".partial")
        partial.write_text(json.dumps(data), encoding="utf-8")
        os.replace(partial, self._state_file)

    def discard(self) -> None:
        """Delete the checkpoint (the export finished: the workbook is the record)."""
        shutil.rmtree(self.folder, ignore_errors=True)


#: A run's checkpoint untouched this long belongs to a run that ended without finishing (failed for good).
STALE_SECONDS = 7 * 86400


def prune(task_folder: Path, *, keep: Path, now: float | None = None) -> None:
    """Delete the task's other checkpoints left untouched for STALE_SECONDS (runs that failed for good)."""
    now = time.time() if now is None else now
    try:
        folders = [f for f in Path(task_folder).iterdir() if f.is_dir() and f != Path(keep)]
    except OSError:
        return
    for folder in folders:
        try:
            touched = max((f.stat().st_mtime for f in folder.iterdir()), default=folder.stat().st_mtime)
        except OSError:
            continue
        if now - touched > STALE_SECONDS:
            shutil.rmtree(folder, ignore_errors=True)


def fingerprint(request: Any) -> str:
    """Return a digest of what an export asks for, so a checkpoint is only resumed for the same request."""
    fields = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in vars(request).items()}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()
