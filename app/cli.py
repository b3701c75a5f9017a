"""The ``packhouse`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from app import __version__

# uvicorn's log levels (app.settings.LOG_LEVELS; not imported here: `packhouse --help` stays fast).
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def _serve_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "serve",
        help="run the index server",
        description="Run the Packhouse server under uvicorn. Every option is also an environment "
        "variable: PACKHOUSE_HOST, PACKHOUSE_PORT, PACKHOUSE_DATA_DIR, ...",
    )
    p.add_argument("--host", help="interface to bind (default 127.0.0.1; env PACKHOUSE_HOST)")
    p.add_argument("--port", type=int, help="TCP port (default 8080; env PACKHOUSE_PORT)")
    p.add_argument("--data-dir", help="folder for packhouse.db and files/ (default ./data; env PACKHOUSE_DATA_DIR)")
    p.add_argument("--database-url", help="SQLAlchemy async URL (env PACKHOUSE_DATABASE_URL)")
    p.add_argument("--storage", help="s3://BUCKET/PREFIX for object storage (env PACKHOUSE_STORAGE)")
    p.add_argument("--s3-endpoint-url", help="S3 endpoint; unset: AWS (env PACKHOUSE_S3_ENDPOINT_URL)")
    p.add_argument("--s3-delivery", choices=["stream", "redirect"],
                   help="S3 downloads streamed through Packhouse, or a 302 to a presigned URL "
                   "(default stream; env PACKHOUSE_S3_DELIVERY)")  # fmt: skip
    p.add_argument("--s3-presign-expires", type=int,
                   help="lifetime of presigned URLs in seconds "
                   "(default 300; env PACKHOUSE_S3_PRESIGN_EXPIRES)")  # fmt: skip
    p.add_argument("--x-accel-redirect",
                   help="behind nginx: internal location aliasing the files folder; downloads answer with "
                   "X-Accel-Redirect (env PACKHOUSE_X_ACCEL_REDIRECT)")  # fmt: skip
    p.add_argument("--x-sendfile", action="store_const", const=True,
                   help="behind Apache mod_xsendfile or lighttpd: answer downloads with X-Sendfile "
                   "(env PACKHOUSE_X_SENDFILE)")  # fmt: skip
    p.add_argument("--s3-public-endpoint-url",
                   help="host used in presigned URLs, if clients reach S3 by another name "
                   "(env PACKHOUSE_S3_PUBLIC_ENDPOINT_URL)")  # fmt: skip
    p.add_argument("--files-dir", help="where files are stored (default DATA_DIR/files; env PACKHOUSE_FILES_DIR)")
    p.add_argument("--realm", help="HTTP Basic realm (default packhouse; env PACKHOUSE_REALM)")
    p.add_argument(
        "--passwords",
        "-P",
        help="htpasswd file (bcrypt, SHA1, apr1/MD5-crypt, SHA-crypt), or '.' for none (env PACKHOUSE_PASSWORDS)",
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
    p.add_argument("--login-failures", type=int, metavar="N",
                   help="wrong passwords a client may give for one user within the window before that "
                   "user's logins from that client are refused with a 429 (default 10; 0: no limit; "
                   "env PACKHOUSE_LOGIN_FAILURES)")  # fmt: skip
    p.add_argument("--login-failure-window", type=float, metavar="SECONDS",
                   help="seconds over which failed logins are counted (default 300; "
                   "env PACKHOUSE_LOGIN_FAILURE_WINDOW)")  # fmt: skip
    p.add_argument("--workers", type=int, help="uvicorn worker processes (default 1; env PACKHOUSE_WORKERS)")
    p.add_argument("--ssl-certfile", metavar="PEM",
                   help="serve HTTPS with this certificate (chain); the key too unless --ssl-keyfile "
                   "(env PACKHOUSE_SSL_CERTFILE)")  # fmt: skip
    p.add_argument("--ssl-keyfile", metavar="PEM",
                   help="the certificate's private key, not encrypted (env PACKHOUSE_SSL_KEYFILE)")  # fmt: skip
    p.add_argument("--log-level", type=str.lower, choices=LOG_LEVELS, metavar="LEVEL",
                   help=f"log level: {', '.join(LOG_LEVELS)} (default info; env PACKHOUSE_LOG_LEVEL)")  # fmt: skip
    p.add_argument("--config", help="TOML settings file: keys as the PACKHOUSE_* names in lower case "
                   "(env PACKHOUSE_CONFIG); flags and environment variables win over it")  # fmt: skip
    p.add_argument("--packages-dir", help="serve a pypiserver package folder in place, as 'packhouse run' "
                   "(env PACKHOUSE_PACKAGES_DIR)")  # fmt: skip
    p.add_argument("--extra-packages-dirs", help="further package folders, ':'-separated, served beside the "
                   "first; uploads go to the first, a delete removes a file where it lies, as pypiserver "
                   "(pypiserver's extra PACKAGES_DIRs; env PACKHOUSE_EXTRA_PACKAGES_DIRS)")  # fmt: skip
    p.add_argument("--rescan-interval", type=float, help="seconds between rescans of --packages-dir "
                   "(default 30; 0: never; env PACKHOUSE_RESCAN_INTERVAL)")  # fmt: skip
    p.add_argument("--fallback-url", help="redirect unknown projects to this index; off by default "
                   "(dependency confusion; env PACKHOUSE_FALLBACK_URL)")  # fmt: skip
    p.add_argument("--health-endpoint", help="liveness path (default /health; env PACKHOUSE_HEALTH_ENDPOINT)")
    p.add_argument("--no-metrics", dest="metrics", action="store_const", const=False,
                   help="do not serve Prometheus /metrics (env PACKHOUSE_METRICS=false)")  # fmt: skip
    # Neither flag: /metrics needs a login exactly when listing does (--authenticate with list).
    metrics_auth = p.add_mutually_exclusive_group()
    metrics_auth.add_argument("--metrics-auth", action="store_const", const=True,
                              help="/metrics needs a passwords-file login (default: only when "
                              "--authenticate includes list; env PACKHOUSE_METRICS_AUTH=true)")  # fmt: skip
    metrics_auth.add_argument("--no-metrics-auth", dest="metrics_auth", action="store_const", const=False,
                              help="/metrics open to anyone, even when listing needs a login "
                              "(env PACKHOUSE_METRICS_AUTH=false)")  # fmt: skip
    p.add_argument("--no-access-log", dest="access_log", action="store_const", const=False,
                   help="do not log every request (env PACKHOUSE_ACCESS_LOG=false)")  # fmt: skip
    p.add_argument("--log-format", choices=["text", "json"], help="log lines as text or JSON objects "
                   "(default text; env PACKHOUSE_LOG_FORMAT)")  # fmt: skip


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
        if not info.name.startswith("_")  # helpers shared by commands
    ]


def _settings(args: argparse.Namespace, names: Sequence[str]) -> object:
    from app.settings import Settings

    given = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    return Settings(**given)


def serve(args: argparse.Namespace) -> int:
    # Settings from flags > PACKHOUSE_* > --config TOML; migrations once, then uvicorn (app.commands._server).
    from app.commands._server import ConfigError, build_settings, fail, launch

    names = [
        "host", "port", "data_dir", "database_url", "passwords", "authenticate",
        "max_upload_size", "overwrite", "workers", "log_level",
        "storage", "s3_endpoint_url", "s3_delivery", "s3_presign_expires", "s3_public_endpoint_url",
        "x_accel_redirect", "x_sendfile",
        "packages_dir", "rescan_interval", "fallback_url", "health_endpoint", "metrics", "metrics_auth",
        "access_log", "log_format", "files_dir", "realm", "extra_packages_dirs",
    ]  # fmt: skip
    names += ["body_timeout", "max_header_size", "header_timeout"]  # request limits (issue 3)
    names += ["login_failures", "login_failure_window", "ssl_certfile", "ssl_keyfile"]
    try:
        return launch(build_settings({name: getattr(args, name, None) for name in names}, args.config))
    except ConfigError as exc:
        return fail(str(exc))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return serve(args)
        if (func := getattr(args, "func", None)) is not None:
            return int(func(args))
    except KeyboardInterrupt:  # Ctrl-C before the server runs, or in a command (uvicorn has its own)
        print("packhouse: interrupted", file=sys.stderr)
        return 130
    parser.print_help()
    return 2
