"""Prometheus metrics, served at GET /metrics.

One `Metrics` per relay, with its own registry, handed to ingest and the lanes (tests
make their own and read it, without counts leaking between them).

Labels never carry customer content or secrets: event names are reduced to the ones
OneRoute documents (anything else is `other`), destinations are config names, and
reasons are the `Reason` words of relay/errors.py.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

KNOWN_EVENTS = frozenset({"newMessage", "compaignDeliveryReport", "campaignDeliveryReport"})
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600)


def event_label(name: str | None) -> str:
    if name is None:
        return "unknown"
    return name if name in KNOWN_EVENTS else "other"


class Metrics:
    """The relay's metrics, registered in `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_received = Counter(
            "relay_events_received",
            "Webhook requests by event name and result "
            "(accepted, duplicate, unauthorized, forbidden, bad_request, too_large, unavailable).",
            ["event", "result"],
            registry=r,
        )
        self.deliveries = Counter(
            "relay_deliveries",
            "Delivery attempts by destination and outcome (sent, retried, dead), with the reason.",
            ["destination", "outcome", "reason"],
            registry=r,
        )
        self.replies = Counter(
            "relay_replies",
            "Answers from Slack and Telegram sent to OneRoute, by destination and outcome "
            "(sent, retried, dead), with the reason.",
            ["destination", "outcome", "reason"],
            registry=r,
        )
        self.messages = Counter(
            "relay_messages_sent",
            "Messages posted: one carries several events when the relay coalesces, and a long "
            "event may need several.",
            ["destination"],
            registry=r,
        )
        self.delivery_latency = Histogram(
            "relay_delivery_latency_seconds",
            "From the event's acceptance to its delivery being sent.",
            ["destination"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.pending = Gauge(
            "relay_pending_deliveries",
            "Deliveries not yet sent or dead.",
            ["destination"],
            registry=r,
        )
        self.oldest_pending = Gauge(
            "relay_oldest_pending_age_seconds",
            "Age of the oldest pending delivery (0 when none).",
            ["destination"],
            registry=r,
        )
        self.lane_paused = Gauge(
            "relay_lane_paused_seconds",
            "How much longer a lane waits because the platform said so (429 Retry-After); "
            "0 when it is not paused.",
            ["destination"],
            registry=r,
        )
        self.ingest_worker_restarts = Counter(
            "relay_ingest_worker_restarts",
            "Ingest worker processes (server.workers) started again after they exited.",
            registry=r,
        )
        self.lane_restarts = Counter(
            "relay_lane_restarts",
            "Lanes restarted after their task ended unexpectedly (a bug; the log has it).",
            ["destination"],
            registry=r,
        )
        self.dead_letters = Gauge(
            "relay_dead_letters",
            "Deliveries that gave up, waiting for `relay dead retry`.",
            registry=r,
        )
        self.config_reloads = Counter(
            "relay_config_reloads",
            "Config reloads by result (success, failure).",
            ["result"],
            registry=r,
        )
        self.config_last_reload_success = Gauge(
            "relay_config_last_reload_success_timestamp_seconds",
            "When the config was last loaded successfully (Unix time).",
            registry=r,
        )
        self.config_last_reload_successful = Gauge(
            "relay_config_last_reload_successful",
            "Whether the last reload attempt succeeded (1) or kept the old config (0).",
            registry=r,
        )
        for result in ("success", "failure"):
            self.config_reloads.labels(result)  # both series exist from the start, at 0
        self._received: dict[tuple[str, str], Counter] = {}

    def received(self, event: str | None, result: str) -> None:
        """Count one webhook request (children cached: this is on every request's path)."""
        key = (event_label(event), result)
        child = self._received.get(key)
        if child is None:
            child = self._received[key] = self.events_received.labels(*key)
        child.inc()

    def add_received(self, label: str, result: str, count: float) -> None:
        """Count requests an ingest worker answered (labels already reduced there)."""
        label = label if label in KNOWN_EVENTS or label in ("other", "unknown") else "other"
        self.events_received.labels(label, result).inc(count)

    def config_loaded(self) -> None:
        """The config in use was loaded successfully (at start, or by a reload)."""
        self.config_last_reload_successful.set(1)
        self.config_last_reload_success.set_to_current_time()

    def reload_failed(self) -> None:
        self.config_reloads.labels("failure").inc()
        self.config_last_reload_successful.set(0)

    def sample(self, name: str, **labels: str) -> float:
        """A sample's current value (0 when absent), for tests and the console."""
        return self.registry.get_sample_value(name, labels) or 0.0
