"""Seed an index for the browsing-UI tests: real uploads, plus rows no upload could make.

``yank``, ``add_file`` and ``add_projects`` write rows straight into the server's database (its
SQLite file, or its PostgreSQL database in the postgresql variant: ``tests.support.dbaccess``). They
stand for what other tools (imports from old servers, a yank) write, and for hostile rows the upload
validator refuses (a filename with HTML in it), so the UI is tested against them too.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import Connection, select, update

from app.db.models import File, Project
from tests.support import dbaccess
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
            metadata=metadata_text("evil-pkg", "6.6.6", summary=XSS, description=EVIL_README, extra_headers=EVIL_URLS),
        ),
    ]


def seed(base: str | httpx.Client, tmp: Path, data_dir: Path) -> None:
    """The standard UI fixture: demo-pkg (0.9 yanked, 1.0.0), alpha-tools, plain-thing, evil-pkg."""
    for path in demo_wheels(tmp):
        post(base, path)
    yank(data_dir, "demo_pkg-0.9-py3-none-any.whl", "Broken <b>build</b>, use 1.0.0")
    add_file(data_dir, "evil-pkg", "6.6.6", EVIL_FILENAME, summary=XSS)


def sha1_htpasswd(path: Path, user: str, password: str) -> Path:
    """An htpasswd file with one ``htpasswd -s`` (SHA1) entry: fast to verify, unlike bcrypt."""
    digest = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
    path.write_text(f"{user}:{{SHA}}{digest}\n")
    return path


def yank(data_dir: Path, filename: str, reason: str | None) -> None:
    def run(conn: Connection) -> None:
        done = conn.execute(update(File).where(File.filename == filename).values(yanked=True, yanked_reason=reason))
        assert done.rowcount == 1

    dbaccess.transaction(data_dir, run)


def add_file(data_dir: Path, project: str, version: str, filename: str, *, summary: str = "", when: int = 0) -> None:
    """A file row, bypassing upload validation (the bytes are not stored)."""
    dbaccess.transaction(
        data_dir, lambda conn: _add_file(conn, _project_id(conn, project), version, filename, summary, when)
    )


def add_projects(data_dir: Path, names: list[str], files: int, *, summary: str = "", versions: int = 1) -> None:
    """Projects with ``files`` rows each, spread over ``versions`` versions, in one transaction.
    ``summary`` may name ``{i}``, the project's position in ``names``."""

    def run(conn: Connection) -> None:
        for n, name in enumerate(names):
            pid = _project_id(conn, name)
            for i in range(files):
                version = f"1.{i % versions}"
                tags = "cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64"
                fn = f"{name.replace('-', '_')}-{version}-{i}-{tags}.whl"
                _add_file(conn, pid, version, fn, summary.format(i=n), i)

    dbaccess.transaction(data_dir, run)


def _project_id(conn: Connection, name: str) -> int:
    found = conn.execute(select(Project.id).where(Project.normalized_name == name)).scalar()
    if found is not None:
        return int(found)
    row = {"name": name, "normalized_name": name, "created": _stamp(0), "serial": 0}
    return int(conn.execute(Project.__table__.insert().values(**row).returning(Project.id)).scalar_one())


def _add_file(conn: Connection, pid: int, version: str, filename: str, summary: str, when: int) -> None:
    sha = hashlib.sha256(filename.encode()).hexdigest()
    row = {
        "project_id": pid, "version": version, "filename": filename, "filetype": "bdist_wheel",
        "pyversion": "py3", "size": 123_456 + when, "sha256": sha, "md5": sha[:32], "blake2_256": sha,
        "storage_key": f"missing/{sha}", "summary": summary or None, "upload_time": _stamp(when), "yanked": False,
    }  # fmt: skip
    conn.execute(File.__table__.insert().values(**row))


def _stamp(seconds: int) -> datetime:
    return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
