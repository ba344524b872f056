from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from storage import LocalObjectStore, MetadataStore, ObjectStore

from ..s3util import (  # noqa: F401 (moto_endpoint, moto_tls: fixtures)
    S3Server,
    free_port,
    make_s3_store,
    moto_endpoint,
    moto_tls,
)


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


@pytest.fixture(params=["local", "s3", "s3_tls"])
def object_store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """Each implementation of ObjectStore; S3 gets a fresh bucket with Object Lock, over
    plain HTTP and over HTTPS (a self-signed certificate the store is told to trust)."""
    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects")
    if request.param == "s3":
        return make_s3_store(request.getfixturevalue("moto_endpoint"))
    server: S3Server = request.getfixturevalue("moto_tls")
    return make_s3_store(server.endpoint, ca_file=server.ca_file)
