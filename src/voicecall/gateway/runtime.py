"""The composition root: reads the config and wires store, carrier, call service, webhook server
and control API. Nothing else constructs long-lived objects.

>>> async with Runtime(load_config()) as runtime:
...     await runtime.api.call("voicecall.initiate", {"to": "+15555550123", "message": "Hi"})
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import uvicorn

from voicecall.config import (
    ConfigError,
    ConfigIssue,
    LoadedConfig,
    VoiceCallConfig,
    config_fingerprint,
    resolve_control_token,
    store_dir,
)
from voicecall.gateway.exposure import Exposure, is_local_only, resolve_exposure, use_public_url
from voicecall.gateway.history_import import import_original_history
from voicecall.gateway.ports import bind_listener
from voicecall.providers.base import Provider
from voicecall.providers.registry import build_provider
from voicecall.security.public_url import normalize_ip
from voicecall.server.connection_guard import ConnectionGuard
from voicecall.server.console.auth import ConsoleAuth
from voicecall.server.control import build_control_app
from voicecall.server.metrics import GatewayMetrics
from voicecall.server.rpc import ControlApi
from voicecall.server.serving import WsImpl, serve_on
from voicecall.server.webhook import WebhookApp
from voicecall.service import CallService, ServiceSettings
from voicecall.service.settings import TransferSettings
from voicecall.speech.realtime import selected_provider
from voicecall.store import SQLiteCallStore

if TYPE_CHECKING:
    from voicecall.agent.consult import AgentConsult
    from voicecall.agent.conversation import AutoReply
    from voicecall.agent.http_tools import HttpTools
    from voicecall.agent.mcp_tools import McpTools
    from voicecall.agent.responder import Responder
    from voicecall.agent.tools import ToolSource
    from voicecall.media.cache import CachedSpeech
    from voicecall.media.hub import MediaHub, RealtimeOptions
    from voicecall.server.console.browser_call import BrowserCalls
    from voicecall.server.media_ws import MediaEndpoint
    from voicecall.speech.tts import TtsChain

log = logging.getLogger(__name__)


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def stream_url_for(webhook_url: str, stream_path: str) -> str:
    """The media-stream URL carriers dial: the webhook's host with ws(s):// and the stream path."""
    parts = urlsplit(webhook_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, stream_path, "", ""))


