"""The browsing UI in a real browser: Debian's Chromium, headless, driven by Playwright, against a real
``packhouse serve``. Browsers are never downloaded: the system Chromium is used (``.ci/run`` installs it
with apt when it is missing). Screenshots of every page at phone and desktop width (and dark mode) are
kept in ``test-artifacts/ui/``, with the axe-core report beside them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from importlib.resources import files
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from tests.conftest import ROOT, LiveServer, clean_env
from tests.support import catalog as data

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = ROOT / "test-artifacts" / "ui"
WIDTHS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 900}}
BAD_IMPACT = {"serious", "critical"}


@pytest.fixture(scope="module")
def browser():
    """The system Chromium (never downloaded), started for this module only: a session-wide
    Playwright would keep its event loop running and break every later async test."""
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui")
    live = LiveServer(tmp / "data", [], clean_env(tmp / "home")).start()
    try:
        data.seed(live.url, tmp / "dists", tmp / "data")
        fillers = [f"zz-filler-{i:03d}" for i in range(60)]  # enough for a second page of projects
        data.add_projects(tmp / "data", fillers, 2, summary="Filler {i}")
        status = {"status": "deprecated", "reason": "use demo-pkg"}  # PEP 792: a badge in the lists
        assert httpx.put(f"{live.url}/api/projects/alpha-tools/status", json=status).status_code == 200
        yield live
    finally:
        live.stop()


@pytest.fixture
def tab(browser, server):
    """A fresh browser context at desktop width that may use the clipboard; page errors fail the test."""
    context = browser.new_context(
        base_url=server.url, permissions=["clipboard-read", "clipboard-write"], viewport=WIDTHS["desktop"]
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.dialogs = dialogs  # type: ignore[attr-defined]
    yield page
    context.close()
    assert errors == [], errors


def copy(tab, button) -> str:
    """Click a copy button, wait for its confirmation, and return what the clipboard holds."""
    button.click()
    expect(button).to_have_text("Copied")
    return tab.evaluate("navigator.clipboard.readText()")


def test_home_search_project_copy_install_command(tab, server):
    tab.goto("/")
    assert tab.title().startswith("Packhouse")
    tab.fill("#home-q", "demo")
    tab.press("#home-q", "Enter")
    tab.wait_for_url("**/ui/projects/?q=demo")
    assert tab.inner_text("#count") == "1 project matching “demo”"
    tab.click("#list >> text=demo-pkg")
    tab.wait_for_url("**/ui/project/demo-pkg/")
    # The README, rendered: a heading, bold text, a list and a highlighted code block.
    readme = tab.locator("article.readme")
    assert readme.locator("h1").inner_text() == "Demo package"
    assert readme.locator("strong").inner_text() == "bold"
    assert readme.locator("li").all_inner_texts()[:2] == ["one", "two"]
    assert readme.locator("input[type=checkbox]:checked").count() == 1  # a GFM task list
    assert "print(demo_pkg.__version__)" in readme.locator("pre").inner_text()
    # Copy the pip install command; the clipboard holds exactly the command shown.
    command = tab.inner_text("#cmd-pip")
    assert command == f"pip install --index-url {server.url}/simple/ demo-pkg"
    assert copy(tab, tab.locator("button[data-copy=cmd-pip]")) == command
    uv_command = f"uv pip install --index-url {server.url}/simple/ demo-pkg"
    assert copy(tab, tab.locator("button[data-copy=cmd-uv]")) == uv_command
    # Each file's sha256 has its own copy button (added by ui.js), named after the file.
    sha = tab.locator("table.files td > code").first.inner_text()
    assert len(sha) == 64
    assert copy(tab, tab.get_by_role("button", name="Copy SHA256 of demo_pkg-1.0.0-py3-none-any.whl")) == sha
    # Release history leads to the yanked release page, pinned and flagged.
    tab.click(".history >> text=0.9")
    tab.wait_for_url("**/ui/project/demo-pkg/0.9/")
    assert tab.inner_text("#cmd-pip").endswith("demo-pkg==0.9")
    assert "This release is yanked: Broken <b>build</b>, use 1.0.0" in tab.inner_text(".note.yank")


def test_filter_as_you_type_uses_the_search_api(tab):
    tab.goto("/ui/projects/")
    assert tab.inner_text("#count").startswith("64 projects")
    assert tab.locator("#list li", has_text="alpha-tools").locator(".badge").inner_text() == "Deprecated"
    tab.evaluate("window.__same_page = true")  # survives only if no navigation happens
    with tab.expect_response("**/api/search?*") as response:
        tab.locator("#q").press_sequentially("alpha", delay=20)
    assert response.value.ok
    expect(tab.locator("#count")).to_contain_text("matching “alpha”")
    assert tab.locator("#list li").count() == 1
    assert tab.locator("#list a").get_attribute("href") == "/ui/project/alpha-tools/"
    assert tab.inner_text("#list li .badge") == "Deprecated"  # rendered by ui.js as by the server
    assert tab.evaluate("window.__same_page") is True
    assert "q=alpha" in tab.url
    assert tab.title() == "“alpha” — Projects — Packhouse"  # the same title the server would render
    tab.locator("#q").fill("")
    tab.locator("#q").press_sequentially("filler", delay=10)
    expect(tab.locator("#count")).to_have_text("60 projects matching “filler” · page 1 of 2")
    assert tab.locator(".pager a[rel=next]").count() == 1


def test_keyboard_only(tab):
    tab.goto("/ui/project/demo-pkg/")
    tab.keyboard.press("Tab")
    assert tab.evaluate("document.activeElement.textContent") == "Skip to content"
    tab.keyboard.press("Enter")
    expect(tab).to_have_url(re.compile(r"#main$"))  # waits: on a busy machine the jump lands a little later
    for _ in range(15):  # from the main landmark, Tab reaches the install command's copy button
        tab.keyboard.press("Tab")
        if tab.evaluate("document.activeElement.dataset.copy") == "cmd-pip":
            break
    else:
        pytest.fail("the copy button is not reachable with Tab")
    tab.keyboard.press("Enter")
    expect(tab.locator("button[data-copy=cmd-pip]")).to_have_text("Copied")
    assert tab.evaluate("navigator.clipboard.readText()").startswith("pip install")
    outline = tab.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")  # the focus is visible


def test_stored_xss_never_runs(tab):
    urls = ["/", "/ui/projects/?q=evil", "/ui/project/evil-pkg/", "/ui/project/evil-pkg/6.6.6/"]
    for url in urls:
        tab.goto(url)
        tab.wait_for_load_state("load")
        assert tab.evaluate("window.__xss") is None, url
        # Nothing hostile survived into the DOM: no handlers, no javascript: URLs, no foreign scripts.
        assert tab.evaluate("[...document.querySelectorAll('*')].filter(e => [...e.attributes]"
                             ".some(a => a.name.startsWith('on'))).length") == 0, url  # fmt: skip
        assert tab.locator("[href^='javascript:' i], [src^='javascript:' i]").count() == 0, url
        assert tab.evaluate("[...document.scripts].map(s => new URL(s.src).pathname)") == ["/ui/static/ui.js"]
    assert tab.locator("text=<script>window.__xss=1</script>").count() >= 1  # shown as text
    for text in ("click me", "raw link"):  # the defanged javascript: links
        tab.locator("article.readme a", has_text=text).click()
    assert tab.evaluate("window.__xss") is None
    # The same hostile summary through filter-as-you-type (rendered by ui.js).
    tab.goto("/ui/projects/")
    tab.locator("#q").press_sequentially("evil", delay=10)
    expect(tab.locator("#count")).to_contain_text("“evil”")
    assert "<script>" in tab.inner_text("#list")
    assert tab.evaluate("window.__xss") is None
    assert tab.dialogs == []  # type: ignore[attr-defined]


PAGES = {
    "home": "/",
    "projects": "/ui/projects/",
    "search": "/ui/projects/?q=demo",
    "project": "/ui/project/demo-pkg/",
    "release": "/ui/project/demo-pkg/0.9/",
    "rst-project": "/ui/project/alpha-tools/",
    "not-found": "/ui/project/no-such-project/",
}


def _axe_source() -> str:
    return (files("axe_playwright_python") / "axe.min.js").read_text()


def test_screenshots_accessibility_and_layout_at_two_widths(browser, server):
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    axe = _axe_source()
    problems: list[str] = []
    report: dict[str, object] = {}
    runs = [(w, "light") for w in WIDTHS] + [("desktop", "dark"), ("phone", "dark")]
    for width, scheme in runs:
        context = browser.new_context(base_url=server.url, viewport=WIDTHS[width], color_scheme=scheme)
        tab = context.new_page()
        for name, url in PAGES.items():
            if scheme == "dark" and name not in ("home", "project"):
                continue
            tab.goto(url)
            shot = f"{name}-{width}" + ("-dark" if scheme == "dark" else "")
            tab.screenshot(path=ARTIFACTS / f"{shot}.png", full_page=True)
            overflow = tab.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            if overflow > 1:
                problems.append(f"{shot}: page is {overflow}px wider than the viewport")
            tab.evaluate(axe)
            result = tab.evaluate("axe.run(document, {resultTypes: ['violations']})")
            violations = [
                {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
                for v in result["violations"]
            ]
            report[shot] = violations
            problems += [
                f"{shot}: {v['id']} ({v['impact']}) {v['nodes']}" for v in violations if v["impact"] in BAD_IMPACT
            ]
        context.close()
    (ARTIFACTS / "axe-report.json").write_text(json.dumps(report, indent=2))
    assert problems == []
    assert len(list(ARTIFACTS.glob("*.png"))) == 2 * len(PAGES) + 4


def test_list_permission_prompts_the_browser(browser, tmp_path):
    htpasswd = data.sha1_htpasswd(tmp_path / "htpasswd", "alice", "pw")
    live = LiveServer(tmp_path / "data", ["--passwords", str(htpasswd), "--authenticate", "list,update"],
                      clean_env(tmp_path / "home")).start()  # fmt: skip
    try:
        anonymous = httpx.get(live.url + "/")
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"].startswith("Basic")
        context = browser.new_context(base_url=live.url, http_credentials={"username": "alice", "password": "pw"})
        tab = context.new_page()
        assert tab.goto("/").status == 200
        assert tab.goto("/ui/projects/").status == 200
        context.close()
    finally:
        live.stop()


EVIL_PAGE = """<!DOCTYPE html><title>Free stickers</title>
<form method="post" action="{action}"><input type="hidden" name=":action" value="remove_pkg">
<input type="hidden" name="name" value="demo"><input type="hidden" name="version" value="1.0"></form>
<script>document.forms[0].submit()</script>"""


def test_a_logged_in_browser_lends_no_password_to_another_sites_form(browser, tmp_path):
    """Cross-site request forgery in a real browser: logged in to a private index's UI, the user
    opens another site's page that posts pypiserver's remove_pkg form to the index. The browser
    attaches the index's credentials; the index refuses the request (403), and the release stays.
    The index's own pages may still change it (a same-origin fetch, as /docs "Try it out" sends)."""
    htpasswd = data.sha1_htpasswd(tmp_path / "htpasswd", "alice", "pw")
    live = LiveServer(tmp_path / "data", ["--passwords", str(htpasswd), "--authenticate", "update,download,list"],
                      clean_env(tmp_path / "home")).start()  # fmt: skip
    try:
        with httpx.Client(base_url=live.url, auth=("alice", "pw")) as http:
            for version in ("1.0", "2.0"):
                data.post(http, data.wheel(tmp_path / "dists", "demo", version))
        context = browser.new_context(base_url=live.url, http_credentials={"username": "alice", "password": "pw"})
        evil, page = "http://stickers.example/", EVIL_PAGE.format(action=live.url + "/")
        context.route(evil, lambda route: route.fulfill(content_type="text/html", body=page))
        tab = context.new_page()
        assert tab.goto("/ui/project/demo/").status == 200  # logged in
        with tab.expect_response(lambda r: r.request.method == "POST") as posted:
            tab.goto(evil)
        assert posted.value.status == 403, posted.value.text()
        assert "Cross-site request refused" in posted.value.text()
        tab.goto("/ui/project/demo/")
        yank = "() => fetch('/api/projects/demo/releases/2.0/yank', {method: 'POST'}).then(r => r.status)"
        assert tab.evaluate(yank) == 200  # the index's own page
        context.close()
        with httpx.Client(base_url=live.url, auth=("alice", "pw")) as http:
            files = http.get("/api/projects/demo").json()["files"]
        assert sorted((f["version"], f["yanked"]) for f in files) == [("1.0", False), ("2.0", True)]
    finally:
        live.stop()


