"""HTTP semantics across routes: HEAD wherever GET is answered, redirects that keep the query and
never lead from an impossible name, Range units, repeated header lines, and an Authorization
header that is not ASCII."""

from __future__ import annotations

import gzip
import shutil

import httpx
import pytest
from starlette.datastructures import Headers

from app.api.conditional import accepts_coding
from app.api.deps import basic_credentials_from
from tests.api.test_caching import JSON, upload
from tests.conftest import basic
from tests.support.htpasswd import write_htpasswd

NON_ASCII = {"Authorization": b"Basic \xe9t\xe9"}  # latin-1 bytes, as curl -H $'...\xe9' sends them


def _headers(r: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in r.headers.items() if k != "date"}


def _big(client, name: str = "demo") -> None:
    """A page over the 1 KiB compression threshold (app/services/index.py): it has a gzip form."""
    for minor in range(12):
        upload(client, name, f"1.{minor}")


# --- Authorization -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["Basic \xe9t\xe9", "Basic ZGVtbzpwdw==\xe9", "basic \u00ff", "Basic \xe9=", "Basic /w==", "Basic ZGVtbw=="],
)
def test_unusable_basic_credentials_are_none(value):
    # not ASCII, not base64, not UTF-8 (b"\xff"), no colon: all "no credentials"
    assert basic_credentials_from(Headers(raw=[(b"authorization", value.encode("latin-1"))])) is None


def test_non_ascii_authorization_is_anonymous_on_an_open_server(client):
    filename, _ = upload(client, "demo", "1.0")
    for path in ("/simple/demo/", "/simple/demo/?via=route", "/simple/", "/demo/", f"/files/demo/{filename}", "/"):
        r = client.get(path, headers=NON_ASCII)
        assert r.status_code == 200, (path, r.text)
    # an upload (POST /, answered by the fast path) reaches the form check
    r = client.post("/", headers=NON_ASCII, data={":action": "nothing"})
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json", r.text


def test_non_ascii_authorization_is_401_where_credentials_are_required(make_client, tmp_path):
    users = write_htpasswd(tmp_path / "htpasswd", ("sha1",))
    client = make_client(passwords=str(tmp_path / "htpasswd"), authenticate="update,download,list")
    for method, path in (
        ("GET", "/simple/demo/"),
        ("GET", "/simple/"),
        ("GET", "/simple/demo/?format=text/html"),
        ("GET", "/files/demo/demo-1.0-py3-none-any.whl"),
        ("POST", "/legacy/"),
        ("POST", "/"),
    ):
        r = client.request(method, path, headers=NON_ASCII)
        assert r.status_code == 401, (method, path, r.text)
        assert r.headers["www-authenticate"] == 'Basic realm="packhouse"'
    assert client.get("/simple/", headers=basic(*users["sha1"])).status_code == 200


# --- HEAD ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/", 200),
        ("/simple/", 200),
        ("/simple/demo/", 200),  # the fast path
        ("/simple/demo/?format=text/html", 200),  # the route
        (f"/simple/demo/?format={JSON}", 200),
        ("/demo/", 200),  # pypiserver's root page
        ("/simple/nope/", 404),
        ("/simple/Demo/", 301),
        ("/simple/demo", 301),
        ("/simple", 301),
        ("/Demo", 301),
        ("/simple/-/", 404),
        ("/health", 200),
        ("/ready", 200),
        ("/ui/projects/", 200),
        ("/ui/project/demo/", 200),
        ("/ui/project/nope/", 404),
        ("/ui/static/ui.css", 200),
        ("/api/search?q=demo", 200),
        ("/api/search?page=oops", 422),
        ("/api/projects/demo", 200),
        ("/files/demo/demo-1.0-py3-none-any.whl", 200),  # answers HEAD itself
        ("/files/demo/demo-1.0-py3-none-any.whl.metadata", 200),
        ("/docs", 200),
        ("/redoc", 200),
        ("/docs/static/swagger-ui.css", 200),
        ("/favicon.ico", 200),
        ("/openapi.json", 200),
        ("/legacy/", 404),  # GET answers 404 (no project "legacy"), so does HEAD
    ],
)
def test_head_answers_what_get_answers_without_the_body(client, path, status):
    upload(client, "demo", "1.0")
    for extra in ({}, {"Accept-Encoding": "gzip"}, {"Accept": "text/html"}):
        got = client.get(path, headers=extra, follow_redirects=False)
        head = client.head(path, headers=extra, follow_redirects=False)
        assert got.status_code == status, got.text
        assert (head.status_code, _headers(head)) == (got.status_code, _headers(got)), path
        assert head.content == b""


def test_head_follows_a_project_through_its_deletion(client):
    upload(client, "demo", "1.0")
    assert client.head("/simple/demo/").status_code == 200
    assert client.head("/simple/demo/?format=text/html").status_code == 200
    assert client.delete("/api/projects/demo/releases/1.0").status_code == 200
    for path in ("/simple/demo/", "/simple/demo/?format=text/html", "/demo/"):
        got, head = client.get(path), client.head(path)
        assert got.status_code == 404 and got.headers["content-type"] == "application/problem+json", path
        assert (head.status_code, _headers(head), head.content) == (404, _headers(got), b""), path


