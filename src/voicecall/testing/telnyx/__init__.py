"""A local Telnyx Call Control look-alike for offline tests: REST actions, Ed25519-signed
webhooks, a scripted far end and media streaming in PCMU or PCMA.

>>> from voicecall.testing.telnyx import Callee, TelnyxSimulator
>>> async with TelnyxSimulator(time_scale=0.05) as sim:  # telnyx.apiBaseUrl = sim.base_url
...     sim.script("+15550001111", Callee(replies=["Yes"]))
"""

from voicecall.testing.telnyx.media import MediaClient, PcmFeed
from voicecall.testing.telnyx.signing import TestKey
from voicecall.testing.telnyx.simulator import (
    ApiRecord,
    Callee,
    SimCall,
    TelnyxSimulator,
    WebhookRecord,
)

__all__ = ["ApiRecord", "Callee", "MediaClient", "PcmFeed", "SimCall", "TelnyxSimulator", "TestKey",
           "WebhookRecord"]
