"""Automatic replies to caller turns: ask the responder, speak each sentence as soon as it is
complete, drop replies the caller has talked over, and remember the exchange in the session.
A responder that cannot answer at all (no model credentials) gets inbound callers a spoken
fallback and a `failed` end instead of silence (docs/decisions.md D100)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from voicecall.agent.responder import Responder, ResponderError, ResponderUnavailable, TurnContext
from voicecall.calls.model import CallRecord, EndReason
from voicecall.providers.streams import PlaybackResult
from voicecall.service import CallError, CallService
from voicecall.shared.clock import now_ms
from voicecall.shared.error_counts import count_error

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReplyDefaults:
    """Responder settings for calls whose dialed number has no `numbers` route of its own."""

    agent_id: str = "main"
    model: str | None = None
    system_prompt: str | None = None
    timeout_s: float = 30.0
    history_turns: int = 20
    fallback_message: str = "Sorry, I can't take your call right now. Please try again later. Goodbye."


class TurnControls:
    """`CallControls` for one turn: what the responder's built-in tools do on the call."""

    def __init__(self, service: CallService, call_id: str) -> None:
        self.service = service
        self.call_id = call_id
        self.end_detail: str | None = None

    async def send_dtmf(self, digits: str) -> None:
        await self.service.send_dtmf(self.call_id, digits)

    def transfer_targets(self) -> tuple[str, ...]:
        return self.service.settings.transfer.allowed_numbers

    def transfer(self, to: str, message: str | None) -> str:
        # In the background: the transfer waits for this turn's speech to finish first.
        return self.service.request_transfer(self.call_id, to, message, by_model=True)

    def info(self) -> dict[str, Any]:
        record = self.service.live(self.call_id)
        if record is None:
            return {"callId": self.call_id, "state": "ended"}
        now = now_ms()
        return {"callId": record.call_id, "direction": record.direction, "mode": record.mode,
                "from": record.from_, "to": record.to, "state": record.state.value,
                "startedAt": record.started_at, "answeredAt": record.answered_at,
                "durationSeconds": round((now - (record.answered_at or record.started_at)) / 1000)}

    def end_after_reply(self, detail: str) -> None:
        self.end_detail = detail

    async def log_tool(self, text: str) -> None:
        await self.service.log_tool(self.call_id, text)



