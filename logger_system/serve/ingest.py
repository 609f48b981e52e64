"""A shipped batch's JSON lines back into the pipeline's columns, sans-IO.

The server trusts nothing a client sends, so a batch is taken apart into the same
columns a ring drain gives (record.META_DTYPE plus one payload buffer) and goes through
the writer's own stages: Sanitize (again: the client's sanitizer may be older, off, or
the client lying), then FormatJsonl, which writes `seq`, `n`, `ts`, `level`, `pid`,
`logger`, `msg` and `fields` back in the one line layout every reader knows, with the
client's name as `host`.  Nothing of the client's bytes reaches a file without passing
through that formatter.

Each line must be a JSON object with the record keys (`seq`, `n`, `ts`, `level`, `pid`,
`logger`, `msg`; `fields` an object if present; a `host` a relay added is ignored, the
server sets its own) and `n` must be the number the batch header gives it; anything else
is a ProtocolError and the whole batch is refused (fail closed: nothing of it is written).
"""
from __future__ import annotations

import calendar
import json
import re

import numpy as np

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
    return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) * 1_000_000_000 + int(frac)


def _text(value, key: str) -> bytes:
    if not isinstance(value, str):
        raise ProtocolError(f"record: {key} is not a string")
    return value.encode("utf-8", "replace")  # a lone surrogate escape becomes '?'


def decode(lines: bytes, first_n: int, count: int) -> Batch:
    """`count` JSON lines numbered first_n on -> a Batch (meta, buf) with batch.n = first_n."""
    meta = np.zeros(count, META_DTYPE)
    buf = bytearray()
    for i, line in enumerate(lines.splitlines()):
        try:
            rec = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            raise ProtocolError(f"record {first_n + i}: not JSON") from None
        if not isinstance(rec, dict):
            raise ProtocolError(f"record {first_n + i}: not a JSON object")
        unknown = set(rec) - _KEYS
        if unknown:
            raise ProtocolError(f"record {first_n + i}: unknown key(s) {sorted(unknown)[:3]}")
        if rec.get("n") != first_n + i or type(rec.get("n")) is not int:
            raise ProtocolError(f"record {first_n + i}: its n is {rec.get('n')!r}, the batch numbers it "
                                f"{first_n + i}")
        seq, pid = rec.get("seq"), rec.get("pid")
        if type(seq) is not int or not 0 <= seq < _U64:
            raise ProtocolError(f"record {first_n + i}: seq is not an integer 0..2^64-1")
        if type(pid) is not int or not 0 <= pid < _U32:
            raise ProtocolError(f"record {first_n + i}: pid is not an integer 0..2^32-1")
        logger, msg = _text(rec.get("logger"), "logger"), _text(rec.get("msg"), "msg")
        fields = rec.get("fields")
        if fields is not None and not isinstance(fields, dict):
            raise ProtocolError(f"record {first_n + i}: fields is not an object")
        fields_b = b""
        if fields:
            fields_b = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")
        m = meta[i]
        m["seq"], m["pid"] = seq, pid
        m["ts_ns"] = ts_ns_of(rec.get("ts"))
        m["level"] = level_of(rec.get("level"))
        m["logger_off"], m["logger_len"] = len(buf), len(logger)
        buf += logger
        m["msg_off"], m["msg_len"] = len(buf), len(msg)
        buf += msg
        m["fields_off"], m["fields_len"] = len(buf), len(fields_b)
        buf += fields_b
    if len(buf) >= _U32:
        raise ProtocolError("batch: too large")
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
