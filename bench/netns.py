"""Two network namespaces joined by a veth pair, for bench/relay.py (needs root).

    with BenchNetwork() as net:        # or net.create() ... net.delete()
        net.wrap(["python", ...], side="srv")   # -> ["ip", "netns", "exec", NS, "python", ...]

The server namespace holds one end of the pair with SRV_ADDR, the peer namespace the other
end with PEER_ADDR (10.99.0.0/24). The veth ends are created directly inside the namespaces,
so nothing ever appears on the host's own interfaces; there is no default route, so no
packet can leave the pair. `lo` is brought up in both. Namespace names carry the bench's
pid, so concurrent runs do not collide and clean-up only ever touches its own namespaces.
`ip netns exec` executes the command in place (no fork): the pid of the started process is
the pid of the server or load peer itself, so /proc/PID/stat reads the right process.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

SUBNET_PREFIX = 24
SRV_ADDR = "10.99.0.1"
PEER_ADDR = "10.99.0.2"
SRV_DEV = "mb-srv0"
PEER_DEV = "mb-peer0"
COMMAND_TIMEOUT = 15.0


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=check
    )


class BenchNetwork:
    def __init__(self, tag: str | None = None) -> None:
        tag = tag or str(os.getpid())
        self.srv = f"medbench-srv-{tag}"
        self.peer = f"medbench-peer-{tag}"
        self.created: list[str] = []

    @property
    def namespaces(self) -> dict[str, str]:
        return {"srv": self.srv, "peer": self.peer}

    def create(self) -> None:
        if os.geteuid() != 0:
            raise PermissionError("creating network namespaces needs root")
        existing = set(_ip("netns", "list").stdout.split())
        for ns in (self.srv, self.peer):
            if ns in existing:
                raise RuntimeError(f"network namespace {ns} exists already")
        for ns in (self.srv, self.peer):
            _ip("netns", "add", ns)
            self.created.append(ns)
        _ip(
            "link", "add", SRV_DEV, "netns", self.srv, "type", "veth",
            "peer", "name", PEER_DEV, "netns", self.peer,
        )  # fmt: skip
        for ns, dev, addr in ((self.srv, SRV_DEV, SRV_ADDR), (self.peer, PEER_DEV, PEER_ADDR)):
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{addr}/{SUBNET_PREFIX}", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")

    def describe(self) -> str:
        routes = _ip("-n", self.srv, "-4", "route", "show", check=False).stdout.strip()
        return (
            f"namespaces {self.srv} ({SRV_DEV} {SRV_ADDR}/{SUBNET_PREFIX}) and {self.peer}"
            f" ({PEER_DEV} {PEER_ADDR}/{SUBNET_PREFIX}), veth pair, lo up, routes in"
            f" {self.srv}: {routes.replace(chr(10), '; ') or 'none'}"
        )

    def wrap(self, command: list[str], side: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespaces[side], *command]

    def delete(self) -> list[str]:
        """Delete the namespaces this object created (the veth pair goes with them)."""
        problems = []
        for ns in reversed(self.created):
            try:
                result = _ip("netns", "delete", ns, check=False)
                if result.returncode != 0:
                    problems.append(f"{ns}: {result.stderr.strip()}")
            except subprocess.TimeoutExpired:
                problems.append(f"{ns}: 'ip netns delete' timed out")
        self.created.clear()
        return problems

    def __enter__(self) -> BenchNetwork:
        self.create()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.delete()
