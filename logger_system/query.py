"""Which records `logger-system cat` shows, and which files it need not open.

A `Query` is built once from the command line (`Query.build`) and is then pure:
`matches(record)` judges one record, `may_hold(next_start_ns)` judges a whole
file before it is read.  No clock is read after `build` and no file is touched.

Filters combine with AND; a repeated `--logger` or `--pid` matches any of its
values.  `--since` and `--until` are inclusive: since <= ts <= until.

Skipping files by time, and why it is safe
------------------------------------------
A record's `ts` is the producer's CLOCK_REALTIME when it claimed its place in
the ring.  A file's start (the UTC second in its name; for a sealed file also
`created_ns` in its header, to the nanosecond) is the writer's CLOCK_REALTIME
when it opened the file.  The writer opens a file only when it has a line for
it, so:

* A file's start says nothing about how old its records are: records wait in
  the ring for as long as no writer drains it (a writer stopped for a day
  writes day-old records into a file opened now).  No file can be skipped by
  its own start, and so none can be skipped by `--until`.
* Every record of file i was drained before file i+1 was opened (the writer
  drains a batch, then writes it, opening a new file when one is full or due).
  A record is drained only once it is committed, after its `ts` was taken.
  Hence every record of file i has ts <= start(i+1).

So file i is skipped, unread, when a later file of the same sequence started
before `--since`: start(i+1) + MARGIN_NS < since.  The name's second is rounded
down, so a plaintext successor counts as started at its stamp plus one second.
A sealed successor's `created_ns` is used instead, after its header has
authenticated: a renamed file cannot make records disappear.  MARGIN_NS allows
for a step of the host's clock between a record and the next file (NTP); both
clocks are the same host's realtime clock, as producers and the writer share
the ring's memory.  The newest file has no successor and is always read.

`--level`, `--logger`, `--pid` and `--grep` say nothing about a whole file.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from fnmatch import translate
from functools import lru_cache
from typing import Any, Iterable

from .errors import ConfigError, describe
from .record import LEVELS, level_number

MARGIN_NS = 2_000_000_000  # clock steps tolerated between a record's ts and the next file's start

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_SECOND = timedelta(seconds=1)
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})?)?")
_RELATIVE = re.compile(r"-?\s*(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)\s*)+", re.IGNORECASE)
_TIME_HELP = ("use RFC 3339 (2024-05-01T12:00:00Z, 2024-05-01T14:00:00.5+02:00), a date "
              "(2024-05-01: its midnight UTC) or a time ago (90s, 10m, 2h, 3d, 1h30m)")
_MAX_TEXT = 64


def parse_time(text: str, now_ns: int, what: str = "time") -> int:
    """A point in time given on the command line -> ns since the epoch (UTC).

    RFC 3339 with `Z` or an offset; a date alone is its midnight UTC; a
    duration (`90s`, `10m`, `2h`, `3d`, `1h30m`, optionally with a leading `-`)
    is that long before now_ns.  A date and time without an offset is refused:
    the files are in UTC and a local time would be a guess.
    """
    s = text.strip() if isinstance(text, str) else ""
    if not s or len(s) > _MAX_TEXT:
        raise ConfigError(f"{what}: invalid time {describe(text)}: {_TIME_HELP}")
    if _RELATIVE.fullmatch(s):
        from .rotation import parse_duration

        if not re.search(r"[1-9]", s):
            return now_ns  # 0s: now
        try:
            return now_ns - round(parse_duration(s.lstrip("-").strip()) * 1e9)
        except ConfigError as exc:
            raise ConfigError(f"{what}: {exc}") from None
    m = _RFC3339.fullmatch(s)
    if not m:
        raise ConfigError(f"{what}: invalid time {describe(text)}: {_TIME_HELP}")
    if m.group(4) is not None and m.group(8) is None:
        raise ConfigError(f"{what}: {describe(text)} has no UTC offset: add Z (UTC) or one such "
                          "as +02:00")
    ns = _rfc3339_ns(m)
    if ns is None:
        raise ConfigError(f"{what}: {describe(text)} is not a valid date and time")
    return ns


def _rfc3339_ns(m: re.Match) -> int | None:
    y, mo, d, h, mi, sec, frac, off = m.groups()
    try:
        tz = timezone.utc
        if off and off not in "Zz":
            oh, om = int(off[1:3]), int(off[4:6])
            if oh > 23 or om > 59:
                return None
            tz = timezone((-1 if off[0] == "-" else 1) * timedelta(hours=oh, minutes=om))
        dt = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(sec or 0), tzinfo=tz)
    except ValueError:  # month 13, February 30, second 60, ...
        return None
    return (dt - _EPOCH) // _SECOND * 1_000_000_000 + int((frac or "").ljust(9, "0"))


_CANONICAL = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z", re.ASCII)


def _canonical(us: int) -> str:
    """Microseconds since the epoch -> the writer's ts form.  Outside years 1..9999, a text
    before ("") or after ("~") every such ts."""
    try:
        dt = _EPOCH + timedelta(microseconds=us)
    except OverflowError:
        return "" if us < 0 else "~"
    return f"{dt.year:04d}-{dt:%m-%dT%H:%M:%S}.{dt.microsecond:06d}Z"


@lru_cache(maxsize=4096)
def _second_ns(prefix: str) -> int | None:
    """'YYYY-MM-DDTHH:MM:SS' (UTC) -> ns since the epoch."""
    m = _RFC3339.fullmatch(prefix + "Z")
    return _rfc3339_ns(m) if m else None


def record_ns(ts: Any) -> int | None:
    """A record's `ts` -> ns since the epoch; None if it is not an RFC 3339 time.

    The writer writes `YYYY-MM-DDTHH:MM:SS.ffffffZ`; that is parsed fast, the
    second cached.  Any other RFC 3339 form is parsed in full.
    """
    if not isinstance(ts, str):
        return None
    if len(ts) == 27 and ts[19] == "." and ts[26] == "Z" and ts[20:26].isdigit() and ts[20:26].isascii():
        sec = _second_ns(ts[:19])
        return None if sec is None else sec + int(ts[20:26]) * 1000
    m = _RFC3339.fullmatch(ts) if len(ts) <= _MAX_TEXT else None
    if m is None or m.group(4) is None or m.group(8) is None:
        return None
    return _rfc3339_ns(m)


def record_level(level: Any) -> int | None:
    """A record's `level` (a name, `Level N`, or a number) -> its number; None if none."""
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    if not isinstance(level, str):
        return None
    if level in LEVELS:
        return LEVELS[level]
    if level.startswith("Level ") and level[6:].isascii() and level[6:].isdigit() and len(level) < 16:
        return int(level[6:])
    return None


