"""pypiserver's three auth modes, each htpasswd hash format, and the safe default."""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import time

import httpx
import pytest

from app.auth.htpasswd import hash_password
from tests.conftest import basic
from tests.support.builders import make_wheel
from tests.support.forms import upload_form
from tests.support.htpasswd import FORMATS, htpasswd_bin, write_htpasswd


@pytest.fixture
def users(tmp_path):
    return write_htpasswd(tmp_path / "htpasswd")


WHL = "secret_pkg-1.0-py3-none-any.whl"


@pytest.fixture
def whl(tmp_path):
    return make_wheel(tmp_path, "secret-pkg", "1.0")


def upload(client, whl, headers=None):
    data, files = upload_form(whl)
    return client.post("/legacy/", data=data, files=files, headers=headers or {})


def assert_401(r):
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Basic realm="packhouse"'
    assert r.headers["content-type"] == "application/problem+json"


def test_open_server_accepts_and_ignores_credentials(make_client, whl):
    client = make_client(passwords=".", authenticate=".")
    assert upload(client, whl, basic("whoever", "wrong")).status_code == 200  # flit always sends some
    assert client.get("/simple/secret-pkg/", headers=basic("x", "y")).status_code == 200


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_update_needs_password(make_client, tmp_path, users, whl, fmt):
    client = make_client(passwords=str(tmp_path / "htpasswd"))  # -a defaults to update
    assert_401(upload(client, whl))
    wrong = upload(client, whl, basic(users[fmt][0], "nope"))
    assert_401(wrong)
    assert "Invalid username or password" in wrong.json()["detail"]
    assert_401(upload(client, whl, basic("ghost", "nope")))
    assert upload(client, whl, basic(*users[fmt])).status_code == 200
    # reads stay anonymous
    assert client.get("/simple/secret-pkg/").status_code == 200
    assert client.get("/files/secret-pkg/secret_pkg-1.0-py3-none-any.whl").status_code == 200


def test_a_wrong_password_answers_as_fast_for_an_unknown_user_as_for_a_real_one(make_client, tmp_path, users):
    """No timing oracle for user names. Apache's htpasswd writes bcrypt at cost 5 (~2 ms), SHA1 and
    apr1 in microseconds: checking unknown users against a fixed bcrypt hash of cost 10 (~60 ms)
    made every unknown name answer an order of magnitude slower than a real one."""
    # 12 wrong passwords for one user: past the failed-login limit, which would answer 429 unchecked.
    client = make_client(passwords=str(tmp_path / "htpasswd"), authenticate="list", login_failures=0)
    real, unknown = [], []
    for i in range(12):
        for name, times in ((users["bcrypt"][0], real), (f"ghost{i}", unknown)):
            start = time.perf_counter()
            assert_401(client.get("/simple/", headers=basic(name, f"wrong{i}")))
            times.append(time.perf_counter() - start)
    assert statistics.median(unknown) < 3 * statistics.median(real) + 0.02, (unknown, real)


@pytest.mark.sqlite_only  # the password checks answer 401 before any request reaches the database
def test_a_flood_of_wrong_passwords_does_not_hold_up_downloads(live_server, tmp_path):
    """Each wrong password costs a bcrypt check in a worker thread (~250 ms at cost 12, as
    'packhouse user add' writes). 60 clients sending wrong passwords took every thread of the pool
    that downloads use too: an anonymous download waited seconds. Checks now run a few at a time
    and wait their turn without a thread."""
    passwords = tmp_path / "htpasswd"
    passwords.write_text(f"alice:{hash_password('pw')}\n")
    # No failed-login limit: it would answer the flood with 429s and check no password at all
    # (tests/api/test_login_throttle.py); this is about the checks that do run.
    server = live_server("--passwords", str(passwords), "--no-access-log", "--login-failures", "0")
    wheel = make_wheel(tmp_path, "secret-pkg", "1.0")
    with httpx.Client(base_url=server.url) as http:
        assert upload(http, wheel, basic("alice", "pw")).status_code == 200

    async def download_during_a_flood() -> tuple[int, float]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as http:
            stop = time.monotonic() + 6

            async def flood(i: int) -> None:
                n = 0
                while time.monotonic() < stop:
                    r = await http.get("/api/projects/secret-pkg/events", headers=basic("alice", f"no{i}.{n}"))
                    assert r.status_code == 401
                    n += 1

            tasks = [asyncio.create_task(flood(i)) for i in range(60)]
            await asyncio.sleep(2)
            start = time.perf_counter()
            r = await http.get(f"/files/secret-pkg/{WHL}")
            elapsed = time.perf_counter() - start
            await asyncio.gather(*tasks)
            return r.status_code, elapsed

    status, elapsed = asyncio.run(download_during_a_flood())
    assert status == 200 and elapsed < 1.5, elapsed


