"""A Prometheus endpoint for the writer: `logger-system writer --metrics 127.0.0.1:9464`.

Each scrape reads the ring's shared counters at that moment (nothing is
cached), plus the writer process's CPU time and memory.  It listens on
loopback unless given another address.  Needs the prometheus-client package
(`pip install 'logger_system[metrics]'`).
"""
from __future__ import annotations

import ipaddress
import time
from typing import Callable

from .errors import ConfigError, describe

DEFAULT_HOST = "127.0.0.1"

# ring counter -> help text; each becomes logger_system_<name>_total
COUNTERS = {
    "committed": "Records producers put into the ring.",
    "written": "Records the writer wrote to files.",
    "dropped": "Records dropped (ring full, or one of the dropped_* reasons).",
    "dropped_stalled": "Dropped at once: an earlier wait of the same process timed out.",
    "dropped_in_loop": "Dropped instead of waiting on a thread running an asyncio event loop.",
    "dropped_no_slot": "Dropped because every producer slot was taken.",
    "dropped_removed": "Dropped because the ring was removed and none had its name.",
    "dropped_no_writer": "Dropped at once in block mode: no live writer to make room.",
    "block_timeouts": "Waits for room that timed out.",
    "abandoned": "Claims of producers that died before committing.",
    "malformed": "Records skipped as malformed.",
    "truncated": "Records cut to the ring's largest record.",
    "format_errors": "Calls whose message could not be formatted.",
    "filtered": "Records below the writer's minimum level.",
    "denied": "Records refused by the writer's access rules.",
    "sanitized": "Records in which the sanitizer removed something.",
    "sanitize_dropped": "Records dropped by a sanitizer rule with action drop.",
    "writer_errors": "Writes that failed (the records stayed in the ring).",
    "blocked": "Producer calls that waited for room.",
    "warnings": "Health warnings the writer logged.",
    "lost": "Records the ring had released that a starting writer found missing from the files.",
    "damaged_files": "Damaged newest files a starting writer moved aside.",
    "header_repairs": "Ring header fields the writer found inconsistent and set right.",
    "dropped_over_share": "Dropped under pressure: the process held more than its fair share of the ring.",
    "dropped_damaged": "Dropped while the ring's name held a damaged segment.",
}
# the producers exported one by one (label pid): the most bytes first, at most this many, so
# that a host with many short-lived processes does not grow the series without bound
TOP_PRODUCERS = 10
PRODUCER_COUNTERS = {
    "committed": "Records this process put into the ring.",
    "dropped": "Records of this process that did not get into the ring.",
    "bytes": "Bytes of this process's committed records.",
    "dropped_over_share": "Records of this process refused for holding more than its fair share.",
}


def parse_listen(value: str) -> tuple[str, int]:
    """'PORT', 'HOST:PORT' or '[V6]:PORT' -> (host, port); loopback when no host is given."""
    text = str(value).strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = DEFAULT_HOST, text
    host = host.strip("[]") or DEFAULT_HOST
    # ASCII digits only: str.isdigit() is also true for '²' and '①', which int() refuses
    if not (port.isascii() and port.isdigit() and len(port) <= 5) or int(port) > 65535:
        raise ConfigError(f"metrics={describe(value)}: use PORT or HOST:PORT with a port 0..65535")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(f"metrics={describe(value)}: {describe(host)} is not an IP address") from None
    return host, int(port)


