"""RFC 5424 messages made from our records, and RFC 5425 octet-counted framing.

Sans-IO: nothing here touches a socket.  `SyslogFormat` turns one record (a dict as
`logger-system cat` prints it) into the bytes of one RFC 5424 message; `frame` puts
`LEN SP` in front of it; `OctetCountingDecoder` takes a byte stream apart again and
`parse_message` reads one message back, strictly.

How a record maps onto a message:

  PRI            facility * 8 + severity; the severity from the level (CRITICAL 2, ERROR 3,
                 WARNING 4, between WARNING and INFO 5 notice, INFO 6, below INFO 7)
  TIMESTAMP      `ts` as written (RFC 3339, UTC, microseconds: already RFC 5424's form)
  HOSTNAME       the shipping host's name, APP-NAME configurable, PROCID the record's pid
  MSGID          the logger name when it fits MSGID's 1..32 printable ASCII, else "-"
  SD `ls@PEN`    seq, n, logger, level, and any other top-level key of the record
  SD `fields@PEN` one parameter per structured field
  MSG            BOM + the UTF-8 message

Parameter values are text: a string as it is, anything else as its compact JSON (so a
field 3 and a field "3" arrive alike: syslog has no types).  A key that cannot be a
PARAM-NAME (longer than 32 octets, not printable ASCII, or holding `=`, space, `]` or `"`)
is not dropped: all such keys travel together as one JSON object in the `more` parameter
of `ls@PEN`, exactly.  The same goes for a top-level key named like one of ours.

The writer's own lines (`format_lines`, what the shippers send) are made into messages in C
(native/lines.c) from the columns logger_system.lines reads back; a record the C path does
not make (a field that is a list or an object, a float not as Python writes it, a key that
cannot be a PARAM-NAME, a line in another layout) is made by `format` from its JSON, so both give the same bytes for what
the C path makes (tests/test_lines.py) and `format` stays the rule.

Invariants:
  * every message `SyslogFormat.format` returns is parsed by `parse_message` to the same
    header, structured data and text, and `record_from_message` gives the record back up
    to the text form of non-string values (the property tests hold this);
  * `OctetCountingDecoder` yields exactly the messages that were framed, in order, fed in
    any split; the first byte that cannot belong to a frame, a length that is not a
    positive decimal number, or one over the limit raises FrameError, and the decoder
    stays failed: a stream that lost its framing cannot be trusted again.
"""
from __future__ import annotations

import json
import math
import re
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping

import numpy as np

from logger_system import lines as layout
from logger_system._native import ffi, lib
from logger_system.record import LEVELS, truncate_utf8
from logger_system.ship.errors import FrameError, FrameTooLargeError, RecordFormatError

BOM = b"\xef\xbb\xbf"
NIL = "-"
USER = 1  # facility "user-level messages"
DOCUMENTATION_PEN = 32473  # the private enterprise number RFC 5612 reserves for examples
DEFAULT_MAX_FRAME = 64 * 1024  # octets a decoder accepts in one frame unless told otherwise

_STANDARD = ("ts", "level", "logger", "msg", "pid", "seq", "n", "fields")
_OURS = ("seq", "n", "logger", "level", "more")  # parameter names of ls@PEN we set ourselves
_SD_NAME = re.compile(r'[!#-<>-\\^-~]{1,32}', re.ASCII)  # PRINTUSASCII less = SP ] "
_PRINTUSASCII = re.compile(r"[!-~]+", re.ASCII)
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})", re.ASCII)
_TS_LONG_FRACTION = re.compile(
    r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6})\d+(Z|[+-]\d{2}:\d{2})", re.ASCII)


# ---- the record -> message direction -------------------------------------------------

def severity(level: Any) -> int:
    """RFC 5424 severity (0..7) for a record's level: a name, "Level N", or a number."""
    number: int | None = None
    if isinstance(level, bool):
        number = None
    elif isinstance(level, int):
        number = level
    elif isinstance(level, str):
        name = level.strip().upper()
        if name in LEVELS:
            number = LEVELS[name]
        elif name.startswith("LEVEL ") and name[6:].isdigit() and name[6:].isascii():
            number = int(name[6:])
    if number is None:
        raise RecordFormatError(f"a record's level must be a level name or number, not {level!r:.80}")
    if number >= 50:
        return 2
    if number >= 40:
        return 3
    if number >= 30:
        return 4
    if number > 20:
        return 5
    if number == 20:
        return 6
    return 7


