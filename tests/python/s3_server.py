"""An S3-compatible server for the tests: moto in server mode, started as a
process, with authentication on: after the few unauthenticated calls that
create a user, its access key and the bucket, every request must be signed
with that key, so wrong credentials really fail."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import boto3

REGION = "us-east-1"
BUCKET = "atlases"

# Calls made before authentication starts: create_user, put_user_policy,
# create_access_key, create_bucket.
SETUP_CALLS = 4

ALLOW_EVERYTHING = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)


@dataclass
class S3Server:
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    process: subprocess.Popen
    log_path: Path

    def env(self, secret_key: str | None = None) -> dict[str, str]:
        """This process's environment plus the settings a cellflight command
        reads the store with (object_store's AWS_* variables)."""
        return {
            **os.environ,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key or self.secret_key,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
        }

    def url(self, *parts: str) -> str:
        return "/".join([f"s3://{self.bucket}", *parts])

    def client(self):
        """A boto3 S3 client signed with the user's key."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )

    def keys(self, prefix: str) -> list[str]:
        listed = self.client().list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for o in listed.get("Contents", []))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start_s3_server() -> S3Server:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile("w", prefix="moto-", suffix=".log", delete=False)
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_CALLS)}
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    wait_for_port(port, process, Path(log.name))
    anonymous = {"endpoint_url": endpoint, "region_name": REGION,
                 "aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
    iam = boto3.client("iam", **anonymous)
    iam.create_user(UserName="cellflight")
    iam.put_user_policy(UserName="cellflight", PolicyName="all", PolicyDocument=ALLOW_EVERYTHING)
    key = iam.create_access_key(UserName="cellflight")["AccessKey"]
    boto3.client("s3", **anonymous).create_bucket(Bucket=BUCKET)
    return S3Server(endpoint, BUCKET, key["AccessKeyId"], key["SecretAccessKey"], process, Path(log.name))


def wait_for_port(port: int, process: subprocess.Popen, log: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited: {log.read_text()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"moto server did not listen within {seconds} s: {log.read_text()}")
