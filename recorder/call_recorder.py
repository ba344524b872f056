"""One call's recording: tapped packets → segments → signed chain links → the spool.

Every participant has a `ParticipantRecorder` whose taps (video and audio) the recorder
thread drains in batches (a `RecorderThread`: one per server, each call's round in turn):
frames are assembled, muxed by stream copy into segments, and each closed segment is hashed,
linked into the call's chain (one writer: that same thread) and committed to the spool for
upload. The event loop only queues packet
copies in the taps; it never muxes, hashes or writes a file, and it is not woken per batch.

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
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from media.router import ARRIVAL_MS, SourceChanged
from recorder.chain_writer import Appended, ChainWriter, file_digest
from recorder.evidence import segment_key, utc_iso
from recorder.files import stage_for_spool
from recorder.segmenter import EXTENSIONS, FrameAssembler, RtpClock, Segmenter, SegmentInfo
from recorder.timeline import CallTimeline

log = logging.getLogger(__name__)

KINDS = ("video", "audio")
T = TypeVar("T")


def _resolve(future: Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@dataclass(frozen=True)
class RecorderSettings:
    segment_s: float = 10.0
    tap_packets: int = 2048
    # The recorder thread drains the taps this often, and sooner when a tap is half full.
    # Longer rounds cost less CPU: on the VM here a thread that resumes after an idle gap
    # pays ~0.2 ms extra per round (bench/recorder_thread.py --pace-ms/--round-ms: 1.84 ms
    # per participant-second with 250 ms rounds, 1.26 with 1 s, no better with 2 s).
    batch_s: float = 1.0


class Tap(Protocol):
    """What the recorder needs of a media tap (media.router.PacketTap)."""

    overflow: int
    closed: bool
    queue: deque[Any]  # packets and SourceChanged markers, oldest first
    previous: Any  # the closed tap this one replaced, to drain first (or None)
    wake_at: int  # queue length that calls on_fill (0: never)
    on_fill: Callable[[], None] | None

    def drain(self) -> list[Any]: ...
    def close(self) -> None: ...
    def request_key_frame(self) -> None: ...


class TapProvider(Protocol):
    """Makes taps on a participant's published tracks (media.router.CallMedia)."""

    def tap(self, participant_id: str, kind: str, bound: int = ...) -> Any: ...


class SpoolLike(Protocol):
    def commit_file(
        self, key: str, src_path: Path, *, sha256: str | None = ..., synced: bool = ...
    ) -> Any: ...
    def commit_files(
        self, files: list[tuple[str, Path, str | None]], *, synced: bool = ...
    ) -> Any: ...


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
    """What one round of the recorder thread hands back to the event loop."""

    committed: list[Committed] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)
    # participants to ask for a key frame -> in how many seconds (0: now)
    key_frames: dict[str, float] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.committed or self.gaps or self.key_frames)


