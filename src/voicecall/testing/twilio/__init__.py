"""A local Twilio look-alike for offline tests: REST API, signed webhooks, TwiML, Media Streams.

>>> from voicecall.testing.twilio import Callee, TwilioSimulator
>>> async with TwilioSimulator(time_scale=0.02) as sim:  # point twilio.apiBaseUrl at sim.base_url
...     sim.script("+15550001111", Callee(replies=["Yes"]))
"""

from voicecall.testing.twilio.media import CallerFeed, MediaStream, StreamError, StreamRecord
from voicecall.testing.twilio.signing import sign, signing_string, validate
from voicecall.testing.twilio.simulator import (
    ApiRecord,
    Callee,
    SayRecord,
    SimCall,
    TwilioSimulator,
    WebhookRecord,
)
from voicecall.testing.twilio.standalone import config_block, main
from voicecall.testing.twilio.twiml import Document, GatherRecord, TwimlError, parse_twiml

__all__ = [
    "ApiRecord",
    "Callee",
    "CallerFeed",
    "Document",
    "GatherRecord",
    "MediaStream",
    "SayRecord",
    "SimCall",
    "StreamError",
    "StreamRecord",
    "TwilioSimulator",
    "TwimlError",
    "WebhookRecord",
    "config_block",
    "main",
    "parse_twiml",
    "sign",
    "signing_string",
    "validate",
]
