"""Streaming text-to-speech for calls: providers yield PCM16LE mono chunks as they arrive."""

from voicecall.speech.tts.base import TtsChunk, TtsError, TtsProvider, aligned_pcm16
from voicecall.speech.tts.chain import (
    DEFAULT_TELEPHONY_TTS_TIMEOUT_S,
    DEFAULT_TTS_MAX_TEXT_LENGTH,
    NO_AUDIO_MESSAGE,
    TtsChain,
    build_tts_chain,
)
from voicecall.speech.tts.elevenlabs import ELEVENLABS_TTS_SAMPLE_RATE, ElevenLabsTts
from voicecall.speech.tts.openai import OPENAI_TTS_SAMPLE_RATE, OpenAITts

__all__ = [
    "DEFAULT_TELEPHONY_TTS_TIMEOUT_S",
    "DEFAULT_TTS_MAX_TEXT_LENGTH",
    "ELEVENLABS_TTS_SAMPLE_RATE",
    "NO_AUDIO_MESSAGE",
    "OPENAI_TTS_SAMPLE_RATE",
    "ElevenLabsTts",
    "OpenAITts",
    "TtsChain",
    "TtsChunk",
    "TtsError",
    "TtsProvider",
    "aligned_pcm16",
    "build_tts_chain",
]
