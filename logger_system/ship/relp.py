"""The RELP client protocol (rsyslog's Reliable Event Logging Protocol), sans-IO.

`RelpConnection` is one RELP session over one transport connection.  It takes bytes that
arrived (`receive_data`) and hands out events (`next_event`); every command it issues is
returned as the bytes to send.  It never reads a socket or a clock: the blocking client in
client.py does that, and the tests drive it with bytes alone.

The wire, as librelp speaks it (doc/relp.md of librelp, and what imrelp answers):

    FRAME    = TXNR SP COMMAND SP DATALEN [SP DATA] LF      DATA present iff DATALEN > 0
    TXNR     = 1*9DIGIT   commands 1..999999999, then 1 again; 0 only for server hints
    COMMAND  = 1*32ALPHA  open, syslog, close from us; rsp and the serverclose hint to us
    DATALEN  = 1*9DIGIT   octets of DATA
    rsp DATA = 3DIGIT [SP HUMAN-TEXT] [LF CMDDATA]        200 is success, anything else not
    offers   = NAME["=" VALUE *("," VALUE)] *(LF ...)      the open's DATA and its rsp's CMDDATA

Rules this module holds (its tests feed each of them as bytes):

  * A session starts with `open` on txnr 1, offering relp_version=0 (what librelp and
    rsyslog speak), our relp_software, and commands=syslog.  Nothing else is sent before
    the open's `rsp 200` arrives and its offers name a relp_version and the syslog command.
  * Every syslog command takes the next txnr and stays outstanding until its `rsp` comes;
    at most `window` are outstanding at once (`can_send`).  An `rsp` for a txnr that is not
    outstanding, any command other than `rsp` and `serverclose`, or a frame that does not
    parse, breaks the session (ProtocolError, FrameError): a peer that lost count cannot
    be believed about what it acknowledged.
  * `rsp 200` acknowledges exactly its command (Acked); another code refuses it (Refused):
    the server said it will not take that message, so it is not owed again.
  * When the connection breaks, by `connection_lost`, a `serverclose` hint or an error,
    every syslog command without an `rsp` is owed: `unacked()` gives them back in the order
    they were sent, for a new session (numbered from 1 again) to send before anything new.
    A message the server wrote but whose rsp was lost is sent twice: RELP is at least once.
  * Events made by the frames before the one that broke the session are still handed out:
    an acknowledgement that arrived before garbage is an acknowledgement.

Why not relppy (PyPI, 0.4, "RELP protocol server"): its client is two threads and futures
around a socket, not a protocol core we can feed bytes; it finds frames by splitting lines
and spaces (a length of any size is taken, a bad trailer is an assert), has no window
(its resend buffer only warns when full), resends on a timer over the same connection
(duplicates with no failure at all), and pulls in click.  The protocol is small; the
rules above are the whole client, tested byte by byte, under our own error hierarchy.
"""
from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Iterator, NamedTuple

from logger_system.ship.errors import FrameError, FrameTooLargeError, ProtocolError, RecordFormatError

MAX_TXNR = 999_999_999
RELP_VERSION = "0"
DEFAULT_WINDOW = 128  # librelp's default number of unacknowledged frames
DEFAULT_MAX_DATA = 128 * 1024  # librelp's default maximum DATALEN
SOFTWARE = "logger_system"

_ALPHA = re.compile(rb"[A-Za-z]{1,32}")
_HEADER = re.compile(rb"(\d{1,9}) ([A-Za-z]{1,32}) (\d{1,9})([ \n])")
_RSP_OK = re.compile(rb"(\d{1,9}) rsp 6 200 OK\n")  # librelp's answer to a syslog command it took


def next_txnr(txnr: int) -> int:
    """The transaction number after txnr: 1..999999999, wrapping to 1."""
    return 1 if txnr >= MAX_TXNR else txnr + 1


# ---- frames ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Frame:
    txnr: int
    command: str
    data: bytes = b""


def encode_frame(txnr: int, command: str, data: bytes = b"") -> bytes:
    """The bytes of one RELP frame."""
    if not 0 <= txnr <= MAX_TXNR:
        raise ValueError(f"a RELP txnr is 0..{MAX_TXNR}, not {txnr}")
    if not _ALPHA.fullmatch(command.encode("ascii", "replace")):
        raise ValueError(f"a RELP command is 1..32 ASCII letters, not {command!r}")
    if len(data) > MAX_TXNR:
        raise ValueError("a RELP frame holds at most 999999999 octets of data")
    if not data:
        return b"%d %s 0\n" % (txnr, command.encode("ascii"))
    return b"%d %s %d %s\n" % (txnr, command.encode("ascii"), len(data), data)


