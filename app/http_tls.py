"""A renewed TLS certificate is served without a restart (``--ssl-certfile``, ``--ssl-keyfile``).

uvicorn loads the certificate once, at start. certbot, acme.sh and an organisation's own CA
renew certificates every few weeks, and a server that keeps the old one answers with an expired
certificate until someone restarts it. So each worker compares the files' modification times as
connections arrive (two ``stat`` calls per new connection, next to a TLS handshake's
milliseconds). When they changed, the files are loaded into uvicorn's own ``SSLContext``; from
then on new connections get the new certificate, and open ones keep theirs.

The files are read once into a private temporary folder, and that copy is checked in a fresh
context before the live one takes it. OpenSSL loads a certificate before its key, so a key that
does not match would otherwise leave the live context with no usable certificate at all.
Renewals are often caught half written, or with the certificate renewed before its key: such a
state is logged once, and the old certificate stays until the files change again.
"""

from __future__ import annotations

import logging
import os
import ssl
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app import http_reason

log = logging.getLogger("packhouse.tls")

#: When this process loaded its certificate, at the latest (uvicorn imports the protocol, and so
#: this module, before it creates the context): files changed after it are newer than what it serves.
LOADED_AT = time.time()

Stamp = tuple[tuple[int, int, int] | None, ...]


class CertificateReloader:
    def __init__(self, certfile: str | os.PathLike[str], keyfile: str | os.PathLike[str] | None) -> None:
        self.paths = [Path(certfile), *([Path(keyfile)] if keyfile else [])]
        self.served: Stamp | None = None  # the files as last loaded (None: as at LOADED_AT)
        self.refused: Stamp | None = None  # the files as last found unusable

    def check(self, context: ssl.SSLContext) -> None:
        """Load the files into ``context`` if they changed since it last loaded them."""
        stamp = self._stamp()
        if stamp == self.served or stamp == self.refused:
            return
        if self.served is None and all(s is not None and s[0] / 1e9 <= LOADED_AT for s in stamp):
            self.served = stamp  # unchanged since this process loaded them
            return
        try:
            _load_checked(context, self.paths)
        except (OSError, ssl.SSLError, ValueError) as exc:
            self.refused = stamp
            log.warning(
                "the TLS certificate files changed, but cannot be loaded (%s); still serving the previous "
                "certificate until they change again",
                exc,
            )
            return
        self.served, self.refused = stamp, None
        log.info("TLS certificate reloaded from %s", ", ".join(map(str, self.paths)))

    def _stamp(self) -> Stamp:
        out = []
        for path in self.paths:
            try:
                st = path.stat()  # follows links: certbot's live/ names are links to the archive
            except OSError:
                out.append(None)
            else:
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(out)


def _load_checked(context: ssl.SSLContext, paths: list[Path]) -> None:
    """Load ``paths`` (certificate, then key if apart) into ``context``, from one snapshot of them
    that a fresh context has loaded first. Raises OSError, ssl.SSLError or ValueError (encrypted)."""

    def no_passphrase() -> str:
        raise ValueError("the key is encrypted")

    with tempfile.TemporaryDirectory(prefix="packhouse-tls-") as folder:  # 0700: the key's copy is private
        copies = []
        for i, path in enumerate(paths):
            copy = Path(folder, f"{i}.pem")
            copy.write_bytes(path.read_bytes())
            copies.append(str(copy))
        certfile, keyfile = copies[0], (copies[1] if len(copies) > 1 else None)
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(certfile, keyfile, password=no_passphrase)
        context.load_cert_chain(certfile, keyfile, password=no_passphrase)


#: What a plain HTTP request to the HTTPS port is told (nginx and Go answer it with a 400 too).
PLAIN_HTTP_DETAIL = (
    "This port speaks HTTPS, and the request came in plain HTTP (any password in it went unencrypted): "
    "use an https:// URL (in pip.conf, ~/.pypirc, or the --index-url / --repository-url given)."
)


class _AnswersPlainHttp(ssl.SSLObject):
    """A TLS connection's SSL object that answers a plain HTTP request with a 400 saying so, where
    a client would otherwise see the connection closed without a word (pip: "Remote end closed
    connection without response", retried five times).

    OpenSSL recognises a request line where a TLS handshake should be (the HTTP_REQUEST error).
    The answer is written to the connection's outgoing buffer, and the handshake reports that it
    wants more data: the TLS layer (asyncio's or uvloop's) sends what is in that buffer, in clear,
    and waits. The client reads the 400 and closes; if it sends more, the handshake fails as before.
    SSLContext.sslobject_class is the documented way in; the outgoing buffer is taken from
    SSLObject._create, and without it (another Python) the connection is closed as uvicorn does."""

    _packhouse_outgoing: ssl.MemoryBIO | None = None
    _packhouse_answered = False

    @classmethod
    def _create(cls, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, *args: Any, **kwargs: Any) -> Any:
        obj = super()._create(incoming, outgoing, *args, **kwargs)  # type: ignore[misc]
        obj._packhouse_outgoing = outgoing
        return obj

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except ssl.SSLError as exc:
            outgoing = self._packhouse_outgoing
            plain = exc.reason in ("HTTP_REQUEST", "HTTPS_PROXY_REQUEST")
            if not plain or outgoing is None or self._packhouse_answered:
                raise
            self._packhouse_answered = True
            outgoing.write(_PLAIN_HTTP)
            raise ssl.SSLWantReadError("a plain HTTP request, answered with a 400") from exc


_PLAIN_HTTP = http_reason.raw_problem(400, "Bad Request", PLAIN_HTTP_DETAIL)


def context_factory(config: object, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """uvicorn's ``ssl_context_factory``: its own context, answering plain HTTP with a 400."""
    context = default()
    context.sslobject_class = _AnswersPlainHttp
    return context


def reloader(config: object) -> CertificateReloader:
    """The reloader of uvicorn's ``config`` (its ``ssl_certfile`` and ``ssl_keyfile``), made once."""
    found = getattr(config, "_packhouse_tls_reloader", None)
    if found is None:
        found = CertificateReloader(config.ssl_certfile, config.ssl_keyfile)  # type: ignore[attr-defined]
        config._packhouse_tls_reloader = found  # type: ignore[attr-defined]
    return found
