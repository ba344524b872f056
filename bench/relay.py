#!/usr/bin/env python3
"""Media relay benchmark: our relay, a naive aiortc relay and Janus, interleaved, same load.

    sudo .venv/bin/python bench/relay.py --calls 5 --duration 20 --reps 3 \
        [--servers ours,naive,janus] [--naive-calls 2] [--warmup 5] [--processes P]

Creates two network namespaces joined by a veth pair (bench/netns.py; needs root), encodes
the load clip once, then for each repetition and each server in turn: starts the server
in the server namespace, starts load-peer processes (`bench/relay_peer.py`) in the peer
namespace, sets up N concurrent 2-party calls, measures a window, stops everything. The
servers:
- ours:  `python -m signaling.cli serve` (the project's relay), media on the veth address;
         calls launched without recording consent (kiosk_without_consent=unrecorded),
         so they are relayed, not recorded (bench/recording.py measures recording);
- naive: `bench/naive_relay.py` (aiortc decode -> MediaRelay -> encode);
- janus: Debian's `janus` with the videoroom plugin and its HTTP API, config in a temp copy.
Each side publishes a pre-encoded 640x480 VP8 clip at ~1 Mbit/s and an Opus tone;
receivers count RTP and never decode. Per server and repetition it prints server CPU per
forwarded feed-second, microseconds per forwarded packet, delivery, RSS and added latency
per kind; then medians across repetitions and the ratios ours/Janus and ours/naive.

Figures are printed, never checked against the targets. Exit status: 1 when a call failed
to set up, delivery of a kind is below 90%, a server or a load peer died, or a server
exited badly; 2 on bad usage. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiortc
import janus_client
from dispatch import CHEAP_HASHER, percentile, proc_cpu_s, proc_rss_kib
from netns import PEER_ADDR, SRV_ADDR, BenchNetwork
from procs import ManagedProcess
from relay_peer import write_clips

from storage import MetadataStore

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
    uvloop = None  # type: ignore[assignment]

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
KINDS = ("video", "audio")
SERVERS = ("ours", "naive", "janus")
MIN_DELIVERY = 90.0  # % per kind; below this the run fails (a functional check, not a target)
TARGET_CALLS = 10
TARGET_CPU_PCT = 60.0
TARGET_LATENCY_P95_MS = 50.0
TARGET_VS_JANUS = 1.0
TARGET_VS_NAIVE = 0.1
BASE_PORTS = {"ours": 8100, "naive": 8200, "janus": 8300}  # + repetition (inside the namespace)
OUR_SETTINGS = {
    "host": SRV_ADDR,
    "media_interfaces": SRV_ADDR,  # the server's media sockets bind on the veth address only
    "rate_limit_per_s": "1000",
    "rate_limit_burst": "2000",
    "rate_limit_close_after": "100000",
    # Relay only: the load peers launch without recording consent (compared with Janus,
    # which records nothing); bench/recording.py measures what recording adds.
    "kiosk_without_consent": "unrecorded",
}
STARTED_PIDS: set[int] = set()  # every process this bench started, for the last-resort kill


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


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def median(values: list[float]) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(values) if values else math.nan


# --- provisioning (our server) --------------------------------------------------------------


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


# --- processes -------------------------------------------------------------------------------


class ServerProcess(ManagedProcess):
    """A server in the server namespace; ready when its output shows `ready_marker`."""

    def __init__(
        self, name: str, command: list[str], env: dict[str, str], ready_marker: str
    ) -> None:
        super().__init__(
            name,
            command,
            env,
            ready_marker,
            started=STARTED_PIDS.add,
            stopped=STARTED_PIDS.discard,
        )


class LoadProcess:
    """One `bench/relay_peer.py` process in the peer namespace, spoken to in JSON lines."""

    def __init__(self, index: int, command: list[str]) -> None:
        self.index = index
        self.command = command
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
        STARTED_PIDS.add(self.proc.pid)
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

    async def fetch_metrics(self, url: str, timeout: float) -> dict[str, float]:
        """The server's Prometheus metrics (fetched from inside the peer namespace)."""
        await self.send(cmd="fetch", url=url)
        reply = await self.receive("fetched", timeout)
        if not reply.get("ok"):
            raise RuntimeError(f"/metrics: {reply.get('error')}")
        values: dict[str, float] = {}
        for line in reply["text"].splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    values[name] = float(value)
        return values

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
        STARTED_PIDS.discard(self.proc.pid)
        await asyncio.wait(self._readers, timeout=2)
        for reader in self._readers:
            reader.cancel()
        return f"{how}, exit status {self.proc.returncode}"


