"""Prometheus metrics, served at ``/metrics`` on the staff port.

One registry for the process (not the global default one), so tests that build several apps in
one interpreter can still read a clean exposition of ours.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

inbound = Counter(
    "sulai_inbound_total",
    "Inbound messages by channel and outcome",
    ["channel", "outcome"],
    registry=REGISTRY,
)
webhook_rejected = Counter(
    "sulai_webhook_rejected_total",
    "Webhook requests refused (403 signature, 400 malformed, 413 too large …)",
    ["channel", "status"],
    registry=REGISTRY,
)
dedupe_hits = Counter(
    "sulai_dedupe_hits_total",
    "Inbounds already applied or in flight (provider retries)",
    ["channel"],
    registry=REGISTRY,
)
flood_dropped = Counter(
    "sulai_flood_dropped_total", "Inbounds dropped by a per-sender rate limit", ["channel"], registry=REGISTRY
)
engine_seconds = Histogram(
    "sulai_turn_seconds",
    "Time to run one conversation turn (load, engine, apply)",
    ["channel"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
outbox_depth = Gauge(
    "sulai_outbox_depth", "Outbox entries not yet acknowledged", ["tenant"], registry=REGISTRY
)
outbox_oldest_age = Gauge(
    "sulai_outbox_oldest_age_seconds", "Age of the oldest pending outbox entry", ["tenant"], registry=REGISTRY
)
sends = Counter(
    "sulai_send_total", "Outbound sends by channel and outcome", ["channel", "outcome"], registry=REGISTRY
)
send_failures = Counter(
    "sulai_send_failures_total",
    "Outbound send failures by channel and error code",
    ["channel", "code"],
    registry=REGISTRY,
)
sla_overdue = Gauge(
    "sulai_sla_overdue_tickets", "Open tickets past their reply deadline", ["tenant"], registry=REGISTRY
)
imap_reconnects = Counter(
    "sulai_imap_reconnects_total",
    "IMAP connection losses followed by a reconnect",
    ["mailbox"],
    registry=REGISTRY,
)
http_requests = Counter(
    "sulai_http_requests_total", "HTTP requests by app and status class", ["app", "status"], registry=REGISTRY
)


def exposition() -> bytes:
    return generate_latest(REGISTRY)