@pytest.mark.parametrize("flag", ["-2", "-5"])  # SHA-256-crypt, SHA-512-crypt
def test_a_huge_password_is_refused_without_hashing_it(make_client, tmp_path, flag):
    """SHA-crypt hashes the password once per byte of it: one Basic header with a 40 KB password
    cost ~10 s of CPU and 1.6 GB of memory, for a real user's name or, checked against a real
    user's hash, an unknown one. Passwords over 4096 bytes never log in (passlib's limit too)."""
    line = subprocess.run(
        [htpasswd_bin(), "-nb", flag, "sha", "pw"], check=True, capture_output=True, text=True
    ).stdout.strip()
    (tmp_path / "htpasswd").write_text(line + "\n")
    client = make_client(passwords=str(tmp_path / "htpasswd"), authenticate="list")
    start = time.perf_counter()
    for user in ("sha", "ghost"):
        assert_401(client.get("/simple/", headers=basic(user, "x" * 40_000)))
    assert time.perf_counter() - start < 2
    assert client.get("/simple/", headers=basic("sha", "pw")).status_code == 200


def test_a_damaged_htpasswd_entry_is_a_401_not_a_500(make_client, tmp_path, users):
    """A hash with non-ASCII characters (a line damaged by an editor or a bad copy) made every
    login as that user a 500 (hmac.compare_digest refuses non-ASCII text): the entry is refused
    with a warning when the file is read, like any other unusable hash."""
    passwords = tmp_path / "htpasswd"
    damaged = "bob:{SHA}gP0Sl0c33VivUOeCqfs3+BqNxtç=\nann:$apr1$gZR.Vz3é$IGT1OJq8HpR0pumzDPbaG0\n"
    passwords.write_text(passwords.read_text() + damaged, encoding="utf-8")
    client = make_client(passwords=str(passwords), authenticate="list")
    for user in ("bob", "ann", "ghost", "ghost2", "ghost3"):
        assert_401(client.get("/simple/", headers=basic(user, "pw")))
    assert client.get("/simple/", headers=basic(*users["sha1"])).status_code == 200


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_everything_needs_password(make_client, tmp_path, users, whl, fmt):
    client = make_client(passwords=str(tmp_path / "htpasswd"), authenticate="update,download,list")
    creds = basic(*users[fmt])
    assert upload(client, whl, creds).status_code == 200
    for url in (
        "/simple/",
        "/simple/secret-pkg/",
        "/secret-pkg/",
        "/files/secret-pkg/secret_pkg-1.0-py3-none-any.whl",
    ):
        assert_401(client.get(url))
        assert client.get(url, headers=creds).status_code == 200


def test_download_only(make_client, tmp_path, users, whl):
    client = make_client(passwords=str(tmp_path / "htpasswd"), authenticate="download")
    assert upload(client, whl).status_code == 200  # update not in the list: open (loopback server)
    assert client.get("/simple/secret-pkg/").status_code == 200
    assert_401(client.get("/files/secret-pkg/secret_pkg-1.0-py3-none-any.whl"))


def test_open_uploads_record_a_users_name_only_with_its_password(make_client, tmp_path, users, whl):
    """With a passwords file and uploads left open (-a download), anyone could upload as 'bea' by
    sending that name with any password, and the uploader and the journal said bea did it."""
    client = make_client(passwords=str(tmp_path / "htpasswd"), authenticate="download")
    bea, password = users["bcrypt"]
    assert upload(client, whl, basic(bea, "not her password")).status_code == 200
    other = make_wheel(tmp_path, "secret-pkg", "2.0")
    assert upload(client, other, basic(bea, password)).status_code == 200
    r = client.post("/api/projects/secret-pkg/releases/2.0/yank", headers=basic(bea, "wrong"))
    assert r.status_code == 200
    files = {f["filename"]: f["uploader"] for f in client.get("/api/projects/secret-pkg").json()["files"]}
    assert files == {WHL: None, other.name: bea}
    events = client.get("/api/projects/secret-pkg/events").json()
    assert [(e["action"], e["actor"]) for e in events] == [("yank", None), ("upload", bea), ("upload", None)]


@pytest.mark.parametrize("actions", ["download", "update,download,list"])
def test_files_that_need_a_login_are_never_kept_by_a_shared_cache(make_client, tmp_path, users, whl, actions):
    """``public`` lets a shared cache (nginx proxy_cache, a CDN: docs/scale-out.md) keep a response
    to a request with credentials and hand it to anyone for a year: private downloads are
    "private" (pip's, uv's and the browser's own caches still keep them)."""
    client = make_client(passwords=str(tmp_path / "htpasswd"), authenticate=actions)
    creds = basic(*users["bcrypt"])
    assert upload(client, whl, creds).status_code == 200
    for url in (f"/files/secret-pkg/{WHL}", f"/files/secret-pkg/{WHL}.metadata", f"/packages/{WHL}"):
        for r in (client.get(url, headers=creds), client.head(url, headers=creds)):
            assert r.status_code == 200, (url, r.text)
            assert r.headers["cache-control"] == "private, max-age=31536000, immutable", url
        r = client.get(url, headers={**creds, "If-None-Match": r.headers["etag"]})
        assert r.status_code == 304 and r.headers["cache-control"].startswith("private,")