class FrameDecoder:
    """Takes a stream of RELP frames apart: feed(bytes), then next_frame() until None.

    max_data bounds DATALEN; a longer frame is refused from its header, before its data.
    After a FrameError the decoder stays failed.
    """

    def __init__(self, max_data: int = DEFAULT_MAX_DATA) -> None:
        self.max_data = max_data
        self._buf = bytearray()
        self._failed: FrameError | None = None
        self.offset = 0

    def feed(self, data: bytes) -> None:
        if self._failed is not None:
            raise self._failed
        self._buf += data

    @property
    def buffered(self) -> int:
        """Octets fed and not yet taken as frames."""
        return len(self._buf)

    def _fail(self, what: str, error: type[FrameError] = FrameError) -> FrameError:
        shown = bytes(self._buf[:40])
        self._failed = error(f"not a RELP frame at stream offset {self.offset}: {what} (found {shown!r})")
        return self._failed

    def _number(self, pos: int, what: str) -> tuple[int, int] | None:
        """Digits at pos up to a space or LF: (value, end) or None if the buffer ends first."""
        buf = self._buf
        end = pos
        while end < len(buf) and 0x30 <= buf[end] <= 0x39:
            end += 1
            if end - pos > 9:
                raise self._fail(f"{what} has more than 9 digits")
        if end == len(buf):
            return None
        if end == pos:
            raise self._fail(f"{what} must be a decimal number")
        return int(buf[pos:end]), end

    def next_frame(self) -> Frame | None:
        if self._failed is not None:
            raise self._failed
        buf = self._buf
        head = _HEADER.match(buf)  # the common case in one step; anything else, octet by octet
        if head is not None:
            datalen = int(head.group(3))
            if datalen <= self.max_data and (datalen == 0) == (head.group(4) == b"\n"):
                pos = head.end()
                end = pos if datalen == 0 else pos + datalen + 1
                if len(buf) < end:
                    return None
                if buf[end - 1] == 0x0A:
                    frame = Frame(int(head.group(1)), head.group(2).decode("ascii"), bytes(buf[pos:end - 1]))
                    del buf[:end]
                    self.offset += end
                    return frame
        got = self._number(0, "TXNR")
        if got is None:
            return None
        txnr, pos = got
        if buf[pos] != 0x20:
            raise self._fail("TXNR must be followed by a space")
        start = pos + 1
        pos = start
        while pos < len(buf) and (0x41 <= buf[pos] <= 0x5A or 0x61 <= buf[pos] <= 0x7A):
            pos += 1
            if pos - start > 32:
                raise self._fail("COMMAND is longer than 32 letters")
        if pos == len(buf):
            return None
        if pos == start or buf[pos] != 0x20:
            raise self._fail("COMMAND must be 1..32 letters followed by a space")
        command = buf[start:pos].decode("ascii")
        got = self._number(pos + 1, "DATALEN")
        if got is None:
            return None
        datalen, pos = got
        if datalen > self.max_data:
            raise self._fail(f"DATALEN {datalen} is over the limit of {self.max_data}", FrameTooLargeError)
        if datalen == 0:
            if buf[pos] != 0x0A:
                raise self._fail("a frame without data must end with LF right after its DATALEN 0")
            end = pos + 1
            data = b""
        else:
            if buf[pos] != 0x20:
                raise self._fail("DATALEN must be followed by a space and the data")
            end = pos + 1 + datalen + 1
            if len(buf) < end:
                return None
            if buf[end - 1] != 0x0A:
                raise self._fail(f"the frame's {datalen} octets of data are not followed by its LF trailer")
            data = bytes(buf[pos + 1:end - 1])
        del buf[:end]
        self.offset += end
        return Frame(txnr, command, data)

    def frames(self) -> Iterator[Frame]:
        while (f := self.next_frame()) is not None:
            yield f

    def close(self) -> None:
        """The stream ended: FrameError if inside a frame."""
        if self._failed is not None:
            raise self._failed
        if self._buf:
            raise self._fail(f"the stream ended inside a frame ({len(self._buf)} octets of it received)")


# ---- rsp data and offers --------------------------------------------------------------

@dataclass(frozen=True)
class Response:
    code: int
    text: str
    body: bytes = b""

    @property
    def ok(self) -> bool:
        return self.code == 200


