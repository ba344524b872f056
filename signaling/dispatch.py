"""Call state machine and dispatch policy: pure logic, no I/O, no event loop.

The `Dispatcher` owns the live state of every call that has not ended, every
expert's presence, and every ringing invitation. Each public method applies one
input (a launch, an accept, a disconnect, the passage of time) and appends the
resulting changes to `outbox` as small effect objects. The I/O layer
(`signaling.hub`) drains the outbox after every call: it stores each change,
audits it, logs it as ``old -> new`` and tells the connected clients.

Time comes from an injected `Clock`: `monotonic()` seconds drive timers,
`wall_ms()` stamps what is stored. The I/O layer asks `next_deadline()` and
calls `tick()` when it passes, so tests drive timers without waiting.

Policy (ARCHITECTURE.md and issue 3):
- experts are rung one at a time: specialty matches the dispute type, then the
  least recently busy; a named expert first;
- a named expert who is busy, declines or does not answer makes the caller an
  offer ("wait" for them or "anyone"), defaulting to anyone after the ring
  timeout;
- candidates exhausted: the call queues; one queue ordered by launch time (a call
  whose only expert dropped goes back to the head); an expert who becomes free
  takes the oldest call they can serve;
- after the overflow timeout the duty pool (on-duty experts, or everyone if
  nobody is on duty) may serve the call; after the maximum wait it ends as
  no_answer;
- a missed ring sets the expert away, so an absent expert is not rung again and
  again; a declined call is not offered to the same expert again.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from signaling.errors import (
    CallFull,
    ExpertUnavailable,
    InvalidState,
    NoExpertAvailable,
    NotFound,
)


class CallState(enum.StrEnum):
    LAUNCHING = "launching"
    RINGING = "ringing"
    QUEUED = "queued"
    ACTIVE = "active"
    ENDED = "ended"


class EndReason(enum.StrEnum):
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    NO_ANSWER = "no_answer"
    DROPPED = "dropped"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class InvitationState(enum.StrEnum):
    RINGING = "ringing"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


class ParticipantState(enum.StrEnum):
    JOINING = "joining"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    DROPPED = "dropped"
    LEFT = "left"


class Preference(enum.StrEnum):
    """How a call with a named expert is routed."""

    NAMED = "named"  # try the named expert first
    CHOICE = "choice"  # the caller is asked: wait for them, or anyone
    WAIT = "wait"  # the caller chose to wait for the named expert
    ANYONE = "anyone"  # any matching expert


class Availability(enum.StrEnum):
    AVAILABLE = "available"
    AWAY = "away"


class Activity(enum.StrEnum):
    IDLE = "idle"
    RINGING = "ringing"
    IN_CALL = "in_call"


WAITING_STATES = frozenset({CallState.LAUNCHING, CallState.RINGING, CallState.QUEUED})
PRESENT_STATES = frozenset(
    {ParticipantState.JOINING, ParticipantState.CONNECTED, ParticipantState.RECONNECTING}
)


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall_ms(self) -> int: ...


@dataclass(frozen=True)
class DispatchTimers:
    ring_timeout_s: float = 30.0
    overflow_timeout_s: float = 120.0
    max_wait_s: float = 900.0
    rejoin_grace_s: float = 60.0
    max_participants: int = 8


@dataclass(frozen=True)
class Caller:
    kind: str  # "kiosk" | "station"
    device_id: str
    account_id: str | None = None  # the station officer logged in beside the device

    @property
    def principal_id(self) -> str:
        return self.device_id


@dataclass
class Expert:
    id: str
    name: str
    specialties: frozenset[str]
    availability: Availability = Availability.AWAY
    on_duty: bool = False
    last_busy_at: int = 0  # wall ms; 0 = never busy
    online: bool = False


@dataclass
class Invitation:
    id: str
    call_id: str
    expert_id: str
    inviter_id: str | None  # None: rung by dispatch
    state: InvitationState
    created_at: int
    deadline: float
    ended_at: int | None = None


@dataclass
class Participant:
    id: str
    call_id: str
    principal_id: str
    principal_kind: str  # "device" | "account"
    role: str  # "caller" | "expert"
    state: ParticipantState
    joined_at: int
    left_at: int | None = None
    grace_deadline: float | None = None
    reason: str | None = None  # why it last changed state

    @property
    def present(self) -> bool:
        """Still in the call: connected, or gone for now but within the grace window."""
        return self.state in PRESENT_STATES or (
            self.state is ParticipantState.DROPPED and self.grace_deadline is not None
        )


@dataclass
class Call:
    id: str
    caller: Caller
    dispute_type: str
    case_id: str | None
    named_expert_id: str | None
    preference: Preference
    launched_at: int
    launched_mono: float
    waiting_since: float = 0.0  # monotonic: launch, or going back to the queue
    state: CallState = CallState.LAUNCHING
    end_reason: EndReason | None = None
    answered_at: int | None = None
    ended_at: int | None = None
    training_consent: bool = False
    recorded: bool = False  # recording consent was given: the call is recorded once active
    priority: int = 1  # 0 = back at the head of the queue
    overflow: bool = False
    choice_deadline: float | None = None
    dispatch_invitation_id: str | None = None
    tried: set[str] = field(default_factory=set)
    participants: dict[str, Participant] = field(default_factory=dict)
    invitations: dict[str, Invitation] = field(default_factory=dict)
    queue_position: int | None = None

    def queue_key(self) -> tuple[int, float]:
        return (self.priority, self.launched_mono)

    def present_experts(self) -> list[Participant]:
        return [p for p in self.participants.values() if p.role == "expert" and p.present]


# --- effects: what the I/O layer must store and tell -----------------------------------


@dataclass(frozen=True)
class CallChanged:
    call: Call
    old: str | None
    new: str
    reason: str | None = None


@dataclass(frozen=True)
class InvitationChanged:
    call: Call
    invitation: Invitation
    old: str | None
    new: str
    reason: str | None = None


@dataclass(frozen=True)
class ParticipantChanged:
    call: Call
    participant: Participant
    old: str | None
    new: str
    reason: str | None = None


@dataclass(frozen=True)
class QueuePositionChanged:
    call: Call
    position: int | None


@dataclass(frozen=True)
class ChoiceOffered:
    call: Call
    expert_id: str
    reason: str  # busy | away | offline | declined | no_answer | disconnected
    deadline_ms: int


@dataclass(frozen=True)
class ChoiceClosed:
    """The caller let the choice's deadline pass: the call now goes to anyone (the caller's
    page closes its choice; a late "wait" would be refused)."""

    call: Call


@dataclass(frozen=True)
class ExpertChanged:
    """An expert's availability or derived activity changed."""

    expert: Expert
    activity: Activity
    reason: str | None = None


