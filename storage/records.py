"""Records returned by the metadata store: frozen dataclasses that validate themselves.

Times are UTC milliseconds from the server clock; ids are UUIDv7 strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ROLES = frozenset({"admin", "evidence_officer", "trainer", "expert", "station_officer"})
AVAILABILITIES = frozenset({"available", "away"})
DEVICE_KINDS = frozenset({"kiosk", "station"})
CALL_STATES = frozenset({"launching", "ringing", "queued", "active", "ended"})
INVITATION_STATES = frozenset({"ringing", "accepted", "declined", "timed_out", "cancelled"})
PARTICIPANT_STATES = frozenset({"joining", "connected", "reconnecting", "dropped", "left"})
PRINCIPAL_KINDS = frozenset({"device", "account", "guest"})
CALL_EVENT_KINDS = frozenset({"call", "invitation", "participant", "outcome"})
RECORDING_STATUSES = frozenset({"recording", "complete", "interrupted"})
RECORDING_OBJECT_KINDS = frozenset({"segment", "link", "signature", "manifest", "replay"})
# A device's camera or microphone self-test result.
DEVICE_CHECK_RESULTS = frozenset({"ok", "denied", "missing", "error"})
# How a mediation ended, as the expert records it.
OUTCOMES = frozenset({"settled", "partly_settled", "not_settled", "referred"})


def _check(name: str, value: object, allowed: frozenset[str]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; expected one of {sorted(allowed)}")


@dataclass(frozen=True, slots=True)
class Account:
    """A person who logs in."""

    id: str
    username: str
    display_name: str
    role: str
    disabled: bool
    created_at: int

    def __post_init__(self) -> None:
        _check("role", self.role, ROLES)


@dataclass(frozen=True, slots=True)
class ExpertProfile:
    """An expert account with its dispatch data."""

    account_id: str
    username: str
    display_name: str
    specialties: tuple[str, ...]
    availability: str
    on_duty: bool
    last_busy_at: int
    disabled: bool

    def __post_init__(self) -> None:
        _check("availability", self.availability, AVAILABILITIES)


@dataclass(frozen=True, slots=True)
class Device:
    """A kiosk or station PC that authenticates with a provisioned token."""

    id: str
    kind: str
    name: str
    disabled: bool
    token_generation: int
    created_at: int
    last_seen_at: int | None

    def __post_init__(self) -> None:
        _check("device kind", self.kind, DEVICE_KINDS)


@dataclass(frozen=True, slots=True)
class Session:
    """A person's login; only the token's SHA-256 is stored."""

    token_hash: str
    account_id: str
    created_at: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class DisputeType:
    """A kind of dispute a citizen can pick; experts specialise in them."""

    code: str
    name_zh: str
    name_en: str
    active: bool
    sort: int


@dataclass(frozen=True, slots=True)
class Case:
    """A mediation case with its per-district number, e.g. ``HD-2025-00001``."""

    id: str
    case_number: str
    district: str
    created_at: int


@dataclass(frozen=True, slots=True)
class Party:
    """A party to a case (minimal personal data: a label)."""

    id: str
    case_id: str
    label: str
    created_at: int


@dataclass(frozen=True, slots=True)
class CallRecord:
    """A call as stored; the live state machine lives in signaling."""

    id: str
    case_id: str | None
    state: str
    end_reason: str | None
    dispute_type: str
    caller_kind: str
    caller_device_id: str
    caller_account_id: str | None
    named_expert_id: str | None
    training_consent: bool
    launched_at: int
    answered_at: int | None = None
    ended_at: int | None = None

    def __post_init__(self) -> None:
        _check("call state", self.state, CALL_STATES)
        _check("caller kind", self.caller_kind, DEVICE_KINDS)


@dataclass(frozen=True, slots=True)
class InvitationRecord:
    """One ring attempt of one expert; inviter_id is None when dispatch rang them."""

    id: str
    call_id: str
    expert_id: str
    inviter_id: str | None
    state: str
    created_at: int
    ended_at: int | None = None

    def __post_init__(self) -> None:
        _check("invitation state", self.state, INVITATION_STATES)


@dataclass(frozen=True, slots=True)
class ParticipantRecord:
    """A principal (device, account or guest code) taking part in a call."""

    id: str
    call_id: str
    principal_kind: str
    principal_id: str
    role: str
    state: str
    joined_at: int
    left_at: int | None = None

    def __post_init__(self) -> None:
        _check("principal kind", self.principal_kind, PRINCIPAL_KINDS)
        _check("participant state", self.state, PARTICIPANT_STATES)


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One state change in a call's history; seq counts from 1 per call."""

    seq: int
    call_id: str
    at: int
    kind: str
    subject_id: str | None
    old: str | None
    new: str | None
    detail: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check("call event kind", self.kind, CALL_EVENT_KINDS)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One append-only, hash-chained audit log entry."""

    seq: int
    at: int
    actor: str
    action: str
    target: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class NoticeText:
    """A version of the recording notice shown before consent, in one language."""

    version: str
    language: str
    body: str
    created_at: int


@dataclass(frozen=True, slots=True)
class Consent:
    """Recording consent captured at a kiosk or station for one call.

    Purposes are separate: `evidence` (the call may be recorded and kept as evidence) and
    `training` (the recording may later be used to train mediators).
    """

    id: str
    call_id: str
    evidence: bool
    training: bool
    notice_version: str
    language: str
    device_id: str
    account_id: str | None
    parties: int
    captured_at: int

    def __post_init__(self) -> None:
        if self.parties < 1:
            raise ValueError(f"parties must be at least 1, got {self.parties}")
        if self.training and not self.evidence:
            raise ValueError("training consent needs recording (evidence) consent")


@dataclass(frozen=True, slots=True)
class Recording:
    """One call's recording as indexed: where its objects are and its chain head."""

    call_id: str
    prefix: str
    status: str
    started_at: int
    ended_at: int | None = None
    chain_count: int = 0
    chain_head: str = ""
    manifest_key: str | None = None
    legal_hold: bool = False

    def __post_init__(self) -> None:
        _check("recording status", self.status, RECORDING_STATUSES)


