"""Command-line usage errors (an unknown command or option, a missing or invalid value) shown as
a short message and the usage line, with exit code 2, never a traceback.

Typer has raised them as `click.ClickException` and, since it vendors click, as its own
`ClickException`; both are recognised by the attributes click documents (`exit_code`,
`format_message`, `ctx`), so every typer release the project's dependency range admits works.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class UsageProblem:
    """What went wrong, the usage line and help hint of the command it concerns, the exit code."""

    message: str
    usage: str | None
    hint: str | None
    code: int
    help_text: str | None = None
    """The whole help, when the command was run without the arguments it needs."""


def usage_problem(exc: BaseException) -> UsageProblem | None:
    """The usage problem `exc` describes, or None if it is not a click-style usage exception."""
    format_message = getattr(exc, "format_message", None)
    code = getattr(exc, "exit_code", None)
    if not callable(format_message) or not isinstance(code, int):
        return None
    ctx: Any = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
        return UsageProblem("", None, None, code, help_text=ctx.get_help())
    message = " ".join(str(format_message()).split())
    param: Any = getattr(exc, "param", None)
    option = _option_name(param)
    if option and option not in message:
        message = f"{option}: {message}"
    usage = ctx.get_usage() if ctx is not None else None
    hint = f"Try '{ctx.command_path} --help' for help." if ctx is not None else None
    return UsageProblem(message, usage, hint, code)


def _option_name(param: Any) -> str | None:
    """The longest spelling of the option (or the argument's name) a problem is about."""
    if param is None:
        return None
    opts = [str(o) for o in getattr(param, "opts", ()) if str(o).startswith("-")]
    if opts:
        return max(opts, key=len)
    name = getattr(param, "name", None)
    return str(name).upper() if name else None


def render(problem: UsageProblem) -> str:
    """The text printed on stderr."""
    if problem.help_text is not None:
        return problem.help_text
    lines = [f"error: {problem.message}"]
    if problem.usage:
        lines.append(problem.usage)
    if problem.hint:
        lines.append(problem.hint)
    return "\n".join(lines)
