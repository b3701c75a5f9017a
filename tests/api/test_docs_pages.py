"""The API docs (/docs, /redoc) and the icon are served by Packhouse itself: no CDN, no 404s."""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from app.main import create_app

# Nothing here depends on the database: one backend is enough.
pytestmark = pytest.mark.sqlite_only

ASSET = re.compile(r"""(?:src|href)=["']([^"']+)["']""")


def _assets(html: str) -> list[str]:
    return ASSET.findall(html)


@pytest.mark.parametrize(("path", "script"), [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")])
def test_docs_pages_load_only_assets_this_server_serves(client, path, script):
    page = client.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assets = _assets(page.text)
    assert any(urlsplit(url).path == f"/docs/static/{script}" and "?v=" in url for url in assets), assets
    assert "'/openapi.json'" in page.text or '"/openapi.json"' in page.text
    for url in assets:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, f"{path} loads {url} from elsewhere"
        got = client.get(url)
        assert got.status_code == 200, url
        assert got.content, url
    assert "cdn.jsdelivr.net" not in page.text and "fonts.googleapis.com" not in page.text


def test_docs_scripts_are_cached_for_good_and_gzipped(client):
    for name, kind in (
        ("swagger-ui-bundle.js", "javascript"),
        ("swagger-ui.css", "text/css"),
        ("redoc.standalone.js", "javascript"),
    ):
        plain = client.get(f"/docs/static/{name}", headers={"Accept-Encoding": "identity"})
        assert plain.status_code == 200 and kind in plain.headers["content-type"]
        assert "content-encoding" not in plain.headers and len(plain.content) > 100_000
        assert "immutable" in plain.headers["cache-control"]
        packed = client.get(f"/docs/static/{name}", headers={"Accept-Encoding": "gzip"})
        assert packed.headers["content-encoding"] == "gzip"
        assert int(packed.headers["content-length"]) < len(plain.content) / 2
        assert packed.content == plain.content  # httpx undoes the gzip
        again = client.get(f"/docs/static/{name}", headers={"If-None-Match": plain.headers["etag"]})
        assert again.status_code == 304 and not again.content
    missing = client.get("/docs/static/nope.js")
    assert missing.status_code == 404 and "nope.js" in missing.json()["detail"]
    assert client.get("/docs/static/../../app/main.py").status_code == 404


def test_docs_link_each_script_by_its_content(client):
    """?v= is the file's own hash: a server upgraded to another Swagger UI gets new URLs."""
    for path in ("/docs", "/redoc"):
        for url in _assets(client.get(path).text):
            if url.startswith("/docs/static/"):
                body = client.get(url, headers={"Accept-Encoding": "identity"}).content
                assert url.endswith("?v=" + hashlib.sha256(body).hexdigest()[:12]), url


def test_docs_follow_the_root_path(make_settings):
    """Behind a proxy that mounts the index under a prefix (uvicorn --root-path /pypi)."""
    with TestClient(create_app(make_settings()), base_url="http://127.0.0.1", root_path="/pypi") as client:
        page = client.get("/pypi/docs")
        assert page.status_code == 200
        redoc = client.get("/pypi/redoc").text
        script = client.get("/pypi/docs/static/swagger-ui-bundle.js")
    assert script.status_code == 200
    assert page.status_code == 200
    assets = _assets(page.text)
    assert any(url.startswith("/pypi/docs/static/swagger-ui-bundle.js?v=") for url in assets), assets
    assert all(url.startswith("/pypi/") for url in assets)
    assert "'/pypi/openapi.json'" in page.text
    assert any(url.startswith("/pypi/docs/static/redoc.standalone.js?v=") for url in _assets(redoc))


def test_favicon_is_an_icon_with_validators(client):
    got = client.get("/favicon.ico")
    assert got.status_code == 200
    assert got.headers["content-type"] == "image/svg+xml"
    assert got.content.startswith(b"<svg") and b"<script" not in got.content
    assert "max-age" in got.headers["cache-control"]
    again = client.get("/favicon.ico", headers={"If-None-Match": got.headers["etag"]})
    assert again.status_code == 304 and not again.content
    head = client.head("/favicon.ico")
    assert head.status_code == 200 and not head.content
    assert head.headers["etag"] == got.headers["etag"]


def test_every_page_declares_the_served_icon(client):
    for path in ("/", "/ui/projects/", "/docs", "/redoc"):
        page = client.get(path)
        icons = re.findall(r'<link[^>]*rel="(?:shortcut )?icon"[^>]*href="([^"]+)"', page.text)
        icons += re.findall(r'<link[^>]*href="([^"]+)"[^>]*rel="(?:shortcut )?icon"', page.text)
        assert icons, f"{path} declares no icon"
        for icon in icons:
            got = client.get(icon)
            assert got.status_code == 200 and got.headers["content-type"] == "image/svg+xml", (path, icon)
