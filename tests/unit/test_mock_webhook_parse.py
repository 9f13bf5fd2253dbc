"""The mock carrier's webhook parse: which bodies it accepts, the events it makes of them, the 400
errors it explains malformed ones with, and the acknowledgement it answers with."""

from __future__ import annotations

import json
from typing import Any

import pytest

from voicecall.providers.base import ParsedWebhook, Verification, WebhookParseError, WebhookRequest
from voicecall.providers.mock import MockProvider


def _parse(body: bytes) -> tuple[ParsedWebhook, Verification]:
    provider = MockProvider()
    request = WebhookRequest(method="POST", url="http://h/w", path="/w", query={}, headers={},
                             body=body, remote_addr="")
    verification = provider.verify_webhook(request)
    return provider.parse_webhook(request, verification), verification


def _summary(body: bytes) -> list[dict[str, Any]]:
    """The parsed events, with the request key spelled `KEY` and generated ids `generated`."""
    parsed, verification = _parse(body)
    assert parsed.body == json.dumps({"ok": True, "events": len(parsed.events)})
    assert parsed.headers == {"content-type": "application/json"}
    assert parsed.status == 200
    summary = []
    for event in parsed.events:
        assert event.timestamp > 0  # stamped with the parse time when the body has none
        summary.append({
            "type": event.type, "callId": event.call_id,
            "id": event.id if len(event.id) != 36 else "generated",
            "dedupeKey": (event.dedupe_key or "").replace(verification.request_key or "?", "KEY"),
            **{k: v for k, v in event.to_json_dict().items()
               if k in ("transcript", "digits", "reason", "isFinal")},
        })
    return summary


ACCEPTED: list[tuple[bytes, list[dict[str, Any]]]] = [
    (b'{"events":[{"type":"call.speech","callId":"a","id":"x","transcript":"hi","isFinal":true}]}',
     [{"type": "call.speech", "callId": "a", "id": "x", "dedupeKey": "", "transcript": "hi",
       "isFinal": True, "reason": "completed", "digits": ""}]),
    (b'{"events":[{"type":"call.speech","callId":"a","transcript":"hi"}]}',
     [{"type": "call.speech", "callId": "a", "id": "generated", "dedupeKey": "KEY:0",
       "transcript": "hi", "isFinal": True, "reason": "completed", "digits": ""}]),
    (b'{"events":[{"type":"call.nope","callId":"a"},{"type":"call.dtmf","callId":"b","digits":"1"}]}',
     [{"type": "call.dtmf", "callId": "b", "id": "generated", "dedupeKey": "KEY:1", "digits": "1",
       "transcript": "", "isFinal": True, "reason": "completed"}]),
    (b'{"event":{"type":"call.answered","callId":"a","dedupeKey":"k"}}',
     [{"type": "call.answered", "callId": "a", "id": "generated", "dedupeKey": "k", "transcript": "",
       "isFinal": True, "reason": "completed", "digits": ""}]),
    (b'{"events":[1, {"type":"call.answered","callId":"a"}]}',
     [{"type": "call.answered", "callId": "a", "id": "generated", "dedupeKey": "KEY:1",
       "transcript": "", "isFinal": True, "reason": "completed", "digits": ""}]),
    (b'{"events":[{"type":"call.speech","callId":"a","timestamp":"12","isFinal":"false"}]}',
     [{"type": "call.speech", "callId": "a", "id": "generated", "dedupeKey": "KEY:0",
       "transcript": "", "isFinal": False, "reason": "completed", "digits": ""}]),
    (b'{"events":[{"type":"call.ended","callId":"a","reason":"busy","dedupe_key":"q"}]}',
     [{"type": "call.ended", "callId": "a", "id": "generated", "dedupeKey": "q", "transcript": "",
       "isFinal": True, "reason": "busy", "digits": ""}]),
    (b'{"events":[]}', []),
]


@pytest.mark.parametrize(("body", "expected"), ACCEPTED)
def test_accepted_bodies_become_normalized_events(body: bytes, expected: list[dict[str, Any]]) -> None:
    assert _summary(body) == expected


REFUSED: list[tuple[bytes, str]] = [
    (b'{"events":[{"type":"call.speech","call_id":"a","transcript":"hi"}]}',
     "events[0]: callId is required"),
    (b'{"events":[{"type":"call.speech","call\\u005fid":"a","transcript":"hi"}]}',
     "events[0]: callId is required"),
    (b'{"events":[{"type":"call.speech","callId":"","transcript":"hi"}]}',
     "events[0]: callId is required"),
    (b'{"events":[{"type":"call.speech","callId":"a","confidence":2}]}',
     "events[0].confidence: Input should be less than or equal to 1"),
    (b'{"events":[{"type":"call.answered","callId":"a"},{"type":"call.speech","callId":"b","isFinal":"x"}]}',
     "events[1].isFinal: Input should be a valid boolean, unable to interpret input"),
    (b"", 'body must be {"events": [...]} or {"event": {...}}'),
    (b"[]", 'body must be {"events": [...]} or {"event": {...}}'),
    (b'{"event":[]}', 'body must be {"events": [...]} or {"event": {...}}'),
    (b"nope", "invalid JSON body: Expecting value: line 1 column 1 (char 0)"),
    (b"\xff", "invalid JSON body: "),
]


@pytest.mark.parametrize(("body", "message"), REFUSED)
def test_malformed_bodies_are_refused_with_a_clear_message(body: bytes, message: str) -> None:
    with pytest.raises(WebhookParseError) as info:
        _parse(body)
    assert str(info.value).startswith(message)


def test_an_explicit_zero_timestamp_is_stamped_and_a_given_one_kept() -> None:
    parsed, _ = _parse(b'{"events":[{"type":"call.answered","callId":"a","timestamp":0},'
                       b'{"type":"call.answered","callId":"a","timestamp":12}]}')
    assert parsed.events[0].timestamp > 12
    assert parsed.events[1].timestamp == 12


def test_events_without_an_id_get_a_dedupe_key_from_the_request_and_their_index() -> None:
    body = b'{"events":[{"type":"call.answered","callId":"a"},{"type":"call.answered","callId":"b"}]}'
    parsed, verification = _parse(body)
    assert [e.key for e in parsed.events] == [f"{verification.request_key}:{i}" for i in range(2)]
