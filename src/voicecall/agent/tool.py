"""The `voice_call` agent tool: its JSON Schema (OpenAI function-calling shape) and a dispatcher
that maps actions onto control-API methods and returns errors as data, never raising."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

TOOL_NAME = "voice_call"
TOOL_DESCRIPTION = (
    "Make phone calls and have voice conversations. initiate_call places a call (notify: speak "
    "the message and hang up; conversation: stay on the line); continue_call says something and "
    "waits for the callee's answer; speak_to_user says something without waiting; send_dtmf "
    "presses phone keys; transfer_call puts the call through to a person (only to the numbers "
    "the operator allowed); end_call hangs up; get_status reports a call."
)

Invoke = Callable[[str, Mapping[str, Any]], Awaitable[dict[str, Any]]]

_CALL_ID = {"type": "string", "description": "The call id returned by initiate_call "
            "(the carrier's call id also works)."}
_ACTIONS: dict[str, tuple[str, dict[str, Any], list[str]]] = {
    "initiate_call": ("voicecall.initiate", {
        "message": {"type": "string", "description": "Intro message spoken when the call is "
                    "answered."},
        "to": {"type": "string", "description": "Number to call, E.164 like +15555550123. "
               "Defaults to the configured toNumber."},
        "mode": {"type": "string", "enum": ["notify", "conversation"],
                 "description": "notify: speak and hang up. conversation: keep the line open. "
                 "Defaults to the configured outbound.defaultMode."},
        "dtmfSequence": {"type": "string", "description": "Keys to press after the call "
                         "connects, before speaking (conversation calls), e.g. 'ww1234#'."},
    }, ["message"]),
    "continue_call": ("voicecall.continue", {
        "callId": _CALL_ID,
        "message": {"type": "string", "description": "Follow-up message; the tool then waits "
                    "for the callee's reply and returns it as `transcript`."},
    }, ["callId", "message"]),
    "speak_to_user": ("voicecall.speak", {
        "callId": _CALL_ID, "message": {"type": "string", "description": "What to say."},
    }, ["callId", "message"]),
    "send_dtmf": ("voicecall.dtmf", {
        "callId": _CALL_ID,
        "digits": {"type": "string", "description": "Keys: 0-9 * # and w/W/p/P/, for pauses."},
    }, ["callId", "digits"]),
    "transfer_call": ("voicecall.transfer", {
        "callId": _CALL_ID,
        "to": {"type": "string", "description": "Where to put the call through, E.164; only "
               "numbers in the operator's transfer.allowedNumbers are accepted."},
        "message": {"type": "string", "description": "Said to the caller first, e.g. 'Let me "
                    "put you through to a colleague.'"},
    }, ["callId", "to"]),
    "end_call": ("voicecall.end", {"callId": _CALL_ID}, ["callId"]),
    "get_status": ("voicecall.status", {"callId": _CALL_ID}, ["callId"]),
}


def _flat_properties() -> dict[str, Any]:
    """Every action's fields in one object; a field several actions share keeps its first
    action's description (each action's own is in `oneOf`)."""
    flat: dict[str, Any] = {}
    for _method, props, _required in _ACTIONS.values():
        for name, spec in props.items():
            flat.setdefault(name, spec)
    return flat


def tool_schema() -> dict[str, Any]:
    """The tool in OpenAI function-calling shape: one `action` discriminator plus its fields."""
    variants = []
    for action, (_method, props, required) in _ACTIONS.items():
        variants.append({
            "type": "object",
            "properties": {"action": {"const": action}, **props},
            "required": ["action", *required],
            "additionalProperties": False,
        })
    return {
        "type": "function",
        "function": {
            "name": TOOL_NAME,
            "description": TOOL_DESCRIPTION,
            "parameters": {
                "type": "object",
                "properties": {
                    "action": {"type": "string", "enum": list(_ACTIONS)},
                    **_flat_properties(),
                },
                "required": ["action"],
                "oneOf": variants,
            },
        },
    }


async def dispatch_tool(arguments: Mapping[str, Any] | str, invoke: Invoke) -> dict[str, Any]:
    """Run one tool call. Any failure comes back as `{"error": "..."}`."""
    import json

    try:
        args = json.loads(arguments) if isinstance(arguments, str) else dict(arguments)
    except ValueError as exc:
        return {"error": f"arguments are not valid JSON: {exc}"}
    if not isinstance(args, dict):
        return {"error": "arguments must be an object"}
    if "action" not in args and args and set(args) <= _LEGACY_KEYS:
        return await _dispatch_legacy(args, invoke)
    action = args.pop("action", None)
    if action not in _ACTIONS:
        return {"error": f"unknown action {action!r}; use one of {', '.join(_ACTIONS)}"}
    method, props, required = _ACTIONS[action]
    params = {k: v.strip() if isinstance(v, str) else v for k, v in args.items() if k in props}
    missing = [k for k in required if not params.get(k)]
    if missing:
        return {"error": f"{' and '.join(missing)} required"}
    params.update(_AS_AGENT.get(action, {}))  # set here, never by the model's arguments
    try:
        result = await invoke(method, params)
    except Exception as exc:  # errors are data for the agent, never a crash
        return {"error": str(exc) or f"{action} failed"}
    return result


_AS_AGENT: dict[str, dict[str, Any]] = {"transfer_call": {"asAgent": True}}
"""Parameters an action always carries: a model transfers only to `transfer.allowedNumbers`."""

_LEGACY_KEYS = frozenset({"mode", "to", "sid", "message"})


async def _dispatch_legacy(args: Mapping[str, Any], invoke: Invoke) -> dict[str, Any]:
    """OpenClaw's first tool shape, without `action`: `{mode: "call"|"status", to, sid, message}`.

    `status` looks up `sid` (our call id or the carrier's); `call` (the default) places a call
    with the configured default mode, the message being optional.
    """
    text = {k: v.strip() for k, v in args.items() if isinstance(v, str) and v.strip()}
    mode = text.get("mode", "call")
    try:
        if mode == "status":
            if "sid" not in text:
                return {"error": "sid required for status"}
            return await invoke("voicecall.status", {"callId": text["sid"]})
        if mode != "call":
            return {"error": f"unknown mode {mode!r}; use call or status (or an action)"}
        if "message" in text:  # falls back to the configured toNumber
            params: dict[str, Any] = {k: text[k] for k in ("to", "message") if k in text}
            return await invoke("voicecall.initiate", params)
        if "to" not in text:
            return {"error": "to required for call"}
        return await invoke("voicecall.start", {"to": text["to"]})
    except Exception as exc:  # errors are data for the agent, never a crash
        message = str(exc)
        return {"error": "to required for call" if message.startswith("to required") else
                message or f"{mode} failed"}
