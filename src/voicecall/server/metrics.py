"""Prometheus metrics of one gateway (D110): calls, webhooks, media streams, turn latency and
failures, rendered as the text exposition format at `GET /metrics` on the control listener.

Each gateway has its own registry (several gateways can share a process, as in tests). Counters
that already exist elsewhere (media-stream and pacer counts, failures by kind) are read when
scraped rather than copied, so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from voicecall.calls.latency import stage_durations
from voicecall.calls.model import CallRecord, CallState
from voicecall.service import CallService
from voicecall.shared.error_counts import error_counts

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LIVE_STATES = tuple(state.value for state in CallState if not state.is_terminal)
WEBHOOK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
TURN_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)

MediaStats = Callable[[], Mapping[str, Any]]


class GatewayMetrics:
    """The gateway's metrics: fed by the call service's persist hook and the webhook app's
    observer, plus a collector that reads live state when scraped."""

    def __init__(self, service: CallService, *, media_stats: MediaStats | None = None) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        r = self.registry
        self.calls_started = Counter("voicecall_calls_started", "Calls started",
                                     ["carrier", "direction"], registry=r)
        self.calls_ended = Counter("voicecall_calls_ended", "Calls ended",
                                   ["carrier", "direction", "reason"], registry=r)
        self.webhook_seconds = Histogram("voicecall_webhook_duration_seconds",
                                         "Time to answer a carrier webhook", buckets=WEBHOOK_BUCKETS,
                                         registry=r)
        self.webhooks = Counter("voicecall_webhooks", "Carrier webhooks by outcome (accepted, "
                                "replay, rejected_<reason>, error)", ["outcome"], registry=r)
        self.turn_stage_seconds = Histogram(
            "voicecall_turn_stage_seconds", "Turn latency by stage (turn: end of the caller's "
            "speech to the first audio frame)", ["stage"], buckets=TURN_BUCKETS, registry=r)
        r.register(_ScrapeTimeCollector(service, media_stats))
        self._live: set[str] = set()
        service.persist_observers.append(self.on_persist)

    def on_persist(self, record: CallRecord, turn: Mapping[str, Any] | None) -> None:
        """Count a call's start the first time it is persisted live, its end when it turns
        terminal, and a completed turn's stages. A call restored from the store after a restart
        started in an earlier process: only its end here is counted (D93)."""
        labels = (record.provider, record.direction)
        call = self.service.calls.get(record.call_id)
        restored = call is not None and call.restored
        if not record.is_terminal:
            if record.call_id not in self._live:
                self._live.add(record.call_id)
                if not restored:
                    self.calls_started.labels(*labels).inc()
        elif record.call_id in self._live or restored:
            self._live.discard(record.call_id)
            reason = record.end_reason.value if record.end_reason else record.state.value
            self.calls_ended.labels(*labels, reason).inc()
        if turn:
            for stage, ms in stage_durations(turn).items():
                self.turn_stage_seconds.labels(stage).observe(ms / 1000)
            total = turn.get("turnLatencyMs")
            if isinstance(total, int | float) and total >= 0:
                self.turn_stage_seconds.labels("turn").observe(total / 1000)

    def on_webhook(self, outcome: str, seconds: float) -> None:
        self.webhooks.labels(outcome).inc()
        self.webhook_seconds.observe(seconds)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class _ScrapeTimeCollector(Collector):
    """Live calls by state, media streams and frames, and failures by kind, read when scraped."""

    def __init__(self, service: CallService, media_stats: MediaStats | None) -> None:
        self.service = service
        self.media_stats = media_stats

    def collect(self) -> Iterator[Metric]:
        live = GaugeMetricFamily("voicecall_live_calls", "Live calls by state", labels=["state"])
        counts = dict.fromkeys(LIVE_STATES, 0)
        for record in self.service.active_calls():
            counts[record.state.value] = counts.get(record.state.value, 0) + 1
        for state, count in counts.items():
            live.add_metric([state], count)
        yield live
        errors = CounterMetricFamily("voicecall_errors", "Failures by kind (carrier REST, TTS, STT, "
                                     "model)", labels=["kind"])
        for kind, count in error_counts().items():
            errors.add_metric([kind], count)
        yield errors
        stats = dict(self.media_stats()) if self.media_stats is not None else {}
        pacer = stats.get("pacer") or {}
        yield GaugeMetricFamily("voicecall_media_streams_open", "Media streams open now",
                                value=stats.get("activeStreams", 0))
        yield CounterMetricFamily("voicecall_media_streams_opened", "Media streams accepted",
                                  value=stats.get("streamsOpened", 0))
        yield CounterMetricFamily("voicecall_media_streams_refused", "Media streams refused "
                                  "(unknown call or bad token, or over capacity)",
                                  value=stats.get("streamsRefused", 0) + stats.get("refused503", 0))
        yield CounterMetricFamily("voicecall_media_frames_sent", "Audio frames sent on media streams",
                                  value=pacer.get("framesSent", 0))
        yield CounterMetricFamily("voicecall_media_underrun_frames", "Silence frames sent inside an "
                                  "utterance because its audio was late",
                                  value=stats.get("underrunFrames", 0))
