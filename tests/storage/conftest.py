from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from storage import LocalObjectStore, MetadataStore, ObjectStore, S3ObjectStore


class Clock:
    """A settable clock in UTC milliseconds."""

    def __init__(self, now: int = 1_750_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "metadata.db"


@pytest.fixture
def store(db_path: Path, hasher: PasswordHasher) -> Iterator[MetadataStore]:
    s = MetadataStore.open(db_path, password_hasher=hasher)
    yield s
    s.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def clocked_store(db_path: Path, hasher: PasswordHasher, clock: Clock) -> Iterator[MetadataStore]:
    s = MetadataStore.open(db_path, password_hasher=hasher, clock=clock)
    yield s
    s.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_serving(proc: subprocess.Popen[str], timeout_s: float = 20.0) -> None:
    """Wait for moto's "Running on" line; its stderr keeps being drained afterwards (a full
    pipe would block the server)."""
    serving = threading.Event()

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "Running on" in line:
                serving.set()

    threading.Thread(target=drain, daemon=True).start()
    if not serving.wait(timeout_s):
        raise RuntimeError(f"moto_server did not start within {timeout_s} s ({proc.poll()=})")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real S3 protocol server (moto) on 127.0.0.1, for the whole session."""
    exe = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "moto_server"
    cmd = str(exe) if exe.exists() else shutil.which("moto_server")
    assert cmd is not None, "moto_server is installed by ./dev.sh test (the test extras)"
    port = free_port()
    proc = subprocess.Popen(
        [cmd, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_serving(proc)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def make_s3_store(endpoint: str, *, object_lock: bool = True) -> S3ObjectStore:
    return S3ObjectStore(
        endpoint,
        "testing-access",
        "testing-secret",
        f"test-{uuid.uuid4().hex[:16]}",
        region="us-east-1",
        secure=False,
        object_lock=object_lock,
        timeout_s=10,
        retries=0,
    )


@pytest.fixture(params=["local", "s3"])
def object_store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """Each implementation of ObjectStore; S3 gets a fresh bucket with Object Lock."""
    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects")
    return make_s3_store(request.getfixturevalue("moto_endpoint"))
