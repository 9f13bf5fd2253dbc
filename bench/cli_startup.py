"""How long `voicecall --help` and `voicecall status` take, start to exit, and what they import.

Runs each command `--runs` times in a fresh process (after one unmeasured run that warms the
page cache) with a temporary state directory. The package is byte-compiled first, as `pip install`
leaves it (a checkout run with PYTHONDONTWRITEBYTECODE=1 would otherwise compile every module
from source on every start); `status` is measured against a running mock-carrier
gateway, which is how it is used. Prints one JSON object:

    {"helpMs": {"median", "min", "max"}, "statusMs": {...}, "targetMs": 300,
     "helpImportsHeavy": [...], "env": {"python", "runs"}}
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

VOICECALL = [sys.executable, "-m", "voicecall"]
HEAVY = ("openai", "numpy", "starlette", "uvicorn", "soxr", "mcp")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(args: list[str], env: dict[str, str], runs: int) -> dict[str, float]:
    subprocess.run([*VOICECALL, *args], env=env, capture_output=True, check=False, timeout=60)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([*VOICECALL, *args], env=env, capture_output=True, check=False, timeout=60)
        samples.append((time.perf_counter() - started) * 1000)
    return {"median": round(statistics.median(samples), 1), "min": round(min(samples), 1),
            "max": round(max(samples), 1)}


def wait_for_health(port: int, gateway: subprocess.Popen[bytes]) -> None:
    """Until the gateway's control API answers (a status without it reads the store instead)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and gateway.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the gateway did not start")


def heavy_imports(env: dict[str, str]) -> list[str]:
    code = ("import sys\nfrom voicecall.cli.app import main\nsys.argv = ['voicecall', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(' '.join(sorted(sys.modules)), file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            timeout=60)
    loaded = result.stderr.strip().splitlines()[-1].split()
    return sorted({m.split(".")[0] for m in loaded if m.split(".")[0] in HEAVY})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    options = parser.parse_args()
    import voicecall

    for package_dir in voicecall.__path__:
        compileall.compile_dir(package_dir, quiet=1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = root / "voicecall.json"
        control_port = free_port()
        config.write_text(json.dumps({"provider": "mock", "serve": {"port": free_port()},
                                      "control": {"port": control_port}}))
        env = {**os.environ, "HOME": tmp, "OPENCLAW_STATE_DIR": str(root / "state"),
               "VOICECALL_CONFIG": str(config)}
        result: dict[str, Any] = {"helpMs": timed(["--help"], env, options.runs)}
        gateway = subprocess.Popen([*VOICECALL, "serve"], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            wait_for_health(control_port, gateway)
            result["statusMs"] = timed(["status"], env, options.runs)
        finally:
            gateway.terminate()
            gateway.wait(timeout=15)
        result["targetMs"] = 300
        result["helpImportsHeavy"] = heavy_imports(env)
        result["env"] = {"python": sys.version.split()[0], "runs": options.runs}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
