"""The disk's share of a small upload's commit, now and with deferred file durability (not built).

Measures, with no server, what the commit of a small upload costs the disk on this machine:

- ``now``: what Packhouse does. The file (made ahead) is written and renamed to its key, its and
  its directory's fsyncs run at once while the row is inserted, and the row commits (SQLite,
  WAL, synchronous=FULL) once they are done.
- ``deferred``: the idea left for later (bench/README.md, the verdict). The file is written and
  renamed, its bytes go into the row's own transaction (a pending table), one WAL fsync covers
  both, and the file and its directory are fsynced in the background after the answer (the
  pending rows are deleted in batches once flushed; a start-up step would rewrite any file a
  crash lost from them).

    python bench/deferred_floor.py [DIR]     # DIR on the disk to measure (default: a temp dir)
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor

ROUNDS, PER_ROUND, BATCH = 6, 150, 50
PAYLOAD = os.urandom(3000)  # about the size of the benchmark's small wheels
CLIENT_GAP_S = 0.0005  # the client reads the answer and sends the next upload


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def main(root: str) -> None:
    pool = ThreadPoolExecutor(4)
    dirs = [os.path.join(root, f"{i:02x}") for i in range(16)]
    for d in dirs:
        os.makedirs(d, exist_ok=True)
    db = sqlite3.connect(os.path.join(root, "floor.db"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS files (id INTEGER PRIMARY KEY, key TEXT)")
    db.execute("CREATE TABLE IF NOT EXISTS pending (key TEXT PRIMARY KEY, data BLOB)")
    background: list[Future[None]] = []

    def upload(mode: str) -> float:
        directory = dirs[secrets.randbelow(len(dirs))]
        token = secrets.token_hex(8)
        part, key = f"{directory}/{token}.part", f"{directory}/{token}-x.whl"
        fd = os.open(part, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)  # made ahead, as the server does
        start = time.perf_counter()
        os.write(fd, PAYLOAD)
        os.rename(part, key)
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO files (key) VALUES (?)", (key,))
        if mode == "now":
            syncs = [pool.submit(os.fsync, fd), pool.submit(_fsync_path, directory)]
            for f in syncs:
                f.result()
        else:
            db.execute("INSERT INTO pending (key, data) VALUES (?, ?)", (key, PAYLOAD))
        db.execute("COMMIT")
        elapsed = time.perf_counter() - start
        if mode == "now":
            os.close(fd)
        else:

            def flush(fd: int = fd, directory: str = directory) -> None:
                os.fsync(fd)
                os.close(fd)
                _fsync_path(directory)

            background.append(pool.submit(flush))
        time.sleep(CLIENT_GAP_S)
        return elapsed

    def drain() -> None:
        for f in background:
            f.result()
        background.clear()
        db.execute("DELETE FROM pending")

    times: dict[str, list[float]] = {"now": [], "deferred": []}
    for _ in range(ROUNDS):
        for mode, out in times.items():
            for i in range(PER_ROUND):
                out.append(upload(mode))
                if mode == "deferred" and (i + 1) % BATCH == 0:
                    drain()
            drain()
    for mode, values in times.items():
        values.sort()
        p50, p90 = values[len(values) // 2], values[int(len(values) * 0.9)]
        print(f"{mode:9s} p50 {p50 * 1e3:.3f} ms  p90 {p90 * 1e3:.3f} ms  ({len(values)} commits)")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        work = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".work")
        os.makedirs(work, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            main(tmp)
