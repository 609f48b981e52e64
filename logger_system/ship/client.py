"""Blocking clients: a TLS socket around each sans-IO protocol core.

These are the only objects of the ship layer that do I/O.  Each owns at most one socket
and no thread; every wait is bounded by `timeout` (a connect, a handshake, one read), and
a deadline bounds every loop that retries.

  RelpClient        RELP over TLS (rsyslog's imrelp).  Acknowledged: `deliver` returns
                    only when every message was answered, reconnecting and resending what
                    was unanswered after any failure: at least once.
  SyslogTlsClient   RFC 5425 syslog over TLS (rsyslog's imtcp with the ossl driver).  No
                    acknowledgement exists: `send` returns once TLS took the bytes, and
                    what was in flight when a connection breaks is lost, unknowably.

Guarantees by construction:
  * no plaintext: both take an ssl.SSLContext (see tls.py) and wrap before sending a byte;
  * a failed connection is never reused: its session is dropped and a new one opens;
  * RELP resends owed messages in the order they were first sent, before any new one.
"""
from __future__ import annotations

import select
import socket
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from logger_system.ship import relp
from logger_system.ship.errors import FrameError, ProtocolError, RecordFormatError, TransportError
from logger_system.ship.syslog import frame

_SEND_BATCH = 256 * 1024  # octets gathered into one sendall
_READ_BATCH = 256 * 1024  # octets a RELP read takes of what has already arrived
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


def _open_tls(host: str, port: int, context: ssl.SSLContext, server_name: str | None,
              timeout: float) -> ssl.SSLSocket:
    """TCP connect + TLS handshake, each bounded by timeout; TransportError on failure."""
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        raise TransportError(f"cannot connect to {host}:{port}: {e.strerror or e}") from None
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls = context.wrap_socket(raw, server_hostname=server_name or host)
    except ssl.SSLCertVerificationError as e:
        raw.close()
        raise TransportError(f"TLS to {host}:{port}: the server's certificate is refused: "
                             f"{e.verify_message or e.reason}") from None
    except (ssl.SSLError, OSError) as e:
        raw.close()
        raise TransportError(f"TLS handshake with {host}:{port} failed: {_reason(e)}") from None
    tls.settimeout(timeout)
    return tls


def _reason(e: BaseException) -> str:
    if isinstance(e, ssl.SSLError) and e.reason:
        return e.reason
    return str(e) or type(e).__name__


def _peer_gone(sock: ssl.SSLSocket, timeout: float) -> str | None:
    """For a server that never sends: why it closed, if it did within timeout, else None.

    Under TLS 1.3 a client certificate is judged after the client's handshake is over, so
    a refused client learns it only from the alert that follows.
    """
    end = time.monotonic() + timeout
    saved = sock.gettimeout()
    try:
        while True:
            readable, _, _ = select.select([sock], [], [], max(0.0, end - time.monotonic()))
            if not readable and not sock.pending():
                return None
            sock.setblocking(False)
            try:
                data = sock.recv(1)
            except ssl.SSLWantReadError:  # only TLS 1.3 session tickets were there
                if time.monotonic() >= end:
                    return None
                continue
            finally:
                sock.settimeout(saved)
            return "the server closed the connection" if not data else "the server sent data"
    except (ssl.SSLError, OSError) as e:
        return _reason(e)


