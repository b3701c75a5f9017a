"""The browsing UI in-process: pages, search, permissions, escaping and page weight."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.support import catalog as data


@pytest.fixture
def seeded(make_client, tmp_path: Path):
    client = make_client()
    data.seed(client, tmp_path / "dists", tmp_path / "data")
    return client


def test_home_has_counts_recent_releases_and_setup_for_this_server(seeded):
    r = seeded.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    body = r.text
    assert re.search(r"<strong>4</strong> projects", body)
    assert re.search(r"<strong>5</strong> releases", body)  # demo-pkg 0.9 + 1.0.0, and three others
    assert "index-url = http://127.0.0.1/simple/" in body
    assert 'publish-url = "http://127.0.0.1/legacy/"' in body
    assert "repository = http://127.0.0.1\n" in body
    assert "uv publish --publish-url http://127.0.0.1/legacy/" in body
    assert '/ui/project/demo-pkg/1.0.0/"' in body
    assert body.index("evil-pkg") < body.index("alpha-tools")  # newest first


def test_home_counts_follow_every_upload_and_delete(seeded, tmp_path: Path):
    """The home page's figures are kept per journal serial: each change shows at once."""

    def figures() -> tuple[str, ...]:
        body = seeded.get("/").text
        found = [re.search(rf"<strong>(\d+)</strong> {what}", body) for what in ("projects", "releases", "files")]
        return tuple(m[1] for m in found if m)

    assert figures() == figures() == ("4", "5", "6")
    data.post(seeded, data.wheel(tmp_path / "more", "home-new", "1.0"))
    assert figures() == ("5", "6", "7")
    assert "home-new" in seeded.get("/").text  # among the recent releases
    data.post(seeded, data.wheel(tmp_path / "more", "home-new", "1.0.0"))  # the same release, spelled longer
    assert figures() == ("5", "6", "8")
    assert seeded.delete("/api/projects/home-new/releases/1.0").status_code == 200
    assert figures() == ("4", "5", "6")
    assert "home-new" not in seeded.get("/").text


def test_empty_index_home_page(client):
    r = client.get("/")
    assert r.status_code == 200
    assert "Nothing has been uploaded yet" in r.text


def test_project_page_shows_latest_release_readme_metadata_and_files(seeded):
    r = seeded.get("/ui/project/demo-pkg/")
    assert r.status_code == 200
    body = r.text
    assert '<h1>demo-pkg <span class="ver">1.0.0</span>' in body
    assert "A demo package for the browsing UI" in body
    assert '<h1 id="user-content-demo-package">Demo package' in body  # markdown rendered
    assert "<strong>bold</strong>" in body
    assert '<span class="kn">import</span>' in body  # highlighted code block
    assert "<dd>&gt;=3.11</dd>" in body
    assert "<code>httpx&gt;=0.27</code>" in body
    assert "tomli&gt;=2; python_version &lt; &#34;3.11&#34;" in body
    assert '<a href="https://example.org/demo" rel="nofollow noopener noreferrer">Source</a>' in body
    assert "pip install --index-url http://127.0.0.1/simple/ demo-pkg</pre>" in body
    assert "uv pip install --index-url http://127.0.0.1/simple/ demo-pkg</pre>" in body
    assert '<a href="/files/demo-pkg/demo_pkg-1.0.0-py3-none-any.whl">' in body
    assert re.search(r"<td><code>[0-9a-f]{64}</code>", body)
    # Release history: newest first, with dates; the yanked 0.9 carries its (escaped) reason.
    history = body[body.index('class="history"') :]
    assert history.index("1.0.0") < history.index("0.9")
    assert 'Yanked</span> <span class="why">Broken &lt;b&gt;build&lt;/b&gt;, use 1.0.0</span>' in history
    assert re.search(r'<time datetime="\d{4}-\d\d-\d\dT[\d:]+Z">\d{4}-\d\d-\d\d</time>', history)


