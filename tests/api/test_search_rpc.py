"""The XML-RPC ``search`` behind ``pip search`` (``POST /RPC2``, ``POST /pypi``): its answers, and
every call it refuses, as XML-RPC faults (what pip prints) or, for a body that is no call, a 400."""

from __future__ import annotations

import xmlrpc.client

import pytest

from app.api.routes import search_rpc
from app.auth.htpasswd import hash_password
from tests.conftest import basic
from tests.support.builders import make_wheel
from tests.support.forms import upload_form

XML = {"Content-Type": "text/xml"}


def call(client, method: str, *params: object, path: str = "/RPC2", headers: dict[str, str] | None = None):
    body = xmlrpc.client.dumps(params, method)
    return client.post(path, content=body.encode(), headers={**XML, **(headers or {})})


def hits(response) -> list[dict[str, object]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    (result,), _ = xmlrpc.client.loads(response.content)
    return result


def fault(response) -> xmlrpc.client.Fault:
    assert response.status_code == 200, response.text
    with pytest.raises(xmlrpc.client.Fault) as info:
        xmlrpc.client.loads(response.content)
    return info.value


@pytest.fixture
def seeded(client, tmp_path):
    for name, version, summary in [
        ("Team-App", "1.0", "First"),
        ("Team-App", "1.2", "The team's application"),
        ("team_util", "0.3", "Helpers for the app"),
        ("other", "2.0", "Unrelated \x07 bell"),
    ]:
        data, files = upload_form(make_wheel(tmp_path, name, version, summary=summary))
        assert client.post("/legacy/", data=data, files=files).status_code == 200
    return client


def test_search_finds_by_name_or_summary_with_the_latest_release(seeded):
    found = hits(call(seeded, "search", {"name": ["team"], "summary": ["team"]}, "or"))
    assert found == [
        {"name": "Team-App", "version": "1.2", "summary": "The team's application", "_pypi_ordering": 0},
        {"name": "team_util", "version": "0.3", "summary": "Helpers for the app", "_pypi_ordering": 0},
    ]
    assert [h["name"] for h in hits(call(seeded, "search", {"summary": "helpers"}, "or"))] == ["team_util"]
    assert hits(call(seeded, "search", {"name": ["nothing-like-it"]}, "or")) == []


def test_or_finds_any_term_and_and_every_term(seeded):
    spec = {"name": ["util", "application"]}
    assert [h["name"] for h in hits(call(seeded, "search", spec, "or"))] == ["Team-App", "team_util"]
    assert hits(call(seeded, "search", spec, "and")) == []
    assert [h["name"] for h in hits(call(seeded, "search", {"name": ["team", "app"]}))] == ["Team-App", "team_util"]


def test_each_term_brings_back_at_most_max_hits_projects_by_name(client, tmp_path, monkeypatch):
    """One query per term, cut at MAX_HITS (1000; 3 here), the first by normalised name."""
    monkeypatch.setattr(search_rpc, "MAX_HITS", 3)
    for name in ["bulk-e", "bulk-b", "bulk-d", "bulk-a", "bulk-c"]:
        data, files = upload_form(make_wheel(tmp_path, name, "1.0"))
        assert client.post("/legacy/", data=data, files=files).status_code == 200
    assert [h["name"] for h in hits(call(client, "search", {"name": "bulk"}, "or"))] == ["bulk-a", "bulk-b", "bulk-c"]
    both = hits(call(client, "search", {"name": ["bulk", "bulk-e"]}, "or"))
    assert [h["name"] for h in both] == ["bulk-a", "bulk-b", "bulk-c", "bulk-e"]


def test_pypis_address_answers_too_and_the_answer_is_always_well_formed_xml(seeded):
    (other,) = hits(call(seeded, "search", {"name": "other"}, "or", path="/pypi"))
    assert other["summary"] == "Unrelated \ufffd bell"  # a control character XML cannot carry


@pytest.mark.parametrize(
    ("method", "params", "code", "message"),
    [
        ("list_packages", (), -32601, "method 'list_packages' is not supported"),
        ("search", (), -32602, "search takes a struct of terms"),
        ("search", ({"name": "x"}, "xor"), -32602, "search takes a struct of terms"),
        ("search", ("team",), -32602, "the first parameter must be a struct"),
        ("search", ({"author": "ada"}, "or"), -32602, "searching by 'author' is not supported"),
        ("search", ({"name": [1, 2]}, "or"), -32602, "must be a string or a list of strings"),
        ("search", ({"name": ["  "]}, "or"), -32602, "give at least one search term"),
        ("search", ({"name": [f"t{i}" for i in range(21)]}, "or"), -32602, "at most 20 search terms at once (21"),
    ],
)
def test_a_call_that_is_not_a_search_is_a_fault_pip_can_print(seeded, method, params, code, message):
    error = fault(call(seeded, method, *params))
    assert error.faultCode == code
    assert message in error.faultString


@pytest.mark.parametrize(
    "body",
    [b"", b"not xml at all", b"<?xml version='1.0'?><methodCall><methodName>search</methodName>", b"<a><b></a>"],
)
def test_a_body_that_is_not_an_xml_rpc_call_is_a_400(seeded, body):
    r = seeded.post("/RPC2", content=body, headers=XML)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert "not an XML-RPC method call" in r.json()["detail"]


def test_an_upload_sent_to_the_search_address_says_where_uploads_go(seeded, tmp_path):
    data, files = upload_form(make_wheel(tmp_path, "demo", "1.0"))
    for path in ("/pypi", "/RPC2"):
        r = seeded.post(path, data=data, files=files)
        assert r.status_code == 400, r.text
        assert "not uploads: upload to the server's root" in r.json()["detail"]
    assert seeded.get("/simple/demo/").status_code == 404


def test_entity_expansion_is_refused_and_a_large_body_is_a_413(seeded):
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
        + b"".join(
            f'<!ENTITY {c} "{("&" + p + ";") * 10}">'.encode() for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        )
        + b"]><methodCall><methodName>&i;</methodName></methodCall>"
    )
    r = seeded.post("/RPC2", content=laughs, headers=XML)
    assert r.status_code == 400, r.text[:200]
    big = call(seeded, "search", {"name": ["x" * 70_000]}, "or")
    assert big.status_code == 413, big.text[:200]


@pytest.mark.sqlite_only  # the password checks answer before any request reaches the database
def test_search_needs_the_list_permission_when_listing_is_protected(make_client, tmp_path):
    (tmp_path / "htpasswd").write_text(f"alice:{hash_password('secret')}\n")
    client = make_client(passwords=str(tmp_path / "htpasswd"), authenticate="list,update")
    for headers in ({}, basic("alice", "wrong")):
        r = call(client, "search", {"name": "x"}, "or", headers=headers)
        assert r.status_code == 401, r.text
        assert r.headers["www-authenticate"] == 'Basic realm="packhouse"'
    assert hits(call(client, "search", {"name": "x"}, "or", headers=basic("alice", "secret"))) == []
