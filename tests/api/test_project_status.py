"""PEP 792 project status markers: set through the management API and ``packhouse status``, served
on both simple pages, and enforced: archived and quarantined projects take no new files, a
quarantined one offers none of its files."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from app.api.routes.manage import ProjectStatus
from app.commands.manage import PROJECT_STATUSES as CLI_STATUSES
from app.dists import PROJECT_STATUSES
from tests.conftest import basic
from tests.support.builders import make_sdist, make_wheel
from tests.support.cli import packhouse
from tests.support.forms import post_upload as post
from tests.support.htpasswd import write_htpasswd

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}
W1, S1 = "demo-1.0-py3-none-any.whl", "demo-1.0.tar.gz"


@pytest.fixture
def dists(tmp_path: Path) -> Path:
    out = tmp_path / "dists"
    out.mkdir()
    make_wheel(out, "demo", "1.0")
    make_sdist(out, "demo", "1.0")
    make_wheel(out, "demo", "2.0")
    return out


@pytest.fixture
def loaded(client, dists):
    for name in (W1, S1):
        assert post(client, dists / name).status_code == 200
    return client


def kept_files(tmp_path: Path) -> list[str]:
    """The stored files (not the empty spares the local store keeps ready for uploads)."""
    files = (tmp_path / "data" / "files").rglob("*")
    return sorted(p.name for p in files if p.is_file() and not (p.name.endswith(".part") and not p.stat().st_size))


def set_status(client, status: str, reason: str | None = None, project: str = "demo", **kw):
    return client.put(f"/api/projects/{project}/status", json={"status": status, "reason": reason}, **kw)


def test_the_three_lists_of_statuses_agree():
    assert typing.get_args(ProjectStatus) == PROJECT_STATUSES == CLI_STATUSES


def test_a_new_project_is_active_and_its_pages_carry_no_marker(loaded):
    page = loaded.get("/simple/demo/", headers=JSON)
    assert page.json()["meta"] == {"api-version": "1.4"} and "project-status" not in page.json()
    assert "pypi:project-status" not in loaded.get("/simple/demo/").text
    assert loaded.get("/api/projects/demo").json()["status"] == "active"


@pytest.mark.parametrize("status", ["archived", "quarantined", "deprecated"])
def test_each_status_is_served_on_both_simple_pages_with_its_reason(loaded, status):
    before = loaded.get("/simple/demo/", headers=JSON)
    r = set_status(loaded, status, 'moved to "demo2" <soon> & for good')
    assert r.status_code == 200, r.text
    assert r.json()["status"] == status and r.json()["status_reason"] == 'moved to "demo2" <soon> & for good'
    page = loaded.get("/simple/demo/", headers=JSON)
    assert page.headers["etag"] != before.headers["etag"]  # the cached page was renewed
    assert page.json()["project-status"] == {"status": status, "reason": 'moved to "demo2" <soon> & for good'}
    html = loaded.get("/simple/demo/").text
    assert f'<meta name="pypi:project-status" content="{status}">' in html
    reason = "moved to &quot;demo2&quot; &lt;soon&gt; &amp; for good"
    assert f'<meta name="pypi:project-status-reason" content="{reason}">' in html
    files = {f["filename"] for f in page.json()["files"]}
    assert files == (set() if status == "quarantined" else {W1, S1})
    assert page.json()["versions"] == ([] if status == "quarantined" else ["1.0"])
    assert (W1 in html) is (status != "quarantined")
    events = loaded.get("/api/projects/demo/events").json()
    assert events[0]["action"] == "status" and events[0]["detail"].startswith(f"{status}: moved to")

    # Back to active: no marker, every file served again.
    r = set_status(loaded, "active", "ignored for active")
    assert r.status_code == 200 and r.json()["status_reason"] is None
    page = loaded.get("/simple/demo/", headers=JSON).json()
    assert "project-status" not in page and {f["filename"] for f in page["files"]} == {W1, S1}
    assert "pypi:project-status" not in loaded.get("/simple/demo/").text


def test_a_status_without_reason_has_no_reason_marker(loaded):
    assert set_status(loaded, "deprecated").status_code == 200
    assert loaded.get("/simple/demo/", headers=JSON).json()["project-status"] == {"status": "deprecated"}
    html = loaded.get("/simple/demo/").text
    assert '<meta name="pypi:project-status" content="deprecated">' in html and "project-status-reason" not in html


@pytest.mark.parametrize("status", ["archived", "quarantined"])
def test_a_closed_project_refuses_new_files_and_keeps_no_byte_of_them(loaded, dists, tmp_path, status):
    set_status(loaded, status, "frozen")
    stored = kept_files(tmp_path)
    r = post(loaded, dists / "demo-2.0-py3-none-any.whl")
    assert r.status_code == 403, r.text
    assert f"demo is {status} on this index" in r.json()["detail"]
    assert "packhouse status demo active" in r.json()["detail"]
    assert kept_files(tmp_path) == stored
    assert [e["action"] for e in loaded.get("/api/projects/demo/events").json()][0] == "status"
    # Re-running an upload of a file it already has still answers 200: nothing new goes in.
    assert post(loaded, dists / W1).status_code == 200
    # Reopened, it takes the file.
    set_status(loaded, "active")
    assert post(loaded, dists / "demo-2.0-py3-none-any.whl").status_code == 200


def test_a_closed_project_refuses_a_replacement_under_overwrite(make_client, dists, tmp_path):
    client = make_client(overwrite=True)
    assert post(client, dists / W1).status_code == 200
    assert set_status(client, "archived").status_code == 200
    (dists / "other").mkdir()
    other = make_wheel(dists / "other", "demo", "1.0", module_code="other = 1\n")
    r = post(client, other)
    assert r.status_code == 403 and "archived" in r.json()["detail"], r.text
    assert client.get(f"/files/demo/{W1}").content == (dists / W1).read_bytes()


def test_a_deprecated_project_takes_new_files_and_serves_them(loaded, dists):
    set_status(loaded, "deprecated", "use demo2")
    assert post(loaded, dists / "demo-2.0-py3-none-any.whl").status_code == 200
    assert loaded.get("/files/demo/demo-2.0-py3-none-any.whl").status_code == 200
    assert loaded.get("/simple/demo/", headers=JSON).json()["versions"] == ["1.0", "2.0"]


def test_a_quarantined_projects_files_are_not_served_anywhere(loaded, dists):
    url = next(f["url"] for f in loaded.get("/simple/demo/", headers=JSON).json()["files"] if f["filename"] == W1)
    assert loaded.get(f"/files/demo/{W1}.metadata").status_code == 200  # cached before
    set_status(loaded, "quarantined", "malware found")
    for path in (f"/files/demo/{W1}", f"/files/demo/{W1}.metadata", f"/packages/{W1}", f"/files/demo/{S1}"):
        r = loaded.get(path)
        assert r.status_code == 403, (path, r.text)
        assert "demo is quarantined on this index" in r.json()["detail"]
    assert loaded.head(f"/files/demo/{W1}").status_code == 403
    assert loaded.get("/files/demo/nope-1.0.tar.gz").status_code == 404  # not a file of it: as before
    assert W1 not in loaded.get("/packages/").text
    api = loaded.get("/pypi/demo/json").json()
    assert api["urls"] == [] and api["releases"] == {"1.0": []}
    assert loaded.get("/pypi/demo/1.0/json").json()["urls"] == []
    ui = loaded.get("/ui/project/demo/").text
    assert "This project is quarantined: none of its files is served. malware found" in ui
    assert f'href="/files/demo/{W1}"' not in ui and W1 in ui
    # Lifted: everything is served again, from the same URL.
    set_status(loaded, "active")
    assert loaded.get(url.replace("../../", "/")).status_code == 200
    assert loaded.get(f"/files/demo/{W1}").content == (dists / W1).read_bytes()
    assert f'href="/files/demo/{W1}"' in loaded.get("/ui/project/demo/").text


def test_the_ui_shows_an_archived_or_deprecated_status(loaded):
    set_status(loaded, "archived", "read only")
    assert "This project is archived: it takes no new files. read only" in loaded.get("/ui/project/demo/").text
    set_status(loaded, "deprecated")
    assert "This project is deprecated." in loaded.get("/ui/project/demo/").text


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"status": "frozen"}, 422, "body.status"),
        ({}, 422, "body.status"),
        ({"status": "archived", "reason": "x" * 1001}, 422, "body.reason"),
        ({"status": "archived", "reason": "a\x00b"}, 422, "body.reason"),
    ],
)
def test_bad_status_requests_are_refused_and_change_nothing(loaded, body, status, says):
    r = loaded.put("/api/projects/demo/status", json=body)
    assert r.status_code == status and says in r.json()["detail"], r.text
    assert loaded.get("/api/projects/demo").json()["status"] == "active"


def test_the_status_of_an_unknown_project_is_a_404(loaded):
    r = set_status(loaded, "archived", project="nope")
    assert r.status_code == 404 and "No project named 'nope'" in r.json()["detail"]


def test_setting_a_status_needs_the_update_permission(make_client, dists, tmp_path):
    ((user, password),) = write_htpasswd(tmp_path / "htpasswd", ("bcrypt",)).values()
    client = make_client(passwords=str(tmp_path / "htpasswd"), authenticate="update")
    auth = basic(user, password)
    assert post(client, dists / W1, headers=auth).status_code == 200
    assert set_status(client, "archived").status_code == 401
    assert set_status(client, "archived", headers=basic(user, "wrong")).status_code == 401
    assert client.get("/api/projects/demo").json()["status"] == "active"
    assert set_status(client, "archived", headers=auth).status_code == 200
    assert client.get("/api/projects/demo/events", headers=auth).json()[0]["actor"] == user
    assert post(client, dists / S1, headers=auth).status_code == 403


def test_cli_shows_and_sets_the_status(loaded, dists, tmp_path):
    data = tmp_path / "data"
    r = packhouse(["status", "Demo", "--data-dir", str(data)])
    assert r.returncode == 0 and r.stdout == "demo: active\n", r.stderr
    r = packhouse(["status", "--data-dir", str(data)])
    assert r.returncode == 0 and r.stdout == "every project is active\n", r.stderr
    r = packhouse(["status", "demo", "archived", "--reason", "read only", "--actor", "ops", "--data-dir", str(data)])
    assert r.returncode == 0 and r.stdout == "demo: archived (read only)\n", r.stderr
    assert loaded.get("/simple/demo/", headers=JSON).json()["project-status"] == {
        "status": "archived",
        "reason": "read only",
    }
    assert post(loaded, dists / "demo-2.0-py3-none-any.whl").status_code == 403  # the server sees it at once
    assert loaded.get("/api/projects/demo/events").json()[0]["actor"] == "ops"
    (dists / "b").mkdir()
    assert post(loaded, make_wheel(dists / "b", "Another", "1.0")).status_code == 200
    assert packhouse(["status", "another", "deprecated", "--data-dir", str(data)]).returncode == 0
    r = packhouse(["status", "--data-dir", str(data)])  # every project that is not active, by name
    assert r.returncode == 0 and r.stdout == "another: deprecated\ndemo: archived (read only)\n", r.stderr
    r = packhouse(["status", "demo", "frozen", "--data-dir", str(data)])
    assert r.returncode == 2 and "invalid choice: 'frozen'" in r.stderr
    r = packhouse(["status", "demo", "archived", "--reason", "x" * 1001, "--data-dir", str(data)])
    assert r.returncode == 1 and "at most 1000 characters" in r.stderr, r.stderr
    r = packhouse(["status", "nope", "archived", "--data-dir", str(data)])
    assert r.returncode == 1 and "No project named 'nope'" in r.stderr
    r = packhouse(["status", "demo", "active", "--data-dir", str(data)])
    assert r.returncode == 0 and r.stdout == "demo: active\n"
    assert "project-status" not in loaded.get("/simple/demo/", headers=JSON).json()


def test_an_upload_refused_by_an_archived_project_leaves_nothing_in_the_bucket(make_client, s3, dists):
    client = make_client(storage=s3.storage_url, s3_endpoint_url=s3.server.endpoint)
    assert post(client, dists / W1).status_code == 200
    assert set_status(client, "archived").status_code == 200
    before = sorted(s3.keys())
    r = post(client, dists / "demo-2.0-py3-none-any.whl")
    assert r.status_code == 403 and "archived" in r.json()["detail"], r.text
    assert sorted(s3.keys()) == before


def test_a_pypiserver_folder_keeps_no_file_of_an_upload_an_archived_project_refused(make_client, dists, tmp_path):
    packages = tmp_path / "packages"
    packages.mkdir()
    client = make_client(packages_dir=packages, data_dir=packages / ".packhouse", rescan_interval=0)
    assert post(client, dists / W1).status_code == 200
    assert set_status(client, "archived").status_code == 200
    r = post(client, dists / "demo-2.0-py3-none-any.whl")
    assert r.status_code == 403 and "archived" in r.json()["detail"], r.text
    assert sorted(p.name for p in packages.iterdir() if not p.name.startswith(".")) == [W1]


def test_the_project_lists_and_the_search_api_show_the_status(loaded):
    assert loaded.get("/api/search?q=demo").json()["results"][0]["status"] == "active"
    assert "badge" not in loaded.get("/ui/projects/").text.split('id="list"')[1]
    set_status(loaded, "archived", "read only")
    assert loaded.get("/api/search?q=demo").json()["results"][0]["status"] == "archived"
    for page in ("/ui/projects/", "/ui/projects/?q=dem&sort=updated", "/"):
        assert '<span class="badge yank">Archived</span>' in loaded.get(page).text, page
    set_status(loaded, "deprecated")
    assert '<span class="badge">Deprecated</span>' in loaded.get("/ui/projects/?q=demo").text
