"""PEP 503 HTML (with PEP 629 and PEP 792 meta, PEP 592/658/714 data attributes). Pure: model -> bytes.

Every value goes through ``_e`` (HTML-escaped, quotes included), so a filename, a
requires-python or a yank reason containing ``<>"&`` renders inert.
"""

from __future__ import annotations

from html import escape

from app.simple.model import API_VERSION, DistFile, ProjectDetail, ProjectList


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _page(title: str, links: list[str], meta: tuple[tuple[str, str], ...] = ()) -> bytes:
    body = "\n".join(links)
    extra = "".join(f'    <meta name="{name}" content="{_e(content)}">\n' for name, content in meta)
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">\n{extra}'
        f"    <title>{_e(title)}</title>\n  </head>\n  <body>\n"
        f"    <h1>{_e(title)}</h1>\n{body}{chr(10) if body else ''}  </body>\n</html>\n"
    ).encode()


def index(page: ProjectList) -> bytes:
    links = [f'    <a href="{_e(p.normalized_name)}/">{_e(p.name)}</a><br />' for p in page.projects]
    return _page("Simple index", links)


def _link(f: DistFile) -> str:
    attrs = [f'href="{_e(f.url)}#sha256={_e(f.sha256)}"']
    if f.requires_python:
        attrs.append(f'data-requires-python="{_e(f.requires_python)}"')
    if f.core_metadata_sha256:
        # PEP 714: data-core-metadata is the name; data-dist-info-metadata is kept for older pips.
        attrs.append(f'data-core-metadata="sha256={_e(f.core_metadata_sha256)}"')
        attrs.append(f'data-dist-info-metadata="sha256={_e(f.core_metadata_sha256)}"')
    if f.yanked is not False:
        attrs.append(f'data-yanked="{_e(f.yanked if isinstance(f.yanked, str) else "")}"')
    attrs.append(f'data-size="{f.size}"')
    attrs.append(f'data-upload-time="{_e(f.upload_time)}"')
    return f"    <a {' '.join(attrs)}>{_e(f.filename)}</a><br />"


def detail(page: ProjectDetail) -> bytes:
    meta: tuple[tuple[str, str], ...] = ()
    if page.status is not None:  # PEP 792: absent means active
        meta = (("pypi:project-status", page.status),)
        if page.status_reason:
            meta += (("pypi:project-status-reason", page.status_reason),)
    return _page(f"Links for {page.name}", [_link(f) for f in page.files], meta)
