"""Commands that look after the gateway: store, config, tool-schema, mcp, expose, token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from voicecall.cli.common import (
    JsonOpt,
    app,
    config_app,
    emit,
    err,
    fail,
    loaded_config,
    out,
    run_coro,
)
from voicecall.cli.session import live_api

# -- store import / export -------------------------------------------------------------------
store_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                        help="Move call history in and out (JSONL).")
app.add_typer(store_app, name="store")


@store_app.command("export")
def store_export(file: Annotated[Path, typer.Option(help="Where to write calls.jsonl.")],
                 as_json: JsonOpt = False) -> None:
    """Write every record snapshot as one CallRecord JSON per line (the original's calls.jsonl)."""
    loaded = loaded_config(require_valid=False)

    async def run() -> int:
        from voicecall.config import store_dir
        from voicecall.store import SQLiteCallStore

        async with SQLiteCallStore(store_dir(loaded.config, loaded.env)) as store:
            return await store.export_jsonl(file)

    count = run_coro(run())
    emit({"exported": count, "file": str(file)}, as_json,
          lambda r: out.print(f"exported {count} snapshots to {file}"))


@store_app.command("import")
def store_import(file: Annotated[Path, typer.Option(help="A calls.jsonl to import.")],
                 as_json: JsonOpt = False) -> None:
    """Import a calls.jsonl: the last snapshot of each call wins; invalid lines are skipped."""
    if not file.exists():
        fail(f"No log file at {file}")
    loaded = loaded_config(require_valid=False)

    async def run() -> int:
        from voicecall.config import store_dir
        from voicecall.store import SQLiteCallStore

        async with SQLiteCallStore(store_dir(loaded.config, loaded.env)) as store:
            return await store.import_jsonl(file)

    count = run_coro(run())
    emit({"imported": count, "file": str(file)}, as_json,
          lambda r: out.print(f"imported {count} calls from {file}"))


# -- config, tool, mock -----------------------------------------------------------------------
@config_app.command("show")
def config_show(as_json: JsonOpt = True) -> None:
    """Print the effective configuration, secrets redacted; exits 1 if it has problems."""
    from voicecall.config import redacted_config

    loaded = loaded_config(require_valid=False)
    out.print_json(json.dumps(redacted_config(loaded.config)))
    for issue in loaded.issues:
        err.print(f"[red]problem:[/] {issue.path}: {issue.message}")
    if loaded.issues:
        raise typer.Exit(1)


@config_app.command("schema")
def config_schema(as_json: JsonOpt = True) -> None:
    """Print the configuration's JSON Schema."""
    from voicecall.config import config_json_schema

    out.print_json(json.dumps(config_json_schema()))


@app.command("tool-schema")
def tool_schema_cmd(as_json: JsonOpt = True) -> None:
    """Print the `voice_call` agent tool (OpenAI function-calling JSON Schema)."""
    from voicecall.agent.tool import tool_schema

    out.print_json(json.dumps(tool_schema()))


@app.command("mcp")
def mcp_cmd() -> None:
    """Serve the `voice_call` tool over MCP on stdio (for agent hosts: Claude, Cursor, ...).

    Calls go to the running gateway; with none running, to a standalone runtime in this process.
    """
    from voicecall import __version__
    from voicecall.agent.mcp_server import serve_mcp_stdio

    loaded = loaded_config()

    async def run() -> None:
        async with live_api(loaded) as (api, _runtime):
            await serve_mcp_stdio(api.call, version=__version__)

    run_coro(run())


@app.command()
def expose(
    mode: Annotated[str, typer.Option(help="off, serve (tailnet only) or funnel (public); "
                    "anything else means funnel.")] = "funnel",
    path: Annotated[str | None, typer.Option(help="Path to expose (default: tailscale.path, "
                    "else the serve path).")] = None,
    port: Annotated[int | None, typer.Option(help="Local webhook port (default: serve.port "
                    "or 3334).")] = None,
    serve_path: Annotated[str | None, typer.Option("--serve-path", help="Local webhook path "
                          "(default: serve.path).")] = None,
    https_port: Annotated[int | None, typer.Option("--https-port", min=1, max=65535,
                          help="HTTPS port Tailscale serves on (default: tailscale.port; funnel: "
                          "443, 8443 or 10000).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Turn Tailscale serve/funnel for the webhook port (and, with media streaming on, the stream
    path) on or off; exits 1 when it fails."""
    from voicecall.config.schema import FUNNEL_PORTS, funnel_port_message
    from voicecall.gateway.exposure import expose as run_expose

    c = loaded_config(require_valid=False).config
    local_path = serve_path or c.serve.path or "/voice/webhook"
    ts_path = path or (c.tailscale.path if "path" in c.tailscale.model_fields_set else local_path)
    ts_mode = mode.strip().lower()
    ts_port = https_port or c.tailscale.port
    if ts_mode not in ("off", "serve") and ts_port not in FUNNEL_PORTS:
        fail(f"tailscale.port {funnel_port_message(ts_port)}", 2)
    stream_path = (c.streaming.stream_path if c.streaming.enabled else
                   c.realtime.stream_path if c.realtime.enabled else None)
    report, error = run_coro(run_expose(ts_mode, ts_path, port or c.serve.port or 3334,
                                        https_port=ts_port, stream_path=stream_path))
    if error:
        err.print(f"[red]error:[/] {error}", highlight=False)

    def human(r: dict[str, Any]) -> None:
        if r["mode"] == "off":
            out.print(f"tailscale serve/funnel off for {r['path']}", highlight=False)
        elif r["ok"]:
            out.print(f"tailscale {r['mode']}: {r['publicUrl']} -> {r['localUrl']}", highlight=False)
            if r.get("streamUrl"):
                out.print(f"media streams: {r['streamUrl']}", highlight=False)
        else:
            out.print(f"tailscale {r['mode']} for {r['path']} failed. {r['hint']['note']}",
                      highlight=False)
            if r["hint"]["enableUrl"]:
                out.print(f"enable it at {r['hint']['enableUrl']}", highlight=False)

    emit(report, as_json, human)
    if not report["ok"]:
        raise typer.Exit(1)


@app.command("token")
def token_cmd(as_json: JsonOpt = False) -> None:
    """Print the control API token (for the Python client or curl)."""
    from voicecall.config import resolve_control_token

    loaded = loaded_config(require_valid=False)
    token = resolve_control_token(loaded.config, loaded.env)
    emit({"token": token}, as_json, lambda r: print(token))


@app.command("console")
def console_cmd(
    open_browser: Annotated[bool, typer.Option(
        "--open", help="Open the URL in the default browser.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Print a one-time sign-in URL for the web console of the running gateway."""
    from voicecall.cli.common import reported
    from voicecall.cli.session import probe_gateway

    loaded = loaded_config()
    client = probe_gateway(loaded)
    if client is None:
        fail("no gateway is running; start one with `voicecall serve`, then run this again")
    with reported():
        code = client.call("console.loginCode", {})["code"]
    url = f"{client.base_url}/login?code={code}"
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    emit({"url": url, "expiresInS": 300}, as_json,
         lambda r: print(f"{url}\n(works once, within 5 minutes)"))