# --- one server, one repetition -------------------------------------------------------------


@dataclass
class Run:
    server: str
    rep: int
    calls_asked: int
    errors: list[str] = field(default_factory=list)
    fig: dict[str, Any] = field(default_factory=dict)


@dataclass
class Target:
    """How to start one server and what the load peers talk to."""

    process: ServerProcess
    url: str  # for the load peers
    metrics_url: str | None = None  # ours: /metrics, fetched from the peer namespace
    setup_fields: list[dict[str, Any]] = field(default_factory=list)  # per call
    note: str = ""


def make_target(
    kind: str, rep: int, calls: int, net: BenchNetwork, tmp: Path, args: argparse.Namespace
) -> Target:
    port = BASE_PORTS[kind] + rep
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIATION_")}
    if kind == "ours":
        data_dir = tmp / f"ours-data-{rep}"
        data_dir.mkdir()
        pairs = provision(data_dir / "metadata.sqlite3", calls)
        env = dict(base_env)
        env.update(
            MEDIATION_DATA_DIR=str(data_dir),
            MEDIATION_DEMO_ACCOUNTS="false",
            MEDIATION_LOG_LEVEL="WARNING",
            MEDIATION_PORT=str(port),
        )
        settings = {**OUR_SETTINGS, **args.settings}
        env.update({f"MEDIATION_{k.upper()}": v for k, v in settings.items()})
        command = [
            sys.executable, "-m", "signaling.cli", "serve", "--host", SRV_ADDR,
            "--port", str(port),
        ]  # fmt: skip
        if args.profile_server:
            profile = profile_path(args, rep)
            command[1:1] = ["-m", "cProfile", "-o", str(profile)]
        return Target(
            ServerProcess("ours", net.wrap(command, "srv"), env, "mediation: serving on"),
            url=f"ws://{SRV_ADDR}:{port}/ws",
            metrics_url=f"http://{SRV_ADDR}:{port}/metrics",
            setup_fields=[
                {"device_token": d, "expert_token": e, "consent_evidence": False} for d, e in pairs
            ],
            note="settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()),
        )
    if kind == "naive":
        command = [
            sys.executable, str(BENCH_DIR / "naive_relay.py"), "--host", SRV_ADDR,
            "--port", str(port),
        ]  # fmt: skip
        return Target(
            ServerProcess("naive", net.wrap(command, "srv"), base_env, "naive-relay: serving on"),
            url=f"http://{SRV_ADDR}:{port}",
            setup_fields=[{"key": f"{rep}-{i}"} for i in range(calls)],
            note="aiortc decode -> MediaRelay -> encode (VP8 encoder at 1 Mbit/s)",
        )
    folder = tmp / f"janus-{rep}"
    janus_client.write_config(folder, SRV_ADDR, port)
    return Target(
        ServerProcess(
            "janus",
            net.wrap(janus_client.janus_command(folder), "srv"),
            base_env,
            janus_client.READY_MARKER,
        ),
        url=f"http://{SRV_ADDR}:{port}/janus",
        setup_fields=[{"room": 1000 * (rep + 1) + i} for i in range(calls)],
        note=f"config {folder} (videoroom + HTTP on {SRV_ADDR}:{port}, ICE on {SRV_ADDR})",
    )