def test_files_anyone_may_download_are_public(make_client, tmp_path, users, whl):
    client = make_client(passwords=str(tmp_path / "htpasswd"), authenticate="update,list")
    assert upload(client, whl, basic(*users["bcrypt"])).status_code == 200
    r = client.get(f"/files/secret-pkg/{WHL}")
    assert r.status_code == 200 and r.headers["cache-control"] == "public, max-age=31536000, immutable"


def test_safe_default_refuses_anonymous_uploads_beyond_loopback(make_client, whl):
    client = make_client(host="0.0.0.0")
    r = upload(client, whl)
    assert r.status_code == 403
    assert "--passwords FILE" in r.json()["detail"] and "--authenticate ." in r.json()["detail"]
    assert client.get("/simple/").status_code == 200
    explicit = make_client(host="0.0.0.0", authenticate=".", data_dir=whl.parent / "d2")
    assert upload(explicit, whl).status_code == 200


def test_loopback_server_without_passwords_accepts_uploads(client, whl):
    assert upload(client, whl).status_code == 200


def test_bad_authenticate_values_fail_at_startup(make_settings):
    with pytest.raises(ValueError, match="unknown action 'upload'"):
        make_settings(passwords="x", authenticate="upload")
    with pytest.raises(ValueError, match="needs a passwords file"):
        make_settings(authenticate="update")


def test_cli_reports_config_errors_without_traceback(capsys):
    from app.cli import main

    assert main(["serve", "--authenticate", "update,delete"]) == 2
    err = capsys.readouterr().err
    assert "unknown action 'delete'" in err and "Traceback" not in err


# Cross-site request forgery: a browser logged in to the UI attaches its Basic credentials to any
# request to this server, also to a form another site's page posts here.

CROSS_SITE = (
    {"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"},
    {"Sec-Fetch-Site": "same-site", "Origin": "http://evil.127.0.0.1"},
    {"Origin": "http://evil.example"},  # a browser without Sec-Fetch-Site
    {"Origin": "null"},  # a sandboxed frame
)


@pytest.fixture
def logged_in(make_client, tmp_path, users, whl):
    client = make_client(passwords=str(tmp_path / "htpasswd"), authenticate="update,download,list")
    creds = basic(*users["bcrypt"])
    assert upload(client, whl, creds).status_code == 200
    return client, creds


@pytest.mark.parametrize("origin", CROSS_SITE)
def test_changes_sent_by_another_sites_page_are_refused(logged_in, tmp_path, origin):
    client, creds = logged_in
    headers = {**creds, **origin}
    form = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
    refused = [
        client.post("/", headers=form, content=b":action=remove_pkg&name=secret-pkg&version=1.0"),
        client.post("/legacy/", headers=form, content=b":action=remove_pkg&name=secret-pkg&version=1.0"),
        # An HTML form with enctype="text/plain" and no fields: an empty body, which the yank takes.
        client.post("/api/projects/secret-pkg/releases/1.0/yank", headers={**headers, "Content-Type": "text/plain"}),
        client.post(f"/api/projects/secret-pkg/files/{WHL}/yank", headers={**headers, "Content-Type": "text/plain"}),
        upload(client, make_wheel(tmp_path, "secret-pkg", "6.6"), headers),  # a no-cors fetch
    ]
    for r in refused:
        assert r.status_code == 403, r.text
        assert r.json()["title"] == "Cross-site request refused" and "another site" in r.json()["detail"]
    files = client.get("/api/projects/secret-pkg", headers=creds).json()["files"]
    assert [(f["filename"], f["yanked"]) for f in files] == [(WHL, False)]
    # Reading is not changed by it: a link from another site still opens a page.
    assert client.get("/simple/secret-pkg/", headers=headers).status_code == 200


def test_changes_from_this_servers_own_pages_and_from_clients_pass(logged_in):
    client, creds = logged_in
    for headers in (
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1"},  # /docs "Try it out"
        {"Origin": "http://127.0.0.1"},
        {"Sec-Fetch-Site": "none"},  # typed into the address bar, or a bookmark
        {},  # twine, uv, curl: no browser headers
    ):
        r = client.post("/api/projects/secret-pkg/releases/1.0/yank", headers={**creds, **headers})
        assert r.status_code == 200, (headers, r.text)
    r = client.post("/", data={":action": "remove_pkg", "name": "secret-pkg", "version": "1.0"}, headers=creds)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("actions", ["list", "download,list"])
def test_the_audit_journal_is_as_private_as_the_listing(make_client, tmp_path, users, whl, actions):
    """-a list keeps the projects private and leaves uploads open: the journal, which names every
    file and uploader, needs the list login, as the project's page does."""
    client = make_client(passwords=str(tmp_path / "htpasswd"), authenticate=actions)
    creds = basic(*users["bcrypt"])
    assert upload(client, whl, creds).status_code == 200
    for url in ("/api/projects/secret-pkg", "/api/projects/secret-pkg/events", "/api/projects/nosuch/events"):
        r = client.get(url)
        assert_401(r)
        assert "secret" not in r.text
    events = client.get("/api/projects/secret-pkg/events", headers=creds)
    assert events.status_code == 200 and events.json()[0]["filename"] == WHL
