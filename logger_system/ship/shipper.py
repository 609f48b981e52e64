"""The writer's shipping: one spool and one shipper thread per destination.

The writer hands each formatted batch to `Shipping.put` (a sink, as its files are) before it
writes it to its files (ship/spool.py says why that order), and nothing else: a
shipper thread reads its spool and sends, so a receiver that is slow, away or refusing never
slows the drain.  A thread connects over TLS, asks the receiver where to resume (ls:// says; the
others resume from the spool's cursor), sends frames within a window of unacknowledged records,
and moves the cursor as acknowledgements come.  Errors close the connection, are counted, and
the thread connects again after a backoff (0.1 s doubling to 5 s).

What `stats --json` shows under `ship` is published by the writer in `/dev/shm/<ring>.ship`
(JSON, 0600) about once a second: per destination `url`, `shipped` (records sent, resends
included), `acked` (the next n the receiver acknowledged), `pending` (spooled, not acknowledged),
`errors`, `connected`, `overflow` (not spooled: the spool was full), `torn`, `last_error`.
"""
from __future__ import annotations

import json
import os
import ssl
import threading
import time
from collections import deque
from pathlib import Path

from . import ls
from .client import RelpClient, SyslogTlsClient
from .destination import Destination
from .lsclient import LsClient
from . import relp
from .errors import ShipError
from .spool import Frame, Spool
from .syslog import Formatted, SyslogFormat

WINDOW_RECORDS = 50_000    # unacknowledged records in flight per destination
BATCH_BYTES = 1 << 20      # ls:// : spooled frames are joined into batches of up to this many bytes
BATCH_RECORDS = 10_000     # ... and of up to this many records
HEADER_ROOM = 2048         # of a server's max_frame, what a batch's header line may take
CONNECT_TIMEOUT = 10.0
SEND_TIMEOUT = 30.0
BACKOFF_MAX = 5.0


