"""The standalone Telnyx simulator (`python -m voicecall.testing.telnyx`): its printed config
block works as pasted, and its command line is documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import ended, free_port
from tests.integration.test_twilio_standalone import standalone_simulator
from voicecall.config import load_config
from voicecall.gateway.runtime import Runtime
from voicecall.testing.telnyx.standalone import build_parser, main


def test_telnyx_standalone_help_describes_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    options = [a for a in build_parser()._actions if a.option_strings != ["-h", "--help"]]
    names = {name for action in options for name in action.option_strings}
    assert {"--api-key", "--connection-id", "--replies", "--speak-ms-per-char"} <= names
    for action in options:
        assert action.help and len(action.help) > 20, action.option_strings
        assert " ".join(action.help.split()).split("(default")[0].strip() in text


async def test_telnyx_standalone_config_block_works_as_pasted(tmp_path: Path) -> None:
    webhook_port = free_port()
    async with standalone_simulator("--port", "0", "--webhook-port", str(webhook_port),
                                    "--answer-after", "0.1", "--speak-ms-per-char", "5",
                                    "--replies", "I'm well, thanks",
                                    module="voicecall.testing.telnyx") as (block, _proc):
        assert 'provider: "telnyx"' in block and "publicUrl" not in block
        config_file = tmp_path / "sim.json5"
        config_file.write_text(block)
        loaded = load_config(config_file, env={"OPENCLAW_STATE_DIR": str(tmp_path / "state"),
                                               "HOME": str(tmp_path)})
        async with Runtime(loaded, serve_control=False) as gateway:
            notify = await gateway.api.call("voicecall.initiate", {
                "message": "Your order has shipped", "mode": "notify"})
            final = await ended(gateway, notify["callId"], 15)
            assert final.answered_at is not None and final.end_reason == "completed"
            assert [t.text for t in final.transcript] == ["Your order has shipped"]
            assert final.metadata["endDetail"] == "notification delivered"  # nothing refused

            talk = await gateway.api.call("voicecall.initiate", {
                "message": "Hello from the clinic", "mode": "conversation"})
            answer = await gateway.api.call("voicecall.continue", {
                "callId": talk["callId"], "message": "How are you?"})
            assert answer["transcript"] == "I'm well, thanks"
            await gateway.api.call("voicecall.end", {"callId": talk["callId"]})
            final = await ended(gateway, talk["callId"], 15)
            assert final.end_reason == "hangup-bot" and "endDetail" not in final.metadata
