"""``packhouse user add|remove|list|passwd NAME --passwords FILE``: edit the htpasswd file without
Apache's tools. New passwords are bcrypt; edits are atomic; a running server picks them up by itself."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from app.auth.htpasswd import edit_htpasswd, hash_password, htpasswd_entries, username_problem


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password.removesuffix("\r")
    else:
        password = getpass.getpass(f"Password for {args.name}: ")
        if getpass.getpass("Repeat it: ") != password:
            raise ValueError("the passwords do not match")
    if not password:
        raise ValueError("empty password")
    return password


def _passwords_file(args: argparse.Namespace) -> Path:
    value = args.passwords or os.environ.get("PACKHOUSE_PASSWORDS")
    if not value or value == ".":
        raise ValueError("give the htpasswd file with --passwords FILE (or PACKHOUSE_PASSWORDS)")
    return Path(value)


def _entries(path: Path) -> dict[str, str | None]:
    """Every user of the file, with why their hash cannot log in (None: it can). Lines that are
    not 'user:hash' are left out; the other lines (unsupported hashes too) can be changed here."""
    text = path.read_text("utf-8-sig", errors="replace") if path.exists() else ""
    return {user: problem for _n, user, hashed, problem in htpasswd_entries(text) if hashed is not None}


def _too_long(name: str) -> str | None:
    """Why a user could not upload, yank or delete: the journal records who did (app/db/limits.py)."""
    from app.db.limits import USERNAME_CHARS

    if len(name) <= USERNAME_CHARS:
        return None
    return f"the user name is {len(name)} characters long, and the journal records at most {USERNAME_CHARS}"


def handle(args: argparse.Namespace) -> int:
    try:
        path = _passwords_file(args)
        users = _entries(path)
        if args.user_command == "list":
            for name in sorted(users):
                problem = users[name]
                if problem is not None:
                    print(f"{name}\t(cannot log in: {problem})")
                elif too_long := _too_long(name):
                    print(f"{name}\t(cannot upload, yank or delete: {too_long})")
                else:
                    print(name)
            return 0
        if args.user_command == "add" and (problem := username_problem(args.name)):
            raise ValueError(f"invalid user name {args.name!r}: {problem}")
        if args.user_command == "add" and args.name in users:
            raise ValueError(f"user {args.name!r} already exists in {path}; use 'packhouse user passwd' to change it")
        if args.user_command == "add" and (too_long := _too_long(args.name)):
            # Such a user could log in, but not upload, yank or delete (ManageService's check_actor).
            raise ValueError(f"{too_long}; choose a shorter user name")
        if args.user_command == "passwd" and args.name not in users:
            raise ValueError(f"no user {args.name!r} in {path}; use 'packhouse user add'")
        if args.user_command == "remove":
            if not edit_htpasswd(path, args.name, None):
                raise ValueError(f"no user {args.name!r} in {path}")
            print(f"removed {args.name} from {path}", file=sys.stderr)
            return 0
        edit_htpasswd(path, args.name, hash_password(_password(args)))
        verb = "added" if args.user_command == "add" else "changed the password of"
        replaced = f" (replacing {users[args.name]})" if users.get(args.name) else ""
        print(f"{verb} {args.name} in {path}{replaced}", file=sys.stderr)
        return 0
    except (ValueError, OSError) as exc:
        print(f"packhouse user: error: {exc}", file=sys.stderr)
        return 1
    except (EOFError, KeyboardInterrupt):
        print("packhouse user: cancelled", file=sys.stderr)
        return 1


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "user",
        help="add, remove, list users and change passwords in an htpasswd file",
        description="Edit an htpasswd file (bcrypt entries; the file is created if missing, edited "
        "atomically, and re-read by a running server without a restart).",
    )
    sub = p.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    for action, help_ in (
        ("add", "add a user (prompts for the password)"),
        ("passwd", "change a user's password"),
        ("remove", "remove a user"),
        ("list", "list the users"),
    ):
        a = sub.add_parser(action, help=help_)
        if action != "list":
            a.add_argument("name", metavar="NAME")
        a.add_argument("--passwords", "-P", metavar="FILE", help="the htpasswd file (env PACKHOUSE_PASSWORDS)")
        if action in ("add", "passwd"):
            a.add_argument("--password-stdin", action="store_true", help="read the password from one line of stdin")
        a.set_defaults(func=handle)
