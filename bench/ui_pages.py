"""Server-side time and weight of the browsing UI's pages (issue 6's budget: a 200-file project page
renders in under 50 ms at the median and ships under 100 KB of HTML+CSS+JS).

    .venv/bin/python bench/ui_pages.py [--projects 10000] [--rounds 50]

The app runs in-process (create_app + lifespan, real SQLite), so the times include routing, auth,
queries and templates but no network. Rows are written straight into SQLite to make a large index
quickly; the page under test is the same as after real uploads.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from starlette.testclient import TestClient

from app.main import create_app
from app.settings import Settings

STAMP = "2026-01-01 00:00:00.000000"


def seed(db: Path, projects: int) -> None:
    conn = sqlite3.connect(db)
    insert_file = (
        "INSERT INTO files (project_id, version, filename, filetype, pyversion, size, sha256, md5,"
        " blake2_256, storage_key, summary, upload_time, yanked)"
        " VALUES (?, ?, ?, 'bdist_wheel', 'py3', ?, ?, ?, ?, 'k', ?, ?, 0)"
    )

    def project(name: str) -> int:
        sql = "INSERT INTO projects (name, normalized_name, created, serial) VALUES (?, ?, ?, 0)"
        return int(conn.execute(sql, (name, name, STAMP)).lastrowid or 0)

    tags = "cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64"
    for name, versions in (("wide", 1), ("long", 100)):
        pid = project(name)
        for i in range(200):
            version = f"1.{i % versions}"
            sha = f"{i:064x}"
            fn = f"{name}-{version}-{i}-{tags}.whl"
            conn.execute(insert_file, (pid, version, fn, 10_000_000 + i, sha, sha[:32], sha, "Wide", STAMP))
    for p in range(projects):
        pid = project(f"project-{p:05d}")
        for v in range(3):
            sha = f"{p:032x}{v:032x}"
            fn = f"project_{p:05d}-1.{v}-py3-none-any.whl"
            conn.execute(insert_file, (pid, f"1.{v}", fn, 5000, sha, sha[:32], sha, f"Project number {p}", STAMP))
    conn.commit()
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        with TestClient(create_app(Settings(data_dir=data)), base_url="http://127.0.0.1") as client:
            client.get("/health")
            seed(data / "packhouse.db", args.projects)
            assets = sum(len(client.get(f"/ui/static/{a}").content) for a in ("ui.css", "ui.js"))
            print(f"{'page':44} {'median ms':>9} {'p90 ms':>7} {'HTML+CSS+JS':>12}")
            for url in (
                "/ui/project/wide/",
                "/ui/project/long/",
                "/ui/project/long/1.7/",
                "/",
                "/ui/projects/",
                "/ui/projects/?q=number 99",
                "/ui/projects/?sort=updated&page=100",
                "/api/search?q=project-0999",
            ):
                times = []
                for _ in range(args.rounds):
                    start = time.perf_counter()
                    response = client.get(url)
                    times.append((time.perf_counter() - start) * 1000)
                    assert response.status_code == 200, (url, response.status_code)
                p90 = statistics.quantiles(times, n=10)[-1]
                weight = len(response.content) + (assets if url.startswith("/ui/project") else 0)
                print(f"{url:44} {statistics.median(times):9.1f} {p90:7.1f} {weight / 1000:10.1f} kB")


if __name__ == "__main__":
    main()
