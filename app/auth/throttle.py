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
addresses from). Counts live in the process: with ``--workers N`` (or N replicas) a client gets up
to N times the limit, each process answering for the failures it saw.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from app.errors import TooManyLoginFailuresError

log = logging.getLogger("packhouse.auth")

#: Pairs tracked at most. Each is under a kilobyte (names are cut to NAME_CHARS); past this the
#: pair whose last failure is the oldest is forgotten first, so an attacker cycling through
#: addresses or names cannot make the process grow without bound (and each of those failures
#: costs them a password check: the slow hash runs a few at a time).
MAX_TRACKED = 20_000
#: The part of a user name or an address a pair is keyed by: a Basic header may carry a name of
#: tens of kilobytes, and no real one is this long.
NAME_CHARS = 256


class LoginThrottle:
    def __init__(self, failures: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.window = window
        self._clock = clock
        self._seen: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.failures > 0

    def check(self, client: str, username: str) -> None:
        """Raises TooManyLoginFailuresError when this pair has used up its failures."""
        if not self.enabled:
            return
        times = self._seen.get(_key(client, username))
        if times is None or len(times) < self.failures:
            return
        wait = times[0] + self.window - self._clock()
        if wait <= 0:
            return
        seconds = math.ceil(wait)
        raise TooManyLoginFailuresError(
            f"Too many failed logins for {username!r} from {client}: {len(times)} wrong "
            f"password{'' if len(times) == 1 else 's'} in "
            f"the last {_span(self.window)}. Logins are refused for {seconds} s; then check the "
            "credentials in your ~/.pypirc, pip.conf or keyring before trying again.",
            retry_after=seconds,
        )

    def failed(self, client: str, username: str) -> None:
        if not self.enabled:
            return
        now = self._clock()
        key = _key(client, username)
        times = self._seen.pop(key, None)
        if times is None:
            times = deque(maxlen=self.failures)
        while times and times[0] + self.window <= now:
            times.popleft()
        times.append(now)
        self._seen[key] = times  # moved to the end: the most recent failure
        if len(times) == self.failures:
            log.warning(
                "%d failed login%s for %r from %s within %s: its logins from there are refused (429, "
                "unchecked) for up to %s",
                self.failures, "" if self.failures == 1 else "s", username[:NAME_CHARS], client[:NAME_CHARS],
                _span(self.window), _span(self.window),
            )  # fmt: skip
        while len(self._seen) > MAX_TRACKED:
            self._seen.popitem(last=False)

    def succeeded(self, client: str, username: str) -> None:
        """A right password clears the pair's failures (a few typos are forgotten once it is right)."""
        if self._seen:
            self._seen.pop(_key(client, username), None)

    def clear(self) -> None:
        """Forget every failure (the passwords file changed)."""
        self._seen.clear()

    @property
    def tracked(self) -> int:
        """How many (client, user) pairs have failures on record."""
        return len(self._seen)


def _key(client: str, username: str) -> tuple[str, str]:
    return _network(client), username[:NAME_CHARS]


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
