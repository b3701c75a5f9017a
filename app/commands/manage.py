"""``packhouse check | yank | unyank | delete | status``: act on the data directory directly.

They open the same database and storage as the server, from the same settings (flags, the
PACKHOUSE_* variables, ``--config``): the files folder, pypiserver's package folder
(``--packages-dir``) or S3 (``--storage``). So they work while the server runs, and every change is
journaled with the acting user (``--actor``, default ``cli:<login>``) exactly as the management API
does.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import math
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import ValidationError

from app.errors import PackageIndexError

T = TypeVar("T")
# check --grace: far longer than an upload waits between storing its bytes and committing its row
# (SQLite's busy timeout is 60 s).
DEFAULT_GRACE = 900.0
# dists.PROJECT_STATUSES (PEP 792), not imported here: `packhouse --help` stays fast.
PROJECT_STATUSES = ("active", "archived", "quarantined", "deprecated")


def _grace(text: str) -> float:
    """A finite number of seconds, 0 or more: ``nan`` compares false with every age, so it would
    remove orphans at once (an upload in flight among them)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds, 0 or more")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="the server's data folder (default ./data; env PACKHOUSE_DATA_DIR)")
    p.add_argument("--database-url", help="SQLAlchemy async URL (env PACKHOUSE_DATABASE_URL)")
    p.add_argument("--packages-dir", help="the pypiserver package folder 'packhouse run' serves "
                   "(env PACKHOUSE_PACKAGES_DIR)")  # fmt: skip
    p.add_argument("--storage", help="s3://BUCKET/PREFIX when the server stores files in S3 "
                   "(env PACKHOUSE_STORAGE; the S3 settings come from PACKHOUSE_S3_*)")  # fmt: skip
    p.add_argument("--config", help="the server's TOML settings file (env PACKHOUSE_CONFIG)")


def _target(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("project", help="project name (any spelling)")
    p.add_argument("version", nargs="?", help="the release (every file of it)")
    p.add_argument("--file", dest="filename", help="one distribution file instead of a whole release")
    p.add_argument("--actor", help="who is acting, for the audit journal (default cli:<login>)")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "check",
        help="verify stored files against the database",
        description="Check that every file row has its stored bytes with the recorded sha256 and "
        "that no stored blob lacks a row. Exit status 1 if a problem remains.",
    )
    _common(p)
    p.add_argument("--repair", action="store_true", help="remove orphan blobs and mark broken rows (yank)")
    p.add_argument("--grace", type=_grace, default=DEFAULT_GRACE, metavar="SECONDS",
                   help="remove only orphans stored at least this long ago: younger ones may belong to "
                   f"an upload in flight (default {DEFAULT_GRACE:g})")  # fmt: skip
    p.set_defaults(func=check)

    p = sub.add_parser("yank", help="yank a release or a file (PEP 592)")
    _target(p)
    p.add_argument("--reason", help="shown to installers")
    p.set_defaults(func=lambda a: _change(a, "yank"))
    p = sub.add_parser("unyank", help="un-yank a release or a file")
    _target(p)
    p.set_defaults(func=lambda a: _change(a, "unyank"))
    p = sub.add_parser("delete", help="delete a release or a file (its filename is never reused)")
    _target(p)
    p.set_defaults(func=lambda a: _change(a, "delete"))

    p = sub.add_parser(
        "status",
        help="show or set a project's status: archived, quarantined, deprecated, active (PEP 792)",
        description="Show a project's PEP 792 status, or set it; with no project, list every project "
        "that is not active. archived: the project takes no new "
        "files; quarantined: no new files, and none of its files is served (they are kept); deprecated: "
        "served as usual, installers may warn; active: none of these. Clients see the status and the "
        "reason on the project's simple pages.",
    )
    _common(p)
    p.add_argument("project", nargs="?", help="project name (any spelling); omit it to list the marked ones")
    p.add_argument(
        "status", nargs="?", choices=PROJECT_STATUSES, help="the new status (omit it to show the current one)"
    )
    p.add_argument("--reason", help="why, shown to installers (with a status other than active)")
    p.add_argument("--actor", help="who is acting, for the audit journal (default cli:<login>)")
    p.set_defaults(func=status)


