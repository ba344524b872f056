#!/usr/bin/env python3
"""The recorder thread's work in isolation: CPU per recorded participant-second.

    .venv/bin/python bench/recorder_thread.py            # 120 s of media, ~10 s
    .venv/bin/python bench/recorder_thread.py --seconds 600

No server, no sockets: the clip of bench/relay.py (640x480 VP8 ~1 Mbit/s at 30 fps plus
20 ms Opus packets) is packetized once as RTP payloads, then fed to the recorder's
pure stages one after the other, each timed with process CPU time:

- tap:      building the packet objects the event loop hands to a tap (per packet);
- assemble: `FrameAssembler.feed_fields` + `RtpClock.to_ms` (depayloading into frames);
- mux:      `Segmenter.add` (stream copy into 10 s segments, each closed and fsynced);
- hash:     SHA-256 of every closed segment (what the chain link needs);
- record:   the recorder's whole path on the same packets, through `ParticipantRecorder`:
            assembly, muxing, and per closed segment its hash, signed chain link, fsyncs
            and spool commits (the thread's real work, called directly, no thread hops);
- upload:   the server's `Uploader` draining that spool into the local object store
            (hash/put/stat/read-back/retention per object; both its threads).

The figures are per second of one participant's media, to compare with the relay's
cost per feed-second (bench/recording.py prints it, ~11.7 ms on the reference machine:
10% of it is the recording budget). Printed, never checked.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import hashlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiortc.codecs.vpx import Vp8Encoder  # noqa: E402

from media import clips  # noqa: E402
from media.router import TappedPacket  # noqa: E402
from recorder.call_recorder import (  # noqa: E402
    CallRecorder,
    ParticipantRecorder,
    RecorderSettings,
    _Batch,
)
from recorder.chain_writer import ChainWriter  # noqa: E402
from recorder.keyring import KeyRing  # noqa: E402
from recorder.segmenter import FrameAssembler, RtpClock, Segmenter  # noqa: E402
from recorder.spool import Spool  # noqa: E402
from recorder.timeline import CallTimeline  # noqa: E402
from recorder.uploader import Uploader  # noqa: E402
from storage.objects import LocalObjectStore  # noqa: E402

FPS = 30
KEY_EVERY_S = 10  # the recorder asks for a key frame when a segment is due


def packets(seconds: int) -> list[tuple[str, bytes, int, int, bool, bool, int]]:
    """(kind, payload, rtp timestamp, sequence, marker, keyframe, arrival ms), in time order."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from relay_peer import make_video_clip

    video = make_video_clip(fps=FPS, frames=30)
    audio = clips.audio_clip(440)
    out: list[tuple[float, tuple[str, bytes, int, int, bool, bool, int]]] = []
    seq = {"video": 0, "audio": 0}
    for index in range(seconds * FPS):
        at_ms = index * 1000 // FPS
        frame = video.frame(0, index % 30)
        if index % (KEY_EVERY_S * FPS) == 0:
            frame = video.key[index % 30]
        payloads = Vp8Encoder._packetize(frame, index & 0x7FFF)
        for n, payload in enumerate(payloads):
            last = n == len(payloads) - 1
            item = ("video", payload, index * 3000, seq["video"], last, n == 0, at_ms)
            out.append((at_ms, item))
            seq["video"] += 1
    for index in range(seconds * 50):
        at_ms = index * 20
        payload = audio.packets[index % len(audio.packets)]
        out.append((at_ms + 0.5, ("audio", payload, index * 960, seq["audio"], True, True, at_ms)))
        seq["audio"] += 1
    out.sort(key=lambda pair: pair[0])
    return [item for _, item in out]


