"""Served over HTTPS (web.https: true), a login sets Secure session and CSRF cookies; over plain HTTP it does not."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_deploy import PRODUCTION
from tests.test_startup import clean_env, run

LOGIN = """
import json
from django.contrib.auth import get_user_model
from django.test import Client
get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-1-long")
client = Client(enforce_csrf_checks=True)
tls = {"HTTP_HOST": "taskhub.example.com", "HTTP_X_FORWARDED_PROTO": "https", "secure": True,
       "HTTP_ORIGIN": "https://taskhub.example.com"}
page = client.get("/admin/login/", **tls)
token = page.cookies["csrftoken"].value
refused = client.post("/admin/login/", {"username": "root", "password": "pw-root-1-long"}, **tls)
done = client.post("/admin/login/?next=/admin/", {"username": "root", "password": "pw-root-1-long",
                   "csrfmiddlewaretoken": str(token)}, **tls)
print(json.dumps({
    "refused": refused.status_code,
    "login": done.status_code,
    "session": str(done.cookies.get("sessionid", "")),
    "csrf": str(page.cookies.get("csrftoken", "")),
}))
"""


def login(tmp_path: Path, **env: str) -> dict[str, object]:
    environment = clean_env(tmp_path, "", **env)
    assert run(["manage.py", "migrate", "--noinput"], environment, tmp_path).returncode == 0
    done = run(["manage.py", "shell", "-c", LOGIN], environment, tmp_path)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_https_login_sets_secure_httponly_session_cookie_and_needs_the_csrf_token(tmp_path: Path) -> None:
    seen = login(tmp_path, **PRODUCTION)
    assert seen["refused"] == 403  # a POST without the CSRF token
    assert seen["login"] == 302
    session, csrf = str(seen["session"]).lower(), str(seen["csrf"]).lower()
    assert "secure" in session and "httponly" in session and "samesite=lax" in session
    assert "secure" in csrf


def test_plain_http_cookies_are_not_marked_secure(tmp_path: Path) -> None:
    seen = login(tmp_path, **{**PRODUCTION, "TASKHUB_WEB_HTTPS": "false"})
    assert seen["login"] == 302
    assert "secure" not in str(seen["session"]).lower()
