"""TwiML the gateway answers with: well-formed, escaped, and shaped as the call flows need."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from voicecall.providers.twilio import twiml


def parse(doc: str) -> ET.Element:
    assert doc.startswith('<?xml version="1.0" encoding="UTF-8"?><Response>')
    return ET.fromstring(doc)


def test_voice_names_map_onto_twilio_say_voices() -> None:
    assert twiml.polly_voice(None) == "Polly.Joanna"
    assert twiml.polly_voice("Polly.Brian") == "Polly.Brian"
    assert twiml.polly_voice("Google.en-US-Neural2-F") == "Google.en-US-Neural2-F"
    assert twiml.polly_voice("ONYX") == "Polly.Brian"
    assert twiml.polly_voice("someone-else") == "Polly.Joanna"


def test_say_escapes_text_and_then_redirects_to_the_played_url() -> None:
    root = parse(twiml.speak('Tom & "Jerry" <3', voice="Polly.Amy", language="en-GB",
                             played_url="https://gw.example/voice/webhook?callId=c1&type=played&utt=u1"))
    say, redirect = list(root)
    assert say.tag == "Say" and say.text == 'Tom & "Jerry" <3'
    assert say.attrib == {"voice": "Polly.Amy", "language": "en-GB"}
    assert redirect.tag == "Redirect" and redirect.attrib["method"] == "POST"
    assert redirect.text == "https://gw.example/voice/webhook?callId=c1&type=played&utt=u1"


def test_listen_gathers_speech_for_120_s_then_redirects_so_silence_keeps_the_call() -> None:
    root = parse(twiml.listen("https://gw/w?callId=c&turnToken=T", "https://gw/w?callId=c&type=listen"))
    gather, redirect = list(root)
    assert gather.tag == "Gather"
    assert gather.attrib["input"] == "speech" and gather.attrib["timeout"] == "120"
    assert gather.attrib["speechTimeout"] == "auto"
    assert gather.attrib["action"] == "https://gw/w?callId=c&turnToken=T"
    assert redirect.text == "https://gw/w?callId=c&type=listen"


def test_hold_pauses_then_comes_back() -> None:
    pause, redirect = list(parse(twiml.hold("https://gw/w?callId=c&type=hold")))
    assert pause.tag == "Pause" and int(pause.attrib["length"]) >= 30
    assert redirect.text == "https://gw/w?callId=c&type=hold"


def test_stream_carries_the_token_as_a_parameter_not_in_the_url() -> None:
    root = parse(twiml.stream("wss://gw.example/voice/stream", "tok+/="))
    stream = root.find("./Connect/Stream")
    assert stream is not None and stream.attrib["url"] == "wss://gw.example/voice/stream"
    param = stream.find("Parameter")
    assert param is not None and param.attrib == {"name": "token", "value": "tok+/="}


def test_reject_digits_and_queue_documents() -> None:
    assert parse(twiml.reject())[0].attrib == {"reason": "rejected"}
    play, _redirect = list(parse(twiml.play_digits("ww12#", "https://gw/p")))
    assert play.tag == "Play" and play.attrib == {"digits": "ww12#"}
    _say, enqueue = list(parse(twiml.queue("https://gw/w?type=hold-music")))
    assert enqueue.attrib["waitUrl"] == "https://gw/w?type=hold-music" and enqueue.text == "hold-queue"