class SyslogTlsClient:
    """RFC 5425: octet-counted RFC 5424 messages over TLS."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext, *,
                 server_name: str | None = None, timeout: float = 10.0) -> None:
        self.host, self.port, self.context = host, port, context
        self.server_name = server_name
        self.timeout = timeout
        self._sock: ssl.SSLSocket | None = None
        self.sent = 0  # messages TLS took
        self.errors = 0

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def connect(self) -> None:
        self.close()
        try:
            self._sock = _open_tls(self.host, self.port, self.context, self.server_name, self.timeout)
        except TransportError:
            self.errors += 1
            raise

    def send(self, messages: Iterable[bytes]) -> int:
        """Frame and send messages; returns how many TLS took.  TransportError if it broke
        (those in flight are lost: RFC 5425 has no acknowledgement)."""
        if self._sock is None:
            self.connect()
        count = 0
        batch = bytearray()
        for message in messages:
            batch += frame(message)
            count += 1
            if len(batch) >= _SEND_BATCH:
                self._sendall(batch)
                batch.clear()
        if batch:
            self._sendall(batch)
        self.sent += count
        return count

    def send_framed(self, data: bytes, count: int) -> int:
        """Send `count` messages already framed (SyslogFormat.format_lines(framed=True))."""
        if self._sock is None:
            self.connect()
        view = memoryview(data)
        for at in range(0, len(data), _SEND_BATCH * 4):
            self._sendall(view[at:at + _SEND_BATCH * 4])
        self.sent += count
        return count

    def _sendall(self, data: bytes | bytearray | memoryview) -> None:
        assert self._sock is not None
        try:
            self._sock.sendall(data)
        except (ssl.SSLError, OSError) as e:
            self._broken()
            raise TransportError(f"syslog over TLS to {self.host}:{self.port} broke while sending: {_reason(e)}") from None

    def check(self, timeout: float = 0.0) -> None:
        """TransportError if the server closed or refused the connection (waits up to timeout)."""
        if self._sock is None:
            raise TransportError(f"not connected to {self.host}:{self.port}")
        why = _peer_gone(self._sock, timeout)
        if why is not None:
            self._broken()
            raise TransportError(f"syslog over TLS to {self.host}:{self.port}: {why}")

    def _broken(self) -> None:
        self.errors += 1
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def close(self) -> None:
        """Send TLS close_notify and close; never raises."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        try:
            sock.settimeout(min(self.timeout, 2.0))
            sock.unwrap()
        except (ssl.SSLError, OSError, ValueError):
            pass
        finally:
            sock.close()

    def __enter__(self) -> SyslogTlsClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@dataclass
class RelpStats:
    acked: int = 0
    refused: int = 0
    sent: int = 0  # syslog commands written, resends included
    resent: int = 0  # of which resends of an unanswered message after a reconnect
    connects: int = 0  # sessions opened
    errors: int = 0  # connections that failed or broke


