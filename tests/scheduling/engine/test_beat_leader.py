"""The beat leader lock: one beat fires; a leader whose session ends loses it to the waiting beat."""

from __future__ import annotations

import pytest
from django.db import connection

from scheduling.engine.beat import LeaderLock

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL only: the lock is an advisory lock"),
]


@pytest.fixture
def locks():
    made: list[LeaderLock] = []
    yield lambda: made.append(LeaderLock()) or made[-1]
    for lock in made:
        if lock._conn is not None:
            lock._conn.close()


def test_one_leader_and_the_waiting_beat_takes_over_when_its_session_ends(locks):
    first, second = locks(), locks()
    assert first.held() and not second.held()
    assert first.held() and not second.held()  # every tick re-checks; nothing changes

    with connection.cursor() as cursor:  # the leader's host is cut off: the server ends its session
        cursor.execute("SELECT pg_terminate_backend(%s)", [first._conn.info.backend_pid])

    assert not first.held()  # the cut-off beat notices and stops firing
    assert second.held()  # the waiting beat takes over at its next tick
    assert not first.held()


def test_the_server_drops_a_silent_leader_within_seconds(locks):
    """Keepalives on the lock's session: a partitioned leader's lock is not held until TCP gives up (hours)."""
    lock = locks()
    assert lock.held()
    settings = {
        name: lock._conn.execute(f"SHOW {name}").fetchone()[0]
        for name in ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count", "tcp_user_timeout")
    }
    if lock._conn.info.host.startswith("/"):
        pytest.skip("a Unix-socket connection has no TCP keepalives")
    assert settings == {
        "tcp_keepalives_idle": "5",
        "tcp_keepalives_interval": "2",
        "tcp_keepalives_count": "3",
        "tcp_user_timeout": "10000",
    }
