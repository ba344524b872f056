"""HTTP for evidence: public keys, the recordings index, verify, legal hold, originals.

Verify, legal hold and playback of originals are evidence-officer actions, each audited.
The admin sees the index (not the content) and the storage warnings.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from recorder.verify import verify
from signaling.errors import BadRequest, NotFound
from signaling.keys import HUB, STORE
from storage import ObjectStore
from storage import errors as storage_errors


def _require(request: web.Request, action: str) -> Any:
    from signaling.http_api import _require as require

    return require(request, action)


async def list_keys(request: web.Request) -> web.Response:
    """Current and retired public keys with validity: public, for anyone checking evidence."""
    keyring = request.app[HUB].recordings.keyring
    keys = await asyncio.to_thread(keyring.public_keys)
    return web.json_response({"keys": [k.to_dict() for k in keys]})


def _recording(request: web.Request) -> Any:
    try:
        return request.app[STORE].get_recording(request.match_info["call_id"])
    except storage_errors.NotFound as err:
        raise NotFound("recording", request.match_info["call_id"]) from err


async def get_recording(request: web.Request) -> web.Response:
    _require(request, "recordings.read")
    rec = _recording(request)
    objects = request.app[STORE].list_recording_objects(rec.call_id)
    return web.json_response(
        {
            "recording": {
                "call_id": rec.call_id,
                "prefix": rec.prefix,
                "status": rec.status,
                "started_at": rec.started_at,
                "ended_at": rec.ended_at,
                "chain_count": rec.chain_count,
                "chain_head": rec.chain_head,
                "manifest_key": rec.manifest_key,
                "legal_hold": rec.legal_hold,
                "objects": [
                    {
                        "key": o.key,
                        "kind": o.kind,
                        "participant_id": o.participant_id,
                        "size": o.size,
                        "sha256": o.sha256,
                        "retain_until": o.retain_until,
                        "uploaded_at": o.uploaded_at,
                    }
                    for o in objects
                ],
            }
        }
    )


async def verify_recording(request: web.Request) -> web.Response:
    principal = _require(request, "evidence.verify")
    rec = _recording(request)
    recordings = request.app[HUB].recordings
    report = await asyncio.to_thread(
        verify,
        recordings.object_store,
        rec.prefix,
        recordings.keyring.trusted(),
        expected_head=(rec.chain_count, rec.chain_head),
        require_manifest=rec.status != "recording",
    )
    request.app[STORE].append_audit(
        principal.id,
        "evidence.verified",
        rec.call_id,
        {"ok": report.ok, "problems": len(report.problems)},
    )
    return web.json_response(
        {
            "ok": report.ok,
            "report": report.format_report(),
            "problems": [{"object": p.object_key, "reason": p.reason} for p in report.problems],
        }
    )


async def set_legal_hold(request: web.Request) -> web.Response:
    principal = _require(request, "evidence.legal_hold")
    rec = _recording(request)
    from signaling.http_api import _json_body

    body = await _json_body(request)
    on = body.get("on")
    if not isinstance(on, bool):
        raise BadRequest('the body must be {"on": true|false}')
    store: ObjectStore = request.app[HUB].recordings.object_store
    keys = [o.key for o in request.app[STORE].list_recording_objects(rec.call_id)]

    def apply() -> int:
        count = 0
        for key in keys:
            if store.exists(key):
                store.set_legal_hold(key, on)
                count += 1
        return count

    count = await asyncio.to_thread(apply)
    request.app[STORE].update_recording(rec.call_id, legal_hold=on)
    request.app[STORE].append_audit(
        principal.id,
        "evidence.legal_hold_placed" if on else "evidence.legal_hold_lifted",
        rec.call_id,
        {"objects": count},
    )
    return web.json_response({"legal_hold": on, "objects": count})


async def get_original(request: web.Request) -> web.StreamResponse:
    """An original object of a recording (segment, link, manifest…), byte for byte."""
    principal = _require(request, "evidence.play")
    rec = _recording(request)
    key = rec.prefix + request.match_info["name"]
    indexed = {o.key for o in request.app[STORE].list_recording_objects(rec.call_id)}
    if key not in indexed:
        raise NotFound("object", key)
    store: ObjectStore = request.app[HUB].recordings.object_store
    info = await asyncio.to_thread(store.stat, key)
    request.app[STORE].append_audit(principal.id, "evidence.played", rec.call_id, {"object": key})
    response = web.StreamResponse(
        headers={
            "Content-Type": "video/webm"
            if key.endswith(".webm")
            else "video/x-matroska"
            if key.endswith(".mkv")
            else "video/mp4"
            if key.endswith(".mp4")
            else "application/octet-stream",
            "Content-Length": str(info.size),
            "X-Content-SHA256": info.sha256 or "",
        }
    )
    await response.prepare(request)
    chunks = iter(await asyncio.to_thread(lambda: store.open(key)))
    while True:
        chunk = await asyncio.to_thread(next, chunks, None)
        if chunk is None:
            break
        await response.write(chunk)
    await response.write_eof()
    return response


async def storage_warnings(request: web.Request) -> web.Response:
    """`warnings`: each warning's code, parameters and English message; `recording_gaps`:
    the gaps counted since the service started."""
    _require(request, "warnings.read")
    recordings = request.app[HUB].recordings
    return web.json_response(
        {"warnings": recordings.warnings(), "recording_gaps": recordings.gap_count}
    )


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/keys", list_keys)
    r.add_get("/api/recordings/{call_id}", get_recording)
    r.add_post("/api/recordings/{call_id}/verify", verify_recording)
    r.add_put("/api/recordings/{call_id}/legal-hold", set_legal_hold)
    r.add_get("/api/recordings/{call_id}/objects/{name:.+}", get_original)
    r.add_get("/api/admin/warnings", storage_warnings)
