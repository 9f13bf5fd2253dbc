"""Runs Plivo XML as Plivo does, timed like a phone call: `Speak`, `Play`, `Wait`, `DTMF`,
`GetInput` (speech and digits, with nested prompts), `Redirect`, `Hangup`, `Dial`, `Stream`.

A document runs element by element; it ends by running out (Plivo hangs up, cause 4010), a
`Hangup`, or handing the call to another document (`Redirect`, a `GetInput` action with
`redirect="true"`). Each element is checked against what Plivo accepts; a bad document ends the
call as Plivo does (cause 8011, "Invalid Answer XML")."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import TYPE_CHECKING

from voicecall.testing.plivo.call import PlivoCall, SpeakRecord

if TYPE_CHECKING:
    from voicecall.testing.plivo.simulator import PlivoSimulator

__all__ = ["Handoff", "PlivoXmlError", "XmlInterpreter", "parse_plivo_xml"]

PLAY_S = 1.0
DIGIT_S = 0.1
GETINPUT_CHILDREN = frozenset({"Speak", "Play"})
INPUT_TYPES = frozenset({"dtmf", "speech"})


class PlivoXmlError(ValueError):
    """A document Plivo would refuse."""


@dataclass(frozen=True, slots=True)
class Handoff:
    """How a document finished: `next_url` to fetch and run, or `hangup` with its cause."""

    next_url: str | None = None
    next_xml: str | None = None
    hangup: str | None = None


def parse_plivo_xml(text: str) -> ET.Element:
    """The `<Response>` root of a Plivo XML document; PlivoXmlError when Plivo would refuse it."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise PlivoXmlError(f"not XML: {exc}") from None
    if root.tag != "Response":
        raise PlivoXmlError(f"the root element is <{root.tag}>, not <Response>")
    return root


def _seconds(el: ET.Element, name: str, default: float, low: float, high: float) -> float:
    raw = el.get(name)
    if raw is None or raw == "auto":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise PlivoXmlError(f"<{el.tag} {name}> must be a number, not {raw!r}") from None
    if not low <= value <= high:
        raise PlivoXmlError(f"<{el.tag} {name}> must be within {low:g}..{high:g}, not {raw}")
    return value


