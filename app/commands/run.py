"""``packhouse run``: pypiserver's ``run`` command line, so a pypiserver deployment switches by
changing one word (the image) and keeps its ``command:`` line, its package folder and its htpasswd.

    packhouse run [-p PORT] [-i HOST] [-P PASSWORDS|.] [-a ACTIONS|.] [-o] [--fallback-url URL]
                  [--disable-fallback] [--hash-algo ALGO] [--health-endpoint PATH]
                  [--max-upload-size SIZE] PACKAGES_DIR...

The package folder is served in place: files already there (flat or nested) are indexed at start,
files copied in later are picked up by a periodic rescan, uploads are written into it as
``<filename>``, and Packhouse's database lives in ``PACKAGES_DIR/.packhouse/``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

from app.commands._server import ConfigError, build_settings, fail, launch

log = logging.getLogger("packhouse")

# pypiserver flags that change nothing important here: accepted (so old command lines keep working)
# with a warning saying why they are ignored.
IGNORED = {
    "--server": "Packhouse always runs on uvicorn",
    "--backend": "Packhouse always keeps its own index of the package folder",
    "--cache-control": "Packhouse sets its own Cache-Control (files are immutable, pages revalidate)",
    "--welcome": "the landing page shows this server's pip, uv and .pypirc settings instead",
    "--log-file": "Packhouse logs to stdout/stderr (see --log-format json)",
    "--log-stream": "Packhouse logs to stdout/stderr (see --log-format json)",
    "--log-frmt": "use --log-format text|json",
    "--log-req-frmt": "use --log-format text|json",
    "--log-res-frmt": "use --log-format text|json",
    "--log-err-frmt": "use --log-format text|json",
}
# pypiserver flags whose meaning Packhouse does not offer: refused with the reason.
UNSUPPORTED = {
    "--mirror": "Packhouse does not proxy or cache a public index (a dependency-confusion risk); "
    "see --fallback-url for redirecting unknown projects to an index you control",
    "-r": "the old -r/--root form: give the package folder as a positional argument",
    "--root": "the old -r/--root form: give the package folder as a positional argument",
    "-U": "'pypi-server update' is not part of 'run'",
    "-u": "'pypi-server update' is not part of 'run'",
}


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # never sys.exit with a bare usage line from deep inside
        raise _UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="packhouse run",
        allow_abbrev=False,
        description="Serve a pypiserver package folder, with pypiserver's 'run' flags. Every setting is "
        "also a PACKHOUSE_* environment variable or a key of the --config TOML file.",
    )
    p.add_argument("-p", "--port", type=int, help="TCP port (default 8080)")
    p.add_argument(
        "-i", "-H", "--interface", "--host", dest="host",
        help="interface to bind (default 0.0.0.0, as pypiserver)",
    )  # fmt: skip
    p.add_argument(
        "-P", "--passwords", metavar="PASSWORDS",
        help="htpasswd file (bcrypt, SHA1, apr1/MD5-crypt or SHA-256/512-crypt entries), or '.' for none",
    )  # fmt: skip
    p.add_argument(
        "-a", "--authenticate", metavar="ACTIONS",
        help="comma-separated actions needing a password: update, download, list; '.' for none "
        "(default: update)",
    )  # fmt: skip
    p.add_argument("-o", "--overwrite", action="store_const", const=True, help="allow replacing a file")
    p.add_argument(
        "--fallback-url", metavar="URL",
        help="redirect unknown projects to this index. Off by default (unlike pypiserver, which "
        "redirects to PyPI): a public fallback lets anyone who registers your private names there "
        "get their code installed",
    )  # fmt: skip
    p.add_argument("--disable-fallback", action="store_true", help="no fallback (the default here)")
    p.add_argument(
        "--hash-algo", metavar="ALGO", default="sha256",
        help="pypiserver's link hash; Packhouse always links sha256 (other values are accepted)",
    )  # fmt: skip
    p.add_argument("--health-endpoint", metavar="PATH", help="liveness path (default /health)")
    p.add_argument("--max-upload-size", metavar="SIZE", help="largest accepted upload, e.g. 1G (default 1G)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    extra = p.add_argument_group("Packhouse additions")
    extra.add_argument("--config", metavar="FILE", help="TOML settings file (env PACKHOUSE_CONFIG)")
    extra.add_argument("--rescan-interval", type=float, metavar="SECONDS", help="rescan the folder (default 30)")
    extra.add_argument("--workers", type=int, help="uvicorn worker processes (default 1)")
    extra.add_argument("--ssl-certfile", metavar="PEM", help="serve HTTPS with this certificate (chain)")
    extra.add_argument("--ssl-keyfile", metavar="PEM", help="its private key, unless in the certificate file")
    extra.add_argument("--log-format", choices=["text", "json"], help="log lines as text or JSON")
    extra.add_argument("--no-access-log", dest="access_log", action="store_const", const=False)
    extra.add_argument("--login-failures", type=int, metavar="N",
                       help="wrong passwords per client and user before a 429 (default 10; 0: no limit)")  # fmt: skip
    extra.add_argument("--login-failure-window", type=float, metavar="SECONDS",
                       help="seconds over which failed logins are counted (default 300)")  # fmt: skip
    # Neither flag: /metrics needs a login exactly when listing does (-a with list).
    metrics_auth = extra.add_mutually_exclusive_group()
    metrics_auth.add_argument(
        "--metrics-auth", action="store_const", const=True,
        help="/metrics needs a login (default: only when -a includes list)",
    )  # fmt: skip
    metrics_auth.add_argument(
        "--no-metrics-auth", dest="metrics_auth", action="store_const", const=False,
        help="/metrics open to anyone, even when listing needs a login",
    )  # fmt: skip
    ignored = p.add_argument_group("pypiserver flags accepted and ignored (with a warning)")
    for flag in IGNORED:
        ignored.add_argument(
            flag, dest=f"ignored_{flag.strip('-').replace('-', '_')}", metavar="X", help=argparse.SUPPRESS
        )
    p.add_argument(
        "packages_dirs", nargs="*", metavar="PACKAGES_DIR",
        help="package folders (default ~/packages): all are served, uploads go to the first one",
    )  # fmt: skip
    return p


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Returns (args, warnings). Raises _UsageError with a readable message."""
    if argv[:1] == ["run"]:  # 'pypi-server run ...' kept verbatim in a compose command
        argv = argv[1:]
    for arg in argv:
        flag = arg.split("=", 1)[0]
        if flag in UNSUPPORTED:
            raise _UsageError(f"pypiserver's {flag} is not supported: {UNSUPPORTED[flag]}")
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:
        raise _UsageError(
            f"unknown option(s) {' '.join(unknown)}: not a pypiserver 'run' flag that Packhouse knows "
            "(see 'packhouse run --help')"
        )
    if "" in args.packages_dirs:  # Path("") is the current folder: most likely an unset variable
        raise _UsageError("an empty PACKAGES_DIR (''): give the package folder")
    warnings = [
        f"pypiserver's {flag} is ignored: {why}"
        for flag, why in IGNORED.items()
        if getattr(args, f"ignored_{flag.strip('-').replace('-', '_')}") is not None
    ]
    algo = args.hash_algo.lower()
    if algo not in ("sha256", "none", "off", "0") and algo not in hashlib.algorithms_available:
        raise _UsageError(f"--hash-algo {args.hash_algo}: not a hash algorithm")
    if algo != "sha256":
        warnings.append(f"--hash-algo {args.hash_algo}: Packhouse always links files with #sha256= (PEP 503)")
    if args.fallback_url and args.disable_fallback:
        raise _UsageError("--fallback-url and --disable-fallback contradict each other")
    return args, warnings


