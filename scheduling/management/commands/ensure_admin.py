"""Create the first admin account when none exists, without a password shared by every install."""

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Create a superuser if there is none: DJANGO_SUPERUSER_USERNAME / DJANGO_SUPERUSER_PASSWORD "
        "when set, else 'admin' with a generated password printed once."
    )

    def handle(self, *args: object, **options: object) -> None:
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME") or "admin"
        if User.objects.filter(username=username).exists():
            raise CommandError(
                f"user {username!r} exists but is not a superuser; set DJANGO_SUPERUSER_USERNAME to another name, "
                "or make that user a superuser"
            )
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        generated = not password
        password = password or secrets.token_urlsafe(12)
        User.objects.create_superuser(
            username=username, email=os.environ.get("DJANGO_SUPERUSER_EMAIL", ""), password=password
        )
        if generated:
            self.stdout.write(
                self.style.WARNING(
                    f"Created admin account '{username}' with password: {password}\n"
                    "This is shown once; change it at /admin/password_change/."
                )
            )
        else:
            self.stdout.write(self.style.SUCCESS(f"Created admin account '{username}'."))
