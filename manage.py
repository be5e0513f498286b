#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    """Run administrative tasks; a bad config.yaml stops with one line, not a traceback."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskhub.settings")
    from django.core.management import execute_from_command_line

    from taskhub.startup import guarded

    guarded(lambda: execute_from_command_line(sys.argv))


if __name__ == "__main__":
    main()
