"""Every visible string of the pages comes from web/i18n/<language>.json."""

from __future__ import annotations

import json
import re
from pathlib import Path

WEB = Path(__file__).resolve().parents[2] / "web"
PREFIXES = ("common", "index", "kiosk", "expert", "call")
# Keys built at run time from a server value: every value the server can send.
DYNAMIC = {
    "kiosk.error.camera_": ["denied", "missing", "failed"],
    "kiosk.enrol.": ["failed", "unavailable", "throttled", "wrong_kind"],
    "kiosk.expert.": ["available", "busy", "away", "offline"],
    "kiosk.rating.phrase.": ["patient", "fair", "helpful", "hard_to_hear"],
    "expert.availability.": ["available", "away", "busy", "offline"],
    "expert.outcome.": ["settled", "partly_settled", "not_settled", "referred"],
    "expert.invite.error.": ["expert_unavailable", "no_expert_available", "call_full", "other"],
    "call.state.": ["launching", "ringing", "queued", "active", "ended"],
    "call.end_reason.": ["completed", "cancelled", "no_answer", "dropped", "failed", "interrupted"],
}


def catalogue(lang: str) -> dict[str, str]:
    return json.loads((WEB / "i18n" / f"{lang}.json").read_text())


def used_keys() -> set[str]:
    keys: set[str] = set()
    for html in WEB.glob("*.html"):
        text = html.read_text()
        keys |= set(re.findall(r'data-i18n="([^"]+)"', text))
        for attrs in re.findall(r'data-i18n-attr="([^"]+)"', text):
            keys |= {pair.split(":")[1].strip() for pair in attrs.split(",")}
    prefixes = "|".join(PREFIXES)
    pattern = re.compile(rf"""["'`]((?:{prefixes})\.[a-z_]+(?:\.[a-z_]+)+)["'`]""")
    for js in (WEB / "js").glob("*.js"):
        keys |= set(pattern.findall(js.read_text()))
    for prefix, values in DYNAMIC.items():
        keys |= {prefix + value for value in values}
    # Request and event names look like keys ("call.launch"): they are not texts.
    requests = {
        "call.launch",
        "call.cancel",
        "call.accept",
        "call.decline",
        "call.invite",
        "call.leave",
        "call.choose",
        "call.rate",
        "call.outcome",
        "call.bookmark",
        "call.updated",
        "call.ring",
        "call.ring_ended",
        "call.queue_position",
        "call.choice_offered",
        "kiosk.device_token",
    }
    return keys - requests


def test_both_catalogues_have_the_same_keys():
    zh, en = catalogue("zh-CN"), catalogue("en")
    assert sorted(set(zh) ^ set(en)) == []


def test_both_catalogues_use_the_same_placeholders():
    zh, en = catalogue("zh-CN"), catalogue("en")
    for key in zh:
        assert set(re.findall(r"\{\w+\}", zh[key])) == set(re.findall(r"\{\w+\}", en[key])), key


def test_every_key_the_pages_use_is_in_the_catalogue():
    missing = sorted(used_keys() - set(catalogue("en")))
    assert missing == []


def test_english_texts_hold_no_chinese_except_the_way_back_to_chinese():
    cjk = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")
    chinese = [k for k, v in catalogue("en").items() if cjk.search(v)]
    # The language button names the other language in that language (lang="zh-CN").
    assert chinese == ["common.language_toggle"]
