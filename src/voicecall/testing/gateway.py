"""Start a real gateway (webhook + control listeners on free loopback ports) for a test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from voicecall.config import load_config_dict
from voicecall.config.loader import deep_merge
from voicecall.gateway.runtime import Runtime

FAST_MOCK: dict[str, Any] = {
    "provider": "mock",
    "serve": {"port": 0, "bind": "127.0.0.1"},
    "control": {"port": 0, "bind": "127.0.0.1"},
    "mock": {"answerAfterMs": 50, "ringMs": 10, "speakMsPerChar": 1},
    "outbound": {"notifyHangupDelaySec": 0},
}


@contextlib.asynccontextmanager
async def running_gateway(state_dir: Path, config: Mapping[str, Any] | None = None, *,
                          reaper_interval_s: float = 30.0,
                          env: Mapping[str, str] | None = None) -> AsyncIterator[Runtime]:
    """A started Runtime on ephemeral ports with its state under `state_dir`.

    `config` (a bare voice-call object) is deep-merged over a fast mock-carrier setup.
    """
    doc = deep_merge(FAST_MOCK, dict(config or {}))
    full_env = {"OPENCLAW_STATE_DIR": str(state_dir), "HOME": str(state_dir), **(env or {})}
    loaded = load_config_dict(doc, env=full_env)
    runtime = Runtime(loaded, reaper_interval_s=reaper_interval_s)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()