async def run_one(
    kind: str, rep: int, args: argparse.Namespace, net: BenchNetwork, tmp: Path
) -> Run:
    out = print
    calls = args.naive_calls if kind == "naive" else args.calls
    run = Run(kind, rep, calls)
    processes = min(args.processes or min(5, math.ceil(calls / 2)), calls)
    cores = os.cpu_count() or 1
    out(f"\n=== rep {rep + 1}/{args.reps}, server {kind}: {calls} calls ===")
    target = make_target(kind, rep, calls, net, tmp, args)
    server = target.process
    workers: list[LoadProcess] = []
    setups: dict[int, dict[str, Any]] = {}
    failed: dict[int, str] = {}
    try:
        await server.start(args.timeout)
        out(f"server:     {kind} pid {server.pid} in {net.srv}, {server.ready_line.strip()!r}")
        out(f"            {target.note}")
        workers = [
            LoadProcess(
                i,
                net.wrap(
                    [
                        sys.executable,
                        str(BENCH_DIR / "relay_peer.py"),
                        "--backend",
                        kind,
                        "--url",
                        target.url,
                        "--clips",
                        str(tmp / "clips.pickle"),
                        "--worker",
                        str(i),
                        "--setup-timeout",
                        str(args.setup_timeout),
                    ],  # fmt: skip
                    "peer",
                ),
            )
            for i in range(processes)
        ]
        await asyncio.gather(*(w.start(args.timeout) for w in workers))
        out(
            f"load:       {len(workers)} load-peer processes in {net.peer} (pids"
            f" {', '.join(str(w.pid) for w in workers)}); call i runs in process i mod"
            f" {len(workers)}"
        )
        # One call at a time (for ours: only expert i is free when kiosk i launches).
        for i, extra in enumerate(target.setup_fields):
            worker = workers[i % len(workers)]
            try:
                await worker.send(cmd="setup", call=i, **extra)
                ready = await worker.receive("ready", args.setup_timeout + 10)
            except Exception as err:  # noqa: BLE001 - reported below
                ready = {"ok": False, "error": repr(err)}
            if ready.get("ok"):
                setups[i] = ready
            else:
                failed[i] = str(ready.get("error"))
            if not server.running:
                raise RuntimeError("the server died during call set-up")
        ok = len(setups)
        totals = sorted(s["timings"]["media"] for s in setups.values())
        out(
            f"setup:      {ok}/{calls} calls up; media both ways after p50"
            f" {fmt(percentile(totals, 50), 2)} s, max {fmt(max(totals, default=math.nan), 2)} s"
        )
        for i, s in sorted(setups.items()):
            stages = ", ".join(f"{k} {v:.3f}" for k, v in s["timings"].items())
            retries = f"; 428 retries {s['join_retries']}" if s.get("join_retries") else ""
            out(f"            call {i}: {stages} s{retries}")
        for i, error in sorted(failed.items()):
            out(f"            call {i}: FAILED: {error}")
        if not ok:
            raise RuntimeError("no call could be set up")

        await asyncio.sleep(args.warmup)
        m0 = await workers[0].fetch_metrics(target.metrics_url, 10) if target.metrics_url else {}
        w0 = {w.pid: proc_cpu_s(w.pid) for w in workers}
        mach0 = machine_cpu()
        cpu0 = proc_cpu_s(server.pid)
        t0 = time.monotonic()
        await asyncio.sleep(args.duration)
        cpu1 = proc_cpu_s(server.pid) if server.running else math.nan
        t1 = time.monotonic()
        mach1 = machine_cpu()
        w1 = {w.pid: proc_cpu_s(w.pid) if w.running else math.nan for w in workers}
        m1 = await workers[0].fetch_metrics(target.metrics_url, 10) if target.metrics_url else {}
        rss_kib = proc_rss_kib(server.pid)
        threads = proc_threads(server.pid)
        await asyncio.sleep(args.drain)  # packets of frames sent before t1 arrive
        for w in workers:
            await w.send(cmd="report", t0=t0, t1=t1)
        reports = [await w.receive("report", args.timeout) for w in workers]
        run.fig = figures(
            kind, args, run, reports, ok, t1 - t0, cpu1 - cpu0, m0, m1, rss_kib, threads,
            (mach0, mach1), sum(w1[p] - w0[p] for p in w0), cores,
        )  # fmt: skip
        if not server.running:
            run.errors.append("the server died")
    except asyncio.CancelledError:
        run.errors.append("interrupted")
        raise
    except Exception as err:  # noqa: BLE001 - reported, then cleaned up
        run.errors.append(f"run aborted: {err!r}")
    finally:
        stopping_at = time.strftime("%H:%M:%S")
        stops = await asyncio.gather(
            *(w.stop(args.timeout) for w in workers), return_exceptions=True
        )
        status, how = await server.stop(timeout=30)
        out(
            f"shutdown:   from {stopping_at}: load processes "
            + "; ".join(str(s) for s in stops)
            + f"; server {how}, exit status {status}"
        )
        # Janus exits 0 on SIGTERM; ours too. (None: never started.)
        if status not in (0, None):
            run.errors.append(f"server exit status {status} ({how})")
        if failed:
            run.errors.append(f"{len(failed)} call(s) failed to set up")
        log_lines = server.stderr if kind != "janus" else janus_problems(server.stdout)
        if log_lines:
            what = (
                "distinct Janus [WARN]/[ERR] messages after start-up"
                if kind == "janus"
                else "stderr lines"
            )
            out(f"server log: {len(log_lines)} {what}, last ones:")
            for line in log_lines[-12:]:
                out(f"    {line}")
        for w in workers:
            if w.stderr:
                out(f"peer log:   process {w.index}: {len(w.stderr)} stderr lines, last ones:")
                for line in w.stderr[-8:]:
                    out(f"    {line}")
        out("errors:     " + ("; ".join(run.errors) if run.errors else "none"))
        if kind == "ours" and args.profile_server:
            print_profile(profile_path(args, rep))
        if run.fig:
            out(result_line(run))
    return run


