"""The fake OpenAI servers speak only the generally available Realtime protocol, as OpenAI does
since it retired the beta one (docs/decisions.md D130), so a client drifting back to the beta
shape fails its tests instead of failing in production."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from voicecall.testing.fakes.realtime import FakeOpenAIRealtime
from voicecall.testing.fakes.stt import FakeRealtimeTranscription

AUTH = {"Authorization": "Bearer sk-test"}


async def test_the_realtime_fake_closes_a_client_sending_the_beta_header() -> None:
    async with FakeOpenAIRealtime(api_key="sk-test") as fake:
        url = fake.base_url.replace("http://", "ws://") + "/realtime?model=gpt-realtime"
        async with connect(url, additional_headers={**AUTH, "OpenAI-Beta": "realtime=v1"}) as ws:
            error = json.loads(await ws.recv())
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
        assert error["error"]["code"] == "beta_api_shape_disabled"
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
        assert fake.refused == ["beta_api_shape_disabled"] and fake.connections == 0


async def test_the_realtime_fake_refuses_a_beta_shaped_session_update() -> None:
    async with FakeOpenAIRealtime(api_key="sk-test") as fake:
        url = fake.base_url.replace("http://", "ws://") + "/realtime?model=gpt-realtime"
        async with connect(url, additional_headers=AUTH) as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"
            await ws.send(json.dumps({"type": "session.update", "session": {
                "modalities": ["audio", "text"], "input_audio_format": "g711_ulaw"}}))
            error = json.loads(await ws.recv())
        assert error["type"] == "error" and error["error"]["param"] == "session.type"
        assert fake.sessions == [] and fake.refused


async def test_the_transcription_fake_refuses_the_beta_header_at_the_handshake() -> None:
    async with FakeRealtimeTranscription(api_key="sk-test") as fake:
        url = f"{fake.base_url}/realtime?intent=transcription"
        with pytest.raises(InvalidStatus):
            async with connect(url, additional_headers={**AUTH, "OpenAI-Beta": "realtime=v1"}):
                pass
        assert any("beta_api_shape_disabled" in e for e in fake.errors)
