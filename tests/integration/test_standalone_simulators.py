"""The standalone carrier simulators (`python -m voicecall.testing.twilio`, `...telnyx`,
`...plivo`): each printed config block works as pasted (a notify call and a conversation turn),
and each command line is documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import call_ended, eventually, free_port, standalone_simulator
from voicecall.config import load_config
from voicecall.gateway.runtime import Runtime
from voicecall.testing.plivo import standalone as plivo_standalone
from voicecall.testing.telnyx import standalone as telnyx_standalone
from voicecall.testing.twilio import standalone as twilio_standalone

CARRIERS = {
    "twilio": (twilio_standalone, ("--account-sid", "--auth-token"), "--say-ms-per-char"),
    "telnyx": (telnyx_standalone, ("--api-key", "--connection-id"), "--speak-ms-per-char"),
    "plivo": (plivo_standalone, ("--auth-id", "--auth-token", "--v2-only"), "--speak-ms-per-char"),
}
COMMON_OPTIONS = ("--port", "--answer-after", "--replies", "--webhook-port", "--time-scale")


@pytest.mark.parametrize("carrier", CARRIERS)
def test_standalone_simulator_help_describes_every_option(
        carrier: str, capsys: pytest.CaptureFixture[str]) -> None:
    module, credentials, speech_option = CARRIERS[carrier]
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    options = [a for a in module.build_parser()._actions if a.option_strings != ["-h", "--help"]]
    names = {name for action in options for name in action.option_strings}
    assert {*COMMON_OPTIONS, *credentials, speech_option} <= names
    for action in options:
        assert action.help and len(action.help) > 20, action.option_strings
        assert " ".join(action.help.split()).split("(default")[0].strip() in text


@pytest.mark.parametrize("carrier", CARRIERS)
async def test_standalone_simulator_config_block_works_as_pasted(carrier: str, tmp_path: Path) -> None:
    webhook_port = free_port()
    speech_option = CARRIERS[carrier][2]
    async with standalone_simulator(carrier, "--port", "0", "--webhook-port", str(webhook_port),
                                    "--answer-after", "0.1", speech_option, "5",
                                    "--replies", "I'm well, thanks") as (block, _proc):
        assert f'provider: "{carrier}"' in block
        config_file = tmp_path / "sim.json5"
        config_file.write_text(block)
        loaded = load_config(config_file, env={"OPENCLAW_STATE_DIR": str(tmp_path / "state"),
                                               "HOME": str(tmp_path)})
        async with Runtime(loaded, serve_control=False) as gateway:
            notify = await gateway.api.call("voicecall.initiate", {
                "message": "Your order has shipped", "mode": "notify"})
            final = await call_ended(gateway, notify["callId"], 15)
            assert final.answered_at is not None
            assert (final.state.value, final.end_reason) == ("completed", "completed")
            assert [t.text for t in final.transcript] == ["Your order has shipped"]
            assert final.metadata["endDetail"] == "notification delivered"  # nothing refused
            await eventually(lambda: not gateway.service.active_calls())  # its slot is free

            talk = await gateway.api.call("voicecall.initiate", {
                "message": "Hello from the clinic", "mode": "conversation"})
            answer = await gateway.api.call("voicecall.continue", {
                "callId": talk["callId"], "message": "How are you?"})
            assert answer["transcript"] == "I'm well, thanks"
            await gateway.api.call("voicecall.end", {"callId": talk["callId"]})
            final = await call_ended(gateway, talk["callId"], 15)
            assert final.answered_at is not None and final.end_reason == "hangup-bot"
            assert "endDetail" not in final.metadata  # no refused webhook to report
