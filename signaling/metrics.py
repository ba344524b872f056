"""Prometheus metrics: aggregates only (no per-person labels), one registry per app."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    generate_latest,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # python_gc_collections_total{generation="2"}: full collections stop the event loop
        # (and so all forwarding) for tens of ms; bench/recording.py reads it.
        GCCollector(registry=r)
        self.connections = Gauge(
            "mediation_connections", "Authenticated signaling connections", registry=r
        )
        self.calls = Gauge("mediation_calls", "Live calls by state", ["state"], registry=r)
        self.queue_length = Gauge(
            "mediation_queue_length", "Calls waiting in the queue", registry=r
        )
        self.experts_available = Gauge(
            "mediation_experts_available",
            "Connected experts who are available and idle",
            registry=r,
        )
        self.call_transitions = Counter(
            "mediation_call_transitions", "Call state changes by new state", ["state"], registry=r
        )
        self.calls_ended = Counter(
            "mediation_calls_ended", "Ended calls by end reason", ["reason"], registry=r
        )
        self.dispatch_latency = Histogram(
            "mediation_dispatch_latency_seconds",
            "Launch to first ring queued to an expert's connection",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )
        self.requests_refused = Counter(
            "mediation_requests_refused",
            "Requests answered with an error, by code",
            ["code"],
            registry=r,
        )
        # Failed logins (`wrong_password`) and logins refused by the throttle (`throttled`):
        # a steady rise is someone guessing passwords (the audit log has their IPs).
        self.login_failures = Counter(
            "mediation_login_failures",
            "Logins and password changes refused, by outcome",
            ["outcome"],
            registry=r,
        )

        self.media_participants = Gauge(
            "mediation_media_participants", "Participants with a media connection", registry=r
        )
        self.media_packets_forwarded = Gauge(
            "mediation_media_packets_forwarded", "Packets forwarded in live calls", registry=r
        )
        self.media_packets_dropped = Gauge(
            "mediation_media_packets_dropped",
            "Packets dropped for subscribers that could not keep up, in live calls",
            registry=r,
        )
        self.media_plis_sent = Gauge(
            "mediation_media_plis_sent",
            "Key-frame requests sent to publishers, live calls",
            registry=r,
        )

        self.recordings_active = Gauge(
            "mediation_recordings_active", "Calls being recorded", registry=r
        )
        self.recording_gaps = Counter(
            "mediation_recording_gaps",
            "Gap records written into evidence chains, by reason",
            ["reason"],
            registry=r,
        )
        self.upload_pending_files = Gauge(
            "mediation_upload_pending_files",
            "Spooled files waiting for a verified upload",
            registry=r,
        )
        self.upload_pending_bytes = Gauge(
            "mediation_upload_pending_bytes", "Bytes in the spool waiting for upload", registry=r
        )
        self.upload_lag = Gauge(
            "mediation_upload_lag_seconds",
            "Age of the oldest spooled file not yet uploaded",
            registry=r,
        )
        self.upload_failures = Gauge(
            "mediation_upload_failures", "Failed upload attempts since start (retried)", registry=r
        )
        self.upload_reuploads = Gauge(
            "mediation_upload_reuploads",
            "Uploads sent again because the read-back did not match",
            registry=r,
        )
        self.spool_free_bytes = Gauge(
            "mediation_spool_free_bytes", "Free space on the spool's file system", registry=r
        )
        self.storage_warnings = Gauge(
            "mediation_storage_warnings", "Recording storage warnings now active", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
