"""The cached project page answered before FastAPI routes the request (app/api/fastpath.py).

It must answer exactly what the route answers, and leave to the route everything that is not the
plain case. A query string the route ignores (``?via=route``) sends the same request through the
route, so both answers can be compared byte for byte."""

from __future__ import annotations

import hashlib

import pytest

from app.api import fastpath
from tests.api.test_caching import JSON, upload, wheel
from tests.conftest import basic
from tests.support.htpasswd import write_htpasswd


@pytest.fixture
def answered(monkeypatch):
    """The names the fast path answered itself (None where it handed over to the route)."""
    calls: list[tuple[str, bool]] = []
    real = fastpath.FastPath._answer

    async def spy(scope, name, realm):
        response = await real(scope, name, realm)
        calls.append((name, response is not None))
        return response

    monkeypatch.setattr(fastpath.FastPath, "_answer", staticmethod(spy))
    return calls


def _same(a, b) -> None:
    assert a.status_code == b.status_code
    assert {k: v for k, v in a.headers.items() if k != "date"} == {k: v for k, v in b.headers.items() if k != "date"}
    assert a.content == b.content


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Accept": "text/html"},
        {"Accept": JSON},
        {"Accept-Encoding": "gzip"},
        {"Accept": JSON, "Accept-Encoding": "gzip"},
    ],
)
def test_fast_path_answers_what_the_route_answers(client, answered, headers):
    upload(client, "demo", "1.0")
    upload(client, "demo", "2.0")
    fast = client.get("/simple/demo/", headers=headers)
    assert answered == [("demo", True)]
    routed = client.get("/simple/demo/?via=route", headers=headers)
    assert answered == [("demo", True)]  # a query string: not the fast path's
    assert fast.status_code == 200
    _same(fast, routed)
    # 304 for the same ETag, from both; and a new ETag after an upload (the cache follows the serial)
    etag = fast.headers["etag"]
    again = client.get("/simple/demo/", headers={**headers, "If-None-Match": etag})
    assert again.status_code == 304
    _same(again, client.get("/simple/demo/?via=route", headers={**headers, "If-None-Match": etag}))
    upload(client, "demo", "3.0")
    changed = client.get("/simple/demo/", headers={**headers, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert "3.0" in changed.text  # httpx decompresses gzip


def test_head_is_answered_like_get(client, answered):
    upload(client, "demo", "1.0")
    head = client.head("/simple/demo/")
    assert head.status_code == 200 and head.content == b"" and answered == [("demo", True)]
    assert head.headers["etag"] == client.get("/simple/demo/").headers["etag"]


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/simple/Demo/", {}, 301),  # not normalised: the route redirects
        ("/simple/nope/", {}, 404),  # unknown: the route answers (or the fallback index does)
        ("/simple/demo/", {"Accept": "image/png"}, 406),  # nothing acceptable
    ],
)
def test_everything_else_goes_on_to_the_route(client, answered, path, headers, status):
    upload(client, "demo", "1.0")
    r = client.get(path, headers=headers, follow_redirects=False)
    assert r.status_code == status
    if status != 301:  # the redirect keeps the query string, so it differs
        _same(r, client.get(path + "?via=route", headers=headers, follow_redirects=False))
    assert all(not done for _name, done in answered)


def test_listing_behind_a_password_is_checked_on_the_fast_path(make_client, tmp_path, answered):
    users = write_htpasswd(tmp_path / "htpasswd")
    user, password = next(iter(users.values()))
    client = make_client(passwords=str(tmp_path / "htpasswd"), authenticate="update,download,list")
    upload_headers = basic(user, password)
    client.headers.update(upload_headers)
    upload(client, "secret", "1.0")
    client.headers.clear()
    anonymous = client.get("/simple/secret/")
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == 'Basic realm="packhouse"'
    wrong = client.get("/simple/secret/", headers=basic(user, "wrong"))
    assert wrong.status_code == 401
    # The fast path refused both itself (the route would check the password a second time, and
    # count a wrong one twice), with the route's answer: a query string takes the request there.
    assert answered == [("secret", True), ("secret", True)]
    _same(anonymous, client.get("/simple/secret/?via=route"))
    _same(wrong, client.get("/simple/secret/?via=route", headers=basic(user, "wrong")))
    assert len(answered) == 2
    ok = client.get("/simple/secret/", headers=basic(user, password))
    assert ok.status_code == 200 and answered[-1] == ("secret", True)


def test_metrics_label_the_fast_path_with_the_route(client):
    upload(client, "demo", "1.0")
    client.get("/simple/demo/")
    text = client.get("/metrics").text
    assert 'packhouse_http_requests_total{method="GET",route="/simple/{project}/",status="200"} 1.0' in text


def test_a_nul_in_the_path_is_refused_before_the_fast_path(client, answered):
    r = client.get("/simple/de%00mo/")
    assert r.status_code == 400 and answered == []


@pytest.fixture
def uploads_answered(monkeypatch):
    calls: list[str] = []
    real = fastpath.FastPath._upload

    async def spy(self, scope, receive):
        calls.append(scope["path"])
        return await real(self, scope, receive)

    monkeypatch.setattr(fastpath.FastPath, "_upload", spy)
    return calls


@pytest.mark.parametrize("path", ["/", "/legacy/", "/legacy"])
def test_uploads_are_answered_before_routing_and_counted_under_their_route(client, uploads_answered, path):
    filename, data = wheel("demo", "1.0")
    form = {":action": "file_upload", "protocol_version": "1", "name": "demo", "version": "1.0",
            "sha256_digest": hashlib.sha256(data).hexdigest()}  # fmt: skip
    r = client.post(path, data=form, files={"content": (filename, data, "application/octet-stream")})
    assert r.status_code == 200 and r.text == f"Stored: {filename}\n"
    assert uploads_answered == [path]
    text = client.get("/metrics").text
    if path != "/legacy":  # not an upload route for the metrics (the link is undocumented)
        assert f'packhouse_http_requests_total{{method="POST",route="{path}",status="200"}} 1.0' in text
        assert "packhouse_uploads_total 1.0" in text
    # An error is answered by the error table, as on any route: problem+json and the right status.
    r = client.post(path, data=form, files={"content": (filename, data + b"x", "application/octet-stream")})
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    assert "sha256_digest sent" in r.json()["detail"]


def test_upload_needing_a_password_answers_401_with_the_realm(make_client, tmp_path, uploads_answered):
    write_htpasswd(tmp_path / "htpasswd")
    client = make_client(passwords=str(tmp_path / "htpasswd"), realm="corp index")
    filename, data = wheel("demo", "1.0")
    r = client.post("/legacy/", data={":action": "file_upload"}, files={"content": (filename, data)})
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Basic realm="corp index"'
    assert uploads_answered == ["/legacy/"]