class RelpClient:
    """RELP over TLS, acknowledged and resent across reconnects (at least once)."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext, *,
                 server_name: str | None = None, window: int = relp.DEFAULT_WINDOW,
                 max_message: int = relp.DEFAULT_MAX_DATA, timeout: float = 10.0, on_ack: Callable[[Any], None] | None = None,
                 on_refused: Callable[[Any, int, str], None] | None = None) -> None:
        self.host, self.port, self.context = host, port, context
        self.server_name = server_name
        self.window = window
        self.max_message = max_message  # the receiver's limit (imrelp: maxDataSize)
        self.timeout = timeout
        self.on_ack = on_ack
        self.on_acks: Callable[[list], None] | None = None  # instead of on_ack: each read's answers at once
        self.on_refused = on_refused
        self.stats = RelpStats()
        self.last_error: str | None = None
        self._sock: ssl.SSLSocket | None = None
        self._session: relp.RelpConnection | None = None
        self._failed: TransportError | None = None  # found after the last read's data, not yet raised
        self._queue: deque[tuple[bytes, Any, bool]] = deque()  # (message, item, is a resend)
        self._given = 0  # messages given to send(), the default items

    @property
    def connected(self) -> bool:
        return self._session is not None and self._session.state is relp.State.OPEN

    @property
    def pending(self) -> int:
        """Messages given and not yet answered (queued or outstanding)."""
        outstanding = self._session.outstanding if self._session is not None else 0
        return len(self._queue) + outstanding

    def connect(self) -> None:
        """A new session: TLS, open, the server's offers.  TransportError/ProtocolError."""
        self._drop()
        try:
            sock = _open_tls(self.host, self.port, self.context, self.server_name, self.timeout)
        except TransportError as e:
            self.stats.errors += 1
            self.last_error = str(e)
            raise
        session = relp.RelpConnection(window=self.window, max_data=self.max_message)
        self._sock, self._session = sock, session
        try:
            self._write(session.start())
            while session.state is relp.State.OPENING:
                self._read()
            if session.state is not relp.State.OPEN:  # a serverclose hint instead of the open's rsp
                raise TransportError(f"RELP to {self.host}:{self.port}: the server closed the session before "
                                     f"it opened (as it does when it refuses the client's certificate: "
                                     f"see the server's log)")
        except BaseException:
            self._drop()
            raise
        self.stats.connects += 1

    def send(self, messages: Iterable[bytes], items: Iterable[Any] | None = None) -> None:
        """Queue messages (item i identifies message i in on_ack; default its position).

        RecordFormatError, queueing none of them, if one is empty or over max_message."""
        messages = [m if type(m) is bytes else bytes(m) for m in messages]
        ids = items if items is not None else range(self._given, self._given + len(messages))
        given = list(zip(messages, ids, [False] * len(messages)))
        if len(given) != len(messages):
            raise ValueError(f"{len(messages)} messages and fewer items")
        limit = self.max_message
        for message, item, _ in given:
            if not 0 < len(message) <= limit:
                raise RecordFormatError(f"a RELP message is 1..{limit} octets, not {len(message)} "
                                        f"(item {item!r:.40})")
        self._queue.extend(given)
        self._given += len(given)

    def flush(self) -> None:
        """Send everything queued and wait until each message is answered, on this session.
        TransportError (or FrameError/ProtocolError) if it breaks; what is unanswered stays
        queued, in order, for the next session."""
        if not self.connected:
            self.connect()
        assert self._session is not None
        session = self._session
        try:
            while self._queue or session.outstanding:
                self._send_window(session)
                # wait for answers down to half the window while more is queued (so that the
                # next write carries half a window, not one frame per answer), else to none
                target = self.window // 2 if self._queue else 0
                while session.outstanding > target:
                    self._read_open(session)
        except (TransportError, FrameError, ProtocolError) as e:
            self.last_error = str(e)
            self._drop()
            raise

    def pump(self, timeout: float) -> None:
        """Send what the window allows of what is queued, and take the answers that come
        within timeout (0: only those already here), without waiting for all of them: a
        shipper keeps the window full across its frames this way.  Errors as flush."""
        if not self.connected:
            self.connect()
        assert self._session is not None and self._sock is not None
        session = self._session
        try:
            self._send_window(session)
            if session.outstanding and (self._sock.pending() or self._failed is not None
                                        or select.select([self._sock], [], [], max(timeout, 0.0))[0]):
                self._read_open(session)
                self._send_window(session)
        except (TransportError, FrameError, ProtocolError) as e:
            self.last_error = str(e)
            self._drop()
            raise

    @property
    def busy(self) -> bool:
        """Messages queued or waiting for their answer."""
        return bool(self._queue) or (self._session is not None and self._session.outstanding > 0)

    def _send_window(self, session: relp.RelpConnection) -> None:
        """Write queued messages while the window has room (in sends of about _SEND_BATCH)."""
        while self._queue and session.can_send:
            batch = bytearray()
            while self._queue and session.can_send and len(batch) < _SEND_BATCH:
                message, item, resend = self._queue.popleft()
                batch += session.send_syslog(message, item)
                self.stats.sent += 1
                self.stats.resent += resend
            self._write(batch)

    def _read_open(self, session: relp.RelpConnection) -> None:
        self._read()
        if session.state is not relp.State.OPEN:
            raise TransportError(f"RELP to {self.host}:{self.port}: the server closed the session")

    def deliver(self, messages: Sequence[bytes] | Iterable[bytes], *, deadline: float = 60.0,
                retry_delay: float = 0.2, items: Iterable[Any] | None = None) -> RelpStats:
        """Every message answered, through any number of failures, within deadline seconds.

        TransportError naming how many are still owed if the deadline passes first.
        """
        self.send(messages, items)
        end = time.monotonic() + deadline
        delay = retry_delay
        sessions = self.stats.connects
        while True:
            try:
                self.flush()
                return self.stats
            except (TransportError, FrameError, ProtocolError) as e:
                self.last_error = str(e)
                if self.stats.connects != sessions:  # a session opened since the last failure
                    sessions, delay = self.stats.connects, retry_delay
                if time.monotonic() + delay >= end:
                    raise TransportError(f"RELP to {self.host}:{self.port}: {self.pending} message(s) "
                                         f"not acknowledged after {deadline:g} s; last error: {e}") from None
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def close(self) -> None:
        """End the session with close when it is idle, then drop the socket; never raises."""
        session = self._session
        if session is not None and session.state is relp.State.OPEN and not session.outstanding:
            try:
                self._write(session.close())
                deadline = time.monotonic() + min(self.timeout, 2.0)
                while session.state is relp.State.CLOSING and time.monotonic() < deadline:
                    self._read()
            except (TransportError, FrameError, ProtocolError):
                pass
        self._drop()

    def __enter__(self) -> RelpClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- internals --

    def _write(self, data: bytes | bytearray) -> None:
        assert self._sock is not None
        try:
            self._sock.sendall(data)
        except (ssl.SSLError, OSError) as e:
            raise TransportError(f"RELP to {self.host}:{self.port} broke while sending: {_reason(e)}") from None

    def _read(self) -> None:
        """One read, waiting up to timeout, and then whatever else has already arrived, handled
        at once.  Its events are handled even when the same bytes then break the session (acks
        that came before garbage are acks: their messages are neither owed nor lost); an end
        or failure of the connection found right after them is raised by the next read.

        What was read is acknowledged at TCP level at once (TCP_QUICKACK, re-armed on each
        read: Linux makes it a one-off).  librelp, and so imrelp, leaves Nagle on and uncorks
        after each burst of rsp frames, so every rsp after the first of a burst waits in the
        server's kernel for our ACK of the previous segment.  A delayed ACK held that back
        40 ms or more each time we waited for answers with nothing to send (down to half the
        window, and at the end of every flush): those stalls, not either end's work, bounded
        a session to a few thousand messages a second."""
        assert self._sock is not None and self._session is not None
        sock = self._sock
        if self._failed is not None:
            failure, self._failed = self._failed, None
            self._session.connection_lost()
            raise failure
        try:
            data = sock.recv(65536)
        except socket.timeout:
            raise TransportError(f"RELP to {self.host}:{self.port}: no answer in {self.timeout:g} s") from None
        except (ssl.SSLError, OSError) as e:
            raise TransportError(f"RELP to {self.host}:{self.port} broke: {_reason(e)}") from None
        if not data:
            self._session.connection_lost()
            raise TransportError(f"RELP to {self.host}:{self.port}: the server closed the connection")
        data, self._failed = self._read_arrived(sock, data)
        if self._failed is None and _QUICKACK is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            except OSError:
                pass
        try:
            self._session.receive_data(data)
        finally:
            acked = []
            for event in self._session.events():
                if type(event) is relp.Acked:
                    acked.append(event.item)
                else:
                    self._take_acked(acked)
                    acked = []
                    self._event(event)
            self._take_acked(acked)

    def _take_acked(self, items: list) -> None:
        """Answers `rsp 200` to these messages, in the order they came (on_acks with all of
        them at once, else on_ack with each)."""
        if not items:
            return
        self.stats.acked += len(items)
        if self.on_acks is not None:
            self.on_acks(items)
        elif self.on_ack is not None:
            for item in items:
                self.on_ack(item)

    def _read_arrived(self, sock: ssl.SSLSocket, data: bytes) -> tuple[bytes, TransportError | None]:
        """data and what else can be read without waiting (imrelp sends each rsp as a TLS
        record of its own: one recv each), up to _READ_BATCH octets; and the error, if the
        connection ended or failed meanwhile (for the next read: data is handled first)."""
        chunks, size = [data], len(data)
        failure: TransportError | None = None
        saved = sock.gettimeout()
        sock.settimeout(0.0)
        try:
            while size < _READ_BATCH:
                more = sock.recv(65536)
                if not more:
                    failure = TransportError(f"RELP to {self.host}:{self.port}: the server closed the connection")
                    break
                chunks.append(more)
                size += len(more)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            pass  # nothing more has arrived
        except (ssl.SSLError, OSError) as e:
            failure = TransportError(f"RELP to {self.host}:{self.port} broke: {_reason(e)}")
        finally:
            sock.settimeout(saved)
        return (data if len(chunks) == 1 else b"".join(chunks)), failure

    def _event(self, event: relp.Event) -> None:
        if isinstance(event, relp.Acked):
            self.stats.acked += 1
            if self.on_ack is not None:
                self.on_ack(event.item)
        elif isinstance(event, relp.Refused):
            self.stats.refused += 1
            if self.on_refused is not None:
                self.on_refused(event.item, event.code, event.text)

    def _drop(self) -> None:
        """Forget the session; its unanswered messages go back to the front of the queue."""
        session, sock = self._session, self._sock
        self._session = self._sock = None
        self._failed = None
        if session is not None:
            if session.state is not relp.State.CLOSED:
                session.connection_lost()
                if session.state is relp.State.BROKEN:
                    self.stats.errors += 1
            owed = session.unacked()
            self._queue.extendleft((message, item, True) for message, item in reversed(owed))
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
