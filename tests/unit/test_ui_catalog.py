"""The UI's pure helpers: README rendering + sanitising, metadata links, the latest version."""

import re
import time

import pytest

from app.dists import pick_latest
from app.services.catalog import (
    MARKDOWN_RENDER_LIMIT,
    README_MAX_DEPTH,
    README_MAX_HEADINGS,
    README_MAX_TAGS,
    RST_RENDER_LIMIT,
    markdown_complexity,
    project_urls,
    render_readme,
    safe_url,
)


def test_readme_formats_follow_the_content_type():
    assert "<h1" in render_readme("# T", "text/markdown")
    assert "<em>x</em>" in render_readme("*x*", None)  # no content type: reStructuredText, as PyPI
    assert "<em>x</em>" in render_readme("*x*", "text/x-rst; charset=UTF-8")
    assert render_readme("a <b>", "text/plain").startswith("a &lt;b&gt;")
    assert "<h1>" not in render_readme("# T", "text/markdown; variant=unknown")  # falls back to text


def test_broken_restructuredtext_falls_back_to_plain_text():
    html = render_readme("Title\n===\n\n.. bogus-directive::\n", "text/x-rst")
    assert "bogus-directive" in html and "<h1" not in html


@pytest.mark.parametrize(
    "source",
    [
        "[x](javascript:alert(1))",
        '<a href="javascript:alert(1)">x</a>',
        '<img src="x" onerror="alert(1)">',
        "<script>alert(1)</script>",
        '<iframe src="https://example.org"></iframe>',
        '<p style="position:fixed">x</p>',
        "<form action=/legacy/><input name=x></form>",
    ],
)
def test_readme_html_is_sanitised(source):
    for kind in ("text/markdown", "text/x-rst", "text/plain"):
        tags = re.findall(r"<[a-zA-Z][^>]*>", render_readme(source, kind))  # escaped text has no "<"
        for bad in ("javascript:", "onerror", "<script", "<iframe", "style=", "<form", "name="):
            assert not [t for t in tags if bad in t.lower()], (kind, tags)
        assert all("disabled" in t for t in tags if t.startswith("<input")), tags  # task-list boxes only


def test_readme_keeps_links_images_and_code_highlighting():
    html = render_readme(
        "[a](https://a.example) ![i](https://i.example/x.png)\n\n```python\nx=1\n```\n", "text/markdown"
    )
    assert 'href="https://a.example"' in html and 'rel="nofollow noopener noreferrer"' in html
    assert 'src="https://i.example/x.png"' in html
    assert '<span class="n">x</span>' in html


def test_project_urls_keep_only_safe_schemes():
    raw = (
        b"Metadata-Version: 2.1\nName: a\nVersion: 1\nHome-page: https://home.example\n"
        b"Project-URL: A, https://a.example\nProject-URL: B, data:text/html,x\n"
        b"Project-URL: C, javascript:alert(1)\nProject-URL: Mail, mailto:a@example.org\n"
    )
    assert project_urls(raw) == (
        ("Homepage", "https://home.example"),
        ("A", "https://a.example"),
        ("Mail", "mailto:a@example.org"),
    )
    assert safe_url(" JavaScript:alert(1)") is None
    assert safe_url("HTTPS://x.example") == "HTTPS://x.example"


def test_latest_version_is_the_newest_final_release_not_yanked():
    assert pick_latest(["1.0", "2.0rc1", "1.5"], set()) == "1.5"
    assert pick_latest(["1.0", "1.5"], {"1.5"}) == "1.0"
    assert pick_latest(["2.0b1"], set()) == "2.0b1"
    assert pick_latest(["1.0"], {"1.0"}) == "1.0"  # everything yanked: still show something
    assert pick_latest(["1.10", "1.9"], set()) == "1.10"


