"""Who may do what: ARCHITECTURE.md's role table as data (pure, no I/O).

A request type a role may not use answers `forbidden`. Object-level visibility
(an expert acting on a call they are not in) is decided where the object is
looked up and answers `not_found`, exactly like an unknown id.
"""

from __future__ import annotations

from dataclasses import dataclass

KIOSK = "kiosk"
STATION = "station"  # the station device plus a logged-in officer or resident mediator
EXPERT = "expert"
TRAINER = "trainer"
EVIDENCE_OFFICER = "evidence_officer"
ADMIN = "admin"
STATION_OFFICER = "station_officer"  # a person's account role; with a station device it is STATION

ACCOUNT_ROLES = frozenset({ADMIN, EVIDENCE_OFFICER, TRAINER, EXPERT, STATION_OFFICER})
DEVICE_KINDS = frozenset({KIOSK, STATION})
EVERYONE = frozenset({KIOSK, STATION, EXPERT, TRAINER, EVIDENCE_OFFICER, ADMIN, STATION_OFFICER})
CALLERS = frozenset({KIOSK, STATION})

# WebSocket request types.
WS_PERMISSIONS: dict[str, frozenset[str]] = {
    "ping": EVERYONE,
    "presence.set": frozenset({EXPERT}),
    "call.launch": CALLERS,
    "call.choose": CALLERS,
    "call.cancel": CALLERS,
    "call.accept": frozenset({EXPERT}),
    "call.decline": frozenset({EXPERT}),
    "call.invite": frozenset({EXPERT, STATION}),
    "call.leave": frozenset({KIOSK, STATION, EXPERT}),
    "media.join": frozenset({KIOSK, STATION, EXPERT}),
    "media.answer": frozenset({KIOSK, STATION, EXPERT}),
    "media.candidate": frozenset({KIOSK, STATION, EXPERT}),
    "media.state": frozenset({KIOSK, STATION, EXPERT}),
    "device.health": CALLERS,
    "call.rate": CALLERS,  # the call's caller device, once the call has ended
    "call.outcome": frozenset({EXPERT}),  # an expert who took part in the call
    "call.bookmark": frozenset({EXPERT}),  # an expert present in the active call
}

# HTTP actions (named in signaling.http_api next to each route).
HTTP_PERMISSIONS: dict[str, frozenset[str]] = {
    "me": EVERYONE,
    "experts.list": EVERYONE,
    "dispute_types.list": EVERYONE,
    "calls.read": EVERYONE,
    "cases.find": frozenset({STATION, STATION_OFFICER, ADMIN}),  # a case by its number
    "notice.read": EVERYONE,
    "password.change": frozenset({ADMIN, EVIDENCE_OFFICER, TRAINER, EXPERT, STATION_OFFICER}),
    "accounts.manage": frozenset({ADMIN}),
    "devices.manage": frozenset({ADMIN}),
    "dispute_types.manage": frozenset({ADMIN}),
    "audit.read": frozenset({EVIDENCE_OFFICER}),
    "recordings.read": frozenset({EVIDENCE_OFFICER, ADMIN}),
    "evidence.verify": frozenset({EVIDENCE_OFFICER}),
    "evidence.legal_hold": frozenset({EVIDENCE_OFFICER}),
    "evidence.play": frozenset({EVIDENCE_OFFICER}),
    "warnings.read": frozenset({ADMIN}),
}


@dataclass(frozen=True)
class Principal:
    """Who is on the other end of a connection or request.

    `id` is what calls and presence are keyed by: the device id for kiosks and
    stations, the account id for people. A station also names the logged-in
    person (`account_id`), and both are recorded on its calls.
    """

    role: str
    id: str
    display_name: str
    device_id: str | None = None
    account_id: str | None = None

    @property
    def is_device(self) -> bool:
        return self.role in DEVICE_KINDS

    def to_wire(self) -> dict[str, str | None]:
        return {
            "role": self.role,
            "id": self.id,
            "display_name": self.display_name,
            "device_id": self.device_id,
            "account_id": self.account_id,
        }


def may_request(role: str, request_type: str) -> bool:
    return role in WS_PERMISSIONS.get(request_type, frozenset())


def may(role: str, action: str) -> bool:
    return role in HTTP_PERMISSIONS[action]