def parse_level(text: str | int) -> int:
    try:
        return level_number(text)
    except ValueError as exc:
        raise ConfigError(f"--level: {exc}") from None


def parse_pid(text: str | int) -> int:
    s = text.strip() if isinstance(text, str) else text
    if isinstance(s, str) and s.isascii() and s.isdigit() and len(s) <= 10:
        s = int(s)
    if not isinstance(s, int) or isinstance(s, bool) or not 0 < s < 2**32:
        raise ConfigError(f"--pid: {describe(text)} is not a process id (a number from 1)")
    return s


@dataclass(frozen=True)
class Query:
    since_ns: int | None = None
    until_ns: int | None = None
    min_level: int | None = None
    loggers: tuple[str, ...] = ()  # fnmatch globs, case-sensitive; any may match
    pids: frozenset[int] = frozenset()
    grep: str | None = None  # RE2, searched in msg
    _pattern: Any = field(default=None, init=False, repr=False, compare=False)
    _globs: Any = field(default=None, init=False, repr=False, compare=False)
    _since_text: Any = field(default=None, init=False, repr=False, compare=False)
    _until_text: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.since_ns is not None and self.until_ns is not None and self.since_ns > self.until_ns:
            raise ConfigError("--since is later than --until: nothing could match")
        if self.grep is not None:
            from .policy import compile_pattern

            object.__setattr__(self, "_pattern", compile_pattern(self.grep, "--grep"))
        if self.loggers:  # fnmatch's own translation, compiled once
            object.__setattr__(self, "_globs", re.compile("|".join(translate(g) for g in self.loggers)))
        # the writer's `ts` form sorts as its time: the bounds in that form, to the microsecond
        # (since rounded up, until down: a record's ts has no finer digits)
        if self.since_ns is not None:
            object.__setattr__(self, "_since_text", _canonical(-(-self.since_ns // 1000)))
        if self.until_ns is not None:
            object.__setattr__(self, "_until_text", _canonical(self.until_ns // 1000))

    @classmethod
    def build(cls, *, since: str | None = None, until: str | None = None, level: str | None = None,
              loggers: Iterable[str] = (), pids: Iterable[str | int] = (), grep: str | None = None,
              now_ns: int) -> "Query":
        """From the command line's words; ConfigError naming the one that is wrong."""
        return cls(since_ns=None if since is None else parse_time(since, now_ns, "--since"),
                   until_ns=None if until is None else parse_time(until, now_ns, "--until"),
                   min_level=None if level is None else parse_level(level),
                   loggers=tuple(loggers), pids=frozenset(parse_pid(p) for p in pids), grep=grep)

    @property
    def active(self) -> bool:
        """Whether any record could fail to match."""
        return (self.since_ns is not None or self.until_ns is not None or self.min_level is not None
                or bool(self.loggers) or bool(self.pids) or self.grep is not None)

    def matches(self, rec: dict) -> bool:
        if self.pids:
            pid = rec.get("pid")
            if not isinstance(pid, int) or isinstance(pid, bool) or pid not in self.pids:
                return False
        if self.min_level is not None:
            level = record_level(rec.get("level"))
            if level is None or level < self.min_level:
                return False
        if self._globs is not None:
            name = rec.get("logger")
            if not isinstance(name, str) or self._globs.match(name) is None:
                return False
        if self._since_text is not None or self._until_text is not None:
            ts = rec.get("ts")
            if isinstance(ts, str) and len(ts) == 27 and _CANONICAL.fullmatch(ts):
                if self._since_text is not None and ts < self._since_text:
                    return False
                if self._until_text is not None and ts > self._until_text:
                    return False
            else:
                ns = record_ns(ts)
                if ns is None:
                    return False
                if self.since_ns is not None and ns < self.since_ns:
                    return False
                if self.until_ns is not None and ns > self.until_ns:
                    return False
        if self._pattern is not None:
            msg = rec.get("msg")
            if not isinstance(msg, str) or self._pattern.search(msg.encode("utf-8", "surrogatepass")) is None:
                return False
        return True

    def may_hold(self, next_start_ns: int | None) -> bool:
        """Whether a file may hold records in the window, given when the next file of its
        sequence started (None: no later file, or not known).  See the module's comment."""
        if self.since_ns is None or next_start_ns is None:
            return True
        return next_start_ns + MARGIN_NS >= self.since_ns

    def over(self, now_ns: int) -> bool:
        """Whether a record logged from now_ns on is past --until, with the margin for
        records logged before it that are still on their way into the files."""
        return self.until_ns is not None and now_ns > self.until_ns + MARGIN_NS


def plain_start_ns(stamp: str) -> int | None:
    """The latest instant a file named with this UTC second may have been opened (ns).

    A plaintext file's name is all that tells when it started; the name's second is
    rounded down, so the file opened before the end of that second."""
    m = re.fullmatch(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z", stamp)
    if not m:
        return None
    sec = _second_ns("{}-{}-{}T{}:{}:{}".format(*m.groups()))
    return None if sec is None else sec + 1_000_000_000
