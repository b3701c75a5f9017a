"""End to end: a real `packhouse serve` driven by the real twine, flit, uv, hatch, poetry and pip."""

from __future__ import annotations

import html
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, run, tool
from tests.support.builders import make_sdist, make_wheel
from tests.support.htpasswd import write_htpasswd

pytestmark = pytest.mark.e2e


def readme_block(marker: str, lang: str = "ini") -> str:
    """The fenced block of README.md that contains ``marker``: tests use exactly what users copy."""
    blocks = re.findall(rf"```{lang}\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    matching = [b for b in blocks if marker in b]
    assert matching, f"README.md has no {lang} block with {marker!r}"
    return matching[0]


def pypirc_from_readme(url: str, user: str, password: str) -> str:
    block = readme_block("[distutils]")
    return block.replace("http://localhost:8080", url).replace("alice", user).replace("secret", password)


def pipconf_from_readme(url: str) -> str:
    block = readme_block("[global]")
    return block.replace("http://localhost:8080", url).replace("localhost", "127.0.0.1")


def new_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path / "bin" / "python"


def pip_install(python: Path, env: dict[str, str], *args: str, check: bool = True):
    return run([tool("pip"), "--python", str(python), "install", *args], env, check=check)


def imports(python: Path, *modules: str) -> str:
    code = "; ".join(f"import {m}; print({m}.__version__)" for m in modules)
    return subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def dists(tmp_path: Path) -> dict[str, Path]:
    out = tmp_path / "dist"
    out.mkdir()
    return {
        "app_whl": make_wheel(out, "Team-App", "1.2.0", requires_dist=("team-util>=0.3",), requires_python=">=3.8"),
        "app_sdist": make_sdist(out, "Team-App", "1.2.0", requires_dist=("team-util>=0.3",)),
        "util_whl": make_wheel(out, "team_util", "0.3.1"),
    }


def twine_upload(url: str, env: dict[str, str], files: list[Path], user: str = "anyone", password: str = "x"):
    return run(
        [tool("twine"), "upload", "--disable-progress-bar", "--non-interactive",
         "--repository-url", url, "-u", user, "-p", password, *map(str, files)],
        env,
    )  # fmt: skip


def test_twine_upload_and_rerun_then_pip_and_uv_install(live_server, client_env, dists, tmp_path):
    server = live_server()
    files = list(dists.values())
    twine_upload(server.url + "/legacy/", client_env, files)
    # A re-run of the same upload succeeds: identical files answer 200.
    again = twine_upload(server.url + "/", client_env, files)
    assert "Uploading team_app-1.2.0.tar.gz" in again.stdout

    # pip with the /simple/ URL, pulling the dependency from the server too.
    py = new_venv(tmp_path / "v-simple")
    pip_install(py, client_env, "--index-url", server.url + "/simple/", "team-app")
    assert imports(py, "team_app", "team_util") == "1.2.0\n0.3.1\n"

    # pip at the server root, as in the classic pypiserver guide (no /simple/).
    py = new_venv(tmp_path / "v-root")
    pip_install(py, client_env, "--index-url", server.url, "--trusted-host", "127.0.0.1", "Team_App==1.2.0")
    assert imports(py, "team_app") == "1.2.0\n"

    # uv pip install, which reads PEP 691 JSON and PEP 658 metadata.
    vpath = tmp_path / "v-uv"
    run([tool("uv"), "venv", "-q", str(vpath)], client_env)
    run([tool("uv"), "pip", "install", "--python", str(vpath / "bin" / "python"),
         "--index-url", server.url + "/simple/", "team-app"], client_env)  # fmt: skip
    assert imports(vpath / "bin" / "python", "team_app", "team_util") == "1.2.0\n0.3.1\n"
    log = server.log()
    assert "/files/team-util/team_util-0.3.1-py3-none-any.whl.metadata" in log  # uv used PEP 658


def test_pip_extra_index_url_and_readme_pip_conf(live_server, client_env, dists, tmp_path):
    """The private index as an *extra* index (PIP_EXTRA_INDEX_URL, and pip.conf as README shows it).
    The main index is a second, empty Packhouse, standing in for PyPI without leaving loopback."""
    private = live_server(data_dir=tmp_path / "private")
    main_index = live_server(data_dir=tmp_path / "main")
    twine_upload(private.url, client_env, [dists["app_whl"], dists["util_whl"]])

    env = dict(client_env, PIP_INDEX_URL=main_index.url + "/simple/", PIP_EXTRA_INDEX_URL=private.url + "/simple/")
    py = new_venv(tmp_path / "v-extra")
    pip_install(py, env, "team-app")
    assert imports(py, "team_app") == "1.2.0\n"

    conf = tmp_path / "pip.conf"
    conf.write_text(pipconf_from_readme(private.url) + f"index-url = {main_index.url}/simple/\n")
    env = dict(client_env, PIP_CONFIG_FILE=str(conf))
    py = new_venv(tmp_path / "v-conf")
    pip_install(py, env, "team-app")
    assert imports(py, "team_app", "team_util") == "1.2.0\n0.3.1\n"

    # The classic pypiserver guide's ~/.pip/pip.conf points at the server root, not /simple/.
    guide = tmp_path / "guide-pip.conf"
    guide.write_text(
        f"[global]\nindex-url = {main_index.url}/simple/\nextra-index-url = {private.url}\ntrusted-host = 127.0.0.1\n"
    )
    py = new_venv(tmp_path / "v-guide")
    pip_install(py, dict(client_env, PIP_CONFIG_FILE=str(guide)), "team-app")
    assert imports(py, "team_app") == "1.2.0\n"


BACKENDS = {
    "flit": ('requires = ["flit_core>=3.2,<5"]\nbuild-backend = "flit_core.buildapi"', ""),
    "poetry": (
        'requires = ["poetry-core>=2.0"]\nbuild-backend = "poetry.core.masonry.api"',
        '\n[tool.poetry]\npackages = [{include = "MODULE"}]\n',
    ),
}


def make_project(root: Path, name: str, version: str, backend: str, note: str = "") -> Path:
    """A one-module project built by ``backend`` (flit or poetry); ``note`` changes the built
    files' bytes without changing their names."""
    module = name.lower().replace("-", "_")
    build_system, tool_table = BACKENDS[backend]
    (root / module).mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(
        f"[build-system]\n{build_system}\n\n[project]\n"
        f'name = "{name}"\nversion = "{version}"\ndescription = "Published with {backend}"\n'
        f'requires-python = ">=3.8"\n{tool_table.replace("MODULE", module)}'
    )
    (root / module / "__init__.py").write_text(f'"""{name}.{note}"""\n__version__ = "{version}"\n')
    return root


@pytest.mark.parametrize("auth", [False, True], ids=["open", "update-needs-password"])
def test_flit_publish_with_readme_pypirc(live_server, client_env, tmp_path, auth):
    args: list[str] = []
    user, password = "guide-user", "guide-pass"
    if auth:
        users = write_htpasswd(tmp_path / "htpasswd.txt", ("sha1",))  # `htpasswd -s`, as the guide does
        user, password = users["sha1"]
        args = ["-P", str(tmp_path / "htpasswd.txt"), "-a", "update"]
    server = live_server(*args)
    home = Path(client_env["HOME"])
    (home / ".pypirc").write_text(pypirc_from_readme(server.url, user, password))
    project = make_project(tmp_path / "proj", "podsearch", "0.4.0", "flit")
    run([tool("flit"), "publish", "--repository", "private"], client_env, cwd=project)

    page = httpx.get(server.url + "/simple/podsearch/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    assert sorted(f["filename"] for f in page.json()["files"]) == [
        "podsearch-0.4.0-py3-none-any.whl",
        "podsearch-0.4.0.tar.gz",
    ]
    py = new_venv(tmp_path / "v")
    pip_install(py, client_env, "--index-url", server.url, "--trusted-host", "127.0.0.1", "podsearch")
    assert imports(py, "podsearch") == "0.4.0\n"


def test_uv_publish_and_hatch_publish(live_server, client_env, dists, tmp_path):
    pw = tmp_path / "htpasswd"
    (user, password) = write_htpasswd(pw, ("bcrypt",))["bcrypt"]
    server = live_server("--passwords", str(pw))
    run([tool("uv"), "publish", "--publish-url", server.url + "/legacy/", "--username", user,
         "--password", password, str(dists["util_whl"])], client_env)  # fmt: skip
    hatch = [tool("hatch"), "publish", "--no-prompt", "--repo", server.url + "/legacy/", "--user", user,
             "--auth", password, str(dists["app_whl"]), str(dists["app_sdist"])]  # fmt: skip
    run(hatch, client_env, cwd=tmp_path)
    listing = httpx.get(server.url + "/simple/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    assert [p["name"] for p in listing.json()["projects"]] == ["Team-App", "team_util"]
    # Wrong password: uv publish fails with the server's 401.
    bad = run([tool("uv"), "publish", "--publish-url", server.url + "/legacy/", "--username", user,
               "--password", "wrong", str(dists["app_whl"])], client_env, check=False)  # fmt: skip
    assert bad.returncode != 0
    assert "401" in bad.stderr or "Invalid username or password" in bad.stderr


def test_uv_publish_check_url_skips_what_the_index_already_has(live_server, client_env, dists, tmp_path):
    """`uv publish --check-url URL/simple/` (UV_PUBLISH_CHECK_URL), as a CI job that publishes on
    every run uses it: files the index already has, by name and sha256, are skipped; a name taken by
    other bytes stops the job."""
    pw = tmp_path / "htpasswd"
    (user, password) = write_htpasswd(pw, ("bcrypt",))["bcrypt"]
    server = live_server("--passwords", str(pw), "--authenticate", "update,download,list")
    publish = [tool("uv"), "publish", "--publish-url", server.url + "/legacy/", "--check-url",
               server.url + "/simple/", "--username", user, "--password", password]  # fmt: skip
    run([*publish, str(dists["util_whl"])], client_env)
    again = run([*publish, str(dists["util_whl"]), str(dists["app_whl"])], client_env)
    assert "already exists" in again.stderr, again.stderr
    auth = (user, password)
    page = httpx.get(
        server.url + "/simple/team-util/", auth=auth, headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    assert [f["filename"] for f in page.json()["files"]] == [dists["util_whl"].name]
    assert httpx.get(server.url + "/simple/team-app/", auth=auth).status_code == 200
    (tmp_path / "other").mkdir()
    other = make_wheel(tmp_path / "other", "team_util", "0.3.1", module_code="VALUE = 'other bytes'\n")
    bad = run([*publish, str(other)], client_env, check=False)
    assert bad.returncode != 0 and "409" in bad.stderr and "with other contents" in bad.stderr, bad.stderr
    stored = httpx.get(f"{server.url}/files/team-util/{other.name}", auth=auth)
    assert stored.content == dists["util_whl"].read_bytes()


@pytest.mark.parametrize("fmt", ["bcrypt", "sha1", "apr1"])
def test_private_index_with_every_hash_format(live_server, client_env, dists, tmp_path, fmt):
    """-a update,download,list: nothing is visible without a login; pip and uv log in from the URL."""
    pw = tmp_path / "htpasswd"
    users = write_htpasswd(pw)
    user, password = users[fmt]
    server = live_server("-P", str(pw), "-a", "update,download,list")
    twine_upload(server.url, client_env, [dists["app_whl"], dists["util_whl"]], user, password)

    anon = httpx.get(server.url + "/simple/team-app/")
    assert anon.status_code == 401
    assert anon.headers["www-authenticate"] == 'Basic realm="packhouse"'
    py = new_venv(tmp_path / "v-anon")
    refused = pip_install(py, client_env, "--index-url", server.url + "/simple/", "team-app", check=False)
    assert refused.returncode != 0

    authed = server.url.replace("http://", f"http://{user}:{password.replace(':', '%3A').replace(' ', '%20')}@")
    pip_install(py, client_env, "--index-url", authed + "/simple/", "team-app")
    assert imports(py, "team_app") == "1.2.0\n"
    vpath = tmp_path / "v-uv"
    run([tool("uv"), "venv", "-q", str(vpath)], client_env)
    run([tool("uv"), "pip", "install", "--python", str(vpath / "bin" / "python"),
         "--index-url", authed + "/simple/", "team-app"], client_env)  # fmt: skip
    assert imports(vpath / "bin" / "python", "team_util") == "0.3.1\n"


JSON_PAGE = {"Accept": "application/vnd.pypi.simple.v1+json"}


def poetry_consumer(root: Path, requirements: list[str], source_block: str) -> Path:
    """A Poetry application (package-mode = false) that depends on ``requirements``, with ``source_block``."""
    root.mkdir(parents=True)
    deps = ", ".join(f'"{r}"' for r in requirements)
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "consumer"\nversion = "0.0.1"\nrequires-python = ">=3.8"\ndependencies = [{deps}]\n\n'
        f"[tool.poetry]\npackage-mode = false\n\n{source_block}"
    )
    return root


def listed(url: str, project: str, auth: tuple[str, str] | None = None) -> dict[str, str]:
    """filename -> sha256 of a project's files, from its PEP 691 page."""
    page = httpx.get(f"{url}/simple/{project}/", headers=JSON_PAGE, auth=auth)
    assert page.status_code == 200, page.text
    return {f["filename"]: f["hashes"]["sha256"] for f in page.json()["files"]}


def test_poetry_publish_lock_and_install_with_readme_config(live_server, client_env, tmp_path):
    """README's Poetry commands and source block, against a private index (-a update,download,list):
    publish; the same files again; other bytes under the same filename (409, which --skip-existing
    skips); a wrong password (401); then `poetry lock` and `poetry install` through the source."""
    pw = tmp_path / "htpasswd"
    user, password = write_htpasswd(pw, ("bcrypt",))["bcrypt"]
    server = live_server("-P", str(pw), "-a", "update,download,list")

    def from_readme(text: str) -> str:
        return text.replace("http://localhost:8080", server.url).replace("alice", user).replace("secret", password)

    lib = make_project(tmp_path / "lib", "Team-Lib", "0.1.0", "poetry")
    for line in readme_block("poetry config", "sh").splitlines():
        argv = shlex.split(from_readme(line))
        run([tool(argv[0]), *argv[1:]], client_env, cwd=lib)
    first = listed(server.url, "team-lib", (user, password))
    assert sorted(first) == ["team_lib-0.1.0-py3-none-any.whl", "team_lib-0.1.0.tar.gz"]

    publish = [tool("poetry"), "publish", "--repository", "private"]
    run(publish, client_env, cwd=lib)  # the very same files: accepted, nothing changes
    assert listed(server.url, "team-lib", (user, password)) == first

    shutil.rmtree(lib / "dist")
    make_project(lib, "Team-Lib", "0.1.0", "poetry", note=" Rebuilt.")
    run([tool("poetry"), "build"], client_env, cwd=lib)
    refused = run(publish, client_env, cwd=lib, check=False)
    assert refused.returncode != 0
    said = " ".join((refused.stdout + refused.stderr).split())
    assert "HTTP Error 409: File already exists: team_lib-0.1.0" in said, said  # the reason phrase
    skipped = run([*publish, "--skip-existing"], client_env, cwd=lib)
    assert (skipped.stdout + skipped.stderr).count("File exists. Skipping") == 2
    assert listed(server.url, "team-lib", (user, password)) == first  # not a stored byte changed

    run([tool("poetry"), "config", "http-basic.private", user, "wrong"], client_env)
    bad = run([*publish, "--skip-existing"], client_env, cwd=lib, check=False)
    assert bad.returncode != 0 and "401" in bad.stdout + bad.stderr
    run([tool("poetry"), "config", "http-basic.private", user, password], client_env)

    app = poetry_consumer(tmp_path / "app", ["team-lib>=0.1"], from_readme(readme_block("tool.poetry.source", "toml")))
    run([tool("poetry"), "lock"], client_env, cwd=app)
    lock = (app / "poetry.lock").read_text()
    assert first["team_lib-0.1.0-py3-none-any.whl"] in lock and 'reference = "private"' in lock
    run([tool("poetry"), "install"], client_env, cwd=app)
    version = run([tool("poetry"), "run", "python", "-c", "import team_lib; print(team_lib.__version__)"],
                  client_env, cwd=app)  # fmt: skip
    assert version.stdout.strip() == "0.1.0"


LANDING_SNIPPETS = {"s-pip", "s-uv", "s-pypirc", "s-uvpub", "s-hatch", "s-poetry", "s-poetry-source"}


def landing_snippets(url: str) -> dict[str, str]:
    """The copyable snippets of the landing page (``<pre id="s-...">``), as a user would paste them."""
    page = httpx.get(url + "/", headers={"Accept": "text/html"})
    assert page.status_code == 200
    found = re.findall(r'<pre[^>]*\bid="(s-[\w-]+)"[^>]*>(.*?)</pre>', page.text, re.S)
    return {name: html.unescape(text) for name, text in found}


@pytest.mark.sqlite_only  # what is tested is the page's text and the clients; the database is incidental
def test_every_landing_page_snippet_works_as_shown(live_server, client_env, dists, tmp_path):
    """Each snippet of the landing page, pasted as shown (with a real login for YOUR_USER and
    YOUR_PASSWORD), publishes or installs with the client it is for."""
    pw = tmp_path / "htpasswd"
    user, password = write_htpasswd(pw, ("bcrypt",))["bcrypt"]
    server = live_server("-P", str(pw), "-a", "update")
    snippets = {
        name: text.replace("YOUR_USER", user).replace("YOUR_PASSWORD", password)
        for name, text in landing_snippets(server.url).items()
    }
    assert set(snippets) == LANDING_SNIPPETS  # a new snippet needs a line here

    def command(name: str) -> list[list[str]]:
        return [[tool(a[0]), *a[1:]] for a in map(shlex.split, snippets[name].splitlines()) if a]

    # Uploads: twine and flit through ~/.pypirc, uv publish, hatch, poetry.
    (Path(client_env["HOME"]) / ".pypirc").write_text(snippets["s-pypirc"])
    run([tool("twine"), "upload", "--non-interactive", "--disable-progress-bar", "-r", "packhouse",
         str(dists["util_whl"])], client_env)  # fmt: skip
    run([tool("flit"), "publish", "--repository", "packhouse"], client_env,
        cwd=make_project(tmp_path / "flit", "podsearch", "0.4.0", "flit"))  # fmt: skip
    (uv_publish,) = command("s-uvpub")
    run([*uv_publish, str(dists["app_whl"])], client_env)
    (hatch_publish,) = command("s-hatch")
    run([*hatch_publish, "--no-prompt", str(dists["app_sdist"])], client_env, cwd=tmp_path)
    lib = make_project(tmp_path / "lib", "Team-Lib", "0.1.0", "poetry")
    for argv in command("s-poetry"):
        run(argv, client_env, cwd=lib)
    index = httpx.get(server.url + "/simple/", headers=JSON_PAGE).json()
    assert sorted(p["name"] for p in index["projects"]) == ["Team-App", "Team-Lib", "podsearch", "team_util"]
    assert sorted(listed(server.url, "team-app")) == ["team_app-1.2.0-py3-none-any.whl", "team_app-1.2.0.tar.gz"]

    # Installs: pip.conf, a uv project (whose index entry also publishes), a Poetry project.
    conf = tmp_path / "pip.conf"
    conf.write_text(snippets["s-pip"] + "\n")
    py = new_venv(tmp_path / "v-pip")
    pip_install(py, dict(client_env, PIP_CONFIG_FILE=str(conf)), "team-app")
    assert imports(py, "team_app", "team_util") == "1.2.0\n0.3.1\n"

    uv_app = tmp_path / "uv-app"
    uv_app.mkdir()
    (uv_app / "pyproject.toml").write_text(
        '[project]\nname = "uv-app"\nversion = "0.1.0"\nrequires-python = ">=3.8"\n'
        f'dependencies = ["team-app", "team-lib"]\n\n{snippets["s-uv"]}\n'
    )
    # The project's [tool.uv] is configuration: UV_NO_CONFIG would make uv skip it. PyPI stays uv's
    # default index after this one; a dead loopback address stands in for it.
    uv_env = {k: v for k, v in client_env.items() if k != "UV_NO_CONFIG"}
    uv_env["UV_DEFAULT_INDEX"] = "http://127.0.0.1:9/simple/"
    run([tool("uv"), "lock"], uv_env, cwd=uv_app)
    run([tool("uv"), "sync"], uv_env, cwd=uv_app)
    assert imports(uv_app / ".venv" / "bin" / "python", "team_app", "team_lib") == "1.2.0\n0.1.0\n"
    (tmp_path / "extra").mkdir()
    extra = make_wheel(tmp_path / "extra", "team-extra", "1.0.0")
    run([tool("uv"), "publish", "--index", "packhouse", "--username", user, "--password", password, str(extra)],
        uv_env, cwd=uv_app)  # fmt: skip
    assert sorted(listed(server.url, "team-extra")) == ["team_extra-1.0.0-py3-none-any.whl"]

    app = poetry_consumer(tmp_path / "poetry-app", ["team-app", "podsearch"], snippets["s-poetry-source"])
    run([tool("poetry"), "lock"], client_env, cwd=app)
    run([tool("poetry"), "install"], client_env, cwd=app)
    versions = run([tool("poetry"), "run", "python", "-c", "import team_util, podsearch; print(podsearch.__version__)"],
                   client_env, cwd=app)  # fmt: skip
    assert versions.stdout.strip() == "0.4.0"


def test_project_status_markers_with_the_real_clients(live_server, client_env, dists, tmp_path):
    """PEP 792 with twine, pip and uv: an archived project installs as before and refuses twine's
    upload with the server's reason; a quarantined one cannot be installed by pip or uv, its
    pinned file URL is refused too; reopened, everything works again."""
    server = live_server()
    twine_upload(server.url + "/legacy/", client_env, [dists["util_whl"]])
    status = server.url + "/api/projects/team-util/status"
    assert httpx.put(status, json={"status": "archived", "reason": "frozen"}).status_code == 200

    py = new_venv(tmp_path / "v-archived")
    pip_install(py, client_env, "--index-url", server.url + "/simple/", "team-util")
    assert imports(py, "team_util") == "0.3.1\n"
    (tmp_path / "newer").mkdir()
    newer = make_wheel(tmp_path / "newer", "team_util", "0.4.0")
    proc = run([tool("twine"), "upload", "--disable-progress-bar", "--non-interactive",
                "--repository-url", server.url + "/legacy/", "-u", "x", "-p", "x", str(newer)],
               dict(client_env, COLUMNS="400"), check=False)  # fmt: skip
    out = " ".join((proc.stdout + proc.stderr).split())  # twine's reason phrase: no --verbose needed
    assert proc.returncode != 0 and "403" in out and "team-util is archived on this index" in out, out

    assert httpx.put(status, json={"status": "quarantined", "reason": "malware"}).status_code == 200
    py = new_venv(tmp_path / "v-quarantined")
    proc = pip_install(py, client_env, "--index-url", server.url + "/simple/", "team-util", check=False)
    assert proc.returncode != 0 and "No matching distribution found for team-util" in proc.stderr, proc.stderr
    wheel_url = f"{server.url}/files/team-util/{dists['util_whl'].name}"
    proc = pip_install(py, client_env, wheel_url, check=False)
    assert proc.returncode != 0 and "403 Client Error: team-util is quarantined on this index" in proc.stderr, (
        proc.stderr
    )
    vpath = tmp_path / "v-uv"
    run([tool("uv"), "venv", "-q", str(vpath)], client_env)
    uv_install = [tool("uv"), "pip", "install", "--python", str(vpath / "bin" / "python"),
                  "--index-url", server.url + "/simple/", "team-util"]  # fmt: skip
    proc = run(uv_install, client_env, check=False)
    assert proc.returncode != 0 and "team-util" in proc.stderr, proc.stderr

    assert httpx.put(status, json={"status": "active"}).status_code == 200
    run(uv_install, client_env)
    assert imports(vpath / "bin" / "python", "team_util") == "0.3.1\n"
    twine_upload(server.url + "/legacy/", client_env, [newer])


def test_refusals_read_in_the_clients_own_output(live_server, client_env, dists, tmp_path):
    """The server's message is also the reason phrase of its status line (app/http_reason.py):
    twine prints it without --verbose, flit puts it in its error. A user reads why an upload was
    refused (a file that already exists, an archived project), not just "409 Conflict"."""
    server = live_server()
    env = dict(client_env, COLUMNS="400")  # twine's rich output wraps at the terminal's width
    twine_upload(server.url + "/legacy/", env, [dists["util_whl"]])
    (tmp_path / "changed").mkdir()
    changed = make_wheel(tmp_path / "changed", "team_util", "0.3.1", module_code="x = 2\n")
    proc = run([tool("twine"), "upload", "--disable-progress-bar", "--non-interactive",
                "--repository-url", server.url + "/legacy/", "-u", "x", "-p", "x", str(changed)],
               env, check=False)  # fmt: skip
    out = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0 and "409 Conflict" in out, out
    assert "File already exists: team_util-0.3.1-py3-none-any.whl was uploaded before with other contents" in out

    home = Path(client_env["HOME"])
    (home / ".pypirc").write_text(pypirc_from_readme(server.url, "guide-user", "guide-pass"))
    project = make_project(tmp_path / "proj", "podsearch", "0.4.0", "flit")
    flit = [tool("flit"), "publish", "--repository", "private"]
    run(flit, client_env, cwd=project)
    make_project(tmp_path / "proj", "podsearch", "0.4.0", "flit", note="rebuilt")
    proc = run(flit, client_env, cwd=project, check=False)
    assert proc.returncode != 0, proc.stderr
    assert "409 Client Error: File already exists: podsearch-0.4.0" in proc.stderr, proc.stderr

    reason = {"status": "archived", "reason": "continued as podsearch2"}
    assert httpx.put(server.url + "/api/projects/podsearch/status", json=reason).status_code == 200
    make_project(tmp_path / "proj", "podsearch", "0.5.0", "flit")
    proc = run(flit, client_env, cwd=project, check=False)
    assert proc.returncode != 0, proc.stderr
    assert "403 Client Error: podsearch is archived on this index" in proc.stderr, proc.stderr
    assert "continued as podsearch2" in proc.stderr
