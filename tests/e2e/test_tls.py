"""HTTPS served by Packhouse itself (``--ssl-certfile``, ``--ssl-keyfile``): passwords off the wire
without a proxy. The real clients verify the certificate against the test's own CA (trustme);
nothing skips verification, and without the CA they refuse the server."""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from app import http_tls
from tests.conftest import ROOT, clean_env, free_port, run, tool
from tests.e2e.test_clients import make_project, pypirc_from_readme
from tests.e2e.test_operator_errors import assert_refused, serve
from tests.support.builders import make_sdist, make_wheel
from tests.support.htpasswd import write_htpasswd
from tests.support.runserver import RunServer

pytestmark = pytest.mark.e2e


#: CA settings of the machine (this one sets them all to the system bundle): each client must trust
#: the test's CA because the test says so. (requests, and so pip, twine and flit, let
#: REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE win over --cert and over ca_cert in ~/.pypirc.)
MACHINE_CA = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@pytest.fixture
def env(client_env: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in client_env.items() if name not in MACHINE_CA}


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """PEM files: the CA, the server's certificate for 127.0.0.1 and localhost, its key, both in one
    file, a key of another certificate, the key encrypted, and a certificate cut short."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("tls")
    paths = {name: folder / f"{name}.pem" for name in ("ca", "cert", "key", "both", "other-key", "truncated")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    paths["cert"].write_bytes(b"".join(pem.bytes() for pem in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(paths["key"]))
    cert.private_key_and_cert_chain_pem.write_to_path(str(paths["both"]))
    ca.issue_cert("127.0.0.1").private_key_pem.write_to_path(str(paths["other-key"]))
    paths["truncated"].write_bytes(paths["cert"].read_bytes()[:300])
    # The key under a passphrase, as `openssl pkey -aes256` writes it (cryptography comes with trustme).
    key = serialization.load_pem_private_key(paths["key"].read_bytes(), password=None)
    paths["encrypted"] = folder / "encrypted.pem"
    paths["encrypted"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    return paths


@pytest.mark.sqlite_only  # TLS is the subject; the database is incidental
def test_the_real_clients_over_https(live_server, env, tls, tmp_path):
    pw = tmp_path / "htpasswd"
    user, password = write_htpasswd(pw, ("bcrypt",))["bcrypt"]
    server = live_server("--passwords", str(pw), "--ssl-certfile", str(tls["cert"]), "--ssl-keyfile",
                         str(tls["key"]), ca=str(tls["ca"]))  # fmt: skip
    assert server.url.startswith("https://")
    out = tmp_path / "dist"
    out.mkdir()
    payload = random.Random(7).randbytes(3 * 1024 * 1024)  # more than one chunk of a TLS download
    wheel = make_wheel(out, "tls-lib", "1.0", extra_files={"tls_lib/blob.bin": payload})
    sdist = make_sdist(out, "tls-lib", "1.0")

    upload = [tool("twine"), "upload", "--disable-progress-bar", "--non-interactive", "--repository-url",
              server.url + "/legacy/", "-u", user, "-p", password, str(wheel), str(sdist)]  # fmt: skip
    run([*upload, "--cert", str(tls["ca"])], env)

    # pip, with the CA and without it.
    venv = tmp_path / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    pip = [tool("pip"), "--python", str(venv / "bin" / "python"), "install", "--index-url", server.url + "/simple/"]
    no_ca = run([*pip, "--retries", "0", "tls-lib"], env, check=False)
    assert no_ca.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in no_ca.stdout + no_ca.stderr
    run([*pip, "--cert", str(tls["ca"]), "tls-lib"], env)
    installed = next((venv / "lib").glob("python3*/site-packages/tls_lib/blob.bin"))
    assert installed.read_bytes() == payload

    # uv, with the CA in SSL_CERT_FILE.
    uv_venv = tmp_path / "uv-venv"
    run([tool("uv"), "venv", "-q", str(uv_venv)], env)
    uv = [tool("uv"), "pip", "install", "--python", str(uv_venv / "bin" / "python"), "--index-url",
          server.url + "/simple/", "tls-lib"]  # fmt: skip
    run(uv, dict(env, SSL_CERT_FILE=str(tls["ca"])))

    with httpx.Client(base_url=server.url, verify=server.verify) as http:
        # Files go out in chunks under TLS (no sendfile): whole, and HEAD and Range as over HTTP.
        url = f"/files/tls-lib/{wheel.name}"
        got = http.get(url)
        assert (
            got.status_code == 200
            and hashlib.sha256(got.content).digest() == hashlib.sha256(wheel.read_bytes()).digest()
        )
        assert http.head(url).headers["content-length"] == str(wheel.stat().st_size)
        part = http.get(url, headers={"Range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == wheel.read_bytes()[100:200]
        # An error's message in the status line over TLS too (app/http_reason.py).
        assert http.get("/simple/nothing/").reason_phrase == "No project named 'nothing' on this index."
        # The landing page's pip snippet: an https index needs no trusted-host.
        home = http.get("/").text
        assert f"index-url = {server.url}/simple/" in home and "trusted-host" not in home


@pytest.mark.sqlite_only  # TLS is the subject
def test_plain_http_on_the_https_port_is_told_to_use_https(live_server, env, tls, tmp_path):
    """A pip.conf or ~/.pypirc still saying http:// gets a 400 that says why (as nginx and Go answer
    it), not a connection closed without a word; the port goes on serving HTTPS."""
    server = live_server("--ssl-certfile", str(tls["both"]), ca=str(tls["ca"]))
    plain = server.url.replace("https://", "http://")
    # The server sends the answer and waits for the client to close, as `connection: close` asks
    # (or for its TLS handshake timeout): http.client reads the answer by its content-length.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)  # type: ignore[attr-defined]
    conn.request("GET", "/simple/")
    answer = conn.getresponse()
    assert answer.status == 400 and answer.reason.startswith(
        "This port speaks HTTPS, and the request came in plain HTTP"
    )
    assert answer.getheader("connection") == "close"
    assert json.loads(answer.read())["detail"] == http_tls.PLAIN_HTTP_DETAIL
    conn.close()

    wheel = make_wheel(tmp_path, "plain-lib", "1.0")
    twine = run([tool("twine"), "upload", "--disable-progress-bar", "--non-interactive", "--repository-url",
                 plain + "/legacy/", "-u", "u", "-p", "p", str(wheel)],
                dict(env, COLUMNS="400"), check=False)  # fmt: skip
    out = " ".join((twine.stdout + twine.stderr).split())
    assert twine.returncode != 0 and "400 Bad Request" in out and "use an https:// URL" in out, out
    (tmp_path / "requirements.in").write_text("plain-lib\n")
    uv = run([tool("uv"), "pip", "compile", "--no-cache", "--index-url", plain + "/simple/",
              str(tmp_path / "requirements.in")], env, check=False)  # fmt: skip
    assert uv.returncode != 0 and "This port speaks HTTPS" in uv.stderr, uv.stderr
    pip = run([tool("pip"), "download", "--no-deps", "--retries", "0", "-d", str(tmp_path / "dl"),
               f"{plain}/files/plain-lib/{wheel.name}"], env, check=False)  # fmt: skip
    assert pip.returncode != 0 and "400 Client Error: This port speaks HTTPS" in pip.stdout + pip.stderr

    assert httpx.get(server.url + "/health", verify=server.verify).status_code == 200


@pytest.mark.sqlite_only
def test_every_upload_client_with_the_organisations_ca(live_server, env, tls, tmp_path):
    """README's way for each publisher to trust the server's CA: flit with REQUESTS_CA_BUNDLE and
    ~/.pypirc, twine with ca_cert in ~/.pypirc, hatch --ca-cert, uv publish with SSL_CERT_FILE,
    poetry with certificates.private.cert."""
    pw = tmp_path / "htpasswd"
    user, password = write_htpasswd(pw, ("bcrypt",))["bcrypt"]
    server = live_server("--passwords", str(pw), "--ssl-certfile", str(tls["both"]), ca=str(tls["ca"]))
    ca = str(tls["ca"])
    home = Path(env["HOME"])
    pypirc = pypirc_from_readme(server.url, user, password)
    (home / ".pypirc").write_text(pypirc)

    flit_project = make_project(tmp_path / "flit-proj", "tls-flit", "1.0.0", "flit")
    run([tool("flit"), "publish", "--repository", "private"], dict(env, REQUESTS_CA_BUNDLE=ca), cwd=flit_project)

    (home / ".pypirc").write_text(pypirc + f"ca_cert = {ca}\n")  # under [private], the last section
    out = tmp_path / "dist"
    out.mkdir()
    run([tool("twine"), "upload", "--disable-progress-bar", "--non-interactive", "-r", "private",
         str(make_wheel(out, "tls-twine", "1.0"))], env)  # fmt: skip
    run([tool("hatch"), "publish", "--no-prompt", "--repo", server.url + "/legacy/", "--user", user, "--auth",
         password, "--ca-cert", ca, str(make_wheel(out, "tls-hatch", "1.0"))], env, cwd=tmp_path)  # fmt: skip
    run([tool("uv"), "publish", "--publish-url", server.url + "/legacy/", "--username", user, "--password",
         password, str(make_wheel(out, "tls-uv", "1.0"))], dict(env, SSL_CERT_FILE=ca))  # fmt: skip

    poetry_project = make_project(tmp_path / "poetry-proj", "tls-poetry", "1.0.0", "poetry")
    for argv in (["config", "repositories.private", server.url + "/legacy/"],
                 ["config", "http-basic.private", user, password],
                 ["config", "certificates.private.cert", ca],
                 ["publish", "--build", "--repository", "private"]):  # fmt: skip
        run([tool("poetry"), *argv], env, cwd=poetry_project)

    listing = httpx.get(server.url + "/simple/", headers={"Accept": "application/vnd.pypi.simple.v1+json"},
                        verify=server.verify)  # fmt: skip
    names = {p["name"] for p in listing.json()["projects"]}
    assert names == {"tls-flit", "tls-twine", "tls-hatch", "tls-uv", "tls-poetry"}, names


def served_certificate(server: object) -> bytes:
    """The certificate (DER) of a new connection to ``server``, after a whole request on it: the
    server has then seen the connection, and checked its certificate files (app/http_tls.py)."""
    context = ssl.create_default_context(cafile=server.ca)  # type: ignore[attr-defined]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:  # type: ignore[attr-defined]
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
            return sock.getpeercert(binary_form=True)  # type: ignore[return-value]


@pytest.mark.sqlite_only  # TLS is the subject
def test_a_renewed_certificate_is_served_without_a_restart(live_server, tmp_path):
    """certbot's way: new files renamed over the old ones. The connection that finds them changed
    still gets the old certificate; the next ones the new. A renewal that cannot be loaded (the
    certificate renewed before its key) is logged, and the previous certificate stays meanwhile."""
    ca = trustme.CA()
    live = tmp_path / "live"
    live.mkdir()
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes())

    def install(pem: bytes, name: str) -> None:
        staged = live / f".{name}.new"
        staged.write_bytes(pem)
        staged.replace(live / name)

    def der(cert: trustme.LeafCert) -> bytes:
        return ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())

    first, second, third = (ca.issue_cert("127.0.0.1") for _ in range(3))
    install(first.cert_chain_pems[0].bytes(), "fullchain.pem")
    install(first.private_key_pem.bytes(), "privkey.pem")
    server = live_server("--ssl-certfile", str(live / "fullchain.pem"), "--ssl-keyfile", str(live / "privkey.pem"),
                         ca=str(tmp_path / "ca.pem"))  # fmt: skip
    assert served_certificate(server) == der(first)
    assert served_certificate(server) == der(first)  # unchanged files: nothing reloaded

    install(second.cert_chain_pems[0].bytes(), "fullchain.pem")
    install(second.private_key_pem.bytes(), "privkey.pem")
    assert served_certificate(server) == der(first)  # this connection finds the files changed
    assert served_certificate(server) == der(second)
    assert "TLS certificate reloaded" in server.log()

    install(third.cert_chain_pems[0].bytes(), "fullchain.pem")  # its key not yet
    served_certificate(server)
    assert served_certificate(server) == der(second)
    assert "cannot be loaded" in server.log() and "still serving the previous certificate" in server.log()
    install(third.private_key_pem.bytes(), "privkey.pem")
    served_certificate(server)
    assert served_certificate(server) == der(third)


@pytest.mark.sqlite_only  # TLS is the subject
def test_every_worker_serves_the_renewed_certificate(live_server, tmp_path):
    """With --workers 2, each worker finds a renewal for itself, on the first connection it takes
    after it (which still gets the old certificate): of the connections after a renewal, at most one
    per worker gets the old certificate, whichever worker the kernel hands each one to."""
    ca = trustme.CA()
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes())
    old, new = ca.issue_cert("127.0.0.1"), ca.issue_cert("127.0.0.1")
    both = tmp_path / "both.pem"
    both.write_bytes(old.private_key_and_cert_chain_pem.bytes())
    server = live_server("--ssl-certfile", str(both), "--workers", "2", ca=str(tmp_path / "ca.pem"))
    der = {
        ssl.PEM_cert_to_DER_cert(c.cert_chain_pems[0].bytes().decode()): name
        for c, name in [(old, "old"), (new, "new")]
    }
    assert {der[served_certificate(server)] for _ in range(6)} == {"old"}
    staged = tmp_path / ".both.pem.new"
    staged.write_bytes(new.private_key_and_cert_chain_pem.bytes())
    staged.replace(both)
    served = [der[served_certificate(server)] for _ in range(16)]
    assert served.count("old") <= 2 and served.count("new") >= 14, served


def test_pypiserver_command_line_with_the_key_in_the_certificate_file(tmp_path, tls):
    """`packhouse run` takes the same flags, and PACKHOUSE_SSL_CERTFILE alone when the file holds
    the key too (as many ACME clients write it)."""
    packages = tmp_path / "packages"
    packages.mkdir()
    make_wheel(packages, "folder-lib", "2.0")
    env = clean_env(tmp_path / "home", {"PACKHOUSE_SSL_CERTFILE": str(tls["both"])})
    server = RunServer(["-P", ".", "-a", ".", str(packages)], env, tmp_path / "run.log", free_port())
    server.ca = str(tls["ca"])
    server.start()
    try:
        page = httpx.get(server.url + "/simple/folder-lib/", verify=server.verify)
        assert page.status_code == 200 and "folder_lib-2.0-py3-none-any.whl" in page.text
        plain = httpx.get(server.url.replace("https://", "http://") + "/health", timeout=5)
        assert plain.status_code == 400 and plain.json()["detail"] == http_tls.PLAIN_HTTP_DETAIL
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"--ssl-certfile": "missing"}, "cannot read the TLS certificate file"),
        ({"--ssl-keyfile": "key"}, "--ssl-keyfile is given without --ssl-certfile"),
        ({"--ssl-certfile": "key", "--ssl-keyfile": "key"}, "holds no PEM certificate"),
        ({"--ssl-certfile": "cert"}, "holds no PEM private key: give the key's file with --ssl-keyfile"),
        ({"--ssl-certfile": "cert", "--ssl-keyfile": "cert"}, "holds no PEM private key"),
        ({"--ssl-certfile": "cert", "--ssl-keyfile": "other-key"}, "is not the key of the certificate"),
        ({"--ssl-certfile": "ca", "--ssl-keyfile": "key"}, "is not the key of the certificate"),
        ({"--ssl-certfile": "cert", "--ssl-keyfile": "encrypted"}, "is encrypted: give a key without a passphrase"),
        ({"--ssl-certfile": "truncated", "--ssl-keyfile": "key"}, "cannot load the TLS certificate and key"),
    ],
)
def test_a_certificate_or_key_that_cannot_serve_stops_the_start(tmp_path, tls, files, expected):
    args = [arg for flag, name in files.items() for arg in (flag, str(tls.get(name, tmp_path / "missing.pem")))]
    proc = serve(tmp_path, "--data-dir", str(tmp_path / "data"), *args)
    assert_refused(proc, expected)
    assert not (tmp_path / "data").exists()  # refused before anything was created


@pytest.mark.sqlite_only  # the probe is the subject
def test_the_container_healthcheck_follows_the_scheme(live_server, tmp_path, tls):
    """The Dockerfile's HEALTHCHECK, run as written (on this server's port): over HTTPS when
    PACKHOUSE_SSL_CERTFILE is set (here on a server of two worker processes), over HTTP
    otherwise; and it fails when nothing answers."""
    line = next(line for line in (ROOT / "Dockerfile").read_text().splitlines() if '"python3", "-c"' in line)
    probe = json.loads(line.split("CMD", 1)[1])[2]

    def check(port: int, tls_env: bool) -> int:
        env = clean_env(tmp_path / "home", {"PACKHOUSE_SSL_CERTFILE": str(tls["both"])} if tls_env else None)
        code = probe.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=30).returncode

    https = live_server("--ssl-certfile", str(tls["both"]), "--workers", "2", data_dir=tmp_path / "a",
                        ca=str(tls["ca"]))  # fmt: skip
    plain = live_server(data_dir=tmp_path / "b")
    assert check(https.port, tls_env=True) == 0
    assert check(plain.port, tls_env=False) == 0
    assert check(https.port, tls_env=False) != 0  # the probe's scheme must match the server's
    assert check(free_port(), tls_env=True) != 0