class ParticipantRecorder:
    """Segments of one participant, across reconnects (its taps follow it).

    Made and attached on the event loop; everything else runs in the call's thread.
    """

    def __init__(self, call: CallRecorder, participant_id: str) -> None:
        self.call = call
        self.participant_id = participant_id
        self.taps: dict[str, Tap] = {}
        codec = call.video_codec
        self.segmenter = Segmenter(
            call.workdir / "segments" / participant_id, codec, call.settings.segment_s
        )
        self.codecs = {"video": codec, "audio": "opus"}
        self.assemblers = {kind: FrameAssembler(self.codecs[kind]) for kind in KINDS}
        origin = call.timeline.launch_mono_ms  # packet arrivals are monotonic ms
        self.clocks = {kind: RtpClock(self.codecs[kind], origin) for kind in KINDS}
        self.started_tracks: set[str] = set()
        self.pending_gaps: list[dict[str, Any]] = []  # recorder thread only
        self.overflow_seen = {kind: 0 for kind in KINDS}
        self.overflow_unexplained = {kind: 0 for kind in KINDS}
        self.segments = 0
        self.frames = {kind: 0 for kind in KINDS}
        self.gaps = 0

    # --- event loop side ----------------------------------------------------------------

    def attach(self, media: TapProvider, kinds: list[str]) -> None:
        """Tap whatever of `kinds` the participant publishes and is not tapped yet. A tap
        half full wakes the recorder thread before its round is due."""
        bound = self.call.settings.tap_packets
        for kind in kinds:
            old = self.taps.get(kind)
            if old is not None and not old.closed:
                continue  # a tap follows the participant across reconnects by itself
            tap = media.tap(self.participant_id, kind, bound)
            tap.wake_at = max(1, bound // 2)
            tap.on_fill = self.call.wake
            if old is not None:
                # The old tap closed (the participant's media went away, e.g. a reconnect
                # that failed): this is another peer connection, with its own SSRC, sequence
                # numbers and RTP timestamps. The recorder thread finishes the old tap first
                # (it is the taps' only reader), then the marker restarts frame assembly and
                # the media clock. Set before the tap is published to the thread.
                tap.previous = old
                tap.queue.append(SourceChanged(kind))
            self.taps[kind] = tap

    # --- recorder thread ----------------------------------------------------------------

    def drain(self, out: _Batch) -> None:
        """Take what the taps hold and record it."""
        last_video_pts: int | None = None  # of this round's last video frame
        for kind, tap in list(self.taps.items()):
            items: list[Any] = []
            previous = tap.previous
            if previous is not None:  # a closed tap this one replaced: its rest comes first
                tap.previous = None
                self._count_overflow(kind, previous)
                self.overflow_seen[kind] = 0  # the new tap counts from 0
                items = previous.drain()
            self._count_overflow(kind, tap)
            items += tap.drain()
            if items:
                pts = self._process(kind, items, out)
                if kind == "video":
                    last_video_pts = pts
        if self.assemblers["video"].waiting_for_keyframe and "video" in self.started_tracks:
            out.key_frames[self.participant_id] = 0.0
            return
        # The segment's cutting key frame: asked for when the segment is due, which may
        # fall between two rounds (the last frame drained this round arrived just now, so
        # media time left is wall time left). A round without video asks nothing.
        left_ms = None if last_video_pts is None else self.segmenter.until_due(last_video_pts)
        if left_ms is not None:
            if left_ms <= 0:
                out.key_frames[self.participant_id] = 0.0
            elif left_ms <= self.call.settings.batch_s * 1000:
                out.key_frames[self.participant_id] = left_ms / 1000

    def _count_overflow(self, kind: str, tap: Tap) -> None:
        """Packets the tap refused since last time: explained later by sequence gaps."""
        overflow = tap.overflow
        self.overflow_unexplained[kind] += overflow - self.overflow_seen[kind]
        self.overflow_seen[kind] = overflow

    # --- recorder thread ----------------------------------------------------------------

    def _process(self, kind: str, items: list[Any], out: _Batch) -> int | None:
        """Record a batch of one track's packets; returns the last frame's pts (None if no
        frame was completed)."""
        assembler = self.assemblers[kind]
        clock = self.clocks[kind]
        segmenter = self.segmenter
        pts: int | None = None
        for item in items:
            if type(item) is SourceChanged:  # a new peer connection
                assembler = self.assemblers[kind] = FrameAssembler(self.codecs[kind])
                clock = self.clocks[kind] = RtpClock(
                    self.codecs[kind], self.call.timeline.launch_mono_ms
                )
                continue
            logged = assembler.gaps
            skips = len(assembler.skip_log)
            frames = assembler.feed_fields(*item)
            if len(assembler.skip_log) != skips:  # a key frame ended a run of skipped packets
                for seq_from, seq_to, packets in assembler.skip_log[skips:]:
                    out.gaps.append(
                        self._gap(
                            kind, seq_from, seq_to, packets, item[ARRIVAL_MS], "awaiting_key_frame"
                        )
                    )
            if assembler.gaps != logged:
                for seq_from, seq_to, packets in assembler.gap_log[logged:]:
                    reason = "packet_loss"
                    if self.overflow_unexplained[kind] > 0:
                        reason = "tap_overflow"
                        self.overflow_unexplained[kind] = max(
                            0, self.overflow_unexplained[kind] - packets
                        )
                    gap = self._gap(kind, seq_from, seq_to, packets, item[ARRIVAL_MS], reason)
                    out.gaps.append(gap)
            for frame in frames:
                pts = clock.to_ms(frame.rtp_timestamp, frame.arrival_ms)
                if kind not in self.started_tracks:
                    self.started_tracks.add(kind)
                    out.committed.append(self._track_started(kind, pts))
                self.frames[kind] += 1
                for path in segmenter.add(kind, frame, pts):
                    out.committed.append(self._commit_segment(segmenter.info[path]))
        return pts

    def finish(self, out: _Batch) -> None:
        """The call stops: whatever is queued, then the open segment and pending gaps."""
        self.drain(out)
        out.key_frames.pop(self.participant_id, None)
        now_ms = self.call.timeline.monotonic()
        for kind in KINDS:
            # Packets the full tap refused show as a sequence gap once later packets come;
            # at the end none may come: recorded all the same.
            lost = self.overflow_unexplained[kind]
            if lost > 0:
                self.overflow_unexplained[kind] = 0
                out.gaps.append(self._gap(kind, None, None, lost, now_ms, "tap_overflow"))
        for path in self.segmenter.close():
            out.committed.append(self._commit_segment(self.segmenter.info[path]))
        if self.pending_gaps:
            gaps, self.pending_gaps = self.pending_gaps, []
            for gap in gaps:
                out.committed.append(self.call.commit_event({"type": "gap", **gap}))

    def _gap(
        self,
        kind: str,
        seq_from: int | None,
        seq_to: int | None,
        packets: int,
        at_mono_ms: int,
        reason: str,
    ) -> dict[str, Any]:
        """A gap record; `at_mono_ms` (monotonic, like packet arrivals) dates it on the call's
        timeline."""
        gap = {
            "participant": self.participant_id,
            "track": kind,
            "seq_from": seq_from,
            "seq_to": seq_to,
            "packets": packets,
            "utc": utc_iso(self.call.timeline.unix_ms(at_mono_ms)),
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
        staged = stage_for_spool(info.path)
        self.call.spool.commit_file(key, staged, sha256=digest, synced=True)
        return committed


class RecorderThread:
    """The thread that does the recordings' file work, in rounds over its calls.

    It wakes every `batch_s` (or at once for a job, a stop, or a tap half full) and gives
    each call a round: the call's taps drained, then its jobs, in order, so each chain keeps
    one writer. The server shares one among its calls: on the 2-vCPU VM here a thread that
    resumes after an idle gap pays extra CPU per round (bench/recorder_thread.py
    --pace-ms), so one thread's rounds cost less than a thread per call. With no call it
    sleeps until one is added.
    """

    def __init__(self, batch_s: float, name: str = "recorder-shared") -> None:
        self.batch_s = batch_s
        self.name = name
        self._calls: list[CallRecorder] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def add(self, call: CallRecorder) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the recorder thread is closed")
            self._calls.append(call)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        self._wake.set()

    @property
    def closed(self) -> bool:
        return self._closed

    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        """End the thread after one last round (its calls are stopped first)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join(timeout=60)
            if thread.is_alive():
                log.error("recorder thread %s still busy after 60 s; left running", self.name)

    def _run(self) -> None:
        while True:
            with self._lock:
                calls = list(self._calls)
                closed = self._closed
            if not calls:
                if closed:
                    return
                self._wake.wait()  # idle: no rounds until a call comes
                self._wake.clear()
                continue
            self._wake.wait(self.batch_s)
            self._wake.clear()
            for call in calls:
                try:
                    done = call._round()
                except Exception:  # a bug: the other calls go on recording
                    log.exception("recorder round of call %s failed", call.call_id)
                    done = False
                if done:
                    with self._lock:
                        self._calls.remove(call)
            if closed:  # the calls were stopped before: this was their last round
                with self._lock:
                    left = [c.call_id for c in self._calls]
                if left:
                    log.error("recorder thread closed with calls unfinished: %s", left)
                return


class CallRecorder:
    """The recording of one call; one thread does all its file work, in order.

    Its `RecorderThread` wakes every `batch_s` (or at once for a job or a tap half full),
    drains every participant's taps itself (`PacketTap.drain` is safe across threads) and
    hands results back with one `call_soon_threadsafe` per round that has any: the event
    loop pays only for the packet copies it queues. Jobs (event links, test hooks) run in
    that thread in submission order, after the round's packets.
    """

    def __init__(
        self,
        *,
        call_id: str,
        prefix: str,
        timeline: CallTimeline,
        video_codec: str,
        workdir: Path,
        chain: ChainWriter,
        spool: SpoolLike,
        settings: RecorderSettings,
        on_batch: Callable[[CallRecorder, list[Committed], list[dict[str, Any]]], None],
        worker: RecorderThread | None = None,
    ) -> None:
        if video_codec not in EXTENSIONS:
            raise ValueError(f"unsupported video codec {video_codec!r}")
        self.call_id = call_id
        self.prefix = prefix
        self.timeline = timeline
        self.call_start_ms = timeline.launched_ms  # pts count from it
        self.video_codec = video_codec
        self.workdir = workdir
        self.chain = chain
        self.spool = spool
        self.settings = settings
        self.on_batch = on_batch
        self.participants: dict[str, ParticipantRecorder] = {}
        self.stopped = False
        self.rounds = 0  # the thread's rounds, and their CPU time (its own, exact)
        self.cpu_s = 0.0
        self._loop = asyncio.get_running_loop()
        self._jobs: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._key_frame_timers: dict[str, asyncio.TimerHandle] = {}  # event loop only
        self._stopping = False
        self._done: Future[None] = Future()
        # The server shares one thread among its calls; alone (tests, benches) a call has its own.
        self._own_worker = worker is None
        self._worker = worker or RecorderThread(settings.batch_s, f"recorder-{call_id[-8:]}")
        self._worker.add(self)

    # --- event loop side ----------------------------------------------------------------

    def attach(self, participant_id: str, media: TapProvider, kinds: list[str]) -> None:
        """A participant's media joined (or rejoined): record what it publishes."""
        if self.stopped:
            return
        recorder = self.participants.get(participant_id)
        if recorder is None:
            recorder = ParticipantRecorder(self, participant_id)
        recorder.attach(media, kinds)
        self.participants[participant_id] = recorder

    def wake(self) -> None:
        """Give the call a round now (a tap is filling up). Safe from any thread."""
        self._worker.wake()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run `fn(*args)` in the recorder thread, after what is queued before it."""
        future: Future[T] = Future()
        if self._done.done():
            future.set_exception(RuntimeError("the recorder has stopped"))
            return future
        self._jobs.append((lambda: fn(*args), future))
        self._worker.wake()
        return future

    async def event(self, event: dict[str, Any]) -> Committed:
        """An event link (consent, joins, drops…), in order with the segment links."""
        committed = await asyncio.wrap_future(self.submit(self.commit_event, event))
        self.on_batch(self, [committed], [])
        return committed

    async def participant_dropped(self, participant_id: str, at_mono_ms: int) -> None:
        """A drop is an event link and a gap record per recorded track in the participant's
        next segment. `at_mono_ms`: when its media stopped, as far as the server knows
        (monotonic ms)."""
        await self.event({"type": "participant_dropped", "participant": participant_id})
        recorder = self.participants.get(participant_id)
        if recorder is None:
            return
        kinds = [kind for kind in KINDS if kind in recorder.taps]
        gaps = await asyncio.wrap_future(  # one job: the same segment link takes them all
            self.submit(
                lambda: [
                    recorder._gap(kind, None, None, 0, at_mono_ms, "participant_dropped")
                    for kind in kinds
                ]
            )
        )
        if gaps:
            self.on_batch(self, [], gaps)

    async def stop(self) -> None:
        """Close every open segment (all of it linked and spooled) and stop the thread."""
        self.stopped = True
        self._stopping = True
        for timer in self._key_frame_timers.values():
            timer.cancel()
        self._key_frame_timers.clear()
        self._worker.wake()
        await asyncio.wrap_future(self._done)

    def close_executor(self) -> None:
        """After `stop`: end the call's own thread, if it has one (a shared one goes on)."""
        if self._own_worker:
            self._worker.close()

    def _report(self, batch: _Batch) -> None:
        if batch.committed or batch.gaps:
            self.on_batch(self, batch.committed, batch.gaps)
        for participant_id, delay_s in batch.key_frames.items():
            timer = self._key_frame_timers.pop(participant_id, None)
            if timer is not None:
                timer.cancel()
            if self.stopped:
                continue
            if delay_s > 0:
                self._key_frame_timers[participant_id] = self._loop.call_later(
                    delay_s, self._request_key_frame, participant_id
                )
            else:
                self._request_key_frame(participant_id)

    def _request_key_frame(self, participant_id: str) -> None:
        self._key_frame_timers.pop(participant_id, None)
        recorder = self.participants.get(participant_id)
        tap = recorder.taps.get("video") if recorder is not None else None
        if tap is not None and not tap.closed:
            tap.request_key_frame()

    # --- recorder thread ----------------------------------------------------------------

    def _round(self) -> bool:
        """One round in the recorder thread: drain the taps (or, stopping, close everything),
        then run the jobs. True once the recording has finished."""
        started = time.thread_time()
        stopping = self._stopping
        out = _Batch()
        for recorder in list(self.participants.values()):
            self._guarded(recorder.finish if stopping else recorder.drain, out)
        while self._jobs:
            job, future = self._jobs.popleft()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(job())
                except BaseException as err:
                    future.set_exception(err)
        if out:
            self._call_soon(self._report, out)
        self.rounds += 1
        self.cpu_s += time.thread_time() - started
        if stopping:
            self._finished()
        return stopping

    def _finished(self) -> None:
        log.info(
            "recorder thread of call %s: %d rounds, %.3f CPU-s",
            self.call_id,
            self.rounds,
            self.cpu_s,
        )
        while self._jobs:  # submitted after the stop: refused, never left hanging
            _, future = self._jobs.popleft()
            if future.set_running_or_notify_cancel():
                future.set_exception(RuntimeError("the recorder has stopped"))
        self._call_soon(_resolve, self._done)

    def _call_soon(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the event loop has closed (a shutdown cut short)
            log.warning("recorder of call %s: event loop closed, result dropped", self.call_id)

    def _guarded(self, step: Callable[[_Batch], None], out: _Batch) -> None:
        try:
            step(out)
        except Exception:  # a bug or a disk failure: log it, keep recording the others
            log.exception("recorder of call %s failed a step", self.call_id)

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
        staged: list[tuple[str, Path, str | None]] = []
        for key in keys:
            path = self.workdir / "objects" / key
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            kind = "signature" if key.endswith(".sig") else "link"
            objects.append(StoredObject(key, kind, None, len(data), digest))
            staged.append((key, stage_for_spool(path), digest))
        # The chain writer made the files durable: the spool takes hard links of them.
        self.spool.commit_files(staged, synced=True)
        return Committed(index, link_hash, tuple(objects))


def remove_workdir(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