def parse_response(data: bytes) -> Response:
    """The DATA of an `rsp` frame: 3DIGIT [SP HUMAN-TEXT] [LF CMDDATA]."""
    if len(data) < 3 or not data[:3].isdigit():
        raise ProtocolError(f"an rsp must start with a 3-digit status, not {bytes(data[:16])!r}")
    code = int(data[:3])
    rest = data[3:]
    head, lf, body = rest.partition(b"\n")
    if head and head[:1] != b" ":
        raise ProtocolError(f"an rsp's status must be followed by a space or LF, not {bytes(head[:16])!r}")
    return Response(code, head[1:].decode("utf-8", "replace"), body if lf else b"")


def encode_offers(offers: list[tuple[str, list[str]]]) -> bytes:
    lines = []
    for name, values in offers:
        lines.append(f"{name}={','.join(values)}" if values else name)
    return "\n".join(lines).encode("utf-8")


def parse_offers(data: bytes) -> dict[str, list[str]]:
    """Offer lines -> {name: [values]}; empty lines are skipped."""
    offers: dict[str, list[str]] = {}
    for line in data.decode("utf-8", "replace").split("\n"):
        if not line:
            continue
        name, eq, values = line.partition("=")
        offers[name] = [v for v in values.split(",") if v] if eq else []
    return offers


# ---- the session ----------------------------------------------------------------------

class State(Enum):
    IDLE = "idle"  # nothing sent yet
    OPENING = "opening"  # open sent, its rsp not yet in
    OPEN = "open"  # syslog commands may be sent
    CLOSING = "closing"  # close sent
    CLOSED = "closed"  # the close was answered
    BROKEN = "broken"  # the connection is gone or untrustworthy; unacked() is owed


@dataclass(frozen=True)
class Opened:
    offers: dict[str, list[str]]


class Acked(NamedTuple):  # a tuple: one is made per message answered
    txnr: int
    item: Any


@dataclass(frozen=True)
class Refused:
    txnr: int
    item: Any
    code: int
    text: str


@dataclass(frozen=True)
class ServerClosed:
    """The server's serverclose hint: it closes the connection; what is unacked is owed."""


@dataclass(frozen=True)
class Closed:
    """Our close was answered: the session ended cleanly."""


Event = Opened | Acked | Refused | ServerClosed | Closed

# which incoming commands each state takes (h11's habit: the rules as a table)
_TAKES = {
    State.IDLE: frozenset(),
    State.OPENING: frozenset({"rsp", "serverclose"}),
    State.OPEN: frozenset({"rsp", "serverclose"}),
    State.CLOSING: frozenset({"rsp", "serverclose"}),
    State.CLOSED: frozenset(),
    State.BROKEN: frozenset(),
}


@dataclass(slots=True)
class _Outstanding:
    command: str
    message: bytes = b""
    item: Any = None


