"""moto's S3 server (``moto[server]``: the real S3 HTTP API) as a child process on 127.0.0.1, for tests.

``with MotoS3() as s3: s3.endpoint_url``; ``s3.client`` is boto3 on it, to make buckets and to look
at what a test left in one (incomplete multipart uploads included) without the code under test.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from typing import Any

from tests.support.child_server import ChildServer, ChildServerError, free_port, start_child

__all__ = ["MotoS3", "MotoUnavailable"]

# moto accepts any credentials; these mark what a test hands the code under test.
ACCESS_KEY, SECRET_KEY = "AKIAWHEELMELDTEST", "wheelmeld-test-secret-never-shown"


class MotoUnavailable(RuntimeError):
    """moto is not installed or its server did not start."""


class MotoS3(ChildServer):
    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.client: Any = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoS3:
        if importlib.util.find_spec("moto") is None or importlib.util.find_spec("boto3") is None:
            raise MotoUnavailable("moto[server] is not installed (pip install -e '.[test]')")
        self.port = free_port()
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        try:
            self._process = start_child(argv, self.port, subprocess.DEVNULL)
        except ChildServerError as exc:
            raise MotoUnavailable(f"moto's S3 server did not start: {exc}") from None
        import boto3

        self.client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )
        return self

    def keys(self, bucket: str) -> list[str]:
        """Every object key in ``bucket``, as S3 lists them."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", ()))

    def open_uploads(self, bucket: str) -> list[str]:
        """Keys of multipart uploads started and neither completed nor aborted."""
        return [u["Key"] for u in self.client.list_multipart_uploads(Bucket=bucket).get("Uploads", ())]