@dataclass(frozen=True, slots=True)
class RecordingObject:
    """One stored object of a recording (segment, chain link, signature, manifest, replay)."""

    key: str
    call_id: str
    participant_id: str | None
    kind: str
    size: int
    sha256: str
    retain_until: int | None = None
    uploaded_at: int | None = None

    def __post_init__(self) -> None:
        _check("recording object kind", self.kind, RECORDING_OBJECT_KINDS)


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    """A kiosk's or station's last camera and microphone self-test, with its app build."""

    device_id: str
    camera: str
    microphone: str
    app_build: str
    at: int

    def __post_init__(self) -> None:
        _check("camera result", self.camera, DEVICE_CHECK_RESULTS)
        _check("microphone result", self.microphone, DEVICE_CHECK_RESULTS)


@dataclass(frozen=True, slots=True)
class Rating:
    """The caller's rating of an ended call (one per call): 1 to 5 stars, optional comment."""

    call_id: str
    stars: int
    comment: str | None
    device_id: str
    account_id: str | None
    at: int

    def __post_init__(self) -> None:
        if isinstance(self.stars, bool) or not 1 <= self.stars <= 5:
            raise ValueError(f"stars must be from 1 to 5, got {self.stars!r}")


@dataclass(frozen=True, slots=True)
class Outcome:
    """The outcome an expert recorded for a call (and its case); the latest one wins."""

    call_id: str
    case_id: str | None
    outcome: str
    summary: str
    expert_id: str
    at: int

    def __post_init__(self) -> None:
        _check("outcome", self.outcome, OUTCOMES)


@dataclass(frozen=True, slots=True)
class Bookmark:
    """A time-stamped note an expert set during an active call (for training).

    `offset_ms` is the time since the call was answered.
    """

    id: str
    call_id: str
    expert_id: str
    at: int
    offset_ms: int
    note: str

    def __post_init__(self) -> None:
        if self.offset_ms < 0:
            raise ValueError(f"offset_ms must not be negative, got {self.offset_ms}")
