"""Operations and pypiserver compatibility, in process: /metrics, fallback, health path, /packages/,
settings from flags, environment and TOML, `packhouse import`, `packhouse user` file edits."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from app.auth.htpasswd import edit_htpasswd, hash_password, parse_htpasswd, verify_hash
from app.cli import build_parser
from app.commands import run as run_cmd
from app.commands._server import ConfigError, build_settings
from app.settings import Settings
from tests.conftest import ROOT, basic, clean_env
from tests.support.builders import make_sdist, make_wheel
from tests.support.forms import upload_form
from tests.support.htpasswd import write_htpasswd


def _wheel(tmp_path: Path, name: str, version: str = "1.0") -> Path:
    out = tmp_path / "dist"
    out.mkdir(exist_ok=True)
    return make_wheel(out, name, version)


def test_fallback_is_off_by_default_and_redirects_when_given(make_client):
    assert make_client().get("/simple/unknown-project/").status_code == 404
    client = make_client(fallback_url="https://mirror.example/simple")
    r = client.get("/simple/unknown-project/", follow_redirects=False)
    assert r.status_code == 302
    assert r.headers["location"] == "https://mirror.example/simple/unknown-project/"
    assert client.get("/unknown-project/", follow_redirects=False).status_code == 302  # pypiserver's URL


def test_fallback_is_only_for_the_simple_pages(make_client):
    """The other index has simple pages only: the browsing UI and the JSON API (yank and delete
    included) answer 404 for a project this index does not have, as without a fallback."""
    client = make_client(fallback_url="https://mirror.example/simple")
    r = client.get("/ui/project/unknown-project/", headers={"Accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    for method, url in (
        ("GET", "/ui/project/unknown-project/1.0/"),
        ("GET", "/api/projects/unknown-project"),
        ("POST", "/api/projects/unknown-project/releases/1.0/yank"),
        ("DELETE", "/api/projects/unknown-project/releases/1.0"),
        ("DELETE", "/api/projects/unknown-project/files/unknown_project-1.0.tar.gz"),
    ):
        r = client.request(method, url, follow_redirects=False)
        assert r.status_code == 404, (method, url, r.status_code, r.headers.get("location"))
        assert r.headers["content-type"] == "application/problem+json"


def test_packages_url_and_custom_health_endpoint(make_client, tmp_path):
    client = make_client(health_endpoint="/healthz")
    assert client.get("/healthz").json()["status"] == "ok"
    wheel = _wheel(tmp_path, "oldstyle")
    data, files = upload_form(wheel)
    assert client.post("/legacy/", data=data, files=files).status_code == 200
    r = client.get(f"/packages/{wheel.name}")
    assert r.status_code == 200 and r.content == wheel.read_bytes()
    assert client.get(f"/packages/{wheel.name}.metadata").status_code == 200
    assert client.get("/packages/nothing-1.0.tar.gz").status_code == 404
    assert client.head(f"/packages/{wheel.name}").status_code == 200
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert "/packages/{filename}" in client.get("/openapi.json").json()["paths"]
    assert not [w for w in caught if "pypiserver_file" in str(w.message)]  # no duplicate operation ids


def test_metrics_count_uploads_and_can_require_a_login(make_client, tmp_path):
    passwords = tmp_path / "htpasswd"
    edit_htpasswd(passwords, "ops", hash_password("secret"))
    client = make_client(passwords=str(passwords), authenticate="update", metrics_auth=True)
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=basic("ops", "wrong")).status_code == 401
    data, files = upload_form(_wheel(tmp_path, "metered"))
    assert client.post("/legacy/", data=data, files=files, headers=basic("ops", "secret")).status_code == 200
    r = client.get("/metrics", headers=basic("ops", "secret"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert "packhouse_uploads_total 1.0" in r.text
    assert "packhouse_files 1.0" in r.text and "packhouse_projects 1.0" in r.text
    assert make_client(metrics=False).get("/metrics").status_code in (401, 404)


def test_metrics_label_an_unknown_method_other(client):
    """Each label value is a series kept for the process's life: a method invented by the client
    (the h11 parser passes any token through) must not add series at will."""
    for i in range(3):
        assert client.request(f"X-INVENTED-{i}", "/health").status_code == 405
    text = client.get("/metrics").text
    assert "X-INVENTED" not in text
    assert 'packhouse_http_requests_total{method="other",route="/health",status="405"} 3.0' in text


def test_metrics_of_a_private_index_take_the_login_of_any_htpasswd_user(make_client, tmp_path):
    """Listing needs a login, so /metrics does too (it tells the project and file counts): any user
    of the passwords file, in any hash format, by Basic auth (what Prometheus's basic_auth sends)."""
    users = write_htpasswd(tmp_path / "htpasswd")
    client = make_client(passwords=str(tmp_path / "htpasswd"), authenticate="update,download,list")
    anonymous = client.get("/metrics")
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == 'Basic realm="packhouse"'
    detail = anonymous.json()["detail"]
    assert "/metrics needs a login" in detail and "basic_auth" in detail and "--no-metrics-auth" in detail
    assert "packhouse_" not in anonymous.text
    wrong = client.get("/metrics", headers=basic("bea", "wrong"))
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == 'Basic realm="packhouse"'
    assert "Invalid username or password for 'bea'" in wrong.json()["detail"]
    assert client.get("/metrics", headers=basic("nobody", "bcrypt-pw-1")).status_code == 401
    for user, password in users.values():
        r = client.get("/metrics", headers=basic(user, password))
        assert r.status_code == 200 and "packhouse_projects 0.0" in r.text, user


@pytest.mark.sqlite_only  # the auth policy: the database plays no part
@pytest.mark.parametrize(
    ("authenticate", "metrics_auth", "anonymous"),
    [
        ("update,download,list", None, 401),  # a private index: /metrics follows
        ("list", None, 401),
        ("update,download", None, 200),  # pages open to anyone: so is /metrics
        ("update", None, 200),
        (".", None, 200),
        (None, None, 200),  # no passwords file at all
        ("update,download,list", False, 200),  # --no-metrics-auth: open for scrapers without credentials
        ("update", True, 401),  # --metrics-auth: a login even though the pages are open
        (".", True, 401),
    ],
)
def test_metrics_login_follows_the_list_policy_unless_set(make_client, tmp_path, authenticate, metrics_auth, anonymous):
    passwords = tmp_path / "htpasswd"
    edit_htpasswd(passwords, "ops", hash_password("secret"))
    settings = {"authenticate": authenticate, "metrics_auth": metrics_auth}
    settings = {k: v for k, v in settings.items() if v is not None}
    if authenticate is not None or metrics_auth is not None:
        settings["passwords"] = str(passwords)
    client = make_client(**settings)
    assert client.get("/metrics").status_code == anonymous
    if anonymous == 401:
        assert client.get("/metrics", headers=basic("ops", "secret")).status_code == 200
        assert client.get("/metrics", headers=basic("ops", "wrong")).status_code == 401


def test_settings_precedence_flags_env_toml(tmp_path, monkeypatch):
    config = tmp_path / "packhouse.toml"
    config.write_text('port = 9000\nhost = "0.0.0.0"\nlog-format = "json"\nrescan_interval = 5\n')
    monkeypatch.setenv("PACKHOUSE_HOST", "127.0.0.2")
    settings = build_settings({"rescan_interval": 7.0, "port": None}, str(config))
    assert (settings.port, settings.host, settings.log_format, settings.rescan_interval) == (
        9000, "127.0.0.2", "json", 7.0,
    )  # fmt: skip
    monkeypatch.setenv("PACKHOUSE_CONFIG", str(config))
    assert build_settings({}).port == 9000
    config.write_text("nonsense = 1\n")
    with pytest.raises(ConfigError, match="nonsense"):
        build_settings({})
    config.write_text("port = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        build_settings({})


def test_config_files_that_are_not_utf8_or_not_a_table_are_one_line_errors(tmp_path, monkeypatch):
    config = tmp_path / "packhouse.toml"
    monkeypatch.setenv("PACKHOUSE_CONFIG", str(config))
    config.write_bytes(b"\xef\xbb\xbfport = 9001\n")  # a BOM, as Notepad writes it, is fine
    assert build_settings({}).port == 9001
    config.write_bytes(b'host = "caf\xe9"\n')  # Latin-1
    with pytest.raises(ConfigError, match=f"config file {config} is not UTF-8 text"):
        build_settings({})
    for text in ("packhouse = 5\n", 'packhouse = "x"\n', "packhouse = [1]\n"):
        config.write_text(text)
        with pytest.raises(ConfigError, match=f"config file {config}: 'packhouse' is not a table"):
            build_settings({})


def test_run_defaults_yield_to_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PACKHOUSE_PACKAGES_DIR", str(tmp_path / "from-env"))
    settings = build_settings({"packages_dir": None}, defaults={"host": "0.0.0.0", "packages_dir": "~/x"})
    assert settings.packages_dir == tmp_path / "from-env" and settings.host == "0.0.0.0"


def test_run_mode_settings_keep_state_inside_the_package_folder(tmp_path):
    settings = Settings(packages_dir=tmp_path / "pk")
    assert settings.effective_files_dir == tmp_path / "pk"
    assert settings.effective_database_url.endswith(f"{tmp_path}/pk/.packhouse/packhouse.db")


def test_pypiserver_flags_parse_as_pypiserver_does():
    args, warnings = run_cmd.parse(["run", "-P", ".", "-a", ".", "--server", "auto", "/data/packages"])
    assert (args.passwords, args.authenticate, args.packages_dirs) == (".", ".", ["/data/packages"])
    assert warnings == ["pypiserver's --server is ignored: Packhouse always runs on uvicorn"]
    args, _ = run_cmd.parse(["-i", "0.0.0.0", "-p", "8080", "-o", "--hash-algo", "sha256", "--disable-fallback"])
    assert (args.host, args.port, args.overwrite, args.packages_dirs) == ("0.0.0.0", 8080, True, [])
    _, warnings = run_cmd.parse(["--hash-algo", "md5", "x"])
    assert "always links files with #sha256=" in warnings[0]
    with pytest.raises(run_cmd._UsageError, match="contradict"):
        run_cmd.parse(["--fallback-url", "https://x", "--disable-fallback", "x"])


def test_serve_help_lists_every_setting_and_version_is_reported():
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    help_text = serve.format_help()
    # hash_algo only exists for `packhouse run` (pypiserver's --hash-algo).
    flag_for = {"metrics": "--no-metrics", "access_log": "--no-access-log", "hash_algo": None}
    for name in Settings.model_fields:
        flag = flag_for.get(name, "--" + name.replace("_", "-"))
        if flag:
            assert flag in help_text, f"packhouse serve --help does not mention {flag}"
    out = subprocess.run([sys.executable, "-m", "app", "--version"], capture_output=True, text=True, cwd=ROOT)
    from app import __version__

    assert out.stdout.strip() == f"packhouse {__version__}"


def test_import_command_reports_broken_archives_and_serves_the_rest(tmp_path, make_client, database_url_for):
    source = tmp_path / "wheelhouse"
    (source / "deep").mkdir(parents=True)
    make_wheel(source, "imported-lib", "1.2")
    make_sdist(source / "deep", "imported-app", "0.9")
    (source / "deep" / "truncated-1.0.tar.gz").write_bytes(b"\x1f\x8b\x08 truncated")
    data_dir = tmp_path / "data"
    cmd = [sys.executable, "-m", "app", "import", str(source), "--data-dir", str(data_dir)]
    url = database_url_for(data_dir)
    env = clean_env(tmp_path / "home", {"PACKHOUSE_DATABASE_URL": url} if url else None)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "3/3" in proc.stderr  # the progress bar ran to the end
    assert "imported 2 file(s)" in proc.stderr and "1 broken" in proc.stderr
    assert "skipped deep/truncated-1.0.tar.gz" in proc.stderr
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    assert "imported 0 file(s); 2 already in the index" in again.stderr
    client = make_client(data_dir=data_dir)
    page = client.get("/simple/imported-lib/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json()
    assert page["files"][0]["core-metadata"]
    filename = page["files"][0]["filename"]
    assert client.get(f"/files/imported-lib/{filename}").content == (source / filename).read_bytes()
    assert client.get("/simple/imported-app/").status_code == 200


def test_htpasswd_edits_are_atomic_bcrypt_and_keep_other_lines(tmp_path):
    path = tmp_path / "sub" / "htpasswd"
    assert edit_htpasswd(path, "carol", hash_password("pw1")) is False  # created if missing
    path.write_text("# team\nold:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n" + path.read_text())
    assert edit_htpasswd(path, "carol", hash_password("pw2")) is True
    users = parse_htpasswd(path.read_text())
    assert users["carol"].startswith("$2y$") and verify_hash("pw2", users["carol"])
    assert path.read_text().startswith("# team\nold:{SHA}")
    assert edit_htpasswd(path, "carol", None) is True
    assert list(parse_htpasswd(path.read_text())) == ["old"]
    assert [p.name for p in path.parent.iterdir()] == ["htpasswd"]  # no temporary file left behind
    with pytest.raises(ValueError, match="invalid user name"):
        edit_htpasswd(path, "a:b", hash_password("x"))


def test_import_command_writes_to_the_s3_storage_the_server_uses(tmp_path, make_client, database_url_for, s3):
    """PACKHOUSE_STORAGE (as the server's replicas have it) sends the imported files to the bucket."""
    source = tmp_path / "wheelhouse"
    source.mkdir()
    wheel = make_wheel(source, "imported-lib", "1.2")
    data_dir = tmp_path / "data"
    url = database_url_for(data_dir)
    env = clean_env(tmp_path / "home", {**s3.env, **({"PACKHOUSE_DATABASE_URL": url} if url else {})})
    proc = subprocess.run(
        [sys.executable, "-m", "app", "import", str(source), "--data-dir", str(data_dir), "-q"],
        capture_output=True, text=True, cwd=ROOT, env=env,
    )  # fmt: skip
    assert proc.returncode == 0 and "imported 1 file(s)" in proc.stderr, proc.stderr
    assert sorted(k.rsplit("/", 1)[1] for k in s3.keys()) == [wheel.name, wheel.name + ".metadata"]
    assert not (data_dir / "files").exists()  # nothing went to the local folder
    client = make_client(data_dir=data_dir, storage=s3.storage_url, s3_endpoint_url=s3.server.endpoint)
    assert client.get(f"/files/imported-lib/{wheel.name}").content == wheel.read_bytes()
