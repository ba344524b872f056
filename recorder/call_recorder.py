"""One call's recording: tapped packets → segments → signed chain links → the spool.

Every participant has a `ParticipantRecorder` that drains its taps (video and audio) in
batches and hands them to the call's single recorder thread, where frames are assembled,
muxed by stream copy into segments, and each closed segment is hashed, linked into the
call's chain (one writer: that same thread) and committed to the spool for upload. The
event loop never muxes, hashes or writes a file.

A gap in what the recorder got (tap overflow, packets the server never received, a
participant's drop) becomes a gap record attached to that participant's next segment link,
or an event link when no segment follows; the first frame of every track becomes a
`track_started` event link (codec and start offset), so the chain alone describes the
recording and a crashed call can be closed from it.

Work directory of a call (`workdir`): `segments/<participant_id>/000001.webm` (the
recorder's copies, hard-linked into the spool when closed), `objects/<key>` (the chain,
written by the ChainWriter), `replay/` (built after the call).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from recorder.chain_writer import Appended, ChainWriter, file_digest
from recorder.evidence import segment_key, utc_iso
from recorder.segmenter import EXTENSIONS, FrameAssembler, RtpClock, Segmenter, SegmentInfo

log = logging.getLogger(__name__)

KINDS = ("video", "audio")


@dataclass(frozen=True)
class RecorderSettings:
    segment_s: float = 10.0
    tap_packets: int = 2048
    batch_s: float = 0.1  # taps are drained at most this often (fewer thread hops)


class Tap(Protocol):
    """What the recorder needs of a media tap (media.router.PacketTap)."""

    overflow: int
    closed: bool

    def drain(self) -> list[Any]: ...
    def request_key_frame(self) -> None: ...


class TapProvider(Protocol):
    """Makes taps on a participant's published tracks (media.router.CallMedia)."""

    def tap(
        self, participant_id: str, kind: str, bound: int = ..., ready: asyncio.Event | None = ...
    ) -> Any: ...


class SpoolLike(Protocol):
    def commit_file(self, key: str, src_path: Path) -> Any: ...
    def commit_bytes(self, key: str, data: bytes) -> Any: ...


@dataclass(frozen=True)
class StoredObject:
    key: str
    kind: str  # segment | link | signature
    participant_id: str | None
    size: int
    sha256: str


@dataclass(frozen=True)
class Committed:
    """One link made durable in the work dir and committed to the spool."""

    index: int
    link_hash: str
    objects: tuple[StoredObject, ...]


@dataclass
class _Batch:
    committed: list[Committed] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)
    want_key_frame: bool = False


