import pytest

from app.errors import NotAcceptableError
from app.simple.negotiate import MediaType, negotiate

JSON, VHTML, HTML = MediaType.JSON_V1, MediaType.HTML_V1, MediaType.HTML
PIP = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
UV = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, HTML),
        ("", HTML),
        ("*/*", HTML),
        (PIP, JSON),
        (UV, JSON),
        ("text/html", HTML),
        ("application/vnd.pypi.simple.v1+html", VHTML),
        ("application/vnd.pypi.simple.latest+json", JSON),
        ("application/vnd.pypi.simple.latest+html", VHTML),
        # a tie goes to HTML, as on PyPI
        ("application/vnd.pypi.simple.v1+json, text/html", HTML),
        ("application/vnd.pypi.simple.v1+json;q=0.5, text/html;q=0.4", JSON),
        ("application/*", VHTML),
        ("text/html;q=0, */*;q=0.1", VHTML),
        ("text/html, application/xhtml+xml, application/xml;q=0.9, */*;q=0.8", HTML),  # a browser
        ("application/vnd.pypi.simple.v1+json;q=bogus, text/html;q=0.1", HTML),
    ],
)
def test_accept(accept, expected):
    assert negotiate(accept) is expected


@pytest.mark.parametrize(
    "accept", ["application/json", "application/vnd.pypi.simple.v2+json", "image/png", "text/html;q=0"]
)
def test_nothing_acceptable(accept):
    with pytest.raises(NotAcceptableError):
        negotiate(accept)


def test_format_param_overrides_accept():
    assert negotiate("text/html", "application/vnd.pypi.simple.v1+json") is JSON
    assert negotiate(PIP, "application/vnd.pypi.simple.latest+html") is VHTML
    with pytest.raises(NotAcceptableError):
        negotiate(None, "json")
