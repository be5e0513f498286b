"""Lift login lockouts: by user name, by address, or all; ``--list`` shows what is locked now."""

from __future__ import annotations

import logging
from typing import Any

from axes.models import AccessAttempt
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Sum
from django.utils import timezone

from taskhub.auth import normalise_address

logger = logging.getLogger("taskhub.auth")


class Command(BaseCommand):
    help = (
        "Lift login lockouts (security.login_failure_limit): --user NAME clears that user name's failures from "
        "every address, --address IP clears that address's failures for every name, --all clears everything. "
        "--list shows the user names and addresses locked now. Each failure stays in the admin's access failure log."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", action="append", default=[], metavar="NAME", help="a user name (repeatable)")
        parser.add_argument("--address", action="append", default=[], metavar="IP", help="an address (repeatable)")
        parser.add_argument("--all", action="store_true", help="every user name and address")
        parser.add_argument("--list", action="store_true", help="show what is locked now, change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        users: list[str] = options["user"]
        addresses = [self._address(value) for value in options["address"]]
        if options["list"]:
            self._list()
            return
        if not (users or addresses or options["all"]):
            raise CommandError("say what to unlock: --user NAME, --address IP or --all (--list shows what is locked)")
        if options["all"]:
            self._clear("every user name and address", AccessAttempt.objects.all())
            return
        for user in users:
            self._clear(f"user name {user!r}", AccessAttempt.objects.filter(username=user))
        for address in addresses:
            self._clear(f"address {address}", AccessAttempt.objects.filter(ip_address=address))

    @staticmethod
    def _address(value: str) -> str:
        address = normalise_address(value)  # an IPv6 address is counted (and unlocked) as its /64
        if address is None:
            raise CommandError(f"--address: {value!r} is not an IP address (expected e.g. 203.0.113.7 or 2001:db8::7)")
        return address

    def _clear(self, what: str, attempts: Any) -> None:
        count, _ = attempts.delete()
        logger.warning("unlock_login: failures of %s cleared (%d records)", what, count)
        if count:
            self.stdout.write(f"Unlocked {what}: {count} failure record(s) cleared.")
        else:
            self.stdout.write(f"Nothing to unlock for {what}: no failures counted.")

    def _list(self) -> None:
        since = timezone.now() - settings.AXES_COOLOFF_TIME
        recent = AccessAttempt.objects.filter(attempt_time__gte=since)
        limit = settings.AXES_FAILURE_LIMIT
        locked = []
        for field, label in (("username", "user name"), ("ip_address", "address")):
            totals = (
                recent.exclude(**{f"{field}__isnull": True})
                .values(field)
                .annotate(failures=Sum("failures_since_start"))
            )
            locked += [(label, row[field], row["failures"]) for row in totals if row["failures"] >= limit]
        if not locked:
            self.stdout.write("Nothing is locked.")
        for label, value, failures in locked:
            self.stdout.write(f"locked: {label} {value} ({failures} failures)")
