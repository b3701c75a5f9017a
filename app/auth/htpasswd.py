"""Apache htpasswd files: bcrypt ($2y$/$2b$/$2a$), SHA1 ({SHA}), apr1-MD5 ($apr1$), and the
crypt(3) schemes pypiserver (passlib) also accepted: SHA-256-crypt ($5$), SHA-512-crypt ($6$) and
MD5-crypt ($1$), as ``htpasswd -2``/``-5`` and ``openssl passwd -5``/``-6``/``-1`` write them.

No passlib (unmaintained, and broken with bcrypt 5), and no ``crypt`` module (removed in Python
3.13): bcrypt via the ``bcrypt`` package, SHA1 via hashlib, MD5-crypt (apr1 and $1$) and SHA-crypt
are implemented below on hashlib (SHA-crypt as specified by Ulrich Drepper; tests check all of
them against Apache's htpasswd and openssl). DES crypt and plaintext entries are refused.

The file is re-read when its mtime or size changes. bcrypt runs in a worker thread behind a short
cache, so a ``pip install`` of many files does not pay ~200 ms of bcrypt per request.
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

from app.auth.throttle import LoginThrottle

log = logging.getLogger("packhouse.auth")  # under the server's logging setup (level, JSON)

# Checked for unknown users when the file has no users at all (see HtpasswdAuthenticator._stand_in).
# A constant (bcrypt.hashpw(b"packhouse-dummy", gensalt(rounds=10))): hashing at import cost ~100 ms
# of every start.
_DUMMY_HASH = b"$2b$10$osFYHhysxtcuQXvv/JUuCuG9zjdGQyFdlpo7Fr4xSGoHTPeSOfB1q"
_CACHE_SECONDS = 60.0
#: Password checks run at once per process. Hashing is CPU work (bcrypt ~250 ms at cost 12), so
#: more threads than cores only share them; the checks beyond wait their turn without holding a
#: worker thread, and a flood of wrong passwords cannot take the threads that downloads use.
HASH_THREADS = max(2, os.cpu_count() or 2)
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

    f, b64 = final, _b64_24
    encoded = (
        b64(f[0], f[6], f[12], 4)
        + b64(f[1], f[7], f[13], 4)
        + b64(f[2], f[8], f[14], 4)
        + b64(f[3], f[9], f[15], 4)
        + b64(f[4], f[10], f[5], 4)
        + b64(0, 0, f[11], 2)
    )
    return f"{magic.decode()}{salt.decode()}${encoded}"


# SHA-crypt's output order of the digest bytes, three at a time (Drepper's specification).
_SHA256_ORDER = [(0, 10, 20), (21, 1, 11), (12, 22, 2), (3, 13, 23), (24, 4, 14), (15, 25, 5), (6, 16, 26),
                 (27, 7, 17), (18, 28, 8), (9, 19, 29)]  # fmt: skip
_SHA512_ORDER = [(0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4), (47, 5, 26), (6, 27, 48),
                 (28, 49, 7), (50, 8, 29), (9, 30, 51), (31, 52, 10), (53, 11, 32), (12, 33, 54), (34, 55, 13),
                 (56, 14, 35), (15, 36, 57), (37, 58, 16), (59, 17, 38), (18, 39, 60), (40, 61, 19),
                 (62, 20, 41)]  # fmt: skip
_SHA_CRYPT_DEFAULT_ROUNDS = 5000
#: A longer password never logs in, whatever the hash: passlib (pypiserver) refused them too
#: (MAX_PASSWORD_SIZE), and SHA-crypt hashes the password once per byte of it, each round again,
#: so one Basic header of 48 KB would cost seconds of CPU.
MAX_PASSWORD_BYTES = 4096
#: More rounds than this are refused (each costs a few microseconds here, off the event loop, and
#: a failed login is not cached): htpasswd and openssl write 5000 unless told otherwise.
SHA_CRYPT_MAX_ROUNDS = 500_000


def _b64_24(a: int, b: int, c: int, n: int) -> str:
    """Three bytes as ``n`` characters of crypt's base-64 alphabet, least significant first."""
    v = (a << 16) | (b << 8) | c
    out = ""
    for _ in range(n):
        out += _APR1_ALPHABET[v & 0x3F]
        v >>= 6
    return out


def _sha_crypt_parts(hashed: str) -> tuple[str, int, str, str]:
    """``$5$[rounds=N$]salt$checksum`` -> (magic, rounds, salt, checksum). Raises ValueError."""
    magic, rest = hashed[:3], hashed[3:]
    if magic not in ("$5$", "$6$"):
        raise ValueError("not a SHA-crypt hash")
    rounds = _SHA_CRYPT_DEFAULT_ROUNDS
    if rest.startswith("rounds="):
        text, sep, rest = rest[len("rounds=") :].partition("$")
        if not sep or not text.isdigit():
            raise ValueError("malformed rounds=")
        rounds = min(max(int(text), 1000), 999_999_999)  # the specification clamps it
    salt, sep, checksum = rest.partition("$")
    if not sep or not checksum:
        raise ValueError("no checksum")
    return magic, rounds, salt[:16], checksum