class XmlInterpreter:
    """Runs documents for one simulator (timing, callbacks and streams come from it)."""

    def __init__(self, sim: PlivoSimulator) -> None:
        self.sim = sim

    async def run(self, call: PlivoCall, text: str) -> Handoff:
        call.documents.append(text)
        try:
            root = parse_plivo_xml(text)
        except PlivoXmlError as exc:
            call.errors.append(f"8011 Invalid Answer XML: {exc}")
            return Handoff(hangup="INVALID_ANSWER_XML")
        for el in root:
            handler = getattr(self, f"_{el.tag.lower()}", None)
            if handler is None:
                call.errors.append(f"8011 Invalid Answer XML: unknown element <{el.tag}>")
                return Handoff(hangup="INVALID_ANSWER_XML")
            try:
                handoff: Handoff | None = await handler(call, el)
            except PlivoXmlError as exc:
                call.errors.append(f"8011 Invalid Answer XML: {exc}")
                return Handoff(hangup="INVALID_ANSWER_XML")
            if handoff is not None:
                return handoff
        return Handoff(hangup="END_OF_XML_INSTRUCTIONS")

    # -- prompts ---------------------------------------------------------------------------------
    async def _speak(self, call: PlivoCall, el: ET.Element) -> None:
        text = (el.text or "").strip()
        if len(text) > 3000:
            raise PlivoXmlError("<Speak> holds more than 3000 characters")
        await self.sim.sleep(self.sim.speak_seconds(text))
        call.spoken.append(SpeakRecord(text, el.get("voice"), el.get("language")))
        call.hear("speak", text)

    async def _play(self, call: PlivoCall, el: ET.Element) -> None:
        await self.sim.sleep(PLAY_S)
        call.hear("play", (el.text or "").strip())

    async def _wait(self, call: PlivoCall, el: ET.Element) -> None:
        await self.sim.sleep(_seconds(el, "length", 1, 1, 86400))

    async def _dtmf(self, call: PlivoCall, el: ET.Element) -> None:
        digits = (el.text or "").strip()
        if not digits or any(c not in "0123456789*#wW" for c in digits):
            raise PlivoXmlError(f"<DTMF> digits must be 0-9 * # w W, not {digits!r}")
        await self.sim.sleep(DIGIT_S * len(digits))
        call.hear("digits", digits)

    # -- control ---------------------------------------------------------------------------------
    async def _redirect(self, call: PlivoCall, el: ET.Element) -> Handoff:
        url = (el.text or "").strip()
        if not url:
            raise PlivoXmlError("<Redirect> has no URL")
        return Handoff(next_url=url)

    async def _hangup(self, call: PlivoCall, el: ET.Element) -> Handoff:
        reason = el.get("reason")
        if reason not in (None, "rejected", "busy"):
            raise PlivoXmlError(f"<Hangup reason> must be rejected or busy, not {reason!r}")
        return Handoff(hangup={"rejected": "CALL_REJECTED", "busy": "USER_BUSY"}.get(
            reason or "", "NORMAL_CLEARING"))

    async def _dial(self, call: PlivoCall, el: ET.Element) -> Handoff | None:
        """Ring the first number (its scripted far end answers, is busy, or lets `timeout`
        pass), bridge until that person hangs up; `callbackUrl` hears `DialAction=answer`, then
        `action` gets `DialStatus` and its answer takes over the call."""
        numbers = [(n.text or "").strip() for n in el if n.tag in ("Number", "User")]
        if not numbers:
            raise PlivoXmlError("<Dial> has no <Number> or <User>")
        call.dialed.extend(numbers)
        call.changed()
        person = self.sim.callee_for(numbers[0])
        timeout = _seconds(el, "timeout", 30, 1, 300)
        callback = el.get("callbackUrl")
        if person.outcome == "answer" and person.answer_after_s <= timeout:
            await self.sim.sleep(person.answer_after_s)
            if callback:
                await self.sim.callback(call, "dial-callback", callback,
                                        {"DialAction": "answer", "DialBLegStatus": "answer",
                                         "DialBLegTo": numbers[0]})
            talk = person.hangup_after_s if person.hangup_after_s is not None else 5.0
            await self.sim.sleep(talk)
            status, duration = "completed", round(talk)
        elif person.outcome in ("busy", "failed"):
            await self.sim.sleep(min(person.answer_after_s, timeout))
            status, duration = person.outcome, 0
        else:
            await self.sim.sleep(timeout)
            status, duration = "no-answer", 0
        call.dial_results.append((numbers[0], status))
        call.changed()
        action = el.get("action")
        if not action:
            return None
        body = await self.sim.callback(call, "dial-action", action, {
            "DialStatus": status, "DialBLegDuration": str(duration), "DialBLegTo": numbers[0]})
        if (el.get("redirect") or "true").lower() == "true":
            return Handoff(next_xml=body or "<Response></Response>")
        return None

    async def _stream(self, call: PlivoCall, el: ET.Element) -> None:
        await self.sim.run_stream(call, el)

    async def _getinput(self, call: PlivoCall, el: ET.Element) -> Handoff | None:
        action = el.get("action")
        if not action:
            raise PlivoXmlError("<GetInput> needs an action URL")
        kinds = set((el.get("inputType") or "dtmf").split())
        if not kinds or not kinds <= INPUT_TYPES:
            raise PlivoXmlError(f"<GetInput inputType> must be dtmf and/or speech, not "
                                f"{el.get('inputType')!r}")
        timeout = _seconds(el, "executionTimeout", 15, 5, 60)
        call.get_inputs.append(dict(el.attrib))
        for child in el:
            if child.tag not in GETINPUT_CHILDREN:
                raise PlivoXmlError(f"<GetInput> may hold Speak and Play, not <{child.tag}>")
            await getattr(self, f"_{child.tag.lower()}")(call, child)
        answer = await self._await_input(call, kinds, timeout)
        if answer is None:
            return None  # no input: Plivo goes on with the next element
        kind, value = answer
        params = {"InputType": kind, "Digits": value if kind == "dtmf" else "",
                  "Speech": value if kind == "speech" else ""}
        if kind == "speech":
            params["SpeechConfidenceScore"] = f"{call.callee.confidence:.2f}"
        body = await self.sim.callback(call, "action", action, params)
        if (el.get("redirect") or "true").lower() == "true":
            return Handoff(next_xml=body or "<Response></Response>")
        return None

    async def _await_input(self, call: PlivoCall, kinds: set[str],
                           execution_s: float) -> tuple[str, str] | None:
        """The far end's answer: after its reply delay when it has one ready, else whatever it
        says before the execution timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.sim.scaled(execution_s)
        while True:
            call.input_arrived.clear()
            answer = call.next_input(kinds)
            if answer is not None:
                await self.sim.sleep(call.callee.reply_delay_s)
                return answer
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                await asyncio.wait_for(call.input_arrived.wait(), remaining)
            except TimeoutError:
                return None

