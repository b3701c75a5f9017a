"""Seed an index for the browsing-UI tests: real uploads, plus rows no upload could make.

``sqlite_*`` helpers write to the server's SQLite file directly. They stand for what later tools
(yank, imports from old servers) will write, and for hostile rows the upload validator refuses
(a filename with HTML in it), so the UI is tested against them too.
"""

from __future__ import annotations

import base64
import hashlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from tests.support.builders import make_wheel, metadata_text
from tests.support.forms import upload_form

DEMO_README = """# Demo package

Some **bold** text and a list:

- one
- two

```python
import demo_pkg
print(demo_pkg.__version__)
```

- [x] shipped
- [ ] documented
"""

ALPHA_README = """Alpha tools
===========

A *reStructuredText* README with a `link <https://example.org/alpha>`_.
"""

# Every way a hostile uploader could try to get script into a page.
XSS = "<script>window.__xss=1</script><img src=x onerror=window.__xss=1>"
EVIL_README = f"""# Evil

{XSS}

[click me](javascript:window.__xss=1)

<a href="javascript:window.__xss=1" onclick="window.__xss=1">raw link</a>

<svg onload="window.__xss=1"></svg>
<iframe src="javascript:window.__xss=1"></iframe>
<style>body {{ display: none }}</style>
"""
EVIL_URLS = (
    "Project-URL: Homepage, javascript:window.__xss=1\n"
    'Project-URL: Docs, https://example.org/"><script>window.__xss=1</script>\n'
    "Home-page: javascript:window.__xss=1\n"
)
EVIL_FILENAME = '"><img src=x onerror=window.__xss=1>.whl'


def post(base_url: str | httpx.Client, path: Path) -> None:
    data, files = upload_form(path)
    if isinstance(base_url, str):
        response = httpx.post(base_url + "/legacy/", data=data, files=files)
    else:
        response = base_url.post("/legacy/", data=data, files=files)
    assert response.status_code == 200, response.text


def wheel(tmp: Path, name: str, version: str, **meta: object) -> Path:
    out = tmp / f"{name}-{version}"
    out.mkdir(parents=True, exist_ok=True)
    return make_wheel(out, name, version, **meta)  # type: ignore[arg-type]


def demo_wheels(tmp: Path) -> list[Path]:
    extra = "Project-URL: Source, https://example.org/demo\nProject-URL: Issues, https://example.org/demo/issues\n"
    return [
        wheel(tmp, "demo-pkg", "0.9", summary="An older demo"),
        wheel(
            tmp,
            "demo-pkg",
            "1.0.0",
            metadata=metadata_text(
                "demo-pkg",
                "1.0.0",
                summary="A demo package for the browsing UI",
                requires_python=">=3.11",
                requires_dist=("httpx>=0.27", 'tomli>=2; python_version < "3.11"'),
                description=DEMO_README,
                extra_headers=extra,
            ),
        ),
        wheel(
            tmp,
            "alpha-tools",
            "2.1",
            metadata=metadata_text("alpha-tools", "2.1", summary="Tools for alpha testing")
            .replace("text/markdown", "text/x-rst")
            .rstrip("\n")
            + "\n\n"
            + ALPHA_README,
        ),
        wheel(tmp, "plain-thing", "0.1", summary="Has a plain text README", description="Just text.\n"),
        wheel(
            tmp,
            "evil-pkg",
            "6.6.6",
            metadata=metadata_text(
                "evil-pkg", "6.6.6", summary=XSS, description=EVIL_README, extra_headers=EVIL_URLS
            ),
        ),
    ]


def seed(base: str | httpx.Client, tmp: Path, db: Path) -> None:
    """The standard UI fixture: demo-pkg (0.9 yanked, 1.0.0), alpha-tools, plain-thing, evil-pkg."""
    for path in demo_wheels(tmp):
        post(base, path)
    sqlite_yank(db, "demo_pkg-0.9-py3-none-any.whl", "Broken <b>build</b>, use 1.0.0")
    sqlite_add_file(db, "evil-pkg", "6.6.6", EVIL_FILENAME, summary=XSS)


def sha1_htpasswd(path: Path, user: str, password: str) -> Path:
    """An htpasswd file with one ``htpasswd -s`` (SHA1) entry: fast to verify, unlike bcrypt."""
    digest = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
    path.write_text(f"{user}:{{SHA}}{digest}\n")
    return path


def sqlite_yank(db: Path, filename: str, reason: str | None) -> None:
    with _connect(db) as conn:
        cur = conn.execute(
            "UPDATE files SET yanked = 1, yanked_reason = ? WHERE filename = ?", (reason, filename)
        )
        assert cur.rowcount == 1


def sqlite_add_file(
    db: Path, project: str, version: str, filename: str, *, summary: str = "", when: int = 0
) -> None:
    """A file row, bypassing upload validation (the bytes are not stored)."""
    with _connect(db) as conn:
        _add_file(conn, _project_id(conn, project), version, filename, summary, when)


def sqlite_add_project(db: Path, name: str, files: int, *, summary: str = "", versions: int = 1) -> None:
    """A project with ``files`` rows spread over ``versions`` versions, in one transaction."""
    with _connect(db) as conn:
        pid = _project_id(conn, name)
        for i in range(files):
            version = f"1.{i % versions}"
            tags = "cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64"
            fn = f"{name.replace('-', '_')}-{version}-{i}-{tags}.whl"
            _add_file(conn, pid, version, fn, summary, i)


def _connect(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, timeout=10)
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


def _project_id(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT id FROM projects WHERE normalized_name = ?", (name,)).fetchone()
    if row:
        return int(row[0])
    when = _stamp(0)
    cur = conn.execute(
        "INSERT INTO projects (name, normalized_name, created, serial) VALUES (?, ?, ?, 0)",
        (name, name, when),
    )
    return int(cur.lastrowid or 0)


def _add_file(
    conn: sqlite3.Connection, pid: int, version: str, filename: str, summary: str, when: int
) -> None:
    sha = hashlib.sha256(filename.encode()).hexdigest()
    conn.execute(
        "INSERT INTO files (project_id, version, filename, filetype, pyversion, size, sha256, md5,"
        " blake2_256, storage_key, summary, upload_time, yanked)"
        " VALUES (?, ?, ?, 'bdist_wheel', 'py3', ?, ?, ?, ?, ?, ?, ?, 0)",
        (
            pid,
            version,
            filename,
            123_456 + when,
            sha,
            sha[:32],
            sha,
            f"missing/{sha}",
            summary or None,
            _stamp(when),
        ),
    )


def _stamp(seconds: int) -> str:
    # The format SQLAlchemy's SQLite dialect stores (no sqlite3 datetime adapter: deprecated in 3.12).
    return (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S.%f")
