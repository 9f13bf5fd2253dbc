"""`voicecall.list` on the control API: filters, paging and the parameters it refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from voicecall.calls.model import CallRecord, CallState
from voicecall.providers.mock import MockProvider
from voicecall.server.rpc import ControlApi
from voicecall.service import CallError, CallService, ServiceSettings
from voicecall.store import SQLiteCallStore

INVALID_PARAMS = -32602


def rec(call_id: str, state: CallState, started_at: int, direction: str = "outbound") -> CallRecord:
    return CallRecord.model_validate({"callId": call_id, "provider": "mock", "direction": direction,
                                      "state": state, "from": "+15550000000", "to": "+15555550123",
                                      "startedAt": started_at})


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[ControlApi]:
    async with SQLiteCallStore(tmp_path) as store:
        await store.save(rec("ended-out", CallState.COMPLETED, 1))
        await store.save(rec("live-in", CallState.LISTENING, 2, "inbound"))
        await store.save(rec("busy-out", CallState.BUSY, 3))
        yield ControlApi(CallService(ServiceSettings(), MockProvider(), store, webhook_url=""))


async def ids(api: ControlApi, **params: Any) -> list[str]:
    return [c["callId"] for c in (await api.call("voicecall.list", params))["calls"]]


async def test_list_without_filters_returns_every_call_newest_first(api: ControlApi) -> None:
    result = await api.call("voicecall.list")
    assert [c["callId"] for c in result["calls"]] == ["busy-out", "live-in", "ended-out"]
    assert result["offset"] == 0 and result["nextOffset"] is None
    assert "processedEventIds" not in result["calls"][0]


async def test_list_state_accepts_live_ended_a_state_or_a_list(api: ControlApi) -> None:
    assert await ids(api, state="live") == ["live-in"]
    assert await ids(api, state="ended") == ["busy-out", "ended-out"]
    assert await ids(api, state="busy") == ["busy-out"]
    assert await ids(api, state=["completed", "listening"]) == ["live-in", "ended-out"]


async def test_list_filters_by_direction_and_since(api: ControlApi) -> None:
    assert await ids(api, direction="inbound") == ["live-in"]
    assert await ids(api, sinceMs=0, direction="outbound") == ["busy-out", "ended-out"]
    assert await ids(api, sinceMs=2**61) == []


async def test_list_pages_report_the_next_offset_until_the_last_page(api: ControlApi) -> None:
    first = await api.call("voicecall.list", {"limit": 2})
    assert [c["callId"] for c in first["calls"]] == ["busy-out", "live-in"]
    assert first["nextOffset"] == 2
    last = await api.call("voicecall.list", {"limit": 2, "offset": 2})
    assert [c["callId"] for c in last["calls"]] == ["ended-out"] and last["nextOffset"] is None


@pytest.mark.parametrize("params", [
    {"state": "nope"}, {"state": 3}, {"state": ["ended", 1]}, {"direction": "sideways"},
    {"limit": 0}, {"limit": 501}, {"limit": "5"}, {"offset": -1}, {"sinceMs": -5},
    {"sinceMs": True},
])
async def test_list_refuses_bad_parameters_as_invalid_params(api: ControlApi,
                                                             params: dict[str, Any]) -> None:
    with pytest.raises(CallError) as caught:
        await api.call("voicecall.list", params)
    assert caught.value.code == INVALID_PARAMS
