"""Prometheus metrics of the log server: `logger-system serve --metrics [HOST:]PORT`.

The same counters as `stats --server` (state.py), read at each scrape.  Per-client series
carry the label `client`; at most TOP_CLIENTS of them (the most records received), so a
fleet of thousands of writers cannot grow a scrape without bound: the totals over every
client are exported without a label too.
"""
from __future__ import annotations

from typing import Callable

from ..metrics import start
from .state import CLIENT_COUNTERS, TOP_COUNTERS

TOP_CLIENTS = 50


class ServerCollector:
    def __init__(self, snapshot: Callable[[], dict]) -> None:
        self._snapshot = snapshot

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        d = self._snapshot()
        for key, text in TOP_COUNTERS.items():
            yield CounterMetricFamily(f"logger_system_serve_{key}", text, value=d.get(key, 0))
        refused = CounterMetricFamily("logger_system_serve_handshake_refused",
                                      "Handshake failures by reason.", labels=["reason"])
        for reason, n in sorted(d.get("handshake_refused", {}).items()):
            refused.add_metric([reason], n)
        yield refused
        clients = d.get("clients", {})
        top = sorted(clients.items(), key=lambda kv: -kv[1].get("received", 0))[:TOP_CLIENTS]
        for key, text in CLIENT_COUNTERS.items():
            yield CounterMetricFamily(f"logger_system_serve_{key}", text + " All clients.",
                                      value=sum(c.get(key, 0) for c in clients.values()))
            per = CounterMetricFamily(f"logger_system_serve_client_{key}",
                                      text + f" The top {TOP_CLIENTS} clients by records received.",
                                      labels=["client"])
            for name, c in top:
                per.add_metric([name], c.get(key, 0))
            yield per
        yield GaugeMetricFamily("logger_system_serve_clients", "Client names seen.", value=len(clients))
        yield GaugeMetricFamily("logger_system_serve_connected", "Connections open now.",
                                value=sum(c.get("connected", 0) for c in clients.values()))


def serve(listen: str, snapshot: Callable[[], dict]):
    """Start the endpoint in a daemon thread; returns (server, thread)."""
    return start(listen, ServerCollector(snapshot))
