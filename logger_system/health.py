"""Thresholds on the writer's health, and the warnings it logs when one is crossed.

Every `window` seconds the writer compares what happened in the window with
the [thresholds] of its config; for each threshold crossed it writes a
WARNING record of its own (logger `logger_system.writer`) into the ring, so
the warning lands in the same files as everything else, and counts it in the
ring's `warnings` counter.  One warning per threshold per window at most.

    [thresholds]
    window = "10s"
    drop_rate = 100        # records dropped per second
    writer_errors = 1      # failed writes within one window
    error_rate = 50        # records at ERROR or above per second
    sanitizer_hits = 1000  # secrets and PII removed per second
"""
from __future__ import annotations

import json
import sys

import math
import time
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError, describe
from .rotation import parse_duration

WRITER_LOGGER = "logger_system.writer"
_KEYS = ("window", "drop_rate", "writer_errors", "error_rate", "sanitizer_hits")


@dataclass(frozen=True)
class Thresholds:
    window: float = 10.0
    drop_rate: float | None = None
    writer_errors: int | None = None
    error_rate: float | None = None
    sanitizer_hits: float | None = None

    @property
    def any(self) -> bool:
        return any(getattr(self, k) is not None for k in _KEYS[1:])


def parse(table: Any, where: str = "thresholds") -> Thresholds:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = set(table) - set(_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)} (known: {', '.join(_KEYS)})")
    values: dict[str, Any] = {}
    if "window" in table:
        try:
            values["window"] = parse_duration(table["window"])
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}.window={describe(table['window'])}: {exc}") from None
        if not 0.1 <= values["window"] <= 86400:
            raise ConfigError(f"{where}.window: use 0.1 s to 1 day")
    for k in _KEYS[1:]:
        if k not in table:
            continue
        v = table[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"{where}.{k}={describe(v)}: use a number >= 0")
        try:
            number = float(v)
        except OverflowError:  # an integer beyond a float's range
            raise ConfigError(f"{where}.{k}: {describe(v)} is too large; use a number >= 0") from None
        if not math.isfinite(number) or number < 0:  # nan would be crossed in every window
            raise ConfigError(f"{where}.{k}={describe(v)}: use a finite number >= 0 "
                              "(leave the key out for no threshold)")
        values[k] = int(v) if k == "writer_errors" else number
    return Thresholds(**values)


class HealthMonitor:
    """Compares each window with the thresholds; `emit(level, text, fields)` logs a warning."""

    def __init__(self, thresholds: Thresholds, read_stats, emit, count_warning) -> None:
        self.t = thresholds
        self._read = read_stats
        self._emit = emit
        self._count_warning = count_warning
        self.errors_seen = 0  # records at ERROR or above written in this window
        self._start = time.monotonic()
        self._base = self._snapshot()

    def _snapshot(self) -> dict:
        d = self._read()
        return {"dropped": d["dropped"], "writer_errors": d["writer_errors"],
                "sanitizer_hits": sum(d["rule_hits"].values())}

    def tick(self, now: float) -> list[str]:
        """At the end of a window: warn about each threshold crossed; returns their names."""
        secs = now - self._start
        if secs < self.t.window:
            return []
        cur = self._snapshot()
        seen = {"drop_rate": (cur["dropped"] - self._base["dropped"]) / secs,
                "writer_errors": cur["writer_errors"] - self._base["writer_errors"],
                "error_rate": self.errors_seen / secs,
                "sanitizer_hits": (cur["sanitizer_hits"] - self._base["sanitizer_hits"]) / secs}
        crossed = []
        for name, value in seen.items():
            limit = getattr(self.t, name)
            if limit is None or value <= limit:
                continue
            unit = "" if name == "writer_errors" else "/s"
            self._emit(30, f"{name.replace('_', ' ')} {value:.1f}{unit} over the last {secs:.0f} s "
                           f"is above the threshold {limit:g}{unit}",
                       {"threshold": name, "value": round(value, 3), "limit": limit,
                        "window_s": round(secs, 3)})
            self._count_warning()
            crossed.append(name)
        self._start, self._base, self.errors_seen = now, cur, 0
        return crossed


def say(event: str, **fields) -> None:
    """The writer's own diagnostics: one JSON object per line on stderr."""
    fields = {"writer": event, **fields}
    print(json.dumps(fields, default=str), file=sys.stderr, flush=True)
