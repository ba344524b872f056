"""Closing a call's recording: replay files, the last event link and the signed manifest.

Used at hang-up and, after a crash, at the next start (status "interrupted"): everything it
needs is in the call's work directory — the chain (which names every closed segment and
every track) and the recorder's copies of the segments. Synchronous: run it in a thread.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from recorder.chain_writer import ChainWriter, file_digest
from recorder.files import stage_for_spool
from recorder.replay import remux_segments
from recorder.segmenter import RecorderError

log = logging.getLogger(__name__)

REPLAY_EXTENSIONS = {"vp8": "webm", "h264": "mp4", None: "webm"}
CHAIN_SUFFIXES = (".json", ".sig")  # links, their signatures and the manifest


class SpoolLike(Protocol):
    def commit_file(
        self, key: str, src_path: Path, *, sha256: str | None = ..., synced: bool = ...
    ) -> Any: ...
    def commit_bytes(self, key: str, data: bytes) -> Any: ...


@dataclass(frozen=True)
class ChainContents:
    """What a call's chain says was recorded."""

    segments: dict[str, list[str]]  # participant id -> segment object keys, in order
    tracks: list[dict[str, Any]]  # one per participant: codecs and start offsets
    count: int


def read_chain(chain_dir: Path) -> ChainContents:
    """The segments and tracks named by the (complete) links in a chain directory."""
    segments: dict[str, list[str]] = {}
    tracks: dict[str, dict[str, Any]] = {}
    count = 0
    for path in sorted(chain_dir.glob("*.json")):
        if not path.with_suffix(".sig").exists():
            continue  # a torn tail: the ChainWriter sets it aside on reopening
        link = json.loads(path.read_bytes())
        count += 1
        if link.get("kind") == "segment":
            segments.setdefault(link["participant"], []).append(link["object"])
        elif link.get("kind") == "event" and link["event"].get("type") == "track_started":
            event = link["event"]
            track = tracks.setdefault(
                event["participant"],
                {
                    "participant": event["participant"],
                    "video_codec": None,
                    "audio_codec": None,
                    "video_start_offset_ms": None,
                    "audio_start_offset_ms": None,
                    "offset_source": event["offset_source"],
                },
            )
            track[f"{event['track']}_codec"] = event["codec"]
            track[f"{event['track']}_start_offset_ms"] = event["start_offset_ms"]
    for track in tracks.values():
        offsets = [
            o
            for o in (track["video_start_offset_ms"], track["audio_start_offset_ms"])
            if o is not None
        ]
        track["start_offset_ms"] = min(offsets) if offsets else 0
    return ChainContents(segments, list(tracks.values()), count)


def build_replays(
    workdir: Path, prefix: str, contents: ChainContents, spool: SpoolLike
) -> list[dict[str, Any]]:
    """Remux each participant's segments into one seekable file and spool it."""
    codecs = {t["participant"]: t["video_codec"] for t in contents.tracks}
    replays = []
    for participant, keys in sorted(contents.segments.items()):
        paths = [workdir / "segments" / participant / key.rsplit("/", 1)[1] for key in keys]
        missing = [p for p in paths if not p.exists()]
        if missing:
            log.error("replay of %s: segments missing locally: %s", participant, missing)
            continue
        codec = codecs.get(participant)
        out = workdir / "replay" / f"{participant}.{REPLAY_EXTENSIONS[codec]}"
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            info = remux_segments(paths, out, codec)
        except RecorderError:
            # The replay is derived: without it the evidence (segments, chain, manifest)
            # is whole. The manifest then lists no replay for this participant.
            log.exception("replay of %s failed; the manifest goes without it", participant)
            continue
        key = f"{prefix}replay/{out.name}"
        # remux_segments hashed the file after its fsync: the spool takes that digest
        # instead of hashing 80 MB again (a 10-minute participant) while a user waits.
        spool.commit_file(key, out, sha256=info.sha256, synced=True)
        replays.append(
            {
                "participant": participant,
                "object": key,
                "size": info.size,
                "sha256": info.sha256,
                "start_offset_ms": info.start_offset_ms,
                "duration_ms": info.duration_ms,
            }
        )
    return replays


