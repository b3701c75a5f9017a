"""The PyPI JSON API (``/pypi/<project>/json``, ``/pypi/<project>/<version>/json``) and pypiserver's
``/<project>/json``: what they say, that they follow uploads and yanks at once, and every refusal."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from app.auth.htpasswd import hash_password
from tests.conftest import basic
from tests.support.builders import make_sdist, make_wheel
from tests.support.forms import upload_form

PROBLEM = "application/problem+json"
HEADERS = (
    "Author: Ada Lovelace\nAuthor-email: ada@example.org\nLicense: MIT\nKeywords: alpha,beta\n"
    "Classifier: Programming Language :: Python :: 3\nClassifier: License :: OSI Approved :: MIT License\n"
    "Project-URL: Source, https://git.example.org/demo\nProvides-Extra: cli\n"
)


def _upload(client, path: Path) -> bytes:
    data, files = upload_form(path)
    r = client.post("/legacy/", data=data, files=files)
    assert r.status_code == 200, r.text
    return path.read_bytes()


@pytest.fixture
def seeded(client, tmp_path):
    """demo-pkg 1.0 (a wheel and an sdist) and 2.0 (a wheel with full metadata and a README)."""
    out = tmp_path / "dists"
    out.mkdir()
    bodies = {}
    for path in (
        make_wheel(out, "Demo_Pkg", "1.0"),
        make_sdist(out, "Demo_Pkg", "1.0"),
        make_wheel(
            out,
            "Demo_Pkg",
            "2.0",
            requires_python=">=3.9",
            requires_dist=("httpx>=0.27", "rich; extra == 'cli'"),
            description="# Demo\n\nThe README.\n",
            extra_headers=HEADERS,
        ),
    ):
        bodies[path.name] = _upload(client, path)
    return client, bodies


def test_the_project_json_describes_the_latest_release_and_lists_every_file(seeded):
    client, bodies = seeded
    r = client.get("/pypi/demo-pkg/json")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "max-age=0, must-revalidate"
    body = r.json()
    info = body["info"]
    assert (info["name"], info["version"], info["summary"]) == ("Demo_Pkg", "2.0", "A test package")
    assert info["description"] == "# Demo\n\nThe README.\n"
    assert info["description_content_type"] == "text/markdown"
    assert info["requires_python"] == ">=3.9"
    assert info["requires_dist"] == ["httpx>=0.27", "rich; extra == 'cli'"]
    assert (info["author"], info["author_email"], info["license"]) == ("Ada Lovelace", "ada@example.org", "MIT")
    assert info["keywords"] == "alpha,beta"
    assert info["classifiers"] == ["Programming Language :: Python :: 3", "License :: OSI Approved :: MIT License"]
    assert info["project_urls"] == {"Source": "https://git.example.org/demo"}
    assert info["provides_extra"] == ["cli"]
    assert info["package_url"] == "http://127.0.0.1/ui/project/demo-pkg/"
    assert info["release_url"] == "http://127.0.0.1/ui/project/demo-pkg/2.0/"
    assert (info["yanked"], info["yanked_reason"]) == (False, None)
    assert [f["filename"] for f in body["urls"]] == ["demo_pkg-2.0-py3-none-any.whl"]
    assert list(body["releases"]) == ["1.0", "2.0"]
    assert [f["filename"] for f in body["releases"]["1.0"]] == ["demo_pkg-1.0-py3-none-any.whl", "demo_pkg-1.0.tar.gz"]
    assert "vulnerabilities" not in body  # not known here: an empty list would say there are none
    for files in body["releases"].values():
        for f in files:
            content = bodies[f["filename"]]
            assert f["digests"]["sha256"] == hashlib.sha256(content).hexdigest()
            assert f["size"] == len(content)
            assert f["packagetype"] == ("sdist" if f["filename"].endswith(".tar.gz") else "bdist_wheel")
            assert f["upload_time_iso_8601"].endswith("Z") and f["upload_time"] in f["upload_time_iso_8601"]
            download = client.get(f["url"])  # absolute, and it serves the very bytes
            assert download.status_code == 200 and download.content == content
    assert body["last_serial"] >= 3


def test_a_release_json_has_its_own_metadata_and_files_and_no_release_list(seeded):
    client, _ = seeded
    body = client.get("/pypi/demo-pkg/1.0/json").json()
    assert body["info"]["version"] == "1.0"
    assert body["info"]["requires_python"] is None and body["info"]["author"] is None
    assert sorted(f["filename"] for f in body["urls"]) == ["demo_pkg-1.0-py3-none-any.whl", "demo_pkg-1.0.tar.gz"]
    assert "releases" not in body  # as on PyPI
    assert client.get("/pypi/demo-pkg/1.0.0/json").json()["info"]["version"] == "1.0"  # PEP 440 equality


def test_pypiservers_project_json_answers_its_own_keys(seeded):
    """pypiserver 2.x: ``{"info": {"version": latest}, "releases": {version: [{"url": ...}]}}``."""
    client, bodies = seeded
    body = client.get("/demo-pkg/json").json()
    assert body["info"]["version"] == "2.0"
    assert sorted(body["releases"]) == ["1.0", "2.0"]
    for files in body["releases"].values():
        for f in files:
            assert client.get(f["url"]).content == bodies[f["url"].rsplit("/", 1)[1]]


def test_the_json_follows_uploads_and_yanks_at_once(seeded, tmp_path):
    client, _ = seeded
    assert client.get("/pypi/demo-pkg/json").json()["info"]["version"] == "2.0"
    r = client.post("/api/projects/demo-pkg/releases/2.0/yank", json={"reason": "broken build"})
    assert r.status_code == 200, r.text
    body = client.get("/pypi/demo-pkg/json").json()
    assert body["info"]["version"] == "1.0"  # the latest release not yanked, as pip would choose
    assert [(f["yanked"], f["yanked_reason"]) for f in body["releases"]["2.0"]] == [(True, "broken build")]
    release = client.get("/pypi/demo-pkg/2.0/json").json()["info"]
    assert (release["yanked"], release["yanked_reason"]) == (True, "broken build")
    _upload(client, make_wheel(tmp_path, "Demo_Pkg", "3.0"))
    assert client.get("/demo-pkg/json").json()["info"]["version"] == "3.0"
    assert client.delete("/api/projects/demo-pkg/releases/1.0").status_code == 200
    assert "1.0" not in client.get("/pypi/demo-pkg/json").json()["releases"]


def test_an_unchanged_answer_is_a_304_and_a_new_release_changes_its_etag(seeded, tmp_path):
    client, _ = seeded
    first = client.get("/pypi/demo-pkg/json", headers={"Accept-Encoding": "gzip"})
    assert first.headers["content-encoding"] == "gzip" and first.json()["info"]["version"] == "2.0"
    etag = first.headers["etag"]
    same = client.get("/pypi/demo-pkg/json", headers={"If-None-Match": etag})
    assert same.status_code == 304 and same.content == b""
    assert same.headers["etag"] == etag and same.headers["cache-control"] == "max-age=0, must-revalidate"
    _upload(client, make_wheel(tmp_path, "Demo_Pkg", "2.1"))
    changed = client.get("/pypi/demo-pkg/json", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert changed.json()["info"]["version"] == "2.1"


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("/pypi/Demo_Pkg/json", "../demo-pkg/json"),
        ("/pypi/Demo.Pkg/1.0/json", "../../demo-pkg/1.0/json"),
        ("/Demo_Pkg/json?x=1", "../demo-pkg/json?x=1"),
    ],
)
def test_a_name_that_is_not_normalised_is_redirected(seeded, url, location):
    client, _ = seeded
    r = client.get(url, follow_redirects=False)
    assert r.status_code == 301
    assert r.headers["location"] == location
    followed = client.get(url)
    assert followed.status_code == 200
    assert followed.url.path == url.split("?")[0].replace("Demo_Pkg", "demo-pkg").replace("Demo.Pkg", "demo-pkg")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/pypi/nothing-here/json", "No project named 'nothing-here'"),
        ("/nothing-here/json", "No project named 'nothing-here'"),
        ("/pypi/demo-pkg/9.9/json", "has no version '9.9'"),
        ("/pypi/demo-pkg/not-a-version!/json", "is not a version on this index"),
    ],
)
def test_a_missing_project_or_version_is_a_404_problem(seeded, url, message):
    client, _ = seeded
    r = client.get(url)
    assert r.status_code == 404, r.text
    assert r.headers["content-type"] == PROBLEM
    assert message in r.json()["detail"]


@pytest.mark.sqlite_only  # the password checks answer before any request reaches the database
def test_the_json_api_needs_the_list_permission_when_listing_is_protected(make_client, tmp_path):
    (tmp_path / "htpasswd").write_text(f"alice:{hash_password('secret')}\n")
    client = make_client(passwords=str(tmp_path / "htpasswd"), authenticate="list,update")
    data, files = upload_form(make_wheel(tmp_path, "demo", "1.0"))
    assert client.post("/legacy/", data=data, files=files, headers=basic("alice", "secret")).status_code == 200
    for url in ("/pypi/demo/json", "/pypi/demo/1.0/json", "/demo/json"):
        for headers in ({}, basic("alice", "wrong")):
            r = client.get(url, headers=headers)
            assert r.status_code == 401, (url, r.text)
            assert r.headers["www-authenticate"] == 'Basic realm="packhouse"'
        assert client.get(url, headers=basic("alice", "secret")).status_code == 200


def test_an_answer_is_made_once_per_change_and_followed_by_every_process(seeded, make_client, tmp_path):
    """Answers are kept while the project's serial is unchanged (a 200-file project's takes ~100 ms
    to build), so each worker must see a change made by another: two apps over one database."""
    client, _ = seeded
    other = make_client()  # a second worker or replica: the same database and files
    made = []
    real = client.app.state.catalog.json_api

    async def counting(*args, **kwargs):
        made.append(args)
        return await real(*args, **kwargs)

    client.app.state.catalog.json_api = counting
    first = [client.get("/pypi/demo-pkg/json").content for _ in range(3)]
    assert len(made) == 1 and first[0] == first[1] == first[2]
    client.get("/pypi/demo-pkg/2.0/json")
    client.get("/demo-pkg/json")  # the same answer as /pypi/demo-pkg/json (releases included)
    assert len(made) == 2
    assert other.get("/pypi/demo-pkg/json").json()["info"]["version"] == "2.0"
    _upload(other, make_wheel(tmp_path, "Demo_Pkg", "2.5"))
    assert client.get("/pypi/demo-pkg/json").json()["info"]["version"] == "2.5"
    r = other.post("/api/projects/demo-pkg/releases/2.5/yank", json={"reason": "bad"})
    assert r.status_code == 200
    assert client.get("/pypi/demo-pkg/json").json()["info"]["version"] == "2.0"
    assert len(made) == 4


def test_links_follow_the_address_asked_for(seeded):
    client, _ = seeded
    urls = {}
    for host in ("pypi.example.org", "10.1.2.3:8080"):
        body = client.get("/pypi/demo-pkg/json", headers={"Host": host}).json()
        urls[host] = body["urls"][0]["url"]
    assert urls["pypi.example.org"].startswith("http://pypi.example.org/files/demo-pkg/")
    assert urls["10.1.2.3:8080"].startswith("http://10.1.2.3:8080/files/demo-pkg/")


def test_a_wheel_whose_metadata_cannot_be_read_is_described_again_once_it_can(seeded, tmp_path):
    """Its fields are missing from that answer, which is not kept: the bytes may come back
    (restored from a backup, `packhouse check`), with no change to the project's serial."""
    client, _ = seeded
    stored = [p for p in (tmp_path / "data" / "files").rglob("*") if p.is_file() and "2.0" in p.name]
    assert stored, "the 2.0 wheel and its .metadata are under DATA_DIR/files"
    aside = tmp_path / "aside"
    aside.mkdir()
    for p in stored:
        p.rename(aside / p.name)
    assert client.get("/pypi/demo-pkg/json").json()["info"]["author"] is None
    for p in stored:
        (aside / p.name).rename(p)
    assert client.get("/pypi/demo-pkg/json").json()["info"]["author"] == "Ada Lovelace"
