"""The log server's processes and sockets: the only module of serve/ that owns them.

Threads, and what each may block on:

  main        signals (SIGTERM/SIGINT: stop; SIGHUP: reload), a tick every 0.2 s: files'
              rotation by time, the counters saved to DIR/.serve/stats.json
  acceptor    one selector over the listening socket and every TLS handshake in
              progress, all non-blocking, so a peer that sends nothing (half-open) or a
              byte at a time (slow-loris) costs a slot of the handshake budget for at
              most --handshake-timeout, and when the budget is spent the oldest one is
              given up (limits.HandshakeBudget).  A finished handshake is authorized
              (auth.py) and handed to a thread of its own; a refusal is counted, by
              reason, in `handshake_failures`.
  connection  one per authorized connection: reads frames (ship/ls.py's Decoder, bounded
              by --max-frame), and blocks only on its socket (with deadlines: a frame
              begun must be complete within --frame-timeout, and a connection with no
              frame for --idle-timeout is closed; both counted in `timeouts`), on its
              client's lock (sink.py: one batch at a time per client) and on the rate
              limit's wait before an ACK.  A frame that breaks the protocol is counted in
              the client's `malformed` and closes that connection only.
              A connection whose first byte is a digit is an RFC 5425 syslog client
              (serve/syslog_input.py): its messages, numbered by the server, go through
              the same sink; past --rate-limit they are dropped (`refused_rate`); a frame
              that breaks octet counting or RFC 5424 is `malformed` and closes it; it is
              closed after --idle-timeout without a message.
  metrics     prometheus_client's HTTP thread, reading the counters (serve/metrics.py).

Stopping (SIGTERM): the listener and the handshakes in progress are closed; each
connection reads what has already arrived, writes and acknowledges every whole batch in
it, says ERROR "server stopping" and closes; the files are finished (final chunk) and
the process exits 0.  A SIGKILL instead loses nothing either: what was acknowledged was
fsynced first, and next_n comes back from the files (sink.py).

Reload (SIGHUP): the allowlist (--allow and --allow-file) and the TLS context (CA,
certificate and key files read again) are replaced for new connections; a connection
whose client the new allowlist no longer admits is closed at its next frame (`revoked`).
A reload that fails (a file unreadable, a key that does not match) keeps what runs.
"""
from __future__ import annotations

import os
import selectors
import signal
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..files.format import Sealing
from ..keys import load_keyring, parse_recipient
from ..policy import Policy
from ..policy import load as load_policy
from ..rotation import RotationPolicy
from ..ship import ls
from ..ship.errors import FrameError
from ..ship.syslog import OctetCountingDecoder
from ..writer import lock_dir, prepare_dir
from . import say
from .auth import Allowlist, cert_names, is_safe_name, read_allow_file
from .limits import HandshakeBudget, RateLimit
from .sink import ClientSink, SourceRefused
from .state import STATE_DIR, Counters
from .syslog_input import SYSLOG_SOURCE, batch_of


@dataclass(frozen=True)
class ServeConfig:
    listen: tuple[str, int]
    dir: Path
    tls_ca: Path
    tls_cert: Path
    tls_key: Path
    allow: tuple[str, ...] = ()
    allow_file: Path | None = None
    key: Path | None = None
    recipient: str | None = None
    plaintext: bool = False
    rate_limit: float | None = None
    policy: Path | None = None
    metrics: str | None = None
    max_handshakes: int = 64
    handshake_timeout: float = 5.0
    frame_timeout: float = 30.0
    idle_timeout: float = 600.0
    max_connections: int = 1024
    max_client_connections: int = 8
    max_frame: int = ls.MAX_FRAME
    rotate_size: int | None = 64 * 1024**2
    rotate_interval: float | None = None
    keep: int | None = None
    shutdown_timeout: float = 10.0
    sanitize: bool = True

    def __post_init__(self) -> None:
        if sum((self.key is not None, bool(self.recipient), self.plaintext)) != 1:
            raise ConfigError(
                "give one of --key FILE, --recipient STR or --plaintext: the server seals what it "
                "writes like a writer does (make a key with `logger-system keygen --out server.key`)")
        if not self.allow and self.allow_file is None:
            raise ConfigError("give at least one --allow NAME (or --allow-file FILE): the certificate "
                              "names that may ship, globs allowed")
        if self.rate_limit is not None and not self.rate_limit > 0:
            raise ConfigError("--rate-limit: give records per second > 0")
        if self.max_connections < 1 or self.max_client_connections < 1:
            raise ConfigError("--max-connections and --max-client-connections: use at least 1")
        if not 1 <= self.max_handshakes <= 100_000:
            raise ConfigError("--max-handshakes: use 1..100000")
        for k in ("handshake_timeout", "frame_timeout", "idle_timeout"):
            if not getattr(self, k) > 0:
                raise ConfigError(f"--{k.replace('_', '-')}: give a duration > 0")
        if not 1024 <= self.max_frame <= ls.MAX_FRAME:
            raise ConfigError(f"--max-frame: use 1KiB..{ls.MAX_FRAME} bytes (a writer's batch is at most that)")


