"""The one validated configuration object.

Every field is also an environment variable with the ``PACKHOUSE_`` prefix
(``PACKHOUSE_PORT``, ``PACKHOUSE_DATA_DIR`` ...). Only the composition root
(``app.main`` and ``app.cli``) reads this module; everything below receives plain values.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.auth.policy import Action, parse_actions

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
    passwords: str | None = Field(
        None, description="htpasswd file (bcrypt, SHA1 or apr1 entries), or '.' for none (pypiserver: -P)."
    )
    authenticate: str | None = Field(
        None,
        description="Actions that need a password: update, download, list, comma-separated, or '.' "
        "for none (pypiserver: -a). Default: 'update' when a passwords file is given.",
    )
    max_upload_size: ByteSize = Field(1024**3, gt=0, description="Largest accepted upload, e.g. 1G.")
    overwrite: bool = Field(False, description="Allow replacing a file with other bytes (pypiserver: -o).")
    workers: int = Field(1, ge=1, description="uvicorn worker processes.")
    realm: str = Field("packhouse", description="HTTP Basic realm.")
    log_level: str = Field("info", description="uvicorn log level.")
    x_accel_redirect: str | None = Field(
        None,
        description="Behind nginx: the internal location (e.g. /_packhouse_files/) that aliases the files "
        "folder; downloads answer with X-Accel-Redirect and nginx sends the bytes (sendfile).",
    )
    x_sendfile: bool = Field(
        False, description="Behind Apache (mod_xsendfile) or lighttpd: answer downloads with X-Sendfile."
    )

    @model_validator(mode="after")
    def _check(self) -> Settings:
        parse_actions(self.authenticate)  # raises ValueError with a readable message
        if self.required_actions and self.passwords_file is None:
            raise ValueError(
                f"--authenticate {self.authenticate} needs a passwords file: give --passwords FILE "
                "(an htpasswd file), or --authenticate . for an open server"
            )
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
    def anonymous_upload(self) -> bool:
        """Safe by default: without passwords, only a loopback server (or an explicit
        ``--authenticate .``) accepts anonymous uploads."""
        if Action.UPDATE in self.required_actions:
            return False
        return self.authenticate is not None or is_loopback(self.host)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'packhouse.db'}"

    @property
    def effective_files_dir(self) -> Path:
        return self.files_dir or self.data_dir / "files"
