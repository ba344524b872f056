"""The recorder looks at its taps once a round (1 s by default). The key frame that cuts a
segment is still asked for when the segment is due, not at the next round, and a tap that
fills up calls for a round before it can overflow."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from media.router import PacketTap, tapped_packet
from recorder.call_recorder import CallRecorder, RecorderSettings, _Batch
from recorder.chain_writer import ChainWriter
from recorder.keyring import KeyRing
from recorder.spool import Spool
from recorder.timeline import CallTimeline
from tests.recorder.test_segmenter import FPS, video_packets

CALL_START_MS = 1000  # the first packet of video_packets() arrives then: pts 0


class Published:
    """The published track a PacketTap hangs on; counts key-frame requests."""

    kind = "video"
    codec = "vp8"

    def __init__(self) -> None:
        self.taps: list[PacketTap] = []
        self.requested_at: list[float] = []
        self.requested = asyncio.Event()

    def request_key_frame(self) -> None:
        self.requested_at.append(asyncio.get_running_loop().time())
        self.requested.set()


class Media:
    """Makes real PacketTaps on one published video track."""

    def __init__(self) -> None:
        self.published = Published()

    def tap(self, participant_id: str, kind: str, bound: int = 1024) -> PacketTap:
        tap = PacketTap(self.published, bound)  # type: ignore[arg-type]
        self.published.taps.append(tap)
        return tap


class ManualWorker:
    """A recorder thread that runs no rounds by itself: the test runs them."""

    def __init__(self) -> None:
        self.wakes = 0

    def add(self, call: CallRecorder) -> None:
        pass

    def wake(self) -> None:
        self.wakes += 1


def make_recorder(tmp_path: Path, worker: ManualWorker, **settings: float) -> CallRecorder:
    prefix = "calls/2026/11/rounds/"
    return CallRecorder(
        call_id="rounds",
        prefix=prefix,
        timeline=CallTimeline(CALL_START_MS, CALL_START_MS),  # arrivals count from CALL_START_MS
        video_codec="vp8",
        workdir=tmp_path / "work",
        chain=ChainWriter(tmp_path / "work" / "objects", "rounds", prefix, KeyRing(tmp_path)),
        spool=Spool(tmp_path / "spool"),
        settings=RecorderSettings(**settings),  # type: ignore[arg-type]
        on_batch=lambda *_: None,
        worker=worker,  # type: ignore[arg-type]
    )


def offer_frames(tap: PacketTap, first: int, last: int) -> None:
    """Offer the packets of video frames first..last (15 fps: frame n has pts n*1000/15)."""
    for p in video_packets("vp8"):
        n = -(-(p.arrival_ms - CALL_START_MS) * FPS // 1000)  # arrival_ms is rounded down
        if first <= n <= last:
            tap.offer(
                tapped_packet(
                    p.payload, p.rtp_timestamp, p.sequence, p.marker, p.keyframe, p.arrival_ms
                )
            )


async def test_a_segment_due_between_two_rounds_has_its_key_frame_asked_for_when_due(tmp_path):
    worker = ManualWorker()
    media = Media()
    recorder = make_recorder(tmp_path, worker, segment_s=1.0, batch_s=1.0)
    recorder.attach("p1", media, ["video"])  # type: ignore[arg-type]
    participant = recorder.participants["p1"]
    offer_frames(participant.taps["video"], 0, 9)  # media up to 600 ms: due at 1000 ms

    out = _Batch()
    await asyncio.to_thread(participant.drain, out)
    assert out.key_frames == {"p1": 0.4}  # 400 ms left: before the next round (1 s)

    scheduled_at = asyncio.get_running_loop().time()
    recorder._report(out)
    assert media.published.requested_at == []  # not yet: the segment is not due
    await asyncio.wait_for(media.published.requested.wait(), 10)
    assert media.published.requested_at[0] - scheduled_at >= 0.4 - 0.01
    assert worker.wakes == 0  # no round was needed for it

    offer_frames(participant.taps["video"], 10, 15)  # 1000 ms: due now, no key frame yet
    out = _Batch()
    await asyncio.to_thread(participant.drain, out)
    assert out.key_frames == {"p1": 0.0}
    recorder._report(out)
    assert len(media.published.requested_at) == 2  # asked again at once

    offer_frames(participant.taps["video"], 16, 16)  # the key frame: the segment is cut
    out = _Batch()
    await asyncio.to_thread(participant.drain, out)
    assert participant.segmenter.index == 2 and participant.segments == 1
    assert out.key_frames == {"p1": 1.0}  # the new one is due in 1 s: within this round

    out = _Batch()
    await asyncio.to_thread(participant.drain, out)  # a round without video (stalled)
    assert out.key_frames == {}  # asks nothing: its last frame is no news of the time


async def test_a_segment_far_from_due_asks_nothing_and_a_stop_cancels_a_pending_request(
    tmp_path,
):
    worker = ManualWorker()
    media = Media()
    recorder = make_recorder(tmp_path, worker, segment_s=10.0, batch_s=1.0)
    recorder.attach("p1", media, ["video"])  # type: ignore[arg-type]
    participant = recorder.participants["p1"]
    offer_frames(participant.taps["video"], 0, 9)

    out = _Batch()
    await asyncio.to_thread(participant.drain, out)
    assert out.key_frames == {}  # 9.4 s left: a later round asks

    out.key_frames["p1"] = 5.0  # as if due in 5 s
    recorder._report(out)
    (timer,) = recorder._key_frame_timers.values()
    stopping = asyncio.create_task(recorder.stop())
    await asyncio.sleep(0)  # a yield: stop() runs up to its wait for the thread's round
    assert recorder.stopped
    await asyncio.to_thread(recorder._round)  # the recorder thread's last round
    await asyncio.wait_for(stopping, 10)
    assert timer.cancelled() and recorder._key_frame_timers == {}
    assert media.published.requested_at == []


async def test_a_tap_half_full_wakes_the_recorder_once_per_fill(tmp_path):
    worker = ManualWorker()
    recorder = make_recorder(tmp_path, worker, tap_packets=64)
    recorder.attach("p1", Media(), ["video"])  # type: ignore[arg-type]
    tap = recorder.participants["p1"].taps["video"]
    assert tap.wake_at == 32
    packet = tapped_packet(b"\x10\x00", 0, 0, True, False, CALL_START_MS)
    for _ in range(31):
        tap.offer(packet)
    assert worker.wakes == 0
    tap.offer(packet)
    assert worker.wakes == 1  # half full: a round now, before the tap overflows
    for _ in range(40):
        tap.offer(packet)
    assert worker.wakes == 1 and tap.overflow == 8  # once per fill
    tap.drain()
    for _ in range(32):
        tap.offer(packet)
    assert worker.wakes == 2


async def test_a_tap_opened_again_after_its_participant_left_restarts_the_media_clock(tmp_path):
    """A reconnect that failed closes the participant's taps; the next good join opens new
    ones on another peer connection (other SSRC, sequence numbers and RTP timestamps). Its
    media keeps times from arrival, with no false gap, and nothing the old tap held is lost."""
    worker = ManualWorker()
    media = Media()
    recorder = make_recorder(tmp_path, worker)
    recorder.attach("p1", media, ["video"])  # type: ignore[arg-type]
    participant = recorder.participants["p1"]
    first = participant.taps["video"]
    offer_frames(first, 0, 9)
    await asyncio.to_thread(participant.drain, _Batch())
    offer_frames(first, 10, 14)  # still queued when the tap closes
    first.close()

    recorder.attach("p1", media, ["video"])  # type: ignore[arg-type]
    second = participant.taps["video"]
    assert second is not first
    frames = video_packets("vp8", seq0=30000, ts0=1_500_000_000)[:20]
    for p in frames:  # the new connection, 10 s later
        second.offer(
            tapped_packet(
                p.payload, p.rtp_timestamp, p.sequence, p.marker, p.keyframe, p.arrival_ms + 10_000
            )
        )
    await asyncio.to_thread(participant.drain, _Batch())
    assert participant.frames["video"] == 15 + len({p.rtp_timestamp for p in frames})
    assert participant.gaps == 0
    last_arrival = frames[-1].arrival_ms + 10_000 - CALL_START_MS
    assert participant.segmenter._writer is not None
    assert abs(participant.segmenter._writer.last_pts_ms - last_arrival) < 100


async def test_packets_a_full_tap_refused_at_the_end_of_a_call_are_a_gap(tmp_path):
    """No later packet shows the refused ones as a sequence gap: the end records them."""
    worker = ManualWorker()
    recorder = make_recorder(tmp_path, worker, tap_packets=16)
    recorder.attach("p1", Media(), ["video"])  # type: ignore[arg-type]
    participant = recorder.participants["p1"]
    tap = participant.taps["video"]
    offer_frames(tap, 0, 29)  # 2 s of video: more than 16 packets
    refused = tap.overflow
    assert refused > 0
    out = _Batch()
    await asyncio.to_thread(participant.finish, out)
    (gap,) = out.gaps
    assert (gap["track"], gap["reason"], gap["packets"]) == ("video", "tap_overflow", refused)
    assert participant.pending_gaps == []  # in the chain: with the last segment's link
    links = [
        json.loads(recorder.chain.path(o.key).read_bytes())
        for c in out.committed
        for o in c.objects
        if o.kind == "link"
    ]
    chained = [g for link in links for g in link.get("gaps", [])]
    assert [(g["reason"], g["packets"]) for g in chained] == [("tap_overflow", refused)]


async def test_video_skipped_until_a_key_frame_is_a_gap(tmp_path):
    """Video received before a participant's first key frame cannot be recorded: the packets
    skipped are a gap record (awaiting_key_frame), with their sequence range."""
    worker = ManualWorker()
    recorder = make_recorder(tmp_path, worker)
    recorder.attach("p1", Media(), ["video"])  # type: ignore[arg-type]
    participant = recorder.participants["p1"]
    packets = [p for p in video_packets("vp8") if 1000 + 1000 // FPS <= p.arrival_ms]
    first_key = next(i for i, p in enumerate(packets) if p.keyframe)
    assert first_key > 0  # the clip's next key frame comes later
    for p in packets[: first_key + 1]:
        participant.taps["video"].offer(
            tapped_packet(p.payload, p.rtp_timestamp, p.sequence, p.marker, p.keyframe, 2000)
        )
    out = _Batch()
    await asyncio.to_thread(participant.drain, out)
    skipped = packets[:first_key]
    assert [(g["reason"], g["seq_from"], g["seq_to"], g["packets"]) for g in out.gaps] == [
        ("awaiting_key_frame", skipped[0].sequence, skipped[-1].sequence, len(skipped))
    ]
    assert participant.frames["video"] == 1  # the key frame, recorded
