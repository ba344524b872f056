"""Storage trouble during a live recorded call: the service talks to a real S3 server (moto)
through tests/tcp_proxy.py, which refuses connections, then silently drops traffic, or flips a
byte in one upload. Segments keep closing into the spool meanwhile; afterwards every object is
stored byte-identical and the recording verifies."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from collections.abc import AsyncIterator

import pytest

from recorder.verify import verify
from signaling.peer import MediaPeer
from storage import ObjectStore

from .. import s3util
from ..media.util import until
from ..s3util import S3Server, make_s3_store
from ..tcp_proxy import TcpProxy
from .test_recorded_call import GREEN, RED, recorded_call, segment_links, wait_closed, wait_segments
from .test_recorded_call_s3 import s3_settings

# The session's moto servers (plain HTTP and HTTPS).
moto_endpoint = s3util.moto_endpoint
moto_tls = s3util.moto_tls


def stored_sha(store: ObjectStore, key: str) -> str:
    """SHA-256 of the object's bytes as downloaded now (not the hash the store keeps)."""
    h = hashlib.sha256()
    for chunk in store.open(key):
        h.update(chunk)
    return h.hexdigest()


def segment_count(service, call_id: str) -> dict[str, int]:
    return {p: len(keys) for p, keys in segment_links(service, call_id).items()}


async def wait_more_segments(service, call_id: str, before: dict[str, int], more: int) -> None:
    """Wait until every participant has committed `more` segments since `before`."""

    def enough() -> bool:
        now = segment_count(service, call_id)
        return all(now.get(p, 0) >= count + more for p, count in before.items())

    await until(enough, service.hub.recordings.changed, 30)


def uploaded_at(service, call_id: str, since: dict[str, int]) -> dict[str, int | None]:
    """Upload time (None: not yet) of each segment committed since the counts `since`."""
    uploaded = {o.key: o.uploaded_at for o in service.store.list_recording_objects(call_id)}
    links = segment_links(service, call_id)
    return {key: uploaded[key] for p, keys in links.items() for key in keys[since[p] :]}


async def metric(service, name: str) -> float:
    status, text = await service.http("GET", "/metrics")
    assert status == 200
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def check_stored(service, call_id: str, direct: ObjectStore) -> None:
    """Every object of the recording is stored with exactly the bytes indexed when it was
    committed (downloaded and hashed here), each segment with its link's size and SHA-256,
    nothing else is under the prefix, the spool is empty and the recording verifies."""
    recordings = service.hub.recordings
    rec = service.store.get_recording(call_id)
    assert rec.status == "complete"
    indexed = {o.key: o for o in service.store.list_recording_objects(call_id)}
    assert sorted(direct.list(rec.prefix)) == sorted(indexed)
    hashes = await asyncio.gather(*(asyncio.to_thread(stored_sha, direct, k) for k in indexed))
    for (key, obj), digest in zip(indexed.items(), hashes, strict=True):
        assert digest == obj.sha256, key
        assert obj.uploaded_at is not None and obj.retain_until is not None, key
    links = [
        json.loads(direct.get(key))
        for key in indexed
        if key.startswith(f"{rec.prefix}chain/") and key.endswith(".json")
    ]
    segments = {link["object"]: link for link in links if link["kind"] == "segment"}
    assert {key for key, o in indexed.items() if o.kind == "segment"} == set(segments)
    for key, link in segments.items():
        assert (indexed[key].size, indexed[key].sha256) == (link["size"], link["sha256"]), key
    report = verify(
        direct,
        rec.prefix,
        recordings.keyring.trusted(),
        expected_head=(rec.chain_count, rec.chain_head),
    )
    assert report.ok, report.format_report()
    assert recordings.spool.pending() == []


@pytest.fixture
async def tls_proxy(moto_tls: S3Server) -> AsyncIterator[TcpProxy]:
    async with TcpProxy(moto_tls.host, moto_tls.port) as proxy:
        yield proxy


@pytest.fixture
async def http_proxy(moto_endpoint: str) -> AsyncIterator[TcpProxy]:
    host, port = moto_endpoint.rsplit(":", 1)
    async with TcpProxy(host, int(port), corrupt_min_bytes=4096) as proxy:
        yield proxy