def test_api_docs_render_with_nothing_beyond_the_server(browser, server):
    """/docs and /redoc work where no CDN is reachable (air-gapped farms): every request that leaves
    the server is refused, and Swagger UI and ReDoc still render the whole API."""
    context = browser.new_context(base_url=server.url, viewport=WIDTHS["desktop"])
    elsewhere: list[str] = []

    def only_the_server(route):
        if route.request.url.startswith(server.url + "/"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_server)
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    blocked: list[str] = []
    tab.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        assert tab.goto("/docs").status == 200
        upload = tab.locator(".opblock-post", has_text="/legacy/").first
        expect(upload).to_be_visible()
        spec = httpx.get(server.url + "/openapi.json").json()
        operations = sum(len(methods) for methods in spec["paths"].values())
        assert operations >= 26  # every route is in the document; Swagger UI shows each one
        expect(tab.locator(".opblock")).to_have_count(operations)
        upload.locator(".opblock-summary").click()
        expect(upload.locator(".parameters-container, .opblock-section-request-body").first).to_be_visible()
        expect(upload.get_by_text(":action").first).to_be_visible()
        assert tab.goto("/redoc").status == 200
        expect(tab.locator("h1", has_text="Packhouse")).to_be_visible()
        expect(tab.locator("h2", has_text="Upload a distribution (legacy upload API)").first).to_be_visible()
    finally:
        context.close()
    assert errors == [], errors
    # Nothing is refused by the pages' policy, and nothing is asked of another host (ReDoc's
    # "powered by" logo on cdn.redoc.ly is replaced in the served script: app/api/docs.py).
    assert blocked == [], blocked
    assert elsewhere == [], elsewhere
