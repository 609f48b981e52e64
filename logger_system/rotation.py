"""Rotation and retention as pure policy: no clocks read, no files touched.

File names sort in write order: `log-<index>-<UTC start>-<ring id>.<suffix>`,
index zero-padded and increasing, so a plain sort is the write order.  The
ring id tells a restarted writer whether a file's `seq` values belong to the
ring it is draining (a ring created anew starts its positions again).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone

from .errors import ConfigError, describe

_NAME = re.compile(r"^log-(\d{8,})-(\d{8}T\d{6}Z)-([0-9a-f]{16})\.(jsonl|lsx)$")  # the only two formats
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?|)\s*$", re.IGNORECASE)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1000, "KB": 1000, "KIB": 1024, "M": 1000**2, "MB": 1000**2,
          "MIB": 1024**2, "G": 1000**3, "GB": 1000**3, "GIB": 1024**3, "T": 1000**4,
          "TB": 1000**4, "TIB": 1024**4}
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_MAX_SIZE = 2**63 - 1  # the largest file offset
_MAX_TEXT = 64  # longer is no size or duration; the patterns would take quadratic time over it


@dataclass(frozen=True, order=True)
class LogFile:
    index: int
    stamp: str
    ring_id: int
    suffix: str

    @property
    def name(self) -> str:
        return f"log-{self.index:08d}-{self.stamp}-{self.ring_id:016x}.{self.suffix}"

    @classmethod
    def parse(cls, name: str) -> "LogFile | None":
        m = _NAME.fullmatch(name)
        if not m:
            return None
        return cls(int(m.group(1)), m.group(2), int(m.group(3), 16), m.group(4))


def next_file(previous: LogFile | None, ring_id: int, now: datetime, suffix: str) -> LogFile:
    index = previous.index + 1 if previous else 1
    return LogFile(index, now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ"), ring_id, suffix)


@dataclass(frozen=True)
class RotationPolicy:
    """Rotate when a file reaches max_bytes or has been open interval seconds."""

    max_bytes: int | None = 64 * 1024**2
    interval: float | None = None

    def due(self, size: int, opened: float, now: float) -> bool:
        """size: bytes in the current file; opened/now: monotonic seconds."""
        if size == 0:
            return False  # never leave an empty file behind
        if self.max_bytes is not None and size >= self.max_bytes:
            return True
        return self.interval is not None and now - opened >= self.interval


def to_delete(files: list[LogFile], keep: int | None) -> list[LogFile]:
    """The oldest files beyond the newest `keep` (the current file counts as one)."""
    if keep is None or len(files) <= keep:
        return []
    return sorted(files)[: len(files) - keep]


@dataclass(frozen=True)
class Retention:
    """What retention does with a directory's files (see `retain`)."""

    delete: tuple[LogFile, ...] = ()
    # among `delete`: younger than the minimum age, removed by the count or size limit
    young_removed: tuple[LogFile, ...] = ()
    # younger than the minimum age and beyond the count or size limit, kept (keep_young)
    young_kept: tuple[LogFile, ...] = ()
    # among `delete`: young files that would have been kept, removed as the ceiling was reached
    ceiling_removed: tuple[LogFile, ...] = ()


def retain(files: list[LogFile], sizes: dict[LogFile, int], ages: dict[LogFile, float],
           current: LogFile | None = None, *, keep: int | None = None, keep_bytes: int | None = None,
           keep_age: float | None = None, min_age: float | None = None, keep_young: bool = False,
           ceiling: int | None = None) -> Retention:
    """Which files to remove.

    sizes and ages (seconds since each file was last written) are of the files that exist; a
    file without a size is gone already and not counted.  The current file is never removed.

    - keep_age removes every file older than it, whatever its other limits: the user's own
      age limit.
    - keep (count, the current file included) and keep_bytes (all files together) remove the
      oldest files beyond them.  A file they would remove that is younger than min_age is
      reported: removed anyway (young_removed), or with keep_young kept (young_kept), as long
      as all files kept together stay within ceiling bytes; past it the oldest of those are
      removed after all (ceiling_removed).
    """
    files = sorted(f for f in files if f in sizes)
    by_age = set()
    if keep_age is not None:
        by_age = {f for f in files if f != current and ages[f] > keep_age}
    limited = set(to_delete(files, keep))
    if keep_bytes is not None:
        total = sum(sizes[f] for f in files)
        for f in files:  # oldest first
            if total <= keep_bytes:
                break
            limited.add(f)
            total -= sizes[f]
    limited -= by_age
    limited.discard(current)
    young = sorted(f for f in limited if min_age and ages[f] < min_age)
    if not keep_young:
        return Retention(delete=tuple(sorted(by_age | limited)), young_removed=tuple(young))
    kept = list(young)
    delete = (by_age | limited) - set(kept)
    dropped: list[LogFile] = []
    if ceiling is not None:
        total = sum(sizes[f] for f in files if f not in delete)
        while kept and total > ceiling:
            f = kept.pop(0)  # the oldest first
            dropped.append(f)
            delete.add(f)
            total -= sizes[f]
    return Retention(delete=tuple(sorted(delete)), young_kept=tuple(kept),
                     ceiling_removed=tuple(dropped))


def parse_size(text: str | int) -> int:
    """'64MiB', '10MB', '4096' -> bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        s = str(text) if isinstance(text, (str, float)) else ""
        m = _SIZE.fullmatch(s) if len(s) <= _MAX_TEXT else None
        if not m or m.group(2).upper() not in _UNITS:
            raise ConfigError(f"invalid size {describe(text)}: use a number with an optional unit, "
                              "e.g. 64MiB, 10MB")
        value = int(float(m.group(1)) * _UNITS[m.group(2).upper()])  # finite: the text is short
    if value <= 0:
        raise ConfigError(f"size {describe(text)} must be positive")
    if value > _MAX_SIZE:
        raise ConfigError(f"size {describe(text)} is larger than any file can be (8 EiB)")
    return value


def parse_duration(text: str | int | float) -> float:
    """'1h', '30m', '1h30m', '500ms', '10' (seconds) -> seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if text <= 0:
            raise ConfigError(f"duration {describe(text)} must be positive")
        try:
            value = float(text)
        except OverflowError:  # an integer beyond a float's range
            raise ConfigError(f"duration {describe(text)} is too large") from None
        if not math.isfinite(value):
            raise ConfigError(f"duration {describe(text)} must be a finite number of seconds")
        return value
    if not isinstance(text, str):
        raise ConfigError(f"invalid duration {describe(text)}: use e.g. 500ms, 30s, 10m, 1h, 1d")
    s = text.strip()
    try:
        value = float(s)
    except ValueError:
        parts = _DURATION.findall(s) if len(s) <= _MAX_TEXT else []
        if not parts or "".join(n + u for n, u in parts).lower() != s.replace(" ", "").lower():
            raise ConfigError(f"invalid duration {describe(text)}: use e.g. 500ms, 30s, 10m, 1h, 1d") from None
        value = sum(float(n) * _SECONDS[u.lower()] for n, u in parts)
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"duration {describe(text)} must be a positive, finite time")
    return value