def test_release_page_pins_the_version_and_flags_yanked(seeded):
    r = seeded.get("/ui/project/demo-pkg/0.9/")
    assert r.status_code == 200
    assert "pip install --index-url http://127.0.0.1/simple/ demo-pkg==0.9</pre>" in r.text
    assert "This release is yanked: Broken &lt;b&gt;build&lt;/b&gt;, use 1.0.0" in r.text
    assert 'The latest version is <a href="/ui/project/demo-pkg/">1.0.0</a>' in r.text
    assert "An older demo" in r.text
    assert seeded.get("/ui/project/demo-pkg/1.0/").status_code == 200  # PEP 440: 1.0 == 1.0.0
    assert seeded.get("/ui/project/demo-pkg/3.0/").status_code == 404
    assert seeded.get("/ui/project/demo-pkg/not a version/").status_code == 404


def test_names_and_versions_redirect_to_canonical_urls(seeded):
    r = seeded.get("/ui/project/Demo_Pkg/", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (301, "../demo-pkg/")
    r = seeded.get("/ui/project/Demo.Pkg/1.0.0/", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (301, "../../demo-pkg/1.0.0/")
    missing = seeded.get("/ui/project/nothing-here/", headers={"Accept": "text/html,*/*;q=0.8"})
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert "<h1>Project not found</h1>" in missing.text and "&#39;nothing-here&#39;" in missing.text
    assert seeded.get("/ui/project/nothing-here/").headers["content-type"] == "application/problem+json"
    assert seeded.get("/files/x/y.whl", headers={"Accept": "text/html"}).headers["content-type"] == (
        "application/problem+json"
    )
    assert seeded.get("/ui/projects?q=x", follow_redirects=False).headers["location"] == "projects/?q=x"


def test_rst_and_plain_readmes(seeded):
    alpha = seeded.get("/ui/project/alpha-tools/").text
    assert "<em>reStructuredText</em>" in alpha
    assert 'href="https://example.org/alpha"' in alpha
    plain = seeded.get("/ui/project/plain-thing/").text
    assert "Just text." in plain


def test_root_simple_page_still_serves_projects(seeded):
    r = seeded.get("/demo-pkg/")
    assert r.status_code == 200
    assert "demo_pkg-1.0.0-py3-none-any.whl" in r.text
    assert seeded.get("/ui/").status_code == 404  # /ui/ is the simple page of a project named "ui"


def test_stored_xss_renders_inert(seeded):
    for url in ("/", "/ui/projects/?q=evil", "/ui/project/evil-pkg/", "/ui/project/evil-pkg/6.6.6/"):
        body = seeded.get(url).text
        scripts = re.findall(r"<script[^>]*>", body, flags=re.I)
        assert scripts == [re.search(r'<script src="/ui/static/ui.js\?v=\w+" defer>', body)[0]], url
        tags = re.findall(r"<[a-z][^>]*>", body, flags=re.I)  # real tags: escaped text has no "<"
        assert not [t for t in tags if "javascript:" in t.lower()], url
        assert not [t for t in tags if re.search(r"\son\w+\s*=", t, flags=re.I)], url
        assert not [t for t in tags if re.match(r"<(svg|iframe|style|object|embed)\b", t, flags=re.I)], url
    page = seeded.get("/ui/project/evil-pkg/").text
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in page  # shown as text
    assert "&#34;&gt;&lt;img src=x onerror=window.__xss=1&gt;.whl" in page  # the hostile filename
    assert 'href="https://example.org/&#34;&gt;&lt;script&gt;' in page  # quoted, not broken out of


def test_search_api_by_name_and_summary(seeded, tmp_path: Path):
    r = seeded.get("/api/search", params={"q": "demo"})
    assert r.status_code == 200
    found = r.json()
    assert [h["name"] for h in found["results"]] == ["demo-pkg"]
    assert found["results"][0]["url"] == "/ui/project/demo-pkg/"
    assert found["total"] == 1 and found["pages"] == 1
    by_summary = seeded.get("/api/search", params={"q": "ALPHA TESTING"}).json()
    assert [h["name"] for h in by_summary["results"]] == ["alpha-tools"]
    by_variant_name = seeded.get("/api/search", params={"q": "Demo_Pkg"}).json()
    assert by_variant_name["total"] == 1
    assert seeded.get("/api/search", params={"q": "%"}).json()["total"] == 0  # LIKE wildcards escaped
    everything = seeded.get("/api/search").json()
    assert [h["name"] for h in everything["results"]] == [
        "alpha-tools",
        "demo-pkg",
        "evil-pkg",
        "plain-thing",
    ]
    data.add_projects(tmp_path / "data", ["a-demo-pkg-helper"], 1)
    exact_first = seeded.get("/api/search", params={"q": "demo-pkg"}).json()
    assert [h["name"] for h in exact_first["results"]] == ["demo-pkg", "a-demo-pkg-helper"]
    recent = seeded.get("/api/search", params={"sort": "updated"}).json()
    assert recent["results"][0]["name"] == "a-demo-pkg-helper"
    assert seeded.get("/api/search", params={"sort": "bogus"}).status_code == 422


# The core's GET+HEAD files route makes FastAPI warn about a duplicate operation id (not ours).
@pytest.mark.filterwarnings("ignore:Duplicate Operation ID")
def test_search_is_documented_in_openapi(client):
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/api/search"]["get"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("SearchResponse")
    assert "SearchHit" in spec["components"]["schemas"]
    assert "/ui/projects/" not in spec["paths"]


def test_project_list_paginates_many_projects(make_client, tmp_path: Path):
    client = make_client()
    client.get("/health")
    data.add_projects(tmp_path / "data", [f"proj-{i:04d}" for i in range(120)], 1, summary="number {i}")
    page1 = client.get("/ui/projects/").text
    assert "120 projects · page 1 of 3" in page1
    assert "proj-0000" in page1 and "proj-0049" in page1 and "proj-0050" not in page1
    assert 'rel="next" href="?q=&amp;sort=name&amp;page=2"' in page1
    page3 = client.get("/ui/projects/", params={"page": 3}).text
    assert "proj-0119" in page3 and 'rel="prev"' in page3 and 'rel="next"' not in page3
    hits = client.get("/api/search", params={"q": "number 11", "per_page": 5}).json()
    assert hits["total"] == 11 and hits["pages"] == 3 and len(hits["results"]) == 5  # 11, 110..119
    # The total comes with the page's rows; the last page has one, a page past the end none.
    last = client.get("/api/search", params={"q": "number 11", "per_page": 5, "page": 3}).json()
    assert (last["total"], [h["name"] for h in last["results"]]) == (11, ["proj-0119"])
    past = client.get("/api/search", params={"q": "number 11", "per_page": 5, "page": 9}).json()
    assert (past["total"], past["pages"], past["results"]) == (11, 3, [])
    by_recent = client.get("/api/search", params={"q": "number 11", "sort": "updated", "per_page": 5}).json()
    assert by_recent["total"] == 11 and by_recent["results"][0]["name"] == "proj-0119"


def test_list_permission_guards_every_page(make_client, tmp_path: Path):
    passwords = data.sha1_htpasswd(tmp_path / "htpasswd", "alice", "s3cret")
    client = make_client(passwords=str(passwords), authenticate="list,update")
    for url in (
        "/",
        "/ui/projects/",
        "/ui/project/demo-pkg/",
        "/ui/project/demo-pkg/1.0/",
        "/api/search?q=a",
    ):
        r = client.get(url)
        assert r.status_code == 401, url
        assert r.headers["www-authenticate"] == 'Basic realm="packhouse"'
    auth = ("alice", "s3cret")
    assert client.get("/", auth=auth).status_code == 200
    assert client.get("/api/search", auth=auth).json()["total"] == 0
    assert client.get("/", auth=("alice", "wrong")).status_code == 401


def test_download_permission_stays_on_the_files(make_client, tmp_path: Path):
    passwords = data.sha1_htpasswd(tmp_path / "htpasswd", "alice", "s3cret")
    client = make_client(passwords=str(passwords), authenticate="download,update")
    wheel = data.wheel(tmp_path / "d", "demo-pkg", "1.0")
    form, files = data.upload_form(wheel)
    assert client.post("/legacy/", data=form, files=files, auth=("alice", "s3cret")).status_code == 200
    page = client.get("/ui/project/demo-pkg/")
    assert page.status_code == 200  # listing is open
    link = re.search(r'href="(/files/[^"]+)"', page.text)[1]
    assert client.get(link).status_code == 401
    assert client.get(link, auth=("alice", "s3cret")).status_code == 200


def test_static_assets_are_served_and_cacheable(client):
    css = client.get("/ui/static/ui.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "immutable" in css.headers["cache-control"]
    assert "prefers-color-scheme: dark" in css.text
    assert client.get("/ui/static/ui.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/ui/static/..%2Fapp.py").status_code == 404
    assert client.get("/ui/static/nope.css").status_code == 404


def test_project_page_with_200_files_ships_under_100_kb(make_client, tmp_path: Path):
    client = make_client()
    client.get("/health")
    data.add_projects(tmp_path / "data", ["big-project"], 200, versions=1, summary="Big")
    html = client.get("/ui/project/big-project/")
    assert html.status_code == 200
    assert html.text.count("<tr><td>") == 200
    assets = [client.get(f"/ui/static/{name}").content for name in ("ui.css", "ui.js")]
    total = len(html.content) + sum(len(a) for a in assets)
    assert total < 100_000, total


def test_recent_releases_fall_back_when_one_release_fills_the_window(make_client, tmp_path: Path):
    from app.db import catalog as queries

    client = make_client()
    client.get("/health")
    data.add_projects(tmp_path / "data", ["small"], 1)
    data.add_projects(tmp_path / "data", ["big"], 30, versions=1)  # the newest 30 files are one release
    sessions = client.app.state.catalog.sessions

    async def recent(window: int) -> list[tuple[str, str]]:
        async with sessions() as session:
            rows = await queries.recent_releases(session, 5, window=window)
        return [(r.normalized_name, r.version) for r in rows]

    assert client.portal.call(recent, 10) == [("big", "1.0"), ("small", "1.0")]
    assert client.portal.call(recent, 500) == [("big", "1.0"), ("small", "1.0")]


def test_recent_releases_fall_back_by_release_not_by_spelling(make_client, tmp_path: Path):
    """The fallback groups files by version string; 1.0 and 1.0.0 of one project are one release
    there too, and do not push another release out of the list."""
    from app.db import catalog as queries

    client = make_client()
    client.get("/health")
    data.add_file(tmp_path / "data", "older", "1.0", "older-1.0-py3-none-any.whl", when=1)
    data.add_file(tmp_path / "data", "twice", "1.0", "twice-1.0-py3-none-any.whl", when=2)
    data.add_file(tmp_path / "data", "twice", "1.0.0", "twice-1.0.0-py3-none-any.whl", when=3)
    data.add_projects(tmp_path / "data", ["big"], 30, versions=1)  # the newest 30 files are one release
    sessions = client.app.state.catalog.sessions

    async def recent(window: int) -> list[tuple[str, str]]:
        async with sessions() as session:
            rows = await queries.recent_releases(session, 3, window=window)
        return [(r.normalized_name, r.version) for r in rows]

    expected = [("big", "1.0"), ("twice", "1.0"), ("older", "1.0")]  # twice: named as first uploaded
    assert client.portal.call(recent, 10) == expected  # the fallback
    assert client.portal.call(recent, 500) == expected


def test_pages_and_assets_are_gzipped_when_asked_and_revalidated_with_304(seeded, tmp_path: Path):
    url = "/ui/project/demo-pkg/"
    plain = seeded.get(url, headers={"Accept-Encoding": "identity"})
    zipped = seeded.get(url, headers={"Accept-Encoding": "gzip"})  # httpx decodes it
    assert "content-encoding" not in plain.headers and zipped.headers["content-encoding"] == "gzip"
    assert zipped.text == plain.text and zipped.num_bytes_downloaded * 2 < len(plain.content)
    assert zipped.headers["vary"] == "Accept-Encoding"
    assert "content-encoding" not in seeded.get(url, headers={"Accept-Encoding": "gzip;q=0"}).headers
    etag = plain.headers["etag"]
    assert etag.startswith('W/"') and zipped.headers["etag"] == etag  # one page, two encodings
    assert plain.headers["cache-control"] == "private, no-cache"  # revalidated on every visit
    again = seeded.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    # A change to the project changes the page, so the old ETag no longer matches.
    data.yank(tmp_path / "data", "demo_pkg-1.0.0-py3-none-any.whl", "superseded")
    changed = seeded.get(url, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag and "superseded" in changed.text
    css = seeded.get("/ui/static/ui.css", headers={"Accept-Encoding": "gzip"})
    assert css.headers["content-encoding"] == "gzip" and "immutable" in css.headers["cache-control"]
    assert seeded.get("/ui/static/ui.css", headers={"If-None-Match": css.headers["etag"]}).status_code == 304
    missing = seeded.get("/ui/project/nothing-here/", headers={"Accept": "text/html"})
    assert missing.status_code == 404 and "etag" in missing.headers  # error pages are pages too
    stale = {"Accept": "text/html", "If-None-Match": missing.headers["etag"]}
    assert seeded.get("/ui/project/nothing-here/", headers=stale).status_code == 404  # never a 304


def test_lists_show_each_projects_latest_release_not_its_newest_upload(live_server, tmp_path: Path):
    """As on the project page and on PyPI: a 1.0.1 backport uploaded after 2.0 leaves the project
    listed as 2.0 (with 2.0's summary), a pre-release uploaded last does not replace the final
    release, and a yanked release gives way to the one before it; the project list (both sorts),
    search and the search API agree with the project page."""
    server = live_server()
    uploads = [
        ("back", "1.0", "back one"), ("back", "2.0", "back two"), ("back", "1.0.1", "back backport"),
        ("pre", "1.0", "pre final"), ("pre", "2.0b1", "pre beta"),
        ("gone", "1.0", "gone one"), ("gone", "2.0", "gone two"),
        ("onlypre", "1.0a1", "onlypre alpha"),
    ]  # fmt: skip
    for project, version, summary in uploads:
        data.post(server.url, data.wheel(tmp_path / "dists", project, version, summary=summary))
    expected = {"back": ("2.0", "back two"), "pre": ("1.0", "pre final"), "gone": ("1.0", "gone one"),
                "onlypre": ("1.0a1", "onlypre alpha")}  # fmt: skip
    with httpx.Client(base_url=server.url) as http:
        assert http.post("/api/projects/gone/releases/2.0/yank").status_code == 200
        for params in ({}, {"sort": "updated"}, {"q": "back"}, {"q": "pre"}):
            listing = http.get("/ui/projects/", params=params).text
            shown = dict(re.findall(r'<span class="name">([a-z]+)</span> <span class="ver">([^<]*)<', listing))
            hits = http.get("/api/search", params=params).json()["results"]
            api = {h["normalized_name"]: (h["version"], h["summary"]) for h in hits}
            assert api == {p: v for p, v in expected.items() if p in api}, params
            assert shown == {p: v[0] for p, v in api.items()}, params
            assert len(api) == (4 if "q" not in params else 1 if params["q"] == "back" else 2), params
            for project, (version, summary) in api.items():
                page = http.get(f"/ui/project/{project}/").text
                assert f'<h1>{project} <span class="ver">{version}</span>' in page
                assert summary in page
        # Sorted by update, the backport's upload still puts its project first.
        updated = http.get("/api/search", params={"sort": "updated"}).json()["results"]
        assert [h["normalized_name"] for h in updated] == ["onlypre", "gone", "pre", "back"]
