"""The ``packhouse`` command."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from app import __version__


def _serve_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "serve",
        help="run the index server",
        description="Run the Packhouse server under uvicorn. Every option is also an environment "
        "variable: PACKHOUSE_HOST, PACKHOUSE_PORT, PACKHOUSE_DATA_DIR, ...",
    )
    p.add_argument("--host", help="interface to bind (default 127.0.0.1; env PACKHOUSE_HOST)")
    p.add_argument("--port", type=int, help="TCP port (default 8080; env PACKHOUSE_PORT)")
    p.add_argument(
        "--data-dir", help="folder for packhouse.db and files/ (default ./data; env PACKHOUSE_DATA_DIR)"
    )
    p.add_argument("--database-url", help="SQLAlchemy async URL (env PACKHOUSE_DATABASE_URL)")
    p.add_argument("--storage", help="s3://BUCKET/PREFIX for object storage (env PACKHOUSE_STORAGE)")
    p.add_argument("--s3-endpoint-url", help="S3 endpoint; unset: AWS (env PACKHOUSE_S3_ENDPOINT_URL)")
    p.add_argument(
        "--passwords",
        "-P",
        help="htpasswd file (bcrypt, SHA1 or apr1), or '.' for none (env PACKHOUSE_PASSWORDS)",
    )
    p.add_argument(
        "--authenticate",
        "-a",
        help="actions that need a password: update,download,list or '.' for none "
        "(default: update when --passwords is given; env PACKHOUSE_AUTHENTICATE)",
    )
    p.add_argument(
        "--max-upload-size",
        help="largest accepted upload, e.g. 1G (default 1G; env PACKHOUSE_MAX_UPLOAD_SIZE)",
    )
    p.add_argument(
        "--overwrite",
        "-o",
        action="store_const",
        const=True,
        help="allow replacing a file with other bytes (env PACKHOUSE_OVERWRITE)",
    )
    p.add_argument(
        "--body-timeout",
        type=float,
        help="seconds an upload may stall (default 60; env PACKHOUSE_BODY_TIMEOUT)",
    )
    p.add_argument(
        "--max-header-size",
        help="largest request head, e.g. 64K (default 64K; env PACKHOUSE_MAX_HEADER_SIZE)",
    )
    p.add_argument(
        "--header-timeout",
        type=float,
        help="seconds to send a request head (default 10; env PACKHOUSE_HEADER_TIMEOUT)",
    )
    p.add_argument("--workers", type=int, help="uvicorn worker processes (default 1; env PACKHOUSE_WORKERS)")
    p.add_argument("--log-level", help="uvicorn log level (default info; env PACKHOUSE_LOG_LEVEL)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="packhouse", description="A private Python package index.")
    parser.add_argument("--version", action="version", version=f"packhouse {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _serve_parser(sub)
    for module in _command_modules():
        module.register(sub)
    return parser


def _command_modules() -> list:  # type: ignore[type-arg]
    """Subcommand modules under app.commands (each has ``register(subparsers)``)."""
    import importlib
    import pkgutil

    import app.commands

    return [
        importlib.import_module(f"app.commands.{info.name}")
        for info in sorted(pkgutil.iter_modules(app.commands.__path__), key=lambda i: i.name)
    ]


def _settings(args: argparse.Namespace, names: Sequence[str]) -> object:
    from app.settings import Settings

    given = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    return Settings(**given)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app import http_limits
    from app.settings import Settings

    names = [
        "host", "port", "data_dir", "database_url", "passwords", "authenticate",
        "max_upload_size", "overwrite", "workers", "log_level",
        "storage", "s3_endpoint_url",
    ]  # fmt: skip
    names += ["body_timeout", "max_header_size", "header_timeout"]  # request limits (issue 3)
    try:
        settings = _settings(args, names)
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            print(f"packhouse: error: {where + ': ' if where else ''}{err['msg']}", file=sys.stderr)
        return 2
    assert isinstance(settings, Settings)
    # Bring the schema up to date once, before any worker starts.
    from app.db.engine import build_engine
    from app.db.migrate import upgrade_to_head

    async def _migrate() -> None:
        engine = build_engine(settings.effective_database_url, immediate=True)
        try:
            await upgrade_to_head(engine)
        finally:
            await engine.dispose()

    asyncio.run(_migrate())
    # Workers rebuild the same settings from the environment.
    for name, value in settings.model_dump(exclude_none=True).items():
        os.environ[f"PACKHOUSE_{name.upper()}"] = str(value)
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        proxy_headers=True,
        http=http_limits.protocol(),  # request-head size and time limits (app/http_limits.py)
        h11_max_incomplete_event_size=settings.max_header_size,
        timeout_keep_alive=settings.header_timeout,  # type: ignore[arg-type]
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if (func := getattr(args, "func", None)) is not None:
        return int(func(args))
    parser.print_help()
    return 2
