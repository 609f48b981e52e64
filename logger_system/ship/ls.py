"""The `ls://` protocol between a writer's shipper and `logger-system serve`: frames, sans-IO.

Over TLS (mutual: the server names the client by its certificate), one conversation per
connection.  Every frame is

    kind (1 byte) | length (4 bytes, big-endian) | payload (length bytes)

kind  sender  payload
 H    client  HELLO: JSON {"version": 1, "source": "<16 hex>"}: the source stream's tag
 W    server  WELCOME: JSON {"next_n": N, "max_frame": M}: every record of that source numbered
              below N is durably written at the server; the client sends from N on, in BATCH
              frames of at most M bytes (the server's --max-frame; a server that does not say
              takes MAX_FRAME, and a client that is not told keeps its batches well under it)
 B    client  BATCH: JSON header {"first_n": N, "count": C, "head": {...} or null}, a newline,
              then C JSON lines (the records as the writer wrote them, `n` first_n .. first_n+C-1
              unless the header says `"gap": G`: G records before first_n were lost at the source)
 A    server  ACK: JSON {"next_n": N}: as in WELCOME, after a batch is durably written
 E    either  ERROR: JSON {"error": "..."}: the sender closes the connection after it
 Q    client  BYE: empty; the server answers with a last ACK and closes

Exactly once: the server keeps, per client and source, the next `n` it expects, durably with
the records it wrote; the client resends from what WELCOME says, and the server skips records
numbered below what it has (a resend after a lost ACK), so each record is written once.

`head` carries where the source's sealed chain stood after the batch's records were written
(file id, chunk count and digest of its last chunk), so that the server keeps the chain heads
of the source off its host.

The decoder checks every frame before anything acts on it: an unknown kind, a length over the
limit, a payload that is not the JSON its kind needs is a ProtocolError, and the peer closes the
connection (counted as malformed by the server).
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass

from .errors import FrameError

VERSION = 1
HELLO, WELCOME, BATCH, ACK, ERROR, BYE = b"H", b"W", b"B", b"A", b"E", b"Q"
KINDS = frozenset((HELLO, WELCOME, BATCH, ACK, ERROR, BYE))
_HEAD = struct.Struct(">cI")
# the largest frame either side accepts: a batch of the writer's is at most this
MAX_FRAME = 8 << 20
# the largest control frame (all but BATCH)
MAX_CONTROL = 4096


class ProtocolError(FrameError):
    """A frame that is not one of this protocol's: the connection is closed."""


@dataclass(frozen=True)
class Frame:
    kind: bytes
    payload: bytes

    def json(self) -> dict:
        """The payload of a control frame as a JSON object."""
        return _object(self.payload, self.kind)


def encode(kind: bytes, payload: bytes = b"") -> bytes:
    if kind not in KINDS:
        raise ValueError(f"unknown frame kind {kind!r}")
    if len(payload) > (MAX_FRAME if kind == BATCH else MAX_CONTROL):
        raise ValueError(f"frame of {len(payload)} bytes is over the limit")
    return _HEAD.pack(kind, len(payload)) + payload


def control(kind: bytes, obj: dict) -> bytes:
    return encode(kind, json.dumps(obj, separators=(",", ":")).encode())


def hello(source: int) -> bytes:
    return control(HELLO, {"version": VERSION, "source": f"{source:016x}"})


def welcome(next_n: int, max_frame: int | None = None) -> bytes:
    obj = {"next_n": next_n}
    if max_frame is not None:
        obj["max_frame"] = max_frame
    return control(WELCOME, obj)


def ack(next_n: int) -> bytes:
    return control(ACK, {"next_n": next_n})


def error(text: str) -> bytes:
    return control(ERROR, {"error": text[:200]})


def bye() -> bytes:
    return encode(BYE)


def batch(first_n: int, lines: bytes, count: int, *, head: dict | None = None, gap: int = 0) -> bytes:
    """A BATCH frame: `lines` holds `count` records, one JSON object per line, each ending in
    a newline, numbered first_n on."""
    header = {"first_n": first_n, "count": count, "head": head}
    if gap:
        header["gap"] = gap
    h = json.dumps(header, separators=(",", ":")).encode()
    size = len(h) + 1 + len(lines)
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes is over the limit")
    return b"".join((_HEAD.pack(BATCH, size), h, b"\n", lines))  # one copy of the lines, not two