def profile_path(args: argparse.Namespace, rep: int) -> Path:
    path: Path = args.profile_server
    return path.with_name(f"{path.name}.rep{rep + 1}")


def print_profile(path: Path, top: int = 25) -> None:
    import io
    import pstats

    if not path.exists():
        print(f"profile:    {path} was not written (the server did not exit normally)")
        return
    text = io.StringIO()
    stats = pstats.Stats(str(path), stream=text)
    stats.sort_stats("tottime").print_stats(top)
    print(f"profile:    our server under cProfile, top {top} by own time (saved in {path}):")
    lines = text.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    for line in lines[start:]:
        if line.strip():
            print(f"    {line}")


JANUS_STARTUP_WARNINGS = ("has been disabled", "didn't specify any STUN server")


def janus_problems(lines: list[str]) -> list[str]:
    """Janus's warnings and errors after start-up, counted by text (handle ids removed)."""
    counts: dict[str, int] = {}
    for line in lines:
        if ("[WARN]" in line or "[ERR]" in line) and not any(
            w in line for w in JANUS_STARTUP_WARNINGS
        ):
            text = re.sub(r"\[\d+\]\s*", "", line).strip()
            counts[text] = counts.get(text, 0) + 1
    return [f"{n}x {text}" for text, n in counts.items()]


