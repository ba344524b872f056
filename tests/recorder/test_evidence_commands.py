"""The evidence commands an operator runs (`mediation verify | export | reindex | keys`) as
real subprocesses against the data of a service that recorded a real call, and the evidence
HTTP API around them (public keys, playback of originals)."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from pathlib import Path

import aiohttp

from storage import MetadataStore
from tests.serverproc import run

from .test_recorded_call_s3 import record_a_call


async def mediation(data_dir: Path, *args: str):
    """`python -m signaling.cli ARGS` with MEDIATION_DATA_DIR=data_dir, off the event loop
    (the service under test keeps running on it)."""
    return await asyncio.to_thread(
        run, list(args), data_dir.parent, MEDIATION_DATA_DIR=str(data_dir)
    )


def audit(store: MetadataStore, action: str) -> list[tuple[str, str | None, dict]]:
    return [
        (e.actor, e.target, e.details) for e in store.list_audit(limit=1000) if e.action == action
    ]


def bundle_files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


async def get_bytes(service, path: str, token: str) -> tuple[int, bytes, dict[str, str]]:
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {token}"}
        async with http.get(service.base_url + path, headers=headers) as resp:
            return resp.status, await resp.read(), dict(resp.headers)


async def test_verify_export_rotate_reindex_and_playback(make_service, tmp_path: Path) -> None:
    """After a recorded call: `verify <call_id>` says OK and is audited; `export` writes a
    bundle that verifies offline only with --trust (folder or manifest), and a flipped byte in
    it fails naming the object; `keys rotate` retires the old key, GET /api/keys shows both and
    the old recording still verifies; `reindex` into an empty database rebuilds the same
    chain head; an evidence officer plays an original byte for byte (audited), a trainer may
    not."""
    service = await make_service(recording_segment_s=2)
    call_id, ids = await record_a_call(service)
    data = service.settings.data_dir
    rec = service.store.get_recording(call_id)
    assert rec.status == "complete"
    indexed = {o.key: o for o in service.store.list_recording_objects(call_id)}
    # Every object is indexed as uploaded and retained (replay files included, which the
    # uploader may store before the recording's close indexes them).
    assert all(o.uploaded_at is not None and o.retain_until is not None for o in indexed.values())
    replays = {o.participant_id for o in indexed.values() if o.kind == "replay"}
    assert replays == set(ids.values())

    # verify <call_id>: against the store, the server's keys and the database's chain head.
    result = await mediation(data, "verify", call_id)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"OK {rec.prefix}:")
    assert f"chain head {rec.chain_count} {rec.chain_head}" in result.stdout
    assert audit(service.store, "evidence.verified") == [
        ("cli", call_id, {"target": call_id, "ok": True, "problems": 0})
    ]

    # export: every object at its relative path, the signing key, a README.
    bundle = tmp_path / "bundle"
    result = await mediation(data, "export", call_id, str(bundle))
    assert result.returncode == 0, result.stdout + result.stderr
    status, body = await service.http("GET", "/api/keys")
    assert status == 200
    ((old_key, published),) = [(k["key_id"], k["public_pem"]) for k in body["keys"]]
    pem = bundle / "keys" / f"{old_key}.pem"
    assert pem.read_text("ascii") == published  # the checker compares it with the published
    assert bundle_files(bundle) == {key[len(rec.prefix) :] for key in indexed} | {
        "README.md",
        f"keys/{old_key}.pem",
    }
    assert "manifest.json" in bundle_files(bundle)
    readme = (bundle / "README.md").read_text("utf-8")
    assert f"mediation verify <this folder> --trust keys/{old_key}.pem" in readme
    assert f"mediation verify <本文件夹> --trust keys/{old_key}.pem" in readme
    (exported,) = audit(service.store, "evidence.exported")
    assert exported[:2] == ("cli", call_id) and exported[2]["objects"] == len(indexed)

    result = await mediation(data, "verify", str(bundle), "--trust", str(pem))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"OK {rec.prefix}:")
    result = await mediation(data, "verify", str(bundle / "manifest.json"), "--trust", str(pem))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK")
    # A key shipped inside the bundle is not trusted by itself.
    result = await mediation(data, "verify", str(bundle))
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith("FAILED") and "--trust" in result.stderr

    # One flipped byte in one segment of a copy of the bundle: fails, naming that object.
    tampered = tmp_path / "tampered"
    shutil.copytree(bundle, tampered)
    segment = sorted(k for k, o in indexed.items() if o.kind == "segment")[-1]
    path = tampered / segment[len(rec.prefix) :]
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    result = await mediation(data, "verify", str(tampered), "--trust", str(pem))
    assert result.returncode == 1, result.stdout + result.stderr
    failed = [line.strip() for line in result.stdout.strip().splitlines()[1:]]
    assert failed and all(line.startswith(f"{segment}: ") for line in failed), result.stdout
    assert "sha256" in failed[0]

    # keys rotate: a new current key; both published, the old one retired; old evidence
    # still verifies (the old key was valid when it signed).
    result = await mediation(data, "keys", "rotate")
    assert result.returncode == 0, result.stdout + result.stderr
    new_key = result.stdout.split()[3].rstrip(";")
    assert result.stdout.strip() == f"new signing key {new_key}; retired {old_key}"
    assert new_key != old_key
    status, body = await service.http("GET", "/api/keys")  # no credentials: public
    assert status == 200
    keys = {k["key_id"]: k for k in body["keys"]}
    assert set(keys) == {old_key, new_key}
    assert keys[old_key]["retired_utc"] is not None and keys[new_key]["retired_utc"] is None
    assert keys[new_key]["public_pem"].startswith("-----BEGIN PUBLIC KEY-----")
    assert audit(service.store, "keys.rotated") == [("cli", new_key, {"retired": old_key})]
    result = await mediation(data, "verify", call_id)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK")

    # reindex into a fresh database beside a copy of the objects and keys.
    fresh = tmp_path / "fresh" / "data"
    fresh.mkdir(parents=True)
    shutil.copytree(service.settings.objects_dir, fresh / "objects")
    shutil.copytree(service.settings.keys_dir, fresh / "keys")
    result = await mediation(fresh, "reindex")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "reindexed 1 recordings"
    with MetadataStore.open(fresh / "metadata.sqlite3") as db:
        again = db.get_recording(call_id)
        assert (again.prefix, again.status, again.manifest_key) == (
            rec.prefix,
            "complete",
            rec.manifest_key,
        )
        assert (again.chain_count, again.chain_head) == (rec.chain_count, rec.chain_head)

        def row(o):
            return (o.kind, o.participant_id, o.size, o.sha256, o.retain_until)

        rebuilt = {o.key: row(o) for o in db.list_recording_objects(call_id)}
        assert rebuilt == {k: row(o) for k, o in indexed.items()}
        assert audit(db, "recordings.reindexed") == [("cli", None, {"calls": 1})]
    result = await mediation(fresh, "verify", call_id)  # the rebuilt head checks out
    assert result.returncode == 0, result.stdout + result.stderr

    # Playback of an original: the evidence officer gets its exact bytes; audited.
    service.add_person("eve", "evidence_officer")
    service.add_person("tom", "trainer")
    officer, trainer = await service.login("eve"), await service.login("tom")
    name = segment[len(rec.prefix) :]
    status, body, headers = await get_bytes(
        service, f"/api/recordings/{call_id}/objects/{name}", officer
    )
    assert status == 200
    assert hashlib.sha256(body).hexdigest() == indexed[segment].sha256
    assert len(body) == indexed[segment].size
    assert headers["Content-Type"] == "video/webm"
    assert headers["X-Content-SHA256"] == indexed[segment].sha256
    officer_id = service.store.find_account_by_username("eve").id
    assert audit(service.store, "evidence.played") == [(officer_id, call_id, {"object": segment})]
    status, body, _ = await get_bytes(service, f"/api/recordings/{call_id}/objects/{name}", trainer)
    assert status == 403
    assert len(audit(service.store, "evidence.played")) == 1
