"""Prometheus metrics, served at GET /metrics.

Labels never carry customer content or secrets: event names are reduced to the ones
OneRoute documents (anything else is `other`), destinations are config names, and
reasons are the senders' short stable words.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

KNOWN_EVENTS = frozenset({"newMessage", "compaignDeliveryReport", "campaignDeliveryReport"})

REGISTRY = CollectorRegistry(auto_describe=True)

events_received = Counter(
    "relay_events_received",
    "Webhook requests by event name and result "
    "(accepted, duplicate, unauthorized, forbidden, bad_request, too_large, unavailable).",
    ["event", "result"],
    registry=REGISTRY,
)
deliveries = Counter(
    "relay_deliveries",
    "Delivery attempts by destination and outcome (sent, retried, dead), with the reason.",
    ["destination", "outcome", "reason"],
    registry=REGISTRY,
)
delivery_latency = Histogram(
    "relay_delivery_latency_seconds",
    "From the event's acceptance to its delivery being sent.",
    ["destination"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600),
    registry=REGISTRY,
)
pending = Gauge(
    "relay_pending_deliveries",
    "Deliveries not yet sent or dead.",
    ["destination"],
    registry=REGISTRY,
)
oldest_pending = Gauge(
    "relay_oldest_pending_age_seconds",
    "Age of the oldest pending delivery (0 when none).",
    ["destination"],
    registry=REGISTRY,
)
dead_letters = Gauge(
    "relay_dead_letters",
    "Deliveries that gave up, waiting for `relay dead retry`.",
    registry=REGISTRY,
)
config_reloads = Counter(
    "relay_config_reloads",
    "Config reloads by result (success, failure).",
    ["result"],
    registry=REGISTRY,
)
config_last_reload_success = Gauge(
    "relay_config_last_reload_success_timestamp_seconds",
    "When the config was last loaded successfully (Unix time).",
    registry=REGISTRY,
)
config_last_reload_successful = Gauge(
    "relay_config_last_reload_successful",
    "Whether the last reload attempt succeeded (1) or kept the old config (0).",
    registry=REGISTRY,
)


for _result in ("success", "failure"):
    config_reloads.labels(_result)  # both series exist from the start, at 0


def config_loaded() -> None:
    """The config in use was loaded successfully (at start, or by a reload)."""
    config_last_reload_successful.set(1)
    config_last_reload_success.set_to_current_time()


def event_label(name: str | None) -> str:
    if name is None:
        return "unknown"
    return name if name in KNOWN_EVENTS else "other"
