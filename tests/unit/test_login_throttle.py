"""Failed logins counted per (client, user) in the metadata database: the window's arithmetic on a
clock the test moves, over the real ledger (SQLite, then PostgreSQL); several throttles over one
database counting the same failures, as workers and replicas do; and the authenticator's use of it on
a real htpasswd file (bcrypt, as `packhouse user add` writes)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from app.auth import htpasswd
from app.auth.htpasswd import HtpasswdAuthenticator, hash_password
from app.auth.throttle import NAME_CHARS, LoginThrottle
from app.db.engine import build_engine, build_sessionmaker
from app.db.logins import DatabaseLoginLedger
from app.db.migrate import upgrade_to_head
from app.errors import TooManyLoginFailuresError

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def ledger(tmp_path: Path, database_url_for) -> AsyncIterator[DatabaseLoginLedger]:
    """The ledger a server builds (app/main.py), on the test variant's database, migrated."""
    data = tmp_path / "data"
    data.mkdir()
    url = database_url_for(data) or f"sqlite+aiosqlite:///{data / 'packhouse.db'}"
    engine, writer = build_engine(url), build_engine(url, immediate=True)
    await upgrade_to_head(writer)
    yield DatabaseLoginLedger(build_sessionmaker(engine), build_sessionmaker(writer))
    await writer.dispose()
    await engine.dispose()


@pytest.fixture
def make(ledger: DatabaseLoginLedger, clock: Clock) -> Callable[..., LoginThrottle]:
    """``make(failures, window)``: a throttle (a worker's) over the shared ledger and clock."""
    return lambda failures, window: LoginThrottle(failures, window, ledger, clock)


async def rows(ledger: DatabaseLoginLedger, sql: str = "SELECT count(*) FROM login_failures") -> object:
    async with ledger.readers() as session:
        return (await session.execute(text(sql))).scalar_one()


async def test_the_limit_is_reached_after_that_many_failures(make, clock):
    t = make(3, 60)
    for _ in range(3):
        await t.check("10.0.0.1", "alice")
        await t.failed("10.0.0.1", "alice")
        clock.now += 1
    with pytest.raises(TooManyLoginFailuresError) as err:
        await t.check("10.0.0.1", "alice")
    # The oldest failure (t0) leaves the window at t0 + 60; it is t0 + 3 now.
    assert err.value.retry_after == 57
    assert "Too many failed logins for 'alice' from 10.0.0.1" in err.value.detail
    assert "3 wrong passwords in the last 1 minute" in err.value.detail
    assert "57 s" in err.value.detail


async def test_the_window_slides(make, clock):
    t0 = clock.now
    t = make(3, 60)
    for _ in range(3):
        await t.failed("c", "u")
        clock.now += 10  # failures at t0, t0 + 10, t0 + 20
    clock.now = t0 + 59.5
    with pytest.raises(TooManyLoginFailuresError) as err:
        await t.check("c", "u")
    assert err.value.retry_after == 1  # rounded up: never an invitation to retry too early
    clock.now = t0 + 60
    assert await t.check("c", "u") == 2  # the first failure has left the window
    await t.failed("c", "u")  # ... and a new one fills it again until the second leaves (t0 + 70)
    with pytest.raises(TooManyLoginFailuresError) as err:
        await t.check("c", "u")
    assert err.value.retry_after == 10
    clock.now = t0 + 200  # all of them gone: three more tries
    for _ in range(2):
        await t.failed("c", "u")
    assert await t.check("c", "u") == 2


async def test_pairs_are_counted_apart(make):
    t = make(2, 60)
    await t.failed("10.0.0.1", "alice")
    await t.failed("10.0.0.1", "alice")
    with pytest.raises(TooManyLoginFailuresError):
        await t.check("10.0.0.1", "alice")
    assert await t.check("10.0.0.2", "alice") == 0  # the same user elsewhere
    assert await t.check("10.0.0.1", "bob") == 0  # another user behind the same address


async def test_every_worker_and_replica_counts_the_same_failures(make, ledger, clock):
    """Two workers (or replicas) over one database: the limit is the limit, not twice it."""
    first, second = make(3, 60), make(3, 60)
    await first.failed("c", "u")
    await second.failed("c", "u")
    await first.failed("c", "u")
    with pytest.raises(TooManyLoginFailuresError):
        await second.check("c", "u")
    restarted = LoginThrottle(3, 60, ledger, clock)  # a restart forgets nothing
    with pytest.raises(TooManyLoginFailuresError):
        await restarted.check("c", "u")


