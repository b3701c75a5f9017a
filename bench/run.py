"""Packhouse vs pypiserver (default server and gunicorn) and devpi, side by side, in one run.

    make bench                       # or: .venv/bin/python bench/run.py [--duration 10] [--projects 10000]

Builds (and caches) a deterministic corpus under bench/.work, loads it into each server, drives each
with wrk and the real clients (uv, pip), prints a table of ratios and writes the raw figures to
bench/results/<UTC time>.json. Everything binds to 127.0.0.1 on free ports. See bench/README.md.
"""

from __future__ import annotations

import argparse
import compileall
import html
import http.client
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import corpus  # noqa: E402
import servers  # noqa: E402
from servers import WORK, Server, rss_kib  # noqa: E402

RESULTS = servers.ROOT / "bench" / "results"
JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"
WRK_LUA = """
wrk.method = os.getenv("WRK_METHOD") or "GET"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\\"requests\\":%d,\\"bytes\\":%d,\\"duration_us\\":%d,\\"errors\\":%d,\\"bad_status\\":%d," ..
    "\\"p50_us\\":%d,\\"p99_us\\":%d}\\n",
    summary.requests, summary.bytes, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass
class Ctx:
    duration: int
    out: dict[str, dict[str, object]]  # row -> server -> figures

    def put(self, row: str, server: str, value: object) -> None:
        self.out.setdefault(row, {})[server] = value
        print(f"  {row:<22} {server:<24} {_show(value)}", flush=True)


def _show(value: object) -> str:
    if isinstance(value, dict):
        return " ".join(
            f"{k}={v}"
            for k, v in value.items()
            if k in ("rps", "mb_s", "seconds", "bad", "p50_ms", "rss_mb", "growth_mb", "per_s", "cpu_s", "note")
        )
    return str(value)


# --- load generators -----------------------------------------------------------------------------


def wrk(
    url: str,
    duration: int,
    *,
    conns: int = 32,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    timeout: int = 10,
) -> dict[str, float]:
    script = WORK / "report.lua"
    script.write_text(WRK_LUA)
    argv = [
        "wrk",
        f"-t{min(2, conns)}",
        f"-c{conns}",
        f"-d{duration}s",
        "--timeout",
        f"{timeout}s",
        "-s",
        str(script),
    ]
    for k, v in (headers or {}).items():
        argv += ["-H", f"{k}: {v}"]
    proc = subprocess.run([*argv, url], capture_output=True, text=True, env={**os.environ, "WRK_METHOD": method})
    line = next((x for x in proc.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {proc.stdout} {proc.stderr}")
    raw = json.loads(line[len("WRKJSON ") :])
    seconds = raw["duration_us"] / 1e6
    result = {
        "rps": round(raw["requests"] / seconds, 1),
        "mb_s": round(raw["bytes"] / seconds / 1e6, 1),
        "requests": raw["requests"],
        "bad": raw["errors"] + raw["bad_status"],
        "p50_ms": round(raw["p50_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2),
    }
    if raw["requests"] < 5 and conns > 2 and method == "GET":
        # Requests slower than the run (pypiserver rescanning 30,000 files): too few answers to
        # count. Measure again with 2 connections (one per worker), longer and a longer timeout.
        slow = wrk(url, max(30, duration * 3), conns=2, headers=headers, timeout=60)
        return {**slow, "note": f"slow server: re-measured with -c2 -d{max(30, duration * 3)}s --timeout 60s"}
    return result


def sequential(
    url: str, seconds: float, *, method: str = "GET", headers: dict[str, str] | None = None
) -> dict[str, object]:
    """One client, one keep-alive connection, request after request (wrk cannot do HEAD: it waits
    for the body that a HEAD response announces but never sends)."""
    parts = urllib.parse.urlsplit(url)
    conn = None
    times = []
    began = time.perf_counter()
    end = began + seconds
    statuses: set[int] = set()
    while time.perf_counter() < end:
        if conn is None:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        start = time.perf_counter()
        conn.request(method, parts.path, headers=headers or {})
        resp = conn.getresponse()
        resp.read()
        times.append(time.perf_counter() - start)
        statuses.add(resp.status)
        if resp.will_close:
            conn.close()
            conn = None
    if conn is not None:
        conn.close()
    return {
        "rps": round(len(times) / (time.perf_counter() - began), 1),
        "p50_ms": round(statistics.median(times) * 1000, 2),
        "statuses": sorted(statuses),
    }


# Files up to this size are read into the client's memory before an upload is timed. This VM
# reclaims cold page cache within seconds (DAMON's pageout scheme: `buff/cache` stays near 0 GB),
# so a file the client read a minute earlier is read from disk again, inside the timed upload and
# for every server alike: up to 0.1 s on a 50 MB upload that Packhouse stores in 0.08 s.
PRELOAD_BYTES = 100 * 1024 * 1024


def upload(server: Server, path: Path, dist: corpus.Dist) -> tuple[float, int, str]:
    """One legacy-API upload, sent in 1 MiB writes (as twine/requests would stream it): from memory
    for files up to PRELOAD_BYTES (read before the clock starts), else streamed from disk."""
    boundary = "----packhouse-bench-" + dist.sha256[:16]
    fields = {
        ":action": "file_upload",
        "protocol_version": "1",
        "name": dist.project,
        "version": dist.version,
        "filetype": dist.filetype,
        "pyversion": dist.pyversion,
        "metadata_version": "2.1",
        "md5_digest": dist.md5,
        "sha256_digest": dist.sha256,
    }
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    )
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="{dist.filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    size = len(head) + dist.size + len(tail)
    data = path.read_bytes() if dist.size <= PRELOAD_BYTES else None
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
    start = time.perf_counter()
    conn.putrequest("POST", server.upload_path)
    conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    if server.authorization:
        conn.putheader("Authorization", server.authorization)
    conn.putheader("Content-Length", str(size))
    conn.endheaders()
    conn.send(head)
    if data is not None:
        view = memoryview(data)
        for i in range(0, len(view), 1024 * 1024):
            conn.send(view[i : i + 1024 * 1024])
    else:
        with path.open("rb") as fh:
            while chunk := fh.read(1024 * 1024):
                conn.send(chunk)
    conn.send(tail)
    resp = conn.getresponse()
    body = resp.read().decode(errors="replace")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed, resp.status, body


def client_env(kind: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(PIP_CONFIG_FILE="/dev/null", PIP_DISABLE_PIP_VERSION_CHECK="1", UV_NO_CONFIG="1")
    return env


# --- phases --------------------------------------------------------------------------------------


def client_commands(index: list[str], peer_bin: Path, search: str | None = None) -> dict[str, list[str]]:
    """``index``: the options that point the clients at a server (or, for the floor, at a folder).
    ``search``: the server's root, for ``pip search`` (XML-RPC at ``/RPC2``, as pypiserver's quick
    start runs it); None leaves it out."""
    reqs = WORK / "requirements.in"
    reqs.write_text("\n".join(corpus.CLIENT_PACKAGES) + "\n")
    uv = str(Path(sys.executable).parent / "uv")
    pip = str(peer_bin / "pip")
    found = {"pip_search": [pip, "search", "--index", search, "phx"]} if search else {}
    return found | {
        "uv_pip_compile": [uv, "pip", "compile", "-q", "--no-cache", *index, "--python-version",
                           "3.11", "--output-file", str(WORK / "compiled.txt"), str(reqs)],
        "pip_install_dry_run": [pip, "install", "--dry-run", "--ignore-installed",
                                "--no-cache-dir", "-q", *index, *corpus.CLIENT_PACKAGES],
    }  # fmt: skip


def local_floor(corpus_dir: Path) -> tuple[str, list[str]]:
    """The same resolution with no server at all: the client packages' files in a local folder
    (``--no-index --find-links``). What the clients spend on themselves; no index can go below it."""
    folder = WORK / "floor-links"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in corpus.CLIENT_PACKAGES:
        for path in corpus_dir.glob(name.replace("-", "_") + "-*"):
            os.link(path, folder / path.name)
    return "no server (local --find-links)", ["--no-index", "--find-links", str(folder)]


STATIC_INDEX = "static files on nginx"


def static_index(dists: list[corpus.Dist], corpus_dir: Path) -> Path:
    """The client packages as a PEP 503 tree of plain files (each project's page, its files, and
    the wheels' PEP 658 ``.metadata`` beside them), for nginx to serve: an index that does no work
    per request. pip and uv on it spend what an HTTP index costs them; no server can answer below
    it."""
    root = WORK / "static-index"
    shutil.rmtree(root, ignore_errors=True)
    (root / "files").mkdir(parents=True)
    for name in corpus.CLIENT_PACKAGES:
        links = []
        for d in (x for x in dists if x.normalized == name):
            os.link(corpus_dir / d.filename, root / "files" / d.filename)
            attrs = f' data-requires-python="{html.escape(d.requires_python)}"' if d.requires_python else ""
            if d.metadata_sha256:
                (root / "files" / f"{d.filename}.metadata").write_bytes(d.metadata.encode())
                attrs += f' data-dist-info-metadata="sha256={d.metadata_sha256}"'
                attrs += f' data-core-metadata="sha256={d.metadata_sha256}"'
            links.append(f'<a href="../../files/{d.filename}#sha256={d.sha256}"{attrs}>{d.filename}</a><br>')
        page = root / "simple" / name / "index.html"
        page.parent.mkdir(parents=True)
        page.write_text("<!DOCTYPE html>\n<html><body>\n" + "\n".join(links) + "\n</body></html>\n")
    return root


def clients_phase(
    ctx: Ctx,
    running: list[Server],
    peer_bin: Path,
    runs: int,
    *,
    suffix: str = "",
    floor: tuple | None = None,
    search: bool = False,
) -> None:
    """The real clients against every server, runs interleaved (A B C A B C ...): a few seconds of
    other load on the machine then slows every server alike instead of whichever ran then.
    ``floor``: (name, options) of a serverless reference run interleaved the same way. ``search``:
    ``pip search`` too."""
    commands = {
        srv.name: client_commands(["--index-url", srv.url + srv.simple], peer_bin, srv.url if search else None)
        for srv in running
    }
    if floor is not None:
        commands[floor[0]] = client_commands(floor[1], peer_bin)
    times: dict[tuple[str, str], list[float]] = {}
    errors: dict[tuple[str, str], str] = {}
    for i in range(runs + 1):
        for name, rows in commands.items():
            for row, argv in rows.items():
                start = time.perf_counter()
                proc = subprocess.run(argv, capture_output=True, text=True, env=client_env(argv[0]))
                elapsed = time.perf_counter() - start
                if proc.returncode != 0:
                    errors[(row, name)] = (proc.stdout + proc.stderr)[-2000:]
                elif i:  # the first round warms the servers' caches (and the OS's); not counted
                    times.setdefault((row, name), []).append(elapsed)
    for name, rows in commands.items():
        for row in rows:
            if (row, name) in errors:
                ctx.put(row + suffix, name, {"error": errors[(row, name)]})
            else:
                t = times[(row, name)]
                ctx.put(
                    row + suffix,
                    name,
                    {"seconds": round(statistics.median(t), 3), "runs": [round(x, 3) for x in t]},
                )


def file_url(server: Server, dist: corpus.Dist) -> str:
    if server.name.startswith("packhouse"):
        return f"{server.url}/files/{dist.normalized}/{dist.filename}"
    if server.name == "nginx":
        return f"{server.url}/{dist.filename}"
    if server.name == "devpi":
        return f"{server.url}{server.upload_path}+f/{dist.sha256[:3]}/{dist.sha256[3:16]}/{dist.filename}"
    return f"{server.url}/packages/{dist.filename}"


def small_phase(ctx: Ctx, srv: Server, dists: list[corpus.Dist]) -> None:
    d = ctx.duration
    name = srv.name
    page = f"{srv.url}{srv.simple}phx-many/"
    ctx.put("project_200_files", name, wrk(page, d))
    ctx.put("project_200_files_json", name, wrk(page, d, headers={"Accept": JSON_ACCEPT}))
    if name.startswith(("packhouse", "pypiserver")):  # pypiserver's /<project>/json, served by both
        ctx.put("project_json_api", name, wrk(f"{srv.url}/phx-many/json", d))
    huge = next(x for x in dists if x.project == "phx-huge")
    url = file_url(srv, huge)
    ctx.put("get_50mb_file", name, wrk(url, d, conns=4))
    rng = {"Range": "bytes=1000-66535"}
    ctx.put("range_50mb_file", name, wrk(url, d, conns=4, headers=rng))
    ctx.put("head_50mb_file_seq", name, sequential(url, min(d, 5), method="HEAD"))
    ctx.put("range_50mb_file_seq", name, sequential(url, min(d, 5), headers=rng))


def uploads_phase(ctx: Ctx, srv: Server, uploads: dict[str, list[corpus.Dist]], up_dir: Path) -> None:
    """Uploads (after the page rows: they change the index). The first upload of each kind warms
    the server's upload path (database connections, lazy imports) and is not counted, for every
    server alike."""
    name = srv.name
    times = []
    for i, dist in enumerate(uploads["big"]):
        elapsed, status, body = upload(srv, up_dir / dist.filename, dist)
        if status != 200:
            ctx.put("upload_50mb", name, {"error": f"{status} {body[:300]}"})
            break
        if i:
            times.append(elapsed)
    else:
        mb = uploads["big"][0].size / 1e6
        ctx.put(
            "upload_50mb",
            name,
            {"mb_s": round(mb / statistics.median(times), 1), "seconds": [round(t, 3) for t in times]},
        )
    small_uploads(ctx, srv, uploads["small"], up_dir, "upload_small_seq")


def small_uploads(ctx: Ctx, srv: Server, dists: list[corpus.Dist], up_dir: Path, row: str) -> None:
    """Small wheels uploaded one after another; the first warms the upload path and is not counted."""
    times = []
    for i, dist in enumerate(dists):
        if i == 1:
            start = time.perf_counter()
        elapsed, status, body = upload(srv, up_dir / dist.filename, dist)
        if status != 200:
            ctx.put(row, srv.name, {"error": f"{status} {body[:300]}"})
            return
        if i:
            times.append(elapsed)
    total = time.perf_counter() - start
    ctx.put(row, srv.name, {"per_s": round(len(times) / total, 1), "p50_ms": round(statistics.median(times) * 1000, 2)})


def load_devpi(bin_dir: Path, dists: list[corpus.Dist], corpus_dir: Path) -> Path:
    """A devpi server directory holding ``dists`` in ``root/dev``, uploaded over HTTP (devpi has no
    bulk import; ~7 uploads/s here, so ~90 s for the small corpus). Kept in bench/.work between
    runs (the corpus is deterministic); each phase works on a copy, since uploads change it."""
    pristine = WORK / "devpi-small-pristine"
    stamp = f"{len(dists)} {dists[0].sha256} {dists[-1].sha256} {' '.join(servers.PEER_PACKAGES)}"
    if (pristine / ".bench-loaded").exists() and (pristine / ".bench-loaded").read_text() == stamp:
        return pristine
    print(f"  loading devpi ({len(dists)} uploads)", flush=True)
    servers.devpi_init(bin_dir, pristine / "server")
    srv = servers.devpi(bin_dir, pristine / "server").start()
    try:
        servers.devpi_create_index(srv)
        with ThreadPoolExecutor(4) as pool:
            for dist, (_, status, body) in zip(
                dists, pool.map(lambda d: upload(srv, corpus_dir / d.filename, d), dists), strict=True
            ):
                if status != 200:
                    raise RuntimeError(f"devpi refused {dist.filename}: {status} {body[:300]}")
    finally:
        srv.stop()
    (pristine / ".bench-loaded").write_text(stamp)
    return pristine


def devpi_copy(pristine: Path, name: str) -> Path:
    target = WORK / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(pristine / "server", target)
    return target


def durable_floor(directory: Path, n: int = 200, *, deferred: bool = False) -> dict[str, object]:
    """What an upload's durability costs on this disk with no server at all, done the way
    Packhouse's local store does it (app/storage/local.py): per upload, a 3 KB file written into
    an empty file made ahead in an existing prefix directory and renamed there, the file and the
    directory fsynced at the same time (two threads), then one row committed to a WAL-mode SQLite
    database with synchronous=FULL. The empty file is made before the clock starts, as Packhouse
    makes it after the previous upload's answer. (No PEP 658 metadata file: the local store
    writes it on the first request for it.)

    ``deferred``: what deferred file durability (not built; bench/deferred_floor.py) would cost
    instead: the same writes and renames, the file's bytes inserted into a pending table in the
    row's own transaction (one WAL fsync for both), and the fsyncs of the file and its directory
    started after the commit, in the background (the next upload's clock runs meanwhile), the
    pending rows deleted once they are done, every 50 uploads."""
    if directory.exists():
        shutil.rmtree(directory)
    (directory / "ab").mkdir(parents=True)
    db = sqlite3.connect(directory / "floor.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE files (id INTEGER PRIMARY KEY, filename TEXT UNIQUE, sha256 TEXT)")
    db.execute("CREATE TABLE pending (filename TEXT PRIMARY KEY, data BLOB)")
    flushing: list[Future[None]] = []

    def flush(fd: int, path: Path) -> None:
        os.fsync(fd)
        os.close(fd)
        fsync_dir(path)

    def made_ahead(path: Path) -> int:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)

    def fsync_dir(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    times = []
    with ThreadPoolExecutor(2) as pool:
        for i in range(n):
            digest = f"{i:064x}"
            target = directory / "ab" / f"{digest[-14:]}-x.whl"
            spare = target.with_name(f"{i}.part")
            fd = made_ahead(spare)
            data = os.urandom(3000)
            start = time.perf_counter()
            os.write(fd, data)
            os.rename(spare, target)
            pending = [] if deferred else [pool.submit(os.fsync, fd), pool.submit(fsync_dir, target.parent)]
            for future in pending:
                future.result()
            if not deferred:
                os.close(fd)
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO files (filename, sha256) VALUES (?, ?)", (f"x-{i}.whl", digest))
            if deferred:
                db.execute("INSERT INTO pending (filename, data) VALUES (?, ?)", (f"x-{i}.whl", data))
            db.execute("COMMIT")
            times.append(time.perf_counter() - start)
            if not deferred:
                continue
            flushing.append(pool.submit(flush, fd, target.parent))
            if len(flushing) == 50 or i == n - 1:
                for future in flushing:
                    future.result()
                flushing.clear()
                db.execute("DELETE FROM pending")
    db.close()
    shutil.rmtree(directory)
    return {"p50_ms": round(statistics.median(times) * 1000, 3)}


def disk_floor(directory: Path, up_dir: Path, dists: list[corpus.Dist]) -> dict[str, object]:
    """What the 50 MB upload's durability costs on this disk with no server: each file's bytes
    (read before the clock starts) written in 1 MiB pieces through Packhouse's own staged-file
    writer (``LocalStaged``: writeback started every 4 MiB), then fsynced, as many times as the
    timed uploads. On a VM disk whose speed varies, this shows when the disk, not the server, set
    a durable upload's time (pypiserver fsyncs nothing, so it never waits for the disk)."""
    from app.storage.local import LocalStaged

    directory.mkdir(parents=True, exist_ok=True)
    times = []
    for dist in dists[1:]:  # the first upload is the warm-up, as in uploads_phase
        view = memoryview((up_dir / dist.filename).read_bytes())
        start = time.perf_counter()
        staged = LocalStaged(directory)
        for i in range(0, len(view), 1024 * 1024):
            staged.write(view[i : i + 1024 * 1024])
        staged.finish()
        times.append(round(time.perf_counter() - start, 3))
    shutil.rmtree(directory)
    os.sync()
    return {"seconds": times, "mb_s": round(dists[1].size / 1e6 / statistics.median(times), 1)}


def big_phase(ctx: Ctx, srv: Server, probe_project: str, uploads: list[corpus.Dist], up_dir: Path) -> None:
    d = ctx.duration
    ctx.put("index_10k", srv.name, wrk(f"{srv.url}/simple/", d))
    ctx.put("project_at_10k", srv.name, wrk(f"{srv.url}/simple/{probe_project}/", d))
    ctx.put(
        "project_at_10k_json",
        srv.name,
        wrk(f"{srv.url}/simple/{probe_project}/", d, headers={"Accept": JSON_ACCEPT}),
    )
    if srv.name.startswith("packhouse"):
        with http_get(srv, "/simple/") as resp:
            etag = resp.getheader("ETag")
        ctx.put("index_10k_304", srv.name, wrk(f"{srv.url}/simple/", d, headers={"If-None-Match": etag or ""}))
    # Last (it changes the index): the same small uploads as on the small corpus. pypiserver lists
    # its whole folder on every upload to see whether the filename exists; Packhouse looks it up in
    # a unique index.
    small_uploads(ctx, srv, uploads, up_dir, "upload_small_seq_10k")


class http_get:
    def __init__(self, srv: Server, path: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
        self.path = path

    def __enter__(self) -> http.client.HTTPResponse:
        self.conn.request("GET", self.path)
        resp = self.conn.getresponse()
        resp.read()
        return resp

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


def rss_during_upload(ctx: Ctx, srv: Server, path: Path, dist: corpus.Dist) -> None:
    pids = srv.pids()
    base = sum(rss_kib(p) for p in pids)
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], sum(rss_kib(p) for p in pids))
            time.sleep(0.02)

    t = threading.Thread(target=sample)
    t.start()
    elapsed, status, body = upload(srv, path, dist)
    stop.set()
    t.join()
    ctx.put(
        "rss_growth_1gb_upload",
        srv.name,
        {
            "growth_mb": round((peak[0] - base) / 1024, 1),
            "base_mb": round(base / 1024, 1),
            "status": status,
            "mb_s": round(dist.size / 1e6 / elapsed, 1),
        },
    )