def test_a_readme_too_long_to_render_is_shown_as_plain_text():
    rst = "Title\n=====\n\n" + "<b>word</b> " * (RST_RENDER_LIMIT // 12 + 1)
    assert len(rst) > RST_RENDER_LIMIT
    html = render_readme(rst, "text/x-rst")
    assert "too many to render: it is shown as plain text" in html
    assert "<h1" not in html and "&lt;b&gt;word&lt;/b&gt;" in html  # escaped, not markup
    short = render_readme(rst[:2000], "text/x-rst")
    assert "<h1" in short or "<h2" in short
    assert "too many to render" not in short
    # markdown renders ~50x faster than docutils: it keeps a larger limit
    md = "# Title\n\n" + "word " * (RST_RENDER_LIMIT // 5 + 1)
    assert RST_RENDER_LIMIT < len(md) < MARKDOWN_RENDER_LIMIT
    assert "<h1" in render_readme(md, "text/markdown")
    huge = "# Title\n\n" + "word " * (MARKDOWN_RENDER_LIMIT // 5 + 1)
    assert "too many to render" in render_readme(huge, "text/markdown")
    # plain text is never "too long": it is plain text already
    assert "too many to render" not in render_readme(rst, "text/plain")


@pytest.mark.parametrize(
    ("text", "kind", "note"),
    [
        # Found by fuzzing: minutes of CPU in a render thread that cannot be stopped, or a 500.
        pytest.param("> " * 200_000 + "x", "text/markdown", "nests 200,000 levels deep", id="md-quotes"),
        pytest.param("<div>" * 100_000 + "x", "text/markdown", "nests 100,000 levels deep", id="md-html-depth"),
        pytest.param("<div>x</div>\n" * 40_000, "text/markdown", "80,000 HTML tags", id="md-html-block"),
        pytest.param("# h\n" * 250_000, "text/markdown", "250,000 headings", id="md-headings"),
        pytest.param("h\n=\n\n" * 100_000, "text/markdown", "100,000 headings", id="md-setext-headings"),
        pytest.param("".join(" " * i + "x\n\n" for i in range(200)), "text/x-rst", "nests too deeply", id="rst-depth"),
    ],
)
def test_readmes_too_complex_to_render_are_shown_as_plain_text(text: str, kind: str, note: str):
    started = time.monotonic()
    html = render_readme(text, kind)
    assert time.monotonic() - started < 20  # minutes before the limits; well under a second here
    assert f"{note}, too deep to render" in html or f"{note}, too many to render" in html or f"{note} to render" in html
    assert "<blockquote" not in html and "<div" not in html  # the text, escaped, not markup
    assert "x" in html


def test_readmes_within_the_limits_render():
    assert markdown_complexity("> > x\n\n<div><b>y</b><br><p>z</div>") == (2 + 2, 6)  # two quotes; div > b
    nested = "> " * README_MAX_DEPTH + "x"
    assert render_readme(nested, "text/markdown").count("<blockquote>") == README_MAX_DEPTH
    assert "too deep" in render_readme("> " + nested, "text/markdown")
    tags = "<div>x</div>\n" * (README_MAX_TAGS // 2)
    assert render_readme(tags, "text/markdown").count("<div>") == README_MAX_TAGS // 2
    assert "too many" in render_readme(tags + "<br>", "text/markdown")
    headings = "# h\n" * README_MAX_HEADINGS
    assert render_readme(headings, "text/markdown").count("<h1 ") == README_MAX_HEADINGS
    assert "too many" in render_readme(headings + "## h\n", "text/markdown")


def test_readme_ids_never_take_the_pages_own():
    """Raw HTML in a markdown README can name any id; the page's are ``main``, ``live``, ``cmd-pip``..."""
    html = render_readme('<h2 id="main">x</h2>\n\n<a id="live">y</a>\n\n# Title\n', "text/markdown")
    assert 'id="user-content-main"' in html and 'id="user-content-live"' in html
    assert 'id="main"' not in html and 'id="live"' not in html
    assert html.count('id="user-content-title"') == 1  # the renderer's own ids are kept as they are


def test_json_pages_are_kept_within_their_byte_budget():
    from app.services.catalog import JsonPage
    from app.services.lru import Lru

    def page(n: int) -> JsonPage:
        return JsonPage(serial=1, body=b"x" * n, gzipped=b"y" * 10, etag="e")

    kept: Lru[str, JsonPage] = Lru(1000, JsonPage.weight)
    kept.remember("a", page(390))
    kept.remember("b", page(390))
    assert kept.recall("a") is not None  # now the most recently used
    kept.remember("c", page(390))  # 1200 bytes: the least recently used (b) goes
    assert list(kept) == ["a", "c"] and kept.used == 800
    kept.remember("a", page(90))  # replaced: its old size no longer counts
    assert kept.used == 500
    kept.remember("huge", page(5000))  # larger than the budget: not kept, and nothing else either
    assert list(kept) == [] and kept.used == 0
