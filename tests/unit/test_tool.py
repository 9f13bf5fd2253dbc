"""The `voice_call` agent tool: its published schema and a dispatcher that returns errors as data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from voicecall.agent.tool import dispatch_tool, tool_schema
from voicecall.service import CallError


def test_schema_is_an_openai_function_with_every_action() -> None:
    schema = tool_schema()
    assert schema["type"] == "function" and schema["function"]["name"] == "voice_call"
    params = schema["function"]["parameters"]
    assert params["properties"]["action"]["enum"] == [
        "initiate_call", "continue_call", "speak_to_user", "send_dtmf", "transfer_call", "end_call",
        "get_status"]
    required = {v["properties"]["action"]["const"]: v["required"] for v in params["oneOf"]}
    assert required["initiate_call"] == ["action", "message"]
    assert required["send_dtmf"] == ["action", "callId", "digits"]
    assert "dtmfSequence" in params["properties"]
    assert required["transfer_call"] == ["action", "callId", "to"]
    assert params["properties"]["to"]["description"].startswith("Number to call")


class Recorder:
    def __init__(self, result: dict[str, Any] | None = None, error: Exception | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.result = result or {"ok": True}
        self.error = error

    async def __call__(self, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append((method, dict(params)))
        if self.error:
            raise self.error
        return self.result


async def test_actions_map_onto_control_methods_with_trimmed_strings() -> None:
    rec = Recorder({"callId": "c1", "initiated": True})
    result = await dispatch_tool({"action": "initiate_call", "message": "  Hi  ", "to": "+15555550123",
                                  "bogus": 1}, rec)
    assert result == {"callId": "c1", "initiated": True}
    assert rec.calls == [("voicecall.initiate", {"message": "Hi", "to": "+15555550123"})]


async def test_json_string_arguments_are_accepted() -> None:
    rec = Recorder()
    await dispatch_tool('{"action": "end_call", "callId": "c9"}', rec)
    assert rec.calls == [("voicecall.end", {"callId": "c9"})]


async def test_missing_fields_unknown_actions_and_bad_json_come_back_as_errors() -> None:
    rec = Recorder()
    assert await dispatch_tool({"action": "continue_call", "callId": "c1"}, rec) == {
        "error": "message required"}
    assert "unknown action" in (await dispatch_tool({"action": "fly"}, rec))["error"]
    assert "not valid JSON" in (await dispatch_tool("{nope", rec))["error"]
    assert rec.calls == []


async def test_service_failures_are_returned_as_data_not_raised() -> None:
    rec = Recorder(error=CallError("Call not found: x"))
    assert await dispatch_tool({"action": "get_status", "callId": "x"}, rec) == {
        "error": "Call not found: x"}


async def test_legacy_status_shape_looks_up_the_sid() -> None:
    rec = Recorder({"found": True, "call": {"callId": "c1"}})
    assert await dispatch_tool({"mode": "status", "sid": " CA123 "}, rec) == {
        "found": True, "call": {"callId": "c1"}}
    assert rec.calls == [("voicecall.status", {"callId": "CA123"})]
    assert await dispatch_tool({"mode": "status"}, rec) == {"error": "sid required for status"}


async def test_legacy_call_shape_places_a_call_with_the_default_mode() -> None:
    rec = Recorder({"callId": "c2", "initiated": True})
    assert await dispatch_tool({"mode": "call", "to": "+15555550123", "message": "Hi"}, rec) == {
        "callId": "c2", "initiated": True}
    assert await dispatch_tool('{"to": "+15555550124"}', rec) == {  # no mode: a call
        "callId": "c2", "initiated": True}
    assert rec.calls == [("voicecall.initiate", {"to": "+15555550123", "message": "Hi"}),
                         ("voicecall.start", {"to": "+15555550124"})]


async def test_legacy_call_without_a_number_says_to_is_required() -> None:
    rec = Recorder()
    assert await dispatch_tool({"mode": "call"}, rec) == {"error": "to required for call"}
    assert rec.calls == []
    failing = Recorder(error=CallError("to required (pass to, or configure toNumber)"))
    assert await dispatch_tool({"mode": "call", "message": "Hi"}, failing) == {
        "error": "to required for call"}
    assert await dispatch_tool({"mode": "fly"}, rec) == {
        "error": "unknown mode 'fly'; use call or status (or an action)"}
    # Not the legacy shape: a forgotten action is still named as such.
    assert "unknown action None" in (await dispatch_tool({"callId": "c1"}, rec))["error"]
    assert "unknown action None" in (await dispatch_tool({}, rec))["error"]
