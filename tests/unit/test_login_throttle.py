"""Failed logins counted per (client, user): the window's arithmetic on a clock the test moves, and
the authenticator's use of it on a real htpasswd file (bcrypt, as `packhouse user add` writes)."""

from __future__ import annotations

import asyncio

import pytest

from app.auth import htpasswd, throttle
from app.auth.htpasswd import HtpasswdAuthenticator, hash_password
from app.auth.throttle import LoginThrottle
from app.errors import TooManyLoginFailuresError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_the_limit_is_reached_after_that_many_failures(clock):
    t = LoginThrottle(3, 60, clock)
    for _ in range(3):
        t.check("10.0.0.1", "alice")
        t.failed("10.0.0.1", "alice")
        clock.now += 1
    with pytest.raises(TooManyLoginFailuresError) as err:
        t.check("10.0.0.1", "alice")
    # The oldest failure (t=1000) leaves the window at 1060; it is 1003 now.
    assert err.value.retry_after == 57
    assert "Too many failed logins for 'alice' from 10.0.0.1" in err.value.detail
    assert "3 wrong passwords in the last 1 minute" in err.value.detail
    assert "57 s" in err.value.detail


def test_the_window_slides(clock):
    t = LoginThrottle(3, 60, clock)
    for _ in range(3):
        t.failed("c", "u")
        clock.now += 10  # failures at 1000, 1010, 1020
    clock.now = 1059.5
    with pytest.raises(TooManyLoginFailuresError) as err:
        t.check("c", "u")
    assert err.value.retry_after == 1  # rounded up: never an invitation to retry too early
    clock.now = 1060
    t.check("c", "u")  # the first failure has left the window
    t.failed("c", "u")  # ... and a new one fills it again until the second leaves (1070)
    with pytest.raises(TooManyLoginFailuresError) as err:
        t.check("c", "u")
    assert err.value.retry_after == 10
    clock.now = 1200  # all of them gone: three more tries
    for _ in range(2):
        t.failed("c", "u")
    t.check("c", "u")


def test_pairs_are_counted_apart(clock):
    t = LoginThrottle(2, 60, clock)
    t.failed("10.0.0.1", "alice")
    t.failed("10.0.0.1", "alice")
    with pytest.raises(TooManyLoginFailuresError):
        t.check("10.0.0.1", "alice")
    t.check("10.0.0.2", "alice")  # the same user elsewhere
    t.check("10.0.0.1", "bob")  # another user behind the same address


def test_a_right_password_forgets_the_pairs_failures(clock):
    t = LoginThrottle(3, 60, clock)
    t.failed("c", "u")
    t.failed("c", "u")
    t.succeeded("c", "u")
    t.failed("c", "u")
    t.failed("c", "u")
    t.check("c", "u")  # two failures on record, not four
    assert t.tracked == 1


def test_zero_means_no_limit(clock):
    t = LoginThrottle(0, 60, clock)
    for _ in range(1000):
        t.failed("c", "u")
        t.check("c", "u")
    assert t.tracked == 0


def test_memory_is_bounded(clock, monkeypatch):
    monkeypatch.setattr(throttle, "MAX_TRACKED", 100)
    t = LoginThrottle(2, 60, clock)
    t.failed("first", "u")
    t.failed("first", "u")
    for i in range(500):
        t.failed(f"10.0.{i // 256}.{i % 256}", "u")
    assert t.tracked == 100
    t.check("first", "u")  # the pair idle the longest was forgotten first
    with pytest.raises(TooManyLoginFailuresError):
        t.failed("10.0.1.243", "u")  # among the 100 kept: a second failure blocks it
        t.check("10.0.1.243", "u")


def test_failures_are_logged_when_a_pair_is_blocked(clock, caplog):
    t = LoginThrottle(2, 300, clock)
    with caplog.at_level("WARNING", logger="packhouse.auth"):
        t.failed("192.0.2.7", "alice")
        assert not caplog.records
        t.failed("192.0.2.7", "alice")
    assert "2 failed logins for 'alice' from 192.0.2.7 within 5 minutes" in caplog.text


@pytest.fixture
def hashes(monkeypatch):
    """Count the password checks that reach a hash (the real function is still called)."""
    calls: list[str] = []
    real = htpasswd.verify_hash

    def counting(password: str, hashed: str) -> bool:
        calls.append(password)
        return real(password, hashed)

    monkeypatch.setattr(htpasswd, "verify_hash", counting)
    return calls


