"""Shared by ``packhouse serve`` and ``packhouse run``: settings from flags, environment and a TOML
file (in that order of precedence), then migrations and uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.settings import Settings

CONFIG_ENV = "PACKHOUSE_CONFIG"


class ConfigError(Exception):
    pass


def read_config(path: str | None) -> dict[str, Any]:
    """A TOML file of settings: the same names as the PACKHOUSE_* variables, in lower case
    (``port = 8080``, ``passwords = "/data/auth/htpasswd"``). A ``[packhouse]`` table also works."""
    path = path or os.environ.get(CONFIG_ENV)
    if not path:
        return {}
    try:
        data = tomllib.loads(Path(path).read_text("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    data = data.get("packhouse", data)
    return {k.replace("-", "_"): v for k, v in data.items()}


def build_settings(
    flags: dict[str, Any], config_path: str | None = None, defaults: dict[str, Any] | None = None
) -> Settings:
    """flags > PACKHOUSE_* environment > config file > ``defaults`` > Settings' defaults.

    Raises ConfigError."""
    file_values = {**(defaults or {}), **read_config(config_path)}
    from_file = {k: v for k, v in file_values.items() if f"PACKHOUSE_{k.upper()}" not in os.environ}
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        return Settings(**{**from_file, **given})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            lines.append(f"{where + ': ' if where else ''}{err['msg']}")
        raise ConfigError("\n".join(lines)) from None


def fail(message: str) -> int:
    for line in message.splitlines():
        print(f"packhouse: error: {line}", file=sys.stderr)
    return 2


def launch(settings: Settings) -> int:
    """Migrate once, before any worker starts; then run uvicorn (workers rebuild the settings)."""
    import uvicorn

    from app import http_limits
    from app.db.engine import build_engine
    from app.db.migrate import upgrade_to_head
    from app.logs import log_config

    if settings.packages_dir is not None:
        created = not settings.packages_dir.exists()
        problem = check_readable(settings.extra_packages_dirs_list) or check_writable(settings.packages_dir)
        if problem:
            return fail(problem)
        if created:
            warning = f"package folder {settings.packages_dir} did not exist: created it"
            print(f"packhouse: warning: {warning}", file=sys.stderr)

    async def _migrate() -> None:
        engine = build_engine(settings.effective_database_url, immediate=True)
        try:
            await upgrade_to_head(engine)
        finally:
            await engine.dispose()

    asyncio.run(_migrate())
    for name, value in settings.model_dump(exclude_none=True).items():
        os.environ[f"PACKHOUSE_{name.upper()}"] = str(value)
    os.environ.pop(CONFIG_ENV, None)  # already folded into the variables above
    with shared_metrics(settings.metrics and settings.workers > 1):
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=settings.log_level,
            log_config=log_config(settings.log_level, settings.log_format),
            access_log=settings.access_log,
            proxy_headers=True,
            ws="none",  # no WebSocket route: loading a WebSocket protocol would cost ~25 ms of start-up
            http=http_limits.protocol(),  # request-head size and time limits (app/http_limits.py)
            h11_max_incomplete_event_size=settings.max_header_size,
            timeout_keep_alive=settings.header_timeout,  # type: ignore[arg-type]
        )
    return 0


@contextlib.contextmanager
def shared_metrics(enabled: bool) -> Iterator[None]:
    """Several workers: a fresh folder for prometheus_client's multiprocess mode, named in
    PROMETHEUS_MULTIPROC_DIR for the workers (each counts into its own files there and /metrics
    sums them), removed when the server stops. A folder the operator already named is used as it is."""
    from app.api.metrics import MULTIPROC_ENV

    if not enabled or os.environ.get(MULTIPROC_ENV):
        yield
        return
    folder = tempfile.mkdtemp(prefix="packhouse-metrics-")
    os.environ[MULTIPROC_ENV] = folder
    try:
        yield
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


def check_readable(folders: list[Path]) -> str | None:
    """The further package folders are served as they are, never created: a missing one is most
    likely a typo or a volume that is not mounted (pypiserver refuses to start as well)."""
    for folder in folders:
        try:
            os.listdir(folder)
        except OSError as exc:
            return f"cannot read the package folder {folder} ({exc.strerror}): check the path and its volume"
    return None


def check_writable(folder: Path) -> str | None:
    """The classic container problem (pypiserver issue #256): a bind-mounted package folder owned by
    another user. Say what to do instead of failing later with a traceback."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".packhouse-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return (
            f"cannot write to the package folder {folder} ({exc.strerror}) as uid {os.getuid()}.\n"
            f"Give it to this user, e.g. on the host: sudo chown -R {os.getuid()}:{os.getgid()} <folder>,\n"
            'or run the container as the folder\'s owner (compose: user: "UID:GID").'
        )
    return None