def figures(
    kind: str,
    args: argparse.Namespace,
    run: Run,
    reports: list[dict[str, Any]],
    ok: int,
    window: float,
    cpu: float,
    m0: dict[str, float],
    m1: dict[str, float],
    rss_kib: int,
    threads: int,
    mach: tuple[tuple[float, float, float], tuple[float, float, float]],
    load_cpu: float,
    cores: int,
) -> dict[str, Any]:
    out = print
    feeds = 2 * ok
    zero = dict.fromkeys(KINDS, 0)
    sent, received, octets, frames, frames_rx = (dict(zero) for _ in range(5))
    incomplete, repeats, duplicates, win_packets, win_octets = (dict(zero) for _ in range(5))
    latency: dict[str, list[float]] = {k: [] for k in KINDS}
    shares: dict[str, list[float]] = {k: [] for k in KINDS}
    runners_up: dict[str, list[float]] = {k: [] for k in KINDS}
    offsets: dict[str, set[int | None]] = {k: set() for k in KINDS}
    per_call: list[str] = []
    peer_errors: list[str] = []
    for report in reports:
        for call in report["calls"]:
            call_bits = []
            for direction, kinds in call["directions"].items():
                for k in KINDS:
                    f = kinds[k]
                    sent[k] += f["sent"]
                    received[k] += f["received"]
                    octets[k] += f["octets"]
                    frames[k] += f["frames"]
                    frames_rx[k] += f["frames_received"]
                    incomplete[k] += f["incomplete"]
                    repeats[k] += f["repeats"]
                    duplicates[k] += f["duplicates"]
                    win_packets[k] += f["window_packets"]
                    win_octets[k] += f["window_octets"]
                    latency[k].extend(f["latencies_ms"])
                    shares[k].append(f["offset_share"])
                    runners_up[k].append(f["offset_runner_up"])
                    offsets[k].add(f["offset"])
                    pct = 100 * f["frames_received"] / f["frames"] if f["frames"] else math.nan
                    call_bits.append(f"{direction} {k} {fmt(pct, 2)}% frames")
            per_call.append(f"call {call['call']}: " + ", ".join(call_bits))
            if any(s != "connected" for s in call["states"]):
                peer_errors.append(f"call {call['call']}: client states {call['states']}")
            peer_errors.extend(f"call {call['call']}: {e}" for e in call["errors"])
    reencoded = kind == "naive"
    delivery_packets = {
        k: (100 * received[k] / sent[k] if sent[k] and not reencoded else math.nan) for k in KINDS
    }
    delivery_frames = {
        k: (100 * frames_rx[k] / frames[k] if frames[k] else math.nan) for k in KINDS
    }
    lat = {k: sorted(v) for k, v in latency.items()}
    subscriber_packets = sum(win_packets.values())
    key = "mediation_media_packets_forwarded"
    if kind == "ours" and key in m0 and key in m1:
        forwarded = m1[key] - m0[key]
        forwarded_how = "server counter (/metrics delta)"
    else:
        forwarded = float(subscriber_packets)
        forwarded_how = "received by subscribers (frames first seen in the window)"
    cpu_pct = 100 * cpu / window / cores
    cpu_per_feed_s = cpu / (feeds * window) if feeds else math.nan
    us_per_packet = cpu * 1e6 / forwarded if forwarded > 0 else math.nan
    mach0, mach1 = mach
    mach_busy = 100 * (mach1[0] - mach0[0]) / (mach1[2] - mach0[2])
    mach_steal = 100 * (mach1[1] - mach0[1]) / (mach1[2] - mach0[2])

    out(
        f"window:     {window:.1f} s after a {args.warmup:g} s warm-up; {ok} calls ="
        f" {feeds} feeds (one participant's audio+video to one subscriber)"
    )
    for k in KINDS:
        out(
            f"sent:       {k}: {sent[k]} packets by publishers ="
            f" {sent[k] / window / feeds:.1f} packets/s and"
            f" {octets[k] * 8 / 1000 / window / feeds:.0f} kbit/s per feed; received"
            f" {win_packets[k] / window / feeds:.1f} packets/s and"
            f" {win_octets[k] * 8 / 1000 / window / feeds:.0f} kbit/s per feed"
        )
    extra = ""
    if kind == "ours":
        dropped = m1.get("mediation_media_packets_dropped", 0) - m0.get(
            "mediation_media_packets_dropped", 0
        )
        plis = m1.get("mediation_media_plis_sent", 0) - m0.get("mediation_media_plis_sent", 0)
        extra = (
            f"; subscribers received {subscriber_packets}; dropped by the server {dropped:.0f},"
            f" PLIs sent {plis:.0f}"
        )
    out(
        f"forwarded:  {forwarded:.0f} packets ({forwarded_how}) ="
        f" {forwarded / window / feeds:.1f} packets/s per feed{extra}"
    )
    out(
        f"server:     {cpu:.2f} CPU-s in {window:.1f} s = {cpu_pct:.1f}% of {cores} cores"
        f" ({100 * cpu / window:.1f}% of one); RSS {rss_kib / 1024:.1f} MiB; {threads} threads"
    )
    out(
        f"machine:    load peers {load_cpu:.2f} CPU-s ="
        f" {100 * load_cpu / window / cores:.1f}% of {cores} cores; /proc/stat busy"
        f" {mach_busy:.1f}% (tick-sampled: reads low for bursty loads), steal {mach_steal:.1f}%"
    )
    lag = [r["loop_lag_ms"] for r in reports]
    out(
        "peer loops: event-loop lag (20 ms probe) p99 "
        + ", ".join(fmt(x["p99"], 1) for x in lag)
        + " ms, max "
        + ", ".join(fmt(x["max"], 1) for x in lag)
        + " ms (per load process)"
    )
    for k in KINDS:
        shown = sorted(o for o in offsets[k] if o is not None)
        offs = "0 (timestamps kept)" if shown == [0] else f"{len(shown)} distinct (per stream)"
        out(
            f"matching:   {k}: RTP timestamp offset {offs}; frames voting for it: min"
            f" {fmt(100 * min(shares[k], default=math.nan), 1)}% of those sampled, for the"
            f" best other offset: max {fmt(100 * max(runners_up[k], default=math.nan), 1)}%"
        )
    for k in KINDS:
        values = lat[k]
        what = "marker packet of a frame" if k == "video" else "packet"
        out(
            f"latency:    {k} ({what}, publisher send -> subscriber arrival, ms):"
            f" p50 {fmt(percentile(values, 50), 2)}, p95 {fmt(percentile(values, 95), 2)},"
            f" p99 {fmt(percentile(values, 99), 2)},"
            f" max {fmt(max(values, default=math.nan), 2)} (n={len(values)})"
        )
    for k in KINDS:
        pk = (
            "packets n/a (re-encoded)"
            if reencoded
            else f"{received[k]}/{sent[k]} packets = {fmt(delivery_packets[k], 2)}%"
        )
        out(
            f"delivery:   {k}: {pk}; {frames_rx[k]}/{frames[k]} frames ="
            f" {fmt(delivery_frames[k], 2)}%"
            + (f"; {incomplete[k]} frames lacked the marker" if incomplete[k] else "")
            + (f"; {repeats[k]} retransmitted" if repeats[k] else "")
            + (f"; {duplicates[k]} duplicates received" if duplicates[k] else "")
        )
    delivery = delivery_frames if reencoded else delivery_packets
    if any(not delivery[k] >= 99.9 for k in KINDS) or args.verbose:
        for line in per_call:
            out(f"            {line}")
    for line in peer_errors[:20]:
        out(f"peer error: {line}")
    for k in KINDS:
        if not delivery[k] >= MIN_DELIVERY:
            run.errors.append(f"{k} delivery {fmt(delivery[k], 2)}% < {MIN_DELIVERY}%")
    if peer_errors:
        run.errors.append(f"{len(peer_errors)} load-peer errors")
    return {
        "calls": ok,
        "window": window,
        "cpu": cpu,
        "cpu_pct": cpu_pct,
        "cpu_per_feed_s": cpu_per_feed_s,
        "us_per_packet": us_per_packet,
        "forwarded_pps_feed": forwarded / window / feeds if feeds else math.nan,
        "delivery": delivery,
        "delivery_kind": "frames" if reencoded else "packets",
        "rss_mib": rss_kib / 1024,
        "latency": {
            k: {
                "p50": percentile(lat[k], 50),
                "p95": percentile(lat[k], 95),
                "max": max(lat[k], default=math.nan),
            }
            for k in KINDS
        },
    }


