"""Prometheus metrics, one registry per app (so several apps in one process stay apart)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "xmodal_http_requests",
            "HTTP requests by route template, method and status code",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "xmodal_http_request_seconds",
            "HTTP request latency by route template",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "xmodal_model_batch_size",
            "Items per model call, by modality",
            ["modality"],
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.collection_size = Gauge(
            "xmodal_collection_items", "Items in the collection", registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
