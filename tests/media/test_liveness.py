"""A participant that dies without a goodbye is noticed by media inactivity and may rejoin."""

from __future__ import annotations

import asyncio
import sys

from signaling.peer import MediaPeer
from tests.media.test_relay import GREEN, RED, near
from tests.media.util import until


async def spawn_kiosk(service, token: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "signaling.peer",
        "--url",
        service.ws_url,
        "--device-token",
        token,
        "--colour",
        "255,0,0",
        "--loopback-only",
        stdout=asyncio.subprocess.PIPE,
    )


async def read_line(proc: asyncio.subprocess.Process, prefix: str) -> str:
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise AssertionError(f"peer process exited before {prefix}")
            if line.startswith(prefix):
                return line.split()[1]


async def test_a_killed_peer_is_dropped_for_media_timeout_and_rejoins_as_itself(make_service):
    service = await make_service(media_inactivity_s=1.0)
    expert = await service.expert("amy", specialties=["family"])
    _, token = service.add_device("kiosk")
    first = await spawn_kiosk(service, token)
    second = None
    try:
        ring = await expert.next_event("call.ring", timeout=30)
        call_id = ring["payload"]["call_id"]
        await expert.request("call.accept", invitation_id=ring["payload"]["invitation_id"])
        participant_id = await read_line(first, "MEDIA_JOINED")
        expert_peer = MediaPeer(expert, call_id, colour=GREEN, keep_decoding=True)
        await expert_peer.start()
        seen = await expert_peer.wait_checked(participant_id, kinds=("video",))
        assert near(seen["video"].colours[-1], RED)

        first.kill()  # SIGKILL: no RTCP BYE, no DTLS close, no WebSocket close
        await first.wait()
        dropped = await expert.next_event(
            "call.updated",
            where=lambda p: any(
                x["id"] == participant_id and x["state"] == "dropped"
                for x in p["call"]["participants"]
            ),
            timeout=15,
        )
        (kiosk_view,) = [
            x for x in dropped["payload"]["call"]["participants"] if x["id"] == participant_id
        ]
        assert kiosk_view["reason"] == "media_timeout"
        assert dropped["payload"]["call"]["state"] == "active"

        track = seen["video"]
        frames_before = len(track.counters)
        tap = service.hub.media.calls[call_id].tap(participant_id, "video", bound=4096)
        second = await spawn_kiosk(service, token)
        assert await read_line(second, "MEDIA_JOINED") == participant_id  # the same participant
        back = await expert.next_event(
            "call.updated",
            where=lambda p: any(
                x["id"] == participant_id and x["state"] == "connected"
                for x in p["call"]["participants"]
            ),
            timeout=15,
        )
        assert back["payload"]["call"]["state"] == "active"
        await until(lambda: len(track.counters) >= frames_before + 5, track.progress, timeout=15)
        assert near(track.colours[-1], RED)
        # The recorder's tap followed the participant to its new connection.
        async with asyncio.timeout(10):
            while not (await tap.get())[4]:  # keyframe
                pass
        tap.close()
        await expert_peer.close()
    finally:
        for proc in (first, second):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
