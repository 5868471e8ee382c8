"""S3 for the platform's command tests: moto's server on 127.0.0.1, the client the tests set it
up with, and the environment that points a command's botocore at it (AWS_ENDPOINT_URL_S3, the
service-specific endpoint variable botocore honours)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
REGION = "us-east-1"


@dataclass
class S3:
    endpoint: str
    client: Any

    def environ(self, **extra: str) -> dict[str, str]:
        """What a platform command needs to reach this S3: the endpoint, keys and Region."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_REGION": REGION,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            **KEYS,
            **extra,
        }

    def bucket(self, name: str, versioned: bool = False) -> str:
        self.client.create_bucket(Bucket=name)
        if versioned:
            self.client.put_bucket_versioning(
                Bucket=name, VersioningConfiguration={"Status": "Enabled"}
            )
        return name


def client(endpoint: str, **keys: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        **{"aws_access_key_id": "testing", "aws_secret_access_key": "testing", **keys},
    )


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    endpoint = f"http://127.0.0.1:{server._server.server_port}"
    try:
        yield S3(endpoint, client(endpoint))
    finally:
        server.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def enforcing_s3() -> Iterator[tuple[str, int]]:
    """moto's server in a process of its own with IAM enforcement on after the first `setup`
    requests (moto's INITIAL_NO_AUTH_ACTION_COUNT, read once at import, hence the process): the
    endpoint, and how many unauthenticated setup requests it grants (the test makes exactly
    those). moto 5.2.5 evaluates the caller's identity policies, not bucket policies
    (moto/core/authorization.py passes none), so a denial is written as the role's policy."""
    port = free_port()
    setup = 6
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(setup)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "moto did not start"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", setup
    finally:
        server.terminate()
        server.wait(timeout=30)
