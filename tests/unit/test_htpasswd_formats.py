"""The crypt(3) htpasswd formats pypiserver (passlib) accepted: SHA-256/512-crypt and MD5-crypt
verify, checked against hashes made by Apache's htpasswd and by openssl; DES and plaintext entries
are refused with a warning that says which they are; ``packhouse user`` lists and replaces them."""

from __future__ import annotations

import base64
import hashlib
import logging
import shutil
import subprocess
import sys

import pytest

from app.auth.htpasswd import (
    MAX_PASSWORD_BYTES,
    SHA_CRYPT_MAX_ROUNDS,
    HtpasswdAuthenticator,
    hash_password,
    hash_problem,
    parse_htpasswd,
    sha_crypt,
    verify_hash,
)
from tests.conftest import ROOT, clean_env
from tests.support.htpasswd import htpasswd_bin


def _openssl() -> str:
    path = shutil.which("openssl")
    assert path, "openssl is needed (Debian package openssl)"
    return path


def _htpasswd_line(flag: str, user: str, password: str, *extra: str) -> str:
    out = subprocess.run(
        [htpasswd_bin(), "-nb", flag, *extra, user, password], check=True, capture_output=True, text=True
    ).stdout
    return out.strip()


def _openssl_hash(flag: str, password: str, salt: str | None = None) -> str:
    cmd = [_openssl(), "passwd", flag, *(["-salt", salt] if salt else []), password]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.mark.parametrize(("flag", "prefix"), [("-2", "$5$"), ("-5", "$6$")])
def test_apache_sha_crypt_entries_verify(flag, prefix):
    line = _htpasswd_line(flag, "carl", "sha crypt pw!")
    user, hashed = line.split(":", 1)
    assert hashed.startswith(prefix)
    assert parse_htpasswd(line + "\n") == {"carl": hashed}
    assert verify_hash("sha crypt pw!", hashed)
    assert not verify_hash("sha crypt pw", hashed)
    assert not verify_hash("", hashed)


def test_apache_sha_crypt_with_rounds_verifies():
    hashed = _htpasswd_line("-5", "rita", "rounds-pw", "-r", "12000").split(":", 1)[1]
    assert hashed.startswith("$6$rounds=12000$")
    assert verify_hash("rounds-pw", hashed) and not verify_hash("rounds-pX", hashed)


# Lengths around SHA-256's and SHA-512's digest sizes (the algorithm treats them differently),
# non-ASCII passwords, and salts of 1 to 16 characters.
PASSWORDS = ["x", "pässwörd", "a" * 15, "b" * 31, "c" * 32, "d" * 33, "e" * 63, "f" * 64, "g" * 65, "h:i j" * 30]


@pytest.mark.parametrize("flag", ["-1", "-5", "-6"])
@pytest.mark.parametrize("password", PASSWORDS, ids=range(len(PASSWORDS)))
def test_openssl_crypt_hashes_verify(flag, password):
    for salt in ("s", "saltsalt", "0123456789abcdef"):
        hashed = _openssl_hash(flag, password, salt)
        assert hashed.startswith(f"${flag[1]}$"), hashed
        assert hash_problem(hashed) is None
        assert verify_hash(password, hashed), (password, hashed)
        assert not verify_hash(password + "1", hashed)
        assert not verify_hash(password[:-1], hashed)


def test_known_vectors():
    # openssl passwd -5 / -6 / -1 -salt saltsalt hello
    assert verify_hash("hello", "$5$saltsalt$kfE3pS1dKPPHrilLCLWxLECEVLX8Au49cWIQg7GMQ05")
    assert verify_hash(
        "hello",
        "$6$saltsalt$YTeBOLnmm3CoeJTzBuijUEtOEWCqrw/nQ8/AeMmON4LGp3k0ZiMjC1OdqzWFUAfDQBvYkOch9BWtQTBcZ1E/p0",
    )
    assert verify_hash("hello", "$1$saltsalt$fFhQNRZ9A4AYLdo7vOe8a0")


@pytest.mark.parametrize("magic", ["$5$", "$6$"])
def test_passwords_up_to_the_limit_verify_and_longer_ones_never_do(magic):
    def sha(password: str) -> str:
        return f"{magic}saltsalt${sha_crypt(password.encode(), b'saltsalt', 5000, magic)}"

    longest = "p" * MAX_PASSWORD_BYTES
    assert verify_hash(longest, sha(longest))
    assert not verify_hash(longest + "p", sha(longest + "p"))
    sha1 = base64.b64encode(hashlib.sha1((longest + "p").encode()).digest()).decode()
    assert not verify_hash(longest + "p", "{SHA}" + sha1)  # every format


def test_malformed_and_oversized_sha_crypt_hashes_never_verify():
    huge = f"$6$rounds={SHA_CRYPT_MAX_ROUNDS + 1}$saltsalt$whatever"
    assert "rounds" in (hash_problem(huge) or "")
    assert not verify_hash("hello", huge)
    for bad in ("$5$", "$5$saltonly", "$6$rounds=abc$salt$x", "$6$rounds=5000"):
        assert hash_problem(bad) == "a malformed SHA-crypt hash"
        assert not verify_hash("hello", bad)


@pytest.mark.anyio
async def test_the_server_logs_in_with_each_format(tmp_path):
    path = tmp_path / "htpasswd"
    lines = [
        _htpasswd_line("-2", "two", "pw-two"),
        _htpasswd_line("-5", "five", "pw-five"),
        f"md5:{_openssl_hash('-1', 'pw-md5')}",
        f"sha6:{_openssl_hash('-6', 'pw-sha6')}",
    ]
    path.write_text("\n".join(lines) + "\n")
    auth = HtpasswdAuthenticator(path)
    assert auth.usernames == ["five", "md5", "sha6", "two"]
    assert await auth.verify("two", "pw-two") and await auth.verify("five", "pw-five")
    assert await auth.verify("md5", "pw-md5") and await auth.verify("sha6", "pw-sha6")
    assert not await auth.verify("five", "pw-two")


