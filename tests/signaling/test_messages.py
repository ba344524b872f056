"""The wire schema module on its own: decoding, validation, encoding."""

from __future__ import annotations

import json

import pytest

from signaling import messages as m


def test_a_valid_request_decodes_with_its_id_and_payload():
    req = m.decode_request(
        '{"type":"call.launch","id":"a1","payload":{"dispute_type":"family","expert_id":null}}',
        65536,
    )
    assert req == m.Request("call.launch", "a1", {"dispute_type": "family"})


def test_the_error_keeps_the_request_id_when_it_can():
    with pytest.raises(m.ProtocolError) as err:
        m.decode_request('{"type":"nope","id":42}', 65536)
    assert (err.value.code, err.value.request_id) == ("unknown_type", 42)


def test_invite_needs_exactly_one_of_expert_or_specialty():
    for payload in ({"call_id": "c"}, {"call_id": "c", "expert_id": "e", "specialty": "s"}):
        with pytest.raises(m.ProtocolError) as err:
            m.decode_request(json.dumps({"type": "call.invite", "payload": payload}), 65536)
        assert err.value.code == "invalid_message"


def test_size_is_counted_in_bytes_not_characters():
    text = json.dumps({"type": "ping", "payload": {}, "x": "调" * 30}, ensure_ascii=False)
    assert len(text) < 100 < len(text.encode())
    with pytest.raises(m.ProtocolError) as err:
        m.decode_request(text, 100)
    assert err.value.code == "message_too_large"


def test_encoders_produce_the_documented_envelope():
    assert json.loads(m.encode_result(3, {"a": 1})) == {
        "type": "result",
        "id": 3,
        "payload": {"a": 1},
    }
    assert json.loads(m.encode_error(None, "forbidden", "no")) == {
        "type": "error",
        "id": None,
        "payload": {"code": "forbidden", "message": "no"},
    }
    assert json.loads(m.encode_event("call.ring", 7, {})) == {
        "type": "call.ring",
        "seq": 7,
        "payload": {},
    }


def test_the_current_protocol_version_is_supported():
    assert m.PROTOCOL_VERSION in m.SUPPORTED_PROTOCOL_VERSIONS
    assert 0 not in m.SUPPORTED_PROTOCOL_VERSIONS


def test_messages_imports_nothing_of_ours():
    import ast
    from pathlib import Path

    tree = ast.parse(Path(m.__file__).read_text())
    imported = {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    } | {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert not imported & {"signaling", "storage", "media", "recorder"}
