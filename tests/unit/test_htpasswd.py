import subprocess

import pytest

from app.auth.htpasswd import (
    HtpasswdAuthenticator,
    apr1_crypt,
    edit_htpasswd,
    hash_password,
    parse_htpasswd,
    verify_hash,
)
from tests.support.htpasswd import FORMATS, htpasswd_bin, write_htpasswd


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_hashes_written_by_apache_htpasswd_verify(tmp_path, fmt):
    users = write_htpasswd(tmp_path / "h", (fmt,))
    user, password = users[fmt]
    hashed = parse_htpasswd((tmp_path / "h").read_text())[user]
    assert verify_hash(password, hashed)
    assert not verify_hash(password + "x", hashed)
    assert not verify_hash("", hashed)


def test_apr1_matches_known_vector():
    # openssl passwd -apr1 -salt saltsalt password
    assert apr1_crypt(b"password", b"saltsalt") == "$apr1$saltsalt$yAAkm4libquA.ZWLHbSBq/"


def test_new_hashes_are_bcrypt_and_apache_accepts_them(tmp_path):
    hashed = hash_password("s3cret!")
    assert hashed.startswith("$2y$")
    path = tmp_path / "h"
    path.write_text(f"alice:{hashed}\n")
    proc = subprocess.run([htpasswd_bin(), "-vb", str(path), "alice", "s3cret!"], capture_output=True)
    assert proc.returncode == 0, proc.stderr


def test_bcrypt_refuses_passwords_over_72_bytes():
    with pytest.raises(ValueError, match="72 bytes"):
        hash_password("x" * 73)
    assert not verify_hash("x" * 73, hash_password("x" * 72))


def test_unsupported_hashes_are_ignored_with_a_warning(caplog):
    users = parse_htpasswd("des:abJnggxhB/yWI\nplain:plaintext\nok:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\nbroken\n")
    assert list(users) == ["ok"]
    assert "DES crypt" in caplog.text


@pytest.mark.anyio
async def test_file_is_reread_when_it_changes(tmp_path):
    path = tmp_path / "h"
    write_htpasswd(path, ("sha1",))
    auth = HtpasswdAuthenticator(path)
    assert await auth.verify("sam", "sha1 pw 2")
    assert not await auth.verify("bea", "bcrypt-pw-1")
    subprocess.run([htpasswd_bin(), "-b", "-B", str(path), "bea", "bcrypt-pw-1"], check=True)
    assert await auth.verify("bea", "bcrypt-pw-1")
    path.write_text("")  # user removed: cached successes are dropped with the old file
    assert not await auth.verify("sam", "sha1 pw 2")
    assert not await auth.verify("nobody", "x")


@pytest.mark.anyio
async def test_a_byte_order_mark_is_not_part_of_the_first_users_name(tmp_path):
    """Notepad saves UTF-8 with a BOM: the first user must still log in, and an edit must find them."""
    path = tmp_path / "h"
    path.write_bytes(b"\xef\xbb\xbf" + f"ann:{hash_password('pw-ann')}\nbob:{hash_password('pw-bob')}\n".encode())
    auth = HtpasswdAuthenticator(path)
    assert auth.usernames == ["ann", "bob"]
    assert await auth.verify("ann", "pw-ann")
    assert edit_htpasswd(path, "ann", hash_password("new")) is True  # replaced, not added again
    assert list(parse_htpasswd(path.read_text())) == ["ann", "bob"]


@pytest.mark.parametrize("name", ["#c", "# c", "", "a:b", "a b", "a\tb", "a\x7fb", "a\x1bb"])
def test_names_that_would_not_read_back_as_that_user_are_refused(tmp_path, name):
    path = tmp_path / "h"
    with pytest.raises(ValueError, match="invalid user name"):
        edit_htpasswd(path, name, hash_password("pw"))
    assert not path.exists()