def handle(ns: argparse.Namespace) -> int:
    try:
        args, warnings = parse(list(ns.rest))
    except _UsageError as exc:
        return fail(f"{exc}\n(packhouse run takes pypiserver's 'run' flags; see 'packhouse run --help')")
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    for warning in warnings:
        print(f"packhouse: warning: {warning}", file=sys.stderr)
    folder = Path(args.packages_dirs[0]) if args.packages_dirs else None
    # pypiserver serves every PACKAGES_DIR and uploads into the first one; so does Packhouse.
    extra = os.pathsep.join(args.packages_dirs[1:]) or None
    flags = {
        "host": args.host, "port": args.port, "passwords": args.passwords, "authenticate": args.authenticate,
        "overwrite": args.overwrite, "fallback_url": args.fallback_url, "hash_algo": args.hash_algo,
        "health_endpoint": args.health_endpoint, "max_upload_size": args.max_upload_size,
        "packages_dir": folder, "extra_packages_dirs": extra, "rescan_interval": args.rescan_interval,
        "workers": args.workers,
        "log_format": args.log_format, "access_log": args.access_log, "metrics_auth": args.metrics_auth,
        "log_level": "debug" if args.verbose > 1 else None,
        "login_failures": args.login_failures, "login_failure_window": args.login_failure_window,
        "ssl_certfile": args.ssl_certfile, "ssl_keyfile": args.ssl_keyfile,
    }  # fmt: skip
    try:
        # pypiserver's defaults, below PACKHOUSE_* variables and the config file.
        defaults = {"host": "0.0.0.0", "packages_dir": os.path.expanduser("~/packages")}
        settings = build_settings(flags, args.config, defaults=defaults)
    except ConfigError as exc:
        return fail(str(exc))
    return launch(settings)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    # The real parsing happens in handle(): pypiserver's flags (and its mistakes) get our own messages.
    p = subparsers.add_parser(
        "run",
        help="serve a pypiserver package folder, with pypiserver's flags (see 'packhouse run --help')",
        add_help=False,
        prefix_chars="\0",
    )
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=handle)