def timestamp(ts: Any) -> str:
    """RFC 5424 TIMESTAMP from a record's `ts`: its RFC 3339 text, or seconds since the epoch."""
    if ts is None:
        return NIL
    if isinstance(ts, str):
        if _TIMESTAMP.fullmatch(ts):
            return ts
        longer = _TS_LONG_FRACTION.fullmatch(ts)  # RFC 5424 allows at most 6 fraction digits
        if longer:
            return longer.group(1) + longer.group(2)
        raise RecordFormatError(f"a record's ts is not an RFC 3339 time: {ts!r:.80}")
    if isinstance(ts, (int, float)) and not isinstance(ts, bool) and math.isfinite(ts):
        try:
            when = datetime.fromtimestamp(ts, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise RecordFormatError(f"a record's ts {ts!r} is outside the years 1..9999") from None
        return f"{when.year:04d}-{when:%m-%dT%H:%M:%S}.{when.microsecond:06d}Z"
    raise RecordFormatError(f"a record's ts must be RFC 3339 text or epoch seconds, not {type(ts).__name__}")


def param_text(value: Any) -> str:
    """The text a field's value travels as: a string itself, anything else its JSON."""
    kind = type(value)
    if kind is str:
        return value
    if kind is int:  # the common values, without the JSON encoder (bool is not int here)
        return str(value)
    if value is None or kind is bool:
        return "null" if value is None else ("true" if value else "false")
    if kind is float and math.isfinite(value):
        return repr(value)  # what the JSON encoder writes for a finite float
    if isinstance(value, str):
        return str(value)
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        raise RecordFormatError(f"a record's value of type {type(value).__name__} is not JSON") from None


def escape_param(text: str) -> str:
    """PARAM-VALUE escaping (RFC 5424 6.3.3): a backslash before `"`, `\\` and `]`."""
    if "\\" not in text and '"' not in text and "]" not in text:
        return text
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _header_token(text: str, limit: int) -> str:
    return text if len(text) <= limit and _PRINTUSASCII.fullmatch(text) else NIL


def _utf8(text: str) -> bytes:
    # a lone surrogate (never in what the writer writes) must not make invalid UTF-8
    return text.encode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class SyslogFormat:
    """How records become RFC 5424 messages for one destination."""

    hostname: str = field(default_factory=socket.gethostname)
    app_name: str = "logger-system"
    facility: int = USER
    enterprise: int = DOCUMENTATION_PEN
    max_octets: int | None = None  # a message longer than this has its MSG cut to fit

    def __post_init__(self) -> None:
        if isinstance(self.facility, bool) or not isinstance(self.facility, int) or not 0 <= self.facility <= 23:
            raise RecordFormatError(f"syslog facility must be 0..23, not {self.facility!r}")
        if not (isinstance(self.enterprise, int) and self.enterprise > 0):
            raise RecordFormatError(f"the SD-ID's enterprise number must be positive, not {self.enterprise!r}")
        if self.max_octets is not None and self.max_octets < 480:  # RFC 5424 6.1: receivers take 480
            raise RecordFormatError(f"max_octets {self.max_octets} is below the 480 every receiver accepts")
        # what is the same for every message, worked out once (the dataclass is frozen)
        host_app = f"{_header_token(self.hostname, 255)} {_header_token(self.app_name, 48)}"
        object.__setattr__(self, "_host_app", host_app)
        object.__setattr__(self, "_names", {})     # key -> whether it can be a PARAM-NAME
        object.__setattr__(self, "_msgids", {})    # logger -> MSGID
        object.__setattr__(self, "_pris", {})      # level -> PRI

    @property
    def sd_id(self) -> str:
        return f"ls@{self.enterprise}"

    @property
    def fields_sd_id(self) -> str:
        return f"fields@{self.enterprise}"

    def format(self, record: Mapping[str, Any]) -> bytes:
        """One record -> the bytes of one RFC 5424 message (without framing)."""
        if type(record) is not dict and not isinstance(record, Mapping):
            raise RecordFormatError(f"a record is a mapping, not {type(record).__name__}")
        level = record.get("level")
        try:
            pri = self._pris[level]
        except (KeyError, TypeError):
            pri = self.facility * 8 + severity(level)
            if type(level) in (str, int) and len(self._pris) < 256:
                self._pris[level] = pri
        pid = record.get("pid")
        procid = str(pid) if type(pid) is int else NIL
        logger = record.get("logger")
        msgid = self._msgids.get(logger) if type(logger) is str else NIL
        if msgid is None:
            msgid = _header_token(logger, 32)
            if len(self._msgids) < 4096:
                self._msgids[logger] = msgid
        header = (f"<{pri}>1 {timestamp(record.get('ts'))} {self._host_app} "
                  f"{procid if len(procid) <= 128 else NIL} {msgid}")

        ours: list[tuple[str, Any]] = [(k, record[k]) for k in ("seq", "n", "logger", "level") if k in record]
        more: dict[str, Any] = {}
        names = self._names
        for key, value in record.items():
            if key in _STANDARD:
                continue
            if key not in _OURS and self._param_name(key):
                ours.append((key, value))
            else:
                more[str(key)] = value
        fields = record.get("fields")
        params: list[tuple[str, Any]] = []
        if fields is not None:
            if type(fields) is not dict and not isinstance(fields, Mapping):
                raise RecordFormatError(f"a record's fields are a mapping, not {type(fields).__name__}")
            extra: dict[str, Any] = {}
            for key, value in fields.items():
                ok = names.get(key) if type(key) is str else False
                if ok is None:
                    ok = self._param_name(key)
                if ok:
                    params.append((key, value))
                else:
                    extra[str(key)] = value
            if extra:
                more["fields"] = extra
        if more:
            ours.append(("more", more))
        sd = self._element(self.sd_id, ours)
        if params:
            sd += self._element(self.fields_sd_id, params)

        head = _utf8(f"{header} {sd}")
        msg = record.get("msg")
        if msg is None:
            return head
        body = _utf8(msg if isinstance(msg, str) else param_text(msg))
        if self.max_octets is not None:
            room = self.max_octets - len(head) - 1 - len(BOM)
            if room < 0:
                raise RecordFormatError(
                    f"a record's header and structured data take {len(head)} octets, over the "
                    f"{self.max_octets} a message may have: raise max_octets (and the receiver's limit)")
            body = truncate_utf8(body, room)
        return head + b" " + BOM + body

    def _param_name(self, key: Any) -> bool:
        """Whether a key can be a PARAM-NAME (remembered: the same keys come again)."""
        if not isinstance(key, str):
            return False
        ok = self._names.get(key)
        if ok is None:
            ok = bool(_SD_NAME.fullmatch(key))
            if len(self._names) < 4096:
                self._names[key] = ok
        return ok

    def format_lines(self, lines: bytes, first_n: int, *, framed: bool = False) -> Formatted:
        """The writer's JSON lines, numbered from first_n, as one message each (RFC 5425
        framed if asked), one after the other: in C for the records of the line layout,
        by `format` for the rest.  A line no message can be made of is counted, not sent."""
        parsed = layout.parse(lines, first_n)
        if parsed is None:  # cannot happen: parse is given room for every line
            raise RecordFormatError("the lines could not be read")
        count = len(parsed.meta)
        skip = (parsed.status != layout.OK).astype(np.uint8)
        cfg = self._native_cfg(framed)
        need = lib.lsr_syslog_bound(max(count, 1), len(parsed.buf), cfg)
        out = ffi.new("uint8_t[]", need)
        ends = np.zeros(max(count, 1), np.uint64)
        size = lib.lsr_syslog_format(ffi.from_buffer("lsr_meta[]", parsed.meta), count, parsed.buf,
                                     ffi.from_buffer("uint8_t[]", skip), first_n, cfg, out, need,
                                     ffi.from_buffer("uint64_t[]", ends))
        if size < 0:
            raise RecordFormatError("the message buffer was too small")  # lsr_syslog_bound rules it out
        data = ffi.buffer(out, size)[:]
        ends = ends[:count]
        starts = np.concatenate(([0], ends[:-1])) if count else ends
        if count and bool((ends > starts).all()):
            return Formatted(data, ends.tolist(), list(range(first_n, first_n + count)), 0)
        # some records are the general path's: put their messages in their places
        rows = lines.split(b"\n")
        parts: list[bytes] = []
        out_ends: list[int] = []
        ns: list[int] = []
        at = unshippable = 0
        for i in range(count):
            a, b = int(starts[i]), int(ends[i])
            if b > a:
                piece = data[a:b]
            else:
                try:
                    message = self.format(json.loads(rows[i]))
                    piece = frame(message) if framed else message
                except (ValueError, RecursionError, RecordFormatError):
                    unshippable += 1
                    continue
            parts.append(piece)
            at += len(piece)
            out_ends.append(at)
            ns.append(first_n + i)
        return Formatted(b"".join(parts), out_ends, ns, unshippable)

    def _native_cfg(self, framed: bool):
        key = "_cfg_framed" if framed else "_cfg"
        cfg = self.__dict__.get(key)
        if cfg is None:
            keep = [ffi.new("uint8_t[]", text.encode("ascii"))
                    for text in (self._host_app, self.sd_id, self.fields_sd_id)]
            cfg = ffi.new("lsr_syslog_cfg *", {
                "host_app": keep[0], "host_app_len": len(self._host_app), "facility": self.facility,
                "sd_id": keep[1], "sd_id_len": len(self.sd_id), "fields_sd_id": keep[2],
                "fields_sd_id_len": len(self.fields_sd_id), "max_octets": self.max_octets or 0,
                "framed": int(framed)})
            object.__setattr__(self, key + "_keep", keep)  # the texts live as long as the struct
            object.__setattr__(self, key, cfg)
        return cfg

    @staticmethod
    def _element(sd_id: str, params: list[tuple[str, Any]]) -> str:
        inner = "".join([f' {name}="{escape_param(param_text(value))}"' for name, value in params])
        return f"[{sd_id}{inner}]"


@dataclass
class Formatted:
    """Messages made of a run of lines: one after the other in `data`, message k ending at
    ends[k] and carrying the record numbered ns[k]; `unshippable` lines made none."""

    data: bytes
    ends: list[int]
    ns: list[int]
    unshippable: int

    def messages(self) -> list[bytes]:
        data, out, at = self.data, [], 0
        for end in self.ends:
            out.append(data[at:end])
            at = end
        return out


# ---- RFC 5425 framing -----------------------------------------------------------------

def frame(message: bytes) -> bytes:
    """RFC 5425 octet counting: `MSG-LEN SP SYSLOG-MSG`."""
    if not message:
        raise RecordFormatError("an empty message cannot be framed (MSG-LEN is at least 1)")
    return b"%d %s" % (len(message), message)


class OctetCountingDecoder:
    """Takes an RFC 5425 byte stream apart: feed(bytes), then next_frame() until None.

    max_size bounds MSG-LEN; a length with more digits than max_size needs is refused as
    soon as its digits are seen, before any of its octets arrive.
    """

    def __init__(self, max_size: int = DEFAULT_MAX_FRAME) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.max_size = max_size
        self._digits_max = len(str(max_size))
        self._buf = bytearray()
        self._failed: FrameError | None = None
        self.offset = 0  # stream offset of _buf[0], for messages

    def feed(self, data: bytes) -> None:
        if self._failed is not None:
            raise self._failed
        self._buf += data

    @property
    def buffered(self) -> int:
        """Octets fed and not yet taken as whole messages."""
        return len(self._buf)

    def _fail(self, error: FrameError) -> FrameError:
        self._failed = error
        return error

    def next_frame(self) -> bytes | None:
        """The next whole message, or None until more bytes are fed."""
        if self._failed is not None:
            raise self._failed
        buf = self._buf
        i = 0
        while i < len(buf) and 0x30 <= buf[i] <= 0x39:
            i += 1
            if i > self._digits_max:
                raise self._fail(FrameTooLargeError(
                    f"at stream offset {self.offset}: a frame length of more than {self._digits_max} digits, "
                    f"over the limit of {self.max_size} octets"))
        if i == len(buf):
            return None
        if i == 0 or buf[0] == 0x30:
            raise self._fail(FrameError(
                f"at stream offset {self.offset}: a frame must start with its length "
                f"(a decimal number from 1, then a space), not {bytes(buf[:16])!r}"))
        if buf[i] != 0x20:
            raise self._fail(FrameError(
                f"at stream offset {self.offset}: the frame length is not followed by a space "
                f"but by {bytes(buf[i:i + 1])!r}"))
        length = int(buf[:i])
        if length > self.max_size:
            raise self._fail(FrameTooLargeError(
                f"at stream offset {self.offset}: a frame of {length} octets, over the limit of {self.max_size}"))
        end = i + 1 + length
        if len(buf) < end:
            return None
        message = bytes(buf[i + 1:end])
        del buf[:end]
        self.offset += end
        return message

    def frames(self) -> Iterator[bytes]:
        """Every whole message fed so far."""
        while (message := self.next_frame()) is not None:
            yield message

    def close(self) -> None:
        """The stream ended: raise FrameError if it ended inside a frame."""
        if self._failed is not None:
            raise self._failed
        if self._buf:
            raise self._fail(FrameError(
                f"at stream offset {self.offset}: the stream ended inside a frame "
                f"({len(self._buf)} octets of it received)"))


# ---- reading a message back -----------------------------------------------------------

@dataclass(frozen=True)
class SyslogMessage:
    """One RFC 5424 message, parsed.  Header fields are text, "-" when nil."""

    pri: int
    version: int
    timestamp: str
    hostname: str
    app_name: str
    procid: str
    msgid: str
    structured_data: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
    msg: str | None  # None when absent; text after a BOM is UTF-8, else decoded with replacement
    utf8: bool  # MSG began with a BOM

    @property
    def facility(self) -> int:
        return self.pri >> 3

    @property
    def severity(self) -> int:
        return self.pri & 7

    def element(self, sd_id: str) -> dict[str, str] | None:
        """The parameters of one SD-ELEMENT, or None if the message has none of that id."""
        for name, params in self.structured_data:
            if name == sd_id:
                return dict(params)
        return None


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def fail(self, what: str) -> FrameError:
        shown = self.data[self.pos:self.pos + 24]
        return FrameError(f"not an RFC 5424 message: {what} at octet {self.pos} (found {shown!r})")

    def expect(self, octet: bytes, what: str) -> None:
        if self.data[self.pos:self.pos + 1] != octet:
            raise self.fail(what)
        self.pos += 1

    def token(self, limit: int, what: str) -> str:
        start = self.pos
        data = self.data
        while self.pos < len(data) and 33 <= data[self.pos] <= 126:
            self.pos += 1
        if not 1 <= self.pos - start <= limit:
            self.pos = start
            raise self.fail(f"{what} must be 1..{limit} printable ASCII characters")
        return data[start:self.pos].decode("ascii")

    def sd_name(self, what: str) -> str:
        start = self.pos
        data = self.data
        while self.pos < len(data) and 33 <= data[self.pos] <= 126 and data[self.pos] not in b'= ]"':
            self.pos += 1
        if not 1 <= self.pos - start <= 32:
            self.pos = start
            raise self.fail(f"{what} must be 1..32 printable ASCII characters other than = ] \" and space")
        return data[start:self.pos].decode("ascii")

    def param_value(self) -> str:
        out = bytearray()
        data = self.data
        while True:
            if self.pos >= len(data):
                raise self.fail("a PARAM-VALUE is not closed by '\"'")
            c = data[self.pos]
            if c == 0x22:
                self.pos += 1
                break
            if c == 0x5C and self.pos + 1 < len(data) and data[self.pos + 1] in b'"\\]':
                out.append(data[self.pos + 1])
                self.pos += 2
                continue
            if c == 0x5D:
                raise self.fail("an unescaped ']' inside a PARAM-VALUE")
            out.append(c)  # a backslash before anything else is a backslash (RFC 5424 6.3.3)
            self.pos += 1
        try:
            return out.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail("a PARAM-VALUE that is not UTF-8") from None


def parse_message(data: bytes) -> SyslogMessage:
    """One RFC 5424 message (no framing) -> SyslogMessage; FrameError if it is not one."""
    r = _Reader(bytes(data))
    r.expect(b"<", "PRI must start with '<'")
    start = r.pos
    while r.pos < len(r.data) and 0x30 <= r.data[r.pos] <= 0x39 and r.pos - start < 3:
        r.pos += 1
    digits = r.data[start:r.pos]
    if not digits or (len(digits) > 1 and digits[:1] == b"0") or int(digits) > 191:
        r.pos = start
        raise r.fail("PRIVAL must be a number 0..191")
    r.expect(b">", "PRI must end with '>'")
    start = r.pos
    while r.pos < len(r.data) and 0x30 <= r.data[r.pos] <= 0x39 and r.pos - start < 3:
        r.pos += 1
    version = r.data[start:r.pos]
    if not version or version[:1] == b"0":
        r.pos = start
        raise r.fail("VERSION must be a number from 1")
    r.expect(b" ", "a space must follow VERSION")
    ts = r.token(64, "TIMESTAMP")
    if ts != NIL and not _TIMESTAMP.fullmatch(ts):
        raise r.fail(f"TIMESTAMP {ts!r} is not an RFC 5424 time")
    r.expect(b" ", "a space must follow TIMESTAMP")
    hostname = r.token(255, "HOSTNAME")
    r.expect(b" ", "a space must follow HOSTNAME")
    app_name = r.token(48, "APP-NAME")
    r.expect(b" ", "a space must follow APP-NAME")
    procid = r.token(128, "PROCID")
    r.expect(b" ", "a space must follow PROCID")
    msgid = r.token(32, "MSGID")
    r.expect(b" ", "a space must follow MSGID")

    elements: list[tuple[str, tuple[tuple[str, str], ...]]] = []
    if r.data[r.pos:r.pos + 1] == b"-":
        r.pos += 1
    else:
        if r.data[r.pos:r.pos + 1] != b"[":
            raise r.fail("STRUCTURED-DATA must be '-' or start with '['")
        seen: set[str] = set()
        while r.data[r.pos:r.pos + 1] == b"[":
            r.pos += 1
            sd_id = r.sd_name("an SD-ID")
            if sd_id in seen:
                raise r.fail(f"the SD-ID {sd_id!r} appears twice")
            seen.add(sd_id)
            params: list[tuple[str, str]] = []
            while r.data[r.pos:r.pos + 1] == b" ":
                r.pos += 1
                name = r.sd_name("a PARAM-NAME")
                r.expect(b"=", "'=' must follow a PARAM-NAME")
                r.expect(b'"', "a PARAM-VALUE must start with '\"'")
                params.append((name, r.param_value()))
            r.expect(b"]", "an SD-ELEMENT must end with ']'")
            elements.append((sd_id, tuple(params)))

    msg: str | None = None
    utf8 = False
    if r.pos < len(r.data):
        r.expect(b" ", "a space must separate STRUCTURED-DATA from MSG")
        body = r.data[r.pos:]
        if body.startswith(BOM):
            utf8 = True
            try:
                msg = body[len(BOM):].decode("utf-8")
            except UnicodeDecodeError as e:
                raise FrameError(f"not an RFC 5424 message: MSG after its BOM is not UTF-8 ({e.reason})") from None
        else:
            msg = body.decode("utf-8", "replace")
    return SyslogMessage(int(digits), int(version), ts, hostname, app_name, procid, msgid,
                         tuple(elements), msg, utf8)


def record_from_message(message: SyslogMessage, *, enterprise: int = DOCUMENTATION_PEN) -> dict[str, Any]:
    """The record a message made by SyslogFormat carries (values of fields as their text).

    FrameError if the message has no `ls@PEN` element or its numbers are not numbers.
    """
    ours = message.element(f"ls@{enterprise}")
    if ours is None:
        raise FrameError(f"the message has no [ls@{enterprise}] element: not one of our records")
    record: dict[str, Any] = {}
    try:
        for key in ("seq", "n"):
            if key in ours:
                record[key] = int(ours.pop(key))
        if message.timestamp != NIL:
            record["ts"] = message.timestamp
        if "level" in ours:
            record["level"] = ours.pop("level")
        if message.procid != NIL:
            record["pid"] = int(message.procid)
        if "logger" in ours:
            record["logger"] = ours.pop("logger")
        more = json.loads(ours.pop("more")) if "more" in ours else {}
    except ValueError as e:
        raise FrameError(f"the [ls@{enterprise}] element does not hold a record: {e}") from None
    if not isinstance(more, dict):
        raise FrameError(f"the [ls@{enterprise}] element's 'more' is not a JSON object")
    if message.msg is not None:
        record["msg"] = message.msg
    record.update(ours)
    fields = message.element(f"fields@{enterprise}") or {}
    extra = more.pop("fields", None)
    if isinstance(extra, dict):
        fields.update(extra)
    elif extra is not None:
        more["fields"] = extra
    if fields:
        record["fields"] = fields
    record.update(more)
    return record