async def test_a_right_password_forgets_the_pairs_failures(make, ledger):
    t = make(3, 60)
    await t.failed("c", "u")
    await t.failed("c", "u")
    await t.failed("c", "other")
    await t.succeeded("c", "u", await t.check("c", "u"))
    assert await rows(ledger) == 1  # the other pair's failure is kept
    await t.failed("c", "u")
    await t.failed("c", "u")
    assert await t.check("c", "u") == 2  # two failures on record, not four


async def test_zero_means_no_limit(make, ledger):
    t = make(0, 60)
    for _ in range(50):
        await t.failed("c", "u")
        assert await t.check("c", "u") == 0
    assert await rows(ledger) == 0  # nothing is written


async def test_failures_out_of_the_window_are_deleted_as_new_ones_come(make, clock, ledger):
    """What the table holds is bounded by the failures of one window, however many pairs an
    attacker cycles through (and each of their failures costs them a password check)."""
    t = make(2, 60)
    for i in range(300):
        await t.failed(f"10.0.{i // 256}.{i % 256}", "u")
    assert await rows(ledger) == 300
    clock.now += 60
    await t.failed("192.0.2.1", "u")
    assert await rows(ledger) == 1


async def test_failures_are_logged_when_a_pair_is_blocked(make, caplog):
    t = make(2, 300)
    with caplog.at_level("WARNING", logger="packhouse.auth"):
        await t.failed("192.0.2.7", "alice")
        assert not caplog.records
        await t.failed("192.0.2.7", "alice")
    assert "2 failed logins for 'alice' from 192.0.2.7 within 5 minutes" in caplog.text


async def test_a_failure_that_cannot_be_recorded_is_logged_and_the_answer_stays_401(make, caplog):
    """The ledger's table gone (a broken database): the wrong password is still just wrong."""
    t = make(2, 60)

    class Broken:
        async def add(self, *args: object) -> int:
            raise OSError("disk I/O error")

        async def forget(self, *args: object) -> None:
            raise OSError("disk I/O error")

    t.ledger = Broken()  # type: ignore[assignment]
    with caplog.at_level("WARNING", logger="packhouse.auth"):
        await t.failed("c", "alice")
        await t.succeeded("c", "alice", 1)
    assert "could not record a failed login for 'alice' from c" in caplog.text
    assert "could not clear the failed logins of 'alice' from c" in caplog.text


async def test_a_huge_name_is_kept_cut_short(make, ledger):
    """A Basic header may carry a name of tens of kilobytes; a NUL (valid UTF-8, not storable in
    PostgreSQL's text) is kept as U+FFFD."""
    t = make(2, 60)
    name = "x" * 60_000
    await t.failed("c", name)
    await t.failed("c", name + "y")  # the same first 256 characters: the same pair
    with pytest.raises(TooManyLoginFailuresError):
        await t.check("c", name)
    assert await rows(ledger, "SELECT max(length(username)) FROM login_failures") == NAME_CHARS
    await t.failed("c", "nul\0name")
    await t.failed("c", "nul\0name")
    with pytest.raises(TooManyLoginFailuresError):
        await t.check("c", "nul\0name")


async def test_an_ipv6_client_counts_as_its_64(make):
    """A host with a /64 could send each guess from an address of its own."""
    t = make(2, 60)
    await t.failed("2001:db8:1:2::1", "alice")
    await t.failed("2001:db8:1:2:ffff:0:0:7", "alice")
    with pytest.raises(TooManyLoginFailuresError) as err:
        await t.check("2001:db8:1:2::abcd", "alice")
    assert "from 2001:db8:1:2::abcd" in err.value.detail  # the address itself is named
    await t.check("2001:db8:1:3::1", "alice")  # the next /64: another site
    await t.failed("::ffff:192.0.2.1", "bob")  # IPv4-mapped: the IPv4 address, as a dual-stack socket gives it
    await t.failed("192.0.2.1", "bob")
    with pytest.raises(TooManyLoginFailuresError):
        await t.check("192.0.2.1", "bob")
    await t.check("192.0.2.2", "bob")  # IPv4 addresses count one by one


