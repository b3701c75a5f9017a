"""Failed logins counted per client address and user name; past the limit, that pair's logins are
refused (429) without checking the password, until the oldest failure leaves the window.

PyPI allows 10 failed logins per 5 minutes, per user and per address. Here the same figure counts
per (address, user) pair and nothing else, because Basic credentials come with every request of
every client: a count per address alone would let one build machine with a stale
password, behind the same NAT or proxy as a whole office, lock out every colleague's next login;
a count per user alone would let anyone who can reach the server lock a user out from everywhere.

A password checked right in the last minute (the authenticator's cache) is accepted even while its
pair is blocked: clients already logged in are not interrupted, and a blocked pair costs no hash.

An IPv6 client counts as its /64 network (one host or site usually has a whole /64 to pick
addresses from). The failures are kept in the metadata database (the ledger: app/db/logins.py), so
every worker and every replica counts the same ones, and a restart forgets none. The throttle only
reads it when a password has to be hashed (a login not cached), and writes it on a wrong password,
or on a right one after wrong ones.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Callable
from typing import Protocol

from app.errors import TooManyLoginFailuresError

log = logging.getLogger("packhouse.auth")

#: The part of a user name or an address a pair is keyed by: a Basic header may carry a name of
#: tens of kilobytes, and no real one is this long.
NAME_CHARS = 256


class LoginLedger(Protocol):
    """Where failures are kept (app/db/logins.py); times are seconds since the epoch."""

    async def recent(self, client: str, username: str, since: float, limit: int) -> list[float]: ...

    async def add(self, client: str, username: str, at: float, since: float, expired: float) -> int: ...

    async def forget(self, client: str, username: str) -> None: ...


class LoginThrottle:
    def __init__(
        self,
        failures: int,
        window: float,
        ledger: LoginLedger | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.failures = failures
        self.window = window
        self.ledger = ledger
        self._clock = clock
        # Failures before this moment do not count: the passwords file changed then (reset()).
        self._floor = 0.0

    @property
    def enabled(self) -> bool:
        return self.failures > 0 and self.ledger is not None

    def reset(self, changed_at: float) -> None:
        """The passwords file changed at ``changed_at`` (its modification time): failures from
        before then no longer count. Every worker reads the same time from the file, so they all
        forget the same failures, whichever notices the change first. A time ahead of the clock
        counts as now."""
        self._floor = min(changed_at, self._clock())

    async def check(self, client: str, username: str) -> int:
        """The pair's failures on record (0: none, nothing to forget on success).

        Raises:
            TooManyLoginFailuresError: this pair has used up its failures.
        """
        if not self.enabled:
            return 0
        assert self.ledger is not None
        now = self._clock()
        times = await self.ledger.recent(*_key(client, username), self._since(now), self.failures)
        if len(times) < self.failures:
            return len(times)
        # The oldest of the last `failures` leaves the window then; never later than a window away
        # (a clock set back would otherwise stretch the wait).
        wait = min(times[-1] + self.window - now, self.window)
        seconds = max(1, math.ceil(wait))
        raise TooManyLoginFailuresError(
            f"Too many failed logins for {username!r} from {client}: {len(times)} wrong "
            f"password{'' if len(times) == 1 else 's'} in "
            f"the last {_span(self.window)}. Logins are refused for {seconds} s; then check the "
            "credentials in your ~/.pypirc, pip.conf or keyring before trying again.",
            retry_after=seconds,
        )

    async def failed(self, client: str, username: str) -> None:
        if not self.enabled:
            return
        assert self.ledger is not None
        now = self._clock()
        try:
            count = await self.ledger.add(*_key(client, username), now, self._since(now), now - self.window)
        except Exception:  # noqa: BLE001 - a wrong password stays a 401 when it cannot be recorded
            log.warning("could not record a failed login for %r from %s", username[:NAME_CHARS], client, exc_info=True)
            return
        if count == self.failures:
            log.warning(
                "%d failed login%s for %r from %s within %s: its logins from there are refused (429, "
                "unchecked) for up to %s",
                self.failures, "" if self.failures == 1 else "s", username[:NAME_CHARS], client[:NAME_CHARS],
                _span(self.window), _span(self.window),
            )  # fmt: skip

    async def succeeded(self, client: str, username: str, on_record: int) -> None:
        """A right password clears the pair's failures (a few typos are forgotten once it is right).
        ``on_record``: what check() returned; with none, nothing is written."""
        if not on_record or not self.enabled:
            return
        assert self.ledger is not None
        try:
            await self.ledger.forget(*_key(client, username))
        except Exception:  # noqa: BLE001 - the login itself succeeded
            log.warning("could not clear the failed logins of %r from %s", username[:NAME_CHARS], client, exc_info=True)

    def _since(self, now: float) -> float:
        return max(now - self.window, self._floor)


def _key(client: str, username: str) -> tuple[str, str]:
    # NUL is valid UTF-8 in a Basic header, but PostgreSQL's text cannot hold it.
    return _network(client).replace("\0", "\ufffd"), username[:NAME_CHARS].replace("\0", "\ufffd")


def _network(client: str) -> str:
    """An IPv6 address counts as its /64: one host or site usually holds a whole /64, and could
    otherwise give each guess an address of its own. IPv4 (and IPv4-mapped IPv6) as it is."""
    try:
        ip = ipaddress.ip_address(client)
    except ValueError:
        return client[:NAME_CHARS]  # not an address: a Unix socket's "unknown", a proxy's odd value
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _span(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} s"