@dataclass
class RelpConnection:
    """One RELP session: bytes in, events out, commands as bytes to send."""

    window: int = DEFAULT_WINDOW
    max_data: int = DEFAULT_MAX_DATA
    software: str = SOFTWARE
    state: State = field(default=State.IDLE, init=False)

    def __post_init__(self) -> None:
        if not 1 <= self.window < MAX_TXNR:
            raise ValueError(f"a RELP window is 1..{MAX_TXNR - 1}, not {self.window}")
        self._txnr = 1
        self._outstanding: dict[int, _Outstanding] = {}  # in send order (dicts keep it)
        self._syslogs = 0  # of which syslog commands
        self._decoder = FrameDecoder(self.max_data)
        self._events: deque[Event] = deque()
        self.offers: dict[str, list[str]] = {}

    # -- what we send --

    def _command(self, command: str, data: bytes, entry: _Outstanding) -> bytes:
        txnr = self._txnr
        self._txnr = next_txnr(txnr)
        self._outstanding[txnr] = entry
        return encode_frame(txnr, command, data)

    def start(self) -> bytes:
        """The open command that begins the session."""
        self._require(State.IDLE, "start")
        self.state = State.OPENING
        offers = [("relp_version", [RELP_VERSION]), ("relp_software", [self.software]), ("commands", ["syslog"])]
        return self._command("open", encode_offers(offers), _Outstanding("open"))

    @property
    def outstanding(self) -> int:
        """syslog commands sent and not yet answered."""
        return self._syslogs

    @property
    def can_send(self) -> bool:
        return self.state is State.OPEN and len(self._outstanding) < self.window

    def send_syslog(self, message: bytes, item: Any = None) -> bytes:
        """A syslog command carrying one message; item comes back in its Acked/Refused."""
        if self.state is not State.OPEN:
            self._require(State.OPEN, "send a syslog message")
        if len(self._outstanding) >= self.window:
            raise ProtocolError(f"the window of {self.window} unacknowledged commands is full: wait for rsp")
        size = len(message)
        if not 0 < size <= self.max_data:
            raise RecordFormatError(f"a RELP syslog message is 1..{self.max_data} octets, not {size}")
        if type(message) is not bytes:
            message = bytes(message)
        self._syslogs += 1
        txnr = self._txnr  # _command's steps, for the one command sent per record
        self._txnr = 1 if txnr >= MAX_TXNR else txnr + 1
        self._outstanding[txnr] = _Outstanding("syslog", message, item)
        return b"%d syslog %d %s\n" % (txnr, size, message)

    def close(self) -> bytes:
        """The close command; nothing may be sent after it."""
        self._require(State.OPEN, "close")
        self.state = State.CLOSING
        return self._command("close", b"", _Outstanding("close"))

    def _require(self, state: State, what: str) -> None:
        if self.state is not state:
            raise ProtocolError(f"cannot {what} in RELP state {self.state.value} (needs {state.value})")

    # -- what we receive --

    def receive_data(self, data: bytes) -> None:
        """Bytes that arrived.  Events come out of next_event()."""
        if self.state is State.IDLE and data:
            self.state = State.BROKEN
            raise ProtocolError("the server sent data before the session's open")
        if self.state in (State.BROKEN, State.CLOSED, State.IDLE):
            return  # after the end, a serverclose or a reset is no news
        try:
            if self.state is State.OPEN and not self._decoder.buffered:
                data = self._take_oks(data)
            self._decoder.feed(data)
            for frame in self._decoder.frames():
                self._handle(frame)
                if self.state is State.BROKEN:
                    break
        except (FrameError, ProtocolError):
            self.state = State.BROKEN
            raise

    def _take_oks(self, data: bytes) -> bytes:
        """The plain `rsp 200 OK` answers to syslog commands at the front of data, handled
        without the general frame path (they are nearly all a session receives); returns the
        rest, which the decoder takes.  Exactly what _handle would do with those frames."""
        match, outstanding, events = _RSP_OK.match, self._outstanding, self._events
        pos = 0
        while (m := match(data, pos)) is not None:
            txnr = int(m.group(1))
            entry = outstanding.get(txnr)
            if entry is None or entry.command != "syslog":
                break  # the general path says what is wrong with it
            del outstanding[txnr]
            self._syslogs -= 1
            events.append(Acked(txnr, entry.item))
            pos = m.end()
        if not pos:
            return data
        self._decoder.offset += pos
        return data[pos:]

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def events(self) -> Iterator[Event]:
        while self._events:
            yield self._events.popleft()

    def _handle(self, frame: Frame) -> None:
        if frame.command not in _TAKES[self.state]:
            raise ProtocolError(f"the server sent {frame.command!r} (txnr {frame.txnr}) in state {self.state.value}")
        if frame.command == "serverclose":
            if frame.txnr != 0:
                raise ProtocolError(f"serverclose is a hint and comes on txnr 0, not {frame.txnr}")
            self.state = State.BROKEN
            self._events.append(ServerClosed())
            return
        entry = self._outstanding.pop(frame.txnr, None)
        if entry is None:
            raise ProtocolError(f"an rsp for txnr {frame.txnr}, which has no command outstanding")
        rsp = parse_response(frame.data)
        if entry.command == "open":
            if not rsp.ok:
                raise ProtocolError(f"the server refused the RELP session: {rsp.code} {rsp.text}")
            offers = parse_offers(rsp.body)
            if "relp_version" not in offers:
                raise ProtocolError("the server's answer to open offers no relp_version")
            if "syslog" not in offers.get("commands", []):
                raise ProtocolError("the server does not offer the syslog command")
            self.offers = offers
            self.state = State.OPEN
            self._events.append(Opened(offers))
        elif entry.command == "syslog":
            self._syslogs -= 1
            if rsp.ok:
                self._events.append(Acked(frame.txnr, entry.item))
            else:
                self._events.append(Refused(frame.txnr, entry.item, rsp.code, rsp.text))
        else:  # close
            self.state = State.CLOSED
            self._events.append(Closed())

    # -- when the connection is gone --

    def connection_lost(self) -> None:
        """The transport closed or failed: the session is over and unacked() is owed."""
        if self.state is not State.CLOSED:
            self.state = State.BROKEN

    def unacked(self) -> list[tuple[bytes, Any]]:
        """The syslog messages not answered, in send order, with their items."""
        return [(e.message, e.item) for e in self._outstanding.values() if e.command == "syslog"]
