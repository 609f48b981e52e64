"""A shipped batch's JSON lines back into the pipeline's columns, sans-IO.

The server trusts nothing a client sends, so a batch is taken apart into the same
columns a ring drain gives (record.META_DTYPE plus one payload buffer) and goes through
the writer's own stages: Sanitize (again: the client's sanitizer may be older, off, or
the client lying), then FormatJsonl, which writes `seq`, `n`, `ts`, `level`, `pid`,
`logger`, `msg` and `fields` back in the one line layout every reader knows, with the
client's name as `host`.  Nothing of the client's bytes reaches a file without passing
through that formatter.

Lines in the writer's own layout (every batch a writer ships) are taken apart in C
(logger_system.lines); a batch with any other line goes through the general decoder below,
which holds the rules.  Each line must be a JSON object with the record keys (`seq`, `n`, `ts`, `level`, `pid`,
`logger`, `msg`; `fields` an object if present; a `host` a relay added is ignored, the
server sets its own) and `n` must be the number the batch header gives it; anything else
is a ProtocolError and the whole batch is refused (fail closed: nothing of it is written).
"""
from __future__ import annotations

import calendar
import json
import re

import numpy as np

from .. import lines as layout
from ..pipeline import Batch
from ..record import LEVELS, META_DTYPE
from ..ship.ls import ProtocolError

_KEYS = frozenset(("seq", "n", "ts", "level", "pid", "logger", "msg", "fields", "host"))
_TS = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z")
_LEVEL_N = re.compile(r"Level (\d{1,3})")
_U64 = 1 << 64
_U32 = 1 << 32


def level_of(value) -> int:
    if isinstance(value, str):
        if value in LEVELS:
            return LEVELS[value]
        m = _LEVEL_N.fullmatch(value)
        if m and int(m.group(1)) <= 255:
            return int(m.group(1))
    if type(value) is int and 0 <= value <= 255:
        return value
    raise ProtocolError("record: level is not a level name")


def ts_ns_of(value) -> int:
    m = _TS.fullmatch(value) if isinstance(value, str) else None
    if not m:
        raise ProtocolError("record: ts is not an RFC 3339 UTC time (YYYY-MM-DDTHH:MM:SS.ffffffZ)")
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    if not (1970 <= y and 1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 61):
        raise ProtocolError("record: ts is out of range")
    frac = (m.group(7) or "").ljust(9, "0")
    ns = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) * 1_000_000_000 + int(frac)
    if ns >= _U64:  # a record's time is nanoseconds in 64 bits: up to the year 2554
        raise ProtocolError("record: ts is past what a record can hold (the year 2554)")
    return ns


def _text(value, key: str) -> bytes:
    if not isinstance(value, str):
        raise ProtocolError(f"record: {key} is not a string")
    return value.encode("utf-8", "replace")  # a lone surrogate escape becomes '?'


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity: Python reads them, JSON has none


_decoder = json.JSONDecoder(parse_constant=_no_constant)
_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def decode(lines: bytes, first_n: int, count: int) -> Batch:
    """`count` JSON lines numbered first_n on -> a Batch (meta, buf) with batch.n = first_n."""
    parsed = layout.parse(lines, first_n, count) if count else None
    if (parsed is not None and len(parsed.meta) == count and parsed.all_taken
            and not bool((parsed.meta["level"] > 255).any())):
        return Batch(meta=parsed.meta, buf=memoryview(parsed.buf), end=0, n=first_n)
    return decode_general(lines, first_n, count)


