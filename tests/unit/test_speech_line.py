"""The speech line on its own: order, the reserved opening, the answer, and bounded waits that
say why they ran out."""

from __future__ import annotations

import asyncio

import pytest

from voicecall.service.line import Place, SpeechLine, TurnError


async def test_places_take_turns_in_arrival_order_behind_the_reserved_opening() -> None:
    line = SpeechLine(answered=False, opening=True)
    first, second = line.join("first"), line.join("second")
    turns: list[str] = []

    async def speak(place: Place, label: str) -> None:
        await line.wait_turn(place, 5)
        turns.append(label)
        line.leave(place)

    waiting = [asyncio.create_task(speak(second, "second")),
               asyncio.create_task(speak(first, "first"))]
    await asyncio.sleep(0.01)
    assert turns == []  # not answered yet
    line.answered()
    await asyncio.sleep(0.01)
    assert turns == []  # the opening goes first
    opening = line.claim_opening()
    assert opening is not None and line.claim_opening() is None
    await line.wait_turn(opening, 1)
    line.leave(opening)
    await asyncio.wait_for(asyncio.gather(*waiting), 5)
    assert turns == ["first", "second"]


async def test_waits_fail_with_their_reason() -> None:
    unanswered = SpeechLine(answered=False, opening=False)
    with pytest.raises(TurnError, match=r"not answered within 0\.05 s"):
        await unanswered.wait_turn(unanswered.join(), 0.05)
    busy = SpeechLine(answered=True, opening=False)
    busy.join()  # never leaves
    with pytest.raises(TurnError, match=r"earlier speech on the call did not finish within 0\.05 s"):
        await busy.wait_turn(busy.join(), 0.05)
    ending = SpeechLine(answered=False, opening=True)
    waiting = asyncio.create_task(ending.wait_turn(ending.join(), 5))
    await asyncio.sleep(0.01)
    ending.end("no-answer")
    with pytest.raises(TurnError, match=r"the call ended \(no-answer\)"):
        await asyncio.wait_for(waiting, 1)
