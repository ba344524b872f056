"""Logs carry call, participant and connection ids, and never a secret."""

from __future__ import annotations

import json
import logging

import pytest

from signaling.logs import ContextFilter, JsonFormatter
from tests.conftest import PASSWORD


class JsonLines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(ContextFilter())
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def json_lines():
    handler = JsonLines()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler.lines
    root.removeHandler(handler)
    root.setLevel(old_level)


async def test_transitions_are_json_lines_with_ids_and_no_secret_is_ever_logged(
    service, json_lines
):
    expert = await service.expert("amy", specialties=["family"])
    session_token = await service.login("amy")
    _, device_token = service.add_device("kiosk")
    kiosk = await service.connect(device_token=device_token)
    call_id = (await kiosk.request("call.launch", consent_evidence=True, dispute_type="family"))[
        "call"
    ]["id"]
    ring = await expert.next_event("call.ring")
    await expert.request("call.accept", invitation_id=ring["payload"]["invitation_id"])
    await kiosk.wait_call_state(call_id, "active")

    records = [json.loads(line) for line in json_lines]
    ours = [r for r in records if r["logger"].startswith("signaling")]
    transitions = [r for r in ours if r["msg"].startswith("call ") and "->" in r["msg"]]
    assert [r["msg"].split(" (")[0] for r in transitions] == [
        "call None -> launching",
        "call launching -> ringing",
        "call ringing -> active",
    ]
    assert all(r["call_id"] == call_id for r in transitions)
    participant_lines = [r for r in ours if r["msg"].startswith("participant ")]
    assert participant_lines and all("participant_id" in r for r in participant_lines)
    assert any("conn_id" in r for r in ours)
    everything = "\n".join(json_lines)
    for secret in (PASSWORD, session_token, device_token, kiosk.auth["rejoin_token"]):
        assert secret not in everything