def test_head_over_a_real_server_sends_headers_only(live_server):
    server = live_server()
    with httpx.Client(base_url=server.url) as http:
        upload(http, "demo", "1.0")
        for path in ("/", "/simple/", "/simple/demo/?format=text/html", "/simple/nope/", "/simple/Demo/", "/health"):
            got = http.get(path, headers={"Accept-Encoding": "identity"})
            head = http.head(path, headers={"Accept-Encoding": "identity"})
            assert (head.status_code, _headers(head)) == (got.status_code, _headers(got)), path
            assert head.content == b"" and int(head.headers.get("content-length", "0")) == len(got.content), path
        # the connection is still usable after the HEADs (no body bytes were left on it)
        assert http.get("/health").json()["status"] == "ok"


def test_head_is_not_documented_as_operations_of_its_own(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert paths and not [path for path, item in paths.items() if "head" in item]
    ids = [op["operationId"] for item in paths.values() for op in item.values()]
    assert "simple_project_simple__project___get" in ids and len(ids) == len(set(ids))


# --- redirects -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "location"),
    [
        (f"/simple/demo?format={JSON}", f"demo/?format={JSON}"),
        (f"/simple/Demo?format={JSON}", f"demo/?format={JSON}"),
        ("/Demo?format=text/html", "demo/?format=text/html"),
        ("/demo?format=text/html&x=1", "demo/?format=text/html&x=1"),
        ("/simple?format=text/html", "simple/?format=text/html"),
        ("/simple/Demo/?format=text/html", "../demo/?format=text/html"),  # as before
    ],
)
def test_redirects_keep_the_query(client, path, location):
    r = client.get(path, follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (301, location)


def test_redirect_then_format_gives_json(client):
    upload(client, "demo", "1.0")
    r = client.get(f"/simple/Demo?format={JSON}")
    assert r.status_code == 200 and r.headers["content-type"] == JSON


@pytest.mark.parametrize(
    "path",
    [
        "/simple/%2e%2e/",
        "/simple/-/",
        "/simple/-demo/",
        "/simple/demo_/",
        "/simple/de%20mo/",
        "/simple/caf%C3%A9/",
        "/simple/a%2Bb",
        "/simple/..foo",
        "/-demo/",
        "/demo-",
        "/caf%C3%A9",
    ],
)
def test_impossible_project_names_are_404_not_redirects(client, path):
    r = client.get(path, follow_redirects=False)
    assert r.status_code == 404, r.text
    assert "location" not in r.headers
    assert r.headers["content-type"] == "application/problem+json"
    assert "project names are ASCII letters" in r.json()["detail"]


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/simple/Foo_Bar/", "../foo-bar/"),
        ("/simple/foo.bar/", "../foo-bar/"),
        ("/simple/foo.bar", "foo-bar/"),
        ("/Foo_Bar", "foo-bar/"),
        ("/simple/A/", "../a/"),
    ],
)
def test_valid_names_still_redirect_to_the_normalised_url(client, path, location):
    r = client.get(path, follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (301, location)


# --- Range ---------------------------------------------------------------------------------------


def test_range_in_an_unknown_unit_or_malformed_is_ignored(client):
    filename, data = upload(client, "demo", "1.0", payload=b"A" * 5000)
    url = f"/files/demo/{filename}"
    for value in ("items=0-1", "Items=0-1", "0-1", "bytes=abc", "bytes=10-5", "bytes=", "bytes=-"):
        r = client.get(url, headers={"Range": value})
        assert r.status_code == 200 and r.content == data, value
        assert "content-range" not in r.headers
        head = client.head(url, headers={"Range": value})
        assert head.status_code == 200 and int(head.headers["content-length"]) == len(data), value
    # usable ranges are still served, and unsatisfiable ones still refused
    part = client.get(url, headers={"Range": "BYTES=10-19"})
    assert (part.status_code, part.content) == (206, data[10:20])
    beyond = client.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(data)}"


# --- repeated header lines, "*", x-gzip ----------------------------------------------------------


@pytest.mark.parametrize("path", ["/simple/demo/", "/simple/demo/?via=route", "/simple/"])
def test_if_none_match_star_answers_the_tag_of_the_form_sent_now(client, path):
    upload(client, "demo", "1.0")  # small pages: never gzipped
    gz = {"Accept-Encoding": "gzip"}
    sent = client.get(path, headers=gz)
    assert "content-encoding" not in sent.headers and not sent.headers["etag"].endswith('-gzip"')
    r = client.get(path, headers={**gz, "If-None-Match": "*"})
    assert (r.status_code, r.headers["etag"]) == (304, sent.headers["etag"])