def test_warnings_say_what_each_refused_entry_is_and_name_the_file(tmp_path, caplog):
    des = _htpasswd_line("-d", "des", "longpassword")
    plain = _htpasswd_line("-p", "plain", "secret")
    text = f"{des}\n{plain}\nodd:$7$something\nrounds:$5$rounds=999999999$salt$sum\nnotaline\n"
    with caplog.at_level(logging.WARNING):
        users = parse_htpasswd(text, "/etc/packhouse/htpasswd")
    assert users == {}
    by_line = {r.getMessage().split(":")[1]: r.getMessage() for r in caplog.records}
    assert "DES crypt truncates passwords to 8 characters" in by_line["1"]
    assert "plaintext password (unsafe" in by_line["2"]
    assert "hash format Packhouse does not support" in by_line["3"]
    assert "999999999 rounds" in by_line["4"]
    assert "not a 'user:hash' line" in by_line["5"]
    for n in "1234":
        assert by_line[n].startswith(f"/etc/packhouse/htpasswd:{n}: user ")
        assert "packhouse user passwd" in by_line[n] and "--passwords /etc/packhouse/htpasswd" in by_line[n]
    assert all("sha512" not in m.lower() for m in by_line.values())


def _user(tmp_path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "user", *args], input=stdin, capture_output=True, text=True,
        cwd=ROOT, env=clean_env(tmp_path / "home"),
    )  # fmt: skip


def test_user_command_lists_and_replaces_refused_entries(tmp_path):
    path = tmp_path / "u.txt"
    des = _htpasswd_line("-d", "des", "longpassword")
    plain = _htpasswd_line("-p", "plain", "secret")
    sha = _htpasswd_line("-5", "sha", "pw-sha")
    path.write_text(f"{des}\n{plain}\n{sha}\n")

    listed = _user(tmp_path, "list", "-P", str(path))
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].startswith("des\t(cannot log in: a DES crypt hash")
    assert lines[1].startswith("plain\t(cannot log in: a plaintext password")
    assert lines[2] == "sha"
    assert listed.stderr == ""  # no warnings naming a made-up "htpasswd:N"

    refused = _user(tmp_path, "add", "des", "-P", str(path), "--password-stdin", stdin="new\n")
    assert refused.returncode == 1 and "already exists" in refused.stderr and "passwd" in refused.stderr
    for name in ("des", "plain"):
        changed = _user(tmp_path, "passwd", name, "-P", str(path), "--password-stdin", stdin=f"{name}-new\n")
        assert changed.returncode == 0, changed.stderr
        assert f"changed the password of {name} in {path} (replacing a " in changed.stderr
    users = parse_htpasswd(path.read_text())
    assert sorted(users) == ["des", "plain", "sha"]
    assert verify_hash("des-new", users["des"]) and verify_hash("plain-new", users["plain"])
    assert users["sha"] == sha.split(":", 1)[1]  # the other lines are kept as they were
    assert _user(tmp_path, "list", "-P", str(path)).stdout.split() == ["des", "plain", "sha"]
    missing = _user(tmp_path, "passwd", "nobody", "-P", str(path), "--password-stdin", stdin="x\n")
    assert missing.returncode == 1 and f"no user 'nobody' in {path}" in missing.stderr


def test_user_add_refuses_a_name_longer_than_the_journal_records(tmp_path):
    """Uploads, yanks and deletions record the user's name (200 characters at most): such a user
    could log in but do none of them, so it is not created; one written by other tools is listed
    as such."""
    path = tmp_path / "u.txt"
    refused = _user(tmp_path, "add", "u" * 201, "-P", str(path), "--password-stdin", stdin="pw\n")
    assert refused.returncode == 1
    assert "the user name is 201 characters long, and the journal records at most 200" in refused.stderr
    assert not path.exists()
    added = _user(tmp_path, "add", "u" * 200, "-P", str(path), "--password-stdin", stdin="pw\n")
    assert added.returncode == 0, added.stderr
    path.write_text(path.read_text() + f"{'v' * 201}:{hash_password('pw')}\n")
    listed = _user(tmp_path, "list", "-P", str(path)).stdout.splitlines()
    assert listed == ["u" * 200, f"{'v' * 201}\t(cannot upload, yank or delete: the user name is 201 characters long, "
                      "and the journal records at most 200)"]  # fmt: skip


def test_user_add_refuses_a_name_that_would_be_a_comment_or_not_one_user(tmp_path):
    """'#c' would be written as a comment line: reported as added, but nobody could log in as it."""
    path = tmp_path / "u.txt"
    for name in ("#c", "a b", "a:b", "a\x1bb"):
        refused = _user(tmp_path, "add", name, "-P", str(path), "--password-stdin", stdin="pw\n")
        assert refused.returncode == 1, refused.stderr
        assert refused.stderr.startswith(f"packhouse user: error: invalid user name {name!r}: "), refused.stderr
        assert "added" not in refused.stderr
    assert "a line that starts with '#' is a comment" in _user(tmp_path, "add", "#c", "-P", str(path)).stderr
    assert not path.exists()


def test_user_list_of_a_file_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "u.txt"
    path.write_bytes(b"\xef\xbb\xbf" + f"ann:{hash_password('pw')}\n".encode())
    listed = _user(tmp_path, "list", "-P", str(path))
    assert listed.stdout == "ann\n", listed.stderr
