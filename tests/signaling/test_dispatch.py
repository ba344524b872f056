"""Unit tests of the pure call state machine and dispatch policy (no loop, no sockets)."""

from __future__ import annotations

import pytest

from signaling.dispatch import (
    Activity,
    Availability,
    Call,
    CallChanged,
    Caller,
    CallState,
    ChoiceClosed,
    ChoiceOffered,
    Dispatcher,
    DispatchTimers,
    EndReason,
    ExpertChanged,
    InvitationChanged,
    InvitationState,
    ParticipantChanged,
    ParticipantState,
    Preference,
    QueuePositionChanged,
    sequential_ids,
)
from signaling.errors import CallFull, ExpertUnavailable, InvalidState, NoExpertAvailable, NotFound


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def wall_ms(self) -> int:
        return int(self.now * 1000)


TIMERS = DispatchTimers(
    ring_timeout_s=30, overflow_timeout_s=120, max_wait_s=900, rejoin_grace_s=60
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def d(clock: FakeClock) -> Dispatcher:
    return Dispatcher(clock, TIMERS, sequential_ids())


def add_expert(
    d: Dispatcher,
    expert_id: str,
    specialties: tuple[str, ...] = ("neighbours",),
    *,
    last_busy_at: int = 0,
    on_duty: bool = False,
    available: bool = True,
) -> None:
    d.upsert_expert(
        expert_id,
        expert_id.upper(),
        specialties,
        availability=Availability.AVAILABLE if available else Availability.AWAY,
        on_duty=on_duty,
        last_busy_at=last_busy_at,
    )
    d.principal_online(expert_id)


def kiosk(n: int = 1) -> Caller:
    return Caller("kiosk", f"kiosk{n}")


def ringing(call: Call) -> list[str]:
    return [i.expert_id for i in call.invitations.values() if i.state is InvitationState.RINGING]


def invitation_for(call: Call, expert_id: str) -> str:
    for inv in call.invitations.values():
        if inv.expert_id == expert_id and inv.state is InvitationState.RINGING:
            return inv.id
    raise AssertionError(f"{expert_id} is not ringing for {call.id}")


def call_transitions(effects: list, call_id: str) -> list[tuple[str | None, str]]:
    return [(e.old, e.new) for e in effects if isinstance(e, CallChanged) and e.call.id == call_id]


def test_launch_rings_the_least_recently_busy_expert_with_the_matching_specialty(d):
    """Specialty first, then least recently busy."""
    add_expert(d, "family1", ("family",), last_busy_at=1)
    add_expert(d, "nb_recent", ("neighbours",), last_busy_at=500)
    add_expert(d, "nb_old", ("neighbours",), last_busy_at=100)
    d.drain()
    call = d.launch(kiosk(), "neighbours")
    effects = d.drain()
    assert ringing(call) == ["nb_old"]
    assert call.state is CallState.RINGING
    assert call_transitions(effects, call.id) == [(None, "launching"), ("launching", "ringing")]
    assert d.activity("nb_old") is Activity.RINGING


def test_accept_makes_the_call_active_with_caller_and_expert_connected(d):
    """Accepting the ring answers the call."""
    add_expert(d, "e1")
    call = d.launch(kiosk(), "neighbours")
    d.accept("e1", invitation_for(call, "e1"))
    assert call.state is CallState.ACTIVE
    assert call.answered_at is not None
    roles = sorted((p.role, p.state) for p in call.participants.values())
    assert roles == [("caller", "connected"), ("expert", "connected")]
    assert d.activity("e1") is Activity.IN_CALL


def test_decline_rings_the_next_candidate_and_never_the_decliner_again(d):
    """Decline moves on to the next expert."""
    add_expert(d, "e1", last_busy_at=1)
    add_expert(d, "e2", last_busy_at=2)
    call = d.launch(kiosk(), "neighbours")
    d.decline("e1", invitation_for(call, "e1"))
    assert ringing(call) == ["e2"]
    d.decline("e2", invitation_for(call, "e2"))
    assert call.state is CallState.QUEUED
    assert call.queue_position == 1
    assert ringing(call) == []


def test_ring_timeout_rings_the_next_and_sets_the_silent_expert_away(d, clock):
    """No answer within the ring timeout: next candidate; the absent expert goes away."""
    add_expert(d, "e1", last_busy_at=1)
    add_expert(d, "e2", last_busy_at=2)
    call = d.launch(kiosk(), "neighbours")
    clock.now += 29.9
    d.tick()
    assert ringing(call) == ["e1"]
    clock.now += 0.1
    d.tick()
    assert ringing(call) == ["e2"]
    states = [i.state for i in call.invitations.values()]
    assert states == [InvitationState.TIMED_OUT, InvitationState.RINGING]
    assert d.experts["e1"].availability is Availability.AWAY


def test_candidates_exhausted_queue_and_a_freed_expert_takes_the_oldest_call(d):
    """One queue by launch time; positions count calls ahead sharing an eligible expert."""
    add_expert(d, "e1", ("neighbours", "family"))
    first = d.launch(kiosk(1), "neighbours")
    d.accept("e1", invitation_for(first, "e1"))
    second = d.launch(kiosk(2), "neighbours")
    third = d.launch(kiosk(3), "family")
    fourth = d.launch(kiosk(4), "neighbours")
    assert [c.state for c in (second, third, fourth)] == [CallState.QUEUED] * 3
    assert (second.queue_position, third.queue_position, fourth.queue_position) == (1, 2, 3)
    d.drain()
    d.leave("e1", first.id)
    effects = d.drain()
    assert ringing(second) == ["e1"]
    assert second.queue_position is None
    positions = {e.call.id: e.position for e in effects if isinstance(e, QueuePositionChanged)}
    assert positions == {second.id: None, third.id: 1, fourth.id: 2}


def test_position_ignores_queued_calls_that_share_no_eligible_expert(d):
    """A family call behind a traffic call with disjoint experts is first in its own line."""
    add_expert(d, "t1", ("traffic",), available=False)
    add_expert(d, "f1", ("family",), available=False)
    traffic = d.launch(kiosk(1), "traffic")
    family = d.launch(kiosk(2), "family")
    assert traffic.queue_position == 1
    assert family.queue_position == 1


def test_a_call_queued_behind_stays_behind_when_a_newer_call_arrives(d):
    """Queue order is launch order: a later launch never jumps ahead."""
    add_expert(d, "e1", available=False)
    older = d.launch(kiosk(1), "neighbours")
    newer = d.launch(kiosk(2), "neighbours")
    d.set_availability("e1", "available")
    assert ringing(older) == ["e1"] and ringing(newer) == []
    assert newer.queue_position == 1


def test_named_expert_is_rung_first_even_if_more_recently_busy(d):
    """The citizen's chosen expert comes before the routing order."""
    add_expert(d, "e1", last_busy_at=1)
    add_expert(d, "named", last_busy_at=999)
    call = d.launch(kiosk(), "neighbours", named_expert_id="named")
    assert ringing(call) == ["named"]


def test_named_expert_busy_offers_wait_or_anyone_and_defaults_to_anyone(d, clock):
    """Busy named expert: the caller is offered a choice; silence means anyone."""
    add_expert(d, "named", last_busy_at=1)
    add_expert(d, "other", last_busy_at=2)
    blocker = d.launch(kiosk(9), "neighbours")
    d.accept("named", invitation_for(blocker, "named"))
    d.drain()
    call = d.launch(kiosk(), "neighbours", named_expert_id="named")
    offers = [e for e in d.drain() if isinstance(e, ChoiceOffered)]
    assert [(o.expert_id, o.reason) for o in offers] == [("named", "busy")]
    assert call.state is CallState.QUEUED and ringing(call) == []
    clock.now += TIMERS.ring_timeout_s
    d.tick()
    assert call.preference is Preference.ANYONE
    assert [e.call.id for e in d.drain() if isinstance(e, ChoiceClosed)] == [call.id]
    assert ringing(call) == ["other"]


def test_choosing_anyone_rings_another_expert_at_once(d):
    """Caller picks anyone after the named expert declines."""
    add_expert(d, "named")
    add_expert(d, "other")
    call = d.launch(kiosk(), "neighbours", named_expert_id="named")
    d.decline("named", invitation_for(call, "named"))
    assert [e.reason for e in d.drain() if isinstance(e, ChoiceOffered)] == ["declined"]
    d.choose("kiosk1", call.id, "anyone")
    assert ringing(call) == ["other"]


def test_choosing_wait_rings_only_the_named_expert_when_they_become_free(d):
    """Caller waits for their expert: others stay idle; the expert is rung when free."""
    add_expert(d, "named")
    add_expert(d, "other")
    blocker = d.launch(kiosk(9), "neighbours")
    d.accept("named", invitation_for(blocker, "named"))
    call = d.launch(kiosk(), "neighbours", named_expert_id="named")
    d.choose("kiosk1", call.id, "wait")
    assert ringing(call) == []
    assert d.is_free("other")
    d.leave("named", blocker.id)
    assert ringing(call) == ["named"]


def test_choose_without_a_pending_offer_is_invalid_state(d):
    add_expert(d, "e1")
    call = d.launch(kiosk(), "neighbours")
    with pytest.raises(InvalidState):
        d.choose("kiosk1", call.id, "anyone")


def test_overflow_offers_the_call_to_the_duty_pool(d, clock):
    """After the overflow timeout an on-duty expert of another specialty is rung."""
    add_expert(d, "specialist", ("labour",), available=False)
    add_expert(d, "duty", ("family",), on_duty=True)
    add_expert(d, "offduty", ("family",))
    call = d.launch(kiosk(), "labour")
    assert call.state is CallState.QUEUED
    clock.now += TIMERS.overflow_timeout_s - 0.001
    d.tick()
    assert ringing(call) == []
    clock.now += 0.001
    d.tick()
    assert ringing(call) == ["duty"]


def test_overflow_without_anyone_on_duty_goes_to_any_available_expert(d, clock):
    add_expert(d, "offduty", ("family",))
    call = d.launch(kiosk(), "labour")
    clock.now += TIMERS.overflow_timeout_s
    d.tick()
    assert ringing(call) == ["offduty"]


def test_max_wait_ends_the_call_as_no_answer(d, clock):
    """Nobody answers for max_wait_s: ended, no_answer."""
    call = d.launch(kiosk(), "neighbours")
    clock.now += TIMERS.max_wait_s
    d.tick()
    assert call.state is CallState.ENDED and call.end_reason is EndReason.NO_ANSWER
    assert call.id not in d.calls


def test_cancel_while_ringing_cancels_the_ring_and_frees_the_expert(d):
    add_expert(d, "e1")
    call = d.launch(kiosk(), "neighbours")
    inv = invitation_for(call, "e1")
    d.cancel("kiosk1", call.id)
    assert call.state is CallState.ENDED and call.end_reason is EndReason.CANCELLED
    assert call.invitations[inv].state is InvitationState.CANCELLED
    assert d.is_free("e1")


def test_cancel_while_queued_ends_the_call_and_moves_the_others_up(d):
    add_expert(d, "e1", available=False)
    first = d.launch(kiosk(1), "neighbours")
    second = d.launch(kiosk(2), "neighbours")
    d.cancel("kiosk1", first.id)
    assert first.end_reason is EndReason.CANCELLED
    assert second.queue_position == 1


def test_cancel_by_someone_else_is_not_found(d):
    """Another kiosk cannot see or touch the call."""
    call = d.launch(kiosk(1), "neighbours")
    with pytest.raises(NotFound):
        d.cancel("kiosk2", call.id)


def test_hanging_up_an_active_call_ends_it_as_completed(d):
    add_expert(d, "e1")
    call = d.launch(kiosk(), "neighbours")
    d.accept("e1", invitation_for(call, "e1"))
    d.leave("kiosk1", call.id)
    assert call.end_reason is EndReason.COMPLETED


def test_expert_disconnect_while_ringing_skips_to_the_next(d):
    """The ring is cancelled and the next candidate rung at once."""
    add_expert(d, "e1", last_busy_at=1)
    add_expert(d, "e2", last_busy_at=2)
    call = d.launch(kiosk(), "neighbours")
    inv = invitation_for(call, "e1")
    d.principal_offline("e1")
    assert call.invitations[inv].state is InvitationState.CANCELLED
    assert ringing(call) == ["e2"]


def test_caller_disconnect_while_queued_keeps_its_place_within_the_grace_window(d, clock):
    """Reconnecting caller keeps its position; after the window the call ends as dropped."""
    add_expert(d, "e1", available=False)
    first = d.launch(kiosk(1), "neighbours")
    second = d.launch(kiosk(2), "neighbours")
    d.principal_offline("kiosk1")
    caller = next(p for p in first.participants.values() if p.role == "caller")
    assert caller.state is ParticipantState.RECONNECTING
    clock.now += TIMERS.rejoin_grace_s - 1
    d.tick()
    d.principal_online("kiosk1")
    assert caller.state is ParticipantState.CONNECTED
    assert (first.queue_position, second.queue_position) == (1, 2)
    d.principal_offline("kiosk1")
    clock.now += TIMERS.rejoin_grace_s
    d.tick()
    assert caller.state is ParticipantState.DROPPED
    assert first.end_reason is EndReason.DROPPED
    assert second.queue_position == 1


def test_only_expert_dropping_for_good_returns_the_call_to_the_head_of_the_queue(d, clock):
    """Expert gone past the grace window: the call waits first in line for a new expert."""
    add_expert(d, "e1")
    add_expert(d, "e2", available=False)
    call = d.launch(kiosk(1), "neighbours")
    d.accept("e1", invitation_for(call, "e1"))
    clock.now += 1
    other = d.launch(kiosk(2), "neighbours")
    d.principal_offline("e1")
    expert = next(p for p in call.participants.values() if p.role == "expert")
    assert expert.state is ParticipantState.RECONNECTING and call.state is CallState.ACTIVE
    clock.now += TIMERS.rejoin_grace_s
    d.tick()
    assert expert.state is ParticipantState.DROPPED
    assert call.state is CallState.QUEUED
    assert (call.queue_position, other.queue_position) == (1, 2)
    d.set_availability("e2", "available")
    assert ringing(call) == ["e2"]


def test_expert_rejoining_within_the_grace_window_is_the_same_participant(d, clock):
    add_expert(d, "e1")
    call = d.launch(kiosk(1), "neighbours")
    d.accept("e1", invitation_for(call, "e1"))
    before = {p.id for p in call.participants.values()}
    d.principal_offline("e1")
    clock.now += 10
    d.principal_online("e1")
    assert {p.id for p in call.participants.values()} == before
    assert all(p.state is ParticipantState.CONNECTED for p in call.participants.values())


def test_expert_invites_a_colleague_by_specialty_without_changing_the_call_state(d):
    add_expert(d, "e1", ("neighbours",))
    add_expert(d, "lawyer", ("property",))
    call = d.launch(kiosk(), "neighbours")
    d.accept("e1", invitation_for(call, "e1"))
    d.drain()
    inv = d.invite("e1", call.id, specialty="property")
    effects = d.drain()
    assert inv.expert_id == "lawyer" and inv.inviter_id == "e1"
    assert call.state is CallState.ACTIVE
    assert call_transitions(effects, call.id) == []
    d.accept("lawyer", inv.id)
    assert len(call.present_experts()) == 2


def test_station_invites_an_expert_by_name(d):
    add_expert(d, "e1")
    add_expert(d, "senior", ("family",))
    station = Caller("station", "station1", "officer1")
    call = d.launch(station, "neighbours")
    d.accept("e1", invitation_for(call, "e1"))
    inv = d.invite("officer1", call.id, expert_id="senior")
    assert inv.expert_id == "senior"


def test_invite_errors_name_the_problem(d):
    """Busy expert, no free specialist, outsider inviter, kiosk inviter."""
    add_expert(d, "e1")
    add_expert(d, "e2")
    call = d.launch(kiosk(), "neighbours")
    d.accept("e1", invitation_for(call, "e1"))
    other = d.launch(kiosk(2), "neighbours")
    d.accept("e2", invitation_for(other, "e2"))
    with pytest.raises(ExpertUnavailable):
        d.invite("e1", call.id, expert_id="e2")
    with pytest.raises(NoExpertAvailable):
        d.invite("e1", call.id, specialty="traffic")
    with pytest.raises(NotFound):
        d.invite("e2", call.id, specialty="neighbours")
    with pytest.raises(NotFound):
        d.invite("kiosk1", call.id, specialty="neighbours")


def test_a_call_holds_six_participants_and_refuses_past_the_limit(d):
    """Caller plus five experts fit (limit 8 with rings counted); the ninth seat is refused."""
    for n in range(9):
        add_expert(d, f"e{n}", ("neighbours",), last_busy_at=n)
    call = d.launch(kiosk(), "neighbours")
    d.accept("e0", invitation_for(call, "e0"))
    for n in range(1, 7):
        inv = d.invite("e0", call.id, expert_id=f"e{n}")
        d.accept(f"e{n}", inv.id)
    present = [p for p in call.participants.values() if p.state is ParticipantState.CONNECTED]
    assert len(present) == 8
    with pytest.raises(CallFull):
        d.invite("e0", call.id, expert_id="e8")


def test_invited_expert_leaving_keeps_the_call_and_the_last_expert_leaving_ends_it(d):
    add_expert(d, "e1")
    add_expert(d, "e2")
    call = d.launch(kiosk(), "neighbours")
    first = ringing(call)[0]
    d.accept(first, invitation_for(call, first))
    second = "e2" if first == "e1" else "e1"
    d.accept(second, d.invite(first, call.id, expert_id=second).id)
    d.leave(second, call.id)
    assert call.state is CallState.ACTIVE
    d.leave(first, call.id)
    assert call.end_reason is EndReason.COMPLETED


def test_every_transition_is_reported_once_with_old_and_new(d):
    """The effects tell the I/O layer the whole story of a call."""
    add_expert(d, "e1")
    d.drain()
    call = d.launch(kiosk(), "neighbours")
    d.accept("e1", invitation_for(call, "e1"))
    d.leave("e1", call.id)
    story = [
        (type(e).__name__, e.old, e.new)
        for e in d.drain()
        if isinstance(e, CallChanged | InvitationChanged | ParticipantChanged)
    ]
    assert story == [
        ("CallChanged", None, "launching"),
        ("ParticipantChanged", None, "connected"),
        ("InvitationChanged", None, "ringing"),
        ("CallChanged", "launching", "ringing"),
        ("InvitationChanged", "ringing", "accepted"),
        ("ParticipantChanged", None, "connected"),
        ("CallChanged", "ringing", "active"),
        ("ParticipantChanged", "connected", "left"),
        ("ParticipantChanged", "connected", "left"),
        ("CallChanged", "active", "ended"),
    ]


def test_expert_presence_changes_are_reported_without_repeats(d):
    add_expert(d, "e1")
    d.drain()
    call = d.launch(kiosk(), "neighbours")
    d.accept("e1", invitation_for(call, "e1"))
    d.leave("kiosk1", call.id)
    activities = [e.activity for e in d.drain() if isinstance(e, ExpertChanged)]
    assert activities == [Activity.RINGING, Activity.IN_CALL, Activity.IDLE]


def test_a_caller_has_one_live_call_at_a_time(d):
    d.launch(kiosk(), "neighbours")
    with pytest.raises(InvalidState):
        d.launch(kiosk(), "family")


def test_accepting_twice_is_invalid_state(d):
    add_expert(d, "e1")
    call = d.launch(kiosk(), "neighbours")
    inv = invitation_for(call, "e1")
    d.accept("e1", inv)
    with pytest.raises(InvalidState):
        d.accept("e1", inv)


def test_next_deadline_is_the_earliest_timer(d, clock):
    add_expert(d, "e1")
    assert d.next_deadline() is None
    d.launch(kiosk(), "neighbours")
    assert d.next_deadline() == clock.now + TIMERS.ring_timeout_s


def test_calls_that_no_expert_can_serve_yet_still_queue_in_launch_order(d):
    """With no matching expert at all, positions still count every call ahead."""
    first = d.launch(kiosk(1), "labour")
    second = d.launch(kiosk(2), "labour")
    assert (first.queue_position, second.queue_position) == (1, 2)


def test_a_call_back_in_the_queue_gets_a_fresh_maximum_wait(d, clock):
    """Waiting time restarts when the only expert drops: an old call is not cut off at once."""
    add_expert(d, "e1")
    call = d.launch(kiosk(), "neighbours")
    d.accept("e1", invitation_for(call, "e1"))
    clock.now += TIMERS.max_wait_s  # a long mediation
    d.principal_offline("e1")
    clock.now += TIMERS.rejoin_grace_s
    d.tick()
    assert call.state is CallState.QUEUED
    clock.now += TIMERS.max_wait_s - 1
    d.tick()
    assert call.state is CallState.QUEUED
    clock.now += 1
    d.tick()
    assert call.end_reason is EndReason.NO_ANSWER
