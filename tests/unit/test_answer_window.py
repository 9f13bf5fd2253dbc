"""`AnswerWindow` (D45): the first document of a call rides in the answer whichever side comes
first, and a document no answer takes is handed back to be sent by REST, never lost or sent
twice."""

from __future__ import annotations

import asyncio

import pytest

from voicecall.providers import answer_window
from voicecall.providers.answer_window import AnswerWindow


async def test_a_document_parked_before_the_answer_is_taken_by_it() -> None:
    window = AnswerWindow()
    parked = asyncio.create_task(window.park("<Say>hi</Say>"))
    await asyncio.sleep(0)
    assert await window.take(wait=False) == "<Say>hi</Say>"
    assert await parked is True


async def test_an_answer_that_expects_speech_waits_for_the_document() -> None:
    window = AnswerWindow()
    taking = asyncio.create_task(window.take(wait=True))
    await asyncio.sleep(0.01)
    assert await window.park("<Say>hi</Say>") is True
    assert await taking == "<Say>hi</Say>"


async def test_an_answer_that_expects_nothing_closes_the_window_at_once() -> None:
    window = AnswerWindow()
    assert await window.take(wait=False) is None
    assert await window.park("<Say>late</Say>") is False  # send it by REST


async def test_an_answer_waits_only_a_bounded_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(answer_window, "ANSWER_WAIT_S", 0.05)
    window = AnswerWindow()
    assert await asyncio.wait_for(window.take(wait=True), 1) is None
    assert await window.park("<Say>late</Say>") is False


async def test_a_parked_document_no_answer_takes_is_reclaimed_for_rest(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(answer_window, "PARK_WAIT_S", 0.05)
    window = AnswerWindow()
    assert await window.park("<Say>hi</Say>") is False
    assert await window.take(wait=False) is None  # a late answer does not send it again


async def test_a_closed_window_takes_nothing() -> None:
    window = AnswerWindow()
    window.close()
    assert await window.park("<Say>hi</Say>") is False
