"""The numbers and gateway config the Plivo end-to-end tests share."""

from __future__ import annotations

from typing import Any

from voicecall.testing.plivo import PlivoSimulator

OUR_NUMBER = "+15550000000"
CALLEE = "+15555550123"
FRIEND = "+15557770001"
STRANGER = "+15558880002"


def plivo_config(sim: PlivoSimulator, port: int, **extra: Any) -> dict[str, Any]:
    """A gateway on `port` whose carrier is `sim`; `publicUrl` is the URL the simulator signs."""
    return {
        "provider": "plivo", "fromNumber": OUR_NUMBER,
        "plivo": {"authId": sim.auth_id, "authToken": sim.auth_token, "apiBaseUrl": sim.base_url},
        "serve": {"port": port}, "publicUrl": f"http://127.0.0.1:{port}/voice/webhook",
        "outbound": {"notifyHangupDelaySec": 0},
        "inboundPolicy": "allowlist", "allowFrom": [FRIEND], "maxConcurrentCalls": 5,
        **extra,
    }