# --- report --------------------------------------------------------------------------------------

# row, label, figure, higher is better, target ratio against pypiserver on gunicorn
ROWS = [
    ("project_200_files", "GET /simple/<project>/ (200+ files)", "rps", True, 50),
    ("project_200_files_json", "  same, PEP 691 JSON", "rps", True, 50),
    ("project_json_api", "GET /<project>/json, JSON API (200+ files)", "rps", True, None),
    ("index_10k", "GET /simple/ (10,000 projects)", "rps", True, 10),
    ("index_10k_304", "  same, If-None-Match -> 304", "rps", True, 10),
    ("project_at_10k", "GET /simple/<project>/ (10,000 projects)", "rps", True, 300),
    ("project_at_10k_json", "  same, PEP 691 JSON", "rps", True, 300),
    ("upload_50mb", "50 MB wheel upload (MB/s)", "mb_s", True, 5),
    ("upload_small_seq", "sequential small uploads, small corpus (/s)", "per_s", True, 4),
    ("upload_small_seq_10k", "  same, 10,000-project index (/s)", "per_s", True, 4),
    ("get_50mb_file", "GET 50 MB file, 4 conns (MB/s)", "mb_s", True, 1),
    ("range_50mb_file", "  Range 64 KiB of it, 4 conns (req/s)", "rps", True, None),
    ("head_50mb_file_seq", "  HEAD of it, 1 client in sequence (req/s)", "rps", True, None),
    ("range_50mb_file_seq", "  Range 64 KiB, 1 client in sequence (req/s)", "rps", True, None),
    ("folder_first_start", "first start on a pypiserver folder, none indexed (s)", "seconds", False, None),
    ("folder_restart", "  restart on it, all indexed (s)", "seconds", False, None),
    ("uv_pip_compile", "uv pip compile, 10 packages (s)", "seconds", False, 0.5),
    ("pip_install_dry_run", "pip install --dry-run, 10 packages (s)", "seconds", False, 0.5),
    ("uv_pip_compile_10k", "  uv pip compile, same, 10,000-project index (s)", "seconds", False, 0.5),
    ("pip_install_dry_run_10k", "  pip install --dry-run, same, 10,000-project index (s)", "seconds", False, 0.5),
    ("pip_search_10k", "pip search phx, 10,000-project index, 12 hits (s)", "seconds", False, None),
]


