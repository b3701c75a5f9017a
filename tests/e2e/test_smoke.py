import httpx
import pytest

pytestmark = pytest.mark.e2e


def test_server_starts_and_answers(live_server):
    server = live_server()
    r = httpx.get(server.url + "/simple/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
