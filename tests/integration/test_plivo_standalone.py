"""The standalone Plivo simulator (`python -m voicecall.testing.plivo`): its printed config block
works as pasted (a notify call and a conversation turn), and its command line is documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import call_ended, eventually, free_port, standalone_simulator
from voicecall.config import load_config
from voicecall.gateway.runtime import Runtime
from voicecall.testing.plivo.standalone import build_parser, main


def test_every_option_of_the_plivo_simulator_is_explained_in_its_help(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    options = {name: action for action in build_parser()._actions
               for name in action.option_strings if name not in ("-h", "--help")}
    assert {"--auth-id", "--auth-token", "--v2-only", "--speak-ms-per-char", "--replies"} <= set(options)
    for name, action in options.items():
        assert action.help and " ".join(action.help.split())[:40] in shown, name


async def test_the_printed_config_block_drives_a_gateway_as_pasted(tmp_path: Path) -> None:
    port = free_port()
    async with standalone_simulator("plivo", "--webhook-port", str(port), "--answer-after", "0.1",
                                    "--speak-ms-per-char", "5", "--replies",
                                    "Fine, thanks") as (block, _proc):
        assert 'provider: "plivo"' in block and "authId:" in block
        path = tmp_path / "sim.json5"
        path.write_text(block)
        config = load_config(path, env={"OPENCLAW_STATE_DIR": str(tmp_path / "state"),
                                        "HOME": str(tmp_path)})
        async with Runtime(config, serve_control=False) as gateway:
            notify = await gateway.api.call("voicecall.initiate",
                                            {"message": "Your parcel is here", "mode": "notify"})
            done = await call_ended(gateway, notify["callId"], 15)
            assert (done.end_reason, [t.text for t in done.transcript]) == (
                "completed", ["Your parcel is here"])
            await eventually(lambda: not gateway.service.active_calls())  # its slot is free
            talk = await gateway.api.call("voicecall.initiate",
                                          {"message": "Hi there", "mode": "conversation"})
            heard = await gateway.api.call("voicecall.continue",
                                           {"callId": talk["callId"], "message": "How are you?"})
            assert heard["transcript"] == "Fine, thanks"
            await gateway.api.call("voicecall.end", {"callId": talk["callId"]})
            assert (await call_ended(gateway, talk["callId"], 15)).end_reason == "hangup-bot"
