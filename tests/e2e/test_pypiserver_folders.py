"""pypiserver package folders as they are found in the wild: old sdist suffixes (.tgz, .tar.bz2),
eggs and stray files, nested ``/packages/<subfolder>/<file>`` URLs and the ``/packages/`` listing
that ``pip --find-links`` reads, folders that do not exist, and curl uploads without a digest."""

from __future__ import annotations

import hashlib
import http.client
import io
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, clean_env, free_port, run, tool
from tests.support.builders import make_sdist, make_wheel, metadata_text
from tests.support.runserver import RunServer

pytestmark = pytest.mark.e2e


@pytest.fixture
def run_server(tmp_path: Path):
    servers: list[RunServer] = []

    def factory(*args: str) -> RunServer:
        port = free_port()
        server = RunServer(list(args), clean_env(tmp_path / "server-home"), tmp_path / f"run-{port}.log", port)
        servers.append(server)
        return server.start()

    yield factory
    for server in servers:
        server.stop()


def _bz2_sdist(folder: Path, name: str, version: str) -> Path:
    """An sdist as old setuptools wrote with --formats=bztar: the same members, bzip2-compressed."""
    gz = make_sdist(folder, name, version)
    out = folder / gz.name.replace(".tar.gz", ".tar.bz2")
    buf = io.BytesIO()
    with tarfile.open(gz, "r:gz") as src, tarfile.open(fileobj=buf, mode="w:bz2") as dst:
        for member in src:
            dst.addfile(member, src.extractfile(member))
    gz.unlink()
    out.write_bytes(buf.getvalue())
    return out


def _folder(tmp_path: Path) -> dict[str, Path]:
    packages = tmp_path / "packages"
    (packages / "sub" / "deeper").mkdir(parents=True)
    files = {
        "wheel": make_wheel(packages, "alpha", "1.0"),
        "nested": make_wheel(packages / "sub", "beta", "2.0"),
        "deeper": make_wheel(packages / "sub" / "deeper", "gamma", "3.0"),
        "tgz": make_sdist(packages, "oldpkg", "0.5", filename="oldpkg-0.5.tgz"),
        "bz2": _bz2_sdist(packages, "oldpkg", "0.6"),
    }
    files["egg"] = packages / "oldegg-1.0-py2.7.egg"
    files["egg"].write_bytes(b"PK\x05\x06" + b"\0" * 18)
    files["readme"] = packages / "sub" / "README.txt"
    files["readme"].write_text("our packages\n")
    (tmp_path / "elsewhere").mkdir()
    (packages / "linked").symlink_to(tmp_path / "elsewhere")
    return files


