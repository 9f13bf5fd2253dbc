"""`PythonResponder`: a user's Python function (`module:function` or an entry point) answers.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from importlib.metadata import entry_points
from typing import Any

from voicecall.agent.turn import (
    ENTRY_POINT_GROUP,
    IDLE_FLUSH_S,
    ChunkJoiner,
    ResponderError,
    TurnContext,
    sentence_stream,
)

log = logging.getLogger(__name__)


# -- Python ----------------------------------------------------------------------------------------
TurnFunction = Callable[[TurnContext], object]
_NOTHING = object()


def load_target(target: str) -> TurnFunction:
    """`module:function` (attribute path allowed), or an entry point in group `voicecall.responders`."""
    target = target.strip()
    obj: Any
    if ":" in target:
        module_name, _, attr = target.partition(":")
        try:
            obj = importlib.import_module(module_name)
        except ImportError as exc:
            raise ResponderError(f"cannot import responder module {module_name!r}: {exc}") from None
        for part in attr.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise ResponderError(
                    f"responder {target!r}: {module_name} has no attribute {attr!r}") from None
    else:
        found = list(entry_points(group=ENTRY_POINT_GROUP, name=target))
        if not found:
            raise ResponderError(f"no responder {target!r}: expected 'module:function' or the name of an "
                                 f"entry point in group {ENTRY_POINT_GROUP!r}")
        try:
            obj = found[0].load()
        except Exception as exc:
            raise ResponderError(f"cannot load responder entry point {target!r}: {exc}") from None
    if not callable(obj):
        raise ResponderError(f"responder {target!r} is not callable")
    fn: TurnFunction = obj
    return fn


def _runs_on_loop(fn: TurnFunction) -> bool:
    call: object = fn
    if not (inspect.isfunction(fn) or inspect.ismethod(fn)):
        call = type(fn).__call__  # a callable object: look at its __call__
    return inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call)


class PythonResponder:
    """Calls a Python function with the `TurnContext`.

    The function may return a str, an awaitable of str, or an (async) iterator of str chunks
    (chunks are concatenated; a space is put between a chunk ending a sentence and a capitalised
    next one). Plain (non-async) functions and generators run in a worker thread, so blocking
    code does not stall calls.
    """

    def __init__(self, target: str | TurnFunction) -> None:
        if isinstance(target, str):
            self.target = target
            self._fn = load_target(target)
        else:
            self.target = getattr(target, "__qualname__", repr(target))
            self._fn = target

    def __repr__(self) -> str:
        return f"PythonResponder({self.target!r})"

    async def reply(self, ctx: TurnContext) -> AsyncIterator[str]:
        async for sentence in sentence_stream(lambda: self._deltas(ctx), spoken=False,
                                              timeout_s=ctx.timeout_s, what="python responder",
                                              idle_flush_s=IDLE_FLUSH_S):
            yield sentence

    async def _deltas(self, ctx: TurnContext) -> AsyncGenerator[str, None]:
        fn = self._fn
        try:
            result = fn(ctx) if _runs_on_loop(fn) else await asyncio.to_thread(fn, ctx)
            join = ChunkJoiner()
            async for chunk in self._chunks(result):
                yield join(chunk)
        except ResponderError:
            raise
        except Exception as exc:
            log.debug("python responder %s raised", self.target, exc_info=True)
            raise ResponderError(
                f"python responder {self.target} failed: {type(exc).__name__}: {exc}") from None

    async def _chunks(self, result: object) -> AsyncIterator[str]:
        if result is None:
            return
        if isinstance(result, str):
            yield result
        elif inspect.isawaitable(result):
            async for chunk in self._chunks(await _awaited(result)):
                yield chunk
        elif isinstance(result, AsyncIterable):
            async for chunk in result:
                yield self._text(chunk)
        elif isinstance(result, Iterator) and inspect.isgenerator(result):
            while (item := await asyncio.to_thread(_next_or_nothing, result)) is not _NOTHING:
                yield self._text(item)
        elif isinstance(result, Iterable) and not isinstance(result, bytes | bytearray | Mapping):
            for chunk in result:
                yield self._text(chunk)
        else:
            raise ResponderError(f"python responder {self.target} returned {type(result).__name__}; "
                                 "expected str, an awaitable of str or an iterator of str")

    def _text(self, chunk: object) -> str:
        if isinstance(chunk, str):
            return chunk
        raise ResponderError(f"python responder {self.target} yielded {type(chunk).__name__}, expected str")


def _next_or_nothing(iterator: Iterator[object]) -> object:
    return next(iterator, _NOTHING)


async def _awaited(awaitable: Awaitable[object]) -> object:
    return await awaitable
