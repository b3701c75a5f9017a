"""Settings an operator can get wrong are refused with a message that says what to write instead."""

from __future__ import annotations

import logging

import pytest
import uvicorn.config
from pydantic import ValidationError

from app import cli
from app.auth.htpasswd import HtpasswdAuthenticator
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
    ],
)
def test_database_urls_that_cannot_work(url, expected):
    problem = database_url_problem(url)
    assert problem is not None and expected in problem and "secret" not in problem
    with pytest.raises(ValidationError, match="database_url"):
        Settings(database_url=url)


@pytest.mark.parametrize(
    "url", ["sqlite+aiosqlite:///data/packhouse.db", "sqlite+aiosqlite://", "postgresql+asyncpg://u:p@db:5432/x"]
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
