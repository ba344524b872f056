"""REST API: login, experts directory, calls, admin, audit, health and metrics.

Every handler names its action from `signaling.permissions.HTTP_PERMISSIONS`;
errors become JSON ``{"error": {"code", "message"}}`` in one middleware.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from signaling import evidence_api
from signaling.dispatch import WAITING_STATES, CallState
from signaling.enrolment import (
    FailureThrottle,
    InvalidDeviceKind,
    WrongDeviceKind,
    enrolment_link,
    normalise_code,
    qr_svg,
)
from signaling.errors import (
    AuthFailed,
    BadRequest,
    EnrolmentFailed,
    Forbidden,
    InvalidState,
    NotFound,
    RateLimited,
    SignalingError,
)
from signaling.http_auth import (
    SESSION_COOKIE,
    bearer_or_cookie,
    client_ip,
    http_principal,
    origin_allowed,
    own_origin,
    secure_cookies,
)
from signaling.keys import (
    ENROLMENT_THROTTLE,
    HUB,
    LOGIN_THROTTLE_BY_ACCOUNT,
    LOGIN_THROTTLE_BY_IP,
    METRICS,
    SETTINGS,
    STORE,
)
from signaling.metrics import CONTENT_TYPE
from signaling.permissions import (
    ACCOUNT_ROLES,
    ADMIN,
    DEVICE_KINDS,
    EVIDENCE_OFFICER,
    EXPERT,
    KIOSK,
    STATION,
    STATION_OFFICER,
    TRAINER,
    Principal,
    may,
)
from signaling.views import bookmark_view, health_view, outcome_view, rating_view
from storage import errors as storage_errors
from storage.records import CallRecord, Case

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def error_response(err: SignalingError) -> web.Response:
    return web.json_response(
        {"error": {"code": err.code, "message": err.message}}, status=err.http_status
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except SignalingError as err:
        return error_response(err)
    except storage_errors.NotFound as err:
        return error_response(NotFound(err.kind, str(err.key)))
    except ValueError as err:
        # The store refuses values it cannot hold (an empty name, an unknown specialty).
        return error_response(BadRequest(str(err)))
    except storage_errors.Conflict as err:
        return web.json_response({"error": {"code": "conflict", "message": str(err)}}, status=409)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("HTTP %s %s failed", request.method, request.path)
        return web.json_response(
            {"error": {"code": "internal_error", "message": "internal error"}}, status=500
        )


@web.middleware
async def origin_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method in STATE_CHANGING and not origin_allowed(request, request.app[SETTINGS]):
        return error_response(Forbidden("origin not allowed"))
    return await handler(request)


def _require(request: web.Request, action: str) -> Principal:
    principal = http_principal(request, request.app[STORE])
    if not may(principal.role, action):
        raise Forbidden(f"{principal.role} may not {action}")
    return principal


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError) as err:
        raise BadRequest("the body must be JSON") from err
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _field(body: dict[str, Any], name: str, kind: type = str, *, required: bool = True) -> Any:
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(f"{name} is required")
        return None
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise BadRequest(f"{name} must be {kind.__name__}")
    return value


def _record(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


# --- people: login, logout, password ---------------------------------------------------


def _retry_later(err: RateLimited, wait_s: float) -> web.Response:
    """A 429 with the whole seconds to wait in `Retry-After`."""
    response = error_response(err)
    response.headers["Retry-After"] = str(max(1, math.ceil(wait_s)))
    return response


LOGIN_ACCOUNT_WINDOW_S = 900.0  # the per-username throttle's sliding window


async def login(request: web.Request) -> web.Response:
    """A person logs in; failures are audited and throttled per client IP and per username
    (a refused attempt never reaches the password check)."""
    store, settings = request.app[STORE], request.app[SETTINGS]
    by_ip = request.app[LOGIN_THROTTLE_BY_IP]
    by_account = request.app[LOGIN_THROTTLE_BY_ACCOUNT]
    body = await _json_body(request)
    username = _field(body, "username")
    password = _field(body, "password")
    ip = client_ip(request, settings)
    # The per-username throttle counts only names of accounts (by id): guesses at made-up
    # names cannot fill its table and push a real account's failures out of it.
    known = store.find_account_by_username(username.strip())
    now = time.monotonic()
    wait_s = by_ip.retry_after_s(ip, now)
    if known is not None:
        wait_s = max(wait_s, by_account.retry_after_s(known.id, now))
    if wait_s > 0:
        request.app[METRICS].login_failures.labels(outcome="throttled").inc()
        log.info("login refused: too many failures from %s or for one account", ip)
        return _retry_later(RateLimited("too many failed logins; try again later"), wait_s)
    account = store.check_password(username, password)
    if account is None:
        by_ip.record_failure(ip, now)
        if known is not None:
            by_account.record_failure(known.id, now)
        request.app[METRICS].login_failures.labels(outcome="wrong_password").inc()
        # The typed name is kept only when it names an account: a password typed into
        # the username field never reaches the audit log.
        store.append_audit(
            "anonymous",
            "account.login_failed",
            known.id if known is not None else None,
            {"client_ip": ip, "known_account": known is not None},
        )
        log.info("login refused for a username from %s", ip)
        raise AuthFailed("wrong username or password, or the account is disabled")
    token = store.create_session(account.id, settings.session_ttl_s)
    store.append_audit(account.id, "account.login", account.id)
    response = web.json_response(
        {
            "token": token,
            "account": {
                "id": account.id,
                "username": account.username,
                "display_name": account.display_name,
                "role": account.role,
            },
        }
    )
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(settings.session_ttl_s),
        httponly=True,
        samesite="Strict",
        secure=secure_cookies(request, settings),
        path="/",
    )
    return response


async def logout(request: web.Request) -> web.Response:
    principal = http_principal(request, request.app[STORE])
    token = bearer_or_cookie(request)
    if token and not principal.is_device:
        request.app[STORE].delete_session(token)
        request.app[HUB].end_login(token)
        request.app[STORE].append_audit(principal.id, "account.logout", principal.id)
    response = web.json_response({})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def change_password(request: web.Request) -> web.Response:
    principal = _require(request, "password.change")
    store = request.app[STORE]
    body = await _json_body(request)
    old = _field(body, "old_password")
    new = _field(body, "new_password")
    if len(new) < 8:
        raise BadRequest("new_password must have at least 8 characters")
    account = store.get_account(principal.id)
    # Guesses at the old password (from a session left open) count with failed logins.
    by_account = request.app[LOGIN_THROTTLE_BY_ACCOUNT]
    now = time.monotonic()
    wait_s = by_account.retry_after_s(account.id, now)
    if wait_s > 0:
        request.app[METRICS].login_failures.labels(outcome="throttled").inc()
        return _retry_later(RateLimited("too many wrong passwords; try again later"), wait_s)
    if store.check_password(account.username, old) is None:
        by_account.record_failure(account.id, now)
        request.app[METRICS].login_failures.labels(outcome="wrong_password").inc()
        raise AuthFailed("the old password is wrong")
    token = bearer_or_cookie(request)
    with store.transaction():
        store.set_password(account.id, new)
        # Whoever else holds a login of this account (a stolen session, a forgotten
        # computer) is logged out; the session that changed it stays.
        store.delete_other_sessions(account.id, token)
        store.append_audit(account.id, "account.password_changed", account.id)
    request.app[HUB].end_other_logins(account.id, token)
    return web.json_response({})


async def me(request: web.Request) -> web.Response:
    principal = _require(request, "me")
    return web.json_response({"principal": principal.to_wire()})


# --- directory ------------------------------------------------------------------------


def _live_availability(request: web.Request, account_id: str) -> str:
    """An expert as a caller would see them: offline, away, available (free) or busy."""
    dispatcher = request.app[HUB].dispatcher
    live = dispatcher.experts.get(account_id)
    if live is None or not live.online:
        return "offline"
    if live.availability.value == "away":
        return "away"
    return "available" if dispatcher.is_free(account_id) else "busy"


async def list_experts(request: web.Request) -> web.Response:
    _require(request, "experts.list")
    experts = [
        {
            "id": profile.account_id,
            "display_name": profile.display_name,
            "specialties": list(profile.specialties),
            "availability": _live_availability(request, profile.account_id),
        }
        for profile in request.app[STORE].list_experts()
        if not profile.disabled
    ]
    return web.json_response({"experts": experts})


async def list_dispute_types(request: web.Request) -> web.Response:
    """Active types for everyone; `?all=1` adds the inactive ones, for admins only."""
    principal = _require(request, "dispute_types.list")
    everything = request.query.get("all", "0")
    if everything not in ("0", "1"):
        raise BadRequest("all must be 0 or 1")
    if everything == "1" and not may(principal.role, "dispute_types.manage"):
        raise Forbidden(f"{principal.role} may not list inactive dispute types")
    store = request.app[STORE]
    types = [_record(t) for t in store.list_dispute_types(include_inactive=everything == "1")]
    return web.json_response({"dispute_types": types})


# --- calls ----------------------------------------------------------------------------


def _call_filter(principal: Principal) -> dict[str, Any]:
    """The calls a principal may read (ARCHITECTURE.md's role table)."""
    if principal.role in (ADMIN, EVIDENCE_OFFICER):
        return {}
    if principal.role == TRAINER:
        return {"training_only": True}
    if principal.role == EXPERT:
        return {"participant_principal_id": principal.id}
    if principal.role in (KIOSK, STATION):
        return {"caller_device_id": principal.id}
    if principal.role == STATION_OFFICER:
        return {"caller_account_id": principal.id}
    raise Forbidden(f"{principal.role} may not read calls")


# `GET /api/calls?state=`: "live" (not ended) or one call state.
LIVE_STATES = frozenset(str(s) for s in (*WAITING_STATES, CallState.ACTIVE))
STATE_FILTERS: dict[str, frozenset[str]] = {
    "live": LIVE_STATES,
    **{str(s): frozenset({str(s)}) for s in CallState},
}
# Bookmarks are the experts' notes for training: not shown to callers.
BOOKMARK_READERS = frozenset({EXPERT, TRAINER, EVIDENCE_OFFICER, ADMIN})


def _calls_json(request: web.Request, records: list[CallRecord]) -> list[dict[str, Any]]:
    """Stored calls with their live queue place, case number, rating and outcome."""
    store, hub = request.app[STORE], request.app[HUB]
    call_ids = [r.id for r in records]
    ratings = store.ratings_for(call_ids)
    outcomes = store.outcomes_for(call_ids)
    cases = store.cases_for([r.case_id for r in records if r.case_id is not None])
    views = []
    for record in records:
        view = _record(record)
        live = hub.dispatcher.calls.get(record.id)
        position = live.queue_position if live is not None else None
        view["queue_position"] = position
        view["estimated_wait_s"] = hub.estimated_wait_s(position)
        case = cases.get(record.case_id) if record.case_id is not None else None
        view["case_number"] = case.case_number if case is not None else None
        view["rating"] = rating_view(ratings.get(record.id))
        view["outcome"] = outcome_view(outcomes.get(record.id))
        views.append(view)
    return views


async def list_calls(request: web.Request) -> web.Response:
    principal = _require(request, "calls.read")
    state = request.query.get("state")
    states = None
    if state is not None:
        states = STATE_FILTERS.get(state)
        if states is None:
            raise BadRequest(f"state must be one of {sorted(STATE_FILTERS)}")
    records = request.app[STORE].list_calls(**_call_filter(principal), states=states)
    return web.json_response({"calls": _calls_json(request, records)})


async def get_call(request: web.Request) -> web.Response:
    principal = _require(request, "calls.read")
    store = request.app[STORE]
    call_id = request.match_info["call_id"]
    visible = {r.id for r in store.list_calls(**_call_filter(principal), limit=100000)}
    if call_id not in visible:
        raise NotFound("call", call_id)
    record = store.get_call(call_id)
    view = _calls_json(request, [record])[0]
    media = request.app[HUB].media.calls.get(call_id)
    stored = store.media_stats(call_id)
    view["participants"] = [
        {
            **_record(p),
            "media": (media.stats(p.id) if media is not None and p.id in media.peers else None)
            or stored.get(p.id),
        }
        for p in store.list_participants(call_id)
    ]
    view["invitations"] = [_record(i) for i in store.list_invitations(call_id)]
    view["events"] = [_record(e) for e in store.list_call_events(call_id)]
    view["bookmarks"] = (
        [bookmark_view(b) for b in store.list_bookmarks(call_id)]
        if principal.role in BOOKMARK_READERS
        else []
    )
    return web.json_response({"call": view})


def _case_json(request: web.Request, case: Case, records: list[CallRecord]) -> dict[str, Any]:
    """A case with its latest outcome and the given calls of it (those the caller may read)."""
    return {
        **_record(case),
        "outcome": outcome_view(request.app[STORE].get_case_outcome(case.id)),
        "calls": _calls_json(request, records),
    }


async def get_case(request: web.Request) -> web.Response:
    """A case with its latest outcome and the calls of it the principal may read."""
    principal = _require(request, "calls.read")
    store = request.app[STORE]
    case_id = request.match_info["case_id"]
    records = store.list_calls(**_call_filter(principal), case_id=case_id, limit=1000)
    if not records:
        raise NotFound("case", case_id)
    return web.json_response({"case": _case_json(request, store.get_case(case_id), records)})


class InvalidCaseNumber(BadRequest):
    """`GET /api/cases?number=` without a number, or with one no case can have."""

    code = "invalid_case_number"


# What storage.MetadataStore.create_case makes: `{district}-{year}-{n:05d}`.
CASE_NUMBER = re.compile(r"[0-9A-Z]{1,16}-[0-9]{4}-[0-9]{5,9}")


def _case_number(request: web.Request) -> str:
    """The `number` query parameter, trimmed and upper-cased; else InvalidCaseNumber."""
    typed = request.query.get("number", "").strip().upper()
    if not typed:
        raise InvalidCaseNumber("number is required: GET /api/cases?number=<case number>")
    if CASE_NUMBER.fullmatch(typed) is None:
        raise InvalidCaseNumber("number must be a case number such as 012345-2025-00001")
    return typed


async def find_cases(request: web.Request) -> web.Response:
    """The case with this number, if the principal may read one of its calls (as for
    `GET /api/cases/{case_id}`): a list of one, or empty."""
    principal = _require(request, "cases.find")
    store = request.app[STORE]
    case = store.find_case_by_number(_case_number(request))
    found = []
    if case is not None:
        records = store.list_calls(**_call_filter(principal), case_id=case.id, limit=1000)
        if records:
            found.append(_case_json(request, case, records))
    return web.json_response({"cases": found})


async def get_notice(request: web.Request) -> web.Response:
    """The recording notice to show before consent: the newest version in a language."""
    _require(request, "notice.read")
    language = request.query.get("language", "zh-CN")
    if language not in ("zh-CN", "en"):
        raise BadRequest("language must be zh-CN or en")
    notice = request.app[STORE].get_notice(language)
    return web.json_response(
        {"version": notice.version, "language": notice.language, "body": notice.body}
    )


# --- admin ------------------------------------------------------------------------------


def _account_json(account: Any) -> dict[str, Any]:
    return _record(account)


async def admin_list_accounts(request: web.Request) -> web.Response:
    _require(request, "accounts.manage")
    accounts = [_account_json(a) for a in request.app[STORE].list_accounts()]
    return web.json_response({"accounts": accounts})


async def admin_create_account(request: web.Request) -> web.Response:
    principal = _require(request, "accounts.manage")
    store, hub = request.app[STORE], request.app[HUB]
    body = await _json_body(request)
    role = _field(body, "role")
    if role not in ACCOUNT_ROLES:
        raise BadRequest(f"role must be one of {sorted(ACCOUNT_ROLES)}")
    password = _field(body, "password")
    if len(password) < 8:
        raise BadRequest("password must have at least 8 characters")
    specialties = _field(body, "specialties", list, required=False) or []
    if not all(isinstance(s, str) for s in specialties):
        raise BadRequest("specialties must be a list of dispute type codes")
    account = store.create_account(
        _field(body, "username"), _field(body, "display_name"), role, password
    )
    if role == EXPERT:
        on_duty = bool(_field(body, "on_duty", bool, required=False))
        store.set_expert_profile(account.id, specialties, on_duty)
        hub.load_expert(account.id)
        hub.apply_effects()
    store.append_audit(principal.id, "account.created", account.id, {"role": role})
    return web.json_response({"account": _account_json(account)}, status=201)


async def admin_set_account_disabled(request: web.Request) -> web.Response:
    principal = _require(request, "accounts.manage")
    store, hub = request.app[STORE], request.app[HUB]
    account_id = request.match_info["account_id"]
    disabled = request.match_info["action"] == "disable"
    store.set_account_disabled(account_id, disabled)
    store.append_audit(
        principal.id, "account.disabled" if disabled else "account.enabled", account_id
    )
    if disabled:
        hub.revoke(account_id)
    else:
        if store.get_account(account_id).role == EXPERT:
            hub.load_expert(account_id)
            hub.apply_effects()
    return web.json_response({"account": _account_json(store.get_account(account_id))})


async def admin_set_expert(request: web.Request) -> web.Response:
    principal = _require(request, "accounts.manage")
    store, hub = request.app[STORE], request.app[HUB]
    account_id = request.match_info["account_id"]
    body = await _json_body(request)
    current = store.get_expert(account_id)
    specialties = _field(body, "specialties", list, required=False)
    if specialties is None:
        specialties = list(current.specialties)
    on_duty = _field(body, "on_duty", bool, required=False)
    if on_duty is None:
        on_duty = current.on_duty
    store.set_expert_profile(account_id, specialties, on_duty)
    hub.load_expert(account_id)
    hub.apply_effects()
    profile = store.get_expert(account_id)
    store.append_audit(
        principal.id,
        "expert.updated",
        account_id,
        {"specialties": list(profile.specialties), "on_duty": profile.on_duty},
    )
    return web.json_response({"expert": _record(profile)})


async def admin_list_experts(request: web.Request) -> web.Response:
    """Every expert account (disabled ones too) with the profile and the live presence."""
    _require(request, "accounts.manage")
    dispatcher = request.app[HUB].dispatcher
    experts = []
    for profile in request.app[STORE].list_experts():
        live = dispatcher.experts.get(profile.account_id)
        presence = (
            None
            if live is None
            else {
                "online": live.online,
                "availability": live.availability.value,
                "activity": dispatcher.activity(profile.account_id).value,
            }
        )
        experts.append(
            {
                "id": profile.account_id,
                "username": profile.username,
                "display_name": profile.display_name,
                "specialties": list(profile.specialties),
                "on_duty": profile.on_duty,
                "disabled": profile.disabled,
                "availability": _live_availability(request, profile.account_id),
                "presence": presence,
            }
        )
    return web.json_response({"experts": experts})


async def admin_list_devices(request: web.Request) -> web.Response:
    _require(request, "devices.manage")
    store, hub = request.app[STORE], request.app[HUB]
    health = store.list_device_health()
    pending = store.pending_enrolments()
    devices = [
        {
            **_record(d),
            "online": hub.is_online(d.id),
            "health": health_view(health.get(d.id)),
            "enrolment_expires_at": pending.get(d.id),
        }
        for d in store.list_devices()
    ]
    return web.json_response({"devices": devices})


async def admin_create_device(request: web.Request) -> web.Response:
    principal = _require(request, "devices.manage")
    body = await _json_body(request)
    kind = _field(body, "kind")
    if kind not in DEVICE_KINDS:
        raise BadRequest(f"kind must be one of {sorted(DEVICE_KINDS)}")
    device, token = request.app[STORE].create_device(kind, _field(body, "name"))
    request.app[STORE].append_audit(principal.id, "device.created", device.id, {"kind": kind})
    return web.json_response({"device": _record(device), "token": token}, status=201)


async def admin_device_action(request: web.Request) -> web.Response:
    principal = _require(request, "devices.manage")
    store, hub = request.app[STORE], request.app[HUB]
    device_id = request.match_info["device_id"]
    action = request.match_info["action"]
    store.get_device(device_id)
    result: dict[str, Any] = {}
    if action == "rotate-token":
        result["token"] = store.rotate_device_token(device_id)
        hub.revoke(device_id)
    elif action in ("disable", "enable"):
        store.set_device_disabled(device_id, action == "disable")
        if action == "disable":
            hub.revoke(device_id)
    else:
        raise NotFound("action", action)
    store.append_audit(principal.id, f"device.{action}", device_id)
    result["device"] = _record(store.get_device(device_id))
    return web.json_response(result)


async def admin_create_enrolment(request: web.Request) -> web.Response:
    """A one-time code (and its link and QR code) that enrols the device; replaces the
    device's unused code."""
    principal = _require(request, "devices.manage")
    store, settings = request.app[STORE], request.app[SETTINGS]
    device = store.get_device(request.match_info["device_id"])
    if device.disabled:
        raise InvalidState(f"device {device.id} is disabled; enable it first")
    code, expires_at = store.create_enrolment_code(device.id, settings.enrolment_code_ttl_s)
    link = enrolment_link(own_origin(request, settings), device.kind, code)
    store.append_audit(
        principal.id, "device.enrolment_created", device.id, {"expires_at": expires_at}
    )
    log.info("enrolment code made for device %s", device.id)
    return web.json_response(
        {"code": code, "expires_at": expires_at, "link": link, "qr_svg": qr_svg(link)}
    )


async def enrol(request: web.Request) -> web.Response:
    """A device exchanges an enrolment code for a fresh token (no login; throttled per IP)."""
    store, settings, hub = request.app[STORE], request.app[SETTINGS], request.app[HUB]
    throttle: FailureThrottle = request.app[ENROLMENT_THROTTLE]
    ip = client_ip(request, settings)
    now = time.monotonic()
    wait_s = throttle.retry_after_s(ip, now)
    if wait_s > 0:
        log.warning("enrolment attempt refused: too many failures from %s", ip)
        return _retry_later(
            RateLimited("too many failed enrolment attempts; try again later"), wait_s
        )
    body = await _json_body(request)
    typed = _field(body, "code")
    kind = body.get("kind")  # the kind of device enrolling; the code must be made for it
    if not isinstance(kind, str) or kind not in DEVICE_KINDS:
        raise InvalidDeviceKind()
    code = normalise_code(typed) if len(typed) <= 32 else None
    refused: storage_errors.EnrolmentRefused | None = None
    with store.transaction():
        try:
            if code is None:
                raise storage_errors.EnrolmentRefused("malformed")
            device, token = store.redeem_enrolment_code(code, kind)
        except storage_errors.EnrolmentRefused as err:
            refused = err
            store.append_audit(
                "anonymous",
                "device.enrolment_failed",
                None,
                {"reason": err.reason, "client_ip": ip},
            )
        else:
            store.append_audit(
                device.id,
                "device.enrolment_used",
                device.id,
                {"client_ip": ip, "token_generation": device.token_generation},
            )
    if refused is not None:
        throttle.record_failure(ip, now)
        log.info("enrolment refused (%s) from %s", refused.reason, ip)
        if refused.reason == "wrong_kind":
            raise WrongDeviceKind(kind)
        raise EnrolmentFailed("the code is wrong, used or expired; ask for a new one")
    hub.revoke(device.id)  # connections on the old token end (close 4004)
    log.info("device %s enrolled (token generation %d)", device.id, device.token_generation)
    return web.json_response(
        {"device_id": device.id, "kind": device.kind, "name": device.name, "device_token": token}
    )


async def admin_put_dispute_type(request: web.Request) -> web.Response:
    principal = _require(request, "dispute_types.manage")
    body = await _json_body(request)
    code = request.match_info["code"]
    dispute = request.app[STORE].upsert_dispute_type(
        code,
        _field(body, "name_zh"),
        _field(body, "name_en"),
        active=_field(body, "active", bool, required=False) is not False,
        sort=100 if body.get("sort") is None else _field(body, "sort", int),
    )
    request.app[STORE].append_audit(principal.id, "dispute_type.saved", code)
    return web.json_response({"dispute_type": _record(dispute)})


# --- audit, health, metrics -------------------------------------------------------------


async def read_audit(request: web.Request) -> web.Response:
    principal = _require(request, "audit.read")
    store = request.app[STORE]
    try:
        after = int(request.query.get("after_seq", "0"))
        limit = min(1000, int(request.query.get("limit", "100")))
    except ValueError as err:
        raise BadRequest("after_seq and limit must be integers") from err
    entries = [_record(e) for e in store.list_audit(limit=limit, after_seq=after)]
    first_bad = store.verify_audit()
    store.append_audit(principal.id, "audit.read", None, {"after_seq": after})
    return web.json_response(
        {"entries": entries, "intact": first_bad is None, "first_bad_seq": first_bad}
    )


async def healthz(request: web.Request) -> web.Response:
    request.app[STORE].schema_version()
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    hub, m = request.app[HUB], request.app[METRICS]
    states: dict[str, int] = {"launching": 0, "ringing": 0, "queued": 0, "active": 0}
    for call in hub.dispatcher.calls.values():
        states[call.state.value] = states.get(call.state.value, 0) + 1
    for state, count in states.items():
        m.calls.labels(state=state).set(count)
    m.queue_length.set(states["queued"])
    m.experts_available.set(sum(1 for e in hub.dispatcher.experts if hub.dispatcher.is_free(e)))
    totals = {"participants": 0, "forwarded": 0, "dropped": 0, "plis_sent": 0}
    for media in hub.media.calls.values():
        for key, value in media.totals().items():
            totals[key] += value
    m.media_participants.set(totals["participants"])
    m.media_packets_forwarded.set(totals["forwarded"])
    m.media_packets_dropped.set(totals["dropped"])
    m.media_plis_sent.set(totals["plis_sent"])
    recordings = hub.recordings
    m.recordings_active.set(len(recordings.recorders))
    if recordings.uploader is not None:
        st = recordings.uploader.stats
        m.upload_pending_files.set(st.pending_count)
        m.upload_pending_bytes.set(st.pending_bytes)
        m.upload_lag.set(st.lag_s)
        m.upload_failures.set(st.failures)
        m.upload_reuploads.set(st.reuploads)
        m.spool_free_bytes.set(recordings.spool.free_bytes())
        m.storage_warnings.set(len(recordings.warnings()))
    return web.Response(body=m.render(), headers={"Content-Type": CONTENT_TYPE})


def add_routes(app: web.Application) -> None:
    settings = app[SETTINGS]
    app[ENROLMENT_THROTTLE] = FailureThrottle(settings.enrolment_failures_per_min)
    app[LOGIN_THROTTLE_BY_IP] = FailureThrottle(settings.login_failures_per_min)
    app[LOGIN_THROTTLE_BY_ACCOUNT] = FailureThrottle(
        settings.login_failures_per_account, window_s=LOGIN_ACCOUNT_WINDOW_S
    )
    r = app.router
    r.add_post("/api/login", login)
    r.add_post("/api/logout", logout)
    r.add_post("/api/password", change_password)
    r.add_get("/api/me", me)
    r.add_get("/api/experts", list_experts)
    r.add_get("/api/dispute-types", list_dispute_types)
    r.add_get("/api/calls", list_calls)
    r.add_get("/api/calls/{call_id}", get_call)
    r.add_get("/api/cases", find_cases)
    r.add_get("/api/cases/{case_id}", get_case)
    r.add_get("/api/notice", get_notice)
    r.add_post("/api/enrol", enrol)
    r.add_get("/api/admin/accounts", admin_list_accounts)
    r.add_post("/api/admin/accounts", admin_create_account)
    r.add_post(
        "/api/admin/accounts/{account_id}/{action:disable|enable}", admin_set_account_disabled
    )
    r.add_get("/api/admin/experts", admin_list_experts)
    r.add_put("/api/admin/experts/{account_id}", admin_set_expert)
    r.add_get("/api/admin/devices", admin_list_devices)
    r.add_post("/api/admin/devices", admin_create_device)
    # Before the generic action route, which would take "enrolment" for an action.
    r.add_post("/api/admin/devices/{device_id}/enrolment", admin_create_enrolment)
    r.add_post("/api/admin/devices/{device_id}/{action}", admin_device_action)
    r.add_put("/api/admin/dispute-types/{code}", admin_put_dispute_type)
    r.add_get("/api/audit", read_audit)
    r.add_get("/healthz", healthz)
    r.add_get("/metrics", metrics)
    evidence_api.add_routes(app)
