"""A TwiML interpreter for the simulated call: the verbs a voice agent uses, timed like a phone.

Supported: `Say`, `Play` (incl. `digits`), `Pause`, `Gather` (speech / dtmf, nested prompts,
`actionOnEmptyResult`), `Redirect`, `Hangup`, `Reject`, `Enqueue` (with a looping `waitUrl`),
`Connect`/`Stream` (bidirectional Media Streams), `Start`/`Stream` and `Stop`/`Stream`
(unidirectional forks). Anything else is skipped with a warning on the call.
"""

from __future__ import annotations

import asyncio
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from voicecall.testing.twilio.media import MediaStream, StreamError

if TYPE_CHECKING:
    from voicecall.testing.twilio.simulator import SimCall, TwilioSimulator

PARSE_ERROR = 12100
PLAY_SECONDS = 1.0  # how long one `<Play>` of a URL lasts (the audio is never fetched)
DIGIT_SECONDS = 0.1  # per DTMF key, for `<Play digits>` and for the callee keying a `<Gather>`
MAX_LOOPS = 1000  # `loop="0"` means "repeat", which Twilio caps at 1000
PROMPT_VERBS = ("Say", "Play", "Pause")


class TwimlError(Exception):
    """The document is not valid TwiML (Twilio error 12100)."""

    code = PARSE_ERROR


@dataclass(frozen=True, slots=True)
class Document:
    """One TwiML document and the URL it came from (None for inline `Twiml`)."""

    text: str
    url: str | None = None


@dataclass(slots=True)
class GatherRecord:
    """One `<Gather>` as the callee experienced it."""

    input: str
    action: str | None
    kind: str | None = None  # "speech" / "dtmf" / None when nothing was said
    value: str = ""
    timed_out: bool = False


Outcome = Document | str | None  # next document / terminal CallStatus / go on with the next verb


def parse_twiml(text: str) -> ET.Element:
    """The `<Response>` element of `text`, or `TwimlError`."""
    try:
        root = ET.fromstring(text.strip())
    except ET.ParseError as exc:
        raise TwimlError(f"Document parse failure: {exc}") from exc
    if root.tag != "Response":
        raise TwimlError(f"Document parse failure: root element is <{root.tag}>, not <Response>")
    return root


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None and value.strip() else default
    except ValueError:
        return default


def _float(value: str | None, default: float) -> float:
    try:
        return float(value) if value is not None and value.strip() else default
    except ValueError:
        return default


def _text(el: ET.Element) -> str:
    """The element's text with SSML children flattened and whitespace collapsed."""
    return " ".join("".join(el.itertext()).split())


def _loops(el: ET.Element) -> int:
    n = _int(el.get("loop"), 1)
    return MAX_LOOPS if n <= 0 else n


def resolve_url(doc: Document, target: str) -> str | None:
    """`target` made absolute against the document URL (None if relative without a base)."""
    target = target.strip()
    if not target:
        return doc.url
    if urlsplit(target).scheme:
        return target
    return urljoin(doc.url, target) if doc.url else None


def stream_url(doc: Document, target: str) -> str | None:
    """A `<Stream url>` made absolute; relative ones take the document's host with ws(s)://."""
    url = resolve_url(doc, target)
    if url is None:
        return None
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return parts._replace(scheme=scheme).geturl()