async def test_storage_down_mid_call_loses_nothing(
    make_service, moto_tls: S3Server, tls_proxy: TcpProxy
) -> None:
    """Storage refuses connections, then swallows traffic, while each participant closes two
    more segments per phase: they wait in the spool (indexed, not uploaded), /metrics and the
    admin's warnings say so; once storage is back every segment arrives byte-identical and the
    recording verifies."""
    bucket = f"rec-{uuid.uuid4().hex[:16]}"
    service = await make_service(
        recording_segment_s=2, **s3_settings(moto_tls, bucket, endpoint=tls_proxy.endpoint)
    )
    service.add_person("ada", "admin")
    admin = await service.login("ada")
    recordings = service.hub.recordings
    uploader = recordings.uploader
    assert uploader is not None
    call_id, kiosk, expert, ids = await recorded_call(service)
    peers = [
        MediaPeer(kiosk, call_id, colour=RED, tone=440),
        MediaPeer(expert, call_id, colour=GREEN, tone=880),
    ]
    for peer in peers:
        await peer.start()
    try:
        await wait_segments(service, call_id, ids.values(), 1)
        await uploader.wait_until(lambda s: s.uploaded_count >= 1, 30)
        status, body = await service.http("GET", "/api/admin/warnings", token=admin)
        assert status == 200 and body["warnings"] == []

        tls_proxy.set_mode("refuse")
        before = segment_count(service, call_id)
        await wait_more_segments(service, call_id, before, 2)
        await tls_proxy.wait_until(lambda p: p.refused >= 1, 10)
        await uploader.wait_until(lambda s: s.consecutive_failures >= 1, 30)
        assert await metric(service, "mediation_upload_pending_files") > 0
        status, body = await service.http("GET", "/api/admin/warnings", token=admin)
        assert status == 200
        assert "store_failing" in [w["code"] for w in body["warnings"]], body
        down = uploaded_at(service, call_id, before)
        assert len(down) >= 4 and set(down.values()) == {None}, down

        tls_proxy.set_mode("blackhole")
        before = segment_count(service, call_id)
        await wait_more_segments(service, call_id, before, 2)
        await tls_proxy.wait_until(lambda p: p.blackholed >= 1, 30)
        down = uploaded_at(service, call_id, before)
        assert len(down) >= 4 and set(down.values()) == {None}, down
        assert await metric(service, "mediation_upload_pending_files") > 0
        status, body = await service.http("GET", "/api/admin/warnings", token=admin)
        assert status == 200 and body["warnings"], body
        uploaded_while_down = uploader.stats.uploaded_count

        tls_proxy.set_mode("pass")
    finally:
        await expert.request("call.leave", call_id=call_id)
        for peer in peers:
            await peer.close()
    await wait_closed(service, call_id, timeout=90)

    st = uploader.stats
    assert st.uploaded_count > uploaded_while_down
    assert st.failures >= 1 and st.reuploads == 0 and st.healthy
    assert await metric(service, "mediation_upload_pending_files") == 0
    status, body = await service.http("GET", "/api/admin/warnings", token=admin)
    assert status == 200 and body["warnings"] == []
    direct = make_s3_store(moto_tls.endpoint, ca_file=moto_tls.ca_file, bucket=bucket)
    await check_stored(service, call_id, direct)


async def test_an_upload_corrupted_in_flight_is_sent_again(
    make_service, moto_endpoint: str, http_proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """A proxy flips one byte in one segment upload mid-call: the read-back catches it, the
    segment is sent once more, and everything ends byte-identical and verifies."""
    bucket = f"rec-{uuid.uuid4().hex[:16]}"
    service = await make_service(
        recording_segment_s=2,
        **s3_settings(S3Server(moto_endpoint), bucket, endpoint=http_proxy.endpoint),
    )
    uploader = service.hub.recordings.uploader
    assert uploader is not None
    call_id, kiosk, expert, ids = await recorded_call(service)
    peers = [
        MediaPeer(kiosk, call_id, colour=RED, tone=440),
        MediaPeer(expert, call_id, colour=GREEN, tone=880),
    ]
    for peer in peers:
        await peer.start()
    try:
        await wait_segments(service, call_id, ids.values(), 1)
        http_proxy.set_mode("corrupt_once")
        await http_proxy.wait_until(lambda p: p.corruptions == 1, 30)
        await uploader.wait_until(lambda s: s.reuploads >= 1, 30)
        await wait_segments(service, call_id, ids.values(), 2)
    finally:
        await expert.request("call.leave", call_id=call_id)
        for peer in peers:
            await peer.close()
    await wait_closed(service, call_id)

    st = uploader.stats
    assert (http_proxy.corruptions, http_proxy.mode) == (1, "pass")
    assert (st.reuploads, st.failures) == (1, 0)
    assert await metric(service, "mediation_upload_reuploads") == 1
    (resent,) = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("re-uploading:")
    ]
    assert re.match(rf"re-uploading: key=calls/\S+/{call_id}/[0-9a-f-]+/\d{{6}}\.webm ", resent)
    direct = make_s3_store(moto_endpoint, bucket=bucket)
    await check_stored(service, call_id, direct)


async def test_the_service_starts_while_s3_is_unreachable(make_service):
    """MinIO down at start-up must not keep calls from being served: the service comes up,
    the uploader reports the store failing, and recordings wait in the spool."""
    from signaling.config import Secret
    from tests.serverproc import free_port

    service = await make_service(
        s3_endpoint=f"127.0.0.1:{free_port()}",  # nothing listens there
        s3_access_key="testing-access",
        s3_secret_key=Secret("testing-secret"),
        s3_secure=False,
    )
    status, body = await service.http("GET", "/healthz")
    assert status == 200 and body == {"status": "ok"}
    recordings = service.hub.recordings
    recordings.spool.commit_bytes("calls/2026/11/x/chain/000001.json", b"{}")
    await recordings.uploader.wait_until(lambda stats: stats.failures > 0, 30)
    assert recordings.spool.is_pending("calls/2026/11/x/chain/000001.json")