def commit_chain_files(
    workdir: Path, spool: SpoolLike, keys: list[str]
) -> list[tuple[str, int, str]]:
    """Copy chain files (links, signatures, manifest) from the work dir into the spool."""
    out = []
    for key in keys:
        data = (workdir / "objects" / key).read_bytes()
        spool.commit_bytes(key, data)
        out.append((key, len(data), hashlib.sha256(data).hexdigest()))
    return out


def finalize(
    *,
    workdir: Path,
    prefix: str,
    chain: ChainWriter,
    spool: SpoolLike,
    status: str,
    fields: dict[str, Any],
) -> tuple[list[tuple[str, int, str]], dict[str, Any]]:
    """Replay files, a `recording_stopped` link, then the manifest; all into the spool.

    Returns the chain files committed (key, size, sha256) and the manifest's fields.
    """
    chain_dir = workdir / "objects" / prefix / "chain"
    contents = read_chain(chain_dir)
    replays = build_replays(workdir, prefix, contents, spool)
    _, _, keys = chain.append_event({"type": "recording_stopped", "status": status})
    committed = commit_chain_files(workdir, spool, keys)
    count, head, last_key = chain.head
    manifest = dict(fields)
    manifest.update(
        status=status,
        tracks=contents.tracks,
        segments=sum(len(v) for v in contents.segments.values()),
        replay=replays,
    )
    keys = chain.write_manifest(manifest)
    committed += commit_chain_files(workdir, spool, keys)
    log.info("recording closed: %s, %d links, head %s (%s)", status, count, head[:12], last_key)
    return committed, manifest


def recorded_files(workdir: Path, prefix: str) -> list[tuple[str, Path]]:
    """(key, local file) of everything a stopped recording's chain made durable in its work
    dir: the links and signatures (a torn tail is already set aside by the reopened
    ChainWriter), and the segments they name, in chain order."""
    root = workdir / "objects"
    chain_dir = root / prefix / "chain"
    files = [
        (str(path.relative_to(root)), path)
        for path in sorted(chain_dir.glob("*"))
        if path.suffix in CHAIN_SUFFIXES and not path.name.startswith(".")
    ]
    for participant, keys in read_chain(chain_dir).segments.items():
        segments = workdir / "segments" / participant
        files += [(key, segments / key.rsplit("/", 1)[1]) for key in keys]
    return files


def respool(
    workdir: Path, spool: SpoolLike, files: list[tuple[str, Path]]
) -> list[tuple[str, int, str]]:
    """Commit work-dir files to the spool (key, size, sha256 of each): after a stop between
    a link's durable write and its spool commit, the only copy was in the work dir."""
    chain = [key for key, _ in files if key.endswith(CHAIN_SUFFIXES)]
    out = commit_chain_files(workdir, spool, chain)
    for key, path in files:
        if not key.endswith(CHAIN_SUFFIXES):  # a segment, fsynced when it closed
            size, digest = file_digest(path)
            spool.commit_file(key, stage_for_spool(path), sha256=digest, synced=True)
            out.append((key, size, digest))
    return out


def recommit_closed(
    workdir: Path, prefix: str, spool: SpoolLike
) -> tuple[list[tuple[str, int, str]], dict[str, Any]]:
    """A chain already closed by its manifest (a crash after finalize, before the index
    learnt of it): commit its files to the spool again (the same bytes are a no-op)."""
    root = workdir / "objects"
    keys = sorted(
        str(path.relative_to(root))
        for path in (root / prefix).rglob("*")
        if path.is_file() and path.suffix in CHAIN_SUFFIXES and not path.name.startswith(".")
    )
    committed = commit_chain_files(workdir, spool, keys)
    manifest = json.loads((root / prefix / "manifest.json").read_bytes())
    return committed, manifest
