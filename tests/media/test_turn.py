"""A relay-only peer connects through Debian's coturn with credentials from signaling."""

from __future__ import annotations

import asyncio
import shutil
import socket

import pytest

from signaling.config import Secret
from signaling.peer import MediaPeer
from tests.media.test_relay import GREEN, RED, active_call, near

SECRET = "turn-shared-secret"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def coturn(tmp_path):
    """coturn on loopback, TURN REST auth, loopback peers allowed (test only)."""
    assert shutil.which("turnserver"), "coturn is installed by ./dev.sh test"
    port = free_udp_port()
    proc = await asyncio.create_subprocess_exec(
        "turnserver",
        "-n",
        "--listening-ip=127.0.0.1",
        "--relay-ip=127.0.0.1",
        f"--listening-port={port}",
        "--use-auth-secret",
        f"--static-auth-secret={SECRET}",
        "--realm=mediation",
        "--allow-loopback-peers",
        "--no-cli",
        "--no-tls",
        "--no-dtls",
        "--min-port=49160",
        "--max-port=49400",
        f"--pidfile={tmp_path / 'turn.pid'}",
        f"--userdb={tmp_path / 'turndb'}",
        "--log-file=stdout",
        "--simple-log",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    async with asyncio.timeout(15):
        while b"Total General servers" not in await proc.stdout.readline():
            if proc.returncode is not None:
                raise AssertionError("turnserver exited")
    yield port
    proc.terminate()
    await proc.wait()


async def test_a_relay_only_peer_connects_through_turn(make_service, coturn):
    service = await make_service(ice_urls=(f"turn:127.0.0.1:{coturn}",), turn_secret=Secret(SECRET))
    call_id, kiosk, expert, ids = await active_call(service)
    snapshot = await kiosk.next_event("snapshot")
    (ice,) = snapshot["payload"]["ice_servers"]
    assert ice["urls"] == [f"turn:127.0.0.1:{coturn}"]
    assert ice["username"].endswith(":" + kiosk.auth["principal"]["id"])
    kiosk_peer = MediaPeer(kiosk, call_id, colour=RED, tone=440, ice_servers=[ice], relay_only=True)
    expert_peer = MediaPeer(expert, call_id, colour=GREEN, tone=880)
    try:
        await kiosk_peer.start()
        await expert_peer.start()
        seen = await expert_peer.wait_checked(ids["caller"], timeout=30)
        assert near(seen["video"].colours[-1], RED)
        await kiosk_peer.wait_checked(ids["expert"], timeout=30)
        transport = kiosk_peer.pc.getTransceivers()[0].receiver.transport.transport
        pair = transport._connection._nominated[1]
        assert pair.local_candidate.type == "relay"
    finally:
        await kiosk_peer.close()
        await expert_peer.close()
