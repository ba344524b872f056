"""The signaling wire schema: one envelope, every request's payload, error codes.

This module imports nothing of ours, so clients (the Python client, benchmarks,
later the browser pages' tests) and the server share it. `docs/protocol.md`
describes the same schema for people.

Envelope (JSON text frames):
- client request: ``{"type": "call.launch", "id": 7, "payload": {...}}``; `id` is
  chosen by the client (an integer or a short string) and echoed in the reply;
- reply: ``{"type": "result", "id": 7, "payload": {...}}`` or
  ``{"type": "error", "id": 7, "payload": {"code": "not_found", "message": "..."}}``;
- server event: ``{"type": "call.updated", "seq": 12, "payload": {...}}``; `seq`
  counts the events of one signaling session and continues across reconnects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

PROTOCOL_VERSION = 1
# The server accepts the current version and the one before it (none before 1).
SUPPORTED_PROTOCOL_VERSIONS = frozenset(v for v in (PROTOCOL_VERSION - 1, PROTOCOL_VERSION) if v)

# Stable error codes, in one place. docs/protocol.md lists each with its meaning.
ERROR_CODES = frozenset(
    {
        "invalid_json",
        "invalid_message",
        "unknown_type",
        "message_too_large",
        "auth_required",
        "auth_failed",
        "already_authenticated",
        "protocol_version_unsupported",
        "station_login_required",
        "forbidden",
        "not_found",
        "invalid_state",
        "already_rated",
        "rate_limited",
        "expert_unavailable",
        "no_expert_available",
        "call_full",
        "conflict",
        "codec_unsupported",
        "media_error",
        "unknown_dispute_type",
        "consent_required",
        "enrolment_failed",
        "internal_error",
    }
)

# WebSocket close codes the server uses (4000-4999 are for applications).
CLOSE_GOING_AWAY = 1001  # server shutting down: reconnect later
CLOSE_MESSAGE_TOO_BIG = 1009  # a frame over the transport cap (16x max_message_bytes)
CLOSE_SERVICE_RESTART = 1012  # server restarting: reconnect after `reconnect_after_ms`
CLOSE_AUTH_FAILED = 4001
CLOSE_AUTH_TIMEOUT = 4002
CLOSE_PROTOCOL_VERSION = 4003
CLOSE_REVOKED = 4004  # the account or device was disabled, or its token rotated
CLOSE_RATE_LIMITED = 4008
CLOSE_REPLACED = 4009  # a newer connection of the same device took over
CLOSE_SLOW_CONSUMER = 4011  # the client did not read its events fast enough

MAX_ID_LENGTH = 64
MAX_SDP = 60000


class ProtocolError(Exception):
    """A frame that cannot be accepted; `code` is one of ERROR_CODES."""

    def __init__(self, code: str, message: str, request_id: int | str | None = None) -> None:
        assert code in ERROR_CODES, code
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


@dataclass(frozen=True)
class Field:
    kind: type | tuple[type, ...]
    required: bool = True
    choices: frozenset[str] | None = None
    max_length: int = 256
    minimum: int | None = None  # for integers
    maximum: int | None = None


def _str(required: bool = True, choices: set[str] | None = None, max_length: int = 256) -> Field:
    return Field(str, required, frozenset(choices) if choices else None, max_length)


def _bool(required: bool = False) -> Field:
    return Field(bool, required)


DEVICE_CHECK_RESULTS = frozenset({"ok", "denied", "missing", "error"})
OUTCOMES = frozenset({"settled", "partly_settled", "not_settled", "referred"})
MAX_COMMENT = 500
MAX_NOTE = 500
MAX_SUMMARY = 4000


# Every request type a client may send, with its payload fields.
REQUESTS: dict[str, dict[str, Field]] = {
    "auth": {
        "protocol_version": Field(int),
        "client_build": _str(max_length=64),
        "device_token": _str(required=False),
        "session_token": _str(required=False),
        "rejoin_token": _str(required=False),
    },
    "ping": {},
    "presence.set": {"availability": _str(choices={"available", "away"})},
    "call.launch": {
        "dispute_type": _str(max_length=64),
        "expert_id": _str(required=False, max_length=64),
        "case_id": _str(required=False, max_length=64),
        # Recording consent captured on the caller's screen: evidence (recording) and
        # training are separate purposes; the notice shown is named by version and language.
        "consent_evidence": _bool(),
        "training_consent": _bool(),
        "notice_version": _str(required=False, max_length=32),
        "notice_language": _str(required=False, choices={"zh-CN", "en"}),
        "parties": Field(int, required=False),
    },
    "call.choose": {"call_id": _str(max_length=64), "choice": _str(choices={"wait", "anyone"})},
    "call.cancel": {"call_id": _str(max_length=64)},
    "call.accept": {"invitation_id": _str(max_length=64)},
    "call.decline": {"invitation_id": _str(max_length=64)},
    "call.invite": {
        "call_id": _str(max_length=64),
        "expert_id": _str(required=False, max_length=64),
        "specialty": _str(required=False, max_length=64),
    },
    "call.leave": {"call_id": _str(max_length=64)},
    "media.join": {"call_id": _str(max_length=64), "sdp": _str(max_length=MAX_SDP)},
    "media.answer": {
        "call_id": _str(max_length=64),
        "sdp": _str(max_length=MAX_SDP),
        "offer_id": Field(int),
    },
    "media.candidate": {
        "call_id": _str(max_length=64),
        "candidate": Field(str, True, None, 1024),
        "sdp_mid": _str(required=False, max_length=32),
        "sdp_mline_index": Field(int, required=False),
    },
    "media.state": {"call_id": _str(max_length=64), "audio": _bool(True), "video": _bool(True)},
    # A kiosk's or station's camera and microphone self-test, with its app build.
    "device.health": {
        "camera": _str(choices=set(DEVICE_CHECK_RESULTS)),
        "microphone": _str(choices=set(DEVICE_CHECK_RESULTS)),
        "app_build": _str(max_length=64),
    },
    "call.rate": {
        "call_id": _str(max_length=64),
        "stars": Field(int, minimum=1, maximum=5),
        "comment": _str(required=False, max_length=MAX_COMMENT),
    },
    "call.outcome": {
        "call_id": _str(max_length=64),
        "outcome": _str(choices=set(OUTCOMES)),
        "summary": _str(max_length=MAX_SUMMARY),
    },
    "call.bookmark": {
        "call_id": _str(max_length=64),
        "note": _str(required=False, max_length=MAX_NOTE),
    },
}

# Events the server sends (documented in docs/protocol.md).
EVENTS = frozenset(
    {
        "snapshot",
        "presence.changed",
        "call.updated",
        "call.ring",
        "call.ring_ended",
        "call.queue_position",
        "call.choice_offered",
        "server.shutdown",
        "media.offer",
        "media.state",
    }
)


@dataclass(frozen=True)
class Request:
    type: str
    id: int | str | None
    payload: dict[str, Any]


def _request_id(frame: dict[str, Any]) -> int | str | None:
    rid = frame.get("id")
    if isinstance(rid, bool) or not isinstance(rid, int | str | None):
        return None
    if isinstance(rid, str) and len(rid) > MAX_ID_LENGTH:
        return None
    return rid


def decode_request(text: str | bytes, max_bytes: int) -> Request:
    """Parse and validate one client frame, or raise ProtocolError with the right code."""
    size = len(text.encode() if isinstance(text, str) else text)
    if size > max_bytes:
        raise ProtocolError("message_too_large", f"frame of {size} bytes exceeds {max_bytes}")
    try:
        frame = json.loads(text)
    except (ValueError, UnicodeDecodeError) as err:
        raise ProtocolError("invalid_json", f"not JSON: {err}") from err
    if not isinstance(frame, dict):
        raise ProtocolError("invalid_message", "a message must be a JSON object")
    rid = _request_id(frame)
    if "id" in frame and frame["id"] is not None and rid is None:
        raise ProtocolError("invalid_message", "id must be an integer or a short string")
    mtype = frame.get("type")
    if not isinstance(mtype, str):
        raise ProtocolError("invalid_message", "type must be a string", rid)
    schema = REQUESTS.get(mtype)
    if schema is None:
        raise ProtocolError("unknown_type", f"unknown message type {mtype[:64]!r}", rid)
    payload = frame.get("payload", {})
    if not isinstance(payload, dict):
        raise ProtocolError("invalid_message", "payload must be a JSON object", rid)
    for name in payload:
        if name not in schema:
            raise ProtocolError("invalid_message", f"{mtype}: unknown field {name[:64]!r}", rid)
    payload = {name: value for name, value in payload.items() if value is not None}
    for name, spec in schema.items():
        value = payload.get(name)
        if value is None:
            if spec.required:
                raise ProtocolError("invalid_message", f"{mtype}: {name} is required", rid)
            continue
        if isinstance(value, bool) and spec.kind is not bool:
            raise ProtocolError("invalid_message", f"{mtype}: {name} has the wrong type", rid)
        if not isinstance(value, spec.kind):
            raise ProtocolError("invalid_message", f"{mtype}: {name} has the wrong type", rid)
        if isinstance(value, int) and not isinstance(value, bool):
            if (spec.minimum is not None and value < spec.minimum) or (
                spec.maximum is not None and value > spec.maximum
            ):
                bounds = f"from {spec.minimum} to {spec.maximum}"
                raise ProtocolError("invalid_message", f"{mtype}: {name} must be {bounds}", rid)
        if isinstance(value, str):
            if len(value) > spec.max_length:
                raise ProtocolError("invalid_message", f"{mtype}: {name} is too long", rid)
            if spec.choices is not None and value not in spec.choices:
                allowed = ", ".join(sorted(spec.choices))
                raise ProtocolError("invalid_message", f"{mtype}: {name} must be {allowed}", rid)
    if mtype == "call.invite" and ("expert_id" in payload) == ("specialty" in payload):
        raise ProtocolError("invalid_message", "call.invite: give expert_id or specialty", rid)
    return Request(mtype, rid, payload)


def _dump(frame: dict[str, Any]) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


def encode_result(request_id: int | str | None, payload: dict[str, Any] | None = None) -> str:
    return _dump({"type": "result", "id": request_id, "payload": payload or {}})


def encode_error(request_id: int | str | None, code: str, message: str) -> str:
    assert code in ERROR_CODES, code
    return _dump({"type": "error", "id": request_id, "payload": {"code": code, "message": message}})


def encode_event(event_type: str, seq: int, payload: dict[str, Any]) -> str:
    assert event_type in EVENTS, event_type
    return _dump({"type": event_type, "seq": seq, "payload": payload})


def encode_request(
    request_type: str, request_id: int | str | None, payload: dict[str, Any] | None = None
) -> str:
    """For clients: build a request frame (not validated; the server validates)."""
    return _dump({"type": request_type, "id": request_id, "payload": payload or {}})
