"""moto's S3 server (``moto[server]``: the real S3 HTTP API) as a child process on 127.0.0.1, for tests.

``with MotoS3() as s3: s3.endpoint_url``; ``s3.client`` is boto3 on it, to make buckets and to look
at what a test left in one (incomplete multipart uploads included) without the code under test.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
from types import TracebackType
from typing import Any

__all__ = ["MotoS3", "MotoUnavailable"]

# moto accepts any credentials; these mark what a test hands the code under test.
ACCESS_KEY, SECRET_KEY = "AKIAWHEELMELDTEST", "wheelmeld-test-secret-never-shown"


class MotoUnavailable(RuntimeError):
    """moto is not installed or its server did not start."""


class MotoS3:
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
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self._process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while not self._accepts():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise MotoUnavailable("moto's S3 server did not start")
            time.sleep(0.02)
        import boto3

        self.client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )
        return self

    def _accepts(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
        except OSError:
            return False
        return True

    def keys(self, bucket: str) -> list[str]:
        """Every object key in ``bucket``, as S3 lists them."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", ()))

    def open_uploads(self, bucket: str) -> list[str]:
        """Keys of multipart uploads started and neither completed nor aborted."""
        return [u["Key"] for u in self.client.list_multipart_uploads(Bucket=bucket).get("Uploads", ())]

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            if self._process.stderr is not None:
                self._process.stderr.close()
        self._process = None

    def __enter__(self) -> MotoS3:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
