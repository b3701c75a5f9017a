"""Failed logins, on a real server: past --login-failures wrong passwords for one user from one
client, that pair gets a 429 (no password checked) until the window moves on.

Addresses other than 127.0.0.1 come through X-Forwarded-For, which uvicorn trusts from loopback
(its default --forwarded-allow-ips), as it would from an nginx in front of the server."""

from __future__ import annotations

import re
import subprocess
import time

import bcrypt
import httpx
import pytest

from tests.conftest import basic, run, tool
from tests.support.builders import make_wheel
from tests.support.forms import upload_form

# The failures are kept in the database (app/db/logins.py); its SQL runs on both databases in
# tests/unit/test_login_throttle.py and tests/e2e/test_replicas.py. Here it is about the server's answers.
pytestmark = pytest.mark.sqlite_only


@pytest.fixture
def passwords(tmp_path):
    path = tmp_path / "htpasswd"

    # Cost 4: the checks here are about counting, not hashing (and 'packhouse user add' writes 12).
    def quick(password: str) -> str:
        return "$2y$" + bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()[4:]

    path.write_text(f"alice:{quick('alices')}\nbob:{quick('bobs')}\n")
    return path


def upload(http: httpx.Client, wheel, headers: dict[str, str]) -> httpx.Response:
    data, files = upload_form(wheel)
    return http.post("/legacy/", data=data, files=files, headers=headers)


