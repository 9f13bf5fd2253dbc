"""TwiML documents the gateway answers with, and the voice mapping for carrier-native speech."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from voicecall.providers import voices

HEADER = '<?xml version="1.0" encoding="UTF-8"?>'
HOLD_PAUSE_S = 60
LISTEN_TIMEOUT_S = 120

def polly_voice(voice: str | None) -> str:
    """Map a TTS voice name onto a Twilio `<Say>` voice: `Polly.*` and `Google.*` names as they
    are, OpenAI voice names to a similar Polly voice, anything else to Polly.Joanna (D41)."""
    if voice and voice.startswith("Google."):
        return voice
    return voices.polly_voice(voice) or "Polly.Joanna"


def _attrs(**attrs: str | int | None) -> str:
    """Attributes in alphabetical order (as the SDK writes them), values escaped."""
    return "".join(f" {k}={quoteattr(str(v))}" for k, v in sorted(attrs.items()) if v is not None)


def document(*verbs: str) -> str:
    return f"{HEADER}<Response>{''.join(verbs)}</Response>"


def say(text: str, *, voice: str, language: str = "en-US") -> str:
    return f"<Say{_attrs(voice=voice, language=language)}>{escape(text)}</Say>"


def redirect(url: str) -> str:
    return f'<Redirect method="POST">{escape(url)}</Redirect>'


def empty() -> str:
    return document()


def hold(next_url: str) -> str:
    """Keep the call up while the gateway decides what to say next (REST updates replace it)."""
    return document(f'<Pause length="{HOLD_PAUSE_S}"/>', redirect(next_url))


def speak(text: str, *, voice: str, language: str, played_url: str) -> str:
    """Say `text`, then tell the gateway it has been played (the redirect marks the end)."""
    return document(say(text, voice=voice, language=language), redirect(played_url))


def play_digits(digits: str, played_url: str) -> str:
    return document(f"<Play{_attrs(digits=digits)}/>", redirect(played_url))


def listen(action_url: str, again_url: str, *, language: str = "en-US") -> str:
    """A speech Gather with a long timeout, then a Redirect so silence never drops the call."""
    gather = "<Gather" + _attrs(action=action_url, input="speech", language=language, method="POST",
                                speechTimeout="auto", timeout=LISTEN_TIMEOUT_S) + "/>"
    return document(gather, redirect(again_url))


def reject(reason: str = "rejected") -> str:
    return document(f"<Reject{_attrs(reason=reason)}/>")


def stream(stream_url: str, token: str) -> str:
    """A bidirectional Media Stream; the token rides in a Parameter (Twilio drops query strings)."""
    return document(f"<Connect><Stream{_attrs(url=stream_url)}>"
                    f"<Parameter{_attrs(name='token', value=token)}/></Stream></Connect>")


def queue(hold_music_url: str) -> str:
    """A second inbound caller while a stream is busy waits in a queue with signed hold music."""
    return document('<Say voice="alice">Please hold while we connect you.</Say>',
                    f"<Enqueue{_attrs(waitUrl=hold_music_url)}>hold-queue</Enqueue>")


def hold_music() -> str:
    return document('<Say voice="alice">All agents are currently busy. Please hold.</Say>',
                    '<Pause length="10"/>')


def dial(number: str, *, caller_id: str, timeout_s: int, action_url: str,
         status_url: str) -> str:
    """Put the call through to `number`; Twilio fetches `action_url` when that leg is over
    (`DialCallStatus`) and posts the person's answer to `status_url`."""
    number_attrs = _attrs(statusCallback=status_url, statusCallbackEvent="answered",
                          statusCallbackMethod="POST")
    dial_attrs = _attrs(action=action_url, callerId=caller_id, method="POST", timeout=timeout_s)
    return document(f"<Dial{dial_attrs}><Number{number_attrs}>{escape(number)}</Number></Dial>")


class TwimlDialect:
    """The TwiML documents of the shared markup call flows (`providers/markup.py`)."""

    content_type = "application/xml"

    def empty(self) -> str:
        return empty()

    def hangup(self) -> str:
        return document("<Hangup/>")

    def reject(self) -> str:
        return reject()

    def redirect(self, url: str) -> str:
        return document(redirect(url))

    def hold(self, next_url: str) -> str:
        return hold(next_url)

    def speak(self, text: str, *, voice: str, language: str, played_url: str) -> str:
        return speak(text, voice=voice, language=language, played_url=played_url)

    def play_digits(self, digits: str, played_url: str) -> str:
        return play_digits(digits, played_url)

    def listen(self, action_url: str, again_url: str, *, language: str) -> str:
        return listen(action_url, again_url, language=language)

    def stream(self, stream_url: str, token: str) -> str:
        return stream(stream_url, token)

    def queue(self, hold_music_url: str) -> str:
        return queue(hold_music_url)

    def hold_music(self) -> str:
        return hold_music()
