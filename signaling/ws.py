"""The `/ws` endpoint: auth phase, then one request at a time through the hub."""

from __future__ import annotations

import asyncio
import logging
import secrets

from aiohttp import WSMsgType, web

from signaling import messages as m
from signaling.errors import SignalingError
from signaling.http_auth import SESSION_COOKIE, origin_allowed
from signaling.hub import Connection, Hub, SignalSession, error_reply
from signaling.logs import log_context

log = logging.getLogger(__name__)


async def websocket_handler(request: web.Request, hub: Hub) -> web.StreamResponse:
    settings = hub.settings
    if hub.shutting_down:
        raise web.HTTPServiceUnavailable(text="shutting down")
    if not origin_allowed(request, settings):
        raise web.HTTPForbidden(text="origin not allowed")
    ws = web.WebSocketResponse(
        heartbeat=settings.heartbeat_s,
        # Frames over max_message_bytes get an error reply; only far larger ones
        # (16x) are refused by the transport itself, with close code 1009.
        max_msg_size=settings.max_message_bytes * 16,
        timeout=2.0,
        # No permessage-deflate: signaling frames are small, and each compressed
        # connection holds zlib state of ~100 KiB (bench/dispatch.py: 128 vs 24 KiB
        # per idle connection).
        compress=False,
    )
    await ws.prepare(request)
    conn = Connection(ws, settings, secrets.token_hex(6))
    with log_context(conn_id=conn.id):
        try:
            session = await _auth_phase(request, hub, conn)
            if session is not None:
                await _serve(hub, conn, session)
        except Exception:
            log.exception("signaling connection failed")
        finally:
            hub.detach(conn)
            if not conn.closing:
                conn.close(m.CLOSE_GOING_AWAY, "closed")
            await conn.wait_closed()
    return ws


async def _auth_phase(request: web.Request, hub: Hub, conn: Connection) -> SignalSession | None:
    settings = hub.settings
    try:
        async with asyncio.timeout(settings.auth_timeout_s):
            msg = await conn.ws.receive()
    except TimeoutError:
        conn.send(m.encode_error(None, "auth_required", "no auth message in time"))
        conn.close(m.CLOSE_AUTH_TIMEOUT, "auth_timeout")
        return None
    if msg.type is not WSMsgType.TEXT:
        conn.close(m.CLOSE_AUTH_FAILED, "auth_required")
        return None
    try:
        req = m.decode_request(msg.data, settings.max_message_bytes)
    except m.ProtocolError as err:
        conn.send(m.encode_error(err.request_id, err.code, err.message))
        conn.close(m.CLOSE_AUTH_FAILED, err.code)
        return None
    if req.type != "auth":
        conn.send(m.encode_error(req.id, "auth_required", "the first message must be auth"))
        conn.close(m.CLOSE_AUTH_FAILED, "auth_required")
        return None
    version = req.payload["protocol_version"]
    if version not in m.SUPPORTED_PROTOCOL_VERSIONS:
        supported = sorted(m.SUPPORTED_PROTOCOL_VERSIONS)
        conn.send(
            m.encode_error(
                req.id,
                "protocol_version_unsupported",
                f"protocol version {version} is not supported; use one of {supported}",
            )
        )
        conn.close(m.CLOSE_PROTOCOL_VERSION, "protocol_version_unsupported")
        return None
    try:
        principal, login_token = hub.authenticate(req.payload, request.cookies.get(SESSION_COOKIE))
    except SignalingError as err:
        log.info("auth refused: %s", err.code)
        conn.send(error_reply(req.id, err))
        conn.close(m.CLOSE_AUTH_FAILED, err.code)
        return None
    session, resumed = hub.attach(conn, principal, req.payload.get("rejoin_token"), login_token)
    log.info(
        "authenticated %s %s (build %s, resumed=%s)",
        principal.role,
        principal.id,
        req.payload["client_build"],
        resumed,
    )
    conn.send(
        m.encode_result(
            req.id,
            {
                "server_time": hub.clock.wall_ms(),
                "protocol_version": version,  # the version this session speaks
                "session_id": session.id,
                "rejoin_token": session.rejoin_token,
                "resumed": resumed,
                "principal": principal.to_wire(),
            },
        )
    )
    session.emit("snapshot", hub.snapshot(session))
    return session


async def _serve(hub: Hub, conn: Connection, session: SignalSession) -> None:
    settings = hub.settings
    async for msg in conn.ws:
        if conn.session is not session or conn.closing:
            break
        if msg.type is WSMsgType.BINARY:
            if not _admit(hub, conn, None):
                break
            conn.send(m.encode_error(None, "invalid_message", "send JSON text frames"))
            continue
        if msg.type is not WSMsgType.TEXT:
            break
        try:
            req = m.decode_request(msg.data, settings.max_message_bytes)
        except m.ProtocolError as err:
            if not _admit(hub, conn, err.request_id):
                break
            hub.metrics.requests_refused.labels(code=err.code).inc()
            conn.send(m.encode_error(err.request_id, err.code, err.message))
            continue
        if not _admit(hub, conn, req.id):
            break
        if req.type == "auth":
            conn.send(m.encode_error(req.id, "already_authenticated", "already authenticated"))
            continue
        try:
            result = await hub.handle(session, req)
        except SignalingError as err:
            hub.metrics.requests_refused.labels(code=err.code).inc()
            conn.send(error_reply(req.id, err))
        except Exception:
            log.exception("request %s failed", req.type)
            conn.send(m.encode_error(req.id, "internal_error", "internal error"))
        else:
            conn.send(m.encode_result(req.id, result))
        if conn.backlog:
            await asyncio.sleep(0)  # let the writer catch up before reading more


def _admit(hub: Hub, conn: Connection, request_id: int | str | None) -> bool:
    """Rate limit: refuse over the budget; close after too many refusals in a row."""
    if conn.limiter.allow():
        return True
    hub.metrics.requests_refused.labels(code="rate_limited").inc()
    conn.send(m.encode_error(request_id, "rate_limited", "too many messages; slow down"))
    if conn.limiter.refused_in_a_row >= hub.settings.rate_limit_close_after:
        log.warning("closing a client that keeps flooding")
        conn.close(m.CLOSE_RATE_LIMITED, "rate_limited")
        return False
    return True