def frm(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


def assert_429(r: httpx.Response, user: str, address: str, window: int) -> int:
    assert r.status_code == 429, r.text
    assert "www-authenticate" not in r.headers  # no login is asked for: none would be checked
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["title"] == "Too many failed logins"
    assert f"Too many failed logins for {user!r} from {address}" in body["detail"]
    # The wait is in the detail, not in Retry-After: pip (urllib3) would sleep that long before
    # each of its retries, hanging for up to 25 minutes without a word.
    assert "retry-after" not in r.headers
    retry = int(re.search(r"refused for (\d+) s", body["detail"])[1])
    assert 0 < retry <= window
    return retry


def test_uploads_past_the_limit_are_429_for_that_user_from_that_client_only(live_server, tmp_path, passwords):
    server = live_server("--passwords", str(passwords), "--login-failures", "3", "--login-failure-window", "120")
    wheel = make_wheel(tmp_path, "team-app", "1.0")
    with httpx.Client(base_url=server.url) as http:
        for i in range(3):
            r = upload(http, wheel, {**basic("alice", f"guess{i}"), **frm("203.0.113.9")})
            assert r.status_code == 401 and "Invalid username or password" in r.json()["detail"]
        assert_429(upload(http, wheel, {**basic("alice", "guess3"), **frm("203.0.113.9")}), "alice", "203.0.113.9", 120)
        # The right password too: it is not checked (a guesser would see the answer change).
        assert_429(upload(http, wheel, {**basic("alice", "alices"), **frm("203.0.113.9")}), "alice", "203.0.113.9", 120)
        assert http.get("/simple/team-app/").status_code == 404  # nothing was stored
        # Another user behind the same address, and the same user from elsewhere, log in as ever.
        assert upload(http, wheel, {**basic("bob", "nope"), **frm("203.0.113.9")}).status_code == 401
        assert upload(http, wheel, {**basic("alice", "nope"), **frm("198.51.100.4")}).status_code == 401
        assert upload(http, wheel, {**basic("alice", "alices"), **frm("198.51.100.4")}).status_code == 200
        assert http.get("/simple/team-app/").status_code == 200
    assert "3 failed logins for 'alice' from 203.0.113.9 within 2 minutes" in server.log()


def test_a_client_already_logged_in_is_not_interrupted(live_server, tmp_path, passwords):
    """Someone guessing alice's password from the office NAT does not stop alice's own pip, which
    logged in a moment ago from the same address (its login is remembered for a minute)."""
    server = live_server(
        "--passwords", str(passwords), "--authenticate", "list,download,update", "--login-failures", "2"
    )  # fmt: skip
    wheel = make_wheel(tmp_path, "team-app", "1.0")
    nat = frm("192.0.2.1")
    with httpx.Client(base_url=server.url) as http:
        assert upload(http, wheel, {**basic("alice", "alices"), **nat}).status_code == 200
        for i in range(2):
            assert http.get("/simple/", headers={**basic("alice", f"g{i}"), **nat}).status_code == 401
        whl = "/files/team-app/team_app-1.0-py3-none-any.whl"
        paths = ["/simple/", "/simple/team-app/", "/pypi/team-app/json", whl]
        for path in paths:
            assert_429(http.get(path, headers={**basic("alice", "g2"), **nat}), "alice", "192.0.2.1", 300)
            assert http.get(path, headers={**basic("alice", "alices"), **nat}).status_code == 200, path


def test_the_fast_path_counts_a_wrong_password_once(live_server, passwords):
    """GET /simple/<project>/ is answered before FastAPI's routing: a wrong password there used to
    be checked again by the route (and would have counted twice)."""
    server = live_server("--passwords", str(passwords), "--authenticate", "list", "--login-failures", "3")
    with httpx.Client(base_url=server.url) as http:
        codes = [http.get("/simple/anything/", headers=basic("bob", f"g{i}")).status_code for i in range(4)]
        assert codes == [401, 401, 401, 429]
        metrics = http.get("/metrics", headers=basic("alice", "alices")).text  # where an operator sees them
    assert 'route="/simple/{project}/",status="429"} 1.0' in metrics
    assert 'route="/simple/{project}/",status="401"} 3.0' in metrics


def test_every_worker_counts_the_same_failures_and_a_restart_forgets_none(live_server, passwords):
    """With --workers 2, each new connection goes to either worker (the kernel's choice): three
    wrong passwords are three, wherever they landed, and every later login of the pair is refused,
    wherever it lands; then again after a restart."""
    server = live_server("--passwords", str(passwords), "--workers", "2", "--login-failures", "3")
    for i in range(3):  # a connection of its own each: httpx.get does not keep one
        assert httpx.get(server.url + "/simple/", headers=basic("alice", f"g{i}")).status_code == 200
        r = httpx.post(server.url + "/legacy/", headers=basic("alice", f"g{i}"))
        assert r.status_code == 401, r.text
    for _ in range(8):
        assert_429(httpx.post(server.url + "/legacy/", headers=basic("alice", "alices")), "alice", "127.0.0.1", 300)
    server.stop()
    server.start()
    assert_429(httpx.post(server.url + "/legacy/", headers=basic("alice", "alices")), "alice", "127.0.0.1", 300)
    # Another user is checked, and logged in: only the empty form is refused.
    assert httpx.post(server.url + "/legacy/", headers=basic("bob", "bobs")).status_code == 415


def test_metrics_logins_are_counted_too(live_server, passwords):
    server = live_server("--passwords", str(passwords), "--metrics-auth", "--login-failures", "2")
    with httpx.Client(base_url=server.url) as http:
        for i in range(2):
            assert http.get("/metrics", headers=basic("bob", f"g{i}")).status_code == 401
        assert_429(http.get("/metrics", headers=basic("bob", "bobs")), "bob", "127.0.0.1", 300)


def test_setting_the_users_password_lifts_the_block(live_server, tmp_path, passwords, client_env):
    server = live_server("--passwords", str(passwords), "--login-failures", "2")
    wheel = make_wheel(tmp_path, "team-app", "1.0")
    with httpx.Client(base_url=server.url) as http:
        for i in range(2):
            assert upload(http, wheel, basic("alice", f"g{i}")).status_code == 401
        assert_429(upload(http, wheel, basic("alice", "alices")), "alice", "127.0.0.1", 300)
        proc = subprocess.run(
            [tool("packhouse"), "user", "passwd", "alice", "--passwords", str(passwords), "--password-stdin"],
            input="brand-new\n", env=client_env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert upload(http, wheel, basic("alice", "brand-new")).status_code == 200


def test_the_block_ends_when_the_window_moves_on(live_server, tmp_path, passwords):
    server = live_server("--passwords", str(passwords), "--login-failures", "2", "--login-failure-window", "2")
    wheel = make_wheel(tmp_path, "team-app", "1.0")
    with httpx.Client(base_url=server.url) as http:
        for i in range(2):
            assert upload(http, wheel, basic("alice", f"g{i}")).status_code == 401
        retry = assert_429(upload(http, wheel, basic("alice", "alices")), "alice", "127.0.0.1", 2)
        time.sleep(retry)
        assert upload(http, wheel, basic("alice", "alices")).status_code == 200


def test_zero_turns_the_limit_off(live_server, tmp_path, passwords):
    server = live_server("--passwords", str(passwords), env={"PACKHOUSE_LOGIN_FAILURES": "0"})
    wheel = make_wheel(tmp_path, "team-app", "1.0")
    with httpx.Client(base_url=server.url) as http:
        assert all(upload(http, wheel, basic("alice", f"g{i}")).status_code == 401 for i in range(15))
        assert upload(http, wheel, basic("alice", "alices")).status_code == 200


def test_the_default_is_ten_per_five_minutes(live_server, tmp_path, passwords):
    """PyPI's own figure for failed logins ("10 per 5 minutes")."""
    server = live_server("--passwords", str(passwords))
    wheel = make_wheel(tmp_path, "team-app", "1.0")
    with httpx.Client(base_url=server.url) as http:
        assert all(upload(http, wheel, basic("alice", f"g{i}")).status_code == 401 for i in range(10))
        assert_429(upload(http, wheel, basic("alice", "g10")), "alice", "127.0.0.1", 300)


def test_where_anyone_may_upload_a_blocked_login_uploads_anonymously(live_server, tmp_path, passwords):
    """With --authenticate list (uploads open), a password only names the uploader: a wrong one
    uploads anonymously, and so does one whose pair is blocked (refusing it would refuse nothing)."""
    server = live_server("--passwords", str(passwords), "--authenticate", "list", "--login-failures", "1")
    with httpx.Client(base_url=server.url, headers=basic("bob", "bobs")) as http:
        assert upload(http, make_wheel(tmp_path, "team-app", "1.0"), basic("alice", "g0")).status_code == 200
        assert upload(http, make_wheel(tmp_path, "team-app", "1.1"), basic("alice", "alices")).status_code == 200
        assert upload(http, make_wheel(tmp_path, "team-app", "1.2"), basic("bob", "bobs")).status_code == 200
        files = {f["filename"]: f["uploader"] for f in http.get("/api/projects/team-app").json()["files"]}
    assert files == {
        "team_app-1.0-py3-none-any.whl": None,
        "team_app-1.1-py3-none-any.whl": None,  # alice's pair was blocked: not checked, not named
        "team_app-1.2-py3-none-any.whl": "bob",
    }


@pytest.mark.parametrize("value", ["-1", "ten"])
def test_a_bad_limit_is_refused_at_start(tmp_path, value, client_env):
    proc = run(
        [tool("packhouse"), "serve", "--data-dir", str(tmp_path / "d"), "--login-failures", value],
        client_env, check=False, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "login" in proc.stderr and "Traceback" not in proc.stderr


def test_twine_and_pip_show_the_429(live_server, tmp_path, passwords, client_env):
    server = live_server("--passwords", str(passwords), "--authenticate", "list,update", "--login-failures", "1")
    wheel = make_wheel(tmp_path, "team-app", "1.0")
    twine = [tool("twine"), "upload", "--disable-progress-bar", "--non-interactive", "--repository-url",
             server.url + "/legacy/", "-u", "alice", str(wheel)]  # fmt: skip
    first = run([*twine, "-p", "wrong"], client_env, check=False)
    assert first.returncode != 0 and "403" not in first.stdout + first.stderr
    second = run([*twine, "-p", "alices"], dict(client_env, COLUMNS="400"), check=False)
    out = " ".join((second.stdout + second.stderr).split())  # the reason phrase (app/http_reason.py)
    assert second.returncode != 0 and "429 Too Many Requests" in out and "Too many failed logins for 'alice'" in out
    index = server.url.replace("http://", "http://alice:alices@") + "/simple/"
    # pip logs an index page's HTTP errors at -vv only (a 404 too), then says "from versions: none";
    # it answers at once: with a Retry-After header it would sleep before each of its retries.
    pip = run([tool("pip"), "download", "-vv", "--no-deps", "-d", str(tmp_path / "dl"), "--index-url", index,
               "team-app"], client_env, check=False, timeout=60)  # fmt: skip
    assert pip.returncode != 0 and "429 Client Error: Too many failed logins for 'alice'" in pip.stdout + pip.stderr
