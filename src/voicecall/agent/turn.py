"""A conversation turn as responders see it, and the plumbing every responder shares.

`sentence_stream` runs a responder's text source under the turn's time limit and yields
complete, clean sentences as they form (see `agent/responder.py` for the contract).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
)
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlsplit

from voicecall.agent.call_controls import CallControls
from voicecall.agent.spoken import SpokenStream, collapse_whitespace
from voicecall.calls.model import TranscriptEntry
from voicecall.speech.sentences import CLOSERS, TERMINATORS, SentenceSplitter

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_MODEL = "openai/gpt-4o-mini"
DEFAULT_TIMEOUT_S = 30.0
ENTRY_POINT_GROUP = "voicecall.responders"
ERROR_EXCERPT_CHARS = 200


@dataclass(frozen=True)
class TurnContext:
    """One caller utterance to answer, with what is known about the call."""

    call_id: str
    direction: str
    from_: str
    to: str
    session_key: str
    agent_id: str
    user_text: str
    transcript: tuple[TranscriptEntry, ...] = ()
    # Prior session memory as chat messages ({"role": "user"|"assistant", "content": ...}), oldest first.
    history: tuple[dict[str, str], ...] = ()
    model: str | None = None  # per-turn model override (per-number routing)
    system_prompt: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    controls: CallControls | None = field(default=None, compare=False)
    """The live call, for the built-in tools (None outside a call)."""

    @property
    def remote_number(self) -> str:
        """The other party: the caller on an inbound call, the callee on an outbound one."""
        return self.to if self.direction == "outbound" else self.from_


class ResponderError(Exception):
    """A turn could not be answered; the message says what failed (API keys are masked out)."""


class ResponderUnavailable(ResponderError):
    """The responder cannot answer at all as configured (no API key, unknown provider): retrying
    will not help."""


@dataclass(frozen=True)
class Flush:
    """From a text source: the text so far is complete (a model round ended); `text`, if any, is
    then said as it is (a filler, last words) and a fresh reply may follow."""

    text: str = ""


@runtime_checkable
class Responder(Protocol):
    def reply(self, ctx: TurnContext) -> AsyncIterator[str]:
        """Complete spoken sentences, each as soon as it is complete; raises `ResponderError`."""
        ...


async def close_responder(responder: Responder) -> None:
    """Close the HTTP clients a responder keeps between turns (if it keeps any); call on shutdown."""
    aclose = getattr(responder, "aclose", None)
    if aclose is not None:
        await aclose()




# -- shared plumbing -------------------------------------------------------------------------------
class _Sentences:
    """Text deltas in, clean complete sentences out (optionally through the spoken contract)."""

    def __init__(self, *, spoken: bool) -> None:
        self._spoken = SpokenStream() if spoken else None
        self._splitter = SentenceSplitter()

    @property
    def pending(self) -> bool:
        return self._splitter.pending

    def feed(self, delta: str) -> list[str]:
        text = self._spoken.feed(delta) if self._spoken is not None else delta
        return _clean(self._splitter.feed(text)) if text else []

    def pause(self) -> list[str]:
        return _clean(self._splitter.pause())

    def finish(self) -> list[str]:
        out: list[str] = []
        if self._spoken is not None:
            out += self._splitter.feed(self._spoken.finish())
        out += self._splitter.flush()
        return _clean(out)


def _clean(sentences: list[str]) -> list[str]:
    """Whitespace collapsed; nothing without a letter or digit in it (a stray quote is not speech)."""
    cleaned = (collapse_whitespace(s) for s in sentences)
    return [s for s in cleaned if any(ch.isalnum() for ch in s)]


@dataclass
class _End:
    error: ResponderError | None = None


def seconds(value: float) -> str:
    return f"{float(value)} s"


# How long a message-sized source (HTTP endpoint, Python function) may go quiet right after a full
# stop before that sentence is spoken without seeing what follows it.
IDLE_FLUSH_S = 0.05


async def sentence_stream(source: Callable[[], AsyncGenerator[str | Flush, None]], *, spoken: bool,
                          timeout_s: float, what: str,
                          idle_flush_s: float | None = None) -> AsyncIterator[str]:
    """Run `source` in its own task under the turn's time limit; yield its sentences as they complete.

    The source runs ahead of the consumer (so a slow consumer, busy speaking the first sentence,
    neither stalls the source nor is cancelled by its time limit). Closing the iterator early
    cancels the source. With `idle_flush_s`, a sentence that ends right where the source went
    quiet is released after that long.
    """
    queue: asyncio.Queue[str | _End] = asyncio.Queue()

    def put(sentences: list[str]) -> None:
        for sentence in sentences:
            queue.put_nowait(sentence)

    pipelines = [_Sentences(spoken=spoken)]

    async def pump() -> None:
        deltas = source()
        try:
            while True:
                pipeline = pipelines[-1]
                if idle_flush_s is None or not pipeline.pending:
                    delta = await anext(deltas, None)
                else:
                    upcoming = asyncio.ensure_future(anext(deltas, None))
                    try:
                        done, _ = await asyncio.wait({upcoming}, timeout=idle_flush_s)
                        if not done:
                            put(pipeline.pause())
                        delta = await upcoming
                    finally:
                        if not upcoming.done():
                            upcoming.cancel()
                            await asyncio.wait({upcoming})
                if delta is None:
                    return
                if isinstance(delta, Flush):
                    put(pipeline.finish())
                    put(_clean([delta.text]))
                    pipelines.append(_Sentences(spoken=spoken))
                    continue
                put(pipeline.feed(delta))
        finally:
            await deltas.aclose()

    async def produce() -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await pump()
            put(pipelines[-1].finish())
            queue.put_nowait(_End())
        except TimeoutError:
            queue.put_nowait(_End(ResponderError(f"{what} timed out after {seconds(timeout_s)}")))
        except ResponderError as exc:
            queue.put_nowait(_End(exc))
        except Exception as exc:
            log.debug("%s failed", what, exc_info=True)
            queue.put_nowait(_End(ResponderError(f"{what} failed: {type(exc).__name__}: {exc}")))

    task = asyncio.create_task(produce(), name=f"voicecall-responder-{what}")
    try:
        while True:
            item = await queue.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        if not task.done():
            task.cancel()
        await asyncio.wait([task])


def excerpt(text: str, secret: str | None = None) -> str:
    text = collapse_whitespace(text)
    if secret:
        text = text.replace(secret, "***")
    return text if len(text) <= ERROR_EXCERPT_CHARS else text[:ERROR_EXCERPT_CHARS - 3] + "..."


def safe_url(url: str) -> str:
    """The URL without credentials, query or fragment (for messages)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return f"{parts.scheme}://{netloc}{parts.path}"


class PerLoop(Generic[T]):
    """One client per event loop (a client's connection pool belongs to the loop that opened it)."""

    def __init__(self) -> None:
        self._items: dict[Any, tuple[asyncio.AbstractEventLoop, T]] = {}

    def get(self, key: Any, make: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        found = self._items.get(key)
        if found is not None and found[0] is loop:
            return found[1]
        item = make()
        self._items[key] = (loop, item)
        return item

    def take_current(self) -> list[T]:
        """Remove and return the items of the running loop (to close them); forget the others."""
        loop = asyncio.get_running_loop()
        items = [item for owner, item in self._items.values() if owner is loop]
        self._items.clear()
        return items


_SENTENCE_END = re.compile(f"[{re.escape(TERMINATORS)}][{re.escape(CLOSERS)}]*$")


class ChunkJoiner:
    """Joins message-sized chunks: puts a space between "Hello." and "How are you?"."""

    def __init__(self) -> None:
        self._ended = False

    def __call__(self, chunk: str) -> str:
        if not chunk:
            return chunk
        if self._ended and chunk[0].isupper():
            chunk = " " + chunk
        self._ended = _SENTENCE_END.search(chunk) is not None
        return chunk