def server_context(cfg: ServeConfig) -> ssl.SSLContext:
    """TLS 1.2+, a client certificate required and checked against --tls-ca."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        ctx.load_verify_locations(str(cfg.tls_ca))
        ctx.load_cert_chain(str(cfg.tls_cert), str(cfg.tls_key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"TLS files (--tls-ca {cfg.tls_ca}, --tls-cert {cfg.tls_cert}, --tls-key "
                          f"{cfg.tls_key}): {getattr(exc, 'strerror', None) or exc}") from None
    return ctx


def _refusal(exc: BaseException) -> str:
    """The counter of a handshake that failed with exc."""
    reason = getattr(exc, "reason", None) or ""
    if isinstance(exc, ssl.SSLCertVerificationError) or reason == "CERTIFICATE_VERIFY_FAILED":
        return "untrusted"
    if reason in ("PEER_DID_NOT_RETURN_A_CERTIFICATE", "TLSV13_ALERT_CERTIFICATE_REQUIRED"):
        return "no_certificate"
    return "tls_error"


class _Pending:
    __slots__ = ("sock", "peer", "over")

    def __init__(self, sock: ssl.SSLSocket, peer) -> None:
        self.sock, self.peer = sock, peer
        self.over = False  # given up or handed on: an event already selected for it is stale


class Server:
    def __init__(self, cfg: ServeConfig) -> None:
        self.cfg = cfg
        self.stopping = threading.Event()
        self._reload = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        self.policy = (Policy(enabled=False) if not cfg.sanitize
                       else load_policy(cfg.policy) if cfg.policy else Policy())
        self._keyring = load_keyring(cfg.key) if cfg.key is not None else None
        self._recipients = (tuple(parse_recipient(r) for r in cfg.recipient.split(",") if r.strip())
                            if cfg.recipient else ())
        self.allow = self._allowlist()
        self.ctx = server_context(cfg)
        self.generation = 0  # moves at each reload: connections check their client again
        self.dir = prepare_dir(cfg.dir)
        self._dir_lock = lock_dir(self.dir)  # one server per --dir
        self.counters = Counters(self.dir)
        self.rotation = RotationPolicy(cfg.rotate_size, cfg.rotate_interval)
        self.sinks: dict[str, ClientSink] = {}
        self._sinks_lock = threading.Lock()
        self._rates: dict[str, RateLimit] = {}
        self._conns: set[threading.Thread] = set()
        self._conns_lock = threading.Lock()
        self._per_client: dict[str, int] = {}  # connections open, by client name
        self._open_existing()
        self.listener = self._listen(cfg.listen)
        self.address = self.listener.getsockname()[:2]
        self.metrics = None
        if cfg.metrics:
            from .metrics import serve as serve_metrics

            self.metrics = serve_metrics(cfg.metrics, self.counters.snapshot)

    # ---- set-up --------------------------------------------------------------------------

    def _allowlist(self) -> Allowlist:
        globs = list(self.cfg.allow)
        if self.cfg.allow_file is not None:
            globs += read_allow_file(self.cfg.allow_file)
        return Allowlist.of(globs)

    def _sealing(self) -> Sealing | None:
        if self._keyring is not None:
            return Sealing(keyring=self._keyring)
        if self._recipients:
            return Sealing(recipients=self._recipients)
        return None

    def _open_existing(self) -> None:
        """Every client directory there is, at once: a file a killed server left unfinished
        is vouched for by a new header now, not whenever its client comes back."""
        for entry in sorted(os.listdir(self.dir)):
            if entry != STATE_DIR and is_safe_name(entry) and (self.dir / entry).is_dir():
                try:
                    self.sink(entry)
                except (ConfigError, OSError) as exc:
                    say("client_dir_unusable", client=entry, error=str(exc))

    def sink(self, name: str) -> ClientSink:
        with self._sinks_lock:
            s = self.sinks.get(name)
            if s is None:
                s = self.sinks[name] = ClientSink(self.dir / name, name, self._sealing(), self.policy,
                                                  self.rotation, self.cfg.keep,
                                                  heads=self.dir / STATE_DIR / "heads" / f"{name}.jsonl")
                self.counters.reconcile(name, s.next_n)
            return s

    def _listen(self, where: tuple[str, int]) -> socket.socket:
        host, port = where
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            family, _, _, _, addr = infos[0]
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(addr)
            s.listen(512)
        except OSError as exc:
            raise ConfigError(f"--listen {host}:{port}: {exc.strerror or exc}") from None
        s.setblocking(False)
        return s

    # ---- signals -------------------------------------------------------------------------

    def _on_stop(self, *_args) -> None:
        self.stopping.set()

    def _on_hup(self, *_args) -> None:
        self._reload = True

    def reload(self) -> bool:
        try:
            allow = self._allowlist()
            ctx = server_context(self.cfg)
        except ConfigError as exc:
            say("reload_failed", error=str(exc), kept="the running allowlist and certificates")
            return False
        self.allow, self.ctx = allow, ctx
        self.generation += 1
        say("reloaded", allow=list(allow.globs))
        return True

    # ---- the main thread -----------------------------------------------------------------

    def run(self) -> int:
        acceptor = threading.Thread(target=self._accept_loop, name="serve-accept", daemon=True)
        acceptor.start()
        say("started", listen=f"{self.address[0]}:{self.address[1]}", dir=str(self.dir), pid=os.getpid(),
            allow=list(self.allow.globs), sealed=self._keyring is not None or bool(self._recipients))
        while not self.stopping.wait(0.2):
            if self._reload:
                self._reload = False
                self.reload()
            self._tick()
        acceptor.join(5.0)
        deadline = time.monotonic() + self.cfg.shutdown_timeout
        for t in list(self._conns):
            t.join(max(deadline - time.monotonic(), 0.01))
        left = sum(t.is_alive() for t in list(self._conns))
        self.close()
        say("stopped", connections_left=left, clients=len(self.sinks))
        return 0

    def _tick(self) -> None:
        now = time.monotonic()
        for s in list(self.sinks.values()):
            try:
                s.tick(now)
            except OSError as exc:
                say("rotate_failed", client=s.name, error=exc.strerror)
        try:
            self.counters.save(time.time())
        except OSError as exc:
            say("stats_not_saved", error=exc.strerror)

    def close(self) -> None:
        if self.metrics is not None:
            server, _thread = self.metrics
            server.shutdown()
            server.server_close()
            self.metrics = None
        for s in list(self.sinks.values()):
            s.close()
        try:
            self.counters.save(time.time(), force=True)
        except OSError as exc:
            say("stats_not_saved", error=exc.strerror)
        if self._dir_lock is not None:
            os.close(self._dir_lock)
            self._dir_lock = None

    # ---- accepting and handshakes ----------------------------------------------------------

    def _accept_loop(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ, None)
        budget = HandshakeBudget(self.cfg.max_handshakes, self.cfg.handshake_timeout)
        try:
            while not self.stopping.is_set():
                now = time.monotonic()
                nxt = budget.next_deadline()
                wait = 0.2 if nxt is None else min(0.2, max(nxt - now, 0.0))
                for key, _events in sel.select(wait):
                    try:
                        if key.data is None:
                            self._accept(sel, budget)
                        elif not key.data.over:
                            self._step(sel, budget, key.data)
                    except Exception as exc:  # a bug must not stop the accepting; say it
                        say("accept_error", error=f"{type(exc).__name__}: {exc}")
                        if key.data is not None:
                            budget.done(key.data)
                            self._give_up(sel, key.data, "tls_error")
                for p in budget.expired(time.monotonic()):
                    self._give_up(sel, p, "timeout")
        finally:
            for key in list(sel.get_map().values()):
                if key.data is not None:
                    self._give_up(sel, key.data, None)
            sel.close()
            self.listener.close()

    def _accept(self, sel: selectors.BaseSelector, budget: HandshakeBudget) -> None:
        for _ in range(64):  # what is queued now; the selector says when there is more
            try:
                raw, peer = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors: say it, let the backlog wait
                say("accept_failed", error=exc.strerror)
                return
            raw.setblocking(False)
            try:
                tls = self.ctx.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            except (OSError, ssl.SSLError):
                raw.close()
                self.counters.refuse("tls_error")
                continue
            p = _Pending(tls, peer)
            for old in budget.admit(p, time.monotonic()):
                self._give_up(sel, old, "evicted")
            sel.register(tls, selectors.EVENT_READ, p)

    def _give_up(self, sel: selectors.BaseSelector, p: _Pending, reason: str | None) -> None:
        if p.over:
            return
        p.over = True
        try:
            sel.unregister(p.sock)
        except (KeyError, ValueError):
            pass
        try:
            p.sock.close()
        except OSError:
            pass
        if reason is not None:
            self.counters.refuse(reason)

    def _step(self, sel: selectors.BaseSelector, budget: HandshakeBudget, p: _Pending) -> None:
        try:
            p.sock.do_handshake()
        except ssl.SSLWantReadError:
            sel.modify(p.sock, selectors.EVENT_READ, p)
            return
        except ssl.SSLWantWriteError:
            sel.modify(p.sock, selectors.EVENT_WRITE, p)
            return
        except (OSError, ssl.SSLError, ValueError) as exc:
            budget.done(p)
            self._give_up(sel, p, _refusal(exc))
            return
        budget.done(p)
        sel.unregister(p.sock)
        p.over = True
        names = cert_names(p.sock.getpeercert() or {})
        decision = self.allow.decide(names)
        if decision.name is None:
            self.counters.refuse(decision.kind)
            say("refused", peer=f"{p.peer[0]}:{p.peer[1]}", reason=decision.reason)
            self._refuse_after_handshake(p.sock, f"refused: {decision.reason}")
            return
        name = decision.name
        with self._conns_lock:
            full = len(self._conns) >= self.cfg.max_connections
            crowded = self._per_client.get(name, 0) >= self.cfg.max_client_connections
            if not (full or crowded):
                t = threading.Thread(target=self._connection, args=(p.sock, name, p.peer),
                                     name=f"serve-{name}", daemon=True)
                self._conns.add(t)
                self._per_client[name] = self._per_client.get(name, 0) + 1
        if full or crowded:
            # each connection may hold a frame of up to --max-frame in memory: the caps bound it
            self.counters.count("connections_refused")
            self._refuse_after_handshake(p.sock, "server full: try again later" if full else
                                         f"more than {self.cfg.max_client_connections} connections of "
                                         f"{name} at once")
            return
        t.start()

    _refusing = threading.BoundedSemaphore(32)  # refusals saying why at once; more just close

    def _refuse_after_handshake(self, sock: ssl.SSLSocket, text: str) -> None:
        """Say why in an ERROR frame and close, in a thread of its own (the acceptor does not
        wait on a peer); when many are refused at once, the rest are closed unsaid."""
        if not self._refusing.acquire(blocking=False):
            sock.close()
            return

        def refuse() -> None:
            try:
                sock.setblocking(True)
                sock.settimeout(1.0)
                sock.sendall(ls.error(text))
            except (OSError, ssl.SSLError):
                pass
            finally:
                _linger_close(sock)
                self._refusing.release()

        threading.Thread(target=refuse, name="serve-refuse", daemon=True).start()

    # ---- one connection --------------------------------------------------------------------

    def _rate(self, name: str) -> RateLimit | None:
        if self.cfg.rate_limit is None:
            return None
        with self._sinks_lock:
            r = self._rates.get(name)
            if r is None:
                r = self._rates[name] = RateLimit(self.cfg.rate_limit, time.monotonic())
            return r

    def syslog_records(self, name: str, count: int) -> bool:
        """The hook for the RFC 5425 syslog-over-TLS input (ship/syslog.py, built elsewhere):
        whether `count` records of client `name` may be written now.  A syslog client cannot
        be slowed down, so past --rate-limit its records are dropped, and counted here in
        `refused_rate`.  TODO: the listener that parses octet-counted RFC 5424 messages
        (a connection whose first byte is a digit, see _connection) calls this, then hands
        what it may write to the client's sink."""
        rate = self._rate(name)
        if rate is None or rate.allow(count, time.monotonic()):
            return True
        self.counters.add(name, refused_rate=count)
        return False

    def _connection(self, sock: ssl.SSLSocket, name: str, peer) -> None:
        self.counters.add(name, connections=1)
        self.counters.connection(name, +1)
        conn = _Conversation(self, sock, name)
        try:
            conn.run()
        except Exception as exc:  # a bug must not take the server down; say it, close this one
            say("connection_failed", client=name, error=f"{type(exc).__name__}: {exc}")
        finally:
            _linger_close(sock)
            self.counters.connection(name, -1)
            with self._conns_lock:
                self._conns.discard(threading.current_thread())
                self._per_client[name] -= 1


