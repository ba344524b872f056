"""Signaling's side of the media relay: media.* requests, server offers, liveness.

Owns one `media.router.CallMedia` per active call and is its `MediaSignals`:
server offers go to the signaling session that joined the media, and media
events (connected, media_timeout) become participant state changes in the
dispatcher.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import time
from typing import TYPE_CHECKING, Any

from media.router import CallMedia, MediaError, MediaSettings
from signaling import messages as m
from signaling.dispatch import (
    CallChanged,
    CallState,
    Effect,
    Participant,
    ParticipantChanged,
    ParticipantState,
)
from signaling.errors import CodecUnsupported, InvalidState, MediaFailed, NotFound

if TYPE_CHECKING:
    from signaling.hub import Hub, SignalSession

log = logging.getLogger(__name__)


def turn_credentials(
    secret: str, user: str, ttl_s: float, now: float | None = None
) -> tuple[str, str]:
    """TURN REST credentials (coturn `use-auth-secret`): user "<expiry>:<id>", HMAC-SHA1 key."""
    expiry = int((now if now is not None else time.time()) + ttl_s)
    username = f"{expiry}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def _port_range(text: str) -> range | None:
    if not text:
        return None
    first, last = (int(x) for x in text.split("-"))
    return range(first, last + 1)


class CallMediaHub:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        s = hub.settings
        self.settings = MediaSettings(
            video_codec=s.video_codec,
            max_video_kbps=s.max_video_kbps,
            media_inactivity_s=s.media_inactivity_s,
            outlet_packets=s.media_queue_packets,
            udp_ports=_port_range(s.media_udp_ports),
            public_ip=s.media_public_ip or None,
            interfaces=s.media_interfaces,
        )
        self.calls: dict[str, CallMedia] = {}
        self._sessions: dict[str, SignalSession] = {}  # participant id -> session doing media
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- requests ---------------------------------------------------------------------------

    def _participant(self, session: SignalSession, call_id: str) -> Participant:
        call = self.hub.dispatcher.calls.get(call_id)
        if call is not None:
            for p in call.participants.values():
                if p.principal_id == session.principal.id and p.present:
                    if call.state is not CallState.ACTIVE:
                        raise InvalidState(f"call {call_id} is {call.state}, not active")
                    return p
        raise NotFound("call", call_id)

    async def handle(self, session: SignalSession, request: m.Request) -> dict[str, Any]:
        p = request.payload
        participant = self._participant(session, p["call_id"])
        call_id = p["call_id"]
        try:
            if request.type == "media.join":
                media = self.calls.get(call_id)
                if media is None:
                    media = self.calls[call_id] = CallMedia(call_id, self.settings, self)
                self._sessions[participant.id] = session
                sdp = await media.join(participant.id, p["sdp"])
                self.hub.recordings.on_media(call_id, participant.id, media)
                # Server offers must follow the answer on the wire: start them after it.
                asyncio.get_running_loop().call_soon(media.ready, participant.id)
                self.hub.dispatcher.media_back(participant.id)
                return {"sdp": sdp, "participant_id": participant.id}
            media = self.calls.get(call_id)
            if media is None:
                raise InvalidState("join the media first (media.join)")
            if request.type == "media.answer":
                media.answer(participant.id, p["sdp"], p["offer_id"])
                return {}
            if request.type == "media.candidate":
                await media.add_candidate(
                    participant.id, p["candidate"], p.get("sdp_mid"), p.get("sdp_mline_index")
                )
                return {}
            if request.type == "media.state":
                media.set_enabled(participant.id, audio=p["audio"], video=p["video"])
                self._tell_others(
                    call_id,
                    participant,
                    "media.state",
                    {
                        "call_id": call_id,
                        "participant_id": participant.id,
                        "audio": p["audio"],
                        "video": p["video"],
                    },
                )
                return {}
        except MediaError as err:
            if err.code == "codec_unsupported":
                raise CodecUnsupported(str(err)) from err
            raise MediaFailed(str(err)) from err
        raise InvalidState(f"unhandled {request.type}")

    def _tell_others(
        self, call_id: str, sender: Participant, event: str, payload: dict[str, Any]
    ) -> None:
        call = self.hub.dispatcher.calls.get(call_id)
        if call is None:
            return
        for p in call.participants.values():
            if p.present and p.id != sender.id:
                for session in self.hub.sessions_of(p.principal_id):
                    session.emit(event, payload)

    def ice_servers(self, principal_id: str) -> list[dict[str, Any]]:
        """STUN/TURN servers for a client, with short-lived TURN credentials."""
        s = self.hub.settings
        if not s.ice_urls:
            return []
        stun = [u for u in s.ice_urls if u.startswith("stun:")]
        turn = [u for u in s.ice_urls if not u.startswith("stun:")]
        servers: list[dict[str, Any]] = []
        if stun:
            servers.append({"urls": stun})
        if turn and s.turn_secret:
            username, credential = turn_credentials(
                s.turn_secret.reveal(), principal_id, s.turn_credential_ttl_s
            )
            servers.append({"urls": turn, "username": username, "credential": credential})
        return servers

    # --- MediaSignals ----------------------------------------------------------------------

    def send_offer(
        self,
        call_id: str,
        participant_id: str,
        sdp: str,
        tracks: list[dict[str, str]],
        offer_id: int,
    ) -> None:
        """To the session that joined the media; if it is gone, to the principal's others."""
        payload = {"call_id": call_id, "sdp": sdp, "tracks": tracks, "offer_id": offer_id}
        session = self._sessions.get(participant_id)
        if session is not None and session.connection is not None:
            session.emit("media.offer", payload)
            return
        call = self.hub.dispatcher.calls.get(call_id)
        participant = call.participants.get(participant_id) if call is not None else None
        if participant is not None:
            for other in self.hub.sessions_of(participant.principal_id):
                if other.connection is not None:
                    self._sessions[participant_id] = other
                    other.emit("media.offer", payload)
                    return

    def media_event(self, call_id: str, participant_id: str, event: str) -> None:
        dispatcher = self.hub.dispatcher
        if event == "media_timeout":
            dispatcher.media_lost(participant_id)
        elif event in ("connected", "media_back"):
            dispatcher.media_back(participant_id)
        elif event == "failed":
            log.warning("participant %s media failed", participant_id)
        self.hub.apply_effects()

    # --- life cycle -------------------------------------------------------------------------

    def on_effect(self, effect: Effect) -> None:
        """Tear media down when a participant is gone for good or the call ends."""
        if isinstance(effect, CallChanged) and effect.new == CallState.ENDED:
            media = self.calls.pop(effect.call.id, None)
            if media is not None:
                for participant_id in media.peers:
                    self._keep_stats(media, participant_id)
                self._spawn(media.close())
            for p in effect.call.participants.values():
                self._sessions.pop(p.id, None)
        elif isinstance(effect, ParticipantChanged) and (
            effect.new == ParticipantState.LEFT
            or (
                effect.new == ParticipantState.DROPPED and effect.participant.grace_deadline is None
            )
        ):
            media = self.calls.get(effect.call.id)
            self._sessions.pop(effect.participant.id, None)
            if media is not None and effect.participant.id in media.peers:
                self._keep_stats(media, effect.participant.id)
                self._spawn(media.leave(effect.participant.id))

    def _keep_stats(self, media: CallMedia, participant_id: str) -> None:
        """The call's record keeps each participant's last media figures."""
        stats = media.stats(participant_id)
        if stats:
            self.hub.store.save_media_stats(participant_id, media.call_id, stats)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for media in list(self.calls.values()):
            await media.close()
        self.calls.clear()
        await asyncio.gather(*self._tasks, return_exceptions=True)
