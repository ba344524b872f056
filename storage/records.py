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
CALL_EVENT_KINDS = frozenset({"call", "invitation", "participant"})


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