@pytest.fixture
def hashes(monkeypatch) -> list[str]:
    """Count the password checks that reach a hash (the real function is still called)."""
    calls: list[str] = []
    real = htpasswd.verify_hash

    def counting(password: str, hashed: str) -> bool:
        calls.append(password)
        return real(password, hashed)

    monkeypatch.setattr(htpasswd, "verify_hash", counting)
    return calls


def _authenticator(tmp_path: Path, throttle: LoginThrottle, **users: str) -> HtpasswdAuthenticator:
    """Over a passwords file last changed a second ago on the test's clock."""
    path = tmp_path / "htpasswd"
    _write(path, throttle._clock() - 1, **users)  # type: ignore[attr-defined]
    return HtpasswdAuthenticator(path, throttle)


def _write(path: Path, mtime: float, **users: str) -> None:
    path.write_text("".join(f"{user}:{hash_password(password)}\n" for user, password in users.items()))
    os.utime(path, (mtime, mtime))


async def _block(auth: HtpasswdAuthenticator, user: str, right: str) -> None:
    """Two wrong passwords from client "c" (the limit in these tests), then the right one refused."""
    for i in range(2):
        assert not await auth.verify(user, f"guess{i}", "c")
    with pytest.raises(TooManyLoginFailuresError):
        await auth.verify(user, right, "c")


async def test_a_blocked_pair_costs_no_hash_and_a_cached_login_goes_on(tmp_path, make, hashes):
    auth = _authenticator(tmp_path, make(3, 300), alice="right", bob="bobs")
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


async def test_a_right_password_not_checked_before_is_refused_while_blocked(tmp_path, make, clock, hashes):
    """Otherwise a guesser would learn the password by the answer changing from 429 to 200."""
    auth = _authenticator(tmp_path, make(2, 300), alice="right")
    await _block(auth, "alice", "right")
    clock.now += 300
    assert await auth.verify("alice", "right", "c")


async def test_a_right_password_clears_what_the_other_workers_counted(tmp_path, make, hashes):
    """Two typos on one worker, the right password on another: the slate is clean for both."""
    first, second = make(3, 300), make(3, 300)
    auth_first = _authenticator(tmp_path, first, alice="right")
    auth_second = HtpasswdAuthenticator(tmp_path / "htpasswd", second)  # read at the same tick
    for i in range(2):
        assert not await auth_first.verify("alice", f"typo{i}", "c")
    assert await auth_second.verify("alice", "right", "c")
    assert await first.check("c", "alice") == 0


async def test_unknown_users_are_counted_too(tmp_path, make, hashes):
    auth = _authenticator(tmp_path, make(2, 300), alice="right")
    assert not await auth.verify("ghost", "a", "c")
    assert not await auth.verify("ghost", "b", "c")
    with pytest.raises(TooManyLoginFailuresError):
        await auth.verify("ghost", "c", "c")  # as for a real name: no way to tell them apart
    assert len(hashes) == 2


async def test_a_changed_passwords_file_lifts_every_block_in_every_worker(tmp_path, make, clock, hashes):
    """The operator's way to unblock a user who locked themselves out: set their password. The
    failures from before the file's change stop counting for every worker, whichever reads it first;
    those after it count."""
    first, second = make(2, 300), make(2, 300)
    auth_first = _authenticator(tmp_path, first, alice="old")
    auth_second = HtpasswdAuthenticator(tmp_path / "htpasswd", second)
    await _block(auth_first, "alice", "old")
    with pytest.raises(TooManyLoginFailuresError):
        await auth_second.verify("alice", "old", "c")
    clock.now += 5
    _write(tmp_path / "htpasswd", clock.now, alice="new")  # 'packhouse user passwd alice'
    assert await auth_first.verify("alice", "new", "c")
    clock.now += 1
    assert not await auth_second.verify("alice", "typo", "c")  # counted, after the change
    assert await second.check("c", "alice") == 1


async def test_a_passwords_file_dated_ahead_of_the_clock_forgets_only_the_past(make, clock):
    """A file copied from a machine whose clock runs ahead: its change counts as now, or no failure
    would count until the clock caught up with it."""
    t = make(2, 300)
    await t.failed("c", "u")
    t.reset(clock.now + 3600)
    assert await t.check("c", "u") == 0
    clock.now += 1
    await t.failed("c", "u")
    await t.failed("c", "u")
    with pytest.raises(TooManyLoginFailuresError):
        await t.check("c", "u")