def sha_crypt(password: bytes, salt: bytes, rounds: int, magic: str) -> str:
    """The checksum part of SHA-256-crypt (``magic`` "$5$") or SHA-512-crypt ("$6$")."""
    new, order, size = (hashlib.sha256, _SHA256_ORDER, 32) if magic == "$5$" else (hashlib.sha512, _SHA512_ORDER, 64)
    salt = salt[:16]
    plen = len(password)
    b = new(password + salt + password).digest()
    ctx = new(password + salt)
    for i in range(plen, 0, -size):
        ctx.update(b[: min(i, size)])
    i = plen
    while i:
        ctx.update(b if i & 1 else password)
        i >>= 1
    a = ctx.digest()
    ctx = new()
    for _ in range(plen):  # the password once per byte of it, hashed as it goes (not built in memory)
        ctx.update(password)
    dp = ctx.digest()
    p = (dp * (plen // size + 1))[:plen]
    ds = new(salt * (16 + a[0])).digest()
    s = (ds * (len(salt) // size + 1))[: len(salt)]
    c = a
    for r in range(rounds):
        ctx = new(p if r & 1 else c)
        if r % 3:
            ctx.update(s)
        if r % 7:
            ctx.update(p)
        ctx.update(c if r & 1 else p)
        c = ctx.digest()
    out = "".join(_b64_24(c[x], c[y], c[z], 4) for x, y, z in order)
    return out + (_b64_24(0, c[31], c[30], 3) if size == 32 else _b64_24(0, 0, c[63], 2))


def verify_hash(password: str, hashed: str) -> bool:
    """Check one password against one htpasswd hash. Blocking for bcrypt."""
    pw = password.encode("utf-8")
    if len(pw) > MAX_PASSWORD_BYTES:
        return False
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
    if hashed.startswith("$1$"):
        salt = hashed[3:].split("$", 1)[0]
        return hmac.compare_digest(apr1_crypt(pw, salt.encode(), b"$1$").encode(), hashed.encode())
    if hashed.startswith(("$5$", "$6$")):
        try:
            magic, rounds, salt, checksum = _sha_crypt_parts(hashed)
        except ValueError:
            return False
        if rounds > SHA_CRYPT_MAX_ROUNDS:
            return False
        return hmac.compare_digest(sha_crypt(pw, salt.encode(), rounds, magic).encode(), checksum.encode())
    return False


def hash_password(password: str) -> str:
    """New entries are always bcrypt (written as $2y$, the form Apache's tools use)."""
    pw = password.encode("utf-8")
    if len(pw) > 72:
        raise ValueError("bcrypt passwords are limited to 72 bytes; choose a shorter password")
    return "$2y$" + bcrypt.hashpw(pw, bcrypt.gensalt(rounds=12)).decode()[4:]


_DES = frozenset(_APR1_ALPHABET)


def hash_problem(hashed: str) -> str | None:
    """Why an htpasswd entry's hash cannot be used to log in, or None if it can."""
    if not hashed.isascii():  # every format is ASCII: a damaged line (and compare_digest refuses it)
        return "a damaged hash (it contains non-ASCII characters)"
    if hashed.startswith(("$2y$", "$2b$", "$2a$", "{SHA}", "$apr1$", "$1$")):
        return None
    if hashed.startswith(("$5$", "$6$")):
        try:
            rounds = _sha_crypt_parts(hashed)[1]
        except ValueError:
            return "a malformed SHA-crypt hash"
        if rounds > SHA_CRYPT_MAX_ROUNDS:
            return f"a SHA-crypt hash with {rounds} rounds, over Packhouse's limit of {SHA_CRYPT_MAX_ROUNDS}"
        return None
    if len(hashed) == 13 and set(hashed) <= _DES:
        return "a DES crypt hash (DES crypt truncates passwords to 8 characters; not supported by Packhouse)"
    if hashed.startswith("$"):
        return f"a hash format Packhouse does not support ({hashed.split('$')[1][:10]!r})"
    return "a plaintext password (unsafe; not supported by Packhouse)"


def htpasswd_entries(text: str) -> list[tuple[int, str, str | None, str | None]]:
    """Every line that is not blank or a comment: (line number, user, hash or None when the line
    is not 'user:hash', why the hash cannot log in or None)."""
    out: list[tuple[int, str, str | None, str | None]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user:
            out.append((lineno, user, None, "not a 'user:hash' line"))
        else:
            out.append((lineno, user, hashed, hash_problem(hashed)))
    return out


def parse_htpasswd(text: str, source: str = "htpasswd") -> dict[str, str]:
    users: dict[str, str] = {}
    for lineno, user, hashed, problem in htpasswd_entries(text):
        if hashed is None:
            log.warning("%s:%d: not a 'user:hash' line; ignored", source, lineno)
        elif problem:
            log.warning(
                "%s:%d: user %r has %s. This user cannot log in: set a new password with "
                "'packhouse user passwd %s --passwords %s' (bcrypt).",
                source, lineno, user, problem, user, source,
            )  # fmt: skip
        else:
            users[user] = hashed
    return users


class HtpasswdAuthenticator:
    """An Authenticator over an htpasswd file, reloaded when the file changes."""

    def __init__(self, path: Path, throttle: LoginThrottle | None = None) -> None:
        self.path = path
        self.throttle = throttle if throttle is not None else LoginThrottle(0, 0.0)
        self._stamp: tuple[int, int, int] | None = None
        self._users: dict[str, str] = {}
        self._cache: dict[bytes, float] = {}
        self._unreadable = False  # warned once until the file can be read again
        self._stand_in_key = os.urandom(16)
        self._hashing = anyio.CapacityLimiter(HASH_THREADS)
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
                # utf-8-sig: a BOM (Notepad writes one) must not become part of the first user's name.
                text = self.path.read_text("utf-8-sig", errors="replace")
            except OSError as exc:  # unreadable (mode, a directory, ...), or replaced meanwhile
                self._cannot_read(exc)
                return
            self._users = parse_htpasswd(text, str(self.path))
            self._stamp = stamp
            self._cache.clear()
            # A new password (or user) is a fresh start: an operator lifts a block by setting the
            # password of a user who locked themselves out ('packhouse user passwd').
            self.throttle.reset(st.st_mtime)
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

    async def verify(self, username: str, password: str, client: str | None = None) -> bool:
        """Whether the password is the user's. ``client`` (the peer's address) counts failures.

        Raises:
            TooManyLoginFailuresError: this client has given this user too many wrong passwords of
                late (app/auth/throttle.py); the password is not checked.
        """
        self._reload()
        hashed = self._users.get(username)
        key = hashlib.sha256(f"{username}\0{password}\0{hashed}".encode()).digest()
        now = time.monotonic()
        if hashed is not None and self._cache.get(key, 0.0) > now:
            return True
        client = client or "unknown"
        on_record = await self.throttle.check(client, username)
        # An unknown user's password is checked too, against a stand-in: the answer takes as long.
        ok = await anyio.to_thread.run_sync(
            verify_hash, password, hashed if hashed is not None else self._stand_in(username), limiter=self._hashing
        )
        if hashed is None or not ok:
            await self.throttle.failed(client, username)
            return False
        await self.throttle.succeeded(client, username, on_record)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = now + _CACHE_SECONDS
        return True

    def _stand_in(self, username: str) -> str:
        """The hash an unknown user's password is checked against (and refused whatever it gives),
        so that the answer takes as long as a real user's: a user of the file, picked by the name
        under a key of this process (the same user for the same name; nobody outside can tell
        which). A fixed bcrypt hash would not do: ``htpasswd -B`` writes cost 5 (~2 ms), SHA1 and
        apr1 take microseconds, 'packhouse user add' writes cost 12 (~250 ms), so a wrong password
        for a real name would answer faster or slower than for an unknown one."""
        hashes = list(self._users.values())
        if not hashes:
            return _DUMMY_HASH.decode()
        digest = hmac.new(self._stand_in_key, username.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
        return hashes[int.from_bytes(digest[:8], "big") % len(hashes)]


def username_problem(username: str) -> str | None:
    """Why ``username`` cannot be written as an htpasswd line that reads back as that user (None: it can)."""
    if not username:
        return "it is empty"
    if username.startswith("#"):
        return "a line that starts with '#' is a comment"
    if ":" in username:
        return "':' separates the name from the hash"
    try:
        username.encode("utf-8")
    except UnicodeEncodeError:
        return "it is not valid UTF-8"
    if any(c.isspace() or not c.isprintable() for c in username):
        return "it contains a space or a control character"
    return None


def edit_htpasswd(path: Path, username: str, hashed: str | None) -> bool:
    """Set (``hashed``) or remove (``None``) one user's line, atomically: the new file is written
    beside the old one and renamed over it, so a running server never reads half a file (and sees
    the change by its mtime). Other lines, comments and hash formats are kept. The file is created
    if missing. Returns whether the user existed before."""
    if problem := username_problem(username):
        raise ValueError(f"invalid user name {username!r}: {problem}")
    try:
        lines = path.read_text("utf-8-sig").splitlines()
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
