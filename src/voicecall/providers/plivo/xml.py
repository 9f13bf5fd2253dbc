"""Plivo XML documents the gateway answers with (the `MarkupDialect` of the shared call flows).

Element and attribute names are Plivo's camelCase; no XML declaration, as Plivo's SDK writes.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from voicecall.providers.voices import polly_voice

__all__ = ["PlivoXmlDialect", "plivo_voice"]

HOLD_WAIT_S = 60
LISTEN_TIMEOUT_S = 60  # GetInput's executionTimeout maximum
SPEECH_END_TIMEOUT = "auto"
QUEUE_WAIT_S = 3600

def plivo_voice(voice: str | None) -> str:
    """A TTS voice name as a Plivo `<Speak voice>`: `WOMAN` and `MAN` as they are, Polly and
    OpenAI voices as for Twilio (D41), anything else `WOMAN`."""
    if voice in ("WOMAN", "MAN"):
        return voice
    return polly_voice(voice) or "WOMAN"


def _element(tag: str, body: str | None = None, **attrs: str | int | None) -> str:
    text = "".join(f" {k}={quoteattr(str(v))}" for k, v in attrs.items() if v is not None)
    return f"<{tag}{text}/>" if body is None else f"<{tag}{text}>{escape(body)}</{tag}>"


def _response(*elements: str) -> str:
    return f"<Response>{''.join(elements)}</Response>"


def _redirect(url: str) -> str:
    return _element("Redirect", url, method="POST")


class PlivoXmlDialect:
    """The documents of the shared markup call flows, in Plivo XML."""

    content_type = "text/xml"

    def empty(self) -> str:
        return _response()

    def hangup(self) -> str:
        return _response(_element("Hangup"))

    def reject(self) -> str:
        return _response(_element("Hangup", reason="rejected"))

    def redirect(self, url: str) -> str:
        return _response(_redirect(url))

    def hold(self, next_url: str) -> str:
        """Wait, then come back (a transfer replaces this document whenever the gateway speaks)."""
        return _response(_element("Wait", length=HOLD_WAIT_S), _redirect(next_url))

    def speak(self, text: str, *, voice: str, language: str, played_url: str) -> str:
        """Speak, then request `played_url`: the gateway learns the words have been heard."""
        return _response(_element("Speak", text, voice=voice, language=language),
                         _redirect(played_url))

    def play_digits(self, digits: str, played_url: str) -> str:
        return _response(_element("DTMF", digits), _redirect(played_url))

    def listen(self, action_url: str, again_url: str, *, language: str) -> str:
        """Speech `GetInput` posting to `action_url` (its answer takes over the call); on silence
        Plivo falls through to the redirect, which re-arms the listen."""
        get_input = _element("GetInput", "", action=action_url, method="POST", inputType="speech",
                             executionTimeout=LISTEN_TIMEOUT_S, speechEndTimeout=SPEECH_END_TIMEOUT,
                             language=language, redirect="true")
        return _response(get_input, _redirect(again_url))

    def stream(self, stream_url: str, token: str) -> str:
        """A bidirectional audio stream that keeps the call up; the token (alphanumeric, as
        Plivo requires) rides in `extraHeaders`, which Plivo repeats in the `start` message."""
        return _response(_element("Stream", stream_url, bidirectional="true", keepCallAlive="true",
                                  audioTrack="inbound", contentType="audio/x-mulaw;rate=8000",
                                  extraHeaders=f"token={token}"))

    def queue(self, hold_music_url: str) -> str:
        """A second inbound caller while the stream is busy waits (a transfer takes them off
        hold when the stream frees up); Plivo has no queue verb, so no hold-music URL is used."""
        return _response(_element("Speak", "Please hold while we connect you."),
                         _element("Wait", length=QUEUE_WAIT_S))

    def dial(self, number: str, *, caller_id: str, timeout_s: int, action_url: str,
             callback_url: str) -> str:
        """Put the call through to `number`: `callback_url` hears the person answer
        (`DialAction=answer`), `action_url` gets `DialStatus` when the leg is over (D46)."""
        number_el = _element("Number", number)
        dial = (f"<Dial action={quoteattr(action_url)} method=\"POST\" callerId={quoteattr(caller_id)}"
                f" timeout=\"{timeout_s}\" callbackUrl={quoteattr(callback_url)}"
                f" callbackMethod=\"POST\" redirect=\"true\">{number_el}</Dial>")
        return _response(dial)

    def hold_music(self) -> str:
        return _response(_element("Wait", length=QUEUE_WAIT_S))