def decode_general(lines: bytes, first_n: int, count: int) -> Batch:
    """decode for lines in any JSON form: the rules of what a shipped record may be.

    Built column by column (a Python list per column, one numpy assignment each): a batch
    of thousands of records must not cost a numpy call per field."""
    try:
        text = lines.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(f"batch from {first_n}: not UTF-8") from None
    rows = text.split("\n")  # not splitlines(): a JSON string may hold U+2028 as it is
    if rows and rows[-1] == "":
        rows.pop()
    if len(rows) != count:
        raise ProtocolError(f"batch from {first_n}: {len(rows)} lines for {count} records")
    seqs, pids, stamps, levels = [], [], [], []
    offsets = []  # (logger_off, logger_len, msg_off, msg_len, fields_off, fields_len)
    buf = bytearray()
    last_sec = (None, 0)
    for i, line in enumerate(rows):
        n = first_n + i
        try:
            rec, end = _decoder.raw_decode(line)
        except (ValueError, RecursionError):  # nested past the interpreter's limit is no record
            raise ProtocolError(f"record {n}: not JSON") from None
        if end != len(line) and line[end:].strip():
            raise ProtocolError(f"record {n}: bytes after its JSON object")
        if not isinstance(rec, dict):
            raise ProtocolError(f"record {n}: not a JSON object")
        if not rec.keys() <= _KEYS:
            raise ProtocolError(f"record {n}: unknown key(s) {sorted(set(rec) - _KEYS)[:3]}")
        if rec.get("n") != n or type(rec.get("n")) is not int:
            raise ProtocolError(f"record {n}: its n is {rec.get('n')!r}, the batch numbers it {n}")
        seq, pid = rec.get("seq"), rec.get("pid")
        if type(seq) is not int or not 0 <= seq < _U64:
            raise ProtocolError(f"record {n}: seq is not an integer 0..2^64-1")
        if type(pid) is not int or not 0 <= pid < _U32:
            raise ProtocolError(f"record {n}: pid is not an integer 0..2^32-1")
        ts = rec.get("ts")
        # records of one batch mostly share their second: parse it once
        if isinstance(ts, str) and len(ts) > 20 and ts[:19] == last_sec[0] and ts[19] == "." \
                and ts[-1] == "Z" and ts[20:-1].isdigit() and len(ts) <= 30 and ts[20:-1].isascii():
            stamp = last_sec[1] + int(ts[20:-1].ljust(9, "0"))
            if stamp >= _U64:
                raise ProtocolError("record: ts is past what a record can hold (the year 2554)")
        else:
            stamp = ts_ns_of(ts)
            last_sec = (ts[:19], stamp - stamp % 1_000_000_000)
        logger, msg = _text(rec.get("logger"), "logger"), _text(rec.get("msg"), "msg")
        fields = rec.get("fields")
        if fields is not None and not isinstance(fields, dict):
            raise ProtocolError(f"record {n}: fields is not an object")
        fields_b = _encoder.encode(fields).encode("utf-8", "replace") if fields else b""
        at = len(buf)
        buf += logger
        buf += msg
        buf += fields_b
        offsets.append((at, len(logger), at + len(logger), len(msg), at + len(logger) + len(msg), len(fields_b)))
        seqs.append(seq)
        pids.append(pid)
        stamps.append(stamp)
        levels.append(level_of(rec.get("level")))
    if len(buf) >= _U32:
        raise ProtocolError("batch: too large")
    meta = np.zeros(count, META_DTYPE)
    meta["seq"], meta["pid"], meta["ts_ns"], meta["level"] = seqs, pids, stamps, levels
    if count:
        cols = np.array(offsets, dtype=np.uint32).reshape(count, 6)
        for k, name in enumerate(("logger_off", "logger_len", "msg_off", "msg_len", "fields_off", "fields_len")):
            meta[name] = cols[:, k]
    return Batch(meta=meta, buf=memoryview(bytes(buf)), end=0, n=first_n)


DROPPED_MSG = b"[DROPPED:policy] the server's sanitizer policy removed this record"


def keep_numbered(batch: Batch, before: Batch, kept_before: np.ndarray) -> Batch:
    """After Sanitize: a record a rule with action `drop` removed stays as a stub.

    A writer numbers what it keeps, so a dropped record leaves no gap; the server keeps the
    source's numbers, where a dropped record would be a gap that `verify` reports as a
    loss.  So the record keeps its place (seq, n, ts, level, pid, logger) with its message
    replaced by DROPPED_MSG and no fields: nothing of its content is kept, and the chain
    of numbers stays whole.  `before`: the columns Sanitize was given (decode's), and
    `kept_before` their keep column then."""
    gone = np.nonzero((kept_before != 0) & (batch.keep == 0))[0]
    if not len(gone):
        return batch
    buf = bytearray(batch.buf)
    for i in gone:
        old = before.meta[i]
        logger = bytes(before.buf[old["logger_off"]:old["logger_off"] + old["logger_len"]])
        m = batch.meta[i]
        for k in ("seq", "ts_ns", "pid", "level"):
            m[k] = old[k]
        m["flags"] = 0
        m["logger_off"], m["logger_len"] = len(buf), len(logger)
        buf += logger
        m["msg_off"], m["msg_len"] = len(buf), len(DROPPED_MSG)
        buf += DROPPED_MSG
        m["fields_off"], m["fields_len"] = len(buf), 0
        batch.keep[i] = 1
    batch.buf = memoryview(bytes(buf))
    return batch
