"""Telephony TTS with provider fallback: the first provider that starts producing audio speaks the whole
utterance.

    chain = build_tts_chain(cfg.tts, os.environ)
    async for sample_rate, pcm in chain.stream("Hello there."):
        ...  # resample to 8 kHz, encode, send

A provider that fails before its first audio byte hands over to the next one (and a warning
`Telephony TTS fallback used from=X to=Y attempts=N` is logged once the fallback speaks). Once
audio has been yielded a failure ends the utterance with TtsError: two voices are never spliced.

The timeout is a wall-clock limit on the synthesis (time to first byte, fallbacks and the rest of
the audio). The provider runs in its own task ahead of the consumer, at most `read_ahead_s` of
audio ahead: then it stops reading (the socket fills, and later reads come back in large pieces,
which is far cheaper than many small ones), and the time it waits for a consumer pacing playback
in real time does not count against the limit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

from voicecall.config.schema import TtsConfig, TtsProviderConfig
from voicecall.speech.tts.base import TtsError, TtsProvider
from voicecall.speech.tts.elevenlabs import (
    DEFAULT_ELEVENLABS_BASE_URL,
    DEFAULT_ELEVENLABS_MODEL_ID,
    DEFAULT_ELEVENLABS_VOICE_ID,
    ElevenLabsTts,
)
from voicecall.speech.tts.openai import DEFAULT_OPENAI_TTS_MODEL, DEFAULT_OPENAI_TTS_VOICE, OpenAITts

__all__ = [
    "DEFAULT_TELEPHONY_TTS_TIMEOUT_S",
    "DEFAULT_TTS_MAX_TEXT_LENGTH",
    "NO_AUDIO_MESSAGE",
    "TELEPHONY_TTS_PROVIDERS",
    "UNSUPPORTED_TELEPHONY_PROVIDERS",
    "TtsChain",
    "build_tts_chain",
]

log = logging.getLogger(__name__)

DEFAULT_TELEPHONY_TTS_TIMEOUT_S = 8.0
DEFAULT_TTS_MAX_TEXT_LENGTH = 4096
DEFAULT_READ_AHEAD_S = 1.0
"""Audio the synthesis task reads ahead of its consumer before it stops reading the provider."""
NO_AUDIO_MESSAGE = "Telephony TTS produced no audio"
TELEPHONY_TTS_PROVIDERS: tuple[str, ...] = ("openai", "elevenlabs")
"""Providers usable on a call, in the default preference order."""
UNSUPPORTED_TELEPHONY_PROVIDERS: frozenset[str] = frozenset({"edge", "microsoft"})

_KEY_ENV: Mapping[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "elevenlabs": ("ELEVENLABS_API_KEY", "XI_API_KEY"),
}


@dataclass
class _End:
    error: TtsError | None = None


class _Flow:
    """Read-ahead control between the synthesis task and the consumer: the task stops reading
    from the provider once `limit` bytes wait unconsumed (so the socket fills and later reads
    come back large), and the time it spends waiting is not charged to the synthesis timeout."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buffered = 0
        self.space = asyncio.Event()
        self.space.set()
        self.timeout: asyncio.Timeout | None = None

    def consumed(self, n: int) -> None:
        self.buffered -= n
        if self.buffered < self.limit:
            self.space.set()

    async def produced(self, n: int) -> None:
        self.buffered += n
        if self.buffered < self.limit:
            return
        self.space.clear()
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self.space.wait()
        timeout = self.timeout
        when = timeout.when() if timeout is not None else None
        if timeout is not None and when is not None:
            timeout.reschedule(when + loop.time() - started)


def _ms(seconds: float) -> str:
    return f"{round(seconds * 1000)} ms"


