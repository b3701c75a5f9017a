"""``pip search``: the XML-RPC ``search`` method, at ``POST /RPC2`` (pypiserver's) and ``POST /pypi``.

pypiserver's quick start shows ``pip search --index http://localhost:8080 ...``. pip sends an
XML-RPC call to the index URL; Python's ``xmlrpc.client`` posts to ``/RPC2`` when that URL has no
path (``http://host:8080``), else to its path (``http://host:8080/pypi``, PyPI's own address for
it). The call is ``search({"name": [terms], "summary": [terms]}, "or")``; the answer lists, per
project, its name, latest release and summary. Searching is the project search of the browsing UI
(name or summary contains the term, case-insensitively).

An XML-RPC error (an unknown method, parameters that are not a search) is answered as XML-RPC
does, a fault, which pip prints ("XMLRPC request failed [code: ...]"); a body that is not an
XML-RPC call at all is a 400. The body is at most 64 KiB (``SmallBodyMiddleware``), and parsed by
the standard library's expat, which refuses entity expansion attacks (expat 2.4.1 and later).
"""

from __future__ import annotations

import re
import xmlrpc.client
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api.deps import CatalogDep, ListIdentity
from app.api.errors import problem_response
from app.errors import InvalidRequestError

router = APIRouter(tags=["search"])

#: The most projects one search term brings back (pypiserver: all of them; PyPI: 100).
MAX_HITS = 1000
#: XML-RPC's standard fault codes (the specification for fault codes of xmlrpc-epi).
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
FIELDS = ("name", "summary")
#: The most distinct terms one search takes (each is a search of the whole index).
MAX_TERMS = 20

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "An XML-RPC method response: the hits, or a fault.",
        "content": {"text/xml": {"schema": {"type": "string"}}},
    },
    400: problem_response("The body is not an XML-RPC method call."),
    401: problem_response("Credentials required or wrong (the `list` permission)."),
    403: problem_response("Not allowed."),
    413: problem_response("The body is larger than 64 KiB."),
}


#: Characters XML 1.0 cannot carry (a summary may hold a control character): replaced, so the answer
#: stays well-formed.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _text(value: str) -> str:
    return _NOT_XML.sub("\ufffd", value)


def _xml(payload: tuple[Any, ...] | xmlrpc.client.Fault) -> Response:
    body = xmlrpc.client.dumps(payload, methodresponse=True, allow_none=False)
    return Response(body, media_type="text/xml")


def _fault(code: int, message: str) -> Response:
    return _xml(xmlrpc.client.Fault(code, message))


def _terms(spec: object) -> list[str] | str:
    """The search terms of ``{"name": [...], "summary": [...]}`` (a string or a list of strings),
    or the reason it is not a search."""
    if not isinstance(spec, dict) or not spec:
        return 'the first parameter must be a struct such as {"name": ["term"], "summary": ["term"]}'
    terms: list[str] = []
    for field, value in spec.items():
        if field not in FIELDS:
            return f"searching by {field!r} is not supported here: only by name and summary"
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            return f"the {field!r} terms must be a string or a list of strings"
        terms += [v for v in values if v.strip() and v not in terms]
    if len(terms) > MAX_TERMS:
        return f"at most {MAX_TERMS} search terms at once ({len(terms)} given)"
    return terms or "give at least one search term"


#: The body, for the OpenAPI document: read by hand (``xmlrpc.client.loads``), not by FastAPI.
_BODY = {
    "requestBody": {
        "required": True,
        "content": {"text/xml": {"schema": {"type": "string", "description": "An XML-RPC methodCall."}}},
    }
}


@router.post(
    "/RPC2",
    responses=_RESPONSES,
    summary="pip search (XML-RPC, pypiserver's address)",
    operation_id="search_rpc2",
    openapi_extra=_BODY,
)
@router.post(
    "/pypi",
    responses=_RESPONSES,
    summary="pip search (XML-RPC, PyPI's address)",
    operation_id="search_rpc_pypi",
    openapi_extra=_BODY,
)
async def search_rpc(request: Request, catalog: CatalogDep, _who: ListIdentity) -> Response:
    """`pip search --index http://host:port TERM`: the XML-RPC method `search`, by name and summary
    (`"or"` or `"and"` between terms). Needs `list`."""
    if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        # An upload sent here (PyPI's upload address was once .../pypi): say where uploads go.
        raise InvalidRequestError(
            "This address answers pip search (XML-RPC), not uploads: upload to the server's root "
            "(repository = http://HOST:PORT in ~/.pypirc) or to /legacy/."
        )
    try:
        params, method = xmlrpc.client.loads(await request.body())
    except Exception:  # expat's errors, and xmlrpc.client's own on an unexpected structure
        raise InvalidRequestError(
            "The body is not an XML-RPC method call. This address answers pip search "
            "(pip search --index http://HOST:PORT TERM); pip install uses /simple/."
        ) from None
    if method != "search":
        return _fault(METHOD_NOT_FOUND, f"method {method!r} is not supported: this index answers 'search' only")
    if not 1 <= len(params) <= 2 or (len(params) == 2 and params[1] not in ("and", "or")):
        return _fault(INVALID_PARAMS, 'search takes a struct of terms and, optionally, "and" or "or"')
    terms = _terms(params[0])
    if isinstance(terms, str):
        return _fault(INVALID_PARAMS, terms)
    listings = await catalog.search_terms([t[:200] for t in terms], any_term=params[1:] == ("or",), limit=MAX_HITS)
    hits = [
        {"name": _text(h.name), "version": _text(h.version), "summary": _text(h.summary or ""), "_pypi_ordering": 0}
        for h in listings
    ]
    return _xml((hits,))
