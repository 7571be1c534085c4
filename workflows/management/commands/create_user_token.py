"""Create a user if needed and print an API token for it.

    manage.py create_user_token alice [--staff] [--password PW] [--email E]

Prints only the token key on stdout (so ``TOKEN=$(manage.py create_user_token alice)``
works). DRF's ``manage.py drf_create_token alice`` does the same for an existing user.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Create a user if needed and print a DRF API token for it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--staff", action="store_true", help="make the user staff and superuser (admin access)")
        parser.add_argument("--password", default=None, help="set this password (for the admin / session login)")
        parser.add_argument("--email", default="", help="e-mail address of a new user")
        parser.add_argument("--reset", action="store_true", help="replace an existing token with a new one")

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        model = get_user_model()
        user, created = model.objects.get_or_create(**{model.USERNAME_FIELD: options["username"]}, defaults={"email": options["email"]})
        fields: list[str] = []
        if created and options["password"] is None:
            user.set_unusable_password()
            fields.append("password")
        if options["password"] is not None:
            user.set_password(options["password"])
            fields.append("password")
        if options["staff"] and not (user.is_staff and user.is_superuser):
            user.is_staff = True
            user.is_superuser = True
            fields += ["is_staff", "is_superuser"]
        if fields:
            user.save(update_fields=fields)
        if options["reset"]:
            Token.objects.filter(user=user).delete()
        token, _ = Token.objects.get_or_create(user=user)
        self.stderr.write(f"{'created' if created else 'existing'} user {user.get_username()!r}{' (staff)' if user.is_staff else ''}")
        self.stdout.write(token.key)
