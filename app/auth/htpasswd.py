"""Apache htpasswd files: bcrypt ($2y$/$2b$/$2a$), SHA1 ({SHA}) and apr1-MD5 ($apr1$) verify.

No passlib (unmaintained, and broken with bcrypt 5): bcrypt via the ``bcrypt`` package, SHA1 via
hashlib, apr1 is the MD5-crypt algorithm implemented below. The file is re-read when its mtime or
size changes. bcrypt runs in a worker thread behind a short cache, so a ``pip install`` of many
files does not pay ~200 ms of bcrypt per request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import tempfile
import time
from pathlib import Path

import anyio
import bcrypt

log = logging.getLogger("packhouse.auth")  # under the server's logging setup (level, JSON)

# Checked for unknown users so that their response time matches a real user's (no timing oracle).
# A constant (bcrypt.hashpw(b"packhouse-dummy", gensalt(rounds=10))): hashing at import cost ~100 ms
# of every start.
_DUMMY_HASH = b"$2b$10$osFYHhysxtcuQXvv/JUuCuG9zjdGQyFdlpo7Fr4xSGoHTPeSOfB1q"
_CACHE_SECONDS = 60.0
_APR1_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def apr1_crypt(password: bytes, salt: bytes, magic: bytes = b"$apr1$") -> str:
    """MD5-crypt (FreeBSD / Apache apr1 flavour), as written by ``htpasswd -m``."""
    salt = salt[:8]
    ctx = hashlib.md5(password + magic + salt, usedforsecurity=False)
    alt = hashlib.md5(password + salt + password, usedforsecurity=False).digest()
    for i in range(len(password), 0, -16):
        ctx.update(alt[: min(16, i)])
    i = len(password)
    while i:
        ctx.update(b"\x00" if i & 1 else password[:1])
        i >>= 1
    final = ctx.digest()
    for i in range(1000):
        c = hashlib.md5(usedforsecurity=False)
        c.update(password if i & 1 else final)
        if i % 3:
            c.update(salt)
        if i % 7:
            c.update(password)
        c.update(final if i & 1 else password)
        final = c.digest()

    def b64(a: int, b: int, c: int, n: int) -> str:
        v = (a << 16) | (b << 8) | c
        out = ""
        for _ in range(n):
            out += _APR1_ALPHABET[v & 0x3F]
            v >>= 6
        return out

    f = final
    encoded = (
        b64(f[0], f[6], f[12], 4)
        + b64(f[1], f[7], f[13], 4)
        + b64(f[2], f[8], f[14], 4)
        + b64(f[3], f[9], f[15], 4)
        + b64(f[4], f[10], f[5], 4)
        + b64(0, 0, f[11], 2)
    )
    return f"{magic.decode()}{salt.decode()}${encoded}"


def verify_hash(password: str, hashed: str) -> bool:
    """Check one password against one htpasswd hash. Blocking for bcrypt."""
    pw = password.encode("utf-8")
    if hashed.startswith(("$2y$", "$2b$", "$2a$")):
        if len(pw) > 72:
            return False  # bcrypt 5 raises on these; such a password can never have been set
        try:
            return bcrypt.checkpw(pw, hashed.encode("ascii"))
        except ValueError:
            return False
    if hashed.startswith("{SHA}"):
        digest = base64.b64encode(hashlib.sha1(pw, usedforsecurity=False).digest()).decode()
        return hmac.compare_digest(digest, hashed[5:])
    if hashed.startswith("$apr1$"):
        salt = hashed[6:].split("$", 1)[0]
        return hmac.compare_digest(apr1_crypt(pw, salt.encode()), hashed)
    return False


def hash_password(password: str) -> str:
    """New entries are always bcrypt (written as $2y$, the form Apache's tools use)."""
    pw = password.encode("utf-8")
    if len(pw) > 72:
        raise ValueError("bcrypt passwords are limited to 72 bytes; choose a shorter password")
    return "$2y$" + bcrypt.hashpw(pw, bcrypt.gensalt(rounds=12)).decode()[4:]


def parse_htpasswd(text: str, source: str = "htpasswd") -> dict[str, str]:
    users: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user:
            log.warning("%s:%d: not a 'user:hash' line; ignored", source, lineno)
            continue
        if not hashed.startswith(("$2y$", "$2b$", "$2a$", "{SHA}", "$apr1$")):
            log.warning(
                "%s:%d: user %r has an unsupported hash (DES crypt truncates passwords to 8 "
                "characters; plaintext is unsafe); re-create it with 'packhouse user passwd' or "
                "'htpasswd -B'. This user cannot log in.",
                source,
                lineno,
                user,
            )
            continue
        users[user] = hashed
    return users


class HtpasswdAuthenticator:
    """An Authenticator over an htpasswd file, reloaded when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._users: dict[str, str] = {}
        self._cache: dict[bytes, float] = {}
        self._unreadable = False  # warned once until the file can be read again
        self._reload()

    def _reload(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._stamp is not None or not self._users:
                log.warning("passwords file %s does not exist: nobody can log in", self.path)
            self._stamp, self._users = None, {}
            return
        except OSError as exc:
            self._cannot_read(exc)
            return
        # The inode too: 'packhouse user' replaces the file atomically, maybe within one mtime tick.
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._stamp:
            try:
                text = self.path.read_text("utf-8", errors="replace")
            except OSError as exc:  # unreadable (mode, a directory, ...), or replaced meanwhile
                self._cannot_read(exc)
                return
            self._users = parse_htpasswd(text, str(self.path))
            self._stamp = stamp
            self._cache.clear()
            self._unreadable = False

    def _cannot_read(self, exc: OSError) -> None:
        """Keep the users read before (a chmod gone wrong must not lock everybody out, nor answer
        500), and say so once; the file is tried again on every request."""
        if not self._unreadable:
            log.warning(
                "cannot read passwords file %s (%s): keeping the %d user(s) read before",
                self.path,
                exc.strerror or exc,
                len(self._users),
            )
            self._unreadable = True

    @property
    def usernames(self) -> list[str]:
        self._reload()
        return sorted(self._users)

    async def verify(self, username: str, password: str) -> bool:
        self._reload()
        hashed = self._users.get(username)
        key = hashlib.sha256(f"{username}\0{password}\0{hashed}".encode()).digest()
        now = time.monotonic()
        if hashed is not None and self._cache.get(key, 0.0) > now:
            return True
        if hashed is None:
            await anyio.to_thread.run_sync(verify_hash, password, _DUMMY_HASH.decode())
            return False
        ok = await anyio.to_thread.run_sync(verify_hash, password, hashed)
        if ok:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = now + _CACHE_SECONDS
        return ok


def edit_htpasswd(path: Path, username: str, hashed: str | None) -> bool:
    """Set (``hashed``) or remove (``None``) one user's line, atomically: the new file is written
    beside the old one and renamed over it, so a running server never reads half a file (and sees
    the change by its mtime). Other lines, comments and hash formats are kept. The file is created
    if missing. Returns whether the user existed before."""
    if not username or ":" in username or any(c.isspace() for c in username):
        raise ValueError(f"invalid user name {username!r} (no ':' or spaces)")
    try:
        lines = path.read_text("utf-8").splitlines()
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        lines, mode = [], 0o640
    existed = False
    out = []
    for line in lines:
        if line.partition(":")[0].strip() == username and not line.lstrip().startswith("#"):
            existed = True
            if hashed is not None:
                out.append(f"{username}:{hashed}")
                hashed = None  # written once
            continue
        out.append(line)
    if hashed is not None:
        out.append(f"{username}:{hashed}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("".join(f"{line}\n" for line in out))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return existed
