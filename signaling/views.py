"""Wire shapes of stored records, shared by WebSocket results and the REST API."""

from __future__ import annotations

from typing import Any

from storage import Bookmark, DeviceHealth, Outcome, Rating


def health_view(health: DeviceHealth | None) -> dict[str, Any] | None:
    if health is None:
        return None
    return {
        "camera": health.camera,
        "microphone": health.microphone,
        "app_build": health.app_build,
        "at": health.at,
    }


def rating_view(rating: Rating | None) -> dict[str, Any] | None:
    if rating is None:
        return None
    return {"stars": rating.stars, "comment": rating.comment, "at": rating.at}


def outcome_view(outcome: Outcome | None) -> dict[str, Any] | None:
    if outcome is None:
        return None
    return {
        "outcome": outcome.outcome,
        "summary": outcome.summary,
        "by": outcome.expert_id,
        "at": outcome.at,
        "call_id": outcome.call_id,
    }


def bookmark_view(bookmark: Bookmark) -> dict[str, Any]:
    return {
        "id": bookmark.id,
        "at": bookmark.at,
        "offset_ms": bookmark.offset_ms,
        "note": bookmark.note,
        "by": bookmark.expert_id,
    }
