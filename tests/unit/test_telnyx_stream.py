"""The Telnyx media-stream wire format: inbound messages as the shared kinds, the codec from the
`start` frame (never assumed), and outbound media/mark/clear as Telnyx expects them."""

from __future__ import annotations

import base64
import json

import pytest

from voicecall.providers.streams import StreamAudio, StreamDtmf, StreamMark, StreamStart, StreamStop
from voicecall.providers.telnyx.stream import TelnyxStreamSerializer

S = TelnyxStreamSerializer()


def start(encoding: object = "PCMA", rate: object = 8000) -> str:
    fmt: dict[str, object] = {"sample_rate": rate, "channels": 1}
    if encoding is not None:
        fmt["encoding"] = encoding
    return json.dumps({"event": "start", "sequence_number": "1", "stream_id": "S-1", "start": {
        "call_control_id": "v3:abc", "client_state": None, "media_format": fmt}})


@pytest.mark.parametrize("encoding,codec", [("PCMA", "alaw"), ("PCMU", "ulaw"),
                                            ("audio/x-alaw", "alaw"), ("audio/x-mulaw", "ulaw")])
def test_the_codec_comes_from_the_start_frames_media_format(encoding: str, codec: str) -> None:
    parsed = S.parse(start(encoding))
    assert isinstance(parsed, StreamStart)
    assert (parsed.call_sid, parsed.stream_id, parsed.codec) == ("v3:abc", "S-1", codec)


@pytest.mark.parametrize("encoding,rate", [(None, 8000), ("L16", 8000), ("OPUS", 8000), ("PCMU", 16000)])
def test_a_start_without_a_g711_8khz_codec_is_refused_not_guessed(encoding: object, rate: object) -> None:
    with pytest.raises(ValueError):
        S.parse(start(encoding, rate))


def test_inbound_media_frames_take_the_fast_path_and_outbound_track_is_ignored() -> None:
    audio = bytes(range(160))
    payload = base64.b64encode(audio).decode()
    frame = ('{"event":"media","sequence_number":"4","media":{"track":"inbound","chunk":"2",'
             f'"timestamp":"5","payload":"{payload}"}},"stream_id":"S-1"}}')
    assert S.parse(frame) == StreamAudio(audio)
    reordered = json.dumps({"stream_id": "S-1", "event": "media", "media": {"payload": payload}})
    assert S.parse(reordered) == StreamAudio(audio)
    ours = frame.replace('"track":"inbound"', '"track":"outbound"')
    assert S.parse(ours) is None


def test_bad_base64_is_a_value_error_never_audio() -> None:
    with pytest.raises(ValueError):
        S.parse('{"event":"media","sequence_number":"4","media":{"payload":"!!!"},"stream_id":"S"}')


def test_dtmf_marks_stop_and_the_rest() -> None:
    assert S.parse('{"event":"dtmf","dtmf":{"digit":"7"},"stream_id":"S"}') == StreamDtmf("7")
    assert S.parse('{"event":"mark","mark":{"name":"m1"},"stream_id":"S"}') == StreamMark("m1")
    assert S.parse('{"event":"stop","stop":{},"stream_id":"S"}') == StreamStop()
    assert S.parse('{"event":"connected","version":"1.0.0"}') is None
    assert S.parse('{"event":"error","payload":{"code":100003,"title":"malformed_frame"}}') is None
    with pytest.raises(ValueError):
        S.parse("[]")


def test_outbound_messages_are_telnyx_shaped_without_a_stream_id() -> None:
    assert json.loads(S.audio("S-1", b"\xd5" * 160)) == {
        "event": "media", "media": {"payload": base64.b64encode(b"\xd5" * 160).decode()}}
    assert json.loads(S.mark("S-1", "m2")) == {"event": "mark", "mark": {"name": "m2"}}
    assert json.loads(S.clear("S-1")) == {"event": "clear"}