@dataclass(frozen=True)
class Batch:
    first_n: int
    count: int
    lines: bytes
    head: dict | None
    gap: int


def parse_batch(payload: bytes) -> Batch:
    """A BATCH frame's payload, checked: a header object with non-negative integers, and
    exactly `count` newline-terminated lines after it."""
    cut = payload.find(b"\n")
    if cut < 0:
        raise ProtocolError("batch without a header line")
    h = _object(payload[:cut], BATCH)
    first_n, count, gap = h.get("first_n"), h.get("count"), h.get("gap", 0)
    head = h.get("head")
    if not all(type(v) is int and 0 <= v < 1 << 63 for v in (first_n, count, gap)):
        raise ProtocolError("batch header: first_n, count and gap must be integers >= 0")
    if head is not None and not isinstance(head, dict):
        raise ProtocolError("batch header: head must be an object or null")
    lines = payload[cut + 1:]
    if count == 0 and lines:
        raise ProtocolError("batch of 0 records with bytes after its header")
    complete = lines.count(b"\n")
    if count and (not lines.endswith(b"\n") or complete != count):
        raise ProtocolError(f"batch header says {count} records; its body has {complete} complete lines")
    return Batch(first_n, count, lines, head, gap)


def _object(data: bytes, kind: bytes) -> dict:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):  # 4 KiB of `[` nests past the limit
        raise ProtocolError(f"{kind.decode(errors='replace')} frame: not JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"{kind.decode(errors='replace')} frame: not a JSON object")
    return obj


class Decoder:
    """Frames out of a byte stream fed in pieces of any size.  `max_frame` bounds a BATCH;
    control frames are bounded by MAX_CONTROL.  After a ProtocolError the decoder is spent."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self._max = max_frame
        self._failed: ProtocolError | None = None

    def feed(self, data: bytes) -> list[Frame]:
        if self._failed:
            raise self._failed
        self._buf += data
        out = []
        while len(self._buf) >= _HEAD.size:
            kind, length = _HEAD.unpack_from(self._buf)
            if kind not in KINDS:
                self._failed = ProtocolError(f"unknown frame kind {kind!r}")
                raise self._failed
            limit = self._max if kind == BATCH else MAX_CONTROL
            if length > limit:
                self._failed = ProtocolError(f"frame of {length} bytes is over the limit of {limit}")
                raise self._failed
            if len(self._buf) < _HEAD.size + length:
                break
            with memoryview(self._buf) as view:  # one copy of the payload, not two
                payload = bytes(view[_HEAD.size:_HEAD.size + length])
            del self._buf[:_HEAD.size + length]  # from the front: no copy of the rest
            out.append(Frame(kind, payload))
        return out

    @property
    def pending(self) -> int:
        """Bytes of a frame not complete yet."""
        return len(self._buf)


def parse_source(hello_obj: dict) -> int:
    """The source tag of a HELLO, checked."""
    if hello_obj.get("version") != VERSION:
        raise ProtocolError(f"hello: protocol version {hello_obj.get('version')!r}, this side speaks {VERSION}")
    src = hello_obj.get("source")
    if not (isinstance(src, str) and len(src) == 16 and all(c in "0123456789abcdef" for c in src)):
        raise ProtocolError("hello: source must be 16 lowercase hex digits")
    return int(src, 16)


def parse_max_frame(welcome_obj: dict) -> int | None:
    """The largest BATCH frame a WELCOME says the server takes (None if it does not say)."""
    m = welcome_obj.get("max_frame")
    if m is None:
        return None
    if type(m) is not int or not 1024 <= m <= MAX_FRAME:
        raise ProtocolError(f"welcome: max_frame must be an integer 1024..{MAX_FRAME}")
    return m


def parse_next_n(obj: dict, kind: str) -> int:
    n = obj.get("next_n")
    if type(n) is not int or not 0 <= n < 1 << 63:
        raise ProtocolError(f"{kind}: next_n must be an integer >= 0")
    return n
