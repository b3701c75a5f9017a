"""The one validated configuration object.

Every field is also an environment variable with the ``PACKHOUSE_`` prefix
(``PACKHOUSE_PORT``, ``PACKHOUSE_DATA_DIR`` ...). Only the composition root
(``app.main`` and ``app.cli``) reads this module; everything below receives plain values.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Literal, get_args
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.auth.policy import Action, parse_actions
from app.db.engine import database_url_problem

_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(value: object) -> int:
    """``1073741824``, ``1G``, ``512MiB``, ``100m`` -> bytes."""
    if isinstance(value, int):
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"not a size: {value!r} (use bytes, or a number with K, M, G or T)")
    return int(match[1]) * _UNITS[match[2].lower()]


ByteSize = Annotated[int, BeforeValidator(parse_size)]
MIN_HEADER_SIZE = 1024
# uvicorn's levels (uvicorn.config.LOG_LEVELS), in any case: --log-level DEBUG works too.
_LogLevelName = Literal["critical", "error", "warning", "info", "debug", "trace"]
LOG_LEVELS: tuple[str, ...] = get_args(_LogLevelName)
LogLevel = Annotated[_LogLevelName, BeforeValidator(lambda v: v.strip().lower() if isinstance(v, str) else v)]


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PACKHOUSE_", extra="forbid")

    host: str = Field("127.0.0.1", description="Interface to bind (pypiserver: -i/--interface).")
    port: int = Field(8080, ge=0, le=65535, description="TCP port (pypiserver: -p/--port).")
    data_dir: Path = Field(Path("data"), description="Holds packhouse.db and files/ by default.")
    database_url: str | None = Field(
        None, description="SQLAlchemy async URL; default sqlite+aiosqlite:///DATA_DIR/packhouse.db."
    )
    files_dir: Path | None = Field(None, description="Where files are stored; default DATA_DIR/files.")
    storage: str | None = Field(
        None,
        description="Where files are stored: s3://BUCKET/PREFIX for S3-compatible object storage "
        "(AWS S3, MinIO, Ceph, R2; credentials and region the standard AWS way); default: FILES_DIR.",
    )
    s3_endpoint_url: str | None = Field(None, description="S3 endpoint, e.g. http://minio:9000 (unset: AWS S3 itself).")
    s3_delivery: Literal["stream", "redirect"] = Field(
        "stream",
        description="Downloads from S3: 'stream' through Packhouse (Range supported), or 'redirect' "
        "(302) to a short-lived presigned URL. File URLs seen by pip and uv never change.",
    )
    s3_presign_expires: int = Field(300, gt=0, description="Lifetime of a presigned URL, in seconds.")
    s3_public_endpoint_url: str | None = Field(
        None,
        description="Endpoint that clients can reach, used in presigned URLs when the servers reach "
        "the store under another name (e.g. http://minio:9000 inside compose). Default: S3_ENDPOINT_URL.",
    )
    passwords: str | None = Field(
        None, description="htpasswd file (bcrypt, SHA1 or apr1 entries), or '.' for none (pypiserver: -P)."
    )
    authenticate: str | None = Field(
        None,
        description="Actions that need a password: update, download, list, comma-separated, or '.' "
        "for none (pypiserver: -a). Default: 'update' when a passwords file is given.",
    )
    login_failures: int = Field(
        10,
        ge=0,
        description="Wrong passwords one client may give for one user within LOGIN_FAILURE_WINDOW "
        "seconds; past that, that user's logins from that client are refused (429) until the window "
        "moves on. 0: no limit. Counted in the database, the same for every worker and replica.",
    )
    login_failure_window: float = Field(
        300.0, gt=0, description="Seconds over which failed logins are counted (LOGIN_FAILURES)."
    )
    max_upload_size: ByteSize = Field(1024**3, gt=0, description="Largest accepted upload, e.g. 1G.")
    overwrite: bool = Field(False, description="Allow replacing a file with other bytes (pypiserver: -o).")
    body_timeout: float = Field(
        60.0, gt=0, description="Seconds an upload may stall without sending data before it is dropped."
    )
    max_header_size: ByteSize = Field(
        64 * 1024, description="Largest request head (request line + headers); larger gets 431."
    )
    header_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds a client has to send a complete request head (and keep-alive idle time).",
    )
    workers: int = Field(1, ge=1, description="uvicorn worker processes.")
    ssl_certfile: Path | None = Field(
        None,
        description="Serve HTTPS with this PEM certificate (chain): no proxy needed to keep passwords "
        "off the wire. The key too, unless SSL_KEYFILE is given.",
    )
    ssl_keyfile: Path | None = Field(None, description="The certificate's private key (PEM, not encrypted).")
    realm: str = Field("packhouse", description="HTTP Basic realm.")
    log_level: LogLevel = Field("info", description="uvicorn log level: " + ", ".join(LOG_LEVELS) + ".")
    # --- pypiserver compatibility and operations (issue 4) ---
    packages_dir: Path | None = Field(
        None,
        description="pypiserver mode (packhouse run): serve this folder in place; uploads are stored "
        "flat in it and the database lives in PACKAGES_DIR/.packhouse/ (pypiserver: PACKAGES_DIR).",
    )
    extra_packages_dirs: str | None = Field(
        None,
        description="pypiserver's further PACKAGES_DIRs, separated by the OS path separator (':'): "
        "served beside packages_dir. Uploads go to packages_dir; a delete removes a file where it lies, as "
        "pypiserver's does.",
    )
    rescan_interval: float = Field(
        30.0, ge=0, description="Seconds between rescans of packages_dir for files added by hand; 0: never."
    )
    fallback_url: str | None = Field(
        None,
        description="Redirect unknown projects here (pypiserver: --fallback-url). Off by default: a "
        "fallback to a public index invites dependency confusion.",
    )
    health_endpoint: str = Field("/health", pattern=r"^/", description="Liveness path (pypiserver: --health-endpoint).")
    hash_algo: str = Field("sha256", description="Link hash (pypiserver: --hash-algo); Packhouse always links sha256.")
    metrics: bool = Field(True, description="Serve Prometheus metrics at /metrics.")
    metrics_auth: bool | None = Field(
        None,
        description="/metrics needs the credentials of any htpasswd user: true, false (open to anyone), "
        "or unset: as the index's pages (a login when --authenticate includes list).",
    )
    access_log: bool = Field(True, description="Log every request (uvicorn access log).")
    log_format: str = Field("text", pattern="^(text|json)$", description="Log lines as text or JSON.")
    x_accel_redirect: str | None = Field(
        None,
        description="Behind nginx: the internal location (e.g. /_packhouse_files/) that aliases the files "
        "folder; downloads answer with X-Accel-Redirect and nginx sends the bytes (sendfile).",
    )
    x_sendfile: bool = Field(
        False, description="Behind Apache (mod_xsendfile) or lighttpd: answer downloads with X-Sendfile."
    )

    @field_validator("data_dir", "files_dir", "packages_dir", mode="before")
    @classmethod
    def _check_not_empty(cls, value: object) -> object:
        # Path("") is the current folder: an unset variable in a script must not put the data there.
        if isinstance(value, str) and not value:
            raise ValueError("an empty path; give a folder (or leave the setting out for its default)")
        return value

    @field_validator("max_header_size")
    @classmethod
    def _check_max_header_size(cls, size: int) -> int:
        # The head of an ordinary pip or twine request (with Authorization) takes a few hundred bytes.
        if size < MIN_HEADER_SIZE:
            raise ValueError(
                f"{size} bytes is below the minimum of 1K: ordinary requests would be refused with 431 "
                "(the default is 64K)"
            )
        return size

    @field_validator("fallback_url")
    @classmethod
    def _check_fallback_url(cls, url: str | None) -> str | None:
        # pip follows the redirect: only an http(s) index makes sense (pypiserver's example is
        # https://pypi.org/simple/); "not a url" became a Location of "not%20a%20url/<project>/".
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
            raise ValueError(f"{url!r} is not an http(s) URL of a simple index, e.g. https://pypi.org/simple/")
        return url

    @field_validator("realm")
    @classmethod
    def _check_realm(cls, realm: str) -> str:
        # RFC 9110 11.5: the realm is a quoted-string in WWW-Authenticate. CR/LF would split the
        # header (and the server refuses to send it: every 401 would be an empty reply).
        if not realm:
            raise ValueError("cannot be empty: it names the login in browsers and clients (default: packhouse)")
        if not all(" " <= c <= "~" and c not in '"\\' for c in realm):
            raise ValueError(
                f"{realm!r}: the realm is sent in the WWW-Authenticate header; use printable ASCII "
                "characters, without '\"' or '\\' (default: packhouse)"
            )
        return realm

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, url: str | None) -> str | None:
        if url is not None and (problem := database_url_problem(url)):
            raise ValueError(problem)
        return url

    @model_validator(mode="after")
    def _check(self) -> Settings:
        parse_actions(self.authenticate)  # raises ValueError with a readable message
        if self.storage and (not self.storage.startswith("s3://") or not urlsplit(self.storage).netloc):
            raise ValueError(
                f"storage {self.storage!r}: use s3://BUCKET/PREFIX, or leave it unset for local files "
                "(PACKHOUSE_FILES_DIR)"
            )
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ValueError("--ssl-keyfile is given without --ssl-certfile: give the certificate too")
        if self.required_actions and self.passwords_file is None:
            raise ValueError(
                f"--authenticate {self.authenticate} needs a passwords file: give --passwords FILE "
                "(an htpasswd file), or --authenticate . for an open server"
            )
        if self.metrics_auth and self.passwords_file is None:
            raise ValueError("--metrics-auth needs a passwords file (--passwords FILE) to check logins against")
        return self

    @property
    def passwords_file(self) -> Path | None:
        if self.passwords in (None, "", "."):
            return None
        return Path(self.passwords)

    @property
    def required_actions(self) -> frozenset[Action]:
        actions = parse_actions(self.authenticate)
        if actions is None:  # not given: pypiserver's default
            return frozenset({Action.UPDATE}) if self.passwords_file else frozenset()
        return actions

    @property
    def metrics_login_required(self) -> bool:
        """/metrics tells whoever asks how many projects and files there are and the traffic by
        route: unless told otherwise, it is as private as the index's pages."""
        if self.metrics_auth is not None:
            return self.metrics_auth
        return Action.LIST in self.required_actions

    @property
    def anonymous_upload(self) -> bool:
        """Safe by default: without passwords, only a loopback server (or an explicit
        ``--authenticate .``) accepts anonymous uploads."""
        if Action.UPDATE in self.required_actions:
            return False
        return self.authenticate is not None or is_loopback(self.host)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.state_dir / 'packhouse.db'}"

    @property
    def effective_files_dir(self) -> Path:
        if self.packages_dir is not None:
            return self.files_dir or self.packages_dir
        return self.files_dir or self.data_dir / "files"

    @property
    def extra_packages_dirs_list(self) -> list[Path]:
        return [Path(p) for p in (self.extra_packages_dirs or "").split(os.pathsep) if p]

    @property
    def state_dir(self) -> Path:
        """Where the SQLite database lives: DATA_DIR, or (pypiserver mode) a hidden folder in
        PACKAGES_DIR, so the package folder stays a valid pypiserver folder."""
        return self.packages_dir / ".packhouse" if self.packages_dir is not None else self.data_dir
