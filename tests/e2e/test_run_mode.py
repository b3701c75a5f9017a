"""``packhouse run`` with pypiserver's command lines, driven by real clients (twine, pip)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, basic, clean_env, free_port, run, tool
from tests.support.builders import make_sdist, make_wheel
from tests.support.runserver import RunServer

pytestmark = pytest.mark.e2e


@pytest.fixture
def run_server(tmp_path: Path):
    """Factory: ``run_server("-P", ".", "-a", ".", str(folder))`` starts ``packhouse run``."""
    servers: list[RunServer] = []

    def factory(*args: str, env: dict[str, str] | None = None) -> RunServer:
        port = free_port()
        server = RunServer(list(args), clean_env(tmp_path / "server-home", env), tmp_path / f"run-{port}.log", port)
        servers.append(server)
        return server.start()

    yield factory
    for server in servers:
        server.stop()


def _dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def _project_json(url: str, project: str, auth: dict[str, str] | None = None) -> dict:
    r = httpx.get(
        f"{url}/simple/{project}/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json", **(auth or {})},
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_existing_folder_is_served_in_place(run_server, tmp_path, client_env):
    """A pypiserver folder (flat and nested files, one broken archive) is indexed at start and
    installable with the classic guide's pip line (index URL at the server root)."""
    packages = tmp_path / "packages"
    (packages / "nested").mkdir(parents=True)
    lib = make_wheel(packages, "classic-lib", "1.0", module_code="VALUE = 42\n")
    app_sdist = make_sdist(packages / "nested", "classic-app", "2.0")
    old = datetime(2021, 5, 8, 20, 0, tzinfo=UTC).timestamp()
    os.utime(lib, (old, old))
    (packages / "broken-1.0-py3-none-any.whl").write_bytes(b"this is not a zip archive")

    server = run_server("-P", ".", "-a", ".", str(packages))
    page = _project_json(server.url, "classic-lib")
    (f,) = page["files"]
    assert f["upload-time"].startswith("2021-05-08T20:00:00")  # the file's mtime
    assert f["core-metadata"] and "dist-info-metadata" not in f  # PEP 658 metadata read from the wheel
    assert _project_json(server.url, "classic-app")["files"][0]["filename"] == app_sdist.name
    assert "broken" in server.log() and "not a valid distribution" in server.log()
    assert httpx.get(server.url + "/simple/broken/").status_code == 404
    # pypiserver's file URLs keep working.
    r = httpx.get(f"{server.url}/packages/{lib.name}")
    assert r.status_code == 200 and r.content == lib.read_bytes()
    # The folder stays a pypiserver folder: nothing but Packhouse's hidden .packhouse/ is added.
    assert sorted(p.name for p in packages.iterdir()) == sorted(
        [".packhouse", lib.name, "nested", "broken-1.0-py3-none-any.whl"]
    )
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], client_env)
    run(
        [str(venv / "bin" / "pip"), "install", "--index-url", server.url, "--trusted-host", "127.0.0.1",
         "classic-lib"],
        client_env,
    )  # fmt: skip
    out = run([str(venv / "bin" / "python"), "-c", "import classic_lib; print(classic_lib.VALUE)"], client_env)
    assert out.stdout.strip() == "42"


def test_a_folder_is_indexed_once_before_the_workers_start(run_server, tmp_path):
    """``--workers 2``: the folder's files are indexed once, before uvicorn starts the workers,
    not by both workers at once (each reading every file, racing the other for every row)."""
    packages = tmp_path / "packages"
    made = [make_wheel(_dir(packages / f"sub{i % 3}"), f"many-{i}", "1.0") for i in range(12)]
    (packages / "old-1.0-py2.7.egg").write_bytes(b"an egg")  # skipped, with a warning per scan
    server = run_server("-P", ".", "-a", ".", "--workers", "2", str(packages))
    for wheel in made:
        project = wheel.name.split("-")[0].replace("_", "-")
        assert [f["filename"] for f in _project_json(server.url, project)["files"]] == [wheel.name]
    log = server.log()
    summaries = [line for line in log.splitlines() if "file(s) indexed" in line]
    assert len(summaries) == 1 and "12 file(s) indexed" in summaries[0], log
    assert log.index("12 file(s) indexed") < log.index("Started parent process"), log
    assert len([line for line in log.splitlines() if "packhouse.scan: indexed sub" in line]) == 12, log
    # The workers do not walk the folder again at start (their rescans come every 30 s).
    assert log.count("old-1.0-py2.7.egg: a Python egg") == 1, log


