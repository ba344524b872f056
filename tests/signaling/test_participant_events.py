"""Which chain event a participant's change makes (signaling.recording_hub.participant_event).

The dispatcher says when its grace to come back ran out by a change from dropped to dropped
(or from reconnecting to dropped) with the reason `grace_expired`: that participant has left
for good, not dropped a second time."""

from __future__ import annotations

import pytest

from signaling.dispatch import ParticipantState as S
from signaling.recording_hub import participant_event


@pytest.mark.parametrize(
    ("old", "new", "reason", "event"),
    [
        (None, S.CONNECTED, None, "participant_joined"),
        (S.JOINING, S.CONNECTED, None, "participant_joined"),
        (S.CONNECTED, S.DROPPED, "media_lost", "participant_dropped"),
        (S.DROPPED, S.CONNECTED, None, "participant_rejoined"),
        (S.DROPPED, S.DROPPED, "grace_expired", "participant_left"),
        (S.RECONNECTING, S.DROPPED, "grace_expired", "participant_left"),
        (S.CONNECTED, S.LEFT, "left", "participant_left"),
        (S.CONNECTED, S.RECONNECTING, None, None),
        (S.RECONNECTING, S.CONNECTED, None, None),
    ],
)
def test_a_participant_change_makes_one_chain_event(old, new, reason, event) -> None:
    assert participant_event(old, new, reason) == event
