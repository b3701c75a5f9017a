"""Requests per second of one replica on each storage/database combination (docs/scale-out.md).

    .venv/bin/python bench/scale_out.py [--seconds 8] [--connections 32]

Starts a throwaway PostgreSQL cluster and a moto S3 server on loopback (the test suite's helpers),
one `packhouse serve` (one worker) per configuration, uploads 50 projects x 3 wheels, then runs
`wrk` (bounded: --seconds per URL) against a project page, the project list, a file and its
.metadata. Needs `wrk` (apt-get install -y wrk). Everything runs on this machine, so the figures
are a floor: the server shares the cores with PostgreSQL, moto and wrk.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.builders import make_wheel  # noqa: E402
from tests.support.forms import upload_form  # noqa: E402
from tests.support.postgres import PostgresCluster  # noqa: E402
from tests.support.s3 import CREDENTIALS, MotoServer, S3Target  # noqa: E402


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(work: Path, name: str, env: dict[str, str], procs: list[subprocess.Popen[bytes]]) -> str:
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PACKHOUSE_", "AWS_"))}
    full_env.update(env, PACKHOUSE_LOG_LEVEL="warning")
    cmd = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--data-dir", str(work / name)]  # fmt: skip
    with (work / f"{name}.log").open("wb") as log:
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT))
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/health").status_code == 200:
                return url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit((work / f"{name}.log").read_text())


def wrk(url: str, seconds: int, connections: int) -> tuple[float, str]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", url], capture_output=True, text=True, check=True
    ).stdout
    lines = out.splitlines()
    rps = float(next(line for line in lines if line.startswith("Requests/sec")).split()[1])
    latency = next(line for line in lines if "Latency" in line).split()[1]
    return rps, latency


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    work = Path(tempfile.mkdtemp(prefix="packhouse-bench-"))
    pg = PostgresCluster().start()
    moto = MotoServer(work / "moto.log").start()
    s3 = S3Target(moto, moto.create_bucket())
    procs: list[subprocess.Popen[bytes]] = []
    configs = {
        "sqlite + folder": {},
        "postgresql + s3, stream": {
            **CREDENTIALS, **s3.env, "PACKHOUSE_DATABASE_URL": pg.url(pg.create_database()),
        },
        "postgresql + s3, redirect": {
            **CREDENTIALS, **s3.env, "PACKHOUSE_S3_DELIVERY": "redirect",
            "PACKHOUSE_DATABASE_URL": pg.url(pg.create_database()),
        },
    }  # fmt: skip
    try:
        for n, (label, env) in enumerate(configs.items()):
            url = serve(work, f"server{n}", env, procs)
            first = None
            for i in range(50):
                for version in ("1.0", "1.1", "2.0"):
                    folder = work / f"w{n}-{i}-{version}"
                    folder.mkdir()
                    wheel = make_wheel(folder, f"proj{i}", version)
                    data, files = upload_form(wheel)
                    assert httpx.post(url + "/legacy/", data=data, files=files).status_code == 200
                    first = first or f"/files/proj{i}/{wheel.name}"
            targets = {
                "/simple/<project>/": "/simple/proj7/",
                "/simple/ (50 projects)": "/simple/",
                "/files/... (small wheel)": first,
                "/files/....metadata": f"{first}.metadata",
            }
            for what, path in targets.items():
                rps, latency = wrk(url + str(path), args.seconds, args.connections)
                print(f"{label:28} {what:26} {rps:8.0f} req/s   mean latency {latency}", flush=True)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()
        moto.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