def test_open_compose_command_uploads_flat_and_rescans(run_server, tmp_path, client_env):
    """`command: -P . -a . /data/packages`: twine uploads land as PACKAGES_DIR/<filename>; files
    dropped in (or deleted) by hand are picked up by the rescan."""
    packages = tmp_path / "packages"
    server = run_server("-P", ".", "-a", ".", "--rescan-interval", "0.3", str(packages))
    dist = tmp_path / "dist"
    wheel = make_wheel(_dir(dist), "uploaded", "0.1")
    run(
        [tool("twine"), "upload", "--non-interactive", "--repository-url", server.url + "/",
         "-u", "anyone", "-p", "anything", str(wheel)],
        client_env,
    )  # fmt: skip
    assert (packages / wheel.name).read_bytes() == wheel.read_bytes()

    dropped = make_wheel(_dir(tmp_path / "elsewhere"), "dropped", "3.0")
    dropped.rename(packages / dropped.name)
    _wait_for(lambda: httpx.get(server.url + "/simple/dropped/").status_code == 200)
    (packages / dropped.name).unlink()
    _wait_for(lambda: httpx.get(server.url + "/simple/").text.count("dropped") == 0)
    # A restart re-uses the index kept in PACKAGES_DIR/.packhouse/.
    server.stop()
    server2 = run_server("-P", ".", "-a", ".", str(packages))
    assert _project_json(server2.url, "uploaded")["files"][0]["filename"] == wheel.name


