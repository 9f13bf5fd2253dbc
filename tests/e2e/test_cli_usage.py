"""Usage errors through the real `voicecall` entry point: a short message naming the option, the
usage line, exit code 2, never a traceback (whatever typer release is installed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

VOICECALL = [sys.executable, "-m", "voicecall"]


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "voicecall.json"
    if not config.exists():
        config.write_text(json.dumps({"provider": "mock", "outbound": {"notifyHangupDelaySec": 0},
                                      "serve": {"port": 0}, "control": {"port": 0}}))
    env = {**os.environ, "HOME": str(tmp_path), "OPENCLAW_STATE_DIR": str(tmp_path / "state"),
           "VOICECALL_CONFIG": str(config)}
    return subprocess.run([*VOICECALL, *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("args", "names"), [
    (["bogus"], "No such command 'bogus'"),
    (["call", "--to", "+15555550123"], "--message"),
    (["store", "export"], "--file"),
    (["latency", "--last", "0"], "--last"),
    (["config", "show", "--no-json"], "--no-json"),
    (["call", "--to", "+15555550123", "-m", ""], "--message"),
    (["speak", "--call-id", "c1", "-m", "   "], "--message"),
    (["call", "--to", "555-0123", "-m", "hi"], "--to"),
    (["transfer", "--call-id", "c1", "--to", "the desk"], "--to"),
    (["transfer", "--call-id", "c1"], "--to"),
])
def test_a_usage_error_is_one_line_naming_the_problem_with_the_usage_and_exit_2(
        tmp_path: Path, args: list[str], names: str) -> None:
    result = run(tmp_path, *args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and names in lines[0], lines
    assert lines[1].startswith("Usage: voicecall") and len(lines) == 3, lines


def test_version_prints_the_package_version() -> None:
    from importlib.metadata import version

    result = subprocess.run([*VOICECALL, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == f"voicecall {version('voicecall')}"


def test_help_has_no_type_placeholders_on_flags_and_lists_only_built_carriers(tmp_path: Path) -> None:
    from voicecall.providers.registry import BUILTIN

    top = run(tmp_path, "--help")
    assert top.returncode == 0
    named = {c for c in ("twilio", "telnyx", "plivo", "vonage", "bandwidth", "signalwire", "mock")
             if c in top.stdout.lower()}
    assert named == set(BUILTIN), (named, sorted(BUILTIN))  # the built carriers, no others
    for command in (["--help"], ["call", "--help"], ["status", "--help"], ["doctor", "--help"]):
        shown = run(tmp_path, *command)
        assert shown.returncode == 0 and "<bool>" not in shown.stdout, shown.stdout


def test_a_number_written_with_spaces_is_called_in_e164_form(tmp_path: Path) -> None:
    placed = run(tmp_path, "call", "--to", "+1 (555) 555-0123", "-m", "Hello", "--mode", "notify",
                 "--json")
    assert placed.returncode == 0, placed.stderr
    call_id = json.loads(placed.stdout)["callId"]
    status = json.loads(run(tmp_path, "status", "--call-id", call_id, "--json").stdout)
    assert status["call"]["to"] == "+15555550123"


def test_the_typer_the_cli_runs_on_is_in_the_range_pyproject_admits() -> None:
    """`.ci/run` repeats this file with the oldest typer of the range on PYTHONPATH."""
    import re
    import tomllib

    deps = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"][
        "dependencies"]
    spec = next(d for d in deps if d.startswith("typer"))
    low, high = (tuple(int(p) for p in v.split(".")) for v in re.findall(r"[<>]=?([\d.]+)", spec))
    shown = subprocess.run([sys.executable, "-c", "from importlib.metadata import version; "
                            "print(version('typer'))"], capture_output=True, text=True, timeout=60)
    running = tuple(int(p) for p in shown.stdout.strip().split(".")[:2])
    assert low[:2] <= running < high[:2], (spec, shown.stdout)


HEAVY = ("openai", "anthropic", "numpy", "starlette", "uvicorn", "soxr", "mcp")


@pytest.mark.parametrize("args", [["--help"], ["call", "--help"], ["call", "--to", "1", "-m", "x"]])
def test_help_and_usage_errors_do_not_load_the_gateway_stack(args: list[str]) -> None:
    code = ("import sys\nfrom voicecall.cli.app import main\n"
            f"sys.argv = ['voicecall', *{args!r}]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(' '.join(sorted(sys.modules)), file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    loaded = set(result.stderr.strip().splitlines()[-1].split())
    assert "voicecall.cli.app" in loaded
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}, sorted(
        m for m in loaded if m.split(".")[0] in HEAVY)[:10]


def test_config_show_exits_1_when_the_config_has_problems(tmp_path: Path) -> None:
    (tmp_path / "voicecall.json").write_text(json.dumps({"provider": "twilio"}))
    shown = run(tmp_path, "config", "show")
    assert shown.returncode == 1, shown.stderr
    assert json.loads(shown.stdout)["provider"] == "twilio"
    assert "problem:" in shown.stderr and "twilio" in shown.stderr
    (tmp_path / "voicecall.json").write_text(json.dumps({"provider": "mock"}))
    assert run(tmp_path, "config", "show").returncode == 0
