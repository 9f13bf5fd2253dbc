"""The spoken-output contract: the model answers only `{"spoken": "..."}`; we read it defensively.

Two readers of the same contract:

* `extract_spoken(text)` reads a whole reply (docs/decisions.md D26): the JSON
  `spoken` field if there is one anywhere, otherwise the text with code fences and leading "meta"
  paragraphs (the model thinking out loud) removed.
* `SpokenStream` reads the reply as it streams, so the first sentence can be spoken while the
  model is still writing the rest. For the JSON shapes it produces exactly what `extract_spoken`
  returns for the whole text, whatever the chunking.

Both collapse every run of whitespace to one space and trim the ends: the text is for a
text-to-speech engine, where layout means nothing.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

SPOKEN_CONTRACT = (
    "Output format: reply with ONLY a JSON object of the form {\"spoken\": \"<what you say>\"}. "
    "The value of \"spoken\" is read aloud to the caller by a text-to-speech voice, so write it as "
    "natural spoken sentences: no markdown, no code fences, no lists, no emoji, no planning or "
    "reasoning, no stage directions and no other keys. If there is nothing to say, reply "
    "{\"spoken\": \"\"}."
)

# The JSON key and the opening quote of its string value (`"spoken" : "`).
_SPOKEN_VALUE = re.compile(r'"spoken"\s*:\s*"')
_INLINE_SPOKEN = re.compile(r'"spoken"\s*:\s*"((?:[^"\\]|\\.)*)"', re.DOTALL)
_FENCED_BLOCK = re.compile(r"```[\w+-]*[ \t]*\r?\n?(.*?)```", re.DOTALL)
_FENCE = re.compile(r"```[\w+-]*")
_FENCE_TAG_CHAR = re.compile(r"[\w+-]")
_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n\s*")
_FALLBACK_KEYS = ("text", "response", "reply", "answer", "message", "content")
_META_PREFIXES = ("thinking process", "reasoning:", "analysis:")
_META_PHRASES = ("natural continuation of the conversation", "keep the conversation flowing")
_USER_PLANNING = re.compile(r"\bi (?:should|need to|will)\b")
_MARKUP_LEAD = "*_#>`~ \t"
# Held back (in plain-text mode) until a paragraph break or this many characters, so a leading meta
# paragraph can still be dropped.
HOLD_CHARS = 200


def collapse_whitespace(text: str) -> str:
    """Every run of whitespace becomes one space; the ends are trimmed."""
    return " ".join(text.split())


def is_meta_paragraph(paragraph: str) -> bool:
    """True for a paragraph in which the model plans its answer instead of giving it."""
    lowered = collapse_whitespace(paragraph).lower()
    bare = lowered.lstrip(_MARKUP_LEAD)
    if bare.startswith(_META_PREFIXES):
        return True
    if bare.startswith("the user") and _USER_PLANNING.search(bare):
        return True
    return any(phrase in lowered for phrase in _META_PHRASES)


def _spoken_field(candidate: str) -> str | None:
    try:
        data: Any = json.loads(candidate, strict=False)
    except ValueError:
        return None
    if isinstance(data, dict):
        value = data.get("spoken")
        if isinstance(value, str):
            return value
    return None


def _whole_object(stripped: str) -> dict[str, Any] | None:
    """The JSON object the whole reply is (bare or in one fence), if it is one."""
    candidates = [stripped]
    if stripped.startswith("```") and stripped.endswith("```") and len(stripped) >= 6:
        candidates.append(_FENCE.sub("", stripped, count=1)[:-3])
    for candidate in candidates:
        try:
            data: Any = json.loads(candidate, strict=False)
        except ValueError:
            continue
        if isinstance(data, dict):
            return data
    return None


def _json_spoken(text: str) -> str | None:
    stripped = text.strip()
    found = _spoken_field(stripped)
    if found is not None:
        return found
    for match in _FENCED_BLOCK.finditer(stripped):
        found = _spoken_field(match.group(1).strip())
        if found is not None:
            return found
    first, last = stripped.find("{"), stripped.rfind("}")
    if 0 <= first < last:
        found = _spoken_field(stripped[first:last + 1])
        if found is not None:
            return found
    inline = _INLINE_SPOKEN.search(stripped)
    if inline is not None:
        try:
            decoded: Any = json.loads(f'"{inline.group(1)}"', strict=False)
        except ValueError:
            return inline.group(1)
        return decoded if isinstance(decoded, str) else None
    whole = _whole_object(stripped)
    if whole is not None:
        # JSON without a usable "spoken": take a likely text field, and never read the JSON out loud.
        return next((v for k in _FALLBACK_KEYS if isinstance(v := whole.get(k), str)), "")
    return None


def strip_code_fences(text: str) -> str:
    """Remove the fence markers (```` ``` ```` and a language tag such as `json`), keep what they held."""
    return _FENCE.sub("", text)


def drop_meta_paragraphs(text: str) -> list[str]:
    """The paragraphs of `text`, without the leading meta paragraphs and empty ones."""
    paragraphs = [p.strip() for p in _PARAGRAPH_BREAK.split(text)]
    paragraphs = [p for p in paragraphs if p]
    while paragraphs and is_meta_paragraph(paragraphs[0]):
        paragraphs.pop(0)
    return paragraphs


def extract_spoken(text: str) -> str:
    """What to say for a whole model reply.

    The JSON `spoken` field is tried on the whole text, then on each fenced block, then on the
    substring from the first `{` to the last `}`, then with an inline `"spoken": "..."` match.
    A reply that is a JSON object without a `spoken` string gives its `text` (or `response`,
    `reply`, ...) field, or nothing: JSON is never read out. Otherwise the text itself is used:
    code fences stripped, leading meta paragraphs ("Thinking process", "Reasoning:", "The user ...
    I should ...") dropped. Whitespace is collapsed either way; an empty `spoken` means there is
    nothing to say.
    """
    spoken = _json_spoken(text)
    if spoken is not None:
        return collapse_whitespace(spoken)
    return collapse_whitespace(" ".join(drop_meta_paragraphs(strip_code_fences(text))))


class _Collapser:
    """Incremental `collapse_whitespace`: what it returns, concatenated, equals the batch result."""

    def __init__(self) -> None:
        self._started = False
        self._space = False

    def feed(self, text: str) -> str:
        out: list[str] = []
        for ch in text:
            if ch.isspace():
                self._space = self._started
                continue
            if self._space:
                out.append(" ")
                self._space = False
            out.append(ch)
            self._started = True
        return "".join(out)

    @property
    def started(self) -> bool:
        return self._started


_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class _JsonStringDecoder:
    """Decodes the body of a JSON string as it arrives, up to its closing quote."""

    def __init__(self) -> None:
        self.done = False
        self._escape = False
        self._hex: str | None = None  # the digits of a `\uXXXX` escape so far
        self._high: int | None = None  # a high surrogate waiting for its low half

    def _flush_high(self, out: list[str]) -> None:
        if self._high is not None:
            out.append(chr(self._high))
            self._high = None

    def _code_point(self, code: int, out: list[str]) -> None:
        if self._high is not None and 0xDC00 <= code <= 0xDFFF:
            out.append(chr(0x10000 + ((self._high - 0xD800) << 10) + (code - 0xDC00)))
            self._high = None
            return
        self._flush_high(out)
        if 0xD800 <= code <= 0xDBFF:
            self._high = code
        else:
            out.append(chr(code))

    def feed(self, text: str) -> str:
        """The decoded text; whatever follows the closing quote is ignored."""
        out: list[str] = []
        for ch in text:
            if self._hex is not None:
                if ch in "0123456789abcdefABCDEF":
                    self._hex += ch
                    if len(self._hex) == 4:
                        self._code_point(int(self._hex, 16), out)
                        self._hex = None
                    continue
                # A malformed `\u` escape: keep it literally and read this character normally.
                self._flush_high(out)
                out.append("\\u" + self._hex)
                self._hex = None
            if self._escape:
                self._escape = False
                if ch == "u":
                    self._hex = ""
                    continue
                self._flush_high(out)
                out.append(_ESCAPES.get(ch, ch))
                continue
            if ch == "\\":
                self._escape = True
                continue
            self._flush_high(out)
            if ch == '"':
                self.done = True
                break
            out.append(ch)
        return "".join(out)

    def finish(self) -> str:
        out: list[str] = []
        if self._hex is not None:
            out.append("\\u" + self._hex)
            self._hex = None
        self._flush_high(out)
        return "".join(out)


class _FenceStripper:
    """Incremental `strip_code_fences`."""

    def __init__(self) -> None:
        self._ticks = 0
        self._in_tag = False

    def feed(self, text: str) -> str:
        out: list[str] = []
        for ch in text:
            if self._in_tag:
                if _FENCE_TAG_CHAR.match(ch):
                    continue
                self._in_tag = False
            if ch == "`":
                self._ticks += 1
                if self._ticks == 3:
                    self._ticks = 0
                    self._in_tag = True
                continue
            if self._ticks:
                out.append("`" * self._ticks)
                self._ticks = 0
            out.append(ch)
        return "".join(out)

    def finish(self) -> str:
        ticks, self._ticks, self._in_tag = self._ticks, 0, False
        return "`" * ticks


_Mode = Literal["detect", "json", "value", "text", "done"]
_Gate = Literal["hold", "drop", "pass"]


class SpokenStream:
    """Streaming `extract_spoken`: feed the model's deltas, get the words to say as they firm up.

    If the reply (after leading whitespace and an optional ```` ```json ```` fence) starts with `{`,
    the `spoken` string value is decoded as it arrives (escapes may be split across deltas) and
    everything after its closing quote is ignored. Otherwise the text passes through with code
    fences stripped, after holding it back until the first paragraph break (or `HOLD_CHARS`
    characters) so that leading meta paragraphs can be dropped; if a `"spoken": "` value shows up
    while text is still held back, the stream switches to reading that value. If the JSON never
    gives a value, `finish()` falls back to `extract_spoken` of the whole reply.
    """

    def __init__(self) -> None:
        self._raw: list[str] = []
        self._raw_len = 0
        self._mode: _Mode = "detect"
        self._pending = ""  # raw text not yet handled (detect and json modes)
        self._decoder = _JsonStringDecoder()
        self._value_found = False
        self._fences = _FenceStripper()
        self._gate: _Gate = "hold"
        self._held = ""
        self._out = _Collapser()
        self._finished = False

    @property
    def text(self) -> str:
        """The raw reply so far."""
        return "".join(self._raw)

    def feed(self, delta: str) -> str:
        """Add a delta of the model's output; return spoken text that is now certain."""
        if self._finished:
            raise RuntimeError("SpokenStream.feed() after finish()")
        if not delta:
            return ""
        self._raw.append(delta)
        self._raw_len += len(delta)
        if self._mode == "done":
            return ""
        if self._mode == "value":
            return self._feed_value(delta)
        if self._mode == "text":
            return self._feed_text(delta)
        self._pending += delta
        if self._mode == "detect":
            self._mode = self._detect()
        if self._mode == "json":
            return self._scan_json()
        if self._mode == "text":
            text, self._pending = self._pending, ""
            return self._feed_text(text)
        return ""

    def finish(self) -> str:
        """The model is done: return whatever is left to say."""
        if self._finished:
            return ""
        self._finished = True
        if self._mode in ("detect", "json"):
            return self._out.feed(extract_spoken(self.text))
        if self._mode == "value":
            return self._out.feed(self._decoder.finish())
        if self._mode == "text":
            return self._gate_feed(self._fences.finish(), final=True)
        return ""

    # -- mode selection ---------------------------------------------------------------------------
    def _detect(self) -> _Mode:
        """json, text, or still detect (not enough text to tell)."""
        s = self._pending.lstrip()
        if not s:
            return "detect"
        if s[0] == "`":
            if len(s) < 3:
                return "detect" if "```".startswith(s) else "text"
            if not s.startswith("```"):
                return "text"
            i = 3
            while i < len(s) and _FENCE_TAG_CHAR.match(s[i]):
                i += 1
            rest = s[i:].lstrip()
            if not rest:
                return "detect"  # still inside the fence's opening line
            return "json" if rest[0] == "{" else "text"
        return "json" if s[0] == "{" else "text"

    def _scan_json(self) -> str:
        match = _SPOKEN_VALUE.search(self._pending)
        if match is None:
            return ""
        rest = self._pending[match.end():]
        self._pending = ""
        self._mode = "value"
        self._value_found = True
        return self._feed_value(rest)

    def _feed_value(self, text: str) -> str:
        decoded = self._decoder.feed(text)
        if self._decoder.done:
            self._mode = "done"
            decoded += self._decoder.finish()
        return self._out.feed(decoded)

    # -- plain text -------------------------------------------------------------------------------
    def _feed_text(self, text: str) -> str:
        return self._gate_feed(self._fences.feed(text), final=False)

    def _gate_feed(self, text: str, *, final: bool) -> str:
        if self._gate == "pass":
            return self._out.feed(text)
        self._held += text
        while True:
            if self._gate == "hold":
                self._held = self._held.lstrip()
                if not self._out.started:
                    switched = self._switch_to_value()
                    if switched is not None:
                        return switched
                match = _PARAGRAPH_BREAK.search(self._held)
                if match is not None:
                    if is_meta_paragraph(self._held[:match.start()]):
                        self._held = self._held[match.end():]
                        continue
                    return self._release()
                if final:
                    if is_meta_paragraph(self._held):
                        self._held = ""
                        return ""
                    return self._release()
                if len(self._held) >= HOLD_CHARS:
                    if is_meta_paragraph(self._held):
                        self._gate = "drop"
                        continue
                    return self._release()
                return ""
            # drop: discard the rest of a long meta paragraph
            match = _PARAGRAPH_BREAK.search(self._held)
            if match is None:
                newline = self._held.rfind("\n")
                self._held = self._held[newline:] if newline >= 0 else ""
                return ""
            self._held = self._held[match.end():]
            self._gate = "hold"

    def _switch_to_value(self) -> str | None:
        match = _SPOKEN_VALUE.search(self.text)
        if match is None:
            return None
        self._held = ""
        self._mode = "value"
        self._value_found = True
        return self._feed_value(self.text[match.end():])

    def _release(self) -> str:
        self._gate = "pass"
        held, self._held = self._held, ""
        return self._out.feed(held)
