"""Production settings: DEBUG off, the secret key from the environment, HTTPS hardening, CSRF on the admin."""

from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.test_startup import clean_env, run

PRODUCTION_KEY = secrets.token_urlsafe(50)
PRODUCTION = {
    "TASKHUB_WEB_DEBUG": "false",
    "TASKHUB_WEB_SECRET_KEY": PRODUCTION_KEY,
    "TASKHUB_WEB_HTTPS": "true",
    "TASKHUB_WEB_ALLOWED_HOSTS": "taskhub.example.com",
}


def deploy_check(tmp_path: Path, **env: str) -> tuple[int, str]:
    done = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], clean_env(tmp_path, "", **env), tmp_path)
    return done.returncode, done.stdout + done.stderr


def test_production_settings_pass_check_deploy_without_warnings(tmp_path: Path) -> None:
    code, output = deploy_check(tmp_path, **PRODUCTION)
    assert code == 0, output
    assert "System check identified no issues (0 silenced)." in output
    assert PRODUCTION_KEY not in output


def test_production_settings_from_the_config_file_pass_too(tmp_path: Path) -> None:
    config = (
        "web:\n"
        f"  secret_key: {PRODUCTION_KEY!r}\n"
        "  debug: false\n"
        "  https: true\n"
        "  allowed_hosts: [taskhub.example.com]\n"
    )
    done = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], clean_env(tmp_path, config), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues (0 silenced)." in done.stdout


def test_check_deploy_flags_debug_and_plain_http(tmp_path: Path) -> None:
    """The check above can fail: the same command reports what a careless production config gets wrong."""
    code, output = deploy_check(tmp_path, **{**PRODUCTION, "TASKHUB_WEB_DEBUG": "true", "TASKHUB_WEB_HTTPS": "false"})
    assert code == 1
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016", "security.W018"):
        assert warning in output


def test_check_deploy_flags_a_weak_secret_key(tmp_path: Path) -> None:
    code, output = deploy_check(tmp_path, **{**PRODUCTION, "TASKHUB_WEB_SECRET_KEY": "changeme"})
    assert code == 1
    assert "security.W009" in output
    assert "changeme" not in output.replace("security.W009", "")


PROBE = """
import json, os
from django.conf import settings
from django.test import Client
client = Client()
host = {"HTTP_HOST": "taskhub.example.com"}
plain = client.get("/admin/login/", **host)
tls = client.get("/admin/login/", HTTP_X_FORWARDED_PROTO="https", **host)
missing = client.get("/no-such-page/", HTTP_X_FORWARDED_PROTO="https", **host)
evil = client.get("/admin/login/", HTTP_X_FORWARDED_PROTO="https", HTTP_HOST="evil.example")
print(json.dumps({
    "debug": settings.DEBUG,
    "key_from_env": settings.SECRET_KEY == os.environ.get("TASKHUB_WEB_SECRET_KEY"),
    "key_file": (settings.STORAGE_DIR / ".secret_key").exists(),
    "plain": [plain.status_code, plain.get("Location", "")],
    "tls": [tls.status_code, tls.get("Strict-Transport-Security", ""), str(tls.cookies.get("csrftoken", ""))],
    "missing": [missing.status_code, "Traceback" in missing.content.decode() or "DEBUG" in missing.content.decode()],
    "evil": evil.status_code,
}))
"""


def probe(tmp_path: Path, **env: str) -> dict[str, object]:
    environment = clean_env(tmp_path, "", **env)
    migrated = run(["manage.py", "migrate", "--noinput"], environment, tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    done = run(["manage.py", "shell", "-c", PROBE], environment, tmp_path)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_production_settings_behave_as_deployed(tmp_path: Path) -> None:
    seen = probe(tmp_path, **PRODUCTION)
    assert seen["debug"] is False
    assert seen["key_from_env"] is True
    assert seen["key_file"] is False  # nothing generated when the key comes from the environment
    assert seen["plain"] == [301, "https://taskhub.example.com/admin/login/"]
    status, hsts, csrf_cookie = seen["tls"]
    assert status == 200
    assert hsts == "max-age=31536000; includeSubDomains; preload"
    assert "secure" in csrf_cookie.lower() and "httponly" not in csrf_cookie.lower()
    assert seen["missing"] == [404, False]  # no debug page
    assert seen["evil"] == 400  # host not in web.allowed_hosts


def test_without_a_configured_key_one_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    env = clean_env(tmp_path, "")
    code = "from django.conf import settings; print(settings.SECRET_KEY)"
    first, second = (run(["manage.py", "shell", "-c", code], env, tmp_path) for _ in range(2))
    assert first.returncode == 0, first.stderr
    key = first.stdout.strip().splitlines()[-1]
    key_file = tmp_path / "storage" / ".secret_key"
    assert second.stdout.strip().splitlines()[-1] == key
    assert key == key_file.read_text().strip()
    assert len(key) >= 50
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    other = tmp_path / "other"
    other.mkdir()
    elsewhere = run(["manage.py", "shell", "-c", code], clean_env(other, ""), other)
    assert elsewhere.stdout.strip().splitlines()[-1] != key  # no key shared by every install


# --- CSRF on the admin (in this process, with the test settings) --------------------------------------------


@pytest.mark.django_db
def test_admin_login_refuses_a_post_without_csrf_token() -> None:
    get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests-only")
    client = Client(enforce_csrf_checks=True)
    response = client.post("/admin/login/", {"username": "root", "password": "pw-for-tests-only"})
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_admin_login_accepts_a_post_with_the_csrf_token() -> None:
    get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests-only")
    client = Client(enforce_csrf_checks=True)
    page = client.get("/admin/login/")
    token = page.context["csrf_token"]
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": "root", "password": "pw-for-tests-only", "csrfmiddlewaretoken": str(token)},
    )
    assert response.status_code == 302
    assert response["Location"] == "/admin/"


@pytest.mark.django_db
def test_admin_change_form_refuses_a_post_without_csrf_token() -> None:
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests-only")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post("/admin/scheduling/retrypolicy/add/", {"name": "sneaky", "max_retries": "1"})
    assert response.status_code == 403
    from scheduling.models import RetryPolicy

    assert not RetryPolicy.objects.filter(name="sneaky").exists()


def test_admin_pages_cannot_be_framed(client: Client) -> None:
    response = client.get("/admin/login/")
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
