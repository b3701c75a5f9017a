"""The Dockerfile and compose.yaml: linted on every run; built and run on a real engine (slow).

The slow test follows the classic pypiserver guide with Packhouse's image: `docker compose up` of the
default service (port published, named volume, `command: -P . -a . /data/packages`), `twine upload`
to it, `pip install --index-url http://host:port` from it; then the guide's authenticated variant
(htpasswd bind, `-P /data/auth/htpasswd.txt -a update,download,list`) on the same volume; then
that over HTTPS, as docs/migrating.md sets it up, with the image's HEALTHCHECK run inside.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import trustme

from tests.conftest import ROOT, basic, clean_env, free_port, run, tool
from tests.support import assets, docker_engine
from tests.support.builders import make_wheel
from tests.support.runserver import RunServer

# The image and compose's default service run on SQLite in the container: the PostgreSQL variant
# only built and ran the very same thing a second time.
pytestmark = pytest.mark.sqlite_only


def test_dockerfile_passes_hadolint(client_env):
    run([tool("hadolint"), str(ROOT / "Dockerfile")], client_env)


def test_compose_file_is_valid(client_env):
    run([tool("docker-compose"), "-f", str(ROOT / "compose.yaml"), "config", "-q"], client_env)
    out = run([tool("docker-compose"), "-f", str(ROOT / "compose.yaml"), "config"], client_env).stdout
    assert 'published: "8081"' in out and "target: 8080" in out  # the classic 8081 -> 8080
    assert "target: /data/packages" in out and "-P" in out


def _image_wheels() -> Path:
    """Packhouse's dependencies as wheels for the image's Python, fetched before the test run."""
    return assets.required(assets.wheels(), "The image's dependencies as wheels")


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    try:
        eng = docker_engine.start_engine(tmp_path_factory.mktemp("dockerd"))
    except docker_engine.EngineUnavailableError as exc:
        pytest.fail(f"the container test cannot run on this machine: {exc}")
    yield eng
    docker_engine.stop_engine(eng)


def _wait_healthy(url: str, timeout: float = 60, verify: ssl.SSLContext | bool = True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=2, verify=verify).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url}/health did not answer")


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(2400)  # a cold machine builds the base image from Debian's packages first
def test_image_and_compose_service_end_to_end(engine, tmp_path, client_env):
    base = docker_engine.ensure_base_image(engine)
    # Serve the image's dependencies from a Packhouse on the host: no network route leaves a build here.
    wheels = tmp_path / "wheelhouse"
    shutil.copytree(_image_wheels(), wheels, ignore=shutil.ignore_patterns(".complete"))
    port = free_port()
    host_index = RunServer(["-P", ".", "-a", ".", str(wheels)], clean_env(tmp_path / "idx"), tmp_path / "idx.log", port)
    host_index.start(timeout=60)
    image = "packhouse-e2e:test"
    try:
        engine.docker(
            "build", "--network", "host", "--build-arg", f"PIP_INDEX_URL={host_index.url}/simple/",
            "--build-arg", f"PYTHON_IMAGE={base}", "-t", image, str(ROOT), timeout=600,
        )  # fmt: skip
    finally:
        host_index.stop()

    host_port = free_port()
    project = f"phe2e{os.getpid()}"
    compose_env = engine.env({**client_env, "PACKHOUSE_IMAGE": image, "PACKHOUSE_HOST_PORT": str(host_port)})
    compose = [tool("docker-compose"), "-p", project, "-f", str(ROOT / "compose.yaml")]
    url = f"http://127.0.0.1:{host_port}"
    try:
        run([*compose, "up", "-d", "--no-build"], compose_env, timeout=180)
        _wait_healthy(url)
        # The classic guide, unauthenticated: upload with twine, install with pip from the root URL.
        dist = tmp_path / "dist"
        dist.mkdir()
        wheel = make_wheel(dist, "podsearch", "0.3.1", module_code="ANSWER = 'from the container'\n")
        run(
            [tool("twine"), "upload", "--non-interactive", "--repository-url", url + "/", "-u", "user",
             "-p", "password", str(wheel)],
            client_env,
        )  # fmt: skip
        venv = tmp_path / "venv"
        run([sys.executable, "-m", "venv", str(venv)], client_env)
        pip = str(venv / "bin/pip")
        run([pip, "install", "--index-url", url, "--trusted-host", "127.0.0.1", "podsearch"], client_env)
        out = run([str(venv / "bin/python"), "-c", "import podsearch; print(podsearch.ANSWER)"], client_env)
        assert out.stdout.strip() == "from the container"
        # Non-root with the fixed uid; the upload sits flat in the named volume, pypiserver-style.
        ls = run([*compose, "exec", "-T", "packhouse", "sh", "-c", "id -u; ls /data/packages"], compose_env)
        assert ls.stdout.split()[0] == "9898" and wheel.name in ls.stdout.split()
        health = engine.docker("inspect", "--format", "{{json .Config.Healthcheck.Test}}", image).stdout
        assert "/health" in health
        # README's backup of the running container's package folder, as written there.
        backups = tmp_path / "backups"
        backups.mkdir()
        run([*compose, "run", "--rm", "--user", "root", "--entrypoint", "packhouse", "-v", f"{backups}:/backups",
             "packhouse", "backup", "--packages-dir", "/data/packages", "/backups/packages"], compose_env,
            timeout=180)  # fmt: skip
        assert (backups / "packages" / wheel.name).read_bytes() == wheel.read_bytes()
        assert (backups / "packages" / ".packhouse" / "packhouse.db").is_file()

        # The guide's authenticated variant: htpasswd -s file bound at /data/auth, same volume.
        auth = tmp_path / "auth"
        auth.mkdir()
        run(["htpasswd", "-sbc", str(auth / "htpasswd.txt"), "username", "pass"], client_env)
        (auth / "htpasswd.txt").chmod(0o644)
        override = tmp_path / "auth.yaml"
        override.write_text(
            "services:\n  packhouse:\n    volumes:\n"
            f"      - type: bind\n        source: {auth}\n        target: /data/auth\n"
            "    command: -P /data/auth/htpasswd.txt -a update,download,list /data/packages\n"
        )
        run([*compose, "-f", str(override), "up", "-d", "--no-build"], compose_env, timeout=180)
        _wait_healthy(url)
        assert httpx.get(url + "/simple/").status_code == 401
        r = httpx.get(url + "/simple/podsearch/", headers=basic("username", "pass"))
        assert r.status_code == 200 and wheel.name in r.text

        # HTTPS as docs/migrating.md sets it up: the certificate and key bound in, PACKHOUSE_SSL_*.
        tls = tmp_path / "tls"
        tls.mkdir()
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        cert.private_key_and_cert_chain_pem.write_to_path(str(tls / "fullchain.pem"))  # key included
        cert.private_key_pem.write_to_path(str(tls / "privkey.pem"))
        for pem in tls.iterdir():
            pem.chmod(0o644)  # readable by the container's uid 9898
        https = tmp_path / "https.yaml"
        https.write_text(
            "services:\n  packhouse:\n    volumes:\n"
            f"      - type: bind\n        source: {tls}\n        target: /data/tls\n"
            "    environment:\n      PACKHOUSE_SSL_CERTFILE: /data/tls/fullchain.pem\n"
            "      PACKHOUSE_SSL_KEYFILE: /data/tls/privkey.pem\n"
        )
        run([*compose, "-f", str(override), "-f", str(https), "up", "-d", "--no-build"], compose_env, timeout=180)
        secure = url.replace("http://", "https://")
        verify = ssl.create_default_context()
        ca.configure_trust(verify)
        _wait_healthy(secure, verify=verify)
        r = httpx.get(secure + "/simple/podsearch/", headers=basic("username", "pass"), verify=verify)
        assert r.status_code == 200 and wheel.name in r.text  # same volume, same users, now over TLS
        probe = json.loads(health)  # the image's HEALTHCHECK: ["CMD", "python3", "-c", CODE]
        run([*compose, "exec", "-T", "packhouse", *probe[1:]], compose_env)  # run inside, as Docker would
    except BaseException:
        logs = subprocess.run([*compose, "logs"], env=compose_env, capture_output=True, text=True)
        print(logs.stdout[-5000:], logs.stderr[-2000:])
        raise
    finally:
        subprocess.run([*compose, "down", "-v", "--remove-orphans"], env=compose_env, capture_output=True,
                       timeout=120)  # fmt: skip