def result_line(run: Run) -> str:
    f = run.fig
    lat = f["latency"]
    return (
        f"result:     {run.server} rep {run.rep + 1}: calls={f['calls']}"
        f" cpu={f['cpu']:.2f}s ({f['cpu_pct']:.1f}% of {os.cpu_count()} cores)"
        f" cpu_per_feed_s={f['cpu_per_feed_s']:.4f} us_per_packet={fmt(f['us_per_packet'], 1)}"
        f" delivery({f['delivery_kind']}) video={fmt(f['delivery']['video'], 2)}%"
        f" audio={fmt(f['delivery']['audio'], 2)}% rss={f['rss_mib']:.1f}MiB"
        f" latency video p50/p95={fmt(lat['video']['p50'], 1)}/{fmt(lat['video']['p95'], 1)} ms"
        f" audio p50/p95={fmt(lat['audio']['p50'], 1)}/{fmt(lat['audio']['p95'], 1)} ms"
    )


def summary(runs: list[Run], args: argparse.Namespace) -> None:
    out = print
    servers = [s for s in args.servers if any(r.server == s and r.fig for r in runs)]
    out(f"\n=== summary: medians over {args.reps} repetition(s), interleaved ===")
    header = (
        f"{'server':<7}{'calls':>6}{'CPU-s/feed-s':>14}{'us/packet':>11}{'% 2 cores':>11}"
        f"{'delivery v/a %':>17}{'RSS MiB':>9}{'video p50/p95 ms':>18}{'audio p50/p95 ms':>18}"
    )
    out(header)
    med: dict[str, dict[str, float]] = {}
    for s in servers:
        figs = [r.fig for r in runs if r.server == s and r.fig]
        m = {
            "calls": median([f["calls"] for f in figs]),
            "cpf": median([f["cpu_per_feed_s"] for f in figs]),
            "usp": median([f["us_per_packet"] for f in figs]),
            "pct": median([f["cpu_pct"] for f in figs]),
            "dv": median([f["delivery"]["video"] for f in figs]),
            "da": median([f["delivery"]["audio"] for f in figs]),
            "rss": median([f["rss_mib"] for f in figs]),
        }
        for k in KINDS:
            for q in ("p50", "p95"):
                m[f"{k}_{q}"] = median([f["latency"][k][q] for f in figs])
        med[s] = m
        unit = "frames" if s == "naive" else "packets"
        out(
            f"{s:<7}{m['calls']:>6.0f}{m['cpf']:>14.4f}{fmt(m['usp'], 1):>11}{m['pct']:>11.1f}"
            f"{fmt(m['dv'], 2) + '/' + fmt(m['da'], 2):>17}{m['rss']:>9.1f}"
            f"{fmt(m['video_p50'], 1) + '/' + fmt(m['video_p95'], 1):>18}"
            f"{fmt(m['audio_p50'], 1) + '/' + fmt(m['audio_p95'], 1):>18}"
            f"  (n={len(figs)}, delivery by {unit})"
        )
    if "naive" in med and med["naive"]["calls"] != med.get("ours", {}).get("calls"):
        out(
            f"note:       the naive relay ran {med['naive']['calls']:.0f} call(s) (--naive-calls),"
            " the others their --calls; CPU is compared per forwarded feed-second and per packet"
        )
    if "ours" in med:
        for other, target in (("janus", TARGET_VS_JANUS), ("naive", TARGET_VS_NAIVE)):
            if other not in med:
                continue
            per_rep = []
            for rep in range(args.reps):
                a = [r.fig for r in runs if r.server == "ours" and r.rep == rep and r.fig]
                b = [r.fig for r in runs if r.server == other and r.rep == rep and r.fig]
                if a and b:
                    per_rep.append(a[0]["cpu_per_feed_s"] / b[0]["cpu_per_feed_s"])
            out(
                f"ratio:      ours/{other} CPU-s per feed-s: per repetition"
                f" [{', '.join(f'{x:.3f}' for x in per_rep)}], median {fmt(median(per_rep), 3)};"
                f" ratio of medians {med['ours']['cpf'] / med[other]['cpf']:.3f};"
                f" us/packet ratio of medians"
                f" {fmt(med['ours']['usp'] / med[other]['usp'], 3)} (target <= {target:g})"
            )
    if "ours" in med:
        m = med["ours"]
        out(
            f"target:     ours <= {TARGET_VS_JANUS:g}x Janus CPU per feed, <= 1/"
            f"{1 / TARGET_VS_NAIVE:.0f} of the naive relay's; {TARGET_CALLS} concurrent 2-party"
            f" calls under {TARGET_CPU_PCT:.0f}% of 2 cores (this run: {m['calls']:.0f} calls,"
            f" {m['pct']:.1f}% of {os.cpu_count()} cores); added latency p95 <"
            f" {TARGET_LATENCY_P95_MS:.0f} ms per kind (video {fmt(m['video_p95'], 1)} ms,"
            f" audio {fmt(m['audio_p95'], 1)} ms). Informational, not enforced."
        )


