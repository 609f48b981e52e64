"""Shared workload for the perf suite.

Every contender logs exactly the same records so that throughput figures
are comparable, and every output file is checked the same way so that a
figure only counts when nothing was lost, duplicated or reordered.

Each formatted message ends in ``p=<producer> i=<index>`` tokens so a
checker can recover the record's identity from any line layout (with or
without timestamps, levels or logger names in front of it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "MESSAGE",
    "args_for",
    "producer_args",
    "format_message",
    "parse_ids",
    "check_complete",
]

# %-style so it can go through logging's lazy ``msg % args`` path unchanged.
# The identity tokens come last so that nothing a layout appends in front of
# the message can shadow them.
MESSAGE = "request %s handled for user %s in %d ms status=%d path=%s p=%d i=%d"

# A few realistic values cycled by index: the message length stays close to
# 100 bytes for every record instead of drifting with the index.
_PATHS: tuple[str, ...] = (
    "/api/v1/orders",
    "/api/v1/users/me",
    "/api/v1/search",
    "/api/v1/health",
    "/api/v2/checkout",
)
_STATUSES: tuple[int, ...] = (200, 200, 200, 201, 204, 304, 404, 500)

# Anchored on whitespace (or line edges) so that e.g. ``xp=1`` never matches.
_IDS = re.compile(r"(?<!\S)p=(\d+) i=(\d+)(?!\S)")


def args_for(i: int, producer: int) -> tuple[str, str, int, int, str, int, int]:
    """Deterministic arguments for record ``i`` of ``producer``.

    Pure arithmetic on the two ids, so any process can regenerate the exact
    record without shared state.
    """
    request_id = f"{producer:02x}{i:06x}{(i * 2654435761) & 0xFFFFFFFF:08x}"
    user = f"user{(i * 7919 + producer * 104729) % 1_000_000:06d}"
    millis = (i * 31 + producer * 17) % 997
    status = _STATUSES[i % len(_STATUSES)]
    path = _PATHS[(i + producer) % len(_PATHS)]
    return (request_id, user, millis, status, path, producer, i)


def producer_args(producer: int, n_records: int) -> list[tuple[str, str, int, int, str, int, int]]:
    """All argument tuples for one producer, in logging order.

    Producers build this before the start barrier so that generating the
    workload is not counted as logging time.
    """
    return [args_for(i, producer) for i in range(n_records)]


def format_message(i: int, producer: int) -> str:
    """The message text a logger should produce for record ``i``."""
    return MESSAGE % args_for(i, producer)


def parse_ids(line: str) -> tuple[int, int] | None:
    """Return ``(producer, i)`` from a line holding a formatted message."""
    # The last match wins: the message is normally the tail of a log line,
    # and a prefix added by a layout must not be mistaken for the ids.
    matches = _IDS.findall(line)
    if not matches:
        return None
    producer, i = matches[-1]
    return int(producer), int(i)


def check_complete(lines_iterable: Iterable[str], n_producers: int, n_records: int) -> dict[str, int | bool]:
    """Check that every ``(producer, i)`` appears exactly once, in order.

    Order is per producer: records of different producers may interleave
    freely, but each producer's indices must rise in file order.

    Returns ``complete``, ``missing``, ``duplicates``, ``out_of_order`` and
    ``unexpected`` (lines with ids out of range or with no ids at all).
    A duplicate is not also counted as out of order, so each defect is
    counted once.
    """
    # One byte per record keeps memory flat even for millions of records.
    seen = [bytearray(n_records) for _ in range(n_producers)]
    highest = [-1] * n_producers
    duplicates = 0
    out_of_order = 0
    unexpected = 0
    for line in lines_iterable:
        ids = parse_ids(line)
        if ids is None:
            # Blank trailing lines are an artefact of how files end, not data.
            if line.strip():
                unexpected += 1
            continue
        producer, i = ids
        if not (0 <= producer < n_producers and 0 <= i < n_records):
            unexpected += 1
            continue
        if seen[producer][i]:
            duplicates += 1
            continue
        seen[producer][i] = 1
        if i < highest[producer]:
            out_of_order += 1
        else:
            highest[producer] = i
    present = sum(sum(marks) for marks in seen)
    missing = n_producers * n_records - present
    return {
        "complete": missing == 0 and duplicates == 0 and out_of_order == 0 and unexpected == 0,
        "missing": missing,
        "duplicates": duplicates,
        "out_of_order": out_of_order,
        "unexpected": unexpected,
    }