class ParticipantRecorder:
    """Segments of one participant, across reconnects (its taps follow it)."""

    def __init__(self, call: CallRecorder, participant_id: str) -> None:
        self.call = call
        self.participant_id = participant_id
        self.ready = asyncio.Event()  # shared by this participant's taps
        self.taps: dict[str, Tap] = {}
        codec = call.video_codec
        self.segmenter = Segmenter(
            call.workdir / "segments" / participant_id, codec, call.settings.segment_s
        )
        self.codecs = {"video": codec, "audio": "opus"}
        self.assemblers = {kind: FrameAssembler(self.codecs[kind]) for kind in KINDS}
        self.clocks = {kind: RtpClock(self.codecs[kind], call.call_start_ms) for kind in KINDS}
        self.started_tracks: set[str] = set()
        self.pending_gaps: list[dict[str, Any]] = []  # recorder thread only
        self.overflow_seen = {kind: 0 for kind in KINDS}
        self.overflow_unexplained = {kind: 0 for kind in KINDS}
        self.stopping = False
        self.task: asyncio.Task[None] | None = None
        self.segments = 0
        self.frames = {kind: 0 for kind in KINDS}
        self.gaps = 0

    # --- event loop side ----------------------------------------------------------------

    def attach(self, media: TapProvider, kinds: list[str]) -> None:
        """Tap whatever of `kinds` the participant publishes and is not tapped yet."""
        for kind in kinds:
            if kind in self.taps and not self.taps[kind].closed:
                continue  # a tap follows the participant across reconnects by itself
            self.taps[kind] = media.tap(
                self.participant_id, kind, self.call.settings.tap_packets, self.ready
            )
        if self.task is None:
            self.task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        self.stopping = True
        self.ready.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                self.ready.clear()
                batch: list[Any] = []
                for tap in self.taps.values():
                    batch.extend(tap.drain())
                if not batch:
                    if self.stopping:
                        break
                    await self.ready.wait()
                    continue
                overflow = {kind: tap.overflow for kind, tap in self.taps.items()}
                result = await loop.run_in_executor(
                    self.call.executor, self._process, batch, overflow
                )
                self.call.report(result)
                if result.want_key_frame and "video" in self.taps:
                    self.taps["video"].request_key_frame()
                if not self.stopping:
                    await asyncio.sleep(self.call.settings.batch_s)  # let a batch gather
        finally:
            result = await loop.run_in_executor(self.call.executor, self._finish)
            self.call.report(result)

    # --- recorder thread ----------------------------------------------------------------

    def _process(self, batch: list[Any], overflow: dict[str, int]) -> _Batch:
        out = _Batch()
        for kind, count in overflow.items():
            self.overflow_unexplained[kind] += count - self.overflow_seen[kind]
            self.overflow_seen[kind] = count
        for item in batch:
            kind = item.kind
            if not hasattr(item, "payload"):  # SourceChanged: a new peer connection
                self.assemblers[kind] = FrameAssembler(self.codecs[kind])
                self.clocks[kind] = RtpClock(self.codecs[kind], self.call.call_start_ms)
                continue
            assembler = self.assemblers[kind]
            logged = len(assembler.gap_log)
            frames = assembler.feed(item)
            for seq_from, seq_to, packets in assembler.gap_log[logged:]:
                reason = "packet_loss"
                if self.overflow_unexplained[kind] > 0:
                    reason = "tap_overflow"
                    self.overflow_unexplained[kind] = max(
                        0, self.overflow_unexplained[kind] - packets
                    )
                gap = self._gap(kind, seq_from, seq_to, packets, item.arrival_ms, reason)
                out.gaps.append(gap)
            for frame in frames:
                pts = self.clocks[kind].to_ms(frame.rtp_timestamp, frame.arrival_ms)
                if kind not in self.started_tracks:
                    self.started_tracks.add(kind)
                    out.committed.append(self._track_started(kind, pts))
                self.frames[kind] += 1
                for path in self.segmenter.add(kind, frame, pts):
                    out.committed.append(self._commit_segment(self.segmenter.info[path]))
                if kind == "video" and self.segmenter.due(pts):
                    out.want_key_frame = True
        if self.assemblers["video"].waiting_for_keyframe and "video" in self.started_tracks:
            out.want_key_frame = True
        return out

    def _finish(self) -> _Batch:
        out = _Batch()
        for path in self.segmenter.close():
            out.committed.append(self._commit_segment(self.segmenter.info[path]))
        if self.pending_gaps:
            gaps, self.pending_gaps = self.pending_gaps, []
            for gap in gaps:
                out.committed.append(self.call.commit_event({"type": "gap", **gap}))
        return out

    def _gap(
        self,
        kind: str,
        seq_from: int | None,
        seq_to: int | None,
        packets: int,
        at_ms: int,
        reason: str,
    ) -> dict[str, Any]:
        gap = {
            "participant": self.participant_id,
            "track": kind,
            "seq_from": seq_from,
            "seq_to": seq_to,
            "packets": packets,
            "utc": utc_iso(at_ms),
            "reason": reason,
        }
        self.pending_gaps.append(gap)
        self.gaps += 1
        return gap

    def _track_started(self, kind: str, pts_ms: int) -> Committed:
        return self.call.commit_event(
            {
                "type": "track_started",
                "participant": self.participant_id,
                "track": kind,
                "codec": self.codecs[kind],
                "start_offset_ms": pts_ms,
                # aiortc keeps no public RTCP sender-report mapping: offsets come from
                # packet arrival times at the server (15-85 ms apart in practice).
                "offset_source": "arrival",
            }
        )

    def _commit_segment(self, info: SegmentInfo) -> Committed:
        self.segments += 1
        size, digest = file_digest(info.path)
        key = segment_key(self.call.prefix, self.participant_id, info.index, info.path.suffix[1:])
        gaps = [{k: v for k, v in g.items() if k != "participant"} for g in self.pending_gaps]
        self.pending_gaps = []
        start = self.call.call_start_ms
        committed = self.call.commit_link(
            lambda chain: chain.append_segment(
                participant=self.participant_id,
                object_key=key,
                size=size,
                sha256=digest,
                start_utc=utc_iso(start + info.first_pts_ms),
                end_utc=utc_iso(start + info.last_pts_ms),
                first_pts_ms=info.first_pts_ms,
                last_pts_ms=info.last_pts_ms,
                gaps=gaps,
            ),
            extra=[StoredObject(key, "segment", self.participant_id, size, digest)],
        )
        # The link is durable first; then the segment joins the spool (a hard link: the
        # recorder keeps its copy to build the replay file after the call).
        staged = info.path.with_name(info.path.name + ".spool")
        if staged.exists():
            staged.unlink()
        os.link(info.path, staged)
        self.call.spool.commit_file(key, staged)
        return committed


