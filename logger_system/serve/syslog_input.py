"""RFC 5425 syslog-over-TLS clients of `logger-system serve`: their messages as our records.

A connection whose first byte is a digit is an RFC 5425 client (octet counting; an ls://
shipper's first byte is a frame kind, a letter).  Its messages are taken apart by
ship/syslog.py (one rule for the framing and the RFC 5424 grammar, both directions), made
into records here, numbered by the server (a syslog client has no `n`), and go through the
client's sink like an ls:// batch: sanitized, sealed, rotated into DIR/<client>/, whose
stream then belongs to the syslog source (one directory, one source).

A syslog client cannot be slowed down or asked to resend: past --rate-limit its messages are
dropped and counted (`refused_rate`); a frame that is not RFC 5425 or a message that is not
RFC 5424 is counted malformed and closes the connection.

The record of a message: `ts` its TIMESTAMP (in UTC; the server's clock when NIL), `level`
from its severity, `logger` its MSGID (else APP-NAME, else "syslog"), `pid` its PROCID when
a number, `msg` its MSG, and `fields.syslog` the rest: `hostname`, `app`, `procid`, `msgid`,
`facility` and every structured-data element.  A message one of our writers made
(`[ls@PEN ...]`) keeps its own logger, level and fields.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

from ..ship.errors import FrameError
from ..ship.syslog import NIL, SyslogMessage, parse_message, record_from_message

# the source tag of a directory written by syslog clients (an ls:// source is a ring id)
SYSLOG_SOURCE = int.from_bytes(b"syslog\x00\x01", "big")
_LEVELS = {0: "CRITICAL", 1: "CRITICAL", 2: "CRITICAL", 3: "ERROR", 4: "WARNING", 5: "Level 25", 6: "INFO",
           7: "DEBUG"}


def _utc(ts: str) -> str:
    when = datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(timezone.utc)
    return f"{when.year:04d}-{when:%m-%dT%H:%M:%S}.{when.microsecond:06d}Z"


def record_of(message: SyslogMessage, n: int, now_ns: int) -> dict[str, Any]:
    """One parsed RFC 5424 message -> a record numbered n (ValueError when it cannot be one)."""
    try:
        ours = record_from_message(message)
    except (ValueError, FrameError):  # not one of our writers' messages
        ours = None
    ts = _utc(message.timestamp) if message.timestamp != NIL else None
    if ts is None:
        sec, frac = divmod(now_ns, 1_000_000_000)
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac // 1000:06d}Z"
    pid = int(message.procid) if message.procid.isascii() and message.procid.isdigit() else 0
    if pid >= 1 << 32:
        pid = 0
    syslog = {"hostname": message.hostname, "app": message.app_name, "procid": message.procid,
              "msgid": message.msgid, "facility": message.facility}
    for sd_id, params in message.structured_data:
        if ours is not None and sd_id.startswith(("ls@", "fields@")):
            continue  # what they hold is the record itself
        syslog.setdefault("sd", {})[sd_id] = dict(params)
    rec: dict[str, Any] = {"seq": n, "n": n, "ts": ts, "pid": pid}
    if ours is not None:  # one of our writers' records: its own logger, level and fields
        rec["level"] = ours.get("level", _LEVELS[message.severity])
        rec["logger"] = str(ours.get("logger", "syslog"))
        rec["msg"] = message.msg or ""
        fields = ours.get("fields") if isinstance(ours.get("fields"), dict) else {}
    else:
        rec["level"] = _LEVELS[message.severity]
        name = message.msgid if message.msgid != NIL else message.app_name
        rec["logger"] = name if name != NIL else "syslog"
        rec["msg"] = message.msg or ""
        fields = {}
    rec["fields"] = {**fields, "syslog": syslog}
    return rec


def batch_of(messages: list[bytes], first_n: int, now_ns: int) -> bytes:
    """Whole messages -> the JSON lines of an ls:// batch numbered first_n on (FrameError for
    one that is not RFC 5424, ValueError for a TIMESTAMP no date can be made of)."""
    out = []
    for i, data in enumerate(messages):
        rec = record_of(parse_message(data), first_n + i, now_ns)
        out.append(json.dumps(rec, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
    return b"".join(out)