def test_auth_compose_command_with_htpasswd_and_live_user_edits(run_server, tmp_path, client_env):
    """`command: -P /data/auth/htpasswd.txt -a update,download,list /data/packages` with a SHA1 file
    made by `htpasswd -sc`, then users added and removed with `packhouse user` while it runs."""
    auth = tmp_path / "auth" / "htpasswd.txt"
    auth.parent.mkdir()
    run(["htpasswd", "-sbc", str(auth), "alice", "wonderland"], client_env)
    packages = _dir(tmp_path / "packages")
    make_wheel(packages, "private-lib", "1.0")
    server = run_server("-P", str(auth), "-a", "update,download,list", str(packages))
    assert httpx.get(server.url + "/simple/").status_code == 401
    assert _project_json(server.url, "private-lib", basic("alice", "wonderland"))["files"]

    # No restart: the server re-reads the file after `packhouse user add`.
    packhouse = [sys.executable, "-m", "app"]
    proc = subprocess.run(
        [*packhouse, "user", "add", "bob", "--passwords", str(auth), "--password-stdin"],
        input="builder\n", capture_output=True, text=True, cwd=ROOT, env=client_env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert auth.read_text().splitlines()[0].startswith("alice:{SHA}")  # other lines are kept as they were
    assert httpx.get(server.url + "/simple/", headers=basic("bob", "builder")).status_code == 200
    wheel = make_wheel(_dir(tmp_path / "dist"), "bobs-lib", "1.0")
    run(
        [tool("twine"), "upload", "--non-interactive", "--repository-url", server.url + "/",
         "-u", "bob", "-p", "builder", str(wheel)],
        client_env,
    )  # fmt: skip
    listed = run([*packhouse, "user", "list", "--passwords", str(auth)], client_env, cwd=ROOT)
    assert listed.stdout.split() == ["alice", "bob"]
    run([*packhouse, "user", "remove", "bob", "--passwords", str(auth)], client_env, cwd=ROOT)
    assert httpx.get(server.url + "/simple/", headers=basic("bob", "builder")).status_code == 401


def test_the_failed_login_limit_in_run_mode(run_server, tmp_path, client_env):
    """The classic guide's auth command (SHA1 file from `htpasswd -sc`), with the limit set lower by
    the Packhouse flag (the default, 10, is PACKHOUSE_LOGIN_FAILURES's too)."""
    auth = tmp_path / "htpasswd.txt"
    run(["htpasswd", "-sbc", str(auth), "alice", "wonderland"], client_env)
    packages = _dir(tmp_path / "packages")
    server = run_server("-P", str(auth), "-a", "update,download,list", "--login-failures", "2", str(packages))
    codes = [httpx.get(server.url + "/simple/", headers=basic("alice", f"guess{i}")).status_code for i in range(2)]
    blocked = httpx.get(server.url + "/simple/", headers=basic("alice", "wonderland"))
    assert codes == [401, 401] and blocked.status_code == 429, blocked.text
    assert "Too many failed logins for 'alice'" in blocked.json()["detail"]


def test_several_package_folders_as_pypiserver(run_server, tmp_path, client_env):
    """`packhouse run DIR1 DIR2`: both are served; uploads go to the first (as pypiserver)."""
    first, second = _dir(tmp_path / "first"), _dir(tmp_path / "second" / "nested")
    in_second = make_wheel(second, "second-lib", "1.0")
    server = run_server("-P", ".", "-a", ".", str(first), str(tmp_path / "second"))
    assert httpx.get(f"{server.url}/packages/{in_second.name}").content == in_second.read_bytes()
    (f,) = _project_json(server.url, "second-lib")["files"]
    assert httpx.get(f"{server.url}/files/second-lib/{f['filename']}").status_code == 200
    wheel = make_wheel(_dir(tmp_path / "dist"), "first-lib", "1.0")
    run(
        [tool("twine"), "upload", "--non-interactive", "--repository-url", server.url + "/",
         "-u", "x", "-p", "y", str(wheel)],
        client_env,
    )  # fmt: skip
    assert (first / wheel.name).exists() and not (tmp_path / "second" / wheel.name).exists()


def test_json_logs_and_metrics(run_server, tmp_path):
    packages = _dir(tmp_path / "packages")
    make_wheel(packages, "counted", "1.0")
    server = run_server("-P", ".", "-a", ".", "--log-format", "json", str(packages))
    wheel_url = f"{server.url}/packages/counted-1.0-py3-none-any.whl"
    size = len(httpx.get(wheel_url).content)
    text = httpx.get(server.url + "/metrics").text
    assert 'packhouse_http_requests_total{method="GET",route="/packages/{filename}",status="200"} 1.0' in text
    assert "packhouse_downloads_total 1.0" in text
    assert f"packhouse_bytes_served_total {float(size)}" in text
    assert "packhouse_files 1.0" in text and "packhouse_projects 1.0" in text
    assert "packhouse_http_request_duration_seconds_bucket" in text
    server.stop()
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    access = [rec for rec in lines if rec["logger"] == "uvicorn.access"]
    assert any(rec["path"] == "/packages/counted-1.0-py3-none-any.whl" and rec["status"] == 200 for rec in access)
    assert any(rec["logger"] == "packhouse.scan" for rec in lines)


def test_metrics_follow_the_list_policy_unless_told(run_server, tmp_path, client_env):
    """`-a update,download,list`: /metrics needs a login of the htpasswd file (SHA1 here, as the
    classic guide makes it) unless --no-metrics-auth or PACKHOUSE_METRICS_AUTH=false; `-a update`
    with --metrics-auth: a login for /metrics only. (Open pages, open /metrics: test_json_logs_and_metrics.)"""
    auth = tmp_path / "htpasswd.txt"
    run(["htpasswd", "-sbc", str(auth), "prometheus", "scrape"], client_env)
    packages = _dir(tmp_path / "packages")
    private = ("-P", str(auth), "-a", "update,download,list", str(packages))
    server = run_server(*private)
    anonymous = httpx.get(server.url + "/metrics")
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == 'Basic realm="packhouse"'
    assert httpx.get(server.url + "/metrics", auth=("prometheus", "wrong")).status_code == 401
    assert httpx.get(server.url + "/metrics", auth=("prometheus", "scrape")).status_code == 200
    server.stop()
    for args, env in ((["--no-metrics-auth"], None), ([], {"PACKHOUSE_METRICS_AUTH": "false"})):
        server = run_server(*args, *private, env=env)
        assert httpx.get(server.url + "/metrics").status_code == 200, (args, env)
        assert httpx.get(server.url + "/simple/").status_code == 401
        server.stop()
    server = run_server("-P", str(auth), "-a", "update", "--metrics-auth", str(packages))
    assert httpx.get(server.url + "/simple/").status_code == 200
    assert httpx.get(server.url + "/metrics").status_code == 401
    assert httpx.get(server.url + "/metrics", auth=("prometheus", "scrape")).status_code == 200


def test_bad_flags_get_a_clear_message(tmp_path):
    env = clean_env(tmp_path / "home")
    blocker = tmp_path / "not-a-folder"  # stands in for an unwritable volume (root can write anywhere)
    blocker.write_text("")
    for args, expected in (
        (["--mirror", str(tmp_path)], "pypiserver's --mirror is not supported"),
        (["--frobnicate", str(tmp_path)], "unknown option(s) --frobnicate"),
        (["-a", "update", str(tmp_path)], "needs a passwords file"),
        (["-P", ".", "-a", ".", str(blocker / "packages")], "cannot write to the package folder"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "app", "run", *args], capture_output=True, text=True, cwd=ROOT, env=env
        )
        assert proc.returncode == 2, proc
        assert expected in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def test_a_package_folder_backed_up_while_served_keeps_what_only_its_database_knows(run_server, tmp_path):
    """`packhouse backup --packages-dir`: DEST is a package folder that `packhouse run DEST` serves
    with the yank and the project status that the files alone do not carry (copying the folder
    while the server runs could also catch its database between the file and its WAL)."""
    from tests.support.cli import packhouse
    from tests.support.forms import upload_form

    packages = _dir(tmp_path / "packages")
    make_wheel(packages, "folder-lib", "1.0")
    make_wheel(_dir(packages / "sub"), "folder-lib", "1.1")
    server = run_server("-P", ".", "-a", ".", str(packages))
    data, files = upload_form(make_wheel(_dir(tmp_path / "dist"), "folder-lib", "2.0"))
    assert httpx.post(server.url + "/", data=data, files=files).status_code == 200
    here = ["--packages-dir", str(packages)]
    assert packhouse(["yank", "folder-lib", "1.0", "--reason", "broken", *here]).returncode == 0
    assert packhouse(["status", "folder-lib", "deprecated", "--reason", "use new-lib", *here]).returncode == 0
    dest = tmp_path / "backup"
    done = packhouse(["backup", str(dest), *here])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 project(s), 3 file(s)" in done.stdout and "3 copied" in done.stdout, done.stdout
    names = sorted(str(p.relative_to(dest)) for p in dest.rglob("*.whl"))
    assert names == ["folder_lib-1.0-py3-none-any.whl", "folder_lib-2.0-py3-none-any.whl",
                     "sub/folder_lib-1.1-py3-none-any.whl"]  # fmt: skip
    assert (dest / ".packhouse" / "packhouse.db").is_file()
    again = packhouse(["backup", str(dest), *here])  # a second run: nothing new
    assert "0 copied" in again.stdout and "3 already there, 0 removed" in again.stdout, again.stdout

    restored = run_server("-P", ".", "-a", ".", str(dest))
    original, copy = _project_json(server.url, "folder-lib"), _project_json(restored.url, "folder-lib")
    assert copy["project-status"] == {"status": "deprecated", "reason": "use new-lib"}
    assert copy["files"] == original["files"]
    assert [f["yanked"] for f in copy["files"]] == ["broken", False, False]
    assert packhouse(["check", "--packages-dir", str(dest)]).returncode == 0
