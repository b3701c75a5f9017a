"""Settings an operator can get wrong are refused with a message that says what to write instead."""

from __future__ import annotations

import logging

import pytest
import uvicorn.config
from pydantic import ValidationError

from app import cli
from app.auth.htpasswd import HtpasswdAuthenticator
from app.commands import run as run_cmd
from app.commands._server import build_settings
from app.db.engine import database_url_problem
from app.settings import LOG_LEVELS, Settings


def test_log_levels_are_uvicorns_in_any_case():
    assert set(LOG_LEVELS) == set(cli.LOG_LEVELS) == set(uvicorn.config.LOG_LEVELS)
    assert Settings(log_level="DEBUG").log_level == "debug"
    assert Settings(log_level=" Trace ").log_level == "trace"
    with pytest.raises(ValidationError, match="'critical', 'error', 'warning', 'info', 'debug' or 'trace'"):
        Settings(log_level="verbose")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("notaurl", "is not a SQLAlchemy URL; use sqlite+aiosqlite:///"),
        ("sqlite:///x.db", "it needs an async driver; start it with sqlite+aiosqlite://"),
        ("sqlite+pysqlite:///x.db", "pysqlite is not an async driver; start it with sqlite+aiosqlite://"),
        (
            "postgresql://u:secret@db/x",
            "'postgresql://u:***@db/x': it needs an async driver; start it with postgresql+asyncpg://",
        ),
        ("postgresql+psycopg2://u@db/x", "psycopg2 is not an async driver"),
        ("mysql+aiomysql://u@db/x", "Packhouse runs on SQLite or PostgreSQL"),
        ("sqlite+aiosqlite://", "is an in-memory SQLite database, which keeps nothing across restarts"),
        ("sqlite+aiosqlite:///:memory:", "is an in-memory SQLite database"),
        ("sqlite+aiosqlite:///file:x?mode=memory&uri=true", "is an in-memory SQLite database"),
    ],
)
def test_database_urls_that_cannot_work(url, expected):
    problem = database_url_problem(url)
    assert problem is not None and expected in problem and "secret" not in problem
    with pytest.raises(ValidationError, match="database_url"):
        Settings(database_url=url)


@pytest.mark.parametrize(
    "url",
    ["sqlite+aiosqlite:///data/packhouse.db", "sqlite+aiosqlite:////abs/x.db", "postgresql+asyncpg://u:p@db:5432/x"],
)
def test_async_database_urls_pass(url):
    assert database_url_problem(url) is None
    assert Settings(database_url=url).database_url == url


@pytest.mark.parametrize("storage", ["s3://", "s3:///prefix", "/srv/files", "gs://bucket/x"])
def test_storage_needs_an_s3_url_with_a_bucket(storage):
    with pytest.raises(ValidationError, match="use s3://BUCKET/PREFIX"):
        Settings(storage=storage)
    assert Settings(storage="s3://bucket").storage == "s3://bucket"


def test_htpasswd_warnings_go_through_packhouse_logging(tmp_path, caplog):
    path = tmp_path / "htpasswd"
    path.write_text("des:abJnggxhB/yWI\n")
    with caplog.at_level(logging.WARNING, logger="packhouse"):
        HtpasswdAuthenticator(path)
    assert [r.name for r in caplog.records] == ["packhouse.auth"]


@pytest.mark.parametrize(
    ("authenticate", "metrics_auth", "required"),
    [
        ("update,download,list", None, True),
        ("list", None, True),
        ("update,download", None, False),
        ("update", None, False),
        (".", None, False),
        (None, None, False),  # a passwords file: pypiserver's default, update only
        ("update,download,list", False, False),
        ("update", True, True),
    ],
)
def test_metrics_login_follows_the_list_policy_unless_set(authenticate, metrics_auth, required):
    settings = Settings(passwords="htpasswd", authenticate=authenticate, metrics_auth=metrics_auth)
    assert settings.metrics_login_required is required


def test_metrics_auth_is_tri_state_in_the_environment(monkeypatch):
    monkeypatch.delenv("PACKHOUSE_METRICS_AUTH", raising=False)
    monkeypatch.setenv("PACKHOUSE_PASSWORDS", "htpasswd")
    assert Settings().metrics_auth is None
    for text, value in (("true", True), ("1", True), ("false", False), ("0", False), ("False", False)):
        monkeypatch.setenv("PACKHOUSE_METRICS_AUTH", text)
        assert Settings().metrics_auth is value, text
    monkeypatch.setenv("PACKHOUSE_METRICS_AUTH", "sometimes")
    with pytest.raises(ValidationError, match="metrics_auth"):
        Settings()


