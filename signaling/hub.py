"""The live signaling state: sessions, connections, and the dispatcher's I/O.

`Hub` sits between the WebSocket handler (`signaling.ws`) and the pure
`Dispatcher`. It authenticates the first message, keeps one `SignalSession` per
logged-in client (with its event sequence numbers and rejoin token, surviving a
dropped connection for the grace window), runs each request, and after every
dispatcher step stores, audits, logs and sends what changed.

Ownership: the hub owns its timer task and the sessions' expiry handles; each
`Connection` owns its writer task. `Hub.close()` ends them all (safe twice).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from signaling import messages as m
from signaling.call_results import CallResults
from signaling.config import Settings
from signaling.dispatch import (
    Activity,
    Call,
    CallChanged,
    Caller,
    CallState,
    ChoiceClosed,
    ChoiceOffered,
    Dispatcher,
    DispatchTimers,
    Effect,
    EndReason,
    ExpertChanged,
    InvitationChanged,
    InvitationState,
    ParticipantChanged,
    QueuePositionChanged,
)
from signaling.errors import (
    AuthFailed,
    BadRequest,
    ConsentRequired,
    Forbidden,
    InvalidState,
    NotFound,
    SignalingError,
    UnknownDisputeType,
)
from signaling.logs import log_context
from signaling.media_hub import CallMediaHub
from signaling.metrics import Metrics
from signaling.permissions import EXPERT, KIOSK, STATION, Principal, may_request
from signaling.recording_hub import CallRecordingHub
from signaling.views import health_view
from signaling.wait_estimate import HANDLE_TIME_SAMPLE, estimate_wait_s
from storage import MetadataStore, ids
from storage import errors as storage_errors
from storage.records import (
    CallRecord,
    Consent,
    DeviceHealth,
    InvitationRecord,
    ParticipantRecord,
)

log = logging.getLogger(__name__)


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall_ms(self) -> int:
        return ids.now_ms()


class RateLimiter:
    """Token bucket; counts refusals in a row so a flooder can be cut off."""

    def __init__(self, per_s: float, burst: int) -> None:
        self.per_s = per_s
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()
        self.refused_in_a_row = 0

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.per_s)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            self.refused_in_a_row = 0
            return True
        self.refused_in_a_row += 1
        return False


class Connection:
    """One WebSocket: a bounded send queue drained by a single writer task."""

    def __init__(self, ws: web.WebSocketResponse, settings: Settings, conn_id: str) -> None:
        self.ws = ws
        self.id = conn_id
        self.session: SignalSession | None = None
        self.limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=settings.send_queue_max)
        self._closing = False
        self._close_task: asyncio.Task[None] | None = None
        # Test hook: clearing it stalls the writer, as a network that stops draining would.
        self.writes_allowed = asyncio.Event()
        self.writes_allowed.set()
        self._writer = asyncio.create_task(self._write_loop(), name=f"ws-writer-{conn_id}")

    @property
    def closing(self) -> bool:
        return self._closing or self.ws.closed

    def send(self, text: str) -> None:
        if self.closing:
            return
        try:
            self._queue.put_nowait(text)
        except asyncio.QueueFull:
            log.warning("send queue full: closing slow consumer", extra={"conn_id": self.id})
            self.close(m.CLOSE_SLOW_CONSUMER, "slow_consumer", flush=False)

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    async def _write_loop(self) -> None:
        try:
            while True:
                text = await self._queue.get()
                await self.writes_allowed.wait()
                try:
                    await self.ws.send_str(text)
                finally:
                    self._queue.task_done()
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass

    def close(self, code: int, reason: str, *, flush: bool = True) -> None:
        """Close, after what is already queued has been written if `flush` (bounded by 2 s)."""
        if self._closing:
            return
        self._closing = True
        self._close_task = asyncio.create_task(
            self._close(code, reason, flush), name=f"ws-close-{self.id}"
        )

    async def _close(self, code: int, reason: str, flush: bool) -> None:
        try:
            async with asyncio.timeout(2):
                if flush and not self._writer.done():
                    await self._queue.join()
                self._writer.cancel()
                await self.ws.close(code=code, message=reason.encode())
        except (TimeoutError, ConnectionError, RuntimeError):
            self._writer.cancel()
            transport = self.ws._req.transport if self.ws._req else None  # noqa: SLF001
            if transport is not None:
                transport.abort()

    async def wait_closed(self) -> None:
        """Stop the writer; wait for a requested close to finish."""
        if self._close_task is not None:
            await asyncio.gather(self._close_task, return_exceptions=True)
        self._writer.cancel()
        await asyncio.gather(self._writer, return_exceptions=True)


@dataclass(eq=False)
class SignalSession:
    """A client's logical signaling session: survives reconnects within the grace window."""

    id: str
    principal: Principal
    rejoin_token: str
    seq: int = 0
    login_token: str | None = None  # the person's login that opened it (never logged)
    connection: Connection | None = None
    expiry: asyncio.TimerHandle | None = None
    last_presence: dict[str, Any] = field(default_factory=dict)

    def emit(self, event_type: str, payload: dict[str, Any]) -> None:
        """Number the event and queue it (dropped while disconnected: the snapshot covers it)."""
        if self.connection is None:
            return
        self.seq += 1
        self.connection.send(m.encode_event(event_type, self.seq, payload))


