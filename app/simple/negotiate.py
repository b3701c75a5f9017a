"""PEP 691 content negotiation: ``?format=``, then Accept with q-values, else 406."""

from __future__ import annotations

import enum

from app.errors import NotAcceptableError


class MediaType(enum.StrEnum):
    JSON_V1 = "application/vnd.pypi.simple.v1+json"
    HTML_V1 = "application/vnd.pypi.simple.v1+html"
    HTML = "text/html"

    @property
    def is_json(self) -> bool:
        return self is MediaType.JSON_V1


_ALIASES = {
    "application/vnd.pypi.simple.latest+json": MediaType.JSON_V1,
    "application/vnd.pypi.simple.latest+html": MediaType.HTML_V1,
    MediaType.JSON_V1.value: MediaType.JSON_V1,
    MediaType.HTML_V1.value: MediaType.HTML_V1,
    MediaType.HTML.value: MediaType.HTML,
}
# On a tie in quality, the earlier entry wins: HTML first, as PyPI does.
_PREFERENCE = (MediaType.HTML, MediaType.HTML_V1, MediaType.JSON_V1)


def _matches(pattern: str, candidate: MediaType) -> bool:
    if pattern in ("*/*", ""):
        return True
    if pattern.endswith("/*"):
        return candidate.value.startswith(pattern[:-1])
    return _ALIASES.get(pattern) is candidate


def _parse(accept: str) -> list[tuple[str, float]]:
    out = []
    for item in accept.split(","):
        parts = [p.strip() for p in item.split(";")]
        media = parts[0].lower()
        if not media:
            continue
        q = 1.0
        for param in parts[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = max(0.0, min(1.0, float(value)))
                except ValueError:
                    q = 0.0
        out.append((media, q))
    return out


def negotiate(accept: str | None, format_param: str | None = None) -> MediaType:
    """Pick the response media type.

    Raises:
        NotAcceptableError: nothing the client accepts is served (-> 406).
    """
    if format_param:
        # An unencoded "+" in a query string arrives as a space.
        chosen = _ALIASES.get(format_param.strip().lower().replace(" ", "+"))
        if chosen is None:
            raise NotAcceptableError(f"Unknown format {format_param!r}; use one of: {_supported()}.")
        return chosen
    if not accept or not accept.strip():
        return MediaType.HTML  # PEP 691: no Accept means the legacy text/html
    best: MediaType | None = None
    best_q = 0.0
    entries = _parse(accept)
    for candidate in _PREFERENCE:
        # The most specific matching entry decides the quality of a candidate (RFC 9110 12.5.1).
        matching = [(media, q) for media, q in entries if _matches(media, candidate)]
        if not matching:
            continue
        _media, q = max(matching, key=lambda mq: _specificity(mq[0]))
        if q > best_q:
            best, best_q = candidate, q
    if best is None:
        raise NotAcceptableError(f"None of the requested media types is available; use one of: {_supported()}.")
    return best


def _specificity(media: str) -> int:
    if media == "*/*":
        return 0
    if media.endswith("/*"):
        return 1
    return 2


def _supported() -> str:
    return ", ".join(m.value for m in MediaType)
