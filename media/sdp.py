"""Small SDP edits the relay makes to aiortc's descriptions (pure text functions)."""

from __future__ import annotations


def cap_bandwidth(sdp: str, kbps: int, *, directions: tuple[str, ...]) -> str:
    """Add b=AS (kbit/s) and b=TIAS (bit/s) to video sections with one of `directions`.

    The server puts the cap on the sections the *client* sends on: in the
    server's SDP those carry `a=recvonly` (or `a=sendrecv`).
    """
    lines = sdp.split("\r\n")
    sections: list[list[str]] = [[]]
    for line in lines:
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    out: list[str] = list(sections[0])
    for section in sections[1:]:
        is_video = section[0].startswith("m=video")
        direction = next(
            (
                ln[2:]
                for ln in section
                if ln in {f"a={d}" for d in ("sendrecv", "sendonly", "recvonly", "inactive")}
            ),
            "sendrecv",
        )
        section = [ln for ln in section if not ln.startswith(("b=AS:", "b=TIAS:"))]
        if is_video and direction in directions and not section[0].startswith("m=video 0 "):
            at = next((i + 1 for i, ln in enumerate(section) if ln.startswith("c=")), 1)
            section[at:at] = [f"b=AS:{kbps}", f"b=TIAS:{kbps * 1000}"]
        out.extend(section)
    return "\r\n".join(out)


def video_bandwidth(sdp: str) -> list[int]:
    """The b=AS values of the video sections, in order (for tests and checks)."""
    values = []
    in_video = False
    for line in sdp.split("\r\n"):
        if line.startswith("m="):
            in_video = line.startswith("m=video")
        elif in_video and line.startswith("b=AS:"):
            values.append(int(line[5:]))
    return values
