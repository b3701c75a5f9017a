"""Habits pypiserver's users have, with the real clients against a live server: ``pip search
--index http://host:port TERM`` (pip's XML-RPC call to ``/RPC2``), ``twine register`` before an
upload (accepted and ignored), and a script reading ``/<project>/json``."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import run, tool
from tests.e2e.test_clients import twine_upload
from tests.support.builders import make_sdist, make_wheel
from tests.support.htpasswd import write_htpasswd

pytestmark = pytest.mark.e2e


def test_pip_search_at_the_server_root_and_at_pypi(live_server, client_env, tmp_path):
    out = tmp_path / "dist"
    out.mkdir()
    files = [
        make_wheel(out, "Team-App", "1.0.0"),
        make_wheel(out, "Team-App", "1.2.0", summary="The team's application"),
        make_sdist(out, "team_util", "0.3.1", summary="Helpers for the app"),
        make_wheel(out, "other", "2.0", summary="Unrelated"),
    ]
    server = live_server()
    twine_upload(server.url + "/", client_env, files)

    found = run([tool("pip"), "search", "--index", server.url, "team"], client_env).stdout
    lines = sorted(line for line in found.splitlines() if line.strip())
    assert len(lines) == 2, found
    assert lines[0].startswith("Team-App (1.2.0)") and "The team's application" in lines[0]
    assert lines[1].startswith("team_util (0.3.1)") and "Helpers for the app" in lines[1]

    by_summary = run([tool("pip"), "search", "--index", server.url + "/pypi", "helpers"], client_env).stdout
    assert by_summary.split()[:2] == ["team_util", "(0.3.1)"], by_summary
    nothing = run([tool("pip"), "search", "--index", server.url, "zzz"], client_env, check=False)
    assert nothing.returncode == 23 and nothing.stdout.strip() == ""  # pip: NO_MATCHES_FOUND


def test_pip_search_logs_in_where_listing_is_protected(live_server, client_env, tmp_path):
    users = write_htpasswd(tmp_path / "htpasswd")
    user, password = users["bcrypt"]
    server = live_server("--passwords", str(tmp_path / "htpasswd"), "--authenticate", "list,update")
    wheel = make_wheel(tmp_path, "secret-pkg", "1.0")
    twine_upload(server.url + "/", client_env, [wheel], user=user, password=password)
    refused = run([tool("pip"), "search", "--index", server.url, "secret"], client_env, check=False)
    assert refused.returncode != 0 and "401" in refused.stdout + refused.stderr
    authed = server.url.replace("http://", f"http://{user}:{password}@")
    found = run([tool("pip"), "search", "--index", authed, "secret"], client_env).stdout
    assert found.startswith("secret-pkg (1.0)"), found


def test_twine_register_then_upload_and_the_project_json(live_server, client_env, tmp_path):
    wheel = make_wheel(tmp_path, "team-app", "1.2.0")
    server = live_server()
    registered = run(
        [tool("twine"), "register", "--repository-url", server.url + "/", "-u", "anyone", "-p", "x", str(wheel)],
        client_env,
    )
    assert "Registering team_app-1.2.0-py3-none-any.whl" in registered.stdout + registered.stderr
    assert httpx.get(server.url + "/simple/team-app/").status_code == 404  # nothing was stored
    twine_upload(server.url + "/", client_env, [wheel])
    body = httpx.get(server.url + "/team-app/json").json()  # what a pypiserver script reads
    assert body["info"]["version"] == "1.2.0"
    (entry,) = body["releases"]["1.2.0"]
    assert httpx.get(entry["url"]).content == wheel.read_bytes()