class RingCollector:
    """prometheus_client collector over a ring's live counters."""

    def __init__(self, read_stats: Callable[[], dict], process=None) -> None:
        self._read = read_stats
        self._process = process

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        d = self._read()
        for name, help_text in COUNTERS.items():
            yield CounterMetricFamily(f"logger_system_{name}", help_text, value=d[name])
        hits = CounterMetricFamily("logger_system_sanitizer_hits", "Secrets and PII removed, by rule.",
                                   labels=["rule"])
        for rule, n in sorted(d["rule_hits"].items()):
            hits.add_metric([rule], n)
        yield hits
        producers = d.get("producers") or []
        yield GaugeMetricFamily("logger_system_producers", "Processes that logged in the last 10 minutes.",
                                value=len(producers))
        yield GaugeMetricFamily("logger_system_active_producers", "Processes that logged in the last 10 s.",
                                value=d.get("active_producers", 0))
        top = producers[:TOP_PRODUCERS]
        for key, help_text in PRODUCER_COUNTERS.items():
            family = CounterMetricFamily(f"logger_system_producer_{key}",
                                         help_text + f" The top {TOP_PRODUCERS} by bytes.", labels=["pid"])
            for p in top:
                family.add_metric([str(p["pid"])], p[key])
            yield family
        held = GaugeMetricFamily("logger_system_producer_held_bytes",
                                 "Bytes of this process's records still in the ring.", labels=["pid"])
        for p in top:
            held.add_metric([str(p["pid"])], p["held"])
        yield held
        ships = d.get("ship") or []  # one per configured destination: bounded by the config
        for key, kind, help_text in (
                ("shipped", CounterMetricFamily, "Records sent to this destination (resends included)."),
                ("acked", GaugeMetricFamily, "The next n this destination acknowledged."),
                ("pending", GaugeMetricFamily, "Records spooled for this destination, not acknowledged."),
                ("errors", CounterMetricFamily, "Connections to this destination that failed."),
                ("overflow", CounterMetricFamily, "Records not spooled for this destination: its spool was full."),
                ("connected", GaugeMetricFamily, "1 while connected to this destination.")):
            family = kind(f"logger_system_ship_{key}", help_text, labels=["url"])
            for sh in ships:
                family.add_metric([str(sh.get("url"))], float(sh.get(key) or 0))
            yield family
        yield GaugeMetricFamily("logger_system_ring_utilization", "Fraction of the ring in use.",
                                value=d["utilization"])
        yield GaugeMetricFamily("logger_system_ring_used_bytes", "Bytes of the ring in use.",
                                value=d["used_bytes"])
        yield GaugeMetricFamily("logger_system_ring_high_water_bytes", "Most bytes ever in use.",
                                value=d["high_water_bytes"])
        yield GaugeMetricFamily("logger_system_ring_capacity_bytes", "Size of the ring's data area.",
                                value=d["capacity_bytes"])
        yield GaugeMetricFamily("logger_system_in_ring", "Records committed and not yet written.",
                                value=d["in_ring"])
        if d["released_ns"]:
            yield GaugeMetricFamily("logger_system_last_drain_age_seconds",
                                    "Seconds since the writer last released records.",
                                    value=max(0, time.monotonic_ns() - d["released_ns"]) / 1e9)
        if self._process is not None:
            cpu = self._process.cpu_times()
            yield CounterMetricFamily("logger_system_writer_cpu_seconds", "CPU time of the writer.",
                                      value=cpu.user + cpu.system)
            yield GaugeMetricFamily("logger_system_writer_resident_bytes", "Resident memory of the writer.",
                                    value=self._process.memory_info().rss)


def serve(listen: str, read_stats: Callable[[], dict]):
    """Start the writer's endpoint in a daemon thread; returns (server, thread)."""
    import psutil

    return start(listen, RingCollector(read_stats, psutil.Process()))


def start(listen: str, collector):
    """Serve one collector's metrics over HTTP on `listen` ([HOST:]PORT, loopback unless a
    host is given) in a daemon thread; returns (server, thread).  The writer's and the log
    server's endpoints both start here."""
    try:
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError:
        raise ConfigError("--metrics needs the prometheus-client package: "
                          "pip install 'logger_system[metrics]'") from None
    host, port = parse_listen(listen)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    try:
        return start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(f"metrics: cannot listen on {host}:{port}: {exc.strerror}") from None