class TwimlInterpreter:
    """Runs TwiML documents on one simulated call until it ends; returns the final CallStatus."""

    def __init__(self, sim: TwilioSimulator) -> None:
        self.sim = sim
        self._verbs: dict[str, Callable[[SimCall, ET.Element, Document], Awaitable[Outcome]]] = {
            "Say": self._say, "Play": self._play, "Pause": self._pause, "Gather": self._gather,
            "Redirect": self._redirect, "Hangup": self._hangup, "Reject": self._reject,
            "Enqueue": self._enqueue, "Connect": self._connect, "Start": self._start,
            "Stop": self._stop, "Dial": self._dial,
        }

    async def run(self, call: SimCall, doc: Document) -> str:
        """Interpret `doc` and whatever documents it leads to; the terminal status of the call."""
        while True:
            call.documents.append(doc)
            try:
                root = parse_twiml(doc.text)
            except TwimlError as exc:
                call.error(PARSE_ERROR, str(exc))
                return "completed" if call.answered_at is not None else "failed"
            verbs = list(root)
            if call.answered_at is None:
                if verbs and verbs[0].tag == "Reject":
                    return self._rejected(call, verbs[0])
                self.sim.answer(call)
            outcome = await self.run_verbs(call, verbs, doc)
            if outcome is None:
                return "completed"
            if isinstance(outcome, str):
                return outcome
            doc = outcome

    async def run_verbs(self, call: SimCall, verbs: list[ET.Element], doc: Document) -> Outcome:
        """Run verbs in order; stop at the first that replaces the document or ends the call."""
        for el in verbs:
            handler = self._verbs.get(el.tag)
            if handler is None:
                call.warn(None, f"unsupported verb <{el.tag}> ignored")
                continue
            outcome = await handler(call, el, doc)
            if outcome is not None:
                return outcome
        return None

    async def _fetch(self, call: SimCall, url: str, method: str, extra: dict[str, str],
                     kind: str) -> Outcome:
        fetched = await self.sim.fetch(call, url, method, extra, kind)
        return fetched if fetched is not None else "completed"

    # -- prompts ---------------------------------------------------------------------------------
    async def _say(self, call: SimCall, el: ET.Element, doc: Document) -> Outcome:
        text = _text(el)
        for _ in range(_loops(el)):
            try:
                await self.sim.sleep(self.sim.say_seconds(text))
            except asyncio.CancelledError:
                call.interrupted.append(("say", text))
                raise
            call.record_say(text, el.get("voice"), el.get("language"))
        return None

    async def _play(self, call: SimCall, el: ET.Element, doc: Document) -> Outcome:
        digits = el.get("digits")
        if digits:
            try:
                await self.sim.sleep(DIGIT_SECONDS * len(digits))
            except asyncio.CancelledError:
                call.interrupted.append(("digits", digits))
                raise
            call.record_heard("digits", digits)
        url = _text(el)
        if url:
            for _ in range(_loops(el)):
                try:
                    await self.sim.sleep(PLAY_SECONDS)
                except asyncio.CancelledError:
                    call.interrupted.append(("play", url))
                    raise
                call.record_heard("play", url)
        return None

    async def _pause(self, call: SimCall, el: ET.Element, doc: Document) -> Outcome:
        await self.sim.sleep(max(0.0, _float(el.get("length"), 1.0)))
        return None

    # -- input -----------------------------------------------------------------------------------
    async def _gather(self, call: SimCall, el: ET.Element, doc: Document) -> Outcome:
        input_attr = " ".join((el.get("input") or "dtmf").split())
        inputs = set(input_attr.split())
        timeout = max(0.0, _float(el.get("timeout"), 5.0))
        method = (el.get("method") or "POST").upper()
        action = resolve_url(doc, el.get("action") or "")
        if action is None:
            call.warn(None, "<Gather> has no usable action URL (inline TwiML and relative/no action)")
        for child in el:
            if child.tag in PROMPT_VERBS:
                await self._verbs[child.tag](call, child, doc)
            else:
                call.warn(None, f"<{child.tag}> is not allowed inside <Gather>; ignored")
        record = GatherRecord(input=input_attr, action=action)
        call.gathers.append(record)
        got = await self._await_input(call, inputs, timeout)
        if got is None:
            record.timed_out = True
            if el.get("actionOnEmptyResult", "false").lower() == "true" and action is not None:
                return await self._fetch(call, action, method, {}, "gather")
            return None
        kind, value = got
        record.kind, record.value = kind, value
        if kind == "speech":
            extra = {"SpeechResult": value, "Confidence": f"{call.callee.confidence:g}",
                     "Language": el.get("language") or "en-US"}
        else:
            extra = self._digits_params(el, value)
            record.value = extra["Digits"]
        if action is None:
            return None
        return await self._fetch(call, action, method, extra, "gather")

    @staticmethod
    def _digits_params(el: ET.Element, keyed: str) -> dict[str, str]:
        finish = el.get("finishOnKey", "#")
        finished = ""
        digits = keyed
        if finish and finish in keyed:
            digits, finished = keyed[:keyed.index(finish)], finish
        num = _int(el.get("numDigits"), 0)
        if num > 0:
            digits = digits[:num]
        return {"Digits": digits, "FinishedOnKey": finished}

    async def _await_input(self, call: SimCall, inputs: set[str],
                           timeout_s: float) -> tuple[str, str] | None:
        """The callee's answer to a Gather, timed: it starts `reply_delay_s` after the prompt (or when
        injected later) and must start within `timeout`; speaking/keying then takes its own time."""
        loop = asyncio.get_running_loop()
        scale = self.sim.time_scale
        started = loop.time()
        while True:
            event = call.input_event
            event.clear()  # before peeking, so input injected after the peek still wakes us
            elapsed = (loop.time() - started) / scale if scale > 0 else 0.0
            picked = call.peek_input(inputs)
            if picked is not None:
                begin = max(elapsed, call.callee.reply_delay_s)
                if begin <= timeout_s:
                    kind, value = picked
                    call.consume_input(kind)
                    speaking = (self.sim.say_seconds(value) if kind == "speech"
                                else DIGIT_SECONDS * len(value))
                    await self.sim.sleep(begin - elapsed + speaking)
                    return picked
            remaining = timeout_s - elapsed
            if remaining <= 0:
                return None
            try:
                await asyncio.wait_for(event.wait(), remaining * scale)
            except TimeoutError:
                return None

    # -- flow ------------------------------------------------------------------------------------
    async def _redirect(self, call: SimCall, el: ET.Element, doc: Document) -> Outcome:
        url = resolve_url(doc, _text(el))
        if url is None:
            call.error(21205, "<Redirect> URL cannot be resolved (relative URL in inline TwiML)")
            return "completed"
        return await self._fetch(call, url, (el.get("method") or "POST").upper(), {}, "redirect")

    async def _hangup(self, call: SimCall, el: ET.Element, doc: Document) -> Outcome:
        return "completed"

    async def _reject(self, call: SimCall, el: ET.Element, doc: Document) -> Outcome:
        call.warn(None, "<Reject> after the call was answered acts as <Hangup>")
        return "completed"

    @staticmethod
    def _rejected(call: SimCall, el: ET.Element) -> str:
        reason = el.get("reason") or "rejected"
        call.record_heard("reject", reason)
        if call.direction != "inbound":
            call.warn(None, "<Reject> is only meant for inbound calls")
        return "busy" if reason == "busy" else "no-answer"

    async def _dial(self, call: SimCall, el: ET.Element, doc: Document) -> Outcome:
        """Ring the number (its scripted callee answers, is busy, or does not answer within
        `timeout`), bridge the call until that person hangs up, then fetch `action` with
        `DialCallStatus` (or go on with the next verb)."""
        from voicecall.testing.twilio.simulator import DialRecord

        number_el = next((child for child in el if child.tag == "Number"), None)
        number = _text(number_el if number_el is not None else el)
        record = DialRecord(number, el.get("callerId"))
        call.dials.append(record)
        call.record_heard("dial", number)
        person = self.sim.callee_for(number)
        timeout = max(1.0, _float(el.get("timeout"), 30.0))
        if person.outcome == "answer" and person.answer_after_s <= timeout:
            await self.sim.sleep(person.answer_after_s)
            record.status = "in-progress"
            if number_el is not None and number_el.get("statusCallback") and "answered" in (
                    number_el.get("statusCallbackEvent") or "").split():
                url = resolve_url(doc, number_el.get("statusCallback") or "")
                if url is not None:
                    params = {**self.sim.params_of(call), "CallStatus": "in-progress",
                              "ParentCallSid": call.sid}
                    await self.sim.notify(call, "dial-status", url,
                                          number_el.get("statusCallbackMethod") or "POST", params)
            talk = person.hangup_after_s if person.hangup_after_s is not None else 5.0
            await self.sim.sleep(talk)
            record.status, record.duration_s = "completed", round(talk)
        elif person.outcome in ("busy", "failed"):
            await self.sim.sleep(min(person.answer_after_s, timeout))
            record.status = person.outcome
        else:
            await self.sim.sleep(timeout)
            record.status = "no-answer"
        action = resolve_url(doc, el.get("action") or "")
        if action is None:
            return None
        extra = {"DialCallStatus": record.status, "DialCallSid": "CA" + secrets.token_hex(16),
                 "DialCallDuration": str(record.duration_s)}
        return await self._fetch(call, action, (el.get("method") or "POST").upper(), extra, "dial")

    async def _enqueue(self, call: SimCall, el: ET.Element, doc: Document) -> Outcome:
        name = _text(el)
        call.enqueued = name
        call.record_heard("enqueue", name)
        wait_target = el.get("waitUrl")
        method = (el.get("waitUrlMethod") or "POST").upper()
        queue_sid = "QU" + secrets.token_hex(16)
        loop = asyncio.get_running_loop()
        started = loop.time()
        wait_url = resolve_url(doc, wait_target) if wait_target else None
        if wait_target and wait_url is None:
            call.warn(None, "<Enqueue waitUrl> cannot be resolved; waiting in silence")
        while wait_url is not None:
            round_started = loop.time()
            queued_s = (round_started - started) / self.sim.time_scale if self.sim.time_scale > 0 else 0.0
            extra = {"QueueSid": queue_sid, "QueuePosition": "1", "QueueTime": str(int(queued_s)),
                     "AvgQueueTime": "0", "CurrentQueueSize": "1", "MaxQueueSize": "100"}
            hold = await self.sim.fetch(call, wait_url, method, extra, "wait")
            if hold is None:
                break
            try:
                verbs = list(parse_twiml(hold.text))
            except TwimlError as exc:
                call.error(PARSE_ERROR, f"waitUrl: {exc}")
                break
            for verb in verbs:
                if verb.tag in PROMPT_VERBS:
                    await self._verbs[verb.tag](call, verb, hold)
                else:
                    call.warn(None, f"<{verb.tag}> in a waitUrl document is not simulated; skipped")
            if loop.time() - round_started < 0.05:  # an instant hold document: don't hammer the app
                await asyncio.sleep(0.2)
        await asyncio.Event().wait()  # in the queue until the call is hung up or redirected
        return None

    # -- streams ---------------------------------------------------------------------------------
    def _stream(self, call: SimCall, el: ET.Element, doc: Document, *,
                bidirectional: bool) -> MediaStream | None:
        target = el.get("url") or ""
        url = stream_url(doc, target)
        if url is None or urlsplit(url).scheme not in ("ws", "wss"):
            call.error(31923, f"<Stream url={target!r}> is not a ws:// or wss:// URL")
            return None
        if urlsplit(url).query:
            call.warn(None, "<Stream url> has a query string; Twilio does not allow one (use <Parameter>)")
        params = {p.get("name") or "": p.get("value") or "" for p in el.iter("Parameter")}
        return self.sim.new_stream(call, url, custom_parameters=params, name=el.get("name"),
                                   bidirectional=bidirectional,
                                   track=el.get("track") or "inbound_track",
                                   status_callback=resolve_url(doc, el.get("statusCallback") or "")
                                   if el.get("statusCallback") else None,
                                   status_callback_method=(el.get("statusCallbackMethod") or "POST").upper())

    async def _connect(self, call: SimCall, el: ET.Element, doc: Document) -> Outcome:
        ran = False
        for child in el:
            if child.tag != "Stream":
                call.warn(None, f"<Connect><{child.tag}> is not simulated; skipped")
                continue
            if ran:
                call.warn(None, "only the first <Stream> in <Connect> is used")
                continue
            ran = True
            stream = self._stream(call, child, doc, bidirectional=True)
            if stream is None:
                continue
            if not call.callee.open_streams:
                await self.sim.hold_stream(call, stream)
                continue
            try:
                await self.sim.run_stream(call, stream)
            except StreamError as exc:
                call.error(exc.code, exc.message)
        action = el.get("action")
        if action:
            url = resolve_url(doc, action)
            if url is None:
                call.warn(None, "<Connect action> cannot be resolved")
                return None
            return await self._fetch(call, url, (el.get("method") or "POST").upper(), {}, "connect")
        return None

    async def _start(self, call: SimCall, el: ET.Element, doc: Document) -> Outcome:
        for child in el:
            if child.tag != "Stream":
                call.warn(None, f"<Start><{child.tag}> is not simulated; skipped")
                continue
            stream = self._stream(call, child, doc, bidirectional=False)
            if stream is not None:
                self.sim.start_background_stream(call, stream)
        return None

    async def _stop(self, call: SimCall, el: ET.Element, doc: Document) -> Outcome:
        for child in el:
            if child.tag == "Stream":
                await self.sim.stop_background_stream(call, child.get("name"))
            else:
                call.warn(None, f"<Stop><{child.tag}> is not simulated; skipped")
        return None


__all__ = ["Document", "GatherRecord", "TwimlError", "TwimlInterpreter", "parse_twiml", "resolve_url"]
