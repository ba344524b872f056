"""Who is calling over HTTP, and from which origin (shared by the REST API and /ws)."""

from __future__ import annotations

import ipaddress

from aiohttp import web

from signaling.config import Settings
from signaling.errors import AuthRequired
from signaling.permissions import KIOSK, STATION, Principal
from storage import MetadataStore

SESSION_COOKIE = "mediation_session"


def _from_trusted_proxy(request: web.Request, settings: Settings) -> bool:
    if not settings.trusted_proxies or request.remote is None:
        return False
    try:
        peer = ipaddress.ip_address(request.remote)
    except ValueError:
        return False
    return any(peer in ipaddress.ip_network(net, strict=False) for net in settings.trusted_proxies)


def request_scheme(request: web.Request, settings: Settings) -> str:
    if _from_trusted_proxy(request, settings):
        forwarded = request.headers.get("X-Forwarded-Proto")
        if forwarded:
            return forwarded.split(",")[0].strip().lower()
    return request.scheme


def own_origin(request: web.Request, settings: Settings) -> str:
    if settings.public_origin:
        return settings.public_origin
    host = request.host
    if _from_trusted_proxy(request, settings):
        host = request.headers.get("X-Forwarded-Host", host).split(",")[0].strip()
    return f"{request_scheme(request, settings)}://{host}".lower()


def client_ip(request: web.Request, settings: Settings) -> str:
    """The client's address: the connection's, or, when the connection comes from one of
    `trusted_proxies`, the last `X-Forwarded-For` entry (the one that proxy added)."""
    if _from_trusted_proxy(request, settings):
        forwarded = request.headers.get("X-Forwarded-For", "").split(",")[-1].strip()
        if forwarded:
            return forwarded
    return request.remote or "unknown"


def origin_allowed(request: web.Request, settings: Settings) -> bool:
    """Browsers always send Origin on a WebSocket upgrade and a cross-site POST.

    A request without Origin comes from a non-browser client (the kiosk shell, the
    Python client), which a hostile page cannot drive, so it is let through.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return origin.lower() in {own_origin(request, settings), *settings.allowed_origins}


def secure_cookies(request: web.Request, settings: Settings) -> bool:
    return request_scheme(request, settings) == "https"


def bearer_or_cookie(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[len("Bearer ") :].strip()
    return request.cookies.get(SESSION_COOKIE)


def http_principal(request: web.Request, store: MetadataStore) -> Principal:
    """A device token or a person's session (bearer token or cookie); else auth_required."""
    token = bearer_or_cookie(request)
    if not token:
        raise AuthRequired("log in, or send a bearer token")
    if token.startswith("dev_"):
        device = store.find_device_by_token(token)
        if device is None:
            raise AuthRequired("unknown or revoked device token")
        role = KIOSK if device.kind == KIOSK else STATION
        return Principal(role, device.id, device.name, device_id=device.id)
    found = store.find_session(token)
    if found is None:
        raise AuthRequired("session expired or unknown; log in again")
    account = found[1]
    return Principal(account.role, account.id, account.display_name, account_id=account.id)
