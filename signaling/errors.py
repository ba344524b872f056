"""Errors of the signaling package. Each carries the stable wire code clients see.

`signaling.hub` turns them into `error` replies in one place; the HTTP middleware
turns them into statuses in one place.
"""

from __future__ import annotations


class SignalingError(Exception):
    """Base of every error a client request can cause."""

    code = "internal_error"
    http_status = 500

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.code)
        self.message = message or self.code


class BadRequest(SignalingError):
    code = "invalid_message"
    http_status = 400


class AuthFailed(SignalingError):
    code = "auth_failed"
    http_status = 401


class AuthRequired(SignalingError):
    code = "auth_required"
    http_status = 401


class Forbidden(SignalingError):
    code = "forbidden"
    http_status = 403


class NotFound(SignalingError):
    """Unknown, or existing but not visible to the caller: the same answer (no enumeration)."""

    code = "not_found"
    http_status = 404

    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(f"{kind} {ident} not found")
        self.kind = kind
        self.ident = ident


class InvalidState(SignalingError):
    code = "invalid_state"
    http_status = 409


class AlreadyRated(InvalidState):
    """The call has its rating: a client whose first `call.rate` reply was lost knows the
    rating was stored."""

    code = "already_rated"


class ExpertUnavailable(SignalingError):
    code = "expert_unavailable"
    http_status = 409

    def __init__(self, expert_id: str) -> None:
        super().__init__(f"expert {expert_id} is not free")
        self.expert_id = expert_id


class NoExpertAvailable(SignalingError):
    code = "no_expert_available"
    http_status = 409

    def __init__(self, specialty: str) -> None:
        super().__init__(f"no free expert with specialty {specialty!r}")
        self.specialty = specialty


class CallFull(SignalingError):
    code = "call_full"
    http_status = 409

    def __init__(self, call_id: str, limit: int) -> None:
        super().__init__(f"call {call_id} already has {limit} participants or rings")
        self.call_id = call_id
        self.limit = limit


class UnknownDisputeType(SignalingError):
    code = "unknown_dispute_type"
    http_status = 400

    def __init__(self, code: str) -> None:
        super().__init__(f"unknown dispute type {code!r}")
        self.dispute_type = code


class ConsentRequired(SignalingError):
    """The call cannot start without recording consent (station calls; kiosks by setting)."""

    code = "consent_required"
    http_status = 409


class EnrolmentFailed(SignalingError):
    """`POST /api/enrol`: the code is unknown, used, replaced or expired (or its device is
    disabled); one answer for all, so a guesser learns nothing."""

    code = "enrolment_failed"
    http_status = 401


class RateLimited(SignalingError):
    code = "rate_limited"
    http_status = 429


class MediaFailed(SignalingError):
    """The media layer could not do what was asked (e.g. an offer it cannot answer)."""

    code = "media_error"
    http_status = 409


class CodecUnsupported(SignalingError):
    code = "codec_unsupported"
    http_status = 409