def _raw_get(url: str, path: str) -> int:
    """A request whose path goes out exactly as written (httpx would resolve the '..' first)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_old_sdists_are_served_and_every_other_file_is_reported(run_server, tmp_path):
    files = _folder(tmp_path)
    client_env = clean_env(tmp_path / "home")
    packages = files["wheel"].parent
    server = run_server("-P", ".", "-a", ".", "--rescan-interval", "0.3", str(packages))
    log = server.log()
    assert f"skipped {files['egg']}: a Python egg (.egg): pip cannot install eggs" in log
    assert f"skipped {files['readme']}: not a distribution file" in log
    assert f"skipped {packages / 'linked'}: a symlinked folder is not followed" in log
    assert "5 file(s) indexed, 0 removed, 0 broken (skipped), 3 of other types (skipped)" in log

    page = httpx.get(f"{server.url}/simple/oldpkg/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    assert page.status_code == 200
    got = {f["filename"]: f["hashes"]["sha256"] for f in page.json()["files"]}
    assert got == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (files["tgz"], files["bz2"])}
    assert httpx.get(f"{server.url}/simple/oldegg/").status_code == 404

    # pip installs the .tar.bz2 (the latest) from the index, and the .tgz through --find-links
    # on pypiserver's /packages/ page; nothing but this server is reachable to it.
    for target, args in (
        ("t1", ["--index-url", server.url + "/simple/", "oldpkg"]),
        ("t2", ["--no-index", "--find-links", server.url + "/packages/", "oldpkg==0.5"]),
    ):
        out = run(
            [tool("pip"), "install", "--no-deps", "--no-build-isolation", "--target", str(tmp_path / target), *args],
            client_env,
        )
        assert "Successfully installed oldpkg" in out.stdout, out.stdout
    assert "0.6" in (tmp_path / "t1" / "oldpkg" / "__init__.py").read_text()
    assert "0.5" in (tmp_path / "t2" / "oldpkg" / "__init__.py").read_text()

    # Reported once, not again on every rescan.
    server.stop()
    assert server.log().count(f"skipped {files['egg']}") == 1


def test_nested_file_urls_and_the_packages_listing(run_server, tmp_path):
    files = _folder(tmp_path)
    packages = files["wheel"].parent
    extra = tmp_path / "extra"
    (extra / "x").mkdir(parents=True)
    in_extra = make_wheel(extra / "x", "delta", "4.0")
    server = run_server("-P", ".", "-a", ".", str(packages), str(extra))

    for rel, path in (
        ("sub/beta-2.0-py3-none-any.whl", files["nested"]),
        ("sub/deeper/gamma-3.0-py3-none-any.whl", files["deeper"]),
        ("x/delta-4.0-py3-none-any.whl", in_extra),  # relative to its own folder, as pypiserver
        ("oldpkg-0.6.tar.bz2", files["bz2"]),
    ):
        r = httpx.get(f"{server.url}/packages/{rel}")
        assert r.status_code == 200 and r.content == path.read_bytes(), rel
        assert httpx.head(f"{server.url}/packages/{rel}").status_code == 200
    assert httpx.get(f"{server.url}/packages/sub/beta-2.0-py3-none-any.whl.metadata").status_code == 200
    # Only at its own path (the filename alone keeps working, as before).
    assert httpx.get(f"{server.url}/packages/other/beta-2.0-py3-none-any.whl").status_code == 404
    assert httpx.get(f"{server.url}/packages/sub/alpha-1.0-py3-none-any.whl").status_code == 404
    assert httpx.get(f"{server.url}/packages/beta-2.0-py3-none-any.whl").status_code == 200
    assert httpx.get(f"{server.url}/packages/sub/README.txt").status_code == 404

    listing = httpx.get(f"{server.url}/packages/")
    assert listing.status_code == 200 and listing.headers["content-type"].startswith("text/html")
    links = dict(re.findall(r'<a href="([^"#]+)#sha256=([0-9a-f]{64})">', listing.text))
    expected = {
        "alpha-1.0-py3-none-any.whl": files["wheel"],
        "oldpkg-0.5.tgz": files["tgz"],
        "oldpkg-0.6.tar.bz2": files["bz2"],
        "sub/beta-2.0-py3-none-any.whl": files["nested"],
        "sub/deeper/gamma-3.0-py3-none-any.whl": files["deeper"],
        "x/delta-4.0-py3-none-any.whl": in_extra,
    }
    assert links == {rel: hashlib.sha256(p.read_bytes()).hexdigest() for rel, p in expected.items()}


def test_paths_that_leave_the_package_folder_are_refused(run_server, tmp_path):
    files = _folder(tmp_path)
    packages = files["wheel"].parent
    (tmp_path / "secret-1.0-py3-none-any.whl").write_bytes(b"outside")
    server = run_server("-P", ".", "-a", ".", str(packages))
    for path, status in (
        ("/packages/../secret-1.0-py3-none-any.whl", 404),
        ("/packages/sub/../alpha-1.0-py3-none-any.whl", 404),
        ("/packages/sub/./beta-2.0-py3-none-any.whl", 404),
        ("/packages/%2e%2e/secret-1.0-py3-none-any.whl", 404),
        ("/packages/sub/..%2f..%2fsecret-1.0-py3-none-any.whl", 404),
        ("/packages//etc/passwd", 404),
        ("/packages/sub%5c..%5cbeta-2.0-py3-none-any.whl", 404),
        ("/packages/sub\\..\\x/beta-2.0-py3-none-any.whl", 404),
        ("/packages/.packhouse/packhouse.db", 404),
        ("/packages/..", 404),
        ("/packages/sub%00/beta-2.0-py3-none-any.whl", 400),  # NUL: refused before routing
    ):
        assert _raw_get(server.url, path) == status, path
    r = httpx.get(server.url + "/packages/sub/%2e%2e/alpha-1.0-py3-none-any.whl")
    assert r.status_code == 404 and "no '..'" in r.json()["detail"]
    assert "Traceback" not in server.log()


def test_serve_keeps_packages_paths_as_before(live_server, tmp_path):
    """``packhouse serve`` has no package folders: no listing, no nested paths."""
    server = live_server()
    assert httpx.get(f"{server.url}/packages/").status_code == 404
    assert httpx.get(f"{server.url}/packages/sub/x-1.0-py3-none-any.whl").status_code == 404
    assert _raw_get(server.url, "/packages/../x-1.0-py3-none-any.whl") == 404


def test_import_reports_what_it_skips(tmp_path, client_env):
    files = _folder(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "app", "import", "-q", str(files["wheel"].parent), "--data-dir", str(tmp_path / "d")],
        capture_output=True, text=True, cwd=ROOT, env=client_env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "imported 5 file(s); 0 already in the index; 0 broken (skipped); 3 of other types (skipped)" in proc.stderr
    assert "skipped oldegg-1.0-py2.7.egg: a Python egg (.egg)" in proc.stderr
    assert "skipped sub/README.txt: not a distribution file" in proc.stderr


def test_missing_package_folders(run_server, tmp_path):
    """A further package folder that does not exist is refused (as pypiserver does); the first one
    is created, as before, and said so."""
    env = clean_env(tmp_path / "home")
    existing = tmp_path / "existing"
    existing.mkdir()
    for args, extra_env, missing in (
        ([str(existing), str(tmp_path / "typo")], {}, tmp_path / "typo"),
        ([str(existing)], {"PACKHOUSE_EXTRA_PACKAGES_DIRS": str(tmp_path / "gone")}, tmp_path / "gone"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "app", "run", "-p", str(free_port()), "-P", ".", "-a", ".", *args],
            capture_output=True, text=True, cwd=ROOT, env={**env, **extra_env}, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 2, proc
        assert proc.stderr.strip().splitlines() == [
            f"packhouse: error: cannot read the package folder {missing} (No such file or directory): "
            "check the path and its volume"
        ]
        assert not missing.exists()
    server = run_server("-P", ".", "-a", ".", str(tmp_path / "brand-new"))
    assert f"warning: package folder {tmp_path / 'brand-new'} did not exist: created it" in server.log()
    assert (tmp_path / "brand-new").is_dir()


def test_curl_upload_without_a_digest_says_how_to_add_one(run_server, tmp_path):
    packages = tmp_path / "packages"
    server = run_server("-P", ".", "-a", ".", str(packages))
    wheel = make_wheel(tmp_path, "curled", "1.0")
    base = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "-F", ":action=file_upload", "-F", "name=curled",
            "-F", "version=1.0", "-F", f"content=@{wheel}"]  # fmt: skip
    proc = subprocess.run([*base, server.url + "/legacy/"], capture_output=True, text=True, check=True)
    body, status = proc.stdout.rsplit("\n", 1)
    assert status == "400"
    assert "-F sha256_digest=$(sha256sum FILE | cut -d' ' -f1)" in body
    digest = subprocess.run(
        f"sha256sum {wheel} | cut -d' ' -f1", shell=True, capture_output=True, text=True, check=True
    ).stdout.strip()
    proc = subprocess.run(
        [*base, "-F", f"sha256_digest={digest}", server.url + "/legacy/"], capture_output=True, text=True, check=True
    )
    assert proc.stdout.rsplit("\n", 1)[1] == "200", proc.stdout
    assert (packages / wheel.name).read_bytes() == wheel.read_bytes()


def test_values_too_long_to_store_do_not_stop_packhouse_run(tmp_path, database_url_for):
    """On PostgreSQL, a folder wheel whose METADATA declares a Metadata-Version longer than its
    column (10 characters) crashed the start-up scan (DataError), and so did a version longer than
    its column (100): the first is served without the value, the second is skipped and reported.
    The same on SQLite, which would have stored both."""
    packages = tmp_path / "packages"
    packages.mkdir()
    text = metadata_text("oddmeta", "1.0").replace("Metadata-Version: 2.1", "Metadata-Version: 2.1.0.0.0.0")
    odd = make_wheel(packages, "oddmeta", "1.0", metadata=text)
    long = make_wheel(packages, "longver", "1.0+" + "local" * 22)
    url = database_url_for(tmp_path / "run")
    port = free_port()
    env = clean_env(tmp_path / "server-home", {"PACKHOUSE_DATABASE_URL": url} if url else None)
    server = RunServer(["-P", ".", "-a", ".", str(packages)], env, tmp_path / "run.log", port).start()
    try:
        log = server.log()
        assert f"{odd.name}: its Metadata-Version is 11 characters long, and this index stores at most 10" in log
        assert f"skipped {long.name}: its version is 114 characters long, and this index stores at most 100" in log
        assert "1 file(s) indexed, 0 removed, 1 broken (skipped)" in log and "Traceback" not in log
        page = httpx.get(f"{server.url}/simple/oddmeta/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        assert [f["filename"] for f in page.json()["files"]] == [odd.name]
        assert httpx.get(f"{server.url}/files/oddmeta/{odd.name}").content == odd.read_bytes()
        assert httpx.get(f"{server.url}/simple/longver/").status_code == 404
    finally:
        server.stop()
