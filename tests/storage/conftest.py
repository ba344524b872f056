from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from storage import MetadataStore


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