class TtsChain:
    """Providers tried in order for each utterance (see the module docstring)."""

    def __init__(self, providers: Sequence[TtsProvider], *,
                 timeout_s: float = DEFAULT_TELEPHONY_TTS_TIMEOUT_S,
                 max_text_length: int = DEFAULT_TTS_MAX_TEXT_LENGTH,
                 read_ahead_s: float = DEFAULT_READ_AHEAD_S) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if max_text_length < 1:
            raise ValueError("max_text_length must be at least 1")
        self.providers: list[TtsProvider] = list(providers)
        self.timeout_s = timeout_s
        self.max_text_length = max_text_length
        self.read_ahead_s = read_ahead_s

    def __repr__(self) -> str:
        return (f"TtsChain(providers={self.names!r}, timeout_s={self.timeout_s}, "
                f"max_text_length={self.max_text_length})")

    @property
    def names(self) -> list[str]:
        return [provider.name for provider in self.providers]

    async def stream(self, text: str) -> AsyncIterator[tuple[int, bytes]]:
        """Yield `(sample_rate, pcm16le_chunk)` as audio arrives; raise TtsError on failure.

        Closing the iterator early cancels the synthesis (and closes its HTTP response).
        """
        if len(text) > self.max_text_length:
            raise TtsError(f"Telephony TTS text too long: {len(text)} characters "
                           f"(maxTextLength {self.max_text_length})")
        if not text.strip():
            raise TtsError("Telephony TTS got no text to speak")
        if not self.providers:
            raise TtsError("Telephony TTS has no usable provider (configure tts.providers.openai or "
                           "tts.providers.elevenlabs with an API key, or set OPENAI_API_KEY / "
                           "ELEVENLABS_API_KEY)")
        queue: asyncio.Queue[tuple[int, bytes] | _End] = asyncio.Queue()
        rate = max(p.sample_rate for p in self.providers)
        flow = _Flow(max(1, int(rate * 2 * self.read_ahead_s)))
        task = asyncio.create_task(self._produce(text, queue, flow), name="voicecall-tts-synthesis")
        held: tuple[int, bytes] | _End | None = None
        try:
            while True:
                item = held if held is not None else await queue.get()
                held = None
                if isinstance(item, _End):
                    if item.error is not None:
                        raise item.error
                    return
                # Hand over everything that has already arrived as one chunk: one resample and
                # encode per burst instead of one per network read.
                rate, pcm = item
                parts = [pcm]
                while not queue.empty():
                    nxt = queue.get_nowait()
                    if isinstance(nxt, _End) or nxt[0] != rate:
                        held = nxt
                        break
                    parts.append(nxt[1])
                chunk = pcm if len(parts) == 1 else b"".join(parts)
                flow.consumed(len(chunk))
                yield (rate, chunk)
        finally:
            if not task.done():
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _produce(self, text: str, queue: asyncio.Queue[tuple[int, bytes] | _End],
                       flow: _Flow) -> None:
        try:
            async with asyncio.timeout(self.timeout_s) as timeout:
                flow.timeout = timeout
                end = await self._attempts(text, queue, flow)
        except TimeoutError:
            end = _End(TtsError(f"Telephony TTS synthesis timed out after {_ms(self.timeout_s)}"))
        except Exception as exc:  # a provider broke its contract; still report, never hang the consumer
            log.debug("Telephony TTS failed unexpectedly", exc_info=True)
            end = _End(TtsError(f"Telephony TTS failed: {type(exc).__name__}: {exc}"))
        queue.put_nowait(end)

    async def _attempts(self, text: str, queue: asyncio.Queue[tuple[int, bytes] | _End],
                        flow: _Flow) -> _End:
        failures: list[tuple[str, TtsError]] = []
        for index, provider in enumerate(self.providers):
            started = False
            error: TtsError | None = None
            stream = provider.stream(text)
            try:
                async for chunk in stream:
                    if not chunk:
                        continue
                    if not started:
                        started = True
                        if index:
                            log.warning("Telephony TTS fallback used from=%s to=%s attempts=%d",
                                        self.providers[0].name, provider.name, index + 1)
                    queue.put_nowait((provider.sample_rate, chunk))
                    await flow.produced(len(chunk))
            except TtsError as exc:
                error = exc
            except Exception as exc:
                error = TtsError(f"{provider.name} TTS failed: {type(exc).__name__}: {exc}")
            finally:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()
            if started:
                if error is None:
                    return _End()
                return _End(TtsError(f"Telephony TTS failed after audio started ({provider.name}): {error}"))
            error = error or TtsError(NO_AUDIO_MESSAGE)
            failures.append((provider.name, error))
            if index + 1 < len(self.providers):
                log.warning("Telephony TTS provider %s failed before audio, trying %s: %s",
                            provider.name, self.providers[index + 1].name, error)
        if len(failures) == 1:
            return _End(failures[0][1])
        if all(str(error) == NO_AUDIO_MESSAGE for _, error in failures):
            return _End(TtsError(NO_AUDIO_MESSAGE))
        joined = "; ".join(f"{name}: {error}" for name, error in failures)
        return _End(TtsError(f"Telephony TTS failed with every provider ({joined})"))

    async def aclose(self) -> None:
        """Close every provider's HTTP client."""
        for provider in self.providers:
            try:
                await provider.aclose()
            except Exception:
                log.debug("closing TTS provider %s failed", provider.name, exc_info=True)