def test_metrics_auth_without_a_passwords_file():
    # The default, "as the pages", needs no passwords file: without one, listing is open by definition.
    assert Settings().metrics_login_required is False
    assert Settings(passwords=".").metrics_login_required is False
    assert Settings(metrics_auth=False).metrics_login_required is False
    with pytest.raises(ValidationError, match="--metrics-auth needs a passwords file"):
        Settings(metrics_auth=True)


def test_metrics_auth_flags_are_tri_state_on_both_commands():
    parser = cli.build_parser()
    assert parser.parse_args(["serve"]).metrics_auth is None
    assert parser.parse_args(["serve", "--metrics-auth"]).metrics_auth is True
    assert parser.parse_args(["serve", "--no-metrics-auth"]).metrics_auth is False
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--metrics-auth", "--no-metrics-auth"])
    assert run_cmd.parse(["/srv/packages"])[0].metrics_auth is None
    assert run_cmd.parse(["--metrics-auth", "/srv/packages"])[0].metrics_auth is True
    assert run_cmd.parse(["run", "--no-metrics-auth", "/srv/packages"])[0].metrics_auth is False
    with pytest.raises(run_cmd._UsageError, match="not allowed with argument --metrics-auth"):
        run_cmd.parse(["--metrics-auth", "--no-metrics-auth", "/srv/packages"])


def test_metrics_auth_flag_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("PACKHOUSE_PASSWORDS", "htpasswd")
    monkeypatch.setenv("PACKHOUSE_AUTHENTICATE", "update,download,list")
    monkeypatch.setenv("PACKHOUSE_METRICS_AUTH", "false")
    assert build_settings({"metrics_auth": None}).metrics_login_required is False
    assert build_settings({"metrics_auth": True}).metrics_login_required is True
    monkeypatch.delenv("PACKHOUSE_METRICS_AUTH")
    assert build_settings({"metrics_auth": None}).metrics_login_required is True
    assert build_settings({"metrics_auth": False}).metrics_login_required is False


@pytest.mark.parametrize("realm", ["x\r\nSet-Cookie: z=1", "tab\there", 'say "hi"', "back\\slash", "caf\u00e9", "\x00"])
def test_a_realm_that_cannot_be_sent_in_a_header_is_refused(realm):
    with pytest.raises(ValidationError, match="use printable ASCII characters, without"):
        Settings(realm=realm)


def test_an_empty_realm_is_refused_and_printable_ones_pass():
    with pytest.raises(ValidationError, match="cannot be empty"):
        Settings(realm="")
    assert Settings(realm="Packhouse (ops) <team@example.com>").realm == "Packhouse (ops) <team@example.com>"


@pytest.mark.parametrize("name", ["data_dir", "files_dir", "packages_dir"])
def test_an_empty_path_is_refused_not_taken_for_the_current_folder(name, monkeypatch):
    with pytest.raises(ValidationError, match="an empty path; give a folder"):
        Settings(**{name: ""})
    monkeypatch.setenv(f"PACKHOUSE_{name.upper()}", "")  # an unset variable in a compose file or script
    with pytest.raises(ValidationError, match="an empty path; give a folder"):
        Settings()
    monkeypatch.setenv(f"PACKHOUSE_{name.upper()}", ".")  # the current folder, when asked for
    assert str(getattr(Settings(), name)) == "."


@pytest.mark.parametrize("argv", [[""], ["/srv/packages", ""], ["-p", "8080", ""]])
def test_run_refuses_an_empty_package_folder(argv):
    with pytest.raises(run_cmd._UsageError, match=r"an empty PACKAGES_DIR \(''\)"):
        run_cmd.parse(argv)


@pytest.mark.parametrize("size", ["1", "0", "1023", "1000b"])
def test_a_header_size_too_small_for_any_request_is_refused(size):
    with pytest.raises(ValidationError, match="below the minimum of 1K: ordinary requests would be refused"):
        Settings(max_header_size=size)
    assert Settings(max_header_size="1K").max_header_size == 1024


@pytest.mark.parametrize(
    "url", ["not a url", "javascript:alert(1)", "pypi.org/simple", "ftp://host/simple/", "https://"]
)
def test_a_fallback_url_that_is_not_an_http_index_is_refused(url):
    """Found by fuzzing: any text was accepted, and sent as the Location of every unknown project."""
    with pytest.raises(ValidationError, match="is not an http\\(s\\) URL of a simple index"):
        Settings(fallback_url=url)


def test_an_http_fallback_url_is_kept():
    assert Settings(fallback_url="https://pypi.org/simple/").fallback_url == "https://pypi.org/simple/"
    assert Settings(fallback_url="http://127.0.0.1:3141/root/pypi/+simple").fallback_url is not None
