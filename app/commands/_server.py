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
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from app.errors import DatabaseUnavailableError
from app.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from app.storage.base import Storage

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
        data = tomllib.loads(Path(path).read_text("utf-8-sig"))  # a BOM, as some Windows editors write
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start}): TOML files are UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    data = data.get("packhouse", data)
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path}: 'packhouse' is not a table; write the settings under a [packhouse] "
            "header, or at the top level"
        )
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
        environ = {name.upper() for name in os.environ}
        config = config_path or os.environ.get(CONFIG_ENV)
        lines = []
        for err in exc.errors():
            message = err["msg"].removeprefix("Value error, ")
            field = str(err["loc"][0]) if err["loc"] else ""
            if not field:  # about several settings together: the message names them
                lines.append(message)
            elif field not in given and f"PACKHOUSE_{field.upper()}" in environ:
                lines.append(f"PACKHOUSE_{field.upper()}: {message}")
            elif field not in given and field in from_file and config:
                lines.append(f"{field} (in {config}): {message}")
            else:
                lines.append(f"{field}: {message}")
        raise ConfigError("\n".join(lines)) from None


def fail(message: str) -> int:
    for line in message.splitlines():
        print(f"packhouse: error: {line}", file=sys.stderr)
    return 2


def launch(settings: Settings) -> int:
    """Migrate once (and index a package folder's new files once), before any worker starts; then
    run uvicorn (workers rebuild the settings)."""
    import logging.config

    import uvicorn

    from app import http_limits, http_tls
    from app.logs import log_config

    logging.config.dictConfig(log_config(settings.log_level, settings.log_format))  # preflight may index
    try:
        preflight(settings)
    except ConfigError as exc:
        return fail(str(exc))
    for name, value in settings.model_dump(exclude_none=True).items():
        os.environ[f"PACKHOUSE_{name.upper()}"] = str(value)
    if settings.packages_dir is not None and settings.workers > 1:  # preflight indexed the folders
        from app.main import FOLDER_INDEXED_ENV

        os.environ[FOLDER_INDEXED_ENV] = "1"
    os.environ.pop(CONFIG_ENV, None)  # already folded into the variables above
    # uvicorn's context, which also answers plain HTTP on the port with a 400 (app/http_tls.py)
    tls = {"ssl_context_factory": http_tls.context_factory} if settings.ssl_certfile else {}
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
            ssl_certfile=settings.ssl_certfile,
            ssl_keyfile=settings.ssl_keyfile,
            **tls,
        )
    return 0


def preflight(settings: Settings) -> None:
    """What an operator can get wrong, checked before uvicorn starts, so that it stops with one line
    saying what to fix rather than a traceback (or a server that answers 500): the passwords file,
    the folders it writes to, the database (migrated here, once) and the S3 bucket. Raises ConfigError."""
    check_passwords_file(settings.passwords_file)
    check_tls(settings.ssl_certfile, settings.ssl_keyfile)
    if settings.packages_dir is not None:
        created = not settings.packages_dir.exists()
        if problem := check_readable(settings.extra_packages_dirs_list) or check_writable(settings.packages_dir):
            raise ConfigError(problem)
        if created:
            warning = f"package folder {settings.packages_dir} did not exist: created it"
            print(f"packhouse: warning: {warning}", file=sys.stderr)

    async def _prepare() -> None:
        engine = await open_database(settings.effective_database_url)
        try:
            if settings.packages_dir is not None and settings.workers > 1:
                from app.main import index_package_folders

                await index_package_folders(settings, engine)
        finally:
            await engine.dispose()
        if settings.storage:
            _, close = await open_storage(settings, check=True)
            await close()

    asyncio.run(_prepare())
    files = settings.effective_files_dir
    if not settings.storage and files != settings.packages_dir:
        if problem := check_writable(files, "files folder"):
            raise ConfigError(problem)


def check_passwords_file(path: Path | None) -> None:
    """pypiserver refuses to start without its htpasswd file, and so does Packhouse: a typo in the
    path would otherwise lock every user out without a word."""
    if path is None:
        return
    try:
        path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"passwords file {path} does not exist: create it with 'packhouse user add NAME "
            f"--passwords {path}' (or htpasswd -cB), or give --passwords . for none"
        ) from None
    except OSError as exc:
        raise unreadable("the passwords file", path, exc) from None


def unreadable(what: str, path: Path, exc: OSError) -> ConfigError:
    """The error for a file the server cannot read: its reason, and the uid when permissions are why."""
    who = f" to uid {os.getuid()}" if isinstance(exc, PermissionError) else ""
    return ConfigError(f"cannot read {what} {path}: {exc.strerror}{who}")


