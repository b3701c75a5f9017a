"""An S3-compatible server for the tests: moto's server mode, a real HTTP endpoint on loopback.

One ``moto_server`` process per session; each test gets its own bucket. moto does not check
signatures, so presigned URLs are checked by inspecting them (and by fetching them: moto serves
them without verifying).
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.ports import free_port

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "packhouse-test",
    "AWS_SECRET_ACCESS_KEY": "packhouse-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    # Never read the machine's own AWS configuration.
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass
class MotoServer:
    log_path: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    _buckets: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> MotoServer:
        self.port = free_port()
        exe = Path(sys.executable).parent / "moto_server"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(exe), "-H", "127.0.0.1", "-p", str(self.port)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto_server exited:\n{self.log_path.read_text(errors='replace')}")
            try:
                httpx.get(self.endpoint + "/moto-api/", timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("moto_server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )

    def create_bucket(self) -> str:
        name = f"packhouse-test-{next(self._buckets)}"
        self.client().create_bucket(Bucket=name)
        return name


@dataclass(frozen=True)
class S3Target:
    """One test's bucket: the settings and environment that point Packhouse at it."""

    server: MotoServer
    bucket: str
    prefix: str = "pkgs"

    @property
    def storage_url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def env(self) -> dict[str, str]:
        return {
            **CREDENTIALS,
            "PACKHOUSE_STORAGE": self.storage_url,
            "PACKHOUSE_S3_ENDPOINT_URL": self.server.endpoint,
        }

    def keys(self) -> list[str]:
        client = self.server.client()
        out: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            out += [obj["Key"] for obj in page.get("Contents", [])]
        return out

    def get(self, key: str) -> bytes:
        return self.server.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]
