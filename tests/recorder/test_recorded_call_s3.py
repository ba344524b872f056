"""A recorded call archived to S3 with Object Lock: the real service, real aiortc peers, moto
over HTTPS with its own CA. Every object is retained (GOVERNANCE by default), deletion is
refused, legal hold is placed and lifted on every object by an evidence officer, and an object
slipped into the call's prefix inside the store is caught by verify."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from signaling.config import Secret
from signaling.peer import MediaPeer
from storage import ObjectInfo, S3ObjectStore
from storage.errors import ObjectLocked

from .. import s3util
from ..s3util import S3Server, make_s3_store
from .test_recorded_call import GREEN, RED, recorded_call, segment_links, wait_closed, wait_segments

moto_tls = s3util.moto_tls  # the session's HTTPS moto server


def s3_settings(server: S3Server, bucket: str, endpoint: str | None = None) -> dict[str, object]:
    """Service settings for the S3 store on `bucket` (through `endpoint`, if given)."""
    return {
        "s3_endpoint": endpoint or server.endpoint,
        "s3_access_key": s3util.ACCESS_KEY,
        "s3_secret_key": Secret(s3util.SECRET_KEY),
        "s3_bucket": bucket,
        "s3_secure": server.ca_file is not None,
        "s3_ca_file": Path(server.ca_file) if server.ca_file else None,
        "s3_region": "us-east-1",
    }


async def record_a_call(service, segments: int = 2) -> tuple[str, dict[str, str]]:
    """A call between a kiosk and an expert, recorded until each has `segments` segments,
    hung up, closed and fully uploaded."""
    call_id, kiosk, expert, ids = await recorded_call(service)
    peers = [
        MediaPeer(kiosk, call_id, colour=RED, tone=440),
        MediaPeer(expert, call_id, colour=GREEN, tone=880),
    ]
    for peer in peers:
        await peer.start()
    try:
        await wait_segments(service, call_id, ids.values(), segments)
    finally:
        await expert.request("call.leave", call_id=call_id)
        for peer in peers:
            await peer.close()
    await wait_closed(service, call_id)
    return call_id, ids


async def stat_all(store: S3ObjectStore, keys: list[str]) -> dict[str, ObjectInfo]:
    """What the store says of each key, asked in parallel."""
    infos = await asyncio.gather(*(asyncio.to_thread(store.stat, key) for key in keys))
    return dict(zip(keys, infos, strict=True))


@pytest.fixture
def bucket() -> str:
    return f"rec-{uuid.uuid4().hex[:16]}"


async def test_recording_on_s3_is_retained_held_and_tamper_evident(
    make_service, moto_tls: S3Server, bucket: str
) -> None:
    """Recorded to S3 with Object Lock: verify passes, every object is retained in GOVERNANCE
    mode for retention_days and cannot be deleted, a legal hold is placed on every object and
    lifted (both audited), and an extra object inside the call's prefix fails verify."""
    service = await make_service(recording_segment_s=2, **s3_settings(moto_tls, bucket))
    assert isinstance(service.hub.recordings.object_store, S3ObjectStore)
    service.add_person("eve", "evidence_officer")
    officer = await service.login("eve")
    before = datetime.now(UTC)
    call_id, ids = await record_a_call(service)
    rec = service.store.get_recording(call_id)
    assert rec.status == "complete"
    # A client of our own on the same bucket, not the service's: what is really stored.
    direct = make_s3_store(moto_tls.endpoint, ca_file=moto_tls.ca_file, bucket=bucket)

    status, body = await service.http("POST", f"/api/recordings/{call_id}/verify", token=officer)
    assert status == 200 and body["ok"] is True, body["report"]

    # Retention: every object of the call, as the store reports it (and as indexed).
    stored = sorted(direct.list(rec.prefix))
    indexed = {o.key: o for o in service.store.list_recording_objects(call_id)}
    assert stored == sorted(indexed)
    kinds = {o.kind for o in indexed.values()}
    assert {"segment", "link", "signature", "manifest", "replay"} <= kinds
    assert set(segment_links(service, call_id)) == set(ids.values())
    days = service.settings.retention_days
    for key, info in (await stat_all(direct, stored)).items():
        assert info.retention_mode == "GOVERNANCE", key
        assert info.retain_until is not None, key
        assert before + timedelta(days=days) - timedelta(seconds=2) <= info.retain_until, key
        assert info.retain_until <= datetime.now(UTC) + timedelta(days=days), key
        assert indexed[key].retain_until == int(info.retain_until.timestamp() * 1000), key
        assert indexed[key].uploaded_at is not None, key

    segment = next(k for k, o in indexed.items() if o.kind == "segment")
    with pytest.raises(ObjectLocked, match="retained until"):
        direct.delete(segment)
    assert direct.exists(segment)

    # Legal hold on every object, then lifted; both audited with the officer as actor.
    status, body = await service.http(
        "PUT", f"/api/recordings/{call_id}/legal-hold", token=officer, json={"on": True}
    )
    assert status == 200 and body == {"legal_hold": True, "objects": len(stored)}
    assert all(info.legal_hold for info in (await stat_all(direct, stored)).values())
    assert service.store.get_recording(call_id).legal_hold is True
    status, body = await service.http(
        "PUT", f"/api/recordings/{call_id}/legal-hold", token=officer, json={"on": False}
    )
    assert status == 200 and body == {"legal_hold": False, "objects": len(stored)}
    assert not any(info.legal_hold for info in (await stat_all(direct, stored)).values())
    assert service.store.get_recording(call_id).legal_hold is False
    officer_id = service.store.find_account_by_username("eve").id
    audit = [
        (e.actor, e.action, e.target, e.details)
        for e in service.store.list_audit(limit=1000)
        if e.action.startswith("evidence.legal_hold")
    ]
    assert audit == [
        (officer_id, "evidence.legal_hold_placed", call_id, {"objects": len(stored)}),
        (officer_id, "evidence.legal_hold_lifted", call_id, {"objects": len(stored)}),
    ]
    # Lifting the hold does not lift the retention.
    with pytest.raises(ObjectLocked):
        direct.delete(segment)

    # Tampering inside the store: an object nobody linked, beside the real segments.
    participant = ids["caller"]
    extra = f"{rec.prefix}{participant}/000099.webm"
    direct.put(extra, direct.get(segment), content_type="video/webm")
    status, body = await service.http("POST", f"/api/recordings/{call_id}/verify", token=officer)
    assert status == 200 and body["ok"] is False
    assert body["problems"] == [
        {"object": extra, "reason": "extra object: no link or manifest names it"}
    ]
    assert body["report"].startswith("FAILED")
    verified = [
        e.details for e in service.store.list_audit(limit=1000) if e.action == "evidence.verified"
    ]
    assert verified == [{"ok": True, "problems": 0}, {"ok": False, "problems": 1}]