async def record_and_upload(
    tapped: list[tuple[str, TappedPacket]], pace_ms: float = 0.0, round_ms: int = 250
) -> tuple[float, float, int]:
    """CPU-s of the whole record path, then of uploading what it spooled; objects uploaded.

    `pace_ms` > 0 sleeps that long after each round of `round_ms` of media, as the server's
    recorder thread idles between rounds (record CPU is then the thread's own clock, sleeps
    excluded)."""
    with tempfile.TemporaryDirectory(prefix="recorder-bench-", dir=Path.cwd()) as tmp:
        root = Path(tmp)
        spool = Spool(root / "spool")
        prefix = "calls/2026/11/bench/"
        chain = ChainWriter(root / "work" / "objects", "bench", prefix, KeyRing(root / "keys"))
        recorder = CallRecorder(
            call_id="bench",
            prefix=prefix,
            timeline=CallTimeline(0, 0),
            video_codec="vp8",
            workdir=root / "work",
            chain=chain,
            spool=spool,
            settings=RecorderSettings(),
            on_batch=lambda *_: None,
        )
        participant = ParticipantRecorder(recorder, "p1")
        out = _Batch()
        gc.collect()
        gc.freeze()
        record_s = 0.0
        t0 = time.thread_time()
        batch: dict[str, list[TappedPacket]] = {"video": [], "audio": []}
        audio_per_round = max(1, round_ms // 20)  # 20 ms Opus packets
        for kind, packet in tapped:  # rounds as the recorder thread drains them
            batch[kind].append(packet)
            if len(batch["audio"]) >= audio_per_round:
                for k in ("video", "audio"):
                    participant._process(k, batch[k], out)
                    batch[k] = []
                if pace_ms > 0:
                    record_s += time.thread_time() - t0
                    time.sleep(pace_ms / 1000)
                    t0 = time.thread_time()
        for k in ("video", "audio"):
            participant._process(k, batch[k], out)
        for path in participant.segmenter.close():
            out.committed.append(participant._commit_segment(participant.segmenter.info[path]))
        record_s += time.thread_time() - t0
        await recorder.stop()
        recorder.close_executor()

        until = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
        uploader = Uploader(
            spool,
            LocalObjectStore(root / "objects"),
            retention=lambda key: (until, "GOVERNANCE"),
            on_uploaded=lambda key, info: None,
        )
        spool.pin(prefix)  # as during a call: the recorder keeps its files until the end
        objects = len(spool.pending())
        t0 = time.process_time()
        uploader.start()
        await uploader.wait_idle(600)
        upload_s = time.process_time() - t0
        await uploader.close()
        return record_s, upload_s, objects


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=120, help="media seconds to record")
    parser.add_argument(
        "--pace-ms",
        type=float,
        default=0.0,
        help="record: sleep this long after each round, as the server's thread idles"
        " (equal to --round-ms paces in real time; a round costs more after an idle gap)",
    )
    parser.add_argument(
        "--round-ms",
        type=int,
        default=1000,
        help="record: media per round of the recorder thread (the server's batch_s)",
    )
    args = parser.parse_args()
    raw = packets(args.seconds)
    media_s = args.seconds
    # The input lists are far bigger than anything the recorder holds: keep the cyclic
    # garbage collector from scanning them again and again inside the timed stages.
    gc.collect()
    gc.freeze()

    t0 = time.process_time()
    tapped = [(kind, (p, ts, seq, m, k, at)) for kind, p, ts, seq, m, k, at in raw]
    tap_s = time.process_time() - t0

    assemblers = {"video": FrameAssembler("vp8"), "audio": FrameAssembler("opus")}
    rtp_clocks = {"video": RtpClock("vp8"), "audio": RtpClock("opus")}
    t0 = time.process_time()
    frames = []
    for kind, packet in tapped:
        for frame in assemblers[kind].feed_fields(*packet):
            frames.append(
                (kind, frame, rtp_clocks[kind].to_ms(frame.rtp_timestamp, frame.arrival_ms))
            )
    assemble_s = time.process_time() - t0
    gc.freeze()

    with tempfile.TemporaryDirectory(prefix="recorder-bench-") as tmp:
        segmenter = Segmenter(Path(tmp), "vp8", 10.0)
        closed = []
        t0 = time.process_time()
        for kind, frame, pts in frames:
            closed.extend(segmenter.add(kind, frame, pts))
        closed.extend(segmenter.close())
        mux_s = time.process_time() - t0
        t0 = time.process_time()
        size = 0
        for path in closed:
            data = path.read_bytes()
            size += len(data)
            hashlib.sha256(data).hexdigest()
        hash_s = time.process_time() - t0

    record_s, upload_s, objects = asyncio.run(
        record_and_upload(tapped, args.pace_ms, args.round_ms)
    )

    total = tap_s + record_s + upload_s
    print(
        f"media:    {media_s} s, {len(raw)} packets ({len(raw) / media_s:.0f}/s), "
        f"{len(frames)} frames, {len(closed)} segments, {size / 1e6:.1f} MB"
    )
    print(f"objects:  {objects} uploaded")
    for name, spent in (
        ("tap", tap_s),
        ("assemble", assemble_s),
        ("mux", mux_s),
        ("hash", hash_s),
        ("record", record_s),
        ("upload", upload_s),
        ("total", total),
    ):
        print(
            f"{name + ':':9} {spent * 1000 / media_s:6.3f} ms CPU per participant-second"
            f"  ({spent * 1e6 / len(raw):5.2f} us per packet)"
        )


if __name__ == "__main__":
    main()