def _run(args: argparse.Namespace, work: Callable[[object, object], Awaitable[T]], *, writes: bool = True) -> T:
    """Open the database (which must exist; brought to the latest schema; writable if the command
    ``writes``) and the storage exactly as the server does (settings from flags > PACKHOUSE_* >
    --config), run ``work(sessions, storage)``."""
    from app.commands._server import build_settings, open_database, open_storage
    from app.db.engine import build_sessionmaker

    flags = {k: getattr(args, k) for k in ("data_dir", "database_url", "packages_dir", "storage")}
    settings = build_settings(flags, args.config)

    async def main() -> T:
        hint = "pass --packages-dir" if settings.packages_dir else "pass --data-dir (or --database-url)"
        engine = await open_database(settings.effective_database_url, must_exist=True, hint=hint, writable=writes)
        try:
            storage, close_storage = await open_storage(settings, check=True)
            try:
                return await work(build_sessionmaker(engine), storage)
            finally:
                await close_storage()
        finally:
            await engine.dispose()

    return asyncio.run(main())


def check(args: argparse.Namespace) -> int:
    from app.services.check import CheckService
    from app.storage.flat import FlatLocalStorage

    async def work(sessions: object, storage: object) -> int:
        checker = CheckService(sessions, storage, package_folder=isinstance(storage, FlatLocalStorage))  # type: ignore[arg-type]
        report = await checker.run(repair=args.repair, actor=_actor(args), grace=args.grace)
        for p in report.problems:
            print(f"{'REPAIRED' if p.repaired else 'PROBLEM'} {p.kind}: {p.filename or p.key}: {p.detail}")
        left = len(report.unrepaired)
        print(
            f"checked {report.files} file(s) and {report.blobs} stored blob(s): "
            f"{len(report.problems)} problem(s), {left} unrepaired"
        )
        if left and not args.repair:
            print("run 'packhouse check --repair' to remove orphans and yank broken files", file=sys.stderr)
        return 1 if left else 0

    return _guarded(lambda: _run(args, work, writes=args.repair))  # a check alone only reads


def _change(args: argparse.Namespace, action: str) -> int:
    from app.commands._server import fail
    from app.services.manage import ManageService

    if problem := _not_utf8(args):
        return fail(problem)

    async def work(sessions: object, storage: object) -> int:
        manage = ManageService(sessions, storage)  # type: ignore[arg-type]
        target = {"version": args.version, "filename": args.filename, "actor": _actor(args)}
        if action == "yank":
            change = await manage.yank(args.project, reason=args.reason, **target)
        elif action == "unyank":
            change = await manage.unyank(args.project, **target)
        else:
            change = await manage.delete(args.project, **target)
        for f in change.files:
            print(f"{action} {change.project} {f.filename}")
        return 0

    return _guarded(lambda: _run(args, work))


def status(args: argparse.Namespace) -> int:
    from app.commands._server import fail
    from app.services.manage import ManageService

    if problem := _not_utf8(args):
        return fail(problem)

    async def work(sessions: object, storage: object) -> int:
        manage = ManageService(sessions, storage)  # type: ignore[arg-type]
        if args.project is None:
            marked = await manage.marked()
            for name, marker, reason in marked:
                print(f"{name}: {marker}" + (f" ({reason})" if reason else ""))
            if not marked:
                print("every project is active")
            return 0
        if args.status is None:
            state = await manage.project(args.project)
        else:
            state = await manage.set_status(args.project, args.status, reason=args.reason, actor=_actor(args))
        print(f"{state.normalized_name}: {state.status}" + (f" ({state.status_reason})" if state.status_reason else ""))
        return 0

    return _guarded(lambda: _run(args, work, writes=args.status is not None))


def _not_utf8(args: argparse.Namespace) -> str | None:
    """Python hands bytes that are not UTF-8 in argv over as lone surrogates, which the database
    cannot store: say which argument, with its bytes, instead of a UnicodeEncodeError."""
    for name, what in (("project", "project name"), ("version", "version"), ("filename", "--file"),
                       ("reason", "--reason"), ("actor", "--actor")):  # fmt: skip
        value = getattr(args, name, None)
        if value is None:
            continue
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            shown = os.fsencode(value).decode("utf-8", "backslashreplace")
            return f"the {what} '{shown}' is not valid UTF-8 (check the encoding of the terminal or script)"
    return None


def _actor(args: argparse.Namespace) -> str:
    return getattr(args, "actor", None) or f"cli:{getpass.getuser()}"


def _guarded(call: Callable[[], int]) -> int:
    from app.commands._server import ConfigError, fail

    try:
        return call()
    except ConfigError as exc:
        return fail(str(exc))
    except PackageIndexError as exc:
        print(f"packhouse: {exc.detail}", file=sys.stderr)
        return 1
    except ValidationError as exc:
        print(f"packhouse: error: {exc}", file=sys.stderr)
        return 2
