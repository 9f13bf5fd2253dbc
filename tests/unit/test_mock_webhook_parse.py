"""The mock carrier's webhook parse: the one-step path for the usual body gives exactly what the
general path gives (same events, same errors), and the acknowledgement text is unchanged."""

from __future__ import annotations

import json
from typing import Any

import pytest

from voicecall.providers.base import WebhookParseError, WebhookRequest
from voicecall.providers.mock import MockProvider

BODIES = [
    b'{"events":[{"type":"call.speech","callId":"a","id":"x","transcript":"hi","isFinal":true}]}',
    b'{"events":[{"type":"call.speech","callId":"a","transcript":"hi"}]}',
    b'{"events":[{"type":"call.speech","call_id":"a","transcript":"hi"}]}',
    b'{"events":[{"type":"call.speech","call\\u005fid":"a","transcript":"hi"}]}',
    b'{"events":[{"type":"call.nope","callId":"a"},{"type":"call.dtmf","callId":"b","digits":"1"}]}',
    b'{"events":[{"type":"call.speech","callId":"","transcript":"hi"}]}',
    b'{"events":[{"type":"call.speech","callId":"a","confidence":2}]}',
    b'{"event":{"type":"call.answered","callId":"a","dedupeKey":"k"}}',
    b'{"events":[1, {"type":"call.answered","callId":"a"}]}',
    b'{"events":[{"type":"call.speech","callId":"a","timestamp":"12","isFinal":"false"}]}',
    b'{"events":[{"type":"call.ended","callId":"a","reason":"busy","dedupe_key":"q"}]}',
    b'{"events":[{"type":"call.answered","callId":"a"},{"type":"call.answered","callId":"b"}]}',
    b'{"events":[]}',
    b"",
    b"nope",
]


def _outcome(provider: MockProvider, body: bytes, *, general: bool) -> Any:
    request = WebhookRequest(method="POST", url="http://h/w", path="/w", query={}, headers={},
                             body=body, remote_addr="")
    verification = provider.verify_webhook(request)
    try:
        if general:
            events = provider._parse_any(body, verification)
        else:
            parsed = provider.parse_webhook(request, verification)
            assert parsed.body == json.dumps({"ok": True, "events": len(parsed.events)})
            events = parsed.events
    except WebhookParseError as exc:
        return f"error: {exc}"
    dumped = [e.model_dump() for e in events]
    for event in dumped:
        event["timestamp"] = bool(event["timestamp"])  # set to now when absent
        if len(event["id"]) == 36:
            event["id"] = "generated"
    return dumped


@pytest.mark.parametrize("body", BODIES)
def test_the_usual_body_path_gives_what_the_general_path_gives(body: bytes) -> None:
    provider = MockProvider()
    assert _outcome(provider, body, general=False) == _outcome(provider, body, general=True)


def test_events_without_an_id_get_a_dedupe_key_from_the_request_and_their_index() -> None:
    provider = MockProvider()
    body = BODIES[-4]
    request = WebhookRequest(method="POST", url="http://h/w", path="/w", query={}, headers={},
                             body=body, remote_addr="")
    verification = provider.verify_webhook(request)
    events = provider.parse_webhook(request, verification).events
    assert [e.key for e in events] == [f"{verification.request_key}:{i}" for i in range(2)]
