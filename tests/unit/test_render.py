"""Both renderers, byte for byte, including values that need escaping."""

from app.simple import render_html, render_json
from app.simple.model import DistFile, ProjectDetail, ProjectEntry, ProjectList

NASTY = DistFile(
    filename="evil<b>\"&'.whl",
    url="../../files/x/evil%3Cb%3E%22%26%27.whl",
    sha256="ab" * 32,
    size=10,
    upload_time="2024-01-02T03:04:05.000006Z",
    requires_python='>=3.8,<"4"&',
    yanked='bad <script>alert("x")</script> & worse',
    core_metadata_sha256="cd" * 32,
)
PLAIN = DistFile(
    filename="x-1.0.tar.gz",
    url="../../files/x/x-1.0.tar.gz",
    sha256="ef" * 32,
    size=3,
    upload_time="2024-01-01T00:00:00.000000Z",
)
DETAIL = ProjectDetail(name="x", files=(NASTY, PLAIN), versions=("1.0", "2.0"))


def test_detail_html_bytes():
    assert (
        render_html.detail(DETAIL)
        == (
            "<!DOCTYPE html>\n<html>\n  <head>\n"
            '    <meta name="pypi:repository-version" content="1.4">\n'
            "    <title>Links for x</title>\n  </head>\n  <body>\n"
            "    <h1>Links for x</h1>\n"
            f'    <a href="../../files/x/evil%3Cb%3E%22%26%27.whl#sha256={"ab" * 32}" '
            'data-requires-python="&gt;=3.8,&lt;&quot;4&quot;&amp;" '
            f'data-core-metadata="sha256={"cd" * 32}" data-dist-info-metadata="sha256={"cd" * 32}" '
            'data-yanked="bad &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; worse" '
            'data-size="10" data-upload-time="2024-01-02T03:04:05.000006Z">'
            "evil&lt;b&gt;&quot;&amp;&#x27;.whl</a><br />\n"
            f'    <a href="../../files/x/x-1.0.tar.gz#sha256={"ef" * 32}" data-size="3" '
            'data-upload-time="2024-01-01T00:00:00.000000Z">x-1.0.tar.gz</a><br />\n'
            "  </body>\n</html>\n"
        ).encode()
    )


def test_detail_json_bytes():
    assert (
        render_json.detail(DETAIL)
        == (
            '{"meta":{"api-version":"1.4"},"name":"x","versions":["1.0","2.0"],"files":['
            '{"filename":"evil<b>\\"&\'.whl","url":"../../files/x/evil%3Cb%3E%22%26%27.whl",'
            f'"hashes":{{"sha256":"{"ab" * 32}"}},"requires-python":">=3.8,<\\"4\\"&",'
            f'"core-metadata":{{"sha256":"{"cd" * 32}"}},'
            '"yanked":"bad <script>alert(\\"x\\")</script> & worse","size":10,'
            '"upload-time":"2024-01-02T03:04:05.000006Z"},'
            '{"filename":"x-1.0.tar.gz","url":"../../files/x/x-1.0.tar.gz",'
            f'"hashes":{{"sha256":"{"ef" * 32}"}},'
            '"core-metadata":false,"yanked":false,"size":3,'
            '"upload-time":"2024-01-01T00:00:00.000000Z"}]}'
        ).encode()
    )


def test_yanked_without_reason():
    f = DistFile("a-1.whl", "u", "00" * 32, 1, "t", yanked=True)
    assert b'data-yanked=""' in render_html.detail(ProjectDetail("a", (f,), ("1",)))
    assert b'"yanked":true' in render_json.detail(ProjectDetail("a", (f,), ("1",)))


def test_index_bytes():
    page = ProjectList((ProjectEntry("A&B<x>", "a-b-x"), ProjectEntry("Zed", "zed")))
    assert render_html.index(page) == (
        b"<!DOCTYPE html>\n<html>\n  <head>\n"
        b'    <meta name="pypi:repository-version" content="1.4">\n'
        b"    <title>Simple index</title>\n  </head>\n  <body>\n"
        b"    <h1>Simple index</h1>\n"
        b'    <a href="a-b-x/">A&amp;B&lt;x&gt;</a><br />\n'
        b'    <a href="zed/">Zed</a><br />\n'
        b"  </body>\n</html>\n"
    )
    assert render_json.index(page) == (b'{"meta":{"api-version":"1.4"},"projects":[{"name":"A&B<x>"},{"name":"Zed"}]}')