class AutoReply:
    """The call service's `TurnHandler`: one reply per caller turn, newest turn wins."""

    def __init__(self, service: CallService, responder: Responder, defaults: ReplyDefaults) -> None:
        self.service = service
        self.responder = responder
        self.defaults = defaults

    def _model(self, call: CallRecord) -> str | None:
        route: dict[str, Any] = dict(call.metadata.get("route") or {})
        return route.get("responseModel") or self.defaults.model

    def problem(self, call: CallRecord) -> str | None:
        """Why this call's turns cannot be answered at all (e.g. no API key); None when they can."""
        check = getattr(self.responder, "problem", None)
        return check(self._model(call)) if check is not None else None

    async def on_greeted(self, call: CallRecord) -> None:
        """Listen for the caller, unless no reply can be made: then an inbound caller hears the
        fallback and the call ends `failed`; an outbound call is left to `continue`."""
        problem = self.problem(call)
        if problem is None:
            await self.service.listen(call.call_id)
        elif call.direction == "inbound":
            await self._give_up(call, problem)
        else:
            log.warning("call %s: no automatic replies (%s); the call is driven by continue",
                        call.call_id, problem)

    async def _give_up(self, call: CallRecord, problem: str) -> None:
        cid = call.call_id
        log.warning("call %s: cannot answer the caller: %s", cid, problem)
        try:
            await self.service.speak(cid, self.defaults.fallback_message)
        except CallError as exc:
            log.info("call %s: fallback not said: %s", cid, exc)
        if self.service.live(cid) is not None:
            await self.service.end(cid, EndReason.FAILED, detail=f"no automatic reply: {problem}")

    def _context(self, call: CallRecord, text: str, history: list[dict[str, Any]],
                 controls: TurnControls) -> TurnContext:
        route: dict[str, Any] = dict(call.metadata.get("route") or {})
        d = self.defaults
        timeout_ms = route.get("responseTimeoutMs")
        return TurnContext(
            call_id=call.call_id, direction=call.direction, from_=call.from_, to=call.to,
            session_key=call.session_key or call.call_id,
            agent_id=str(route.get("agentId") or d.agent_id), user_text=text,
            transcript=tuple(call.transcript),
            history=tuple({"role": str(m["role"]), "content": str(m["content"])} for m in history),
            model=self._model(call),
            system_prompt=route.get("responseSystemPrompt") or d.system_prompt,
            timeout_s=timeout_ms / 1000 if isinstance(timeout_ms, int) else d.timeout_s,
            controls=controls,
        )

    async def on_caller_turn(self, call: CallRecord, text: str, generation: int, heard_at: int) -> None:
        """Answer one caller turn: speak the reply, remember what the caller heard of it, record
        the turn's timings, then listen again (or end the call when a tool asked to)."""
        service, cid = self.service, call.call_id
        key = call.session_key or cid
        controls = TurnControls(service, cid)
        ctx = await self._turn_context(call, text, key, controls)
        # On a media stream each sentence is queued as soon as it is complete, so its synthesis
        # overlaps the playback of the one before; carrier speech takes one sentence at a time.
        reply = _Reply(cid, self._turn_record(cid, heard_at), pipelined=service.streams_audio(call))
        try:
            gave_up = await self._speak_reply(call, ctx, generation, reply)
        finally:
            await reply.settle()
            messages = [{"role": "user", "content": text}]
            if reply.spoken:
                messages.append({"role": "assistant", "content": " ".join(reply.spoken)})
            await service.store.append_session(key, messages)
        if gave_up:
            return
        await self._record_turn(cid, reply.turn, heard_at)
        await self._after_reply(cid, generation, controls, reply.interrupted)

    async def _turn_context(self, call: CallRecord, text: str, key: str,
                            controls: TurnControls) -> TurnContext:
        """The responder's view of this turn, with the last `history_turns` exchanges of the session."""
        history = await self.service.store.session_messages(key)
        keep = self.defaults.history_turns * 2
        return self._context(call, text, history[-keep:] if keep else [], controls)

    def _turn_record(self, cid: str, heard_at: int) -> dict[str, Any]:
        """The turn's timing record so far: when the caller was transcribed and stopped speaking."""
        turn: dict[str, Any] = {"callId": cid, "kind": "auto", "transcriptAt": heard_at}
        speech_end = self.service.speech_ended_at(cid, heard_at - 60_000)
        if speech_end is not None and speech_end <= heard_at:
            turn["speechEndedAt"] = speech_end
        return turn

    async def _speak_reply(self, call: CallRecord, ctx: TurnContext, generation: int,
                           reply: _Reply) -> bool:
        """Speak the responder's sentences; True when the call was given up (no reply possible)."""
        cid = call.call_id
        try:
            await self._speak_sentences(ctx, generation, reply)
        except ResponderUnavailable as exc:
            count_error("model")
            if call.direction == "inbound":
                await self._give_up(call, str(exc))
                return True
            log.warning("call %s: no reply spoken: %s", cid, exc)
        except ResponderError as exc:
            count_error("model")
            log.warning("call %s: no reply spoken: %s", cid, exc)
        except CallError as exc:
            log.info("call %s: reply interrupted: %s", cid, exc)
            reply.interrupted = True
        return False

    async def _speak_sentences(self, ctx: TurnContext, generation: int, reply: _Reply) -> None:
        """Say (or queue) each sentence as it forms; stop once the caller has spoken again."""
        service, cid = self.service, reply.call_id
        async for sentence in self.responder.reply(ctx):
            if reply.interrupted or not service.is_current(cid, generation):
                log.info("call %s: caller spoke again; dropping the older reply", cid)
                reply.interrupted = True
                break
            if "replyReadyAt" not in reply.turn:
                reply.turn["replyReadyAt"] = now_ms()
            if reply.pipelined:
                reply.queued.append(asyncio.ensure_future(service.speak(cid, sentence)))
                continue
            reply.interrupted = not reply.heard(await service.speak(cid, sentence))

    async def _record_turn(self, cid: str, turn: dict[str, Any], heard_at: int) -> None:
        """Store the turn's timings once some of the reply was heard."""
        if "firstAudioAt" in turn:
            turn["turnLatencyMs"] = turn["firstAudioAt"] - heard_at
            turn["spokenAt"] = now_ms()
            await self.service.record_turn(cid, turn)

    async def _after_reply(self, cid: str, generation: int, controls: TurnControls,
                           interrupted: bool) -> None:
        """End the call if a tool asked to; else listen, unless a newer turn took over."""
        service = self.service
        if controls.end_detail is not None:
            if service.live(cid) is not None:
                await service.end(cid, EndReason.HANGUP_BOT, detail=controls.end_detail)
            return
        if not interrupted and service.is_current(cid, generation):
            await service.listen(cid)


@dataclass(slots=True)
class _Reply:
    """One reply in progress: what the caller heard of it, its timings and queued sentences."""

    call_id: str
    turn: dict[str, Any]
    pipelined: bool
    spoken: list[str] = field(default_factory=list)
    queued: list[asyncio.Task[PlaybackResult]] = field(default_factory=list)
    interrupted: bool = False

    def heard(self, result: PlaybackResult) -> bool:
        """Keep what the caller heard of one sentence; False once a barge-in cut the reply."""
        if result.played_text:
            self.spoken.append(result.played_text)
        if "firstAudioAt" not in self.turn and result.played_text:
            if result.first_tts_byte_at is not None:
                self.turn["firstTtsByteAt"] = int(result.first_tts_byte_at)
            first_audio = result.first_frame_at or self.turn.get("replyReadyAt") or now_ms()
            self.turn["firstAudioAt"] = int(first_audio)
        return not (result.interrupted or result.skipped)

    async def settle(self) -> None:
        """Wait for the queued sentences: they play, or a barge-in skips them."""
        for task in self.queued:
            try:
                if not self.heard(await task):
                    self.interrupted = True
            except CallError as exc:
                log.info("call %s: reply interrupted: %s", self.call_id, exc)
                self.interrupted = True
