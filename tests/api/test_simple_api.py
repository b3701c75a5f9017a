"""The simple API in-process: negotiation, media types, redirects, caching headers, files."""

from __future__ import annotations

import hashlib

import pytest

from tests.support.builders import make_sdist, make_wheel
from tests.support.forms import upload_form

JSON = "application/vnd.pypi.simple.v1+json"


@pytest.fixture
def published(client, tmp_path):
    files = [
        make_wheel(tmp_path, "My.Project", "1.0", requires_python=">=3.8"),
        make_wheel(tmp_path, "My.Project", "2.0b1"),
        make_sdist(tmp_path, "My.Project", "1.0"),
        make_wheel(tmp_path, "other", "0.1"),
    ]
    for path in files:
        data, form_files = upload_form(path)
        assert client.post("/legacy/", data=data, files=form_files).status_code == 200
    return {p.name: p for p in files}


def test_index_html_and_json(client, published):
    html = client.get("/simple/")
    assert html.headers["content-type"] == "text/html; charset=utf-8"
    assert html.headers["vary"].startswith("Accept")
    assert '<meta name="pypi:repository-version" content="1.4">' in html.text
    assert '<a href="my-project/">My.Project</a>' in html.text
    js = client.get("/simple/", headers={"Accept": JSON})
    assert js.headers["content-type"] == JSON
    assert js.json() == {
        "meta": {"api-version": "1.4"},
        "projects": [{"name": "My.Project"}, {"name": "other"}],
    }


def test_project_json_pep_691_700_658(client, published):
    r = client.get("/simple/my-project/", headers={"Accept": "application/vnd.pypi.simple.latest+json"})
    assert r.status_code == 200 and r.headers["content-type"] == JSON
    page = r.json()
    assert page["name"] == "my-project"
    assert page["versions"] == ["1.0", "2.0b1"]
    by_name = {f["filename"]: f for f in page["files"]}
    whl = by_name["my_project-1.0-py3-none-any.whl"]
    raw = published["my_project-1.0-py3-none-any.whl"].read_bytes()
    assert whl["hashes"] == {"sha256": hashlib.sha256(raw).hexdigest()}
    assert whl["size"] == len(raw)
    assert whl["requires-python"] == ">=3.8"
    assert whl["yanked"] is False
    assert whl["upload-time"].endswith("Z") and len(whl["upload-time"]) == 27
    assert whl["url"] == "../../files/my-project/my_project-1.0-py3-none-any.whl"
    # PEP 714: JSON carries only "core-metadata"; pip 22.3-23.0 (Debian 12's pip) crashes on a
    # dict under the old "dist-info-metadata" key.
    assert "dist-info-metadata" not in whl
    sdist = by_name["my_project-1.0.tar.gz"]
    assert sdist["core-metadata"] is False

    # PEP 658: the metadata file's bytes hash to the advertised value.
    meta = client.get("/simple/my-project/" + whl["url"] + ".metadata")
    assert meta.status_code == 200
    assert hashlib.sha256(meta.content).hexdigest() == whl["core-metadata"]["sha256"]
    assert meta.content.startswith(b"Metadata-Version: 2.1\nName: My.Project\nVersion: 1.0\n")


def test_project_html_attributes(client, published):
    r = client.get("/simple/my-project/", headers={"Accept": "application/vnd.pypi.simple.v1+html"})
    assert r.headers["content-type"] == "application/vnd.pypi.simple.v1+html"
    assert 'data-requires-python="&gt;=3.8"' in r.text
    assert 'data-core-metadata="sha256=' in r.text and 'data-dist-info-metadata="sha256=' in r.text
    assert "#sha256=" in r.text and 'data-size="' in r.text and 'data-upload-time="' in r.text


def test_format_query_and_406(client, published):
    assert client.get("/simple/my-project/?format=" + JSON).headers["content-type"] == JSON
    r = client.get("/simple/my-project/", headers={"Accept": "application/json"})
    assert r.status_code == 406
    assert r.headers["content-type"] == "application/problem+json"
    assert "application/vnd.pypi.simple.v1+json" in r.json()["detail"]


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/simple/My.Project/", "../my-project/"),
        ("/simple/my_project/", "../my-project/"),
        ("/simple/my-project", "my-project/"),
        ("/simple", "simple/"),
        ("/My_Project/", "../my-project/"),
        ("/my-project", "my-project/"),
    ],
)
def test_redirects_to_canonical_url(client, published, path, location):
    r = client.get(path, follow_redirects=False)
    assert r.status_code == 301
    assert r.headers["location"] == location


