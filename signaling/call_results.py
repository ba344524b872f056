"""What a call leaves behind: the caller's rating, the expert's outcome, bookmarks.

`CallResults` runs the `call.rate`, `call.outcome` and `call.bookmark` requests for the
hub: it checks who may act on which call (an invisible call answers `not_found`, a call in
the wrong state `invalid_state`), stores the record, audits it and returns its wire view.
Free text (comments, summaries, notes) stays out of the hash-chained audit log, which can
never be edited; the audit entry says that there was text, not what it said.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from signaling.dispatch import CallState
from signaling.errors import AlreadyRated, InvalidState, NotFound
from signaling.logs import log_context
from signaling.permissions import Principal
from signaling.views import bookmark_view, outcome_view, rating_view
from storage import Bookmark, CallRecord, Conflict, Outcome, Rating, ids
from storage import errors as storage_errors

if TYPE_CHECKING:
    from signaling.hub import Hub

log = logging.getLogger(__name__)


class CallResults:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    # --- who may act on a stored call -----------------------------------------------------

    def _stored_call(self, call_id: str) -> CallRecord:
        try:
            return self.hub.store.get_call(call_id)
        except storage_errors.NotFound as err:
            raise NotFound("call", call_id) from err

    def _callers_call(self, principal: Principal, call_id: str) -> CallRecord:
        record = self._stored_call(call_id)
        if record.caller_device_id != principal.device_id:
            raise NotFound("call", call_id)
        return record

    def _experts_call(self, principal: Principal, call_id: str) -> CallRecord:
        """A call in which the expert was a participant (accepted a ring), else not_found."""
        record = self._stored_call(call_id)
        if not any(
            p.principal_id == principal.id and p.role == "expert"
            for p in self.hub.store.list_participants(call_id)
        ):
            raise NotFound("call", call_id)
        return record

    # --- requests ------------------------------------------------------------------------

    def rate(self, principal: Principal, p: dict[str, Any]) -> dict[str, Any]:
        """The caller rates an ended, answered call, once."""
        record = self._callers_call(principal, p["call_id"])
        if record.state != CallState.ENDED:
            raise InvalidState(f"call {record.id} is {record.state}; rate it once it has ended")
        if record.answered_at is None:
            raise InvalidState(f"call {record.id} was never answered: there is nobody to rate")
        assert principal.device_id is not None  # kiosks and stations are devices
        rating = Rating(
            call_id=record.id,
            stars=p["stars"],
            comment=p.get("comment") or None,
            device_id=principal.device_id,
            account_id=principal.account_id,
            at=self.hub.clock.wall_ms(),
        )
        store = self.hub.store
        with store.transaction():
            try:
                store.add_rating(rating)
            except Conflict as err:
                raise AlreadyRated(f"call {record.id} has been rated already") from err
            store.append_audit(
                principal.account_id or principal.id,
                "call.rated",
                record.id,
                {
                    "stars": rating.stars,
                    "has_comment": rating.comment is not None,
                    "device_id": rating.device_id,
                },
                at=rating.at,
            )
        with log_context(call_id=record.id):
            log.info("call rated: %d stars", rating.stars)
        return {"rating": rating_view(rating)}

    def outcome(self, principal: Principal, p: dict[str, Any]) -> dict[str, Any]:
        """An expert who took part records the outcome (during or after); the latest wins."""
        record = self._experts_call(principal, p["call_id"])
        outcome = Outcome(
            call_id=record.id,
            case_id=record.case_id,
            outcome=p["outcome"],
            summary=p["summary"],
            expert_id=principal.id,
            at=self.hub.clock.wall_ms(),
        )
        store = self.hub.store
        with store.transaction():
            previous = store.set_outcome(outcome)
            old = previous.outcome if previous is not None else None
            store.add_call_event(
                record.id,
                "outcome",
                principal.id,
                old,
                outcome.outcome,
                outcome.at,
                {"summary": outcome.summary, "by": principal.id, "case_id": record.case_id},
            )
            store.append_audit(
                principal.id,
                "call.outcome",
                record.id,
                {
                    "old": old,
                    "new": outcome.outcome,
                    "case_id": record.case_id,
                    "summary_chars": len(outcome.summary),
                },
                at=outcome.at,
            )
        with log_context(call_id=record.id):
            log.info("outcome %s -> %s", old, outcome.outcome)
        return {"outcome": outcome_view(outcome)}

    def bookmark(self, principal: Principal, p: dict[str, Any]) -> dict[str, Any]:
        """An expert present in an active call marks this moment, stamped by the server."""
        call_id = p["call_id"]
        call = self.hub.dispatcher.calls.get(call_id)
        present = call is not None and any(
            q.principal_id == principal.id and q.role == "expert" and q.present
            for q in call.participants.values()
        )
        if call is None or not present:
            record = self._experts_call(principal, call_id)  # not_found unless they took part
            raise InvalidState(f"call {record.id} is not active with you in it")
        if call.state is not CallState.ACTIVE or call.answered_at is None:
            raise InvalidState(f"call {call.id} is {call.state}, not active")
        now = self.hub.clock.wall_ms()
        bookmark = Bookmark(
            id=ids.new_id(),
            call_id=call.id,
            expert_id=principal.id,
            at=now,
            offset_ms=max(0, now - call.answered_at),
            note=p.get("note", ""),
        )
        store = self.hub.store
        with store.transaction():
            store.add_bookmark(bookmark)
            store.append_audit(
                principal.id,
                "call.bookmark",
                call.id,
                {
                    "bookmark_id": bookmark.id,
                    "offset_ms": bookmark.offset_ms,
                    "note_chars": len(bookmark.note),
                },
                at=now,
            )
        with log_context(call_id=call.id):
            log.info("bookmark %s at +%d ms", bookmark.id, bookmark.offset_ms)
        view = bookmark_view(bookmark)
        # The recorder links bookmarks into the evidence chain once it offers this hook.
        on_bookmark = getattr(self.hub.recordings, "on_bookmark", None)
        if on_bookmark is not None:
            on_bookmark(call.id, dict(view))
        return {"bookmark": view}