def _linger_close(sock: ssl.SSLSocket, seconds: float = 0.5) -> None:
    """Close so that what was sent last (an ERROR) reaches the peer: a socket closed with
    unread bytes in it resets the connection, and the peer may lose the frame that says
    why.  So: no more writes, read and discard for a moment, then close."""
    try:
        sock.settimeout(seconds)
        raw = socket.socket(fileno=os.dup(sock.fileno()))
        try:
            raw.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + seconds
            raw.settimeout(seconds)
            while time.monotonic() < deadline and raw.recv(1 << 16):
                pass
        finally:
            raw.close()
    except (OSError, ValueError):
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Closed(Exception):
    """This conversation is over (the reason was counted and said already)."""


class _Conversation:
    """The frames of one authorized connection (the essay at the top: deadlines, limits)."""

    POLL = 0.25  # how often a waiting read looks at the stop flag and the deadlines

    def __init__(self, server: Server, sock: ssl.SSLSocket, name: str) -> None:
        self.server, self.sock, self.name = server, sock, name
        self.cfg = server.cfg
        self.decoder = ls.Decoder(self.cfg.max_frame)
        self.source: int | None = None
        self.sink: ClientSink | None = None
        self.generation = server.generation

    def run(self) -> None:
        sock = self.sock
        sock.setblocking(True)
        sock.settimeout(self.POLL)
        last_frame = time.monotonic()
        frame_started: float | None = None
        first = True
        try:
            while True:
                if self.server.stopping.is_set():
                    self._finish()
                    return
                if self.generation != self.server.generation:
                    self._recheck()
                try:
                    data = sock.recv(1 << 16)
                except (TimeoutError, socket.timeout):
                    self._deadlines(frame_started, last_frame)
                    continue
                except ssl.SSLWantReadError:
                    continue
                except (OSError, ssl.SSLError):
                    return  # the peer is gone; what it sent whole was acknowledged
                if not data:
                    return
                if first:
                    first = False
                    if data[:1].isdigit():  # an RFC 5425 client (serve/syslog_input.py)
                        self._syslog(data)
                        return
                if self.generation != self.server.generation:
                    self._recheck()  # a reload while this read waited: before its frames act
                arrived = time.monotonic()
                frames = self._feed(data)
                for f in frames:
                    self._handle(f)
                # the clocks start after the frames acted (a rate-limit wait is not the client's)
                now = time.monotonic()
                if frames:
                    last_frame = now
                if not self.decoder.pending:
                    frame_started = None
                elif frames:
                    frame_started = now
                elif frame_started is None:
                    frame_started = arrived
                # a peer that trickles bytes never lets a read time out: the deadline is checked
                # after every read, not only after a quiet one
                self._deadlines(frame_started, last_frame)
        except _Closed:
            return

    def _syslog(self, data: bytes) -> None:
        """An RFC 5425 client, from its first bytes on: its messages, as records numbered by
        the server, through this client's sink; past --rate-limit dropped and counted."""
        decoder = OctetCountingDecoder(self.cfg.max_frame)
        last = time.monotonic()
        started = None  # when the message now in part began to arrive
        while True:
            arrived = time.monotonic()
            try:
                decoder.feed(data)
                messages = []
                while (m := decoder.next_frame()) is not None:
                    messages.append(m)
            except FrameError as exc:
                self._malformed_syslog(str(exc))
            if messages:
                last = time.monotonic()
                self._syslog_batch(messages)
            if not decoder.buffered:
                started = None
            elif messages or started is None:
                started = arrived if not messages else time.monotonic()
            if self.server.stopping.is_set():
                raise _Closed
            while True:
                # a client trickling a message never lets a read time out: checked at each read
                self._syslog_deadlines(started, last)
                try:
                    data = self.sock.recv(1 << 16)
                    break
                except (TimeoutError, socket.timeout, ssl.SSLWantReadError):
                    if self.server.stopping.is_set():
                        raise _Closed from None
                except (OSError, ssl.SSLError):
                    raise _Closed from None
            if not data:
                raise _Closed

    def _syslog_deadlines(self, started: float | None, last: float) -> None:
        """A message begun must be whole within --frame-timeout (slow-loris), and a client
        that sends nothing for --idle-timeout is closed: both counted in `timeouts`."""
        now = time.monotonic()
        if started is not None and now - started > self.cfg.frame_timeout:
            why = f"a message not completed within {self.cfg.frame_timeout:g} s"
        elif started is None and now - last > self.cfg.idle_timeout:
            why = f"no message for {self.cfg.idle_timeout:g} s"
        else:
            return
        self.server.counters.add(self.name, timeouts=1)
        say("timeout", client=self.name, reason=why)
        raise _Closed

    def _syslog_batch(self, messages: list[bytes]) -> None:
        if self.source is None:  # the directory is claimed by a first whole message, not by garbage
            try:
                self.sink = self.server.sink(self.name)
                self.sink.welcome(SYSLOG_SOURCE)
            except SourceRefused as exc:
                self.server.counters.add(self.name, refused_source=1)
                say("source_refused", client=self.name, error=str(exc))
                raise _Closed from None
            self.source = SYSLOG_SOURCE
        if not self.server.syslog_records(self.name, len(messages)):
            self.server.counters.add(self.name, received=len(messages))
            return  # dropped, counted in refused_rate
        first = self.sink.next_n
        try:
            lines = batch_of(messages, first, time.time_ns())
        except (ValueError, FrameError) as exc:  # a message that is not RFC 5424
            self.server.counters.add(self.name, received=len(messages))
            self._malformed_syslog(str(exc))
        b = ls.Batch(first, len(messages), lines, None, 0)
        try:
            w = self.sink.write(SYSLOG_SOURCE, b)
        except OSError as exc:
            self.server.counters.add(self.name, write_errors=1, received=len(messages))
            say("write_failed", client=self.name, error=exc.strerror)
            raise _Closed from None
        except ls.ProtocolError as exc:
            self.server.counters.add(self.name, received=len(messages))
            self._malformed_syslog(str(exc))
        self.server.counters.add(self.name, received=w.received, written=w.written, sanitized=w.sanitized,
                                 sanitize_dropped=w.sanitize_dropped, batches=1, next_n=w.next_n)

    def _malformed_syslog(self, why: str) -> None:
        """A syslog client that broke its framing or sent something else: counted, closed
        (an ls:// ERROR frame would mean nothing to it)."""
        self.server.counters.add(self.name, malformed=1)
        say("malformed", client=self.name, error=why)
        raise _Closed

    def _deadlines(self, frame_started: float | None, last_frame: float) -> None:
        now = time.monotonic()
        if frame_started is not None and now - frame_started > self.cfg.frame_timeout:
            self._timeout(f"a frame not completed within {self.cfg.frame_timeout:g} s")
        if frame_started is None and now - last_frame > self.cfg.idle_timeout:
            self._timeout(f"no frame for {self.cfg.idle_timeout:g} s")

    def _feed(self, data: bytes) -> list[ls.Frame]:
        try:
            return self.decoder.feed(data)
        except ls.ProtocolError as exc:
            self._malformed(str(exc))
            return []  # not reached

    def _handle(self, f: ls.Frame) -> None:
        try:
            if f.kind == ls.HELLO:
                self._hello(f)
            elif f.kind == ls.BATCH:
                self._batch(f)
            elif f.kind == ls.BYE:
                self._send(ls.ack(self.sink.next_n if self.sink is not None else 0))
                raise _Closed
            elif f.kind == ls.ERROR:
                raise _Closed  # the client gave up; it says why on its side
            else:
                raise ls.ProtocolError(f"a client does not send frame {f.kind!r}")
        except ls.ProtocolError as exc:
            self._malformed(str(exc))

    def _hello(self, f: ls.Frame) -> None:
        if self.source is not None:
            raise ls.ProtocolError("a second HELLO on one connection")
        source = ls.parse_source(f.json())
        try:
            self.sink = self.server.sink(self.name)
            next_n = self.sink.welcome(source)
        except SourceRefused as exc:
            self.server.counters.add(self.name, refused_source=1)
            say("source_refused", client=self.name, error=str(exc))
            self._error(str(exc))
        except (ConfigError, OSError) as exc:
            self.server.counters.add(self.name, write_errors=1)
            say("client_dir_unusable", client=self.name, error=str(exc))
            self._error("the server cannot write this client's directory")
        self.source = source
        self._send(ls.welcome(next_n, self.cfg.max_frame))

    def _batch(self, f: ls.Frame) -> None:
        if self.source is None or self.sink is None:
            raise ls.ProtocolError("BATCH before HELLO")
        b = ls.parse_batch(f.payload)
        try:
            w = self.sink.write(self.source, b)
        except OSError as exc:
            self.server.counters.add(self.name, write_errors=1, received=b.count, batches=1)
            say("write_failed", client=self.name, error=exc.strerror)
            self._error("the server could not write the batch: send it again later")
        self.server.counters.add(self.name, received=w.received, written=w.written, duplicates=w.duplicates,
                                 lost=w.lost, gaps=1 if w.lost else 0, sanitized=w.sanitized,
                                 sanitize_dropped=w.sanitize_dropped, batches=1, next_n=w.next_n)
        rate = self.server._rate(self.name)
        if rate is not None and w.written:
            delay = rate.delay(w.written, time.monotonic())
            if delay > 0:
                self.server.stopping.wait(delay)  # slowed, not dropped: the ACK comes later
        self._send(ls.ack(w.next_n))

    def _recheck(self) -> None:
        self.generation = self.server.generation
        names = cert_names(self.sock.getpeercert() or {})
        if self.server.allow.decide(names).name != self.name:
            self.server.counters.add(self.name, revoked=1)
            say("revoked", client=self.name, note="the reloaded allowlist no longer admits it")
            self._error("no longer allowed")

    FINISH = 1.0  # stopping: how long what has arrived is read (a peer that keeps sending is cut)

    def _finish(self) -> None:
        """Stopping: write and acknowledge every whole batch that has arrived, then close."""
        self.sock.settimeout(0.05)
        deadline = time.monotonic() + self.FINISH
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(1 << 16)
            except (TimeoutError, socket.timeout, ssl.SSLWantReadError):
                break
            except (OSError, ssl.SSLError):
                raise _Closed
            if not data:
                break
            for f in self._feed(data):
                self._handle(f)
        self._error("server stopping")

    def _timeout(self, why: str) -> None:
        self.server.counters.add(self.name, timeouts=1)
        say("timeout", client=self.name, reason=why)
        self._error(f"closed: {why}")

    def _malformed(self, why: str) -> None:
        self.server.counters.add(self.name, malformed=1)
        say("malformed", client=self.name, error=why)
        self._error(f"malformed: {why}")

    def _error(self, text: str) -> None:
        try:
            self._send(ls.error(text))
        except _Closed:
            pass
        raise _Closed

    def _send(self, data: bytes) -> None:
        try:
            self.sock.settimeout(self.cfg.frame_timeout)
            self.sock.sendall(data)
            self.sock.settimeout(self.POLL)
        except (OSError, ssl.SSLError):
            raise _Closed from None


__all__ = ["ServeConfig", "Server", "server_context"]