def folder_phase(
    ctx: Ctx, workers: int, which: set[str], peer_bin: Path, dists: list[corpus.Dist], corpus_dir: Path, project: str
) -> None:
    """pypiserver's own use: its package folder, served by ``packhouse run DIR`` in place. The
    first start indexes every file (hash, metadata) before the port opens; a restart finds them
    indexed. pypiserver keeps no index: each start lists the folder at its first request. Both
    are timed from the process's start to the first 200 of a project's page."""
    print(f"first start and restart on a pypiserver folder of {len(dists)} files", flush=True)
    probe = f"/simple/{project}/"
    starts: list[tuple[Callable[[Path], Server], Path]] = []
    if "packhouse" in which:
        starts.append((lambda d: servers.packhouse_folder(d, workers, probe), WORK / "ph-folder"))
    if "pypiserver" in which:
        starts.append((lambda d: servers.pypiserver_default(peer_bin, d, probe), WORK / "pypi-folder"))
    if "gunicorn" in which:
        starts.append((lambda d: servers.pypiserver_gunicorn(peer_bin, d, probe), WORK / "pypi-folder"))
    for make, folder in starts:
        servers.load_pypiserver(dists, corpus_dir, folder)  # hard links, no index
        for row in ("folder_first_start", "folder_restart"):
            srv = make(folder)
            srv.start(timeout=3600)
            cpu = round(sum(servers.cpu_seconds(p) for p in srv.pids()), 2)
            rss = sum(rss_kib(p) for p in srv.pids())
            srv.stop()
            ctx.put(row, srv.name, {"seconds": round(srv.ready_after, 3), "cpu_s": cpu, "rss_mb": round(rss / 1024, 1)})
            print(f"  {srv.name} {row}: {srv.ready_after:.2f} s", flush=True)


