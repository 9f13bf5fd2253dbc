"""The `voicecall` command. Human-readable output by default, `--json` everywhere, a one-line
reason and a non-zero exit code on failure."""

from __future__ import annotations

import logging
import sys
import time

import typer
from rich.markup import escape

# isort: off
# Each module registers its commands on import; `voicecall --help` lists them in this order.
from voicecall.cli import run
from voicecall.cli import calls
from voicecall.cli import admin
# isort: on
from voicecall.cli.common import (
    Exit,
    app,
    err,
)
from voicecall.cli.usage import render, usage_problem

__all__ = ["admin", "app", "calls", "main", "run"]


def main() -> None:
    """Console-script entry point."""
    started = time.monotonic()
    try:
        # standalone_mode=False: click returns an Exit's code and raises usage errors to us.
        code = app(prog_name="voicecall", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except Exit as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(exc.code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except Exception as exc:
        problem = usage_problem(exc)
        if problem is None:
            raise
        print(render(problem), file=sys.stderr)
        sys.exit(problem.code)
    finally:
        logging.getLogger(__name__).debug("done in %.2fs", time.monotonic() - started)
