"""HTTP semantics across routes: HEAD wherever GET is answered, redirects that keep the query and
never lead from an impossible name, Range units, repeated header lines, and an Authorization
header that is not ASCII."""

from __future__ import annotations

import pytest
from starlette.datastructures import Headers

from app.api.deps import basic_credentials_from
from tests.api.test_caching import upload
from tests.conftest import basic
from tests.support.htpasswd import write_htpasswd

NON_ASCII = {"Authorization": b"Basic \xe9t\xe9"}  # latin-1 bytes, as curl -H $'...\xe9' sends them


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
