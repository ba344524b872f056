"""The queue's wait estimate: position x average handle time / experts serving."""

from __future__ import annotations

from signaling.dispatch import Dispatcher, DispatchTimers, sequential_ids
from signaling.wait_estimate import DEFAULT_HANDLE_TIME_S, estimate_wait_s
from storage import CallRecord, new_id


class FakeClock:
    def monotonic(self) -> float:
        return 1000.0

    def wall_ms(self) -> int:
        return 1_000_000


def test_not_queued_means_no_estimate():
    assert estimate_wait_s(None, [60_000], 3) is None


def test_without_history_the_default_handle_time_is_used():
    assert DEFAULT_HANDLE_TIME_S == 300
    assert estimate_wait_s(1, [], 1) == 300
    assert estimate_wait_s(3, [], 0) == 900  # nobody serving counts as one


def test_the_average_is_shared_among_the_experts_serving():
    times = [200_000, 400_000, 600_000]  # 400 s on average
    assert estimate_wait_s(1, times, 1) == 400
    assert estimate_wait_s(2, times, 1) == 800
    assert estimate_wait_s(2, times, 4) == 200
    assert estimate_wait_s(1, [1_500], 1) == 2  # whole seconds, rounded


def test_experts_serving_are_online_and_available_or_on_duty():
    d = Dispatcher(FakeClock(), DispatchTimers(), sequential_ids())
    d.upsert_expert("free", "Free", ["family"], availability="available")
    d.upsert_expert("duty_away", "Duty", ["family"], availability="away", on_duty=True)
    d.upsert_expert("away", "Away", ["family"], availability="away")
    d.upsert_expert("offline", "Offline", ["family"], availability="available", on_duty=True)
    assert d.experts_serving() == 0
    for expert_id in ("free", "duty_away", "away"):
        d.principal_online(expert_id)
    assert d.experts_serving() == 2


async def test_queued_callers_see_the_estimate_from_the_stored_handle_times(make_service):
    first = await make_service()
    device_id, _ = first.add_device("kiosk", "history")
    for n, minutes in enumerate((200, 400, 600)):
        first.store.insert_call(
            CallRecord(
                id=new_id(),
                case_id=None,
                state="ended",
                end_reason="completed",
                dispute_type="family",
                caller_kind="kiosk",
                caller_device_id=device_id,
                caller_account_id=None,
                named_expert_id=None,
                training_consent=False,
                launched_at=n * 1_000_000,
                answered_at=n * 1_000_000 + 1_000,
                ended_at=n * 1_000_000 + 1_000 + minutes * 1000,
            )
        )
    await first.server.close()

    service = await make_service()  # same data directory: the hub loads the history
    assert list(service.hub.handle_times_ms) == [200_000, 400_000, 600_000]
    amy = await service.expert("amy", specialties=["family"])
    busy = await service.kiosk("busy")
    call_id = (await busy.request("call.launch", consent_evidence=True, dispute_type="family"))[
        "call"
    ]["id"]
    ring = await amy.next_event("call.ring", where=lambda p: p["call_id"] == call_id)
    await amy.request("call.accept", invitation_id=ring["payload"]["invitation_id"])
    waiting = await service.kiosk("waiting")
    launched = (await waiting.request("call.launch", consent_evidence=True, dispute_type="family"))[
        "call"
    ]
    assert launched["state"] == "queued" and launched["estimated_wait_s"] == 400
    position = await waiting.next_event(
        "call.queue_position", where=lambda p: p["call_id"] == launched["id"]
    )
    assert position["payload"] == {
        "call_id": launched["id"],
        "position": 1,
        "estimated_wait_s": 400,
    }
    behind = await service.kiosk("behind")
    second = (await behind.request("call.launch", consent_evidence=True, dispute_type="family"))[
        "call"
    ]
    assert (second["queue_position"], second["estimated_wait_s"]) == (2, 800)

    await service.expert("ben", specialties=["traffic"])  # one more expert serving
    service.add_person("root", "admin")
    status, body = await service.http(
        "GET", "/api/calls?state=queued", token=await service.login("root")
    )
    assert status == 200
    estimates = {c["id"]: c["estimated_wait_s"] for c in body["calls"]}
    assert estimates == {launched["id"]: 200, second["id"]: 400}

    active = (await busy.request("call.leave", call_id=call_id))["call"]
    assert active["estimated_wait_s"] is None
    assert service.hub.handle_times_ms[-1] == active["ended_at"] - active["answered_at"]
    assert len(service.hub.handle_times_ms) == 4
