"""Storage: the metadata store (SQLite by default) and, later, object stores.

Imports nothing from other packages of this project.
"""

from __future__ import annotations

from .audit_chain import GENESIS_HASH, link_hash, verify_chain
from .errors import (
    AuditChainBroken,
    Conflict,
    NotFound,
    ObjectLocked,
    ObjectNotFound,
    ObjectStoreError,
    StorageError,
)
from .ids import new_id, now_ms
from .metadata import MetadataStore
from .objects import LocalObjectStore, ObjectInfo, ObjectStore, S3ObjectStore
from .records import (
    AVAILABILITIES,
    CALL_EVENT_KINDS,
    CALL_STATES,
    DEVICE_KINDS,
    INVITATION_STATES,
    PARTICIPANT_STATES,
    PRINCIPAL_KINDS,
    ROLES,
    Account,
    AuditEntry,
    CallEvent,
    CallRecord,
    Case,
    Consent,
    Device,
    DisputeType,
    ExpertProfile,
    InvitationRecord,
    NoticeText,
    ParticipantRecord,
    Party,
    Recording,
    RecordingObject,
    Session,
)

__all__ = [
    "AVAILABILITIES",
    "CALL_EVENT_KINDS",
    "CALL_STATES",
    "DEVICE_KINDS",
    "GENESIS_HASH",
    "INVITATION_STATES",
    "PARTICIPANT_STATES",
    "PRINCIPAL_KINDS",
    "ROLES",
    "Account",
    "AuditChainBroken",
    "AuditEntry",
    "CallEvent",
    "CallRecord",
    "Consent",
    "Case",
    "Conflict",
    "Device",
    "DisputeType",
    "ExpertProfile",
    "InvitationRecord",
    "NoticeText",
    "LocalObjectStore",
    "MetadataStore",
    "NotFound",
    "ObjectInfo",
    "ObjectLocked",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStoreError",
    "ParticipantRecord",
    "Party",
    "Recording",
    "RecordingObject",
    "S3ObjectStore",
    "Session",
    "StorageError",
    "link_hash",
    "new_id",
    "now_ms",
    "verify_chain",
]