def figure(value: object, key: str) -> float | None:
    if isinstance(value, dict) and isinstance(value.get(key), int | float):
        return float(value[key])
    return None


def table(out: dict[str, dict[str, object]], ph: str, peers: list[str], ref: str) -> str:
    """Packhouse, each peer, the ratio against ``ref`` with the issue's target, and the ratio
    against devpi (the issue asks to be ahead of it on every row)."""
    lines = [
        f"| | Packhouse ({ph}) | {' | '.join(peers)} | ratio vs {ref} | target | vs devpi |",
        "|---" * (len(peers) + 5) + "|",
    ]
    for row, label, key, higher, target in ROWS:
        vals = out.get(row, {})
        mine = figure(vals.get(ph), key)
        theirs = [figure(vals.get(p), key) for p in peers]
        base = theirs[peers.index(ref)]
        if row == "index_10k_304":
            base = figure(out.get("index_10k", {}).get(ref), key)
        ratio = ""
        ok = ""
        if mine and base:
            r = mine / base
            ratio = f"{r:,.1f}x" if higher else f"{r:.2f}x"
            if target is not None:
                ok = "ok" if (r >= target if higher else r <= target) else "MISSED"
        tgt = "" if target is None else (f">= {target}x" if higher else f"<= {target}x")
        devpi = figure(vals.get("devpi"), key)
        versus = ""
        if mine and devpi:
            r = mine / devpi
            ahead = r > 1 if higher else r < 1
            versus = (f"{r:,.1f}x" if higher else f"{r:.2f}x") + (" ahead" if ahead else " BEHIND")
        cells = " | ".join("-" if t is None else f"{t:,.2f}".rstrip("0").rstrip(".") for t in theirs)
        m = "-" if mine is None else f"{mine:,.2f}".rstrip("0").rstrip(".")
        lines.append(f"| {label} | {m} | {cells} | {ratio} | {tgt} {ok} | {versus} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    ap.add_argument("--projects", type=int, default=10_000, help="projects in the big index (default 10000)")
    ap.add_argument("--versions", type=int, default=2, help="versions per filler project (default 2: 3 files)")
    ap.add_argument("--workers", type=int, default=2, help="uvicorn workers for Packhouse (default 2)")
    ap.add_argument("--runs", type=int, default=15, help="timed runs per client command (default 15)")
    ap.add_argument("--big-mb", type=int, default=50)
    ap.add_argument("--huge-upload-mb", type=int, default=1000, help="RSS test upload size (0 to skip)")
    ap.add_argument(
        "--only",
        default="",
        help="phases, comma-separated: clients,clients-big,small,uploads,big,cold,folder,nginx,rss",
    )
    ap.add_argument("--servers", default="packhouse,pypiserver,gunicorn,devpi", help="comma list")
    args = ap.parse_args()
    phases = (
        set(args.only.split(","))
        if args.only
        else {"clients", "clients-big", "small", "big", "cold", "folder", "nginx", "rss"}
    )
    which = set(args.servers.split(","))
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install -y wrk (see bench/README.md)")
    WORK.mkdir(parents=True, exist_ok=True)
    peer_bin = servers.ensure_peer_venv()
    # Packhouse's bytecode, as every peer has its own: pip compiles each module it installs (and the
    # Docker image's), but `make venv` installs `app/` editable, and with PYTHONDONTWRITEBYTECODE=1
    # set (this VM sets it for every process) each start would compile its ~80 modules again.
    compileall.compile_dir(servers.ROOT / "app", quiet=1)
    t0 = time.perf_counter()
    small = corpus.build(
        WORK / "corpus-small", projects=100, versions=args.versions, many_versions=70, big_mb=args.big_mb
    )
    big = corpus.build(
        WORK / f"corpus-{args.projects}",
        projects=args.projects,
        versions=args.versions,
        many_versions=70,
        big_mb=1,
    )
    up_dir = WORK / "uploads"
    huge_bytes = args.huge_upload_mb * 10**6 if "rss" in phases else 0
    uploads = corpus.build_uploads(up_dir, big=6, big_mb=args.big_mb, small=101, huge_bytes=huge_bytes)
    print(f"corpus ready in {time.perf_counter() - t0:.1f}s: {len(small)} + {len(big)} files", flush=True)
    ctx = Ctx(args.duration, {})
    ph_name = f"packhouse-w{args.workers}"
    peers = ["pypiserver", "pypiserver-gunicorn-w2", "devpi"]
    reference = "pypiserver-gunicorn-w2"  # the targets are ratios against it
    devpi_dir = None
    if "devpi" in which and phases & {"clients", "small", "uploads"}:
        devpi_dir = load_devpi(peer_bin, small, WORK / "corpus-small")

    def run(srv: Server, fn) -> None:  # type: ignore[no-untyped-def]
        srv.start()
        try:
            fn(srv)
        finally:
            srv.stop()

    if "clients" in phases:
        print("clients (uv, pip) against every server, interleaved", flush=True)
        cdir, pdir = WORK / "ph-clients", WORK / "pypi-clients"
        probe = "/simple/phx-a/"
        running = []
        try:
            if "packhouse" in which:
                servers.load_packhouse(small, WORK / "corpus-small", cdir)
                running.append(servers.packhouse(cdir, args.workers, probe).start())
            servers.load_pypiserver(small, WORK / "corpus-small", pdir)
            if "pypiserver" in which:
                running.append(servers.pypiserver_default(peer_bin, pdir, probe).start())
            if "gunicorn" in which:
                running.append(servers.pypiserver_gunicorn(peer_bin, pdir, probe).start())
            if devpi_dir is not None:
                running.append(servers.devpi(peer_bin, devpi_copy(devpi_dir, "devpi-clients")).start())
            if ng := servers.nginx(static_index(small, WORK / "corpus-small"), probe, name=STATIC_INDEX):
                running.append(ng.start())
            clients_phase(ctx, running, peer_bin, args.runs, floor=local_floor(WORK / "corpus-small"))
        finally:
            for srv in running:
                srv.stop()
    if "clients-big" in phases:
        # The same client commands against the 10,000-project index (the clients' packages are in
        # it too). pypiserver's default server is left out: at ~1 request/s it would take minutes.
        print(f"clients (uv, pip) against the {args.projects}-project index", flush=True)
        bdir, pdir = WORK / "ph-big", WORK / "pypi-big"
        probe = "/simple/phx-a/"
        running = []
        try:
            if "packhouse" in which:
                servers.load_packhouse(big, WORK / f"corpus-{args.projects}", bdir)
                running.append(servers.packhouse(bdir, args.workers, probe).start())
            if "gunicorn" in which:
                servers.load_pypiserver(big, WORK / f"corpus-{args.projects}", pdir)
                running.append(servers.pypiserver_gunicorn(peer_bin, pdir, probe).start())
            clients_phase(ctx, running, peer_bin, max(1, args.runs // 5), suffix="_10k", search=True)
        finally:
            for srv in running:
                srv.stop()

    def small_and_uploads(srv: Server) -> None:
        if "small" in phases:
            small_phase(ctx, srv, small)
        uploads_phase(ctx, srv, uploads, up_dir)

    if phases & {"small", "uploads"}:
        print("small corpus (210-file project, 50 MB file, uploads)", flush=True)
        sdir, pdir = WORK / "ph-small", WORK / "pypi-small"
        probe = "/simple/phx-a/"
        if "packhouse" in which:
            servers.load_packhouse(small, WORK / "corpus-small", sdir)
            run(
                servers.packhouse(sdir, args.workers, probe),
                lambda s: small_and_uploads(s),
            )
        # Floors for the upload rows: the HTTP exchange alone (a server that stores nothing); for
        # small uploads the fsyncs alone, for the 50 MB upload the disk alone (no server).
        run(servers.upload_floor(), lambda s: uploads_phase(ctx, s, uploads, up_dir))
        ctx.put("upload_small_seq", "fsyncs alone", durable_floor(WORK / "floor-disk"))
        ctx.put("upload_50mb", "disk alone", disk_floor(WORK / "floor-disk", up_dir, uploads["big"]))
        for kind in ("pypiserver", "gunicorn"):
            if kind not in which:
                continue
            servers.load_pypiserver(small, WORK / "corpus-small", pdir)
            srv = (
                servers.pypiserver_default(peer_bin, pdir, probe)
                if kind == "pypiserver"
                else servers.pypiserver_gunicorn(peer_bin, pdir, probe)
            )
            run(srv, lambda s: small_and_uploads(s))
        if devpi_dir is not None:
            run(servers.devpi(peer_bin, devpi_copy(devpi_dir, "devpi-small")), lambda s: small_and_uploads(s))
    if "nginx" in phases and (ng := servers.nginx(WORK / "corpus-small", "/manifest.json")):
        huge = next(x for x in small if x.project == "phx-huge")
        run(ng, lambda s: ctx.put("get_50mb_file", "nginx", wrk(file_url(s, huge), args.duration, conns=4)))
    if "rss" in phases and uploads["huge"]:
        sdir = WORK / "ph-rss"
        servers.load_packhouse(small[:10], WORK / "corpus-small", sdir)
        run(
            servers.packhouse(sdir, 1, "/simple/phx-a/"),
            lambda s: rss_during_upload(ctx, s, up_dir / uploads["huge"][0].filename, uploads["huge"][0]),
        )
    probe_project = f"filler-{args.projects // 2:05d}"
    if "big" in phases:
        print(f"big corpus ({args.projects} projects, {len(big)} files)", flush=True)
        bdir, pdir = WORK / "ph-big", WORK / "pypi-big"
        probe = "/simple/phx-a/"
        if "packhouse" in which:
            servers.load_packhouse(big, WORK / f"corpus-{args.projects}", bdir)
            run(
                servers.packhouse(bdir, args.workers, probe),
                lambda s: big_phase(ctx, s, probe_project, uploads["small"], up_dir),
            )
        for kind in ("pypiserver", "gunicorn"):
            if kind not in which:
                continue
            servers.load_pypiserver(big, WORK / f"corpus-{args.projects}", pdir)
            srv = (
                servers.pypiserver_default(peer_bin, pdir, probe)
                if kind == "pypiserver"
                else servers.pypiserver_gunicorn(peer_bin, pdir, probe)
            )
            run(srv, lambda s: big_phase(ctx, s, probe_project, uploads["small"], up_dir))
    if "cold" in phases:
        bdir = WORK / "ph-big"
        if not (bdir / "packhouse.db").exists():
            servers.load_packhouse(big, WORK / f"corpus-{args.projects}", bdir)
        # Five starts, the median reported: one start is one sample of a noisy machine.
        starts = []
        for _ in range(5):
            srv = servers.packhouse(bdir, 1, f"/simple/{probe_project}/").start()
            rss = sum(rss_kib(p) for p in srv.pids())
            starts.append((srv.ready_after, servers.cpu_seconds(srv.pids()[0]), rss))
            srv.stop()
        wall, cpu, rss = sorted(starts)[len(starts) // 2]
        ctx.put(
            "cold_start",
            srv.name,
            {
                "seconds": round(wall, 3),
                "cpu_s": cpu,
                "rss_mb": round(rss / 1024, 1),
                "runs": [round(start[0], 3) for start in starts],
                "files": _count_files(bdir / "packhouse.db"),  # the big corpus + the uploads made to it
            },
        )
    if "folder" in phases:
        folder_phase(ctx, args.workers, which, peer_bin, big, WORK / f"corpus-{args.projects}", probe_project)
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu": _cpu_model(),
        },
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "args": vars(args),
        "results": ctx.out,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{report['date'].replace(':', '')}.json"
    path.write_text(json.dumps(report, indent=2))
    print()
    print(table(ctx.out, ph_name, peers, reference))
    extra = ctx.out.get("get_50mb_file", {}).get("nginx")
    if extra:
        print(f"\nnginx sendfile, same file: {figure(extra, 'mb_s')} MB/s")
    for row, label in (("upload_50mb", "50 MB upload"), ("upload_small_seq", "small upload")):
        for srv_name, v in ctx.out.get(row, {}).items():
            if srv_name in ("upload-floor", "fsyncs alone", "disk alone"):
                print(f"{label} floor ({srv_name}): {_show(v)}")
    for row, label in (("pip_install_dry_run", "pip"), ("uv_pip_compile", "uv")):
        for srv_name in ("no server (local --find-links)", STATIC_INDEX):
            if v := ctx.out.get(row, {}).get(srv_name):
                print(f"{label} floor ({srv_name}): {_show(v)}")
    for row in ("cold_start", "rss_growth_1gb_upload"):
        for srv_name, v in ctx.out.get(row, {}).items():
            print(f"{row} ({srv_name}): {_show(v)}")
    print(f"\nraw figures: {path.relative_to(servers.ROOT)}")
    return 0


def _count_files(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM files").fetchone()[0])
    finally:
        conn.close()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    raise SystemExit(main())
