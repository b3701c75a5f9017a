"""What an operator gets wrong (data folder, database URL, passwords file, log level, S3, a typo in
--data-dir) is refused at start with one ``packhouse: error:`` line and exit status 2: never a
traceback, never a server that answers 500 later, never an empty installation made by mistake."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, basic, clean_env, free_port
from tests.support.builders import make_wheel
from tests.support.readonly import immutable
from tests.support.s3 import CREDENTIALS

pytestmark = pytest.mark.e2e

AWS_NAMES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")


def packhouse(
    *args: str, home: Path, env: dict[str, str] | None = None, cwd: Path = ROOT, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``packhouse ARGS`` in a clean environment (no PACKHOUSE_* from outside). A server that
    starts by mistake runs into the timeout."""
    cmd = [*prefix, sys.executable, "-m", "app", *args]
    full_env = clean_env(home, env)
    if env is not None and "AWS_ACCESS_KEY_ID" not in env:  # S3 tests: no credentials unless given
        for name in AWS_NAMES:
            full_env.pop(name, None)
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=60)


def serve(tmp_path: Path, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return packhouse("serve", "--port", str(free_port()), *args, home=tmp_path / "home", **kwargs)  # type: ignore[arg-type]


def assert_refused(proc: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    for text in expected:
        assert text in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines and all(line.startswith("packhouse: error: ") for line in lines), proc.stderr


def unprivileged() -> tuple[str, ...]:
    """A command prefix under which file modes apply (root ignores them without these caps)."""
    if os.geteuid() != 0:
        return ()
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: file modes cannot be tested")
    caps = "-dac_override,-dac_read_search"
    return ("setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}")


# F1: the data folder and the database ------------------------------------------------------------


def test_serve_refuses_a_data_folder_it_cannot_use(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert_refused(
        serve(tmp_path, "--data-dir", str(blocker)),
        f"cannot write to the data folder {blocker}: it, or a folder above it, is a file",
    )
    assert_refused(
        serve(tmp_path, "--data-dir", str(blocker / "data")), "to the data folder", "is a file, not a folder"
    )
    readonly = tmp_path / "readonly"
    (readonly / "existing").mkdir(parents=True)
    readonly.chmod(0o555)
    (readonly / "existing").chmod(0o555)
    try:
        for data in (readonly / "new", readonly / "existing"):  # cannot be made; cannot be written
            proc = serve(tmp_path, "--data-dir", str(data), prefix=unprivileged())
            assert_refused(proc, f"cannot write to the data folder {data} (Permission denied)", "chown")
    finally:
        (readonly / "existing").chmod(0o755)
        readonly.chmod(0o755)
    assert not (readonly / "new").exists()


def test_database_urls_that_cannot_work_are_refused_before_anything_is_made(tmp_path):
    data = tmp_path / "data"
    for url, expected in (
        ("notaurl", "'notaurl' is not a SQLAlchemy URL; use sqlite+aiosqlite:///"),
        (f"sqlite:///{tmp_path}/x.db", "start it with sqlite+aiosqlite://"),
        ("postgresql://u:secret@127.0.0.1/x", "start it with postgresql+asyncpg://"),
        ("mysql://u@127.0.0.1/x", "Packhouse runs on SQLite or PostgreSQL"),
    ):
        assert_refused(serve(tmp_path, "--data-dir", str(data), "--database-url", url), expected)
        proc = packhouse("check", "--data-dir", str(data), home=tmp_path, env={"PACKHOUSE_DATABASE_URL": url})
        assert_refused(proc, "PACKHOUSE_DATABASE_URL: ", expected)
        assert "secret" not in proc.stderr
    assert not data.exists() and not (tmp_path / "x.db").exists()
    proc = packhouse(
        "transfer", "--from-data-dir", str(data), "--to-database-url", "garbage", "--to-files-dir",
        str(tmp_path / "to"), home=tmp_path,
    )  # fmt: skip
    assert_refused(proc, "--to-database-url: database URL 'garbage' is not a SQLAlchemy URL")


def test_a_database_that_refuses_or_is_not_one_is_one_line(tmp_path):
    port = free_port()  # nothing listens there
    url = f"postgresql+asyncpg://packhouse:secret@127.0.0.1:{port}/index"
    for proc in (
        serve(tmp_path, "--database-url", url),
        packhouse("check", "--database-url", url, home=tmp_path),
        packhouse("import", str(tmp_path), "-q", "--database-url", url, home=tmp_path),
    ):
        assert_refused(proc, f"cannot open database postgresql+asyncpg://packhouse:***@127.0.0.1:{port}/index: ")
        assert "secret" not in proc.stderr
    data = tmp_path / "data"
    data.mkdir()
    (data / "packhouse.db").write_bytes(b"this is no SQLite database, only some text" * 50)
    for proc in (serve(tmp_path, "--data-dir", str(data)), packhouse("check", "--data-dir", str(data), home=tmp_path)):
        assert_refused(proc, f"cannot open database {data / 'packhouse.db'}: file is not a database")


@pytest.mark.sqlite_only  # a SQLite file made read-only
def test_a_read_only_database_stops_the_start_and_the_commands_that_write(tmp_path):
    """SQLite opens a database file it may not write read-only, without a word: the server started
    and then answered every upload, yank and delete 500, and 'packhouse yank' printed a traceback.
    Refused at the start now, in one line naming the file; a check that only reads still runs."""
    data = tmp_path / "data"
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    make_wheel(wheels, "demo", "1.0")
    proc = packhouse("import", str(wheels), "-q", "--data-dir", str(data), home=tmp_path / "home")
    assert proc.returncode == 0, proc.stderr
    database = data / "packhouse.db"
    expected = f"cannot write to the database {database}: it is read-only"
    with immutable(database):
        assert_refused(serve(tmp_path, "--data-dir", str(data)), expected)
        for args in (["yank", "demo", "1.0"], ["unyank", "demo"], ["delete", "demo", "1.0"], ["check", "--repair"]):
            assert_refused(packhouse(*args, "--data-dir", str(data), home=tmp_path / "home"), expected)
        proc = packhouse("check", "--data-dir", str(data), home=tmp_path / "home")
        assert proc.returncode == 0 and "0 problem(s)" in proc.stdout, proc.stdout + proc.stderr


# F9: commands on an existing installation never make an empty one ---------------------------------


def test_commands_on_an_installation_need_its_database(tmp_path):
    typo = tmp_path / "typo-dir"
    expected = f"no Packhouse database at {typo / 'packhouse.db'}; pass --data-dir (or --database-url)"
    for args in (
        ["check"],
        ["check", "--repair"],
        ["yank", "demo", "1.0"],
        ["unyank", "demo"],
        ["delete", "demo", "1.0"],
    ):
        assert_refused(packhouse(*args, "--data-dir", str(typo), home=tmp_path / "home"), expected)
    assert not typo.exists()
    # The default ./data of a cron job run from the wrong folder.
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    proc = packhouse("check", home=tmp_path / "home", cwd=cwd, env={"PYTHONPATH": str(ROOT)})
    assert_refused(proc, "no Packhouse database at data/packhouse.db")
    assert list(cwd.iterdir()) == []
    proc = packhouse(
        "transfer", "--from-data-dir", str(typo), "--to-database-url", f"sqlite+aiosqlite:///{tmp_path}/to/db.sqlite",
        "--to-files-dir", str(tmp_path / "to" / "files"), home=tmp_path / "home",
    )  # fmt: skip
    assert_refused(proc, f"no Packhouse database at {typo / 'packhouse.db'}; pass --from-data-dir")
    assert not typo.exists()


def test_check_on_a_postgresql_database_without_packhouse_tables(tmp_path, postgres_cluster):
    url = postgres_cluster.url(postgres_cluster.create_database(blank=True))
    proc = packhouse("check", "--database-url", url, home=tmp_path)
    assert_refused(proc, "no Packhouse database at postgresql+asyncpg://", "(it has no Packhouse tables)")
    assert (
        postgres_cluster.psql(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", database=url.rsplit("/", 1)[1]
        ).strip()
        == "0"
    )


# F2 and F13: settings ---------------------------------------------------------------------------


def test_log_level_is_checked_and_case_insensitive(tmp_path, live_server):
    data = tmp_path / "data"
    proc = serve(tmp_path, "--data-dir", str(data), "--log-level", "verbose")
    assert proc.returncode == 2 and "invalid choice: 'verbose'" in proc.stderr and "trace" in proc.stderr
    proc = serve(tmp_path, "--data-dir", str(data), env={"PACKHOUSE_LOG_LEVEL": "loud"})
    assert_refused(
        proc, "PACKHOUSE_LOG_LEVEL: Input should be 'critical', 'error', 'warning', 'info', 'debug' or 'trace'"
    )
    assert not data.exists()  # refused before the database was made
    server = live_server("--log-level", "WARNING", env={"PACKHOUSE_ACCESS_LOG": "false"})
    assert httpx.get(server.url + "/simple/").status_code == 200
    server.stop()
    assert "Application startup complete" not in server.log()  # INFO is below WARNING


def test_messages_name_the_variable_and_drop_pydantics_prefix(tmp_path):
    data = str(tmp_path / "data")
    assert_refused(
        packhouse("serve", "--data-dir", data, home=tmp_path, env={"PACKHOUSE_PORT": "x"}),  # no --port flag
        "PACKHOUSE_PORT: Input should be a valid integer",
    )
    proc = serve(tmp_path, "--data-dir", data, env={"PACKHOUSE_MAX_UPLOAD_SIZE": "abc"})
    assert_refused(proc, "PACKHOUSE_MAX_UPLOAD_SIZE: not a size: 'abc'")
    proc = serve(tmp_path, "--data-dir", data, "--max-upload-size", "abc", env={"PACKHOUSE_MAX_UPLOAD_SIZE": "2G"})
    assert_refused(proc, "max_upload_size: not a size: 'abc'")  # the flag's value, which wins
    proc = serve(tmp_path, "--data-dir", data, "-a", "update")
    assert_refused(proc, "packhouse: error: --authenticate update needs a passwords file")
    proc = serve(tmp_path, "--data-dir", data, env={"PACKHOUSE_MAX_HEADER_SIZE": "1"})  # every request: 431
    assert_refused(proc, "PACKHOUSE_MAX_HEADER_SIZE: 1 bytes is below the minimum of 1K")
    config = tmp_path / "packhouse.toml"
    config.write_text('max_upload_size = "lots"\n')
    assert_refused(serve(tmp_path, "--config", str(config)), f"max_upload_size (in {config}): not a size: 'lots'")
    assert_refused(serve(tmp_path, "--data-dir", data, "--storage", "s3://"), "storage 's3://': use s3://BUCKET/PREFIX")
    for proc in (serve(tmp_path, "--data-dir", data, "-a", "update"), serve(tmp_path, "--config", str(config))):
        assert "Value error" not in proc.stderr


def test_a_realm_that_would_break_the_auth_header_stops_the_start(tmp_path):
    passwords = tmp_path / "htpasswd"
    passwords.write_text("")
    data = tmp_path / "data"
    realm = "x\r\nSet-Cookie: z=1"
    proc = serve(tmp_path, "--data-dir", str(data), "-P", str(passwords), "-a", "list", "--realm", realm)
    assert_refused(proc, "realm: 'x\\r\\nSet-Cookie: z=1': the realm is sent in the WWW-Authenticate header")
    proc = serve(tmp_path, "--data-dir", str(data), env={"PACKHOUSE_REALM": ""})
    assert_refused(proc, "PACKHOUSE_REALM: cannot be empty")
    assert not data.exists()


def test_a_config_file_that_is_not_utf8_or_not_a_table_is_one_line(tmp_path):
    config = tmp_path / "packhouse.toml"
    config.write_bytes(b"port = 9000\n\xff = 1\n")
    assert_refused(serve(tmp_path, "--config", str(config)), f"config file {config} is not UTF-8 text")
    config.write_text("packhouse = 5\n")
    proc = packhouse("check", home=tmp_path, env={"PACKHOUSE_CONFIG": str(config)})
    assert_refused(proc, f"config file {config}: 'packhouse' is not a table")


def test_empty_paths_are_refused_not_taken_for_the_current_folder(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {"PYTHONPATH": str(ROOT)}
    for name in ("DATA_DIR", "FILES_DIR", "PACKAGES_DIR"):
        proc = serve(tmp_path, cwd=cwd, env={**env, f"PACKHOUSE_{name}": ""})
        assert_refused(proc, f"PACKHOUSE_{name}: an empty path; give a folder")
    proc = packhouse("run", "-p", str(free_port()), "", home=tmp_path / "home", cwd=cwd, env=env)
    assert_refused(proc, "an empty PACKAGES_DIR ('')")
    proc = packhouse("check", "--data-dir", "", home=tmp_path / "home", cwd=cwd, env=env)
    assert_refused(proc, "data_dir: an empty path")
    assert list(cwd.iterdir()) == []  # no database, files or .packhouse folder made here


# F3, F4 and F11: the passwords file -----------------------------------------------------------------


def test_passwords_file_missing_unreadable_or_a_folder_stops_the_start(tmp_path):
    missing = tmp_path / "auth" / "htpasswd.txt"
    for proc in (
        serve(tmp_path, "--data-dir", str(tmp_path / "data"), "-P", str(missing)),
        packhouse("run", "-p", str(free_port()), "-P", str(missing), str(tmp_path / "packages"), home=tmp_path),
    ):
        assert_refused(proc, f"passwords file {missing} does not exist", "packhouse user add", "--passwords .")
    assert_refused(serve(tmp_path, "-P", str(tmp_path)), f"cannot read the passwords file {tmp_path}: Is a directory")
    unreadable = tmp_path / "htpasswd"
    unreadable.write_text("alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n")
    unreadable.chmod(0)
    proc = serve(tmp_path, "-P", str(unreadable), prefix=unprivileged())
    assert_refused(proc, f"cannot read the passwords file {unreadable}: Permission denied")


@pytest.mark.sqlite_only  # about the passwords file, not the database
def test_a_passwords_file_that_becomes_unreadable_keeps_the_users_read_before(tmp_path, live_server):
    """No 500 and no traceback per request: one warning, in the configured log format (a logger
    under ``packhouse``), and the users read before go on working until the file is readable again."""
    passwords = tmp_path / "htpasswd"
    passwords.write_text("alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\ndes:abJnggxhB/yWI\n")  # alice: "password"
    server = live_server("-P", str(passwords), "-a", "update,download,list", "--log-format", "json")
    alice = basic("alice", "password")
    assert httpx.get(server.url + "/simple/", headers=alice).status_code == 200
    passwords.rename(tmp_path / "htpasswd.moved")
    passwords.mkdir()  # a bind mount gone wrong: now a folder
    for _ in range(3):
        assert httpx.get(server.url + "/simple/", headers=alice).status_code == 200
        assert httpx.get(server.url + "/simple/", headers=basic("alice", "wrong")).status_code == 401
    passwords.rmdir()
    passwords.write_text("")  # readable again: its (empty) user list applies
    assert httpx.get(server.url + "/simple/", headers=alice).status_code == 401
    server.stop()
    records = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    assert not [line for line in server.log().splitlines() if not line.startswith("{")], server.log()
    auth = [r for r in records if r["logger"] == "packhouse.auth"]
    assert [r["level"] for r in auth] == ["warning", "warning"], auth
    assert "user 'des' has a DES crypt hash" in auth[0]["message"]
    assert (
        auth[1]["message"]
        == f"cannot read passwords file {passwords} (Is a directory): keeping the 1 user(s) read before"
    )
    assert "Traceback" not in server.log()


# F5 and F6: the storage -------------------------------------------------------------------------------


def test_serve_refuses_a_files_folder_it_cannot_write(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = serve(tmp_path, "--data-dir", str(tmp_path / "data"), "--files-dir", str(blocker / "files"))
    assert_refused(proc, f"cannot write to the files folder {blocker / 'files'}: it, or a folder above it, is a file")
    files = tmp_path / "data2" / "files"
    files.mkdir(parents=True)
    files.chmod(0o555)
    try:
        proc = serve(tmp_path, "--data-dir", str(tmp_path / "data2"), prefix=unprivileged())
    finally:
        files.chmod(0o755)
    assert_refused(proc, f"cannot write to the files folder {files} (Permission denied)")


def _no_credentials(endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in CREDENTIALS.items() if k not in AWS_NAMES}
    return {**env, "PACKHOUSE_S3_ENDPOINT_URL": endpoint}


def test_s3_without_credentials_or_bucket_stops_the_start(tmp_path, moto_server):
    bucket = moto_server.create_bucket()
    home = tmp_path / "home"
    env = _no_credentials(moto_server.endpoint)
    data = str(tmp_path / "data")
    proc = serve(tmp_path, "--data-dir", data, "--storage", f"s3://{bucket}/files", env=env)
    assert_refused(proc, f"storage s3://{bucket}/files: Unable to locate credentials", "AWS_ACCESS_KEY_ID")
    proc = serve(tmp_path, "--data-dir", data, "--storage", f"s3://no-such-{bucket}/files", env={**env, **CREDENTIALS})
    assert_refused(proc, f"storage s3://no-such-{bucket}/files: ", "(does the bucket exist?)")
    # transfer's destination, from an installation made by an import
    empty = tmp_path / "nothing"
    empty.mkdir()
    assert packhouse("import", "-q", str(empty), "--data-dir", data, home=home).returncode == 0
    proc = packhouse(
        "transfer", "--from-data-dir", data, "--to-database-url", f"sqlite+aiosqlite:///{tmp_path}/to.db",
        "--to-storage", f"s3://{bucket}/moved", "--s3-endpoint-url", moto_server.endpoint, home=home, env=env,
    )  # fmt: skip
    assert_refused(proc, f"destination storage s3://{bucket}/moved: Unable to locate credentials")


# F13: Ctrl-C during an import -------------------------------------------------------------------------


def test_ctrl_c_during_import_is_one_line_and_the_import_resumes(tmp_path):
    source = tmp_path / "wheels"
    source.mkdir()
    count = 300
    for i in range(count):
        make_wheel(source, f"many-{i}", "1.0")
    data = tmp_path / "data"
    log = tmp_path / "import.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "import", str(source), "--data-dir", str(data)],
            cwd=ROOT, env=clean_env(tmp_path / "home"), stdout=subprocess.DEVNULL, stderr=err, text=True,
            # As from a terminal: a test run started in the background (`cmd &` in a script) has
            # SIGINT ignored, the child inherits that, and Python then never raises KeyboardInterrupt.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while f"] 2/{count} " not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(60)
    stderr = log.read_text()
    assert rc == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert stderr.splitlines()[-1] == "packhouse: interrupted; run the same import again to resume"
    with sqlite3.connect(data / "packhouse.db") as db:
        (done,) = db.execute("SELECT count(*) FROM files").fetchone()
    assert 0 < done < count
    again = packhouse("import", "-q", str(source), "--data-dir", str(data), home=tmp_path / "home")
    assert again.returncode == 0, again.stderr
    assert f"imported {count - done} file(s); {done} already in the index" in again.stderr
