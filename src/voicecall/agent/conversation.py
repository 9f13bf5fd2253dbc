"""Automatic replies to caller turns: ask the responder, speak each sentence as soon as it is
complete, drop replies the caller has talked over, and remember the exchange in the session."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from voicecall.agent.responder import Responder, ResponderError, TurnContext
from voicecall.calls.model import CallRecord
from voicecall.providers.streams import PlaybackResult
from voicecall.service import CallError, CallService
from voicecall.shared.clock import now_ms

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReplyDefaults:
    """Responder settings for calls whose dialed number has no `numbers` route of its own."""

    agent_id: str = "main"
    model: str | None = None
    system_prompt: str | None = None
    timeout_s: float = 30.0
    history_turns: int = 20



class AutoReply:
    """The call service's `TurnHandler`: one reply per caller turn, newest turn wins."""

    def __init__(self, service: CallService, responder: Responder, defaults: ReplyDefaults) -> None:
        self.service = service
        self.responder = responder
        self.defaults = defaults

    def _context(self, call: CallRecord, text: str, history: list[dict[str, Any]]) -> TurnContext:
        route: dict[str, Any] = dict(call.metadata.get("route") or {})
        d = self.defaults
        timeout_ms = route.get("responseTimeoutMs")
        return TurnContext(
            call_id=call.call_id, direction=call.direction, from_=call.from_, to=call.to,
            session_key=call.session_key or call.call_id,
            agent_id=str(route.get("agentId") or d.agent_id), user_text=text,
            transcript=tuple(call.transcript),
            history=tuple({"role": str(m["role"]), "content": str(m["content"])} for m in history),
            model=route.get("responseModel") or d.model,
            system_prompt=route.get("responseSystemPrompt") or d.system_prompt,
            timeout_s=timeout_ms / 1000 if isinstance(timeout_ms, int) else d.timeout_s,
        )

    async def on_caller_turn(self, call: CallRecord, text: str, generation: int, heard_at: int) -> None:
        service, cid = self.service, call.call_id
        store = service.store
        key = call.session_key or cid
        history = await store.session_messages(key)
        keep = self.defaults.history_turns * 2
        ctx = self._context(call, text, history[-keep:] if keep else [])
        spoken: list[str] = []
        turn: dict[str, Any] = {"callId": cid, "kind": "auto", "transcriptAt": heard_at}
        speech_end = service.speech_ended_at(cid, heard_at - 60_000)
        if speech_end is not None and speech_end <= heard_at:
            turn["speechEndedAt"] = speech_end
        # On a media stream each sentence is queued as soon as it is complete, so its synthesis
        # overlaps the playback of the one before; carrier speech takes one sentence at a time.
        pipelined = service.streams_audio(call)
        queued: list[asyncio.Task[PlaybackResult]] = []
        interrupted = False
        try:
            async for sentence in self.responder.reply(ctx):
                if interrupted or not service.is_current(cid, generation):
                    log.info("call %s: caller spoke again; dropping the older reply", cid)
                    interrupted = True
                    break
                if "replyReadyAt" not in turn:
                    turn["replyReadyAt"] = now_ms()
                if pipelined:
                    queued.append(asyncio.ensure_future(service.speak(cid, sentence)))
                    continue
                interrupted = not self._heard(await service.speak(cid, sentence), spoken, turn)
        except ResponderError as exc:
            log.warning("call %s: no reply spoken: %s", cid, exc)
        except CallError as exc:
            log.info("call %s: reply interrupted: %s", cid, exc)
            interrupted = True
        finally:
            for task in queued:  # sentences already queued play (or are skipped by a barge-in)
                try:
                    if not self._heard(await task, spoken, turn):
                        interrupted = True
                except CallError as exc:
                    log.info("call %s: reply interrupted: %s", cid, exc)
                    interrupted = True
            messages = [{"role": "user", "content": text}]
            if spoken:
                messages.append({"role": "assistant", "content": " ".join(spoken)})
            await store.append_session(key, messages)
        if "firstAudioAt" in turn:
            turn["turnLatencyMs"] = turn["firstAudioAt"] - heard_at
            turn["spokenAt"] = now_ms()
            await service.record_turn(cid, turn)
        if not interrupted and service.is_current(cid, generation):
            await service.listen(cid)

    @staticmethod
    def _heard(result: PlaybackResult, spoken: list[str], turn: dict[str, Any]) -> bool:
        """Keep what the caller heard of one sentence; False once a barge-in cut the reply."""
        if result.played_text:
            spoken.append(result.played_text)
        if "firstAudioAt" not in turn and result.played_text:
            if result.first_tts_byte_at is not None:
                turn["firstTtsByteAt"] = int(result.first_tts_byte_at)
            turn["firstAudioAt"] = int(result.first_frame_at or turn.get("replyReadyAt") or now_ms())
        return not (result.interrupted or result.skipped)
