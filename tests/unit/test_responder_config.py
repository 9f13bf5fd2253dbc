"""The responder's config: on by default, its tool settings, and what it refuses by name."""

from __future__ import annotations

import pytest

from voicecall.config import ConfigError, load_config_dict


def test_auto_reply_is_on_by_default_with_a_fallback_and_tool_limits() -> None:
    r = load_config_dict({}, env={}).config.responder
    assert r.enabled is True and r.type == "llm"
    assert r.fallback_message and r.max_tool_rounds == 4 and r.tool_timeout_ms == 10000
    assert r.mcp_servers == {} and r.tools == []


def test_mcp_servers_and_http_tools_load_with_their_secrets_hidden() -> None:
    servers = {"orders": {"command": "orders-mcp", "args": ["--fast"], "env": {"TOKEN": "s3cret"}},
               "remote": {"url": "https://mcp.example/mcp", "headers": {"Authorization": "Bearer x"}}}
    tools = [{"name": "book_table", "description": "Book.", "url": "https://tools.example/book"}]
    loaded = load_config_dict({"responder": {"mcpServers": servers, "tools": tools}}, env={})
    r = loaded.config.responder
    assert r.mcp_servers["orders"].env["TOKEN"].get_secret_value() == "s3cret"
    assert "s3cret" not in repr(r)
    assert r.tools[0].parameters == {"type": "object", "properties": {}}


@pytest.mark.parametrize(("responder", "path"), [
    ({"mcpServers": {"orders": {}}}, "responder.mcpServers.orders"),
    ({"mcpServers": {"orders": {"command": "x", "url": "https://mcp.example/mcp"}}},
     "responder.mcpServers.orders"),
    ({"tools": [{"name": "has space", "description": "d", "url": "https://t.example/"}]},
     "responder.tools[0].name"),
    ({"tools": [{"name": "t", "description": "d", "url": "ftp://t.example/"}]}, "responder.tools[0].url"),
    ({"maxToolRounds": 99}, "responder.maxToolRounds"),
])
def test_bad_tool_settings_are_refused_by_path(responder: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config_dict({"responder": responder}, env={})
    assert path in str(caught.value)
