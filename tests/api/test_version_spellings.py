"""One release, several spellings: versions equal under PEP 440 (1.0, 1.0.0; 2.0a1, 2.0.0a1) are one
release, as on PyPI. A file uploaded as 1.0.0 when release 1.0 exists joins it: it is listed once,
and yanked, un-yanked and deleted with it (API, remove_pkg), whichever spelling names the release."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.support.builders import make_sdist, make_wheel
from tests.support.forms import post_upload as post

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}
W10, W100, S10 = "dup-1.0-py3-none-any.whl", "dup-1.0.0-py3-none-any.whl", "dup-1.0.tar.gz"
A1, A1_LONG = "dup-2.0a1-py3-none-any.whl", "dup-2.0.0a1-py3-none-any.whl"
POST_US, POST_LONG = "dup-3.0_post0-py3-none-any.whl", "dup-3.0.0.post0-py3-none-any.whl"
W4 = "dup-4.0-py3-none-any.whl"


def wheel(out: Path, version: str, filename: str | None = None) -> Path:
    return make_wheel(out, "dup", version, filename=filename)


@pytest.fixture
def dists(tmp_path: Path) -> Path:
    out = tmp_path / "dists"
    out.mkdir()
    wheel(out, "1.0")
    wheel(out, "1.0.0")  # other bytes: its METADATA says 1.0.0
    make_sdist(out, "dup", "1.0")
    wheel(out, "2.0a1")
    wheel(out, "2.0.0a1")
    wheel(out, "3.0.post0", filename=POST_US)  # '3.0_post0' in the filename: also 3.0.post0
    wheel(out, "3.0.0.post0")
    wheel(out, "4.0")
    return out


@pytest.fixture
def loaded(client, dists):
    for name in (W10, W100, S10, A1, A1_LONG, POST_US, POST_LONG, W4):
        r = post(client, dists / name)
        assert r.status_code == 200, (name, r.text)
    return client


def page(client) -> dict:
    return client.get("/simple/dup/", headers=JSON).json()


def yanked(client) -> dict[str, object]:
    return {f["filename"]: f.get("yanked", False) for f in page(client)["files"]}


def html_yanked(client) -> dict[str, str | None]:
    """filename -> its data-yanked attribute on the HTML page (None: not yanked)."""
    out: dict[str, str | None] = {}
    for attrs, filename in re.findall(r"<a ([^>]*)>([^<]+)</a>", client.get("/simple/dup/").text):
        reason = re.search(r'data-yanked="([^"]*)"', attrs)
        out[filename] = reason.group(1) if reason else None
    return out


def test_each_release_is_listed_once_named_as_first_uploaded(loaded):
    assert page(loaded)["versions"] == ["1.0", "2.0a1", "3.0.post0", "4.0"]
    files = loaded.get("/api/projects/dup").json()["files"]
    assert {f["filename"]: f["version"] for f in files} == {
        W10: "1.0", W100: "1.0", S10: "1.0", A1: "2.0a1", A1_LONG: "2.0a1",
        POST_US: "3.0.post0", POST_LONG: "3.0.post0", W4: "4.0",
    }  # fmt: skip


def test_the_first_uploaded_spelling_names_the_release(client, dists):
    for name in (W100, W10):
        assert post(client, dists / name).status_code == 200
    assert page(client)["versions"] == ["1.0.0"]
    r = client.post("/api/projects/dup/releases/1/yank")
    assert r.status_code == 200, r.text
    assert {(f["filename"], f["version"]) for f in r.json()["files"]} == {(W100, "1.0.0"), (W10, "1.0.0")}


def test_yank_and_unyank_a_release_through_either_spelling(loaded):
    etag = loaded.get("/simple/dup/", headers=JSON).headers["etag"]
    r = loaded.post("/api/projects/dup/releases/1.0/yank", json={"reason": "bad build"})
    assert r.status_code == 200, r.text
    assert {f["filename"] for f in r.json()["files"]} == {W10, W100, S10}
    # The project's serial moved: the cached pages changed.
    again = loaded.get("/simple/dup/", headers={**JSON, "If-None-Match": etag})
    assert again.status_code == 200 and again.headers["etag"] != etag
    state = yanked(loaded)
    assert {state[n] for n in (W10, W100, S10)} == {"bad build"}
    assert not any(state[n] for n in (A1, A1_LONG, POST_US, POST_LONG, W4))
    html = html_yanked(loaded)
    assert {html[n] for n in (W10, W100, S10)} == {"bad build"} and html[W4] is None

    r = loaded.post("/api/projects/dup/releases/1.0.0/unyank")
    assert r.status_code == 200 and {f["filename"] for f in r.json()["files"]} == {W10, W100, S10}
    assert not any(yanked(loaded).values())
    assert not any(html_yanked(loaded).values())


@pytest.mark.parametrize(
    ("version", "filenames"),
    [
        ("2.0.0a1", {A1, A1_LONG}),
        ("2.0a1", {A1, A1_LONG}),
        ("3.0-post0", {POST_US, POST_LONG}),
        ("3.0.0.0.post0", {POST_US, POST_LONG}),
    ],
)
def test_pre_and_post_release_spellings(loaded, version, filenames):
    r = loaded.post(f"/api/projects/dup/releases/{version}/yank")
    assert r.status_code == 200, r.text
    assert {f["filename"] for f in r.json()["files"]} == filenames
    assert {n for n, y in yanked(loaded).items() if y} == filenames


def test_delete_a_release_through_another_spelling(loaded, tmp_path):
    r = loaded.delete("/api/projects/dup/releases/1.0.0")
    assert r.status_code == 200, r.text
    assert {f["filename"] for f in r.json()["files"]} == {W10, W100, S10}
    listed = page(loaded)
    assert {f["filename"] for f in listed["files"]} == {A1, A1_LONG, POST_US, POST_LONG, W4}
    assert listed["versions"] == ["2.0a1", "3.0.post0", "4.0"]
    assert loaded.get(f"/files/dup/{W100}").status_code == 404
    r = loaded.delete("/api/projects/dup/releases/1")
    assert r.status_code == 404 and "no release '1'" in r.json()["detail"]
    # A deleted filename never comes back with other bytes, whichever spelling it had.
    (tmp_path / "other").mkdir()
    other = make_wheel(tmp_path / "other", "dup", "1.0.0", summary="other bytes")
    assert post(loaded, other).status_code == 409


def test_remove_pkg_removes_every_spelling(loaded):
    r = loaded.post("/", data={":action": "remove_pkg", "name": "dup", "version": "1.0"})
    assert r.status_code == 200, r.text
    assert set(r.text.split()) == {"Deleted:", W10, W100, S10}
    r = loaded.post("/", files={":action": (None, "remove_pkg"), "name": (None, "Dup"), "version": (None, "2.0a1")})
    assert r.status_code == 200 and set(r.text.split()) == {"Deleted:", A1, A1_LONG}
    assert page(loaded)["versions"] == ["3.0.post0", "4.0"]


def test_journal_records_each_file_of_the_release(loaded):
    assert loaded.post("/api/projects/dup/releases/1/yank").status_code == 200
    events = loaded.get("/api/projects/dup/events").json()
    yanks = {(e["filename"], e["version"]) for e in events if e["action"] == "yank"}
    assert yanks == {(W10, "1.0"), (W100, "1.0.0"), (S10, "1.0")}  # each file's own spelling


def test_yanking_one_file_reports_its_release(loaded):
    r = loaded.post(f"/api/projects/dup/files/{W100}/yank")
    assert r.status_code == 200
    assert [(f["filename"], f["version"]) for f in r.json()["files"]] == [(W100, "1.0")]
    assert {n for n, y in yanked(loaded).items() if y} == {W100}


def test_ui_shows_each_release_once_with_all_its_files(loaded):
    body = loaded.get("/ui/project/dup/").text
    history = body[body.index('class="history"') :]
    assert re.findall(r'href="/ui/project/dup/([^/"]+)/"', history) == ["4.0", "3.0.post0", "2.0a1", "1.0"]
    # The release's page lives under its name, as on PyPI (1.00 is first made canonical, then named).
    for spelling, location in (("1.0.0", "../1.0/"), ("1", "../1.0/"), ("1.00", "../../dup/1.0/")):
        r = loaded.get(f"/ui/project/dup/{spelling}/", follow_redirects=False)
        assert (r.status_code, r.headers["location"]) == (301, location), spelling
        assert loaded.get(f"/ui/project/dup/{spelling}/").url.path == "/ui/project/dup/1.0/"
    for spelling in ("1.0", "1.0.0", "1"):
        release = loaded.get(f"/ui/project/dup/{spelling}/")
        assert release.status_code == 200
        assert '<h1>dup <span class="ver">1.0</span>' in release.text
        for name in (W10, W100, S10):
            assert f'<a href="/files/dup/{name}">' in release.text
    # The home page's recent releases: each release once, newest upload first, named as first uploaded.
    recent = re.findall(r'/ui/project/dup/([^/"]+)/"', loaded.get("/").text)
    assert recent == ["4.0", "3.0.post0", "2.0a1", "1.0"]


def test_home_counts_each_release_once_and_the_project_list_each_project_once(loaded):
    body = loaded.get("/").text
    assert re.search(r"<strong>1</strong> project<", body)
    assert re.search(r"<strong>4</strong> releases", body)  # 1.0, 2.0a1, 3.0.post0, 4.0: seven spellings
    assert re.search(r"<strong>8</strong> files", body)
    listing = loaded.get("/ui/projects/").text
    assert '<p class="count" id="count">1 project</p>' in listing
    assert listing.count('href="/ui/project/dup/') == 1


def test_home_release_count_compares_versions_not_strings(client, tmp_path):
    """Spellings that look alike but are other versions stay apart (1.0.1 and 1.1, 1.0+x and 1+y),
    alike spellings of one version merge (1 / 1.0 / 1.0.0, 1!2.0rc1 / 1!2rc1), in every project."""
    from tests.support import catalog as data

    data_dir = tmp_path / "data"
    client.get("/health")
    spellings = {  # releases: 1.0.1, 1.1, 1, 2+local.0, 2+local; 1!2rc1, 2rc1, 0.10, 0.1, 10; 1.0
        "a": ["1.0.1", "1.1", "1.0", "1", "1.0.0", "2.0.0+local.0", "2+local.0", "2+local"],
        "b": ["1!2.0rc1", "1!2rc1", "2rc1", "0.10", "0.1", "10.0", "10"],
        "c": ["1.0"],
    }
    for project, versions in spellings.items():
        for i, version in enumerate(versions):
            data.add_file(data_dir, project, version, f"{project}-{version}-{i}-py3-none-any.whl", when=i)
    body = client.get("/").text
    assert re.search(r"<strong>11</strong> releases", body), re.search(r"<strong>\d+</strong> releases", body)


def test_release_labels_group_by_pep440_equality():
    from app.dists import release_key, release_labels

    spellings = ["1.0", "2.0a1", "1.0.0", "1", "1.0+local", "1.0.0+local", "not a version", "2.0.0a1"]
    assert release_labels(spellings) == {
        "1.0": "1.0", "2.0a1": "2.0a1", "1.0.0": "1.0", "1": "1.0", "1.0+local": "1.0+local",
        "1.0.0+local": "1.0+local", "not a version": "not a version", "2.0.0a1": "2.0a1",
    }  # fmt: skip
    assert release_key("1.0.0") == release_key("1") and release_key("x") == "x"


def _listed(body: str, project: str) -> list[tuple[str, str]]:
    """(link, version) of each entry of ``project`` in a list of the home or project-list page."""
    entry = rf'<a href="(/ui/project/{project}/[^"]*)"><span class="name">{project}</span> <span class="ver">([^<]*)<'
    return re.findall(entry, body)


def test_every_list_names_a_release_as_first_uploaded_over_a_real_server(live_server, tmp_path):
    """Files 1.0 then 1.0.0 are release 1.0, 2.0rc1 then 2.0.0rc1 release 2.0rc1, wherever a list
    names them (home page, project list and search, the search API) as on the project page and in
    the simple index, and each link leads to that release's page. 1.1 after 1.0.1 stays 1.1."""
    from tests.support import catalog as data

    server = live_server()
    for project, version in [
        ("spell", "2.0rc1"), ("spell", "2.0.0rc1"), ("spell", "1.0"), ("spell", "1.0.0"),
        ("near", "1.0.1"), ("near", "1.1"),
    ]:  # fmt: skip
        data.post(server.url, data.wheel(tmp_path / "dists", project, version))
    with httpx.Client(base_url=server.url) as http:
        home = http.get("/").text
        assert _listed(home, "spell") == [("/ui/project/spell/1.0/", "1.0"), ("/ui/project/spell/2.0rc1/", "2.0rc1")]
        assert _listed(home, "near") == [("/ui/project/near/1.1/", "1.1"), ("/ui/project/near/1.0.1/", "1.0.1")]
        for link, version in _listed(home, "spell"):
            release = http.get(link)
            assert release.status_code == 200, link
            assert f'<h1>spell <span class="ver">{version}</span>' in release.text
            files = re.findall(r'<a href="/files/spell/([^"]+)">', release.text)
            longer = {"1.0": "1.0.0", "2.0rc1": "2.0.0rc1"}[version]
            assert sorted(files) == sorted(f"spell-{v}-py3-none-any.whl" for v in (version, longer))

        # Each project's latest release (1.0, which holds 1.0.0; 1.1) stands for it in lists and search.
        for params, expected in [
            ({}, {"spell": "1.0", "near": "1.1"}),
            ({"sort": "updated"}, {"spell": "1.0", "near": "1.1"}),
            ({"q": "spell"}, {"spell": "1.0"}),
            ({"q": "near"}, {"near": "1.1"}),
        ]:
            listing = http.get("/ui/projects/", params=params).text
            shown = {p: _listed(listing, p) for p in ("spell", "near")}
            assert shown == {p: [(f"/ui/project/{p}/", expected[p])] if p in expected else [] for p in shown}, params
            hits = http.get("/api/search", params=params).json()["results"]
            assert {h["normalized_name"]: h["version"] for h in hits} == expected, params

        project = http.get("/ui/project/spell/").text
        assert '<h1>spell <span class="ver">1.0</span>' in project
        history = project[project.index('class="history"') :]
        assert re.findall(r'href="/ui/project/spell/([^/"]+)/"', history) == ["2.0rc1", "1.0"]
        assert http.get("/simple/spell/", headers=JSON).json()["versions"] == ["1.0", "2.0rc1"]
