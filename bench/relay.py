#!/usr/bin/env python3
"""Media relay benchmark: server CPU per forwarded feed, delivery and added latency.

    .venv/bin/python bench/relay.py --calls 5 --duration 20 [--warmup 5] [--processes P]

Provisions N kiosks and N experts straight into a fresh metadata store, starts the real
service as a separate process (`python -m signaling.cli serve`, media on 127.0.0.1 only),
then sets up N concurrent 2-party calls one after the other from P load-peer processes
(`bench/relay_peer.py`; each hosts whole calls, both sides). Each side publishes a
pre-encoded 640x480 VP8 clip at ~1 Mbit/s and an Opus tone; receivers count RTP and never
decode. After a warm-up, the server's CPU (utime+stime from /proc), the forwarded packets
(/metrics), delivery and latency are measured over the window.

Figures are printed, never checked against the targets. Exit status: 1 when a call failed
to set up, delivery of a kind is below 90%, the server or a load peer died, or the
server exited badly; 2 on bad usage. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shlex
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiortc
from dispatch import (
    CHEAP_HASHER,
    HOST,
    Server,
    free_port,
    percentile,
    proc_cpu_s,
    proc_rss_kib,
)
from relay_peer import write_clips

from storage import MetadataStore

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
    uvloop = None  # type: ignore[assignment]

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
KINDS = ("video", "audio")
MIN_DELIVERY = 90.0  # % per kind; below this the run fails (a functional check, not a target)
TARGET_CALLS = 10
TARGET_CPU_PCT = 60.0
TARGET_LATENCY_P95_MS = 50.0
SERVER_SETTINGS = {
    "media_interfaces": HOST,  # the server offers loopback host candidates only
    "rate_limit_per_s": "1000",
    "rate_limit_burst": "2000",
    "rate_limit_close_after": "100000",
}


class ProfiledServer(Server):
    """The same server under cProfile (whole lifetime; its CPU figures are then inflated)."""

    def __init__(self, *args: Any, profile_path: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.profile_path = profile_path

    @property
    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "cProfile", "-o", str(self.profile_path),
            "-m", "signaling.cli", "serve", "--host", HOST, "--port", str(self.port),
        ]  # fmt: skip


def print_profile(path: Path, top: int = 25) -> None:
    import io
    import pstats

    if not path.exists():
        print(f"profile:    {path} was not written (the server did not exit normally)")
        return
    text = io.StringIO()
    stats = pstats.Stats(str(path), stream=text)
    stats.sort_stats("tottime").print_stats(top)
    print(f"profile:    server under cProfile, top {top} by own time (saved in {path}):")
    lines = text.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    for line in lines[start:]:
        if line.strip():
            print(f"    {line}")


# --- /proc ---------------------------------------------------------------------------------------


def machine_cpu() -> tuple[float, float, float]:
    """(busy, steal, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    total = user + nice + system + idle + iowait + irq + softirq + steal
    return float(total - idle - iowait - steal), float(steal), float(total)


def proc_threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


# --- provisioning ---------------------------------------------------------------------------


def provision(db_path: Path, calls: int) -> list[tuple[str, str]]:
    """N kiosks and N "family" experts (with sessions), straight into the store."""
    with MetadataStore.open(db_path, password_hasher=CHEAP_HASHER) as store:
        codes = [d.code for d in store.list_dispute_types()]
        if "family" not in codes:
            raise RuntimeError(f"no 'family' dispute type in the seeded store ({codes})")
        pairs = []
        with store.transaction():
            for i in range(calls):
                _, device_token = store.create_device("kiosk", f"relay-kiosk-{i:03d}")
                account = store.create_account(
                    f"relay-expert-{i:03d}", f"Relay Expert {i:03d}", "expert", "bench-password"
                )
                store.set_expert_profile(account.id, ["family"], on_duty=False)
                pairs.append((device_token, store.create_session(account.id, 86400.0)))
    return pairs


# --- load-peer processes --------------------------------------------------------------------


class LoadProcess:
    """One `bench/relay_peer.py` process, spoken to in JSON lines."""

    def __init__(self, index: int, url: str, clips_path: Path, setup_timeout: float) -> None:
        self.index = index
        self.command = [
            sys.executable, str(BENCH_DIR / "relay_peer.py"),
            "--url", url, "--clips", str(clips_path), "--worker", str(index),
            "--setup-timeout", str(setup_timeout),
        ]  # fmt: skip
        self.proc: asyncio.subprocess.Process | None = None
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.stderr: list[str] = []
        self._readers: list[asyncio.Task[None]] = []

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, timeout: float) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIATION_")}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        self.proc = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=REPO,
            limit=2**26,  # a report line carries every latency sample
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._read_stdout(self.proc.stdout)),
            asyncio.create_task(self._read_stderr(self.proc.stderr)),
        ]
        hello = await self.receive("hello", timeout)
        if hello["pid"] != self.proc.pid:
            raise RuntimeError(f"load process {self.index}: unexpected hello {hello}")

    async def _read_stdout(self, stream: asyncio.StreamReader) -> None:
        while raw := await stream.readline():
            try:
                self.messages.put_nowait(json.loads(raw))
            except json.JSONDecodeError:
                self.stderr.append(f"(stdout) {raw.decode(errors='replace').rstrip()}")
        self.messages.put_nowait({"type": "eof"})

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        while raw := await stream.readline():
            if len(self.stderr) < 2000:
                self.stderr.append(raw.decode(errors="replace").rstrip("\n"))

    async def send(self, **message: Any) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        await self.proc.stdin.drain()

    async def receive(self, kind: str, timeout: float) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                message = await self.messages.get()
                if message["type"] == "eof":
                    self.messages.put_nowait(message)
                    raise RuntimeError(f"load process {self.index} exited (waiting for {kind})")
                if message["type"] == kind:
                    return message

    async def stop(self, timeout: float) -> str:
        if self.proc is None:
            return "not started"
        how = "exited by itself"
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await self.send(cmd="stop")
            how = "stop command"
            try:
                async with asyncio.timeout(timeout):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.send_signal(signal.SIGTERM)
                how = f"SIGTERM (no exit {timeout:.0f} s after stop)"
                try:
                    async with asyncio.timeout(5):
                        await self.proc.wait()
                except TimeoutError:
                    self.proc.kill()
                    how = "SIGKILL"
                    await self.proc.wait()
        await asyncio.wait(self._readers, timeout=2)
        for reader in self._readers:
            reader.cancel()
        return f"{how}, exit status {self.proc.returncode}"


