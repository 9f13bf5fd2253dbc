"""A local Plivo look-alike for offline tests: Voice API REST, signed callbacks, Plivo XML and
bidirectional audio streams.

>>> from voicecall.testing.plivo import Callee, PlivoSimulator
>>> async with PlivoSimulator(time_scale=0.05) as sim:  # point plivo.apiBaseUrl at sim.base_url
...     sim.script("+15550001111", Callee(replies=["Yes"]))
"""

from voicecall.testing.plivo.call import CallbackRecord, Callee, PlivoCall, SpeakRecord
from voicecall.testing.plivo.media import PlivoStream, PlivoStreamRecord
from voicecall.testing.plivo.simulator import ApiCall, PlivoSimulator
from voicecall.testing.plivo.xml import PlivoXmlError, XmlInterpreter, parse_plivo_xml

__all__ = [
    "ApiCall",
    "CallbackRecord",
    "Callee",
    "PlivoCall",
    "PlivoSimulator",
    "PlivoStream",
    "PlivoStreamRecord",
    "PlivoXmlError",
    "SpeakRecord",
    "XmlInterpreter",
    "parse_plivo_xml",
]