async def run_all(args: argparse.Namespace, net: BenchNetwork, tmp: Path) -> int:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    runs: list[Run] = []
    try:
        for rep in range(args.reps):
            for kind in args.servers:
                runs.append(await run_one(kind, rep, args, net, tmp))
    except asyncio.CancelledError:
        print("bench: interrupted; processes stopped", file=sys.stderr)
        summary(runs, args)
        return 130
    summary(runs, args)
    failed = [f"{r.server} rep {r.rep + 1}: {'; '.join(r.errors)}" for r in runs if r.errors]
    print("errors:     " + (" | ".join(failed) if failed else "none"))
    return 1 if failed else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="CPU per forwarded feed, delivery and added latency: ours, naive, Janus."
    )
    parser.add_argument("--calls", type=int, default=5, help="concurrent 2-party calls (N)")
    parser.add_argument(
        "--naive-calls", type=int, default=0, help="calls for the naive relay (0: min(N, 2))"
    )
    parser.add_argument("--duration", type=float, default=20.0, help="measurement window, s")
    parser.add_argument("--warmup", type=float, default=5.0, help="after set-up, before the window")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (servers interleaved)")
    parser.add_argument(
        "--servers", default=",".join(SERVERS), help="comma-separated, in run order per rep"
    )
    parser.add_argument(
        "--processes", type=int, default=0, help="load-peer processes (0: one per 2 calls, max 5)"
    )
    parser.add_argument("--fps", type=int, default=30, help="frame rate of the video clip")
    parser.add_argument(
        "--clip-frames", type=int, default=30, help="frames in the looped clip (one key frame)"
    )
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
        help="run our server under cProfile, save the stats to FILE.repN, print the top"
        " functions (CPU figures of such a run are inflated: use it for the shape)",
    )
    parser.add_argument(
        "--server-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra setting for our server, passed as MEDIATION_NAME (repeat)",
    )
    args = parser.parse_args(argv)
    if args.calls < 1 or args.duration <= 0 or args.warmup < 0 or args.processes < 0:
        parser.error("--calls and --duration must be positive, --warmup and --processes >= 0")
    if args.reps < 1 or args.naive_calls < 0:
        parser.error("--reps must be >= 1 and --naive-calls >= 0")
    if not 1 <= args.fps <= 60 or not 2 <= args.clip_frames <= 300:
        parser.error("--fps must be 1..60 and --clip-frames 2..300")
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = [s for s in args.servers if s not in SERVERS]
    if unknown or not args.servers or len(set(args.servers)) != len(args.servers):
        parser.error(f"--servers: a list of distinct names from {', '.join(SERVERS)}")
    if args.naive_calls == 0:
        args.naive_calls = min(args.calls, 2)
    if args.profile_server is not None:
        args.profile_server = args.profile_server.resolve()
    settings: dict[str, str] = {}
    for item in args.server_setting:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--server-setting {item!r}: expected NAME=VALUE")
        settings[name.strip().lower()] = value
    args.settings = settings
    return args


