"""Errors raised by the storage package."""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every storage error."""


class NotFound(StorageError):
    """No object of this kind with this key (or a referenced object is missing)."""

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"{kind} not found: {key}")
        self.kind = kind
        self.key = key


class Conflict(StorageError):
    """The write clashes with an existing object (e.g. a duplicate username)."""

    def __init__(self, kind: str, key: str, reason: str = "already exists") -> None:
        super().__init__(f"{kind} {key}: {reason}")
        self.kind = kind
        self.key = key
        self.reason = reason


class AuditChainBroken(StorageError):
    """The audit log's hash chain does not verify from entry `seq` on."""

    def __init__(self, seq: int) -> None:
        super().__init__(f"audit chain broken at seq {seq}")
        self.seq = seq