def test_unknown_project_is_404(client, published):
    r = client.get("/simple/nope/")
    assert r.status_code == 404
    assert r.json()["title"] == "Project not found"
    assert client.get("/nope/").status_code == 404


def test_root_project_page_for_pypiserver_urls(client, published):
    r = client.get("/my-project/")
    assert r.status_code == 200
    assert 'href="../files/my-project/my_project-1.0-py3-none-any.whl#sha256=' in r.text


def test_etag_and_conditional_get(client, published, tmp_path):
    first = client.get("/simple/my-project/")
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "max-age=0, must-revalidate"
    again = client.get("/simple/my-project/", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    # JSON has its own ETag.
    assert client.get("/simple/my-project/", headers={"Accept": JSON}).headers["etag"] != etag
    # A new upload changes the page, its ETag and the index's ETag.
    index_etag = client.get("/simple/").headers["etag"]
    data, files = upload_form(make_wheel(tmp_path, "My.Project", "3.0"))
    assert client.post("/", data=data, files=files).status_code == 200
    changed = client.get("/simple/my-project/", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and "my_project-3.0-py3-none-any.whl" in changed.text
    assert changed.headers["etag"] != etag
    assert client.get("/simple/", headers={"If-None-Match": index_etag}).status_code == 200


def test_gzip_only_when_asked(client, published):
    r = client.get("/simple/my-project/", headers={"Accept-Encoding": "gzip"})
    assert r.headers.get("content-encoding") == "gzip"
    plain = client.get("/simple/my-project/", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers


def test_file_get_head_range(client, published):
    name = "my_project-1.0-py3-none-any.whl"
    raw = published[name].read_bytes()
    url = f"/files/my-project/{name}"
    r = client.get(url, headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.content == raw
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["etag"] == f'"{hashlib.sha256(raw).hexdigest()}"'
    assert "immutable" in r.headers["cache-control"]
    assert "last-modified" in r.headers
    assert "content-encoding" not in r.headers
    head = client.head(url)
    assert head.status_code == 200 and head.headers["content-length"] == str(len(raw)) and head.content == b""
    part = client.get(url, headers={"Range": "bytes=-22"})  # uv reads the zip's end this way
    assert part.status_code == 206 and part.content == raw[-22:]
    assert part.headers["content-range"] == f"bytes {len(raw) - 22}-{len(raw) - 1}/{len(raw)}"
    assert client.get(url, headers={"If-None-Match": r.headers["etag"]}).status_code == 304


def test_missing_files_are_404(client, published):
    assert client.get("/files/my-project/nope-1.0.tar.gz").status_code == 404
    assert client.get("/files/other/my_project-1.0-py3-none-any.whl").status_code == 404  # wrong project
    assert client.get("/files/my-project/my_project-1.0.tar.gz.metadata").status_code == 404  # sdist: none


def test_landing_page_shows_this_servers_setup(client):
    r = client.get("/", headers={"Host": "pypi.example.test:8081"})
    assert r.status_code == 200
    assert "index-url = http://pypi.example.test:8081/simple/" in r.text
    assert "repository = http://pypi.example.test:8081" in r.text
    assert "uv publish --publish-url http://pypi.example.test:8081/legacy/" in r.text


def test_openapi_docs(client):
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/simple/{project}/" in spec["paths"] and "/legacy/" in spec["paths"]
    assert spec["paths"]["/health"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]


@pytest.mark.parametrize(
    "url", ["/simple/%00/", "/files/x/%00.whl", "/api/search?q=%00", "/%00/", "/simple/?format=%00"]
)
def test_nul_in_the_url_is_400_not_500(client, url):
    r = client.get(url)
    assert r.status_code == 400
    assert "NUL" in r.json()["detail"]


def test_openapi_documents_the_nul_rejection(client):
    """Every operation may answer 400 (RejectNulMiddleware), and no string parameter admits NUL."""
    spec = client.get("/openapi.json").json()
    import re

    for path, item in spec["paths"].items():
        for method, operation in item.items():
            assert "400" in operation["responses"], (method, path)
            for parameter in operation.get("parameters", []):
                schemas = [parameter["schema"], *parameter["schema"].get("anyOf", [])]
                for schema in (s for s in schemas if s.get("type") == "string"):
                    assert not re.fullmatch(schema["pattern"], "de\x00mo"), (method, path, parameter["name"])
                    if parameter["name"] in ("project", "filename", "q"):
                        assert re.fullmatch(schema["pattern"], "demo-1.0")
    assert client.get("/api/search?q=%00").status_code == 400