def kill_leftovers() -> list[int]:
    """Last resort: SIGKILL processes this bench started that are still alive."""
    killed = []
    for pid in list(STARTED_PIDS):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    STARTED_PIDS.clear()
    return killed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench: needs root (network namespaces and a veth pair)", file=sys.stderr)
        return 2
    if "janus" in args.servers and not Path(janus_client.JANUS_BINARY).exists():
        print("bench: janus not installed (apt-get install -y janus)", file=sys.stderr)
        return 2
    print(f"command:    {shlex.join([sys.executable, *sys.argv])}")
    load1, load5, _ = os.getloadavg()
    janus_version = "-"
    if Path(janus_client.JANUS_BINARY).exists():
        with contextlib.suppress(Exception):
            janus_version = subprocess.run(
                [janus_client.JANUS_BINARY, "--version"], capture_output=True, text=True,
                timeout=10,
            ).stdout.splitlines()[0]  # fmt: skip
    print(
        f"machine:    {os.cpu_count()} CPUs, {platform.system()} {platform.release()},"
        f" Python {platform.python_version()}, event loop"
        f" {'uvloop ' + uvloop.__version__ if uvloop else 'asyncio'}, aiortc"
        f" {aiortc.__version__}, {janus_version}; load average {load1:.2f} (1 min),"
        f" {load5:.2f} (5 min)"
    )
    print(
        f"plan:       {args.reps} repetition(s) x servers {', '.join(args.servers)} (in that"
        f" order each time); {args.calls} calls (naive relay: {args.naive_calls}),"
        f" {args.warmup:g} s warm-up, {args.duration:g} s window"
    )
    tmp = Path(tempfile.mkdtemp(prefix="mediation-relay-bench-"))
    net = BenchNetwork()
    previous = signal.getsignal(signal.SIGTERM)
    try:
        net.create()
        print(f"network:    {net.describe()}; servers on {SRV_ADDR}, load peers on {PEER_ADDR}")
        t = time.perf_counter()
        info = write_clips(tmp / "clips.pickle", fps=args.fps, frames=args.clip_frames)
        print(
            f"clip:       640x480 VP8 {args.fps} fps, {args.clip_frames}-frame loop"
            f" ({info['keyframes']} key frame), {info['video_kbps']:.0f} kbit/s"
            f" (largest frame {info['largest_frame']} B), sha256 {info['sha256'][:16]};"
            f" Opus {info['audio_kbps']:.0f} kbit/s, 20 ms; encoded in"
            f" {time.perf_counter() - t:.1f} s; the same file for every server"
        )
        print(f"temp dir:   {tmp} (removed at the end)")
        if uvloop is not None:
            return uvloop.run(run_all(args, net, tmp))
        return asyncio.run(run_all(args, net, tmp))
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # finish the clean-up
        killed = kill_leftovers()
        problems = net.delete()
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(tmp, ignore_errors=True)
        print(
            f"cleanup:    namespaces deleted{': ' + '; '.join(problems) if problems else ''}"
            + (f"; killed leftover pids {killed}" if killed else "")
        )


if __name__ == "__main__":
    sys.exit(main())