def _api_key(name: str, block: TtsProviderConfig | None, env: Mapping[str, str]) -> str | None:
    if block is not None and block.api_key is not None:
        key = block.api_key.get_secret_value().strip()
        if key:
            return key
    for var in _KEY_ENV.get(name, ()):
        value = env.get(var, "").strip()
        if value:
            return value
    return None


def _make(name: str, key: str, block: TtsProviderConfig | None, env: Mapping[str, str]) -> TtsProvider:
    b = block or TtsProviderConfig()
    if name == "openai":
        return OpenAITts(key, base_url=b.base_url, model=b.model or DEFAULT_OPENAI_TTS_MODEL,
                         voice=b.voice or DEFAULT_OPENAI_TTS_VOICE, speed=b.speed,
                         instructions=b.instructions, env=env)
    settings = b.voice_settings.model_dump(exclude_none=True) if b.voice_settings is not None else None
    return ElevenLabsTts(key, base_url=b.base_url or DEFAULT_ELEVENLABS_BASE_URL,
                         voice_id=b.voice_id or DEFAULT_ELEVENLABS_VOICE_ID,
                         model_id=b.model_id or DEFAULT_ELEVENLABS_MODEL_ID, voice_settings=settings,
                         seed=b.seed, apply_text_normalization=b.apply_text_normalization,
                         language_code=b.language_code)


def build_tts_chain(tts_config: TtsConfig | None, env: Mapping[str, str]) -> TtsChain:
    """The telephony chain for a (merged) TTS config.

    Order: the configured `tts.provider` first, then the rest of openai, elevenlabs. `edge` and
    `microsoft` cannot produce telephony PCM and are skipped, as is any provider without an API key
    (from its config block, or `OPENAI_API_KEY` / `ELEVENLABS_API_KEY` in `env`). Timeout:
    `tts.timeoutMs` or 8 s; text limit: `tts.maxTextLength` or 4096.
    """
    cfg = tts_config or TtsConfig()
    order: list[str] = []
    primary = (cfg.provider or "").strip().lower()
    if primary in UNSUPPORTED_TELEPHONY_PROVIDERS:
        log.info("Telephony TTS skips provider %s: unsupported for telephony", primary)
    elif primary and primary not in TELEPHONY_TTS_PROVIDERS:
        log.warning("Telephony TTS skips provider %s: unknown provider", primary)
    elif primary:
        order.append(primary)
    order += [name for name in TELEPHONY_TTS_PROVIDERS if name not in order]
    providers: list[TtsProvider] = []
    for name in order:
        block = cfg.providers.get(name)
        key = _api_key(name, block, env)
        if key is None:
            log.info("Telephony TTS skips provider %s: no API key (tts.providers.%s.apiKey or %s)",
                     name, name, " / ".join(_KEY_ENV[name]))
            continue
        providers.append(_make(name, key, block, env))
    timeout_s = cfg.timeout_ms / 1000 if cfg.timeout_ms is not None else DEFAULT_TELEPHONY_TTS_TIMEOUT_S
    max_len = cfg.max_text_length if cfg.max_text_length is not None else DEFAULT_TTS_MAX_TEXT_LENGTH
    if not providers:
        log.warning("Telephony TTS has no usable provider (needs an OpenAI or ElevenLabs API key)")
    return TtsChain(providers, timeout_s=timeout_s, max_text_length=max_len)