class LsSession:
    """ls:// to `logger-system serve`: exactly once (the server says where to resume)."""

    def __init__(self, dest: Destination, source: int) -> None:
        self.client = LsClient(dest.host, dest.port, source, ca=str(dest.tls.ca), context=dest.tls.context(),
                               server_name=dest.server_name, timeout=SEND_TIMEOUT)

    def open(self) -> int:
        return self.client.connect()

    def batch_limits(self) -> tuple[int, int]:
        """The bytes of lines and the records one BATCH may hold: what the server's WELCOME
        said it takes (less room for the header), and no more than BATCH_BYTES anyway."""
        most = self.client.max_frame
        room = BATCH_BYTES if most is None else max(most - HEADER_ROOM, most // 2)
        return min(BATCH_BYTES, room), BATCH_RECORDS

    def send(self, frame: Frame, gap: int, head: dict | None = None) -> None:
        self.client.send(frame.first_n, frame.lines, frame.count, head=head, gap=gap)

    def acked(self, timeout: float) -> int | None:
        return self.client.poll_ack(timeout)

    def close(self) -> None:
        self.client.timeout = 2.0  # the last ACKs, briefly: the spool keeps what is not acknowledged
        try:
            self.client.bye()
        except ShipError:
            pass
        finally:
            self.client.close()


class _SyslogBase:
    """RFC 5424 messages of each record, for the syslog transports."""

    max_octets: int | None = None

    def __init__(self, dest: Destination, source: int) -> None:
        self.dest = dest
        self.format = SyslogFormat(max_octets=self.max_octets)
        self.client = None
        self.progress = None  # called with the n up to which records are delivered, mid-frame
        self.unshippable = 0  # records no message could be made of (skipped, counted)
        self._acked: int | None = None

    def messages(self, frame: Frame, framed: bool = False) -> Formatted:
        """The frame's records as messages (in C for the writer's line layout)."""
        made = self.format.format_lines(frame.lines, frame.first_n, framed=framed)
        self.unshippable += made.unshippable
        return made

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    def acked(self, timeout: float) -> int | None:
        got, self._acked = self._acked, None
        return got


class RelpSession(_SyslogBase):
    """relp:// : each record a RELP syslog command, the window kept full across frames; the
    spool's cursor moves to the first record not yet answered (`rsp 200`).  At least once:
    what was not answered when a connection broke is sent again from the cursor."""

    max_octets = relp.DEFAULT_MAX_DATA  # a longer MSG is cut (imrelp's maxDataSize)

    def open(self) -> None:
        self.client = RelpClient(self.dest.host, self.dest.port, self.dest.tls.context(),
                                 server_name=self.dest.server_name, window=self.dest.relp_window,
                                 timeout=SEND_TIMEOUT)
        self.client.on_acks = self._answered
        self.waiting: deque[int] = deque()  # n of each message sent and not answered, in order
        self.answered: set[int] = set()      # answered out of order, ahead of waiting[0]
        self.sent_end: int | None = None     # the n after the last frame given
        self.client.connect()
        return None

    def _answered(self, ns: list[int]) -> None:
        waiting, answered = self.waiting, self.answered
        for n in ns:
            if not answered and waiting and waiting[0] == n:  # in order: nearly always
                waiting.popleft()
                continue
            answered.add(n)
            while waiting and waiting[0] in answered:
                answered.discard(waiting.popleft())

    def _position(self) -> int | None:
        """Every record below it answered (or made no message): where the cursor may go."""
        return self.waiting[0] if self.waiting else self.sent_end

    def send(self, frame: Frame, gap: int, head: dict | None = None) -> None:
        made = self.messages(frame)
        self.client.send(made.messages(), items=made.ns)
        self.waiting.extend(made.ns)
        self.sent_end = frame.end_n
        self._pump(0.0)

    @property
    def busy(self) -> bool:
        return self.client is not None and self.client.busy

    def acked(self, timeout: float) -> int | None:
        self._pump(timeout)
        return self._position()

    def _pump(self, timeout: float) -> None:
        """Errors go up after what was answered so far is made known: a reconnect resends
        only the rest."""
        try:
            self.client.pump(timeout)
        except BaseException:
            position = self._position()
            if position is not None and self.progress is not None:
                self.progress(position)
            raise


class SyslogTlsSession(_SyslogBase):
    """syslog+tls:// (RFC 5425): no acknowledgement, so a frame counts as delivered once TLS
    took it; what is in flight when a connection breaks is lost (at most once)."""

    def open(self) -> None:
        self.client = SyslogTlsClient(self.dest.host, self.dest.port, self.dest.tls.context(),
                                      server_name=self.dest.server_name, timeout=SEND_TIMEOUT)
        self.client.connect()
        return None

    def send(self, frame: Frame, gap: int, head: dict | None = None) -> None:
        made = self.messages(frame, framed=True)
        self.client.send_framed(made.data, len(made.ns))
        self._acked = frame.end_n

    def acked(self, timeout: float) -> int | None:
        self.client.check(0.0)  # a receiver that closed or refused: this connection is over
        return super().acked(timeout)


SESSIONS = {"ls": LsSession, "relp": RelpSession, "syslog+tls": SyslogTlsSession}


def joined(frames, max_bytes: int, max_records: int):
    """Spooled frames as batches of up to max_bytes of lines and max_records records: the
    frames the writer spooled one drain at a time (a few records each when it keeps up) are
    joined while their numbers run on without a gap, and a frame over the bounds is cut
    between lines (a line longer than max_bytes goes alone).  Each batch costs the server a
    write, an fsync and an ACK, and the shipper a cursor update, whatever its size."""
    parts: list[bytes] = []
    first = count = size = 0
    for frame in frames:
        for piece in _pieces(frame, max_bytes, max_records):
            if parts and (piece.first_n != first + count or size + len(piece.lines) > max_bytes
                          or count + piece.count > max_records):
                yield Frame(first, count, b"".join(parts))
                parts = []
            if not parts:
                first, count, size = piece.first_n, 0, 0
            parts.append(piece.lines)
            count += piece.count
            size += len(piece.lines)
    if parts:
        yield Frame(first, count, b"".join(parts))


def _pieces(frame: Frame, max_bytes: int, max_records: int):
    """The frame, or its lines cut into pieces within the bounds."""
    if len(frame.lines) <= max_bytes and frame.count <= max_records:
        yield frame
        return
    lines, first, at = frame.lines, frame.first_n, 0
    while at < len(lines):
        end, count = at, 0
        while end < len(lines) and count < max_records:
            nl = lines.index(b"\n", end) + 1
            if count and nl - at > max_bytes:
                break
            end, count = nl, count + 1
        yield Frame(first, count, lines[at:end])
        first, at = first + count, end


class Shipper(threading.Thread):
    """Ships one spool to one destination until stopped."""

    def __init__(self, dest: Destination, spool: Spool, source: int, heads=None) -> None:
        super().__init__(name=f"ship {dest.url}", daemon=True)
        self.dest = dest
        self.spool = spool
        self.source = source
        self.heads = heads  # the Shipping, whose `head` says where the local chain stands
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.shipped = 0
        self.errors = 0
        self.spool_errors = 0  # records not spooled because the spool could not be written
        self.unshippable = 0   # records a syslog transport could make no message of (skipped)
        self.connected = False
        self.last_error: str | None = None

    def run(self) -> None:
        backoff = 0.1
        while not self.stopping.is_set():
            try:
                self._session()
                backoff = 0.1
            except (OSError, ssl.SSLError, ShipError, ls.ProtocolError, ValueError) as exc:
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            self.connected = False
            if self.stopping.wait(backoff):
                return
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _session(self) -> None:
        session = SESSIONS[self.dest.scheme](self.dest, self.source)
        session.progress = self.spool.acknowledge
        self._unshippable_before = self.unshippable
        try:
            resume = session.open()
            self.connected = True
            if resume is not None and resume > self.spool.acked_n:
                self.spool.acknowledge(resume)
            expected = resume if resume is not None else self.spool.acked_n
            sent_upto = expected
            limits = session.batch_limits() if hasattr(session, "batch_limits") else None
            while not self.stopping.is_set():
                moved = False
                frames = self.spool.frames(sent_upto)
                for frame in (frames if limits is None else joined(frames, *limits)):
                    gap = frame.first_n - expected if frame.first_n > expected else 0
                    session.send(frame, gap, self._head_for(frame))
                    self.shipped += frame.count
                    self.unshippable = getattr(session, "unshippable", 0) + self._unshippable_before
                    expected = sent_upto = frame.end_n
                    moved = True
                    while sent_upto - self.spool.acked_n > WINDOW_RECORDS and not self.stopping.is_set():
                        self._take_acks(session, 0.2)
                    if self.stopping.is_set():
                        break
                self._take_acks(session, 0.0 if moved else 0.05)
                if not moved:
                    self.spool.tick()
                    if not getattr(session, "busy", False):
                        self.wake.wait(0.05)
                        self.wake.clear()
            # stopping: give the receiver a moment to acknowledge what it has
            deadline = time.monotonic() + 2.0
            while self.spool.acked_n < sent_upto and time.monotonic() < deadline:
                self._take_acks(session, 0.1)
        finally:
            session.close()

    def _head_for(self, frame: Frame) -> dict | None:
        """Where the local sealed chain stands as the frame goes out (its records may not be
        in the files yet: the spool comes first), with the n below which it vouches for
        every record; None before the writer has any."""
        state = self.heads.head if self.heads is not None else None
        if state is None or state[1] is None:
            return None
        return {**state[1], "next_n": state[0]}

    def _take_acks(self, session, timeout: float) -> None:
        n = session.acked(timeout)
        if n is not None:
            self.spool.acknowledge(n)

    def status(self) -> dict:
        return {"url": self.dest.url, "shipped": self.shipped, "acked": self.spool.acked_n,
                "pending": self.spool.pending, "errors": self.errors, "connected": self.connected,
                "overflow": self.spool.overflow, "torn": self.spool.torn, "spool_errors": self.spool_errors,
                "unshippable": self.unshippable,
                "last_error": self.last_error}


class Shipping:
    """Every destination of a writer: their spools (under <dir>/.spool) and shipper threads."""

    def __init__(self, destinations, directory: Path, ring: str, source: int, *, keyring=None,
                 fsync: str = "interval", fsync_interval: float = 1.0) -> None:
        self.status_path = Path("/dev/shm") / f"{ring}.ship"
        base = Path(directory) / ".spool"
        base.mkdir(mode=0o700, exist_ok=True)
        self.shippers = []
        for dest in destinations:
            spool = Spool(base, dest.url, keyring=keyring, max_bytes=dest.spool_size, fsync=fsync,
                          fsync_interval=fsync_interval)
            self.shippers.append(Shipper(dest, spool, source, heads=self))
        self._published = 0.0
        self.head: tuple[int, dict | None] | None = None  # (next n in the files, chain head)

    def written(self, next_n: int, head: dict | None) -> None:
        """The writer's files now hold every record below next_n; head: where their sealed
        chain stands (None for plaintext files)."""
        self.head = (next_n, dict(head) if head else None)

    def start(self) -> None:
        for s in self.shippers:
            s.start()

    def put(self, batch) -> None:
        """The writer's sink call: spool a formatted batch (its `out`, `kept` records numbered
        from `n`) for every destination.  A spool that cannot be written (its disk full, its
        directory gone) costs that destination these records, counted, never the drain."""
        first_n, count, lines = batch.n, batch.kept, batch.out
        for s in self.shippers:
            try:
                if s.spool.append(first_n, count, lines):
                    s.wake.set()
            except OSError as exc:
                s.spool_errors += count
                s.last_error = f"spool: {exc}"[:300]

    def publish(self, now: float, force: bool = False) -> None:
        if not force and now - self._published < 1.0:
            return
        self._published = now
        tmp = self.status_path.with_name(f".{self.status_path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, json.dumps([s.status() for s in self.shippers]).encode())
        finally:
            os.close(fd)
        os.replace(tmp, self.status_path)

    def close(self) -> None:
        for s in self.shippers:
            s.stopping.set()
            s.wake.set()
        for s in self.shippers:
            s.join(10)
            s.spool.close()
        self.publish(time.monotonic(), force=True)


def read_status(ring: str) -> list[dict]:
    """What the writer of `ring` last published about its destinations ([] if none)."""
    try:
        data = json.loads((Path("/dev/shm") / f"{ring}.ship").read_bytes())
    except (OSError, ValueError):
        return []
    return data if isinstance(data, list) else []
