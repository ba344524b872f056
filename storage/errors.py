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


class EnrolmentRefused(StorageError):
    """An enrolment code could not be redeemed; `reason` says why (never the code itself).

    Reasons: ``unknown`` (never issued, already used or replaced), ``expired``,
    ``device_disabled`` (an expired code, or one of a disabled device, is spent), and
    ``wrong_kind`` (a valid code of a device of another kind than the one asked for; nothing
    is spent, the code still enrols its own device).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"enrolment refused: {reason}")
        self.reason = reason


class AuditChainBroken(StorageError):
    """The audit log's hash chain does not verify from entry `seq` on."""

    def __init__(self, seq: int) -> None:
        super().__init__(f"audit chain broken at seq {seq}")
        self.seq = seq


class ObjectStoreError(StorageError):
    """An object store operation failed; `code` is the S3 error code or a local one."""

    def __init__(self, message: str, *, code: str | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.key = key


class ObjectNotFound(ObjectStoreError):
    """No object with this key."""

    def __init__(self, key: str) -> None:
        super().__init__(f"object not found: {key}", code="NoSuchKey", key=key)


class ObjectLocked(ObjectStoreError):
    """The object is under retention or legal hold, so it cannot be deleted or replaced."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"object locked: {key}: {reason}", code="ObjectLocked", key=key)
        self.reason = reason