class Runtime:
    """One gateway: carrier + call service + webhook listener (+ control listener)."""

    def __init__(self, loaded: LoadedConfig, *, serve_control: bool = True,
                 reaper_interval_s: float = 30.0, host_pid: int | None = None) -> None:
        """`host_pid`: this runtime hosts calls for one CLI command (no gateway running); the
        calls it places record that process, so a later start ends them once it is gone."""
        loaded.raise_for_issues()
        if not loaded.config.enabled:
            raise ConfigError([ConfigIssue("enabled", "voice calls are disabled; set "
                                           "plugins.entries.voice-call.enabled to true")],
                              source=loaded.source)
        self.loaded = loaded
        self.config = loaded.config
        self.serve_control = serve_control
        self.reaper_interval_s = reaper_interval_s
        self.host_pid = host_pid
        self.token = resolve_control_token(self.config, loaded.env)
        self.store = SQLiteCallStore(store_dir(self.config, loaded.env))
        self.provider: Provider = build_provider(self.config)
        self.realtime_provider = selected_provider(self.config.realtime, warn=True)
        """The realtime voice provider calls are bridged to (D120); None: the classic path."""
        self.webhook_url = ""
        self.control_url = ""
        self.exposure = Exposure()
        self._servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []
        self._started = False
        self._responder: Responder | None = None
        self._mcp: list[McpTools] = []
        self._http_tools: HttpTools | None = None
        self.media: MediaHub | None = None
        self.media_endpoint: MediaEndpoint | None = None
        self.connection_guard: ConnectionGuard | None = None
        """Header deadline and connection caps of the webhook port (D65)."""
        self.tts_chain: TtsChain | None = None
        self.speech_cache: CachedSpeech | None = None
        self.route_speech: dict[str, CachedSpeech] = {}
        self._warm_task: asyncio.Task[None] | None = None
        self.service: CallService
        self.api: ControlApi
        self.metrics: GatewayMetrics
        self.console = ConsoleAuth(self.token)
        self.browser_calls: BrowserCalls | None = None

    def _settings(self) -> ServiceSettings:
        c = self.config
        return ServiceSettings(
            provider_name=self.provider.name,
            from_number=c.from_number or "+15550000000",
            max_concurrent_calls=c.max_concurrent_calls,
            max_duration_seconds=c.max_duration_seconds,
            transcript_timeout_ms=c.transcript_timeout_ms,
            ring_timeout_ms=c.ring_timeout_ms,
            notify_hangup_delay_sec=c.outbound.notify_hangup_delay_sec,
            stale_call_reaper_seconds=c.stale_call_reaper_seconds,
            reaper_interval_s=self.reaper_interval_s,
            default_mode=c.outbound.default_mode,
            inbound_policy=c.inbound_policy,
            allow_from=tuple(c.allow_from),
            inbound_greeting=c.inbound_greeting,
            session_scope=c.session_scope,
            agent_id=c.agent_id,
            routes={number: route.model_dump(mode="json", by_alias=True, exclude_none=True)
                    for number, route in c.numbers.items()},
            auto_reply=c.responder.enabled and self.realtime_provider is None,
            idle_prompt_after_s=c.idle.prompt_after_sec,
            idle_prompt=c.idle.prompt,
            idle_hangup_after_s=c.idle.hangup_after_sec,
            idle_goodbye=c.idle.goodbye,
            transfer=TransferSettings(
                allowed_numbers=tuple(c.transfer.allowed_numbers), caller_id=c.transfer.caller_id,
                timeout_s=c.transfer.timeout_sec,
                unavailable_message=c.transfer.unavailable_message),
            host_pid=self.host_pid,
        )

    def _bind(self) -> tuple[socket.socket, socket.socket | None]:
        """Both listening sockets, bound before anything else (a busy port fails fast)."""
        c = self.config
        webhook_sock = bind_listener(c.serve.bind, c.serve.port, "webhook")
        try:
            control_sock = (bind_listener(c.control.bind, c.control.port, "control")
                            if self.serve_control else None)
        except Exception:
            webhook_sock.close()
            raise
        return webhook_sock, control_sock

    async def _expose(self, port: int, local_url: str) -> None:
        """The webhook's public URL (configured, tunnel or Tailscale), checked for the carrier."""
        c = self.config
        self.exposure = await resolve_exposure(c, port, self.loaded.env)
        self.webhook_url = self.exposure.public_url or local_url
        if self.provider.requires_public_webhook and is_local_only(self.webhook_url):
            raise ConfigError([ConfigIssue(
                "publicUrl", f"{self.provider.name} must reach the webhook from the internet, but "
                f"{self.webhook_url} is local-only; set publicUrl (or a tunnel)")],
                source=self.loaded.source)
        if self.exposure.tunnel is not None:
            use_public_url(self.provider, self.webhook_url)

    async def _build_service(self) -> type[asyncio.Protocol] | None:
        """Open the store and build the call service, its API, replies, media and metrics; the
        WebSocket implementation the webhook listener needs (None without media streams)."""
        c = self.config
        await self.store.__aenter__()
        await import_original_history(self.store, store_dir(c, self.loaded.env))
        self.service = CallService(self._settings(), self.provider, self.store,
                                   webhook_url=self.webhook_url)
        inject = getattr(self.provider, "inject", None)
        self.api = ControlApi(self.service, to_number=c.to_number,
                              inject=self._injector(inject) if inject else None,
                              media_stats=self._media_stats,
                              config_info=self._config_info())
        if c.responder.enabled and self.realtime_provider is None:
            self.service.turn_handler = self._auto_reply()
        ws = (self._media(self.service) if c.streaming.enabled or self.realtime_provider
              else None)
        await asyncio.gather(*(mcp.start() for mcp in self._mcp))
        if self.media is not None:  # talking to the agent from the console (D112)
            from voicecall.server.console.browser_call import BrowserCalls

            self.browser_calls = BrowserCalls(self.service, self.media, self.console,
                                              to=c.from_number or "console")
        self.metrics = GatewayMetrics(self.service, media_stats=self._media_counts)
        return ws

    async def _start_parts(self) -> None:
        await self.provider.start()
        await self.service.start()
        if self.media is not None:
            await self.media.start()
            if self.realtime_provider is None:  # realtime calls speak with the model's voice
                self._warm_task = asyncio.create_task(self._warm_phrases(), name="voicecall-warm-tts")

    async def _serve_both(self, webhook_sock: socket.socket, control_sock: socket.socket | None,
                          ws: type[asyncio.Protocol] | None) -> None:
        c = self.config
        webhook_app = WebhookApp(
            provider=self.provider, apply_events=self.service.apply_events,
            replays=self.store, rejections=self.service.rejections,
            path=c.serve.path, skip_signature_verification=c.skip_signature_verification,
            trusted_proxies=_trusted_proxies(c), observer=self.metrics.on_webhook)
        self.connection_guard = ConnectionGuard()
        await self._serve(webhook_app, webhook_sock, ws=ws, guard=self.connection_guard)
        if control_sock is not None:
            chost, cport = control_sock.getsockname()[:2]
            self.control_url = f"http://{_host_for_url(chost)}:{cport}"
            await self._serve(build_control_app(
                self.api, self.token, metrics=self.metrics,
                metrics_public=c.control.metrics_public, readiness=self.readiness,
                console=self.console, stream_stats=self._stream_stats,
                browser_calls=self.browser_calls), control_sock, ws="websockets-sansio")

    async def start(self) -> None:
        """Bind both ports first (a busy port fails fast and plainly), then restore and serve."""
        if self._started:
            return
        c = self.config
        if c.skip_signature_verification:
            log.warning("SECURITY WARNING: skipSignatureVerification is on; webhooks are not "
                        "authenticated. Use it only for local tests.")
        webhook_sock, control_sock = self._bind()
        host, port = webhook_sock.getsockname()[:2]
        local_url = f"http://{_host_for_url(host)}:{port}{c.serve.path}"
        try:  # publicUrl > tunnel.provider > tailscale.mode; stopped again if start fails
            await self._expose(port, local_url)
        except BaseException:
            _close(webhook_sock, control_sock)
            await self.exposure.stop()
            raise
        try:
            ws = await self._build_service()
            await self._start_parts()
            await self._serve_both(webhook_sock, control_sock, ws)
        except BaseException:
            _close(webhook_sock, control_sock)
            await self._teardown()
            raise
        self._started = True
        log.info("voicecall gateway: carrier %s, webhooks at %s, control at %s",
                 self.provider.name, local_url, self.control_url or "(off)")

    def _config_info(self) -> dict[str, str | None]:
        """Which configuration this gateway runs with, as `status` and `/health` report it."""
        source = self.loaded.source
        return {"configFingerprint": config_fingerprint(self.config),
                "configPath": str(source) if source is not None else None}

    def _media(self, service: CallService) -> type[asyncio.Protocol]:
        """Media streaming: the hub (TTS out, STT in, pacing) and the WebSocket endpoint class."""
        from voicecall.calls.model import CallRecord
        from voicecall.config.loader import deep_merge
        from voicecall.config.schema import TtsConfig
        from voicecall.media.cache import CachedSpeech
        from voicecall.media.hub import MediaHub, SttFactory
        from voicecall.media.playback import Speech
        from voicecall.server.media_ws import MediaEndpoint, MediaLimits
        from voicecall.speech.stt import SttError, build_stt_session
        from voicecall.speech.tts import build_tts_chain

        c, env = self.config, self.loaded.env
        streams = self.provider.media_streams
        if streams is None:
            key = "realtime.enabled" if self.realtime_provider else "streaming.enabled"
            raise ConfigError([ConfigIssue(key, f"the {self.provider.name} carrier has "
                                           "no media streams")], source=self.loaded.source)
        chain = build_tts_chain(c.tts, env)
        realtime = self._realtime(service) if self.realtime_provider else None
        if not chain.providers and realtime is None:
            raise ConfigError([ConfigIssue("tts", "media streaming speaks with a TTS provider: set "
                                           "tts.providers.openai.apiKey (or OPENAI_API_KEY) or "
                                           "tts.providers.elevenlabs.apiKey")], source=self.loaded.source)
        stt_factory: SttFactory | None = None
        s = c.streaming
        if realtime is None and (s.provider or "").strip().lower() != "none":
            try:
                build_stt_session(s.provider, s.providers, None, env)  # fails now on a missing key
            except SttError as exc:
                raise ConfigError([ConfigIssue("streaming.provider", str(exc))],
                                  source=self.loaded.source) from None

            def stt_factory(callbacks: Any) -> Any:
                return build_stt_session(s.provider, s.providers, callbacks, env)

        self.tts_chain = chain
        self.speech_cache = CachedSpeech(chain)
        for number, route in c.numbers.items():
            if route.tts is not None:  # a per-number voice: its own chain over the shared tts block
                merged = TtsConfig.model_validate(deep_merge(
                    c.tts.model_dump(by_alias=True, exclude_none=True),
                    route.tts.model_dump(by_alias=True, exclude_none=True)))
                self.route_speech[number] = CachedSpeech(build_tts_chain(merged, env))

        def speech_for(call: CallRecord) -> Speech:
            dialed = call.to if call.direction == "inbound" else call.from_
            return self.route_speech.get(dialed) or self.speech_cache or chain

        self.media = MediaHub(service, streams, self.speech_cache, stt_factory=stt_factory,
                              speech_for=speech_for, realtime=realtime)
        service.media = self.media
        path = c.realtime.stream_path if realtime is not None and c.realtime.stream_path else s.stream_path
        service.stream_url = stream_url_for(self.webhook_url, path)
        security = c.webhook_security
        endpoint = MediaEndpoint(MediaLimits(
            path=path, max_connections=s.max_connections,
            max_pending=s.max_pending_connections, max_pending_per_ip=s.max_pending_connections_per_ip,
            pre_start_timeout_s=s.pre_start_timeout_ms / 1000,
            trust_forwarding_headers=security.trust_forwarding_headers,
            trusted_proxy_ips=_trusted_proxies(c),
        ), streams.serializer, self.media)
        self.media_endpoint = endpoint
        return endpoint.protocol_class()

    def _realtime(self, service: CallService) -> RealtimeOptions:
        """Realtime voice (D120): the provider's session factory (its key checked now), the
        responder's tools (D122), the consult of the full agent and the instructions (D125)."""
        from voicecall.agent.consult import session_instructions
        from voicecall.agent.realtime_tools import RealtimeAgentTools
        from voicecall.agent.tools import Toolbox
        from voicecall.media.hub import RealtimeOptions
        from voicecall.speech.realtime import RealtimeError, build_realtime_factory

        c = self.config
        try:
            factory = build_realtime_factory(c.realtime, self.loaded.env)
        except RealtimeError as exc:
            raise ConfigError([ConfigIssue(f"realtime.providers.{self.realtime_provider}", str(exc))],
                              source=self.loaded.source) from None
        sources = self._tool_sources()
        consult = self._consult(sources) if c.realtime.tool_policy != "none" else None
        instructions = session_instructions(c.realtime.instructions, consult=consult is not None,
                                            policy=c.realtime.consult_policy,
                                            context=self._agent_context())
        toolbox = Toolbox(sources, timeout_s=c.responder.tool_timeout_ms / 1000)
        tools = RealtimeAgentTools(service, toolbox, policy=c.realtime.tool_policy, agent_id=c.agent_id,
                                   instructions=instructions, consult=consult)
        return RealtimeOptions(factory=factory, instructions=instructions, tools=tools)

    def _consult(self, sources: list[ToolSource]) -> AgentConsult | None:
        """The full agent the realtime model may consult: the responder, when it can answer."""
        from voicecall.agent.consult import AgentConsult

        c = self.config
        if not c.responder.enabled:
            return None
        responder = self._responder_for(sources)
        check = getattr(responder, "problem", None)
        problem = check(c.response_model) if callable(check) else None
        if problem:
            log.warning("realtime: the model cannot consult the agent: %s", problem)
            return None
        return AgentConsult(responder, agent_id=c.agent_id, model=c.response_model,
                            system_prompt=c.response_system_prompt, timeout_s=c.response_timeout_ms / 1000)

    def _agent_context(self) -> str:
        """`realtime.agentContext.files`, read now: a file that cannot be read fails the start."""
        from voicecall.agent.consult import DEFAULT_CONTEXT_CHARS, read_context

        context = self.config.realtime.agent_context
        if context is None or not context.enabled or not context.files:
            return ""
        try:
            return read_context(context.files, context.max_chars or DEFAULT_CONTEXT_CHARS)
        except (OSError, UnicodeError) as exc:
            raise ConfigError([ConfigIssue("realtime.agentContext.files", f"cannot be read: {exc}")],
                              source=self.loaded.source) from None

    def fixed_phrases(self) -> list[str]:
        """What the gateway says word for word: the greeting and, when idle handling is on, the
        idle prompt and goodbye. These are pre-synthesized (per-number greetings in their route's
        voice, see `_warm_phrases`)."""
        from voicecall.service import DEFAULT_GREETING

        c = self.config
        phrases = [c.inbound_greeting or DEFAULT_GREETING]
        if c.idle.prompt_after_sec:
            phrases.append(c.idle.prompt)
        if c.idle.hangup_after_sec:
            phrases.append(c.idle.goodbye)
        return phrases

    async def _warm_phrases(self) -> None:
        if self.speech_cache is None:
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        phrases = self.fixed_phrases()
        count = await self.speech_cache.warm(phrases)
        for number, route in self.config.numbers.items():
            greeting = route.inbound_greeting
            target = self.route_speech.get(number, self.speech_cache)
            count += await target.warm([greeting] if target is self.speech_cache and greeting
                                       else [greeting or phrases[0], *phrases[1:]])
        log.info("pre-synthesized %d sentences in %.0f ms", count, (loop.time() - started) * 1000)

    def _auto_reply(self) -> AutoReply:
        # Imported here: the LLM SDK costs seconds to import and only responders need it.
        from voicecall.agent.conversation import AutoReply, ReplyDefaults

        c = self.config
        r = c.responder
        responder = self._responder_for(self._tool_sources())
        return AutoReply(self.service, responder, ReplyDefaults(
            agent_id=c.agent_id, model=c.response_model, system_prompt=c.response_system_prompt,
            timeout_s=c.response_timeout_ms / 1000, history_turns=r.history_turns,
            fallback_message=r.fallback_message))

    def _responder_for(self, tools: list[ToolSource]) -> Responder:
        """The configured responder (`responder.type`), with `tools`."""
        from voicecall.agent.responder import build_responder

        c = self.config
        r = c.responder
        responder = build_responder(
            r.type, model=c.response_model or "openai/gpt-4o-mini",
            base_url=str(r.base_url) if r.base_url else None, url=r.url,
            target=r.target, headers={k: v.get_secret_value() for k, v in r.headers.items()},
            env=self.loaded.env, tools=tools, max_tool_rounds=r.max_tool_rounds,
            tool_timeout_s=r.tool_timeout_ms / 1000, filler=r.filler, filler_after_s=r.filler_after_ms / 1000)
        self._responder = responder
        return responder

    def _tool_sources(self) -> list[ToolSource]:
        """The responder's tools: built-ins first (their names cannot be taken), then each MCP
        server, then the HTTP tools (docs/decisions.md D101)."""
        from voicecall.agent.builtin_tools import BuiltinTools
        from voicecall.agent.chat import ToolSpec
        from voicecall.agent.http_tools import HttpTool, HttpTools

        r = self.config.responder
        sources: list[ToolSource] = [BuiltinTools()]
        if r.type != "llm":
            return sources
        if r.mcp_servers:
            from voicecall.agent.mcp_tools import McpServer, McpTools

            for name, server in r.mcp_servers.items():
                mcp = McpTools(McpServer(
                    name, command=server.command, args=tuple(server.args),
                    env={k: v.get_secret_value() for k, v in server.env.items()}, url=server.url,
                    headers={k: v.get_secret_value() for k, v in server.headers.items()}))
                self._mcp.append(mcp)
                sources.append(mcp)
        if r.tools:
            http = HttpTools([HttpTool(ToolSpec(t.name, t.description, dict(t.parameters)), t.url,
                                       {k: v.get_secret_value() for k, v in t.headers.items()})
                              for t in r.tools])
            self._http_tools = http
            sources.append(http)
        return sources

    async def readiness(self) -> dict[str, bool]:
        """`/ready`: the store takes writes, the carrier is set up, and the webhook URL is
        public when the carrier must reach it from the internet. Booleans only: nothing about
        the configuration leaks to an unauthenticated caller."""
        store_ok = os.access(self.store.directory, os.W_OK) and (
            not self.store.path.exists() or os.access(self.store.path, os.W_OK))
        public_ok = not self.provider.requires_public_webhook or (
            bool(self.webhook_url) and not is_local_only(self.webhook_url))
        return {"store": store_ok, "carrier": self._started, "publicUrl": public_ok}

    def _stream_stats(self, call_id: str) -> dict[str, Any] | None:
        """One call's media stream, for its console page (None when it has none)."""
        session = self.media.session_for(call_id) if self.media is not None else None
        if session is None:
            return None
        playback = session.playback
        return {"streamId": session.stream_id, "transcripts": session.transcripts,
                "keepAliveSilenceFrames": playback.silence_sent,
                "underrunFrames": playback.underrun_frames}

    def _media_counts(self) -> dict[str, Any]:
        """Media counters for the metrics (empty without streaming)."""
        if self.media is None:
            return {}
        stats = self.media.stats()
        if self.media_endpoint is not None:
            stats["refused503"] = self.media_endpoint.refused_503
        return stats

    async def _media_stats(self) -> dict[str, Any]:
        if self.media is None:
            return {"enabled": False}
        stats = self.media.stats()
        if self.media_endpoint is not None:
            stats["refused503"] = self.media_endpoint.refused_503
            stats["closedByCode"] = {str(k): v for k, v in self.media_endpoint.closed_by_code.items()}
        return {"enabled": True, **stats}

    @staticmethod
    def _injector(inject: Any) -> Any:
        async def run(provider_call_id: str, params: Mapping[str, Any]) -> None:
            await inject(provider_call_id, speech=params.get("speech"),
                         digits=params.get("digits"), hangup=bool(params.get("hangup")))
        return run

    async def _serve(self, app: Any, sock: socket.socket, *,
                     ws: type[asyncio.Protocol] | WsImpl | None = None,
                     guard: ConnectionGuard | None = None) -> None:
        self._servers.append(await serve_on(app, sock, graceful_shutdown_s=5, ws=ws or "none",
                                            guard=guard))

    async def stop(self) -> None:
        """Idempotent, in reverse order: listeners, service, carrier, store."""
        await self._teardown()
        self._started = False

    async def _teardown(self) -> None:
        await self.exposure.stop()  # first: the tunnel, then the listeners behind it
        self.console.close()
        for server, _ in self._servers:
            server.should_exit = True
        for _, task in self._servers:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, 10)
        self._servers.clear()
        if self._warm_task is not None:
            self._warm_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._warm_task
            self._warm_task = None
        if self.media is not None:
            with contextlib.suppress(Exception):
                await self.media.stop()
        from voicecall.speech.tts import TtsChain

        if self.tts_chain is not None:
            with contextlib.suppress(Exception):
                await self.tts_chain.aclose()
        for cached in self.route_speech.values():
            inner = cached.inner
            if isinstance(inner, TtsChain):
                with contextlib.suppress(Exception):
                    await inner.aclose()
        if hasattr(self, "service"):
            await self.service.stop()
        for mcp in self._mcp:
            with contextlib.suppress(Exception):
                await mcp.stop()
        self._mcp.clear()
        if self._http_tools is not None:
            with contextlib.suppress(Exception):
                await self._http_tools.aclose()
            self._http_tools = None
        if self._responder is not None:
            from voicecall.agent.responder import close_responder

            with contextlib.suppress(Exception):
                await close_responder(self._responder)
            self._responder = None
        with contextlib.suppress(Exception):
            await self.provider.stop()
        await self.store.__aexit__(None, None, None)

    async def __aenter__(self) -> Runtime:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _trusted_proxies(config: VoiceCallConfig) -> frozenset[str]:
    """The proxies whose forwarding headers name the client (`webhookSecurity`), when trusted."""
    security = config.webhook_security
    if not security.trust_forwarding_headers:
        return frozenset()
    return frozenset(normalize_ip(str(ip)) for ip in security.trusted_proxy_ips)


def _close(*socks: socket.socket | None) -> None:
    for sock in socks:
        if sock is not None:
            sock.close()
