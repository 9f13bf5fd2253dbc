"""The `voicecall` command. Human-readable output by default, `--json` everywhere, a one-line
reason and a non-zero exit code on failure."""

from __future__ import annotations

import logging
import sys
import time

import typer

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

__all__ = ["admin", "app", "calls", "main", "run"]


def main() -> None:
    """Console-script entry point."""
    started = time.monotonic()
    try:
        code = app(standalone_mode=False)  # click returns an Exit's code instead of raising
        if isinstance(code, int) and code:
            sys.exit(code)
    except Exit as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(exc.code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    finally:
        logging.getLogger(__name__).debug("done in %.2fs", time.monotonic() - started)
