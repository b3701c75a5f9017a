"""The two request headers that decide a cached answer: ``If-None-Match`` and ``Accept-Encoding``
(RFC 9110 13.1.2 and 12.5.3), for the simple pages, the files and the web UI.

``If-None-Match`` lists entity tags and is compared weakly: ``W/"x"`` matches ``"x"``, and ``*``
matches any current representation. ``Accept-Encoding`` accepts a coding it lists without
``q=0``, or, when the coding is not listed, one that ``*`` covers without ``q=0``. Either header
may come as several field lines, which make one list (RFC 9110 5.3): read them with ``field``.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import Headers

# RFC 9110 8.4.1.3: a recipient SHOULD take "x-gzip" as "gzip".
_ALIASES = {"gzip": "x-gzip"}


def field(headers: Headers, name: str) -> str | None:
    """All of the request's field lines named ``name``, joined into one list; None when it has none."""
    values = headers.getlist(name)
    return ", ".join(values) if values else None


def _tags(if_none_match: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}


def any_tag(if_none_match: str | None) -> bool:
    """Whether ``If-None-Match`` is ``*`` (any current representation)."""
    return if_none_match is not None and "*" in _tags(if_none_match)


def none_match(if_none_match: str | None, etags: Sequence[str]) -> str | None:
    """The first of ``etags`` (the current representation's tags, quoted, preferred first) that
    ``If-None-Match`` lists, or the first of them for ``*``; None when the client has none of them
    (answer 200)."""
    if not if_none_match or not etags:
        return None
    listed = _tags(if_none_match)
    if "*" in listed:
        return etags[0]
    return next((tag for tag in etags if tag.removeprefix("W/") in listed), None)


def accepts_coding(accept_encoding: str | None, coding: str) -> bool:
    """Whether a response may be sent with ``coding`` (``gzip``) to a client that sent
    ``accept_encoding``. No header at all: only ``identity`` (a server may choose, and compressed
    pages are for those that ask). The coding's own name decides over its alias (``x-gzip``),
    and either over ``*``."""
    named: bool | None = None
    alias: bool | None = None
    star: bool | None = None
    other_name = _ALIASES.get(coding)
    for item in (accept_encoding or "").split(","):
        value, _, params = item.partition(";")
        value = value.strip().lower()
        if value == coding and named is None:
            named = not _refused(params)
        elif value == other_name and alias is None:
            alias = not _refused(params)
        elif value == "*":
            star = not _refused(params)
    return next((choice for choice in (named, alias, star) if choice is not None), False)


def _refused(params: str) -> bool:
    """``q=0`` (or 0.0, 0.00, 0.000) among a list item's parameters."""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value.strip()) == 0
            except ValueError:
                return False  # a malformed weight: as if none were given
    return False