Effect = (
    CallChanged
    | InvitationChanged
    | ParticipantChanged
    | QueuePositionChanged
    | ChoiceOffered
    | ChoiceClosed
    | ExpertChanged
)


class Dispatcher:
    """Live calls, experts and rings; see the module docstring for the policy."""

    def __init__(self, clock: Clock, timers: DispatchTimers, new_id: Callable[[], str]) -> None:
        self._clock = clock
        self.timers = timers
        self._new_id = new_id
        self.experts: dict[str, Expert] = {}
        self.calls: dict[str, Call] = {}  # calls that have not ended
        self.outbox: list[Effect] = []
        self._last_told: dict[str, tuple[Availability, Activity, bool]] = {}

    # --- queries -------------------------------------------------------------------

    def drain(self) -> list[Effect]:
        effects, self.outbox = self.outbox, []
        return effects

    def activity(self, expert_id: str) -> Activity:
        for call in self.calls.values():
            for inv in call.invitations.values():
                if inv.expert_id == expert_id and inv.state is InvitationState.RINGING:
                    return Activity.RINGING
            if call.state is CallState.ACTIVE:
                for p in call.present_experts():
                    if p.principal_id == expert_id:
                        return Activity.IN_CALL
        return Activity.IDLE

    def is_free(self, expert_id: str) -> bool:
        expert = self.experts.get(expert_id)
        return (
            expert is not None
            and expert.online
            and expert.availability is Availability.AVAILABLE
            and self.activity(expert_id) is Activity.IDLE
        )

    def experts_serving(self) -> int:
        """Experts who will take calls: connected, and available or on duty (busy included)."""
        return sum(
            1
            for e in self.experts.values()
            if e.online and (e.availability is Availability.AVAILABLE or e.on_duty)
        )

    def queued_calls(self) -> list[Call]:
        return sorted(
            (c for c in self.calls.values() if c.state in WAITING_STATES), key=Call.queue_key
        )

    def calls_of(self, principal_id: str) -> list[Call]:
        """Live calls in which the principal is the caller, a participant or rung."""
        result = []
        for call in self.calls.values():
            if (
                call.caller.principal_id == principal_id
                or call.caller.account_id == principal_id
                or any(p.principal_id == principal_id for p in call.participants.values())
                or any(i.expert_id == principal_id for i in call.invitations.values())
            ):
                result.append(call)
        return result

    def live_call_of_caller(self, caller_id: str) -> Call | None:
        return next((c for c in self.calls.values() if c.caller.principal_id == caller_id), None)

    def get_call(self, call_id: str) -> Call:
        call = self.calls.get(call_id)
        if call is None:
            raise NotFound("call", call_id)
        return call

    def next_deadline(self) -> float | None:
        deadlines: list[float] = []
        for call in self.calls.values():
            for inv in call.invitations.values():
                if inv.state is InvitationState.RINGING:
                    deadlines.append(inv.deadline)
            for p in call.participants.values():
                if p.grace_deadline is not None:
                    deadlines.append(p.grace_deadline)
            if call.state in WAITING_STATES:
                if call.choice_deadline is not None:
                    deadlines.append(call.choice_deadline)
                if not call.overflow and call.preference is Preference.ANYONE:
                    deadlines.append(call.waiting_since + self.timers.overflow_timeout_s)
                deadlines.append(call.waiting_since + self.timers.max_wait_s)
        return min(deadlines, default=None)

    # --- experts -------------------------------------------------------------------

    def upsert_expert(
        self,
        expert_id: str,
        name: str,
        specialties: Iterable[str],
        *,
        availability: Availability | str = Availability.AWAY,
        on_duty: bool = False,
        last_busy_at: int = 0,
    ) -> Expert:
        expert = self.experts.get(expert_id)
        if expert is None:
            expert = Expert(expert_id, name, frozenset(specialties))
            self.experts[expert_id] = expert
        expert.name = name
        expert.specialties = frozenset(specialties)
        expert.availability = Availability(availability)
        expert.on_duty = on_duty
        expert.last_busy_at = max(expert.last_busy_at, last_busy_at)
        self._pump()
        return expert

    def set_on_duty(self, expert_id: str, on_duty: bool) -> None:
        self._expert(expert_id).on_duty = on_duty
        self._pump()

    def set_availability(self, expert_id: str, availability: Availability | str) -> None:
        expert = self._expert(expert_id)
        new = Availability(availability)
        if expert.availability is not new:
            expert.availability = new
            self._expert_changed(expert, reason="set_by_expert")
        self._pump()

    def remove_expert(self, expert_id: str) -> None:
        """The expert's account was disabled: treat as gone for good."""
        if expert_id in self.experts:
            self.principal_offline(expert_id)
            del self.experts[expert_id]
            self._pump()

    # --- connections -----------------------------------------------------------------

    def principal_online(self, principal_id: str) -> None:
        """The principal has a live signaling connection again (or for the first time)."""
        expert = self.experts.get(principal_id)
        if expert is not None and not expert.online:
            expert.online = True
            self._expert_changed(expert, reason="connected")
        for call in list(self.calls.values()):
            for p in call.participants.values():
                if p.principal_id == principal_id and p.state is ParticipantState.RECONNECTING:
                    p.grace_deadline = None
                    self._set_participant(call, p, ParticipantState.CONNECTED, "rejoined")
        self._pump()

    def principal_offline(self, principal_id: str) -> None:
        """The principal's last signaling connection is gone (it may come back)."""
        now = self._clock.monotonic()
        expert = self.experts.get(principal_id)
        if expert is not None and expert.online:
            expert.online = False
            for call in list(self.calls.values()):
                for inv in list(call.invitations.values()):
                    if inv.expert_id == principal_id and inv.state is InvitationState.RINGING:
                        self._ring_failed(call, inv, InvitationState.CANCELLED, "disconnected")
            self._expert_changed(expert, reason="disconnected")
        for call in list(self.calls.values()):
            for p in call.participants.values():
                if p.principal_id == principal_id and p.state in (
                    ParticipantState.JOINING,
                    ParticipantState.CONNECTED,
                ):
                    p.grace_deadline = now + self.timers.rejoin_grace_s
                    self._set_participant(call, p, ParticipantState.RECONNECTING, "disconnected")
        self._pump()

    def media_lost(self, participant_id: str) -> None:
        """No media from the participant for a while: dropped, may rejoin within the grace."""
        for call in list(self.calls.values()):
            p = call.participants.get(participant_id)
            if p is not None and p.state in PRESENT_STATES:
                if p.grace_deadline is None:
                    p.grace_deadline = self._clock.monotonic() + self.timers.rejoin_grace_s
                self._set_participant(call, p, ParticipantState.DROPPED, "media_timeout")
        self._pump()

    def media_back(self, participant_id: str) -> None:
        """A participant dropped for lack of media is connected again (same participant)."""
        for call in list(self.calls.values()):
            p = call.participants.get(participant_id)
            if (
                p is not None
                and p.state is ParticipantState.DROPPED
                and p.grace_deadline is not None
            ):
                p.grace_deadline = None
                self._set_participant(call, p, ParticipantState.CONNECTED, "rejoined")
        self._pump()

    # --- caller actions -----------------------------------------------------------------

    def launch(
        self,
        caller: Caller,
        dispute_type: str,
        *,
        named_expert_id: str | None = None,
        case_id: str | None = None,
        training_consent: bool = False,
        recorded: bool = False,
    ) -> Call:
        if named_expert_id is not None and named_expert_id not in self.experts:
            raise NotFound("expert", named_expert_id)
        live = self.live_call_of_caller(caller.principal_id)
        if live is not None:
            raise InvalidState(f"caller already has call {live.id} in state {live.state}")
        call = Call(
            id=self._new_id(),
            caller=caller,
            dispute_type=dispute_type,
            case_id=case_id,
            named_expert_id=named_expert_id,
            preference=Preference.NAMED if named_expert_id else Preference.ANYONE,
            launched_at=self._clock.wall_ms(),
            launched_mono=self._clock.monotonic(),
            waiting_since=self._clock.monotonic(),
            training_consent=training_consent,
            recorded=recorded,
        )
        self.calls[call.id] = call
        self.outbox.append(CallChanged(call, None, call.state, "launched"))
        caller_participant = Participant(
            id=self._new_id(),
            call_id=call.id,
            principal_id=caller.principal_id,
            principal_kind="device",
            role="caller",
            state=ParticipantState.CONNECTED,
            joined_at=call.launched_at,
        )
        call.participants[caller_participant.id] = caller_participant
        self.outbox.append(
            ParticipantChanged(call, caller_participant, None, caller_participant.state, "launched")
        )
        if named_expert_id is not None and not self.is_free(named_expert_id):
            self._offer_choice(call, self._unavailable_reason(named_expert_id))
        self._pump()
        return call

    def choose(self, caller_id: str, call_id: str, choice: str) -> Call:
        call = self._callers_call(caller_id, call_id)
        if call.preference is not Preference.CHOICE:
            raise InvalidState(f"no choice is pending on call {call.id}")
        call.choice_deadline = None
        call.preference = Preference.WAIT if choice == "wait" else Preference.ANYONE
        self._pump()
        return call

    def cancel(self, caller_id: str, call_id: str) -> Call:
        """The caller ends the call: cancelled while waiting, completed once answered."""
        call = self._callers_call(caller_id, call_id)
        reason = EndReason.COMPLETED if call.state is CallState.ACTIVE else EndReason.CANCELLED
        self._end(call, reason, "by_caller")
        self._pump()
        return call

    # --- expert actions -----------------------------------------------------------------

    def accept(self, expert_id: str, invitation_id: str) -> Call:
        call, inv = self._experts_invitation(expert_id, invitation_id)
        now_ms = self._clock.wall_ms()
        self._set_invitation(call, inv, InvitationState.ACCEPTED, "accepted")
        expert = self._expert(expert_id)
        expert.last_busy_at = now_ms
        participant = Participant(
            id=self._new_id(),
            call_id=call.id,
            principal_id=expert_id,
            principal_kind="account",
            role="expert",
            state=ParticipantState.CONNECTED,
            joined_at=now_ms,
        )
        call.participants[participant.id] = participant
        self.outbox.append(
            ParticipantChanged(call, participant, None, participant.state, "accepted")
        )
        if call.dispatch_invitation_id == inv.id:
            call.dispatch_invitation_id = None
            call.answered_at = call.answered_at or now_ms
            call.choice_deadline = None
            self._set_position(call, None)
            self._set_call(call, CallState.ACTIVE, "accepted")
        self._expert_changed(expert, reason="accepted")
        self._pump()
        return call

    def decline(self, expert_id: str, invitation_id: str) -> Call:
        call, inv = self._experts_invitation(expert_id, invitation_id)
        self._ring_failed(call, inv, InvitationState.DECLINED, "declined")
        self._pump()
        return call

    def invite(
        self,
        inviter_id: str,
        call_id: str,
        *,
        expert_id: str | None = None,
        specialty: str | None = None,
    ) -> Invitation:
        """Ring one more expert into an active call; the call's state does not change."""
        call = self.calls.get(call_id)
        if call is None or not self._may_invite(inviter_id, call):
            raise NotFound("call", call_id)
        if call.state is not CallState.ACTIVE:
            raise InvalidState(f"call {call.id} is {call.state}, not active")
        seats = len([p for p in call.participants.values() if p.present]) + len(
            [i for i in call.invitations.values() if i.state is InvitationState.RINGING]
        )
        if seats >= self.timers.max_participants:
            raise CallFull(call.id, self.timers.max_participants)
        in_call = {p.principal_id for p in call.participants.values() if p.present}
        if expert_id is not None:
            if expert_id not in self.experts:
                raise NotFound("expert", expert_id)
            if expert_id in in_call or not self.is_free(expert_id):
                raise ExpertUnavailable(expert_id)
            chosen = expert_id
        else:
            candidates = [
                e
                for e in self.experts.values()
                if specialty in e.specialties and e.id not in in_call and self.is_free(e.id)
            ]
            if not candidates:
                raise NoExpertAvailable(specialty or "")
            chosen = min(candidates, key=lambda e: (e.last_busy_at, e.id)).id
        return self._ring(call, chosen, inviter_id=inviter_id)

    # --- anyone in the call ---------------------------------------------------------------

    def leave(self, principal_id: str, call_id: str) -> Call:
        """A participant hangs up. The caller, or the last expert, leaving ends the call."""
        call = self.calls.get(call_id)
        if call is None:
            raise NotFound("call", call_id)
        mine = [
            p for p in call.participants.values() if p.principal_id == principal_id and p.present
        ]
        if not mine:
            raise NotFound("call", call_id)
        if mine[0].role == "caller":
            return self.cancel(principal_id, call_id)
        for p in mine:
            self._leave_participant(call, p, ParticipantState.LEFT, "left")
        if call.state is CallState.ACTIVE and not call.present_experts():
            self._end(call, EndReason.COMPLETED, "last_expert_left")
        self._pump()
        return call

    # --- time -------------------------------------------------------------------------

    def tick(self) -> None:
        """Apply every timer whose deadline has passed."""
        now = self._clock.monotonic()
        for call in list(self.calls.values()):
            for inv in list(call.invitations.values()):
                if inv.state is InvitationState.RINGING and inv.deadline <= now:
                    self._ring_failed(call, inv, InvitationState.TIMED_OUT, "no_answer")
                    expert = self.experts.get(inv.expert_id)
                    if expert is not None and expert.availability is Availability.AVAILABLE:
                        expert.availability = Availability.AWAY
                        self._expert_changed(expert, reason="missed_ring")
            for p in list(call.participants.values()):
                if p.grace_deadline is not None and p.grace_deadline <= now:
                    self._participant_gone(call, p)
            if call.state is CallState.ENDED:
                continue
            if call.state in WAITING_STATES:
                if call.waiting_since + self.timers.max_wait_s <= now:
                    self._end(call, EndReason.NO_ANSWER, "max_wait")
                    continue
                if call.choice_deadline is not None and call.choice_deadline <= now:
                    call.choice_deadline = None
                    call.preference = Preference.ANYONE
                    self.outbox.append(ChoiceClosed(call))
                if not call.overflow and call.waiting_since + self.timers.overflow_timeout_s <= now:
                    call.overflow = True
        self._pump()

    # --- internals ------------------------------------------------------------------------

    def _expert(self, expert_id: str) -> Expert:
        expert = self.experts.get(expert_id)
        if expert is None:
            raise NotFound("expert", expert_id)
        return expert

    def _callers_call(self, caller_id: str, call_id: str) -> Call:
        call = self.calls.get(call_id)
        if call is None or call.caller.principal_id != caller_id:
            raise NotFound("call", call_id)
        return call

    def _experts_invitation(self, expert_id: str, invitation_id: str) -> tuple[Call, Invitation]:
        for call in self.calls.values():
            inv = call.invitations.get(invitation_id)
            if inv is not None and inv.expert_id == expert_id:
                if inv.state is not InvitationState.RINGING:
                    raise InvalidState(f"invitation {inv.id} is {inv.state}")
                return call, inv
        raise NotFound("invitation", invitation_id)

    def _may_invite(self, inviter_id: str, call: Call) -> bool:
        if call.caller.kind == "station" and inviter_id in (
            call.caller.device_id,
            call.caller.account_id,
        ):
            return True
        return any(
            p.principal_id == inviter_id and p.role == "expert" and p.present
            for p in call.participants.values()
        )

    def _unavailable_reason(self, expert_id: str) -> str:
        expert = self.experts[expert_id]
        if not expert.online:
            return "offline"
        if expert.availability is Availability.AWAY:
            return "away"
        return "busy"

    def _eligible(self, call: Call) -> set[str]:
        """Experts who may serve the call, whether free right now or not."""
        if call.preference is not Preference.ANYONE and call.named_expert_id is not None:
            return {call.named_expert_id}
        eligible = {e.id for e in self.experts.values() if call.dispute_type in e.specialties}
        if call.overflow:
            duty = {e.id for e in self.experts.values() if e.on_duty}
            eligible |= duty or set(self.experts)
        return eligible

    def _best_candidate(self, call: Call) -> str | None:
        if call.preference is not Preference.ANYONE:
            named = call.named_expert_id
            if named is None or not self.is_free(named):
                return None
            # While the caller decides, an expert who declined is not asked again.
            if call.preference is Preference.CHOICE and named in call.tried:
                return None
            return named
        free = [
            self.experts[e] for e in self._eligible(call) if e not in call.tried and self.is_free(e)
        ]
        if not free:
            return None
        return min(free, key=lambda e: (e.last_busy_at, e.id)).id

    def _pump(self) -> None:
        """Ring a free expert for every waiting call that is not ringing anyone, oldest first."""
        for call in self.queued_calls():
            if call.dispatch_invitation_id is not None:
                continue
            candidate = self._best_candidate(call)
            if candidate is not None:
                self._ring(call, candidate, inviter_id=None)
            elif call.state is not CallState.QUEUED:
                self._set_call(call, CallState.QUEUED, "no_free_expert")
        self._update_positions()

    def _update_positions(self) -> None:
        queued = [c for c in self.queued_calls() if c.state is CallState.QUEUED]
        eligible = {c.id: self._eligible(c) for c in queued}

        def compete(a: set[str], b: set[str]) -> bool:
            # A call nobody can serve yet waits for the duty pool, like everyone else.
            return not a or not b or bool(a & b)

        for index, call in enumerate(queued):
            ahead = sum(
                1 for other in queued[:index] if compete(eligible[other.id], eligible[call.id])
            )
            self._set_position(call, ahead + 1)

    def _set_position(self, call: Call, position: int | None) -> None:
        if call.queue_position != position:
            call.queue_position = position
            self.outbox.append(QueuePositionChanged(call, position))

    def _ring(self, call: Call, expert_id: str, *, inviter_id: str | None) -> Invitation:
        inv = Invitation(
            id=self._new_id(),
            call_id=call.id,
            expert_id=expert_id,
            inviter_id=inviter_id,
            state=InvitationState.RINGING,
            created_at=self._clock.wall_ms(),
            deadline=self._clock.monotonic() + self.timers.ring_timeout_s,
        )
        call.invitations[inv.id] = inv
        self.outbox.append(InvitationChanged(call, inv, None, inv.state, "ring"))
        if inviter_id is None:
            call.dispatch_invitation_id = inv.id
            self._set_position(call, None)
            self._set_call(call, CallState.RINGING, "ring")
        self._expert_changed(self.experts[expert_id], reason="ring")
        return inv

    def _ring_failed(
        self, call: Call, inv: Invitation, state: InvitationState, reason: str
    ) -> None:
        self._set_invitation(call, inv, state, reason)
        expert = self.experts.get(inv.expert_id)
        if expert is not None:
            self._expert_changed(expert, reason=reason)
        if call.dispatch_invitation_id != inv.id:
            return
        call.dispatch_invitation_id = None
        if state is InvitationState.DECLINED:
            call.tried.add(inv.expert_id)
        if call.preference is not Preference.ANYONE and inv.expert_id == call.named_expert_id:
            self._offer_choice(call, reason)

    def _offer_choice(self, call: Call, reason: str) -> None:
        assert call.named_expert_id is not None
        call.preference = Preference.CHOICE
        call.choice_deadline = self._clock.monotonic() + self.timers.ring_timeout_s
        deadline_ms = self._clock.wall_ms() + int(self.timers.ring_timeout_s * 1000)
        self.outbox.append(ChoiceOffered(call, call.named_expert_id, reason, deadline_ms))

    def _participant_gone(self, call: Call, p: Participant) -> None:
        """A reconnecting (or media-dropped) participant's grace window ran out."""
        if p.state is ParticipantState.DROPPED:
            p.grace_deadline = None
            p.left_at = self._clock.wall_ms()
            self.outbox.append(ParticipantChanged(call, p, p.state, p.state, "grace_expired"))
        else:
            self._leave_participant(call, p, ParticipantState.DROPPED, "grace_expired")
        if p.role == "caller":
            self._end(call, EndReason.DROPPED, "caller_dropped")
        elif call.state is CallState.ACTIVE and not call.present_experts():
            call.priority = 0
            call.preference = Preference.ANYONE
            call.waiting_since = self._clock.monotonic()
            call.overflow = False
            self._set_call(call, CallState.QUEUED, "expert_dropped")

    def _leave_participant(
        self, call: Call, p: Participant, state: ParticipantState, reason: str
    ) -> None:
        p.grace_deadline = None
        p.left_at = self._clock.wall_ms()
        self._set_participant(call, p, state, reason)
        if p.role == "expert":
            expert = self.experts.get(p.principal_id)
            if expert is not None:
                expert.last_busy_at = p.left_at
                self._expert_changed(expert, reason=reason)

    def _end(self, call: Call, reason: EndReason, why: str) -> None:
        for inv in call.invitations.values():
            if inv.state is InvitationState.RINGING:
                self._set_invitation(call, inv, InvitationState.CANCELLED, "call_ended")
                expert = self.experts.get(inv.expert_id)
                if expert is not None:
                    self._expert_changed(expert, reason="call_ended")
        call.dispatch_invitation_id = None
        call.choice_deadline = None
        for p in call.participants.values():
            if p.present:
                self._leave_participant(call, p, ParticipantState.LEFT, "call_ended")
        call.end_reason = reason
        call.ended_at = self._clock.wall_ms()
        self._set_position(call, None)
        self._set_call(call, CallState.ENDED, why)
        del self.calls[call.id]

    def _set_call(self, call: Call, new: CallState, reason: str) -> None:
        old = call.state
        if old is new:
            return
        call.state = new
        self.outbox.append(CallChanged(call, old, new, reason))

    def _set_invitation(
        self, call: Call, inv: Invitation, new: InvitationState, reason: str
    ) -> None:
        old = inv.state
        inv.state = new
        inv.ended_at = self._clock.wall_ms()
        self.outbox.append(InvitationChanged(call, inv, old, new, reason))

    def _set_participant(
        self, call: Call, p: Participant, new: ParticipantState, reason: str
    ) -> None:
        old = p.state
        if old is new:
            return
        p.state = new
        p.reason = reason
        self.outbox.append(ParticipantChanged(call, p, old, new, reason))

    def _expert_changed(self, expert: Expert, *, reason: str) -> None:
        activity = self.activity(expert.id)
        told = (expert.availability, activity, expert.online)
        if self._last_told.get(expert.id) != told:
            self._last_told[expert.id] = told
            self.outbox.append(ExpertChanged(expert, activity, reason))


def sequential_ids(prefix: str = "id") -> Callable[[], str]:
    """Readable ids for unit tests."""
    counter = itertools.count(1)
    return lambda: f"{prefix}{next(counter)}"
