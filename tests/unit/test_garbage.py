"""How `voicecall serve` sets up the garbage collector."""

from __future__ import annotations

import gc

from voicecall.gateway.garbage import AUTOMATIC_THRESHOLDS, YOUNG_THRESHOLDS, settle_garbage_collector


def test_settling_freezes_start_up_objects_and_collects_young_objects_less_often() -> None:
    before = gc.get_threshold()
    try:
        settle_garbage_collector()
        young, middle, old = gc.get_threshold()
        assert (young, middle) == AUTOMATIC_THRESHOLDS
        assert young > YOUNG_THRESHOLDS[0]  # in-flight webhooks alone crossed the default
        assert old >= 1_000_000  # full collections are scheduled instead
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
