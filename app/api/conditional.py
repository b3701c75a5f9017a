"""The two request headers that decide a cached answer: ``If-None-Match`` and ``Accept-Encoding``
(RFC 9110 13.1.2 and 12.5.3), for the simple pages, the files and the web UI.

``If-None-Match`` lists entity tags and is compared weakly: ``W/"x"`` matches ``"x"``, and ``*``
matches any current representation. ``Accept-Encoding`` accepts a coding it lists without
``q=0``, or, when the coding is not listed, one that ``*`` covers without ``q=0``.
"""

from __future__ import annotations

from collections.abc import Sequence


def none_match(if_none_match: str | None, etags: Sequence[str]) -> str | None:
    """The first of ``etags`` (the current representation's tags, quoted, preferred first) that
    ``If-None-Match`` lists, or the first of them for ``*``; None when the client has none of them
    (answer 200)."""
    if not if_none_match or not etags:
        return None
    listed = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    if "*" in listed:
        return etags[0]
    return next((tag for tag in etags if tag.removeprefix("W/") in listed), None)


def accepts_coding(accept_encoding: str | None, coding: str) -> bool:
    """Whether a response may be sent with ``coding`` (``gzip``) to a client that sent
    ``accept_encoding``. No header at all: only ``identity`` (a server may choose, and compressed
    pages are for those that ask)."""
    star: bool | None = None
    for item in (accept_encoding or "").split(","):
        value, _, params = item.partition(";")
        value = value.strip().lower()
        if value == coding:
            return not _refused(params)
        if value == "*":
            star = not _refused(params)
    return bool(star)


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