class CallRecorder:
    """The recording of one call; one thread does all its file work, in order."""

    def __init__(
        self,
        *,
        call_id: str,
        prefix: str,
        call_start_ms: int,
        video_codec: str,
        workdir: Path,
        chain: ChainWriter,
        spool: SpoolLike,
        settings: RecorderSettings,
        on_batch: Callable[[CallRecorder, list[Committed], list[dict[str, Any]]], None],
    ) -> None:
        if video_codec not in EXTENSIONS:
            raise ValueError(f"unsupported video codec {video_codec!r}")
        self.call_id = call_id
        self.prefix = prefix
        self.call_start_ms = call_start_ms
        self.video_codec = video_codec
        self.workdir = workdir
        self.chain = chain
        self.spool = spool
        self.settings = settings
        self.on_batch = on_batch
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"recorder-{call_id[-8:]}")
        self.participants: dict[str, ParticipantRecorder] = {}
        self.stopped = False

    # --- event loop side ----------------------------------------------------------------

    def attach(self, participant_id: str, media: TapProvider, kinds: list[str]) -> None:
        """A participant's media joined (or rejoined): record what it publishes."""
        if self.stopped:
            return
        recorder = self.participants.get(participant_id)
        if recorder is None:
            recorder = self.participants[participant_id] = ParticipantRecorder(self, participant_id)
        recorder.attach(media, kinds)

    async def event(self, event: dict[str, Any]) -> Committed:
        """An event link (consent, joins, drops…), in order with the segment links."""
        loop = asyncio.get_running_loop()
        committed = await loop.run_in_executor(self.executor, self.commit_event, event)
        self.on_batch(self, [committed], [])
        return committed

    async def participant_dropped(self, participant_id: str, at_ms: int) -> None:
        """A drop is an event link and a gap record in the participant's next segment."""
        await self.event({"type": "participant_dropped", "participant": participant_id})
        recorder = self.participants.get(participant_id)
        if recorder is not None:
            loop = asyncio.get_running_loop()
            gap = await loop.run_in_executor(
                self.executor,
                recorder._gap,
                "video",
                None,
                None,
                0,
                at_ms,
                "participant_dropped",
            )
            self.on_batch(self, [], [gap])

    async def stop(self) -> None:
        """Close every open segment (all of it linked and spooled) and stop the thread."""
        self.stopped = True
        for recorder in self.participants.values():
            recorder.stop()
        tasks = [r.task for r in self.participants.values() if r.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)

    def close_executor(self) -> None:
        self.executor.shutdown(wait=True)

    def report(self, batch: _Batch) -> None:
        if batch.committed or batch.gaps:
            self.on_batch(self, batch.committed, batch.gaps)

    # --- recorder thread ----------------------------------------------------------------

    def commit_event(self, event: dict[str, Any]) -> Committed:
        return self.commit_link(lambda chain: chain.append_event(event), extra=[])

    def commit_link(
        self,
        append: Callable[[ChainWriter], Appended],
        extra: list[StoredObject],
    ) -> Committed:
        index, link_hash, keys = append(self.chain)
        objects = list(extra)
        for key in keys:
            data = (self.workdir / "objects" / key).read_bytes()
            self.spool.commit_bytes(key, data)
            kind = "signature" if key.endswith(".sig") else "link"
            objects.append(
                StoredObject(key, kind, None, len(data), hashlib.sha256(data).hexdigest())
            )
        return Committed(index, link_hash, tuple(objects))


def remove_workdir(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
