"""`mediation verify | export | reindex | keys`: evidence commands, each audited."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from recorder import evidence
from recorder.export import ExportError, export_call
from recorder.keyring import KeyRing, TrustedKeys
from recorder.verify import FolderSource, Source, VerifyReport, verify
from signaling.config import Settings
from signaling.recording_hub import make_object_store, object_kind, participant_of
from storage import MetadataStore, ObjectStore, Recording, RecordingObject
from storage import errors as storage_errors

ACTOR = "cli"


def run(settings: Settings, store: MetadataStore, args: argparse.Namespace) -> int:
    if args.command == "verify":
        return verify_command(settings, store, args.target, args.trust)
    if args.command == "export":
        return export_command(settings, store, args.call_id, Path(args.folder))
    if args.command == "reindex":
        return reindex_command(settings, store)
    return keys_command(settings, store, args.action)


def trusted_from_args(paths: list[str]) -> TrustedKeys:
    """--trust files: PEM public keys, or key lists with validity (keys.json, GET /api/keys)."""
    trusted = TrustedKeys({})
    for path in paths:
        if path.endswith(".json"):
            trusted = trusted.merged(TrustedKeys.from_registry_file(path))
        else:
            trusted = trusted.merged(TrustedKeys.from_pem_files([path]))
    return trusted


def verify_target(
    settings: Settings, store: MetadataStore, target: str, trust: list[str]
) -> tuple[VerifyReport, str]:
    """Verify a call id (against the server's keys), a manifest or an export folder."""
    extra = trusted_from_args(trust)
    path = Path(target)
    if path.exists():
        folder = path.parent if path.is_file() else path
        source: Source = FolderSource(folder)
        prefix = source.prefix  # type: ignore[attr-defined]
        call_id = evidence.call_id_of(prefix)
        expected = None
        try:
            rec = store.get_recording(call_id)
            expected = (rec.chain_count, rec.chain_head)
        except storage_errors.NotFound:
            pass  # a bundle from elsewhere: its chain head is not in this database
        return verify(source, prefix, extra, expected_head=expected), call_id
    rec = store.get_recording(target)
    trusted = KeyRing(settings.keys_dir).trusted().merged(extra)
    report = verify(
        make_object_store(settings),
        rec.prefix,
        trusted,
        expected_head=(rec.chain_count, rec.chain_head),
        require_manifest=rec.status != "recording",
    )
    return report, rec.call_id


def verify_command(settings: Settings, store: MetadataStore, target: str, trust: list[str]) -> int:
    try:
        report, call_id = verify_target(settings, store, target, trust)
    except (ValueError, FileNotFoundError) as err:
        print(f"mediation: cannot verify {target}: {err}", file=sys.stderr)
        return 2
    except storage_errors.NotFound:
        print(f"mediation: no recording of call {target!r}", file=sys.stderr)
        return 2
    store.append_audit(
        ACTOR,
        "evidence.verified",
        call_id,
        {"target": target, "ok": report.ok, "problems": len(report.problems)},
    )
    print(report.format_report())
    if not report.ok and not trust and Path(target).exists():
        print("hint: a bundle is checked only against keys given with --trust", file=sys.stderr)
    return 0 if report.ok else 1


def export_command(settings: Settings, store: MetadataStore, call_id: str, folder: Path) -> int:
    try:
        rec = store.get_recording(call_id)
    except storage_errors.NotFound:
        print(f"mediation: no recording of call {call_id!r}", file=sys.stderr)
        return 2
    keyring = KeyRing(settings.keys_dir)
    try:
        summary = export_call(
            make_object_store(settings), rec.prefix, folder, keyring.public_keys()
        )
    except ExportError as err:
        print(f"mediation: {err}", file=sys.stderr)
        return 1
    store.append_audit(
        ACTOR,
        "evidence.exported",
        call_id,
        {"folder": str(folder), "objects": summary.objects, "bytes": summary.bytes},
    )
    print(f"exported {summary.objects} objects ({summary.bytes} bytes) to {folder}")
    for key_id in summary.missing_keys:
        print(f"warning: public key {key_id} is not in this server's key ring", file=sys.stderr)
    return 0


def reindex(objects: ObjectStore, store: MetadataStore) -> list[str]:
    """Rebuild the recordings index from the object store alone; returns the call ids.

    Status comes from the manifest (none: "interrupted"), the chain head from the last link.
    This indexes; it does not verify (`mediation verify` does).
    """
    prefixes: dict[str, list[str]] = {}
    for key in objects.list("calls/"):
        parts = key.split("/")
        if len(parts) < 5:
            continue
        prefixes.setdefault("/".join(parts[:4]) + "/", []).append(key)
    done = []
    for prefix, keys in sorted(prefixes.items()):
        call_id = evidence.call_id_of(prefix)
        links = sorted(
            (index, key)
            for key in keys
            if (index := evidence.link_index(prefix, key)) is not None and key.endswith(".json")
        )
        head = evidence.GENESIS
        started = None
        if links:
            last = objects.get(links[-1][1])
            head = evidence.link_hash(last)
            first = json.loads(objects.get(links[0][1]))
            started = int(evidence.parse_utc(first["utc"]).timestamp() * 1000)
        status, ended, manifest_key = "interrupted", None, None
        if evidence.manifest_key(prefix) in keys:
            manifest_key = evidence.manifest_key(prefix)
            manifest = json.loads(objects.get(manifest_key))
            status = manifest.get("status", "interrupted")
            if manifest.get("ended_utc"):
                ended = int(evidence.parse_utc(manifest["ended_utc"]).timestamp() * 1000)
        with store.transaction():
            row = Recording(
                call_id, prefix, status, started or 0, ended, len(links), head, manifest_key
            )
            try:
                store.get_recording(call_id)
                store.update_recording(
                    call_id,
                    status=status,
                    ended_at=ended,
                    chain_count=len(links),
                    chain_head=head,
                    manifest_key=manifest_key,
                )
            except storage_errors.NotFound:
                store.insert_recording(row)
            for key in keys:
                info = objects.stat(key)
                store.upsert_recording_object(
                    RecordingObject(
                        key,
                        call_id,
                        participant_of(prefix, key),
                        object_kind(key),
                        info.size,
                        info.sha256 or "",
                        int(info.retain_until.timestamp() * 1000) if info.retain_until else None,
                        int(info.last_modified.timestamp() * 1000) if info.last_modified else None,
                    )
                )
        done.append(call_id)
    return done


def reindex_command(settings: Settings, store: MetadataStore) -> int:
    calls = reindex(make_object_store(settings), store)
    store.append_audit(ACTOR, "recordings.reindexed", None, {"calls": len(calls)})
    print(f"reindexed {len(calls)} recordings")
    return 0


def keys_command(settings: Settings, store: MetadataStore, action: str) -> int:
    keyring = KeyRing(settings.keys_dir)
    if action == "rotate":
        old = keyring.current_key_id
        new = keyring.rotate()
        store.append_audit(ACTOR, "keys.rotated", new, {"retired": old})
        print(f"new signing key {new}; retired {old}")
        return 0
    for info in keyring.public_keys():
        state = f"retired {info.retired_utc}" if info.retired_utc else "current"
        print(f"{info.key_id}  created {info.created_utc}  {state}")
    return 0