class Hub:
    def __init__(
        self,
        settings: Settings,
        store: MetadataStore,
        metrics: Metrics,
        clock: SystemClock | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.clock = clock or SystemClock()
        timers = DispatchTimers(
            ring_timeout_s=settings.ring_timeout_s,
            overflow_timeout_s=settings.overflow_timeout_s,
            max_wait_s=settings.max_wait_s,
            rejoin_grace_s=settings.rejoin_grace_s,
            max_participants=settings.max_participants,
        )
        self.dispatcher = Dispatcher(self.clock, timers, ids.new_id)
        self.sessions: dict[str, SignalSession] = {}  # by session id
        self._by_rejoin: dict[str, SignalSession] = {}
        self._by_principal: dict[str, set[SignalSession]] = {}
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._launch_started: dict[str, float] = {}
        self._consents: dict[str, Consent] = {}  # call id -> consent, stored with the call
        self.shutting_down = False
        # Answer-to-end times of the last answered calls (ms, oldest first): the queue's
        # wait estimate.
        self.handle_times_ms: deque[int] = deque(maxlen=HANDLE_TIME_SAMPLE)
        self.media = CallMediaHub(self)
        self.recordings = CallRecordingHub(self)
        self.results = CallResults(self)

    # --- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        now = self.clock.wall_ms()
        with self.store.transaction():
            for record in self.store.open_calls():
                self.store.update_call(
                    record.id, state="ended", end_reason=EndReason.INTERRUPTED.value, ended_at=now
                )
                self.store.add_call_event(
                    record.id, "call", record.id, record.state, "ended", now, {"reason": "restart"}
                )
                self.store.append_audit(
                    "system",
                    "call.state",
                    record.id,
                    {"old": record.state, "new": "ended", "reason": "interrupted"},
                    at=now,
                )
                log.info(
                    "call %s -> ended (interrupted at start-up)",
                    record.state,
                    extra={"call_id": record.id},
                )
        self.handle_times_ms.extend(reversed(self.store.recent_handle_times_ms(HANDLE_TIME_SAMPLE)))
        for profile in self.store.list_experts():
            self.load_expert(profile.account_id)
        self.dispatcher.drain()
        await self.recordings.start()  # closes recordings a crash left open
        self._spawn(self._timer_loop(), "dispatch-timers")
        self._spawn(self._recheck_loop(), "principal-recheck")

    def load_expert(self, account_id: str) -> None:
        """(Re)load an expert's profile from the store into dispatch (not if disabled)."""
        profile = self.store.get_expert(account_id)
        if profile.disabled:
            return
        self.dispatcher.upsert_expert(
            profile.account_id,
            profile.display_name,
            profile.specialties,
            availability=profile.availability,
            on_duty=profile.on_duty,
            last_busy_at=profile.last_busy_at,
        )

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def shutdown(self, reconnect_after_ms: int = 2000) -> None:
        """Tell every client to reconnect later and close its connection."""
        self.shutting_down = True
        conns = [s.connection for s in self.sessions.values() if s.connection is not None]
        for session in self.sessions.values():
            session.emit("server.shutdown", {"reconnect_after_ms": reconnect_after_ms})
        for conn in conns:
            conn.close(m.CLOSE_SERVICE_RESTART, "server_restart")
        await asyncio.gather(*(c.wait_closed() for c in conns), return_exceptions=True)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for session in self.sessions.values():
            if session.expiry is not None:
                session.expiry.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.recordings.close()
        await self.media.close()

    # --- timers ---------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    async def _timer_loop(self) -> None:
        while True:
            deadline = self.dispatcher.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self.clock.monotonic())
            self._wake.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass
            try:
                self.dispatcher.tick()
                self.apply_effects()
            except Exception:
                log.exception("dispatch timer step failed")

    async def _recheck_loop(self) -> None:
        """Cut off connections whose account or device was disabled (e.g. from the CLI)."""
        while True:
            await asyncio.sleep(self.settings.principal_recheck_s)
            try:
                for principal_id in list(self._by_principal):
                    sessions = self._by_principal.get(principal_id) or set()
                    principal = next(iter(sessions)).principal if sessions else None
                    if principal is not None and not self._still_valid(principal):
                        self.revoke(principal_id)
                logins = {s.login_token for s in self.sessions.values() if s.login_token}
                for token in logins:
                    if self.store.find_session(token) is None:
                        self.end_login(token)
            except Exception:
                log.exception("principal re-check failed")

    def _still_valid(self, principal: Principal) -> bool:
        try:
            if principal.device_id is not None:
                if self.store.get_device(principal.device_id).disabled:
                    return False
            if principal.account_id is not None:
                if self.store.get_account(principal.account_id).disabled:
                    return False
        except storage_errors.NotFound:
            return False
        return True

    # --- authentication -----------------------------------------------------------------

    def authenticate(
        self, payload: dict[str, Any], cookie_token: str | None
    ) -> tuple[Principal, str | None]:
        """Resolve the auth message (and the upgrade's cookie) to a principal.

        Returns the principal and the person's login token it rests on, if any.
        """
        device = None
        if "device_token" in payload:
            device = self.store.find_device_by_token(payload["device_token"])
            if device is None:
                raise AuthFailed("unknown or revoked device token")
        person = None
        session_token = payload.get("session_token") or cookie_token
        if session_token:
            found = self.store.find_session(session_token)
            if found is None and "session_token" in payload:
                raise AuthFailed("unknown or expired session")
            person = found[1] if found else None
        if device is not None:
            if device.kind == KIOSK:
                return Principal(KIOSK, device.id, device.name, device_id=device.id), None
            if person is None or person.role != "station_officer":
                raise StationLoginRequired("a station needs an officer's login beside its token")
            station = Principal(
                STATION,
                device.id,
                f"{device.name} / {person.display_name}",
                device_id=device.id,
                account_id=person.id,
            )
            return station, session_token
        if person is None:
            raise AuthFailed("give a device_token, a session_token or a session cookie")
        account = Principal(person.role, person.id, person.display_name, account_id=person.id)
        return account, session_token

    def attach(
        self,
        conn: Connection,
        principal: Principal,
        rejoin_token: str | None,
        login_token: str | None = None,
    ) -> tuple[SignalSession, bool]:
        """Bind the connection to a resumed or a new session; returns (session, resumed).

        The connection is bound last: what changes because the principal came back
        online reaches this client in the snapshot that follows the auth result, so no
        event precedes that result.
        """
        session = self._by_rejoin.get(rejoin_token) if rejoin_token else None
        resumed = session is not None and session.principal.id == principal.id
        if not resumed:
            session = SignalSession(
                id=ids.new_id(),
                principal=principal,
                rejoin_token=secrets.token_urlsafe(24),
                login_token=login_token,
            )
            self.sessions[session.id] = session
            self._by_rejoin[session.rejoin_token] = session
        assert session is not None
        session.login_token = login_token
        if session.expiry is not None:
            session.expiry.cancel()
            session.expiry = None
        siblings = self._by_principal.setdefault(principal.id, set())
        was_online = any(s.connection is not None for s in siblings)
        if principal.is_device:
            # A device has one live connection: the newer one replaces the older.
            for other in list(siblings):
                if other is not session:
                    self._unbind(other, m.CLOSE_REPLACED, "replaced")
                    self._forget(other)
        self._unbind(session, m.CLOSE_REPLACED, "replaced")
        # _forget may have dropped the (then empty) set: look it up again, never add to a
        # set the hub no longer holds (a reloaded page would get no events).
        self._by_principal.setdefault(principal.id, set()).add(session)
        if principal.device_id is not None:
            self.store.touch_device(principal.device_id, self.clock.wall_ms())
        if not was_online:
            self.dispatcher.principal_online(principal.id)
            self.apply_effects()
        session.connection = conn
        conn.session = session
        self.metrics.connections.inc()
        return session, resumed

    def _unbind(self, session: SignalSession, code: int, reason: str) -> None:
        """Close the session's live connection, if any, keeping the gauge right."""
        conn = session.connection
        if conn is None:
            return
        conn.close(code, reason)
        conn.session = None
        session.connection = None
        self.metrics.connections.dec()

    def detach(self, conn: Connection) -> None:
        """The connection is gone; its session waits out the grace window for a rejoin."""
        session = conn.session
        conn.session = None
        if session is None or session.connection is not conn:
            return
        self.metrics.connections.dec()
        session.connection = None
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        session.expiry = loop.call_later(self.settings.rejoin_grace_s, self._forget, session)
        siblings = self._by_principal.get(session.principal.id, set())
        if not any(s.connection is not None for s in siblings):
            self.dispatcher.principal_offline(session.principal.id)
            self.apply_effects()

    def _forget(self, session: SignalSession) -> None:
        if session.expiry is not None:
            session.expiry.cancel()
            session.expiry = None
        self.sessions.pop(session.id, None)
        self._by_rejoin.pop(session.rejoin_token, None)
        siblings = self._by_principal.get(session.principal.id)
        if siblings is not None:
            siblings.discard(session)
            if not siblings:
                del self._by_principal[session.principal.id]

    def revoke(self, principal_id: str) -> None:
        """The account or device was disabled (or its token rotated): end its connections."""
        # Station sessions are keyed by device but also end when their officer is disabled.
        doomed = [
            s
            for s in self.sessions.values()
            if s.principal.id == principal_id or s.principal.account_id == principal_id
        ]
        self._end_sessions(doomed, "revoked")
        if principal_id in self.dispatcher.experts:
            self.dispatcher.remove_expert(principal_id)
            self.apply_effects()

    def end_login(self, login_token: str) -> None:
        """A person logged out (or the login expired): end the sessions it opened."""
        self._end_sessions(
            [s for s in self.sessions.values() if s.login_token == login_token], "logged_out"
        )

    def end_other_logins(self, account_id: str, keep_login_token: str | None) -> None:
        """A person changed their password: connections opened by their other logins end."""
        self._end_sessions(
            [
                s
                for s in self.sessions.values()
                if s.principal.account_id == account_id
                and s.login_token is not None
                and s.login_token != keep_login_token
            ],
            "revoked",
        )

    def _end_sessions(self, sessions: list[SignalSession], reason: str) -> None:
        principals = {s.principal.id for s in sessions}
        for session in sessions:
            self._unbind(session, m.CLOSE_REVOKED, reason)
            self._forget(session)
        for principal_id in principals:
            if not self._by_principal.get(principal_id):
                self.dispatcher.principal_offline(principal_id)
        self.apply_effects()

    def sessions_of(self, principal_id: str) -> set[SignalSession]:
        return self._by_principal.get(principal_id, set())

    def is_online(self, principal_id: str) -> bool:
        """The principal has a live signaling connection now."""
        return any(s.connection is not None for s in self._by_principal.get(principal_id, ()))

    def snapshot(self, session: SignalSession) -> dict[str, Any]:
        principal = session.principal
        payload: dict[str, Any] = {
            "server_time": self.clock.wall_ms(),
            "principal": principal.to_wire(),
            "rejoin_token": session.rejoin_token,
            "calls": [self.call_view(c) for c in self.dispatcher.calls_of(principal.id)],
            "rings": [],
            "presence": None,
            "ice_servers": self.media.ice_servers(principal.id),
        }
        if principal.role == EXPERT and principal.id in self.dispatcher.experts:
            payload["presence"] = self._presence(principal.id)
            payload["rings"] = [
                self._ring_payload(call, inv)
                for call in self.dispatcher.calls.values()
                for inv in call.invitations.values()
                if inv.expert_id == principal.id and inv.state is InvitationState.RINGING
            ]
        return payload

    # --- requests ------------------------------------------------------------------------

    async def handle(self, session: SignalSession, request: m.Request) -> dict[str, Any]:
        """Run one authenticated request; raises SignalingError for an error reply."""
        principal = session.principal
        if not may_request(principal.role, request.type):
            raise Forbidden(f"{principal.role} may not send {request.type}")
        p = request.payload
        if request.type.startswith("media."):
            try:
                return await self.media.handle(session, request)
            finally:
                self.apply_effects()
        try:
            if request.type == "ping":
                return {"server_time": self.clock.wall_ms()}
            if request.type == "presence.set":
                self.dispatcher.set_availability(principal.id, p["availability"])
                return {"presence": self._presence(principal.id)}
            if request.type == "call.launch":
                return self._launch(principal, p)
            if request.type == "device.health":
                return self._device_health(principal, p)
            if request.type == "call.rate":
                return self.results.rate(principal, p)
            if request.type == "call.outcome":
                return self.results.outcome(principal, p)
            if request.type == "call.bookmark":
                return self.results.bookmark(principal, p)
            if request.type == "call.choose":
                call = self.dispatcher.choose(principal.id, p["call_id"], p["choice"])
            elif request.type == "call.cancel":
                call = self.dispatcher.cancel(principal.id, p["call_id"])
            elif request.type == "call.accept":
                call = self.dispatcher.accept(principal.id, p["invitation_id"])
            elif request.type == "call.decline":
                call = self.dispatcher.decline(principal.id, p["invitation_id"])
            elif request.type == "call.invite":
                # The inviter is a person: the expert, or the officer signed in at the station.
                inv = self.dispatcher.invite(
                    principal.account_id or principal.id,
                    p["call_id"],
                    expert_id=p.get("expert_id"),
                    specialty=p.get("specialty"),
                )
                return {"invitation_id": inv.id, "expert_id": inv.expert_id}
            elif request.type == "call.leave":
                call = self.dispatcher.leave(principal.id, p["call_id"])
            else:  # pragma: no cover - permissions table and REQUESTS agree
                raise BadRequest(f"unhandled request type {request.type}")
        finally:
            self.apply_effects()
        # The view after the effects: e.g. an accepted call already shows recording "on".
        return {"call": self.call_view(call)}

    def _launch(self, principal: Principal, p: dict[str, Any]) -> dict[str, Any]:
        try:
            dispute = self.store.get_dispute_type(p["dispute_type"])
        except storage_errors.NotFound as err:
            raise UnknownDisputeType(p["dispute_type"]) from err
        if not dispute.active:
            raise UnknownDisputeType(p["dispute_type"])
        expert_id = p.get("expert_id")
        if expert_id is not None and expert_id not in self.dispatcher.experts:
            raise NotFound("expert", expert_id)
        live = self.dispatcher.live_call_of_caller(principal.id)
        if live is not None:
            raise InvalidState(f"a call is already under way: {live.id} ({live.state})")
        # Consent first: a refused or malformed launch must not take a case number (case
        # numbers are official and counted; a gap with no call behind it looks like a loss).
        consent = self._consent(principal, p)
        case_id = p.get("case_id")
        if case_id is not None:
            if principal.role != STATION:
                raise Forbidden("only a station files calls under an existing case")
            try:
                self.store.get_case(case_id)
            except storage_errors.NotFound as err:
                raise NotFound("case", case_id) from err
        else:
            case_id = self.store.create_case(self.settings.district_code).id
        caller = Caller(principal.role, principal.id, principal.account_id)
        started = time.monotonic()
        call = self.dispatcher.launch(
            caller,
            dispute.code,
            named_expert_id=expert_id,
            case_id=case_id,
            training_consent=consent is not None and consent.training,
            recorded=consent is not None,
        )
        if consent is not None:
            self._consents[call.id] = replace(consent, call_id=call.id)
        self._launch_started[call.id] = started
        return {"call": self.call_view(call)}

    def _device_health(self, principal: Principal, p: dict[str, Any]) -> dict[str, Any]:
        """Store a kiosk's or station's self-test; audited when the results change."""
        assert principal.device_id is not None  # kiosks and stations are devices
        health = DeviceHealth(
            device_id=principal.device_id,
            camera=p["camera"],
            microphone=p["microphone"],
            app_build=p["app_build"],
            at=self.clock.wall_ms(),
        )
        with self.store.transaction():
            previous = self.store.save_device_health(health)
            self.store.touch_device(health.device_id, health.at)
            shown = (health.camera, health.microphone, health.app_build)
            if previous is None or (previous.camera, previous.microphone, previous.app_build) != (
                shown
            ):
                self.store.append_audit(
                    health.device_id,
                    "device.health",
                    health.device_id,
                    {
                        "camera": health.camera,
                        "microphone": health.microphone,
                        "app_build": health.app_build,
                    },
                    at=health.at,
                )
        log.info(
            "device %s health: camera %s, microphone %s, build %s",
            health.device_id,
            health.camera,
            health.microphone,
            health.app_build,
        )
        return {"health": health_view(health)}

    def _consent(self, principal: Principal, p: dict[str, Any]) -> Consent | None:
        """The launch's recording consent, or None for an unrecorded kiosk call.

        Without consent a station call never starts, nor a kiosk call unless the
        kiosk_without_consent setting allows it unrecorded; a refusal is audited.
        """
        training = bool(p.get("training_consent", False))
        if not p.get("consent_evidence", False):
            if training:
                raise BadRequest("training_consent needs consent_evidence (recording consent)")
            if principal.role == STATION or self.settings.kiosk_without_consent == "refuse":
                self.store.append_audit(
                    principal.account_id or principal.id,
                    "call.consent_refused",
                    principal.id,
                    {"device_id": principal.device_id, "role": principal.role},
                    at=self.clock.wall_ms(),
                )
                raise ConsentRequired(
                    "recording consent is required to start this call"
                    if principal.role == STATION
                    else "recording consent is required to start a call from this kiosk"
                )
            return None
        language = p.get("notice_language", "zh-CN")
        try:
            notice = self.store.get_notice(language, p.get("notice_version"))
        except storage_errors.NotFound as err:
            raise BadRequest(
                f"unknown recording notice {p.get('notice_version')!r} in {language}"
            ) from err
        parties = p.get("parties", 1)
        if not 1 <= parties <= 20:
            raise BadRequest("parties must be from 1 to 20")
        assert principal.device_id is not None  # kiosks and stations are devices
        return Consent(
            id=ids.new_id(),
            call_id="",  # set once the call has its id
            evidence=True,
            training=training,
            notice_version=notice.version,
            language=notice.language,
            device_id=principal.device_id,
            account_id=principal.account_id,
            parties=parties,
            captured_at=self.clock.wall_ms(),
        )

    # --- effects: store, audit, log, tell ------------------------------------------------

    def apply_effects(self) -> None:
        effects = self.dispatcher.drain()
        if not effects:
            return
        touched: dict[str, Call] = {}
        told: dict[str, set[str]] = {}  # call id -> principals whose own state just changed
        with self.store.transaction():
            for effect in effects:
                self._store_and_log(effect)
                if isinstance(
                    effect, CallChanged | ParticipantChanged | InvitationChanged | ChoiceClosed
                ):
                    touched[effect.call.id] = effect.call  # a call.updated to its parties
                if isinstance(effect, ParticipantChanged):
                    told.setdefault(effect.call.id, set()).add(effect.participant.principal_id)
        for effect in effects:
            self._tell(effect)
            self.media.on_effect(effect)
            self.recordings.on_effect(effect)
        for call in touched.values():
            view = self.call_view(call)
            for principal_id in self._interested(call) | told.get(call.id, set()):
                for session in self._by_principal.get(principal_id, ()):
                    session.emit("call.updated", {"call": view})
        self.wake()

    def _store_and_log(self, effect: Effect) -> None:
        store = self.store
        if isinstance(effect, CallChanged):
            call = effect.call
            with log_context(call_id=call.id):
                log.info("call %s -> %s (%s)", effect.old, effect.new, effect.reason)
            if effect.old is None:
                store.insert_call(self._call_record(call))
                consent = self._consents.pop(call.id, None)
                if consent is not None:
                    store.insert_consent(consent)
                    store.append_audit(
                        consent.account_id or consent.device_id,
                        "consent.captured",
                        call.id,
                        {
                            "consent_id": consent.id,
                            "evidence": consent.evidence,
                            "training": consent.training,
                            "notice_version": consent.notice_version,
                            "language": consent.language,
                            "device_id": consent.device_id,
                            "parties": consent.parties,
                        },
                        at=consent.captured_at,
                    )
            else:
                store.update_call(
                    call.id,
                    state=call.state.value,
                    end_reason=call.end_reason.value if call.end_reason else None,
                    answered_at=call.answered_at,
                    ended_at=call.ended_at,
                )
            self._record_transition(
                effect, call.id, "call", call.id, "system",
                event={"reason": effect.reason},
                audit={"old": effect.old, "new": effect.new, "reason": effect.reason},
            )  # fmt: skip
            self.metrics.call_transitions.labels(state=effect.new).inc()
            if call.state is CallState.ENDED:
                self._launch_started.pop(call.id, None)
                self.metrics.calls_ended.labels(reason=str(call.end_reason)).inc()
                if call.answered_at is not None and call.ended_at is not None:
                    self.handle_times_ms.append(max(0, call.ended_at - call.answered_at))
        elif isinstance(effect, InvitationChanged):
            inv = effect.invitation
            with log_context(call_id=inv.call_id):
                log.info(
                    "invitation %s %s -> %s (%s) expert=%s",
                    inv.id,
                    effect.old,
                    effect.new,
                    effect.reason,
                    inv.expert_id,
                )
            store.upsert_invitation(
                InvitationRecord(
                    id=inv.id,
                    call_id=inv.call_id,
                    expert_id=inv.expert_id,
                    inviter_id=inv.inviter_id,
                    state=inv.state.value,
                    created_at=inv.created_at,
                    ended_at=inv.ended_at,
                )
            )
            self._record_transition(
                effect, inv.call_id, "invitation", inv.id, inv.inviter_id or "system",
                event={"reason": effect.reason, "expert_id": inv.expert_id},
                audit={"call_id": inv.call_id, "old": effect.old, "new": effect.new},
            )  # fmt: skip
        elif isinstance(effect, ParticipantChanged):
            p = effect.participant
            with log_context(call_id=p.call_id, participant_id=p.id):
                log.info("participant %s -> %s (%s)", effect.old, effect.new, effect.reason)
            store.upsert_participant(
                ParticipantRecord(
                    id=p.id,
                    call_id=p.call_id,
                    principal_kind=p.principal_kind,
                    principal_id=p.principal_id,
                    role=p.role,
                    state=p.state.value,
                    joined_at=p.joined_at,
                    left_at=p.left_at,
                )
            )
            self._record_transition(
                effect, p.call_id, "participant", p.id, p.principal_id,
                event={"reason": effect.reason},
                audit={"call_id": p.call_id, "old": effect.old, "new": effect.new},
            )  # fmt: skip
        elif isinstance(effect, ExpertChanged):
            expert = effect.expert
            store.set_expert_availability(expert.id, expert.availability.value)
            if expert.last_busy_at:
                store.set_expert_last_busy(expert.id, expert.last_busy_at)

    def _record_transition(
        self,
        effect: CallChanged | InvitationChanged | ParticipantChanged,
        call_id: str,
        kind: str,
        subject_id: str,
        actor: str,
        *,
        event: dict[str, Any],
        audit: dict[str, Any],
    ) -> None:
        """One state change into the call's history and the hash-chained audit log."""
        now = self.clock.wall_ms()
        self.store.add_call_event(call_id, kind, subject_id, effect.old, effect.new, now, event)
        self.store.append_audit(actor, f"{kind}.state", subject_id, audit, at=now)

    def _tell(self, effect: Effect) -> None:
        if isinstance(effect, InvitationChanged):
            call, inv = effect.call, effect.invitation
            if effect.new == InvitationState.RINGING:
                payload = self._ring_payload(call, inv)
                sessions = self._by_principal.get(inv.expert_id, ())
                for session in sessions:
                    session.emit("call.ring", payload)
                started = self._launch_started.pop(call.id, None)
                if started is not None and sessions:
                    self.metrics.dispatch_latency.observe(time.monotonic() - started)
            else:
                for session in self._by_principal.get(inv.expert_id, ()):
                    session.emit(
                        "call.ring_ended",
                        {"invitation_id": inv.id, "call_id": call.id, "state": inv.state.value},
                    )
        elif isinstance(effect, QueuePositionChanged):
            for session in self._by_principal.get(effect.call.caller.principal_id, ()):
                session.emit(
                    "call.queue_position",
                    {
                        "call_id": effect.call.id,
                        "position": effect.position,
                        "estimated_wait_s": self.estimated_wait_s(effect.position),
                    },
                )
        elif isinstance(effect, ChoiceOffered):
            for session in self._by_principal.get(effect.call.caller.principal_id, ()):
                session.emit(
                    "call.choice_offered",
                    {
                        "call_id": effect.call.id,
                        "expert_id": effect.expert_id,
                        "reason": effect.reason,
                        "choices": ["wait", "anyone"],
                        "deadline": effect.deadline_ms,
                    },
                )
        elif isinstance(effect, ExpertChanged):
            presence = self._presence(effect.expert.id)
            for session in self._by_principal.get(effect.expert.id, ()):
                if session.last_presence != presence:
                    session.last_presence = presence
                    session.emit("presence.changed", {"presence": presence})

    def _interested(self, call: Call) -> set[str]:
        """Who follows the call: its caller and everyone still in it."""
        ids_ = {call.caller.principal_id}
        ids_.update(p.principal_id for p in call.participants.values() if p.present)
        return ids_

    # --- views ---------------------------------------------------------------------------

    def _presence(self, expert_id: str) -> dict[str, Any]:
        expert = self.dispatcher.experts.get(expert_id)
        if expert is None:
            return {"availability": "away", "activity": Activity.IDLE.value, "on_duty": False}
        return {
            "availability": expert.availability.value,
            "activity": self.dispatcher.activity(expert_id).value,
            "on_duty": expert.on_duty,
        }

    def _ring_payload(self, call: Call, inv: Any) -> dict[str, Any]:
        return {
            "invitation_id": inv.id,
            "call_id": call.id,
            "dispute_type": call.dispute_type,
            "caller": {"kind": call.caller.kind, "device_id": call.caller.device_id},
            "invited_by": inv.inviter_id,
            "inviter": self._inviter(call, inv.inviter_id),
            "launched_at": call.launched_at,
            "waited_ms": max(0, self.clock.wall_ms() - call.launched_at),
            "deadline": inv.created_at + int(self.settings.ring_timeout_s * 1000),
        }

    def _inviter(self, call: Call, inviter_id: str | None) -> dict[str, Any] | None:
        """Who rang with `call.invite`, for the rung expert to read: an expert, or the
        station that placed the call (its officer and the station's name). None: dispatch."""
        if inviter_id is None:
            return None
        caller = call.caller
        if caller.kind == STATION and inviter_id in (caller.account_id, caller.device_id):
            try:
                station_name = self.store.get_device(caller.device_id).name
                officer = (
                    self.store.get_account(caller.account_id).display_name
                    if caller.account_id is not None
                    else None
                )
            except storage_errors.NotFound:
                station_name, officer = caller.device_id, None
            return {
                "role": STATION,
                "id": inviter_id,
                "display_name": officer or station_name,
                "station_name": station_name,
            }
        expert = self.dispatcher.experts.get(inviter_id)
        if expert is not None:
            name = expert.name
        else:
            try:
                name = self.store.get_account(inviter_id).display_name
            except storage_errors.NotFound:
                name = inviter_id
        return {"role": EXPERT, "id": inviter_id, "display_name": name, "station_name": None}

    @staticmethod
    def _call_record(call: Call) -> CallRecord:
        return CallRecord(
            id=call.id,
            case_id=call.case_id,
            state=call.state.value,
            end_reason=call.end_reason.value if call.end_reason else None,
            dispute_type=call.dispute_type,
            caller_kind=call.caller.kind,
            caller_device_id=call.caller.device_id,
            caller_account_id=call.caller.account_id,
            named_expert_id=call.named_expert_id,
            training_consent=call.training_consent,
            launched_at=call.launched_at,
            answered_at=call.answered_at,
            ended_at=call.ended_at,
        )

    def tell_recording(self, call_id: str) -> None:
        """The recording of a call started or stopped: everyone in it sees the new state."""
        call = self.dispatcher.calls.get(call_id)
        if call is None:
            return
        view = self.call_view(call)
        for principal_id in self._interested(call) | {
            p.principal_id for p in call.participants.values()
        }:
            for session in self._by_principal.get(principal_id, ()):
                session.emit("call.updated", {"call": view})

    def estimated_wait_s(self, position: int | None) -> int | None:
        """The wait estimate for a queue position (None: not queued); see wait_estimate."""
        return estimate_wait_s(position, self.handle_times_ms, self.dispatcher.experts_serving())

    def recording_state(self, call: Call) -> str:
        """ "on" exactly while the recorder writes this call; "off" otherwise."""
        return "on" if self.recordings.is_recording(call.id) else "off"

    def _wall_ms_of(self, monotonic_s: float | None) -> int | None:
        if monotonic_s is None:
            return None
        return self.clock.wall_ms() + int((monotonic_s - self.clock.monotonic()) * 1000)

    def call_view(self, call: Call) -> dict[str, Any]:
        return {
            "id": call.id,
            "state": call.state.value,
            "end_reason": call.end_reason.value if call.end_reason else None,
            "dispute_type": call.dispute_type,
            "case_id": call.case_id,
            "caller": {
                "kind": call.caller.kind,
                "device_id": call.caller.device_id,
                "account_id": call.caller.account_id,
            },
            "named_expert_id": call.named_expert_id,
            "training_consent": call.training_consent,
            "recorded": call.recorded,
            "recording": self.recording_state(call),
            "preference": call.preference.value,
            # While a choice is pending (preference "choice"): when it defaults to anyone, in
            # wall ms, so a caller page that reloads can show the choice again.
            "choice_deadline": self._wall_ms_of(call.choice_deadline),
            "queue_position": call.queue_position,
            "estimated_wait_s": self.estimated_wait_s(call.queue_position),
            "launched_at": call.launched_at,
            "answered_at": call.answered_at,
            "ended_at": call.ended_at,
            "participants": [
                {
                    "id": p.id,
                    "principal_id": p.principal_id,
                    "role": p.role,
                    "state": p.state.value,
                    "reason": p.reason,
                }
                for p in call.participants.values()
            ],
            "invitations": [
                {
                    "id": i.id,
                    "expert_id": i.expert_id,
                    "inviter_id": i.inviter_id,
                    "state": i.state.value,
                }
                for i in call.invitations.values()
            ],
        }


class StationLoginRequired(AuthFailed):
    code = "station_login_required"


def error_reply(request_id: int | str | None, err: SignalingError) -> str:
    return m.encode_error(request_id, err.code, err.message)
