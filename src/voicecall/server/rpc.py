"""The control API's methods (`voicecall.*`, `mock.inject`), shared by the RPC server, the
standalone CLI fallback and the agent tool. Parameters are validated here, once."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from voicecall.calls.latency import latency_report
from voicecall.calls.model import CallRecord
from voicecall.server.call_list import list_query
from voicecall.service import CallError, CallNotFound, CallService

Handler = Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]

INVALID_PARAMS = -32602
METHOD_NOT_FOUND = -32601


class ApiError(CallError):
    """A request the API refuses (bad parameters, unknown method)."""


def _text(params: Mapping[str, Any], name: str, *, required: str | None = None) -> str | None:
    value = params.get(name)
    if value is None:
        if required:
            raise ApiError(required, code=INVALID_PARAMS)
        return None
    if not isinstance(value, str):
        raise ApiError(f"{name} must be a string", code=INVALID_PARAMS)
    value = value.strip()
    if not value and required:
        raise ApiError(required, code=INVALID_PARAMS)
    return value or None


def _number(params: Mapping[str, Any], name: str, default: float, *, lo: float,
            hi: float) -> float:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApiError(f"{name} must be a number", code=INVALID_PARAMS)
    if not math.isfinite(value):
        raise ApiError(f"{name} must be a finite number", code=INVALID_PARAMS)
    return min(max(float(value), lo), hi)


def _choice(params: Mapping[str, Any], name: str, choices: tuple[str, ...]) -> str | None:
    """An optional string parameter that must be one of `choices`."""
    value = _text(params, name)
    if value is not None and value not in choices:
        raise ApiError(f"{name} must be one of {', '.join(choices)}", code=INVALID_PARAMS)
    return value


def _flag(params: Mapping[str, Any], name: str) -> bool:
    """An optional boolean parameter (false when absent)."""
    value = params.get(name, False)
    if not isinstance(value, bool):
        raise ApiError(f"{name} must be true or false", code=INVALID_PARAMS)
    return value


MODES = ("notify", "conversation")


class ControlApi:
    """Dispatches `voicecall.*` methods to the call service."""

    def __init__(self, service: CallService, *, to_number: str | None = None,
                 inject: Callable[[str, Mapping[str, Any]], Awaitable[None]] | None = None,
                 media_stats: Callable[[], Awaitable[dict[str, Any]]] | None = None,
                 config_info: Mapping[str, str | None] | None = None) -> None:
        self.service = service
        # Which configuration the gateway runs with (`configFingerprint`, `configPath`), so a
        # client that loaded another one can say so; shown by `status` and `/health`.
        self.config_info: dict[str, str | None] = dict(config_info or {})
        self._media_stats = media_stats
        self.to_number = to_number
        self._inject = inject
        self.methods: dict[str, Handler] = {
            "voicecall.initiate": self.initiate,
            "voicecall.start": self.start,
            "voicecall.continue": self.continue_,
            "voicecall.continue.start": self.continue_start,
            "voicecall.continue.result": self.continue_result,
            "voicecall.speak": self.speak,
            "voicecall.media.stats": self.media_stats,
            "voicecall.dtmf": self.dtmf,
            "voicecall.transfer": self.transfer,
            "voicecall.end": self.end,
            "voicecall.status": self.status,
            "voicecall.list": self.list_calls,
            "voicecall.latency": self.latency,
            "voicecall.tail": self.tail,
            "mock.inject": self.mock_inject,
        }

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        handler = self.methods.get(method)
        if handler is None:
            raise ApiError(f"Unknown method {method!r}", code=METHOD_NOT_FOUND)
        return await handler(params or {})

    def _to(self, params: Mapping[str, Any], *, required: bool) -> str:
        to = _text(params, "to") or self.to_number
        if not to:
            raise ApiError("to required (pass to, or configure toNumber)", code=INVALID_PARAMS)
        return to

    async def initiate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        message = _text(params, "message", required="message required")
        return await self._place(params, message)

    async def start(self, params: Mapping[str, Any]) -> dict[str, Any]:
        if not _text(params, "to"):
            raise ApiError("to required", code=INVALID_PARAMS)
        return await self._place(params, _text(params, "message"))

    async def _place(self, params: Mapping[str, Any], message: str | None) -> dict[str, Any]:
        record = await self.service.initiate(
            self._to(params, required=True), message, mode=_choice(params, "mode", MODES),
            session=_text(params, "sessionKey"), dtmf_sequence=_text(params, "dtmfSequence"))
        return {"callId": record.call_id, "initiated": True}

    async def continue_(self, params: Mapping[str, Any]) -> dict[str, Any]:
        call_id, message = self._call_and_message(params)
        transcript = await self.service.continue_call(call_id, message)
        return {"success": True, "transcript": transcript}

    async def continue_start(self, params: Mapping[str, Any]) -> dict[str, Any]:
        call_id, message = self._call_and_message(params)
        operation_id, call_id = await self.service.continue_start(call_id, message)
        return {"operationId": operation_id, "callId": call_id}

    async def continue_result(self, params: Mapping[str, Any]) -> dict[str, Any]:
        operation_id = _text(params, "operationId", required="operationId required")
        assert operation_id is not None
        wait_s = _number(params, "waitMs", 0, lo=0, hi=60_000) / 1000
        return await self.service.continue_result(operation_id, wait_s)

    async def speak(self, params: Mapping[str, Any]) -> dict[str, Any]:
        call_id, message = self._call_and_message(params)
        result = await self.service.speak(call_id, message)
        out: dict[str, Any] = {"success": True}
        if result.interrupted or result.skipped:
            out.update(interrupted=True, played=result.played_text)
        return out

    async def media_stats(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Media-stream counters: streams, pacer health, TTS first byte → first frame."""
        if self._media_stats is None:
            return {"enabled": False}
        return await self._media_stats()

    async def dtmf(self, params: Mapping[str, Any]) -> dict[str, Any]:
        call_id = _text(params, "callId", required="callId and digits required")
        digits = _text(params, "digits", required="callId and digits required")
        assert call_id is not None and digits is not None
        await self.service.send_dtmf(call_id, digits)
        return {"success": True}

    async def transfer(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Put the call through to `to` (with `asAgent`, only to `transfer.allowedNumbers`);
        returns once the carrier is dialing."""
        call_id = _text(params, "callId", required="callId and to required")
        to = _text(params, "to", required="callId and to required")
        assert call_id is not None and to is not None
        as_agent = params.get("asAgent", False)
        if not isinstance(as_agent, bool):
            raise ApiError("asAgent must be true or false", code=INVALID_PARAMS)
        return await self.service.transfer(call_id, to, _text(params, "message"),
                                           by_model=as_agent)

    async def end(self, params: Mapping[str, Any]) -> dict[str, Any]:
        call_id = _text(params, "callId", required="callId required")
        assert call_id is not None
        ended = await self.service.end(call_id)
        return {"success": True} if ended else {"success": True, "alreadyEnded": True}

    async def status(self, params: Mapping[str, Any]) -> dict[str, Any]:
        call_id = _text(params, "callId") or _text(params, "sid")
        if call_id is None:
            listed: dict[str, Any] = {
                "calls": [self._view(r) for r in await self.service.list_active()]}
            if self.config_info:
                listed["gateway"] = dict(self.config_info)
            return listed
        record = await self.service.get_call(call_id)
        if record is None:
            return {"found": False}
        history = await self.service.store.state_history(record.call_id)
        return {"found": True, "call": self._view(record), "history": history}

    def _view(self, record: CallRecord) -> dict[str, Any]:
        """A call as `status` shows it: its public record, plus `webhookRejections` (count, last
        reason, when) while webhooks naming it are being refused."""
        data = _public(record)
        rejections = self.service.rejections.of(record.call_id)
        if rejections is not None:
            data["webhookRejections"] = rejections.to_json()
        return data

    async def list_calls(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Recent calls, live and ended, newest first; see `call_list.list_query` for the
        filters. `nextOffset` is the offset of the next page, or None on the last one."""
        query = list_query(params)
        records = await self.service.store.list_calls(query)
        limit = query.limit - 1
        more = len(records) > limit
        return {"calls": [self._view(r) for r in records[:limit]], "offset": query.offset,
                "nextOffset": query.offset + limit if more else None}

    async def latency(self, params: Mapping[str, Any]) -> dict[str, Any]:
        last = int(_number(params, "last", 200, lo=1, hi=100_000))
        entries = await self.service.store.last_log(last, kinds=("turn",))
        return latency_report([e.data for e in entries], records_scanned=len(entries))

    async def tail(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Log entries after `afterSeq` (or the last `since`), waiting up to `waitMs` for new ones."""
        store = self.service.store
        if "afterSeq" in params:
            after = int(_number(params, "afterSeq", 0, lo=0, hi=2**62))
            entries = await store.log_since(after)
            wait_s = _number(params, "waitMs", 0, lo=0, hi=60_000) / 1000
            if not entries and wait_s > 0:
                version = await self.service.wait_for_change(-1, 0)
                await self.service.wait_for_change(version, wait_s)
                entries = await store.log_since(after)
        else:
            entries = await store.last_log(int(_number(params, "since", 25, lo=0, hi=10_000)))
        next_seq = entries[-1].seq if entries else int(params.get("afterSeq", 0) or 0)
        return {"entries": [e.to_json_dict() for e in entries], "nextSeq": next_seq}

    async def mock_inject(self, params: Mapping[str, Any]) -> dict[str, Any]:
        if self._inject is None:
            raise ApiError("mock.inject is only available with the mock carrier",
                           code=METHOD_NOT_FOUND)
        call_id = _text(params, "callId", required="callId required")
        assert call_id is not None
        speech, digits, hangup = _text(params, "speech"), _text(params, "digits"), _flag(params, "hangup")
        if not (speech or digits or hangup):
            raise ApiError("give at least one of speech, digits, hangup", code=INVALID_PARAMS)
        record = self.service.live(call_id)
        if record is None or not record.provider_call_id:
            if await self.service.get_call(call_id) is None:
                raise CallNotFound(call_id)
            raise CallError("Call is not live", call_id=call_id, code=-32005)
        await self._inject(record.provider_call_id,
                           {"speech": speech, "digits": digits, "hangup": hangup})
        return {"success": True}

    def _call_and_message(self, params: Mapping[str, Any]) -> tuple[str, str]:
        call_id = _text(params, "callId", required="callId and message required")
        message = _text(params, "message", required="callId and message required")
        assert call_id is not None and message is not None
        return call_id, message


def _public(record: CallRecord) -> dict[str, Any]:
    """A record as users see it: the persisted shape without the dedupe bookkeeping."""
    data = record.to_json_dict()
    data.pop("processedEventIds", None)
    return data