def _authenticator(tmp_path, throttle: LoginThrottle, **users: str) -> HtpasswdAuthenticator:
    path = tmp_path / "htpasswd"
    path.write_text("".join(f"{user}:{hash_password(password)}\n" for user, password in users.items()))
    return HtpasswdAuthenticator(path, throttle)


async def _block(auth: HtpasswdAuthenticator, user: str, right: str) -> None:
    """Two wrong passwords from client "c" (the limit in these tests), then the right one refused."""
    for i in range(2):
        assert not await auth.verify(user, f"guess{i}", "c")
    with pytest.raises(TooManyLoginFailuresError):
        await auth.verify(user, right, "c")


def test_a_blocked_pair_costs_no_hash_and_a_cached_login_goes_on(tmp_path, clock, hashes):
    auth = _authenticator(tmp_path, LoginThrottle(3, 300, clock), alice="right", bob="bobs")

    async def scenario() -> None:
        assert await auth.verify("alice", "right", "10.0.0.1")  # logged in: cached for a minute
        for i in range(3):
            assert not await auth.verify("alice", f"guess{i}", "10.0.0.1")
        assert len(hashes) == 4
        with pytest.raises(TooManyLoginFailuresError):
            await auth.verify("alice", "guess3", "10.0.0.1")
        assert len(hashes) == 4  # refused without hashing
        assert await auth.verify("alice", "right", "10.0.0.1")  # the cached login is not interrupted
        assert len(hashes) == 4
        assert not await auth.verify("alice", "guess4", "10.0.0.2")  # another client: checked
        assert await auth.verify("bob", "bobs", "10.0.0.1")  # another user: checked
        assert len(hashes) == 6

    asyncio.run(scenario())


def test_a_right_password_not_checked_before_is_refused_while_blocked(tmp_path, clock, hashes):
    """Otherwise a guesser would learn the password by the answer changing from 429 to 200."""
    auth = _authenticator(tmp_path, LoginThrottle(2, 300, clock), alice="right")

    async def scenario() -> None:
        await _block(auth, "alice", "right")
        clock.now += 300
        assert await auth.verify("alice", "right", "c")

    asyncio.run(scenario())


def test_unknown_users_are_counted_too(tmp_path, clock, hashes):
    auth = _authenticator(tmp_path, LoginThrottle(2, 300, clock), alice="right")

    async def scenario() -> None:
        assert not await auth.verify("ghost", "a", "c")
        assert not await auth.verify("ghost", "b", "c")
        with pytest.raises(TooManyLoginFailuresError):
            await auth.verify("ghost", "c", "c")  # as for a real name: no way to tell them apart

    asyncio.run(scenario())
    assert len(hashes) == 2


def test_a_huge_name_is_kept_cut_short(clock):
    """A Basic header may carry a name of tens of kilobytes: 20,000 of those must not be kept whole."""
    t = LoginThrottle(2, 60, clock)
    name = "x" * 60_000
    t.failed("c", name)
    t.failed("c", name + "y")  # the same first 256 characters: the same pair
    with pytest.raises(TooManyLoginFailuresError):
        t.check("c", name)
    assert all(len(user) <= throttle.NAME_CHARS for _, user in t._seen)


def test_an_ipv6_client_counts_as_its_64(clock):
    """A host with a /64 could send each guess from an address of its own."""
    t = LoginThrottle(2, 60, clock)
    t.failed("2001:db8:1:2::1", "alice")
    t.failed("2001:db8:1:2:ffff:0:0:7", "alice")
    with pytest.raises(TooManyLoginFailuresError) as err:
        t.check("2001:db8:1:2::abcd", "alice")
    assert "from 2001:db8:1:2::abcd" in err.value.detail  # the address itself is named
    t.check("2001:db8:1:3::1", "alice")  # the next /64: another site
    t.failed("::ffff:192.0.2.1", "bob")  # IPv4-mapped: the IPv4 address, as a dual-stack socket gives it
    t.failed("192.0.2.1", "bob")
    with pytest.raises(TooManyLoginFailuresError):
        t.check("192.0.2.1", "bob")
    t.check("192.0.2.2", "bob")  # IPv4 addresses count one by one


def test_a_changed_passwords_file_lifts_every_block(tmp_path, clock, hashes):
    """The operator's way to unblock a user who locked themselves out: set their password."""
    auth = _authenticator(tmp_path, LoginThrottle(2, 300, clock), alice="old")

    async def scenario() -> None:
        await _block(auth, "alice", "old")
        (tmp_path / "htpasswd").write_text(f"alice:{hash_password('new')}\n")
        assert await auth.verify("alice", "new", "c")

    asyncio.run(scenario())
