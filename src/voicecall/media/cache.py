"""Pre-synthesized phrases: greetings and idle prompts are spoken from memory, so the first audio
of a call goes out the moment its stream connects instead of after a TTS round trip.

Only phrases passed to `warm()` are kept (a fixed, small set from the config); everything else
streams from the TTS provider as usual.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable

from voicecall.media.playback import Speech, split_sentences

__all__ = ["CachedSpeech"]

log = logging.getLogger(__name__)

MAX_PHRASE_BYTES = 4 * 1024 * 1024
"""A phrase longer than this (about 90 s of 24 kHz audio) is not kept."""


class CachedSpeech:
    """A `Speech` that answers warmed phrases from memory and streams the rest from `inner`."""

    def __init__(self, inner: Speech) -> None:
        self.inner = inner
        self._audio: dict[str, tuple[int, bytes]] = {}
        self.hits = 0

    def __contains__(self, text: str) -> bool:
        return text.strip() in self._audio

    async def warm(self, texts: Iterable[str]) -> int:
        """Synthesize each phrase (sentence by sentence, as playback asks for them) once and keep
        it; returns how many sentences are cached. Failures are logged (the phrase then streams
        live when used)."""
        phrases = {s.strip() for t in texts if t and t.strip() for s in split_sentences(t.strip())}
        for text in phrases:
            if text in self._audio:
                continue
            try:
                rate, chunks, size = 0, [], 0
                async for chunk_rate, pcm in self.inner.stream(text):
                    rate = chunk_rate
                    chunks.append(pcm)
                    size += len(pcm)
                    if size > MAX_PHRASE_BYTES:
                        raise ValueError("phrase too long to keep")
                if chunks:
                    self._audio[text] = (rate, b"".join(chunks))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("could not pre-synthesize %r: %s", text[:60], exc)
        return len(self._audio)

    async def stream(self, text: str) -> AsyncIterator[tuple[int, bytes]]:
        cached = self._audio.get(text.strip())
        if cached is not None:
            self.hits += 1
            yield cached
            return
        async for item in self.inner.stream(text):
            yield item
