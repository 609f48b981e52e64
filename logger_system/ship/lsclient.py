"""A blocking `ls://` client: one TLS connection to `logger-system serve`, frames by ls.py.

The conversation it keeps (ls.py has the frames):

    connect()          TLS (1.2+, the server's certificate checked against the CA and the
                       server name, this side's certificate for mutual TLS), HELLO with the
                       source tag; returns WELCOME's next_n: send from there (and keeps
                       `max_frame`, the largest BATCH the server says it takes)
    send(first_n, ..)  one BATCH; any number may be in flight (the window is the caller's)
    wait_ack()         the next ACK's next_n: every record below it is durably written
    bye()              BYE, the last ACK, close

Whatever goes wrong (the server gone, a TLS refusal, an ERROR frame, a frame that is not
the protocol's, no answer in time) is a TransportError and the connection is closed: the caller
connects again and sends from what WELCOME says, which is what makes delivery exactly once.
The class holds no records and no retry policy; the shipper that owns the spool does.

A server with --rate-limit N answers a batch of C records up to C/N seconds late (it slows
a shipper down rather than drop): a shipper's ACK timeout, and its batch size, allow for it.
"""
from __future__ import annotations

import socket
import ssl
import time

from ..errors import ShipError, TransportError
from . import ls
from .tls import client_context


class LsClient:
    """One source's connection to a log server (see the module's essay)."""

    def __init__(self, host: str, port: int, source: int, *, ca: str, cert: str | None = None,
                 key: str | None = None, server_name: str | None = None, timeout: float = 10.0,
                 context: ssl.SSLContext | None = None) -> None:
        self.host, self.port, self.source = host, port, source
        self.server_name = server_name or host
        self.timeout = timeout
        self._ctx = context or client_context(ca=ca, cert=cert, key=key)
        self._sock: ssl.SSLSocket | None = None
        self._decoder = ls.Decoder()
        self._frames: list[ls.Frame] = []
        self.next_n: int | None = None  # the last next_n the server said (WELCOME or ACK)
        self.max_frame: int | None = None  # the largest BATCH the server takes, if it said

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def connect(self) -> int:
        """Connect, say HELLO; the server's next_n for this source."""
        self.close()
        try:
            raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise TransportError(f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}") from None
        try:
            self._sock = self._ctx.wrap_socket(raw, server_hostname=self.server_name)
        except (OSError, ssl.SSLError) as exc:
            raw.close()
            raise TransportError(f"TLS with {self.host}:{self.port} failed: {exc}") from None
        self._decoder = ls.Decoder()
        self._frames = []
        self._send(ls.hello(self.source))
        frame = self._next_frame(self.timeout)
        if frame.kind != ls.WELCOME:
            self._fail(f"expected WELCOME, got frame {frame.kind!r}")
        self.next_n = self._next_n(frame, "welcome")
        try:
            self.max_frame = ls.parse_max_frame(frame.json())
        except ls.ProtocolError as exc:
            self._fail(str(exc))
        return self.next_n

    def send(self, first_n: int, lines: bytes, count: int, *, head: dict | None = None, gap: int = 0) -> None:
        """One batch of `count` records (JSON lines, numbered first_n on)."""
        self._send(ls.batch(first_n, lines, count, head=head, gap=gap))

    def wait_ack(self, timeout: float | None = None) -> int:
        """The next ACK's next_n (a server that slows this client down answers later)."""
        frame = self._next_frame(self.timeout if timeout is None else timeout)
        if frame.kind != ls.ACK:
            self._fail(f"expected ACK, got frame {frame.kind!r}")
        self.next_n = self._next_n(frame, "ack")
        return self.next_n

    def poll_ack(self, timeout: float) -> int | None:
        """The last ACK's next_n among what arrives within timeout, or None if none came
        (silence is not a failure here: the shipper polls while it sends)."""
        got = None
        while True:
            frame = self._next_frame(timeout, quiet=True)
            if frame is None:
                return got
            if frame.kind != ls.ACK:
                self._fail(f"expected ACK, got frame {frame.kind!r}")
            got = self.next_n = self._next_n(frame, "ack")
            timeout = 0.0

    def ship(self, first_n: int, lines: bytes, count: int, **kw) -> int:
        """Send one batch and wait for its ACK."""
        self.send(first_n, lines, count, **kw)
        return self.wait_ack()

    def bye(self) -> int | None:
        """Say goodbye: the server's last ACK, then the connection is closed."""
        if self._sock is None:
            return self.next_n
        try:
            self._send(ls.bye())
            while True:  # ACKs of batches still in flight come first
                frame = self._next_frame(self.timeout)
                if frame.kind != ls.ACK:
                    self._fail(f"expected ACK, got frame {frame.kind!r}")
                self.next_n = self._next_n(frame, "ack")
        except ShipError as exc:
            if "closed the connection" not in str(exc):
                raise
        finally:
            self.close()
        return self.next_n

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    # ---- I/O -----------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        if self._sock is None:
            raise TransportError("not connected")
        try:
            self._sock.settimeout(self.timeout)
            self._sock.sendall(data)
        except (OSError, ssl.SSLError) as exc:
            self._fail(f"sending to {self.host}:{self.port} failed: {exc}")

    def _next_frame(self, timeout: float, quiet: bool = False) -> ls.Frame | None:
        """The next frame; when none comes within timeout, a failure (or None if quiet)."""
        deadline = time.monotonic() + timeout
        while not self._frames:
            if self._sock is None:
                raise TransportError("not connected")
            left = deadline - time.monotonic()
            if left <= 0:
                if quiet:
                    if not self._readable():
                        return None
                    left = 0.001
                else:
                    self._fail(f"no answer from {self.host}:{self.port} within {timeout:g} s")
            try:
                self._sock.settimeout(left)
                data = self._sock.recv(1 << 16)
            except (socket.timeout, TimeoutError, ssl.SSLWantReadError):
                if quiet and time.monotonic() >= deadline:
                    return None
                continue
            except (OSError, ssl.SSLError) as exc:
                self._fail(f"receiving from {self.host}:{self.port} failed: {exc}")
            if not data:
                self._fail(f"{self.host}:{self.port} closed the connection")
            try:
                self._frames.extend(self._decoder.feed(data))
            except ls.ProtocolError as exc:
                self._fail(f"{self.host}:{self.port} broke the protocol: {exc}")
        frame = self._frames.pop(0)
        if frame.kind == ls.ERROR:
            try:
                text = frame.json().get("error")
            except ls.ProtocolError:
                text = None
            self._fail(f"{self.host}:{self.port} refused: {text if isinstance(text, str) else 'no reason given'}")
        return frame

    def _readable(self) -> bool:
        """Bytes are waiting: decrypted ones in TLS, or on the socket."""
        import select

        return bool(self._sock.pending()) or bool(select.select([self._sock], [], [], 0)[0])

    def _next_n(self, frame: ls.Frame, kind: str) -> int:
        try:
            return ls.parse_next_n(frame.json(), kind)
        except ls.ProtocolError as exc:
            self._fail(str(exc))
            raise  # not reached

    def _fail(self, message: str):
        self.close()
        raise TransportError(message)
