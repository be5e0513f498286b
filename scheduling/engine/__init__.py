"""The engine: what turns stored tasks into runs, and runs into outcomes.

Dependencies point one way, downward; nothing below imports anything above it::

    surfaces: scheduling.admin, scheduling.api, management commands, reporting
        -> scheduling.services (validate, write, audit; also scheduling.selectors for reads)
            -> scheduling.engine (this package)
                -> scheduling.audit, scheduling.handlers -> scheduling.models

    scheduling.tasks (thin Celery entry points) -> scheduling.engine

Inside the engine, from the bottom up:

- ``clock``, ``cron``: time and cron arithmetic (no models).
- ``lifecycle``: the one place where statuses change (the transition table, moves,
  the derived task status, failing dependents, cancelling a task's attempts).
- ``attempts``: the one place where attempt rows are created.
- ``pipelines``: run-scoped dependencies: when a dependency counts as met for a waiting run
  (the ready query's condition), what a task waits on, the dependency timeout.
- ``dispatcher``: picks ready attempts within the caps and sends them to Celery by
  task name (``EXECUTE_TASK``); it never imports ``scheduling.tasks``.
- ``executor``: claims, runs and completes one attempt; retries.
- ``firing``: cron fires, in bulk. ``recovery``: the periodic safety sweep.
  ``beat``: the beat scheduler that drives firing. ``retention``, ``attempt_log``,
  ``heartbeat``, ``workers``: housekeeping around attempts and workers.

The engine never imports ``scheduling.services``, the admin, the API or ``reporting``;
the import contracts in pyproject.toml (``make lint``) fail on any such import.
"""
