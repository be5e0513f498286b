"""Gunicorn settings for TaskHub's web server (``--config python:taskhub.gunicorn_conf``).

Threaded workers: a client that sends its request slowly holds one thread, not a whole worker, so a few slow
or idle clients cannot stall the site (2 workers x 8 threads serve 16 requests at once; past that, put a proxy
that buffers requests, such as nginx, in front). Each worker dies with its master (PR_SET_PDEATHSIG), so a
master killed by SIGKILL leaves no worker holding the port.
"""

from __future__ import annotations

import signal
from typing import Any

from taskhub.supervise import set_death_signal

worker_class = "gthread"
workers = 2
threads = 8
graceful_timeout = 8  # seconds a stopping worker may finish its requests (the supervisor waits 10)


def post_fork(server: Any, worker: Any) -> None:
    """Make the new worker die with its master, even one killed by SIGKILL."""
    set_death_signal(signal.SIGKILL)


# Gunicorn's runtime control socket ($HOME/.gunicorn/gunicorn.ctl, one path for every instance of the user:
# a second TaskHub or a test run would take it over) is not used by TaskHub.
control_socket_disable = True