# --- the run -------------------------------------------------------------------------------------


@dataclass
class Results:
    errors: list[str] = field(default_factory=list)
    setups: dict[int, dict[str, float]] = field(default_factory=dict)
    failed_calls: dict[int, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)


def fmt(value: float, digits: int = 1) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


async def run(args: argparse.Namespace, tmp: Path) -> int:
    out = print
    res = Results()
    data_dir = tmp / "data"
    data_dir.mkdir()
    pairs = provision(data_dir / "metadata.sqlite3", args.calls)
    settings = {**SERVER_SETTINGS, **args.settings}
    port = args.port or free_port()
    server = (
        ProfiledServer(data_dir, port, settings, profile_path=args.profile_server)
        if args.profile_server
        else Server(data_dir, port, settings)
    )
    workers: list[LoadProcess] = []
    cores = os.cpu_count() or 1
    try:
        await server.start(args.timeout)
        out(f"server:     pid {server.pid}, {server.ready_line!r}")
        out(f"            settings: {', '.join(f'{k}={v}' for k, v in server.settings.items())}")
        workers = [
            LoadProcess(i, server.ws_url, tmp / "clips.pickle", args.setup_timeout)
            for i in range(args.processes)
        ]
        await asyncio.gather(*(w.start(args.timeout) for w in workers))
        out(
            f"load:       {len(workers)} load-peer processes (pids"
            f" {', '.join(str(w.pid) for w in workers)}); call i runs in process i mod"
            f" {len(workers)}"
        )

        # Calls are set up one at a time: only the expert of call i is connected, available
        # and idle when kiosk i launches, so the ring reaches the expert in the same process.
        for i, (device_token, expert_token) in enumerate(pairs):
            worker = workers[i % len(workers)]
            try:
                await worker.send(
                    cmd="setup", call=i, device_token=device_token, expert_token=expert_token
                )
                ready = await worker.receive("ready", args.setup_timeout + 10)
            except Exception as err:  # noqa: BLE001 - reported below
                ready = {"ok": False, "error": repr(err)}
            if ready.get("ok"):
                res.setups[i] = ready["timings"]
            else:
                res.failed_calls[i] = str(ready.get("error"))
            if not server.running:
                raise RuntimeError("the server died during call set-up")
        ok = len(res.setups)
        totals = sorted(s["media"] for s in res.setups.values())
        out(
            f"setup:      {ok}/{args.calls} calls up; per call (connect, launch, ring, accept,"
            f" join both sides, first audio+video both ways): p50 {fmt(percentile(totals, 50), 2)}"
            f" s, max {fmt(max(totals, default=math.nan), 2)} s"
        )
        for i, s in sorted(res.setups.items()):
            out(
                f"            call {i}: ring {s['ring']:.3f} s, active {s['active']:.3f} s,"
                f" joined {s['joined']:.3f} s, media both ways {s['media']:.3f} s"
            )
        for i, error in sorted(res.failed_calls.items()):
            out(f"            call {i}: FAILED: {error}")
        if not ok:
            raise RuntimeError("no call could be set up")

        await asyncio.sleep(args.warmup)
        m0 = await server.metrics()
        w0 = {w.pid: proc_cpu_s(w.pid) for w in workers}
        mach0 = machine_cpu()
        cpu0 = proc_cpu_s(server.pid)
        t0 = time.monotonic()
        await asyncio.sleep(args.duration)
        cpu1 = proc_cpu_s(server.pid) if server.running else math.nan
        t1 = time.monotonic()
        mach1 = machine_cpu()
        w1 = {w.pid: proc_cpu_s(w.pid) if w.running else math.nan for w in workers}
        m1 = await server.metrics()
        rss_kib = proc_rss_kib(server.pid)
        threads = proc_threads(server.pid)
        await asyncio.sleep(args.drain)  # packets of frames sent before t1 arrive

        reports = []
        for w in workers:
            await w.send(cmd="report", t0=t0, t1=t1)
        for w in workers:
            reports.append(await w.receive("report", args.timeout))

        # --- figures ---
        window = t1 - t0
        cpu = cpu1 - cpu0
        feeds = 2 * ok
        key = "mediation_media_packets_forwarded"
        forwarded = m1.get(key, math.nan) - m0.get(key, math.nan)
        dropped = m1.get("mediation_media_packets_dropped", 0) - m0.get(
            "mediation_media_packets_dropped", 0
        )
        plis = m1.get("mediation_media_plis_sent", 0) - m0.get("mediation_media_plis_sent", 0)
        participants = m1.get("mediation_media_participants", math.nan)
        cpu_pct = 100 * cpu / window / cores
        cpu_per_feed_s = cpu / (feeds * window)
        us_per_packet = cpu * 1e6 / forwarded if forwarded > 0 else math.nan

        sent = dict.fromkeys(KINDS, 0)
        received = dict.fromkeys(KINDS, 0)
        octets = dict.fromkeys(KINDS, 0)
        incomplete = dict.fromkeys(KINDS, 0)
        repeats = dict.fromkeys(KINDS, 0)
        duplicates = dict.fromkeys(KINDS, 0)
        latency: dict[str, list[float]] = {k: [] for k in KINDS}
        per_call: list[str] = []
        peer_errors: list[str] = []
        for report in reports:
            for call in report["calls"]:
                call_bits = []
                for direction, kinds in call["directions"].items():
                    for kind in KINDS:
                        f = kinds[kind]
                        sent[kind] += f["sent"]
                        received[kind] += f["received"]
                        octets[kind] += f["octets"]
                        incomplete[kind] += f["incomplete"]
                        repeats[kind] += f["repeats"]
                        duplicates[kind] += f["duplicates"]
                        latency[kind].extend(f["latencies_ms"])
                        pct = 100 * f["received"] / f["sent"] if f["sent"] else math.nan
                        call_bits.append(f"{direction} {kind} {fmt(pct, 2)}%")
                per_call.append(f"call {call['call']}: " + ", ".join(call_bits))
                if any(s != "connected" for s in call["states"]):
                    peer_errors.append(f"call {call['call']}: client states {call['states']}")
                peer_errors.extend(f"call {call['call']}: {e}" for e in call["errors"])
        delivery = {k: (100 * received[k] / sent[k] if sent[k] else math.nan) for k in KINDS}
        lat = {k: sorted(v) for k, v in latency.items()}
        mach_busy = 100 * (mach1[0] - mach0[0]) / (mach1[2] - mach0[2])
        mach_steal = 100 * (mach1[1] - mach0[1]) / (mach1[2] - mach0[2])
        load_cpu = sum(w1[p] - w0[p] for p in w0)

        out(
            f"window:     {window:.1f} s after a {args.warmup:g} s warm-up; {ok} calls ="
            f" {feeds} feeds (one participant's audio+video to one subscriber)"
        )
        for kind in KINDS:
            pps = sent[kind] / window / feeds
            kbps = octets[kind] * 8 / 1000 / window / feeds
            out(
                f"sent:       {kind}: {sent[kind]} packets by publishers = {pps:.1f} packets/s"
                f" and {kbps:.0f} kbit/s (RTP incl. headers) per feed"
            )
        out(
            f"forwarded:  {forwarded:.0f} packets by the server (/metrics delta) ="
            f" {forwarded / window / feeds:.1f} packets/s per feed; dropped by the server"
            f" {dropped:.0f}, PLIs sent {plis:.0f}, media participants {participants:.0f}"
        )
        out(
            f"server:     {cpu:.2f} CPU-s in {window:.1f} s = {cpu_pct:.1f}% of {cores} cores"
            f" ({100 * cpu / window:.1f}% of one); RSS {rss_kib / 1024:.1f} MiB; {threads} threads"
        )
        out(
            f"machine:    load peers {load_cpu:.2f} CPU-s ="
            f" {100 * load_cpu / window / cores:.1f}% of {cores} cores; /proc/stat busy"
            f" {mach_busy:.1f}% (tick-sampled: reads low for bursty loads), steal"
            f" {mach_steal:.1f}%"
        )
        lag = [r["loop_lag_ms"] for r in reports]
        out(
            "peer loops: event-loop lag (20 ms probe) p99 "
            + ", ".join(f"{fmt(x['p99'], 1)}" for x in lag)
            + " ms, max "
            + ", ".join(f"{fmt(x['max'], 1)}" for x in lag)
            + " ms (per load process)"
        )
        for kind in KINDS:
            values = lat[kind]
            what = "marker packet of a frame" if kind == "video" else "packet"
            out(
                f"latency:    {kind} ({what}, publisher send -> subscriber arrival, ms):"
                f" p50 {fmt(percentile(values, 50), 2)}, p95 {fmt(percentile(values, 95), 2)},"
                f" p99 {fmt(percentile(values, 99), 2)},"
                f" max {fmt(max(values, default=math.nan), 2)} (n={len(values)})"
            )
        for kind in KINDS:
            out(
                f"delivery:   {kind}: {received[kind]}/{sent[kind]} packets ="
                f" {fmt(delivery[kind], 2)}%"
                + (f"; {incomplete[kind]} frames lacked the marker" if incomplete[kind] else "")
                + (f"; {repeats[kind]} retransmitted" if repeats[kind] else "")
                + (f"; {duplicates[kind]} duplicates received" if duplicates[kind] else "")
            )
        if any(delivery[k] < 99.9 for k in KINDS) or args.verbose:
            for line in per_call:
                out(f"            {line}")
        for line in peer_errors[:20]:
            out(f"peer error: {line}")

        res.lines.append(
            f"relay: calls={ok} window={window:.1f}s cpu={cpu:.2f}s ({cpu_pct:.1f}% of {cores}"
            f" cores) cpu_per_feed_s={cpu_per_feed_s:.4f} us_per_packet={fmt(us_per_packet, 1)}"
            f" delivery video={fmt(delivery['video'], 2)}% audio={fmt(delivery['audio'], 2)}%"
            f" rss={rss_kib / 1024:.1f}MiB latency video p50/p95="
            f"{fmt(percentile(lat['video'], 50), 1)}/{fmt(percentile(lat['video'], 95), 1)} ms"
            f" audio p50/p95={fmt(percentile(lat['audio'], 50), 1)}/"
            f"{fmt(percentile(lat['audio'], 95), 1)} ms"
        )
        res.lines.append(
            f"target:     {TARGET_CALLS} concurrent 2-party calls under {TARGET_CPU_PCT:.0f}% of"
            f" 2 cores, added latency p95 < {TARGET_LATENCY_P95_MS:.0f} ms per kind (this run:"
            f" {ok} calls, {cpu_pct:.1f}% of {cores} cores, p95 video"
            f" {fmt(percentile(lat['video'], 95), 1)} ms, audio"
            f" {fmt(percentile(lat['audio'], 95), 1)} ms; informational, not enforced)."
            f" Janus anchor (RECIPES.md): ~0.011 CPU-s per feed-s, 55-68 us per packet"
        )
        for kind in KINDS:
            if not delivery[kind] >= MIN_DELIVERY:
                res.errors.append(f"{kind} delivery {fmt(delivery[kind], 2)}% < {MIN_DELIVERY}%")
        if peer_errors:
            res.errors.append(f"{len(peer_errors)} load-peer errors")
        if not server.running:
            res.errors.append("the server died")
    except Exception as err:  # noqa: BLE001 - reported, then cleaned up
        res.errors.append(f"bench aborted: {err!r}")
    finally:
        stops = await asyncio.gather(
            *(w.stop(args.timeout) for w in workers), return_exceptions=True
        )
        warnings_during = len(server.stderr)
        status, how = await server.stop(timeout=30)
        out(
            "shutdown:   load processes "
            + "; ".join(str(s) for s in stops)
            + f"; server {how}, exit status {status}"
        )
        if status not in (0, None):
            res.errors.append(f"server exit status {status} ({how})")
    if res.failed_calls:
        res.errors.append(f"{len(res.failed_calls)} call(s) failed to set up")
    if server.stderr:
        out(
            f"server log: {len(server.stderr)} stderr lines ({warnings_during} before shutdown),"
            " last ones:"
        )
        for line in server.stderr[-20:]:
            out(f"    {line}")
    for w in workers:
        if w.stderr:
            out(f"peer log:   process {w.index}: {len(w.stderr)} stderr lines, last ones:")
            for line in w.stderr[-10:]:
                out(f"    {line}")
    out("errors:     " + ("; ".join(res.errors) if res.errors else "none"))
    if args.profile_server:
        print_profile(args.profile_server)
    for line in res.lines:
        out(line)
    return 1 if res.errors else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="CPU per forwarded feed, delivery and added latency of the media relay."
    )
    parser.add_argument("--calls", type=int, default=5, help="concurrent 2-party calls (N)")
    parser.add_argument("--duration", type=float, default=20.0, help="measurement window, s")
    parser.add_argument("--warmup", type=float, default=5.0, help="after set-up, before the window")
    parser.add_argument(
        "--processes", type=int, default=0, help="load-peer processes (0: one per 2 calls, max 5)"
    )
    parser.add_argument("--fps", type=int, default=30, help="frame rate of the video clip")
    parser.add_argument(
        "--clip-frames", type=int, default=30, help="frames in the looped clip (one key frame)"
    )
    parser.add_argument("--port", type=int, default=0, help="server port (0: a free one)")
    parser.add_argument("--timeout", type=float, default=30.0, help="start-up, reports, stops")
    parser.add_argument("--setup-timeout", type=float, default=60.0, help="limit for one call")
    parser.add_argument(
        "--drain", type=float, default=1.5, help="wait after the window before counting"
    )
    parser.add_argument("--verbose", action="store_true", help="per-call delivery lines")
    parser.add_argument(
        "--profile-server",
        type=Path,
        metavar="FILE",
        help="run the server under cProfile, save the stats to FILE, print the top functions"
        " (CPU figures of such a run are inflated: use it for the shape, not the numbers)",
    )
    parser.add_argument(
        "--server-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra server setting, passed as MEDIATION_NAME (repeat)",
    )
    args = parser.parse_args(argv)
    if args.calls < 1 or args.duration <= 0 or args.warmup < 0 or args.processes < 0:
        parser.error("--calls and --duration must be positive, --warmup and --processes >= 0")
    if not 1 <= args.fps <= 60 or not 2 <= args.clip_frames <= 300:
        parser.error("--fps must be 1..60 and --clip-frames 2..300")
    if args.profile_server is not None:
        args.profile_server = args.profile_server.resolve()
    if args.processes == 0:
        args.processes = min(5, math.ceil(args.calls / 2))
    args.processes = min(args.processes, args.calls)
    settings: dict[str, str] = {}
    for item in args.server_setting:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--server-setting {item!r}: expected NAME=VALUE")
        settings[name.strip().lower()] = value
    args.settings = settings
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"command:    {shlex.join([sys.executable, *sys.argv])}")
    load1, load5, _ = os.getloadavg()
    print(
        f"machine:    {os.cpu_count()} CPUs, {platform.system()} {platform.release()},"
        f" Python {platform.python_version()}, event loop"
        f" {'uvloop ' + uvloop.__version__ if uvloop else 'asyncio'} (server and load peers),"
        f" aiortc {aiortc.__version__}; load average {load1:.2f} (1 min), {load5:.2f} (5 min)"
    )
    tmp = Path(tempfile.mkdtemp(prefix="mediation-relay-bench-"))
    try:
        t = time.perf_counter()
        info = write_clips(tmp / "clips.pickle", fps=args.fps, frames=args.clip_frames)
        print(
            f"clip:       640x480 VP8 {args.fps} fps, {args.clip_frames}-frame loop"
            f" ({info['keyframes']} key frame), {info['video_kbps']:.0f} kbit/s"
            f" (largest frame {info['largest_frame']} B), sha256 {info['sha256'][:16]};"
            f" Opus {info['audio_kbps']:.0f} kbit/s, 20 ms; encoded in"
            f" {time.perf_counter() - t:.1f} s"
        )
        print(f"temp dir:   {tmp} (removed at the end)")
        if uvloop is not None:
            return uvloop.run(run(args, tmp))
        return asyncio.run(run(args, tmp))
    except KeyboardInterrupt:
        print("bench: interrupted (load peers and server stopped)", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