@pytest.mark.parametrize("path", ["/simple/demo/", "/simple/demo/?via=route"])
def test_if_none_match_star_on_a_gzipped_page(client, path):
    _big(client)
    gz = {"Accept-Encoding": "gzip"}
    sent = client.get(path, headers=gz)
    assert sent.headers["content-encoding"] == "gzip" and sent.headers["etag"].endswith('-gzip"')
    r = client.get(path, headers={**gz, "If-None-Match": "*"})
    assert (r.status_code, r.headers["etag"]) == (304, sent.headers["etag"])
    plain = client.get(path, headers={"Accept-Encoding": "identity", "If-None-Match": "*"})
    assert (plain.status_code, plain.headers["etag"]) == (304, sent.headers["etag"].replace("-gzip", ""))


@pytest.mark.parametrize("path", ["/simple/demo/", "/simple/demo/?via=route", "/simple/"])
def test_repeated_if_none_match_lines_are_one_list(client, path):
    upload(client, "demo", "1.0")
    etag = client.get(path, headers={"Accept-Encoding": "identity"}).headers["etag"]
    lines = [("Accept-Encoding", "identity"), ("If-None-Match", '"other"'), ("If-None-Match", etag)]
    r = client.get(path, headers=lines)
    assert (r.status_code, r.headers["etag"]) == (304, etag)


def test_repeated_if_none_match_lines_on_files(client):
    filename, _ = upload(client, "demo", "1.0")
    url = f"/files/demo/{filename}"
    etag = client.get(url).headers["etag"]
    assert client.get(url, headers=[("If-None-Match", '"other"'), ("If-None-Match", etag)]).status_code == 304


def test_repeated_header_lines_on_ui_pages(client):
    upload(client, "demo", "1.0")
    url = "/ui/project/demo/"
    etag = client.get(url).headers["etag"]
    lines = [("If-None-Match", '"other"'), ("If-None-Match", etag)]
    assert client.get(url, headers=lines).status_code == 304
    refused = client.get(url, headers=[("Accept-Encoding", "*"), ("Accept-Encoding", "gzip;q=0")])
    assert refused.status_code == 200 and "content-encoding" not in refused.headers


@pytest.mark.parametrize("path", ["/simple/demo/", "/simple/demo/?via=route"])
def test_repeated_accept_encoding_lines_are_one_list(client, path):
    _big(client)
    refused = client.get(path, headers=[("Accept-Encoding", "*"), ("Accept-Encoding", "gzip;q=0")])
    assert refused.status_code == 200 and "content-encoding" not in refused.headers
    taken = client.get(path, headers=[("Accept-Encoding", "identity"), ("Accept-Encoding", "gzip")])
    assert taken.headers["content-encoding"] == "gzip" and taken.headers["etag"].endswith('-gzip"')
    # a held gzip tag is current for a client whose second line takes gzip
    held = client.get(
        path,
        headers=[
            ("Accept-Encoding", "identity"),
            ("Accept-Encoding", "gzip"),
            ("If-None-Match", taken.headers["etag"]),
        ],
    )
    assert held.status_code == 304


@pytest.mark.parametrize(
    ("accept_encoding", "takes"),
    [
        ("x-gzip", True),
        ("X-GZIP;q=0.5", True),
        ("x-gzip;q=0", False),
        ("x-gzip;q=0, *", False),  # the alias named outranks the wildcard
        ("gzip;q=0, x-gzip", False),  # the coding's own name decides
        ("x-gzip, gzip;q=0", False),
        ("gzip, x-gzip;q=0", True),
        ("*;q=0, x-gzip", True),
        ("br", False),
    ],
)
def test_x_gzip_is_gzip(accept_encoding, takes):
    assert accepts_coding(accept_encoding, "gzip") is takes


def test_x_gzip_gets_the_gzip_form(client):
    _big(client)
    r = client.get("/simple/demo/", headers={"Accept-Encoding": "x-gzip"})
    assert r.headers["content-encoding"] == "gzip" and r.headers["etag"].endswith('-gzip"')
    with client.stream("GET", "/simple/demo/", headers={"Accept-Encoding": "x-gzip"}) as s:
        assert b"demo-1.11" in gzip.decompress(b"".join(s.iter_raw()))


@pytest.mark.parametrize("path", ["/simple/demo/", "/simple/demo/?via=route"])
def test_repeated_accept_lines_are_one_list(client, path):
    upload(client, "demo", "1.0")
    lines = [("Accept", "text/html;q=0.1"), ("Accept", "application/vnd.pypi.simple.v1+json")]
    r = client.get(path, headers=lines)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/vnd.pypi.simple.v1+json")


def test_ready_says_what_is_wrong_without_the_servers_paths(client, tmp_path):
    assert client.get("/ready").status_code == 200
    scratch = tmp_path / "data" / "files" / ".tmp"
    shutil.rmtree(scratch)
    scratch.write_text("in the way")  # the storage's probe file cannot be written under it
    r = client.get("/ready")
    assert r.status_code == 503
    assert r.json()["detail"] == "storage: Not a directory"
    assert str(tmp_path) not in r.text
