"""Fake external systems (Jira, Confluence, Mattermost) on 127.0.0.1 for tests and the demo."""

from __future__ import annotations

import threading
from socketserver import BaseServer

#: How often a fake's serve loop looks for a shutdown request. socketserver's default, half a
#: second, made every fixture teardown (``shutdown()`` waits for the loop) cost up to 0.5 s.
POLL_INTERVAL = 0.02


def serving_thread(server: BaseServer) -> threading.Thread:
    """A daemon thread that runs ``server`` until ``server.shutdown()``; call ``start()`` on it."""
    return threading.Thread(target=server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL}, daemon=True)
