"""`kill -9` mid-call: after restart every closed segment is stored, verifies, and the
recording says it was interrupted, naming its last link."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from recorder.keyring import KeyRing
from recorder.verify import verify
from signaling.client import SignalingClient, login
from signaling.peer import MediaPeer
from storage import LocalObjectStore, MetadataStore
from tests.serverproc import free_port, run, start_server

ENV = {
    "MEDIATION_RECORDING_SEGMENT_S": "2",
    "MEDIATION_MEDIA_INTERFACES": "127.0.0.1",
    "MEDIATION_LOG_FORMAT": "json",
}


class Log:
    """A server's output, line by line, with a wait for the line that matches."""

    def __init__(self, server) -> None:
        self.server = server
        self.lines: list[str] = server.banner.splitlines(keepends=True)  # up to "serving on"
        self.changed = asyncio.Event()
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        stream = self.server.proc.stdout
        while line := await stream.readline():
            self.lines.append(line.decode())
            self.changed.set()

    def messages(self) -> list[str]:
        out = []
        for line in self.lines:
            try:
                out.append(json.loads(line)["msg"])
            except (ValueError, KeyError, TypeError):
                out.append(line)
        return out

    async def wait(self, condition, timeout: float = 60) -> None:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    self.changed.clear()
                    if condition(self.messages()):
                        return
                    await self.changed.wait()
        except TimeoutError:
            tail = "".join(self.lines[-30:])
            raise AssertionError(f"server log did not show it; last lines:\n{tail}") from None


def committed_segments(messages: list[str]) -> dict[str, set[str]]:
    """Segment keys the server logged as committed (linked, signed, spooled), by participant."""
    out: dict[str, set[str]] = {}
    for text in messages:
        if match := re.match(r"segment committed: key=(\S+)", text):
            key = match[1]
            out.setdefault(key.split("/")[4], set()).add(key)
    return out


async def test_sigkill_mid_call_loses_no_closed_segment(tmp_path: Path, servers) -> None:
    port = free_port()
    server = await start_server(tmp_path, port, **ENV)
    servers.append(server)
    passwords = dict(re.findall(r"user (\S+)\s+password (\S+)", server.banner))
    kiosk_token = re.findall(r"token (dev_\S+)", server.banner)[0]
    log = Log(server)
    url = f"ws://127.0.0.1:{port}/ws"
    session = await login(server.base_url, "expert_family", passwords["expert_family"])
    expert = await SignalingClient.connect(url, session_token=session)
    await expert.request("presence.set", availability="available")
    kiosk = await SignalingClient.connect(url, device_token=kiosk_token)
    launched = await kiosk.request("call.launch", consent_evidence=True, dispute_type="family")
    call_id = launched["call"]["id"]
    ring = await expert.next_event("call.ring", timeout=10)
    await expert.request("call.accept", invitation_id=ring["payload"]["invitation_id"])
    peers = [
        MediaPeer(kiosk, call_id, colour=(255, 0, 0)),
        MediaPeer(expert, call_id, colour=(0, 255, 0), tone=880),
    ]
    for peer in peers:
        await peer.start()
    try:
        await log.wait(
            lambda msgs: (
                len(c := committed_segments(msgs)) == 2
                and all(len(keys) >= 3 for keys in c.values())
            )
        )
        closed = committed_segments(log.messages())
        server.proc.kill()  # SIGKILL: no shutdown, the open segments are lost
        await server.proc.wait()
        closed = committed_segments(log.messages())  # all lines up to the kill
    finally:
        for peer in peers:
            await peer.close()
        await kiosk.close()
        await expert.close()

    # A kill between a link's (or segment's) durable write in the work dir and its spool
    # commit leaves the work dir's copy only: as if it came before every commit still
    # waiting to be uploaded, take those out of the spool.
    spool = tmp_path / "data" / "spool"
    unsent = [p for p in spool.rglob("*") if p.is_file() and call_id in str(p) and p.name[0] != "."]
    assert unsent, "nothing was waiting for upload: the case below is not exercised"
    for path in unsent:
        path.unlink()

    restarted = await start_server(tmp_path, port, **ENV)
    servers.append(restarted)
    log2 = Log(restarted)
    await log2.wait(lambda msgs: any(m.startswith("recording interrupted") for m in msgs))
    manifest_sig = None
    with MetadataStore.open(tmp_path / "data" / "metadata.sqlite3") as db:
        rec = db.get_recording(call_id)
        manifest_sig = rec.prefix + "manifest.sig"
    await log2.wait(lambda msgs: any(m.startswith(f"uploaded: key={manifest_sig}") for m in msgs))

    objects = LocalObjectStore(tmp_path / "data" / "objects")
    stored: dict[str, set[str]] = {}
    for key in objects.list(rec.prefix):
        if key.endswith((".webm", ".mkv")) and "/replay/" not in key:
            stored.setdefault(key.split("/")[4], set()).add(key)
    assert stored == closed
    assert rec.status == "interrupted"
    manifest = json.loads(objects.get(rec.prefix + "manifest.json"))
    assert manifest["status"] == "interrupted"
    assert manifest["chain"]["count"] == rec.chain_count
    assert manifest["chain"]["last_object"].startswith(rec.prefix + "chain/")
    # The call is last known alive at the last link written before the kill, not at the
    # restart, whose recovery closed the chain with a recording_stopped link of its own.
    keys = sorted(k for k in objects.list(rec.prefix + "chain/") if k.endswith(".json"))
    chain = [json.loads(objects.get(k)) for k in keys]
    assert chain[-1]["event"]["type"] == "recording_stopped"
    assert manifest["ended_utc"] == chain[-2]["utc"] < chain[-1]["utc"]
    report = verify(
        objects,
        rec.prefix,
        KeyRing(tmp_path / "data" / "keys").trusted(),
        expected_head=(rec.chain_count, rec.chain_head),
    )
    assert report.ok, report.format_report()
    # The operator's command says the same.
    restarted.proc.terminate()
    await restarted.proc.wait()
    result = run(["verify", call_id], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK")