def check_tls(certfile: Path | None, keyfile: Path | None) -> None:
    """Load the certificate and key as uvicorn will, so that a wrong path, a key of another
    certificate or an encrypted key stops the start with one line, not a traceback or a prompt."""
    if certfile is None:
        return
    import ssl

    texts = {}
    for path, what in ((certfile, "certificate"), (keyfile, "key")):
        if path is not None:
            try:
                texts[what] = path.read_bytes()
            except OSError as exc:
                raise unreadable(f"the TLS {what} file", path, exc) from None
    if b"-----BEGIN CERTIFICATE-----" not in texts["certificate"]:
        raise ConfigError(f"{certfile} holds no PEM certificate ('-----BEGIN CERTIFICATE-----' ...)")
    if b"PRIVATE KEY-----" not in texts.get("key", texts["certificate"]):
        hint = "" if keyfile else ": give the key's file with --ssl-keyfile"
        raise ConfigError(f"{keyfile or certfile} holds no PEM private key{hint}")

    def encrypted() -> str:
        raise ConfigError(
            f"the TLS key in {keyfile or certfile} is encrypted: give a key without a passphrase "
            "(e.g. 'openssl pkey -in KEY -out KEY.plain'), readable only by the server's user"
        )

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile, password=encrypted)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(
                f"the TLS key in {keyfile or certfile} is not the key of the certificate in {certfile}"
            ) from None
        files = f"{certfile} and {keyfile}" if keyfile else str(certfile)
        raise ConfigError(
            f"cannot load the TLS certificate and key from {files} (OpenSSL: {exc.reason or exc}): is each "
            "PEM block complete, as the certificate authority or openssl wrote it?"
        ) from None


def reason(exc: BaseException) -> str:
    """Why something failed, in one line: the driver's or the system's own words."""
    if isinstance(exc, DatabaseUnavailableError) and exc.__cause__ is not None:
        exc = exc.__cause__  # the engine's 503 for a database server it cannot reach
    exc = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's exception
    if isinstance(exc, ModuleNotFoundError):
        return f"the Python module {exc.name!r} is not installed"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    text = (str(exc).strip() or type(exc).__name__).splitlines()[0]
    # botocore's, named without importing it
    if type(exc).__name__ == "NoCredentialsError":
        text += " (give AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, the standard AWS way)"
    elif type(exc).__name__ == "ClientError" and ("(404)" in text or "NoSuchBucket" in text):
        text += " (does the bucket exist?)"
    elif type(exc).__name__ == "ClientError" and "(403)" in text:
        text += " (do these credentials give access to the bucket?)"
    return text


async def open_database(
    url: str, *, must_exist: bool = False, hint: str = "pass --data-dir (or --database-url)", writable: bool = True
) -> AsyncEngine:
    """An engine on ``url`` with the schema brought to head. ``must_exist``: for the commands that
    act on an installation, which must not make an empty one where a typo points (a SQLite file is
    not created, a PostgreSQL database needs Packhouse's tables). ``writable``: a SQLite file must
    be writable (the server, and the commands that change something), else every change would
    fail later. Raises ConfigError."""
    from sqlalchemy.engine import make_url

    from app.db.engine import build_engine, database_url_problem, sqlite_path, sqlite_write_problem
    from app.db.migrate import has_schema, upgrade_to_head

    if problem := database_url_problem(url):
        raise ConfigError(f"database URL {problem}")
    path = sqlite_path(url)
    shown = path or make_url(url).render_as_string()  # the password hidden
    if path is not None:
        _check_sqlite_file(Path(path), must_exist, hint)
    try:
        engine = build_engine(url, immediate=True)
    except Exception as exc:  # noqa: BLE001 - any reason: said in one line
        raise ConfigError(f"cannot open database {shown}: {reason(exc)}") from None
    try:
        if must_exist and path is None and not await has_schema(engine):
            raise ConfigError(f"no Packhouse database at {shown} (it has no Packhouse tables); {hint}")
        await upgrade_to_head(engine)
        if path is not None and writable and (problem := await sqlite_write_problem(engine)):
            raise ConfigError(problem)
    except ConfigError:
        await engine.dispose()
        raise
    except Exception as exc:  # noqa: BLE001 - refused, unreachable, not a database, ...
        await engine.dispose()
        raise ConfigError(f"cannot open database {shown}: {reason(exc)}") from None
    return engine


def _check_sqlite_file(path: Path, must_exist: bool, hint: str) -> None:
    if must_exist and not path.is_file():
        raise ConfigError(f"no Packhouse database at {path}; {hint}")
    # SQLite writes its journal beside the database, even to read it (WAL).
    if problem := check_writable(path.parent, "data folder"):
        raise ConfigError(problem)


async def open_storage(settings: Settings, *, check: bool = False) -> tuple[Storage, Callable[[], Awaitable[None]]]:
    """The server's storage (``app.main.open_storage``); ``check``: S3 answers for the bucket with
    these credentials (what /ready asks). Raises ConfigError."""
    from app.main import open_storage as open_

    where = settings.storage or settings.effective_files_dir
    try:
        storage, close = await open_(settings)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"cannot open the storage {where}: {reason(exc)}") from None
    if check and settings.storage:
        try:
            await storage.check()
        except Exception as exc:  # noqa: BLE001
            await close()
            raise ConfigError(f"storage {where}: {reason(exc)}") from None
    return storage, close


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


def check_writable(folder: Path, what: str = "package folder") -> str | None:
    """The classic container problem (pypiserver issue #256): a bind-mounted package folder owned by
    another user. Say what to do instead of failing later with a traceback."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".packhouse-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except (FileExistsError, NotADirectoryError):
        return f"cannot write to the {what} {folder}: it, or a folder above it, is a file, not a folder"
    except OSError as exc:
        return (
            f"cannot write to the {what} {folder} ({exc.strerror}) as uid {os.getuid()}.\n"
            f"Give it to this user, e.g. on the host: sudo chown -R {os.getuid()}:{os.getgid()} <folder>,\n"
            'or run the container as the folder\'s owner (compose: user: "UID:GID").'
        )
    return None
