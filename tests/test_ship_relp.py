"""The RELP client protocol fed as bytes, and a real rsyslogd (imrelp, TLS, authmode name)
killed and restarted under it."""
from __future__ import annotations

import collections
import socket
import ssl
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logger_system.ship import relp
from logger_system.ship.client import RelpClient
from logger_system.ship.errors import FrameError, FrameTooLargeError, ProtocolError, RecordFormatError, TransportError
from logger_system.ship.relp import (MAX_TXNR, Acked, Closed, Frame, FrameDecoder, Opened, Refused, RelpConnection,
                                     ServerClosed, State, encode_frame, next_txnr, parse_offers, parse_response)
from logger_system.ship.syslog import SyslogFormat, parse_message, record_from_message
from logger_system.ship.tls import client_context

from rsyslog_env import Certs, Rsyslog

OPEN_RSP = b"200 OK\nrelp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\ncommands=syslog"


def rsp(txnr: int, data: bytes = b"200 OK") -> bytes:
    return encode_frame(txnr, "rsp", data)


def opened(window: int = 4) -> RelpConnection:
    conn = RelpConnection(window=window)
    conn.start()
    conn.receive_data(rsp(1, OPEN_RSP))
    assert isinstance(conn.next_event(), Opened)
    return conn


# ---- frames -----------------------------------------------------------------------------

def test_frames_are_laid_out_as_librelp_writes_them():
    assert encode_frame(1, "syslog", b"<13>1 - - - - - - hi") == b"1 syslog 20 <13>1 - - - - - - hi\n"
    assert encode_frame(7, "close") == b"7 close 0\n"  # no data: no space after DATALEN
    assert encode_frame(0, "serverclose") == b"0 serverclose 0\n"
    with pytest.raises(ValueError):
        encode_frame(MAX_TXNR + 1, "syslog", b"x")
    with pytest.raises(ValueError):
        encode_frame(1, "sys log", b"x")


FRAMES = [Frame(1, "rsp", OPEN_RSP), Frame(2, "rsp", b"200 OK"), Frame(0, "serverclose"),
          Frame(999_999_999, "rsp", b"500 error\nmore\n\n"), Frame(3, "syslog", b"x" * 5000)]
STREAM = b"".join(encode_frame(f.txnr, f.command, f.data) for f in FRAMES)


def _decode(decoder: FrameDecoder, *chunks: bytes) -> list[Frame]:
    out = []
    for c in chunks:
        decoder.feed(c)
        out.extend(decoder.frames())
    return out


def test_frames_fed_whole_decode_whole():
    d = FrameDecoder()
    assert _decode(d, STREAM) == FRAMES
    d.close()


def test_frames_fed_byte_by_byte_decode_whole():
    d = FrameDecoder()
    assert _decode(d, *(STREAM[i:i + 1] for i in range(len(STREAM)))) == FRAMES
    d.close()


@pytest.mark.parametrize("garbage", [
    b"garbage\n", b"x 1 rsp 0\n", b"1  rsp 0\n", b"1 rsp 0 \n", b"1 rsp x\n", b"1 r5p 0\n",
    b"1 rsp 3 abc!", b"1234567890 rsp 0\n", b"1 rsp 1234567890 ", b"1 " + b"a" * 33 + b" 0\n", b"1 rsp 2 ab\r\n",
])
def test_trailing_garbage_fails_the_decoder_after_the_good_frames(garbage):
    d = FrameDecoder()
    d.feed(STREAM + garbage)
    got = []
    with pytest.raises(FrameError):
        for f in d.frames():
            got.append(f)
    assert got == FRAMES
    with pytest.raises(FrameError):
        d.feed(b"1 rsp 0\n")


def test_a_datalen_over_the_limit_is_refused_from_the_header():
    d = FrameDecoder(max_data=100)
    d.feed(b"1 rsp 101 ")
    with pytest.raises(FrameTooLargeError):
        d.next_frame()


def test_a_stream_ending_inside_a_frame_is_an_error():
    d = FrameDecoder()
    d.feed(STREAM[:-1])
    assert list(d.frames()) == FRAMES[:-1]
    with pytest.raises(FrameError, match="ended inside a frame"):
        d.close()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, MAX_TXNR), st.from_regex(r"[A-Za-z]{1,32}", fullmatch=True),
                          st.binary(max_size=200)), max_size=15),
       st.lists(st.integers(1, 40), max_size=30))
def test_any_frames_split_anywhere_decode_to_themselves(frames, cuts):
    data = b"".join(encode_frame(*f) for f in frames)
    chunks, pos = [], 0
    for c in cuts:
        chunks.append(data[pos:pos + c])
        pos += c
    chunks.append(data[pos:])
    d = FrameDecoder()
    assert _decode(d, *chunks) == [Frame(*f) for f in frames]
    d.close()


def test_rsp_data_and_offers_parse():
    r = parse_response(OPEN_RSP)
    assert (r.code, r.text, r.ok) == (200, "OK", True)
    assert parse_offers(r.body) == {"relp_version": ["0"], "commands": ["syslog"],
                                    "relp_software": ["librelp", "1.11.0", "http://librelp.adiscon.com"]}
    assert parse_response(b"500 error on connect") == relp.Response(500, "error on connect")
    assert parse_response(b"200") == relp.Response(200, "")
    for bad in (b"", b"20", b"OK 200", b"200OK"):
        with pytest.raises(ProtocolError):
            parse_response(bad)


def test_txnr_runs_1_to_999999999_then_1():
    assert next_txnr(1) == 2 and next_txnr(MAX_TXNR - 1) == MAX_TXNR and next_txnr(MAX_TXNR) == 1


# ---- the session ------------------------------------------------------------------------

def test_a_session_opens_with_version_0_and_the_syslog_command_on_txnr_1():
    conn = RelpConnection()
    out = conn.start()
    frame = FrameDecoder()
    frame.feed(out)
    f = frame.next_frame()
    assert (f.txnr, f.command) == (1, "open")
    assert parse_offers(f.data) == {"relp_version": ["0"], "relp_software": ["logger_system"], "commands": ["syslog"]}
    assert conn.state is State.OPENING and not conn.can_send
    with pytest.raises(ProtocolError):
        conn.send_syslog(b"too early")
    conn.receive_data(rsp(1, OPEN_RSP))
    assert conn.next_event() == Opened(parse_offers(OPEN_RSP.split(b"\n", 1)[1]))
    assert conn.state is State.OPEN and conn.can_send


@pytest.mark.parametrize("answer, match", [
    (b"500 required command not supported by client", "refused"),
    (b"200 OK\ncommands=syslog", "relp_version"),
    (b"200 OK\nrelp_version=0\ncommands=", "syslog"),
])
def test_an_open_that_is_not_accepted_breaks_the_session(answer, match):
    conn = RelpConnection()
    conn.start()
    with pytest.raises(ProtocolError, match=match):
        conn.receive_data(rsp(1, answer))
    assert conn.state is State.BROKEN


def test_syslog_commands_take_consecutive_txnrs_within_the_window():
    conn = opened(window=3)
    frames = [conn.send_syslog(b"m%d" % i, item=i) for i in range(3)]
    assert frames == [b"2 syslog 2 m0\n", b"3 syslog 2 m1\n", b"4 syslog 2 m2\n"]
    assert not conn.can_send and conn.outstanding == 3
    with pytest.raises(ProtocolError, match="window"):
        conn.send_syslog(b"m3")
    conn.receive_data(rsp(3))  # any order among the outstanding
    assert list(conn.events()) == [Acked(3, 1)]
    assert conn.can_send and conn.send_syslog(b"m3", item=3) == b"5 syslog 2 m3\n"


def test_txnrs_wrap_from_999999999_to_1():
    conn = opened()
    conn._txnr = MAX_TXNR  # the txnr after some billion commands
    assert conn.send_syslog(b"a", 1).startswith(b"999999999 syslog")
    assert conn.send_syslog(b"b", 2).startswith(b"1 syslog")
    conn.receive_data(rsp(MAX_TXNR) + rsp(1))
    assert list(conn.events()) == [Acked(MAX_TXNR, 1), Acked(1, 2)]


def test_acks_fed_byte_by_byte_give_the_same_events_as_fed_whole():
    answers = rsp(2) + rsp(3, b"500 not now") + rsp(4)
    results = []
    for chunks in ([answers], [answers[i:i + 1] for i in range(len(answers))]):
        conn = opened()
        for i in range(3):
            conn.send_syslog(b"m", item=i)
        for c in chunks:
            conn.receive_data(c)
        results.append(list(conn.events()))
    assert results[0] == results[1] == [Acked(2, 0), Refused(3, 1, 500, "not now"), Acked(4, 2)]


def test_an_rsp_for_no_outstanding_command_breaks_the_session():
    conn = opened()
    conn.send_syslog(b"m", item=0)
    with pytest.raises(ProtocolError, match="txnr 9"):
        conn.receive_data(rsp(9))
    assert conn.state is State.BROKEN and conn.unacked() == [(b"m", 0)]


def test_a_command_from_the_server_breaks_the_session():
    conn = opened()
    with pytest.raises(ProtocolError):
        conn.receive_data(encode_frame(5, "syslog", b"x"))
    assert conn.state is State.BROKEN


def test_trailing_garbage_after_acks_keeps_the_acks_and_breaks_the_session():
    conn = opened()
    for i in range(2):
        conn.send_syslog(b"m%d" % i, item=i)
    with pytest.raises(FrameError):
        conn.receive_data(rsp(2) + b"HTTP/1.1 400 Bad Request\r\n")
    assert list(conn.events()) == [Acked(2, 0)]
    assert conn.state is State.BROKEN and conn.unacked() == [(b"m1", 1)]


def test_serverclose_ends_the_session_and_everything_unanswered_is_owed_in_order():
    conn = opened(window=10)
    for i in range(5):
        conn.send_syslog(b"m%d" % i, item=i)
    conn.receive_data(rsp(3) + encode_frame(0, "serverclose"))
    assert list(conn.events()) == [Acked(3, 1), ServerClosed()]
    assert conn.state is State.BROKEN
    assert conn.unacked() == [(b"m0", 0), (b"m2", 2), (b"m3", 3), (b"m4", 4)]
    conn.receive_data(b"junk after the end")  # no news after the end


def test_a_lost_connection_owes_what_was_unanswered_and_a_new_session_starts_at_1():
    conn = opened()
    conn.send_syslog(b"a", "a")
    conn.send_syslog(b"b", "b")
    conn.receive_data(rsp(2))
    conn.connection_lost()
    assert conn.state is State.BROKEN and conn.unacked() == [(b"b", "b")]
    again = opened()
    assert again.send_syslog(b"b", "b").startswith(b"2 syslog")


def test_a_refused_message_is_not_owed():
    conn = opened()
    conn.send_syslog(b"a", 0)
    conn.receive_data(rsp(2, b"500 message too long"))
    assert list(conn.events()) == [Refused(2, 0, 500, "message too long")]
    conn.connection_lost()
    assert conn.unacked() == []


def test_close_is_the_last_command_and_its_rsp_ends_the_session():
    conn = opened()
    assert conn.close() == b"2 close 0\n"
    with pytest.raises(ProtocolError):
        conn.send_syslog(b"late")
    conn.receive_data(rsp(2))
    assert list(conn.events()) == [Closed()] and conn.state is State.CLOSED


def test_a_message_over_the_limit_is_the_callers_error():
    conn = RelpConnection(max_data=100)
    conn.start()
    conn.receive_data(rsp(1, OPEN_RSP))
    with pytest.raises(RecordFormatError):
        conn.send_syslog(b"x" * 101)
    with pytest.raises(RecordFormatError):
        conn.send_syslog(b"")


def test_the_client_refuses_a_message_over_the_limit_before_queueing_any(tmp_path):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client = RelpClient("127.0.0.1", 9, ctx, max_message=100)  # never connects: nothing is sent
    with pytest.raises(RecordFormatError, match="item 1"):
        client.send([b"ok", b"x" * 101])
    assert client.pending == 0
    client.send([b"ok"])
    assert client.pending == 1


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 60), st.integers(1, 8), st.lists(st.tuples(st.integers(0, 10), st.booleans()), max_size=30))
def test_across_any_breaks_every_message_is_acked_once_and_resent_in_first_send_order(count, window, schedule):
    """A server that answers some of what is outstanding, in order, and a connection that breaks
    at any step: with resends first on each new session, every message is acked exactly once
    and each session sends in the order the messages were first given."""
    owed = collections.deque((b"m%d" % i, i) for i in range(count))
    acked: list[int] = []
    conn: RelpConnection | None = None
    wire = FrameDecoder()
    sent_txnrs: collections.deque[int] = collections.deque()
    for answers, breaks in schedule + [(count, False)] * (count + 2):
        if conn is None:
            conn, wire, sent_txnrs = opened(window), FrameDecoder(), collections.deque()
            sent_items: list[int] = []
        while owed and conn.can_send:
            message, item = owed.popleft()
            wire.feed(conn.send_syslog(message, item))
            sent_items.append(item)
        assert sent_items == sorted(sent_items)
        sent_txnrs.extend(f.txnr for f in wire.frames())
        for _ in range(min(answers, len(sent_txnrs))):
            conn.receive_data(rsp(sent_txnrs.popleft()))
        acked.extend(e.item for e in conn.events())
        if breaks:
            conn.connection_lost()
            owed.extendleft(reversed(conn.unacked()))
            conn = None
        if not owed and conn is not None and conn.outstanding == 0:
            break
    assert acked and sorted(acked) == list(range(count))


# ---- the blocking client against a misbehaving peer (a TLS server of the test's own) --------

class Peer:
    """A RELP server that misbehaves as told: one script per connection it accepts.

    A script is (acks, then): answer the open, acknowledge the first `acks` syslog commands
    (None: all), then send `then` (b"": nothing) and stay silent until the client goes, or,
    with `then` None, close the connection right after those acks (in the same send).
    Every syslog message received is kept, per connection."""

    def __init__(self, certs: Certs, scripts: list[tuple[int | None, bytes | None]]) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(certs.server.cert, certs.server.key)
        self.scripts = scripts
        self.received: list[list[bytes]] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for acks, then in self.scripts:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            got: list[bytes] = []
            self.received.append(got)
            with raw:
                raw.settimeout(10)
                try:
                    conn = self.ctx.wrap_socket(raw, server_side=True)
                    self._serve(conn, acks, then, got)
                except OSError:
                    pass

    @staticmethod
    def _serve(conn: ssl.SSLSocket, acks: int | None, then: bytes | None, got: list[bytes]) -> None:
        decoder = FrameDecoder()
        silent = False
        while data := conn.recv(65536):
            decoder.feed(data)
            out = bytearray()
            for f in decoder.frames():
                if f.command == "open":
                    out += rsp(f.txnr, OPEN_RSP)
                elif f.command == "syslog":
                    got.append(f.data)
                    if silent:
                        continue
                    if acks is None or acks > 0:
                        out += rsp(f.txnr)
                        acks = None if acks is None else acks - 1
                    if acks == 0 and then is None:
                        conn.sendall(out)
                        conn.close()
                        return
                    if acks == 0:
                        out += then
                        silent = True
                elif f.command == "close":
                    out += rsp(f.txnr)
            conn.sendall(out)

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes an accept() waiting for a spare script
        except OSError:
            pass
        self.listener.close()
        self.thread.join(timeout=10)


@pytest.fixture
def peer(certs):
    made: list[Peer] = []

    def make(*scripts: tuple[int | None, bytes | None]) -> Peer:
        made.append(Peer(certs, list(scripts)))
        return made[-1]
    yield make
    for p in made:
        p.close()


def _client(certs: Certs, port: int, **kw) -> RelpClient:
    ctx = client_context(ca=certs.ca, cert=certs.client.cert, key=certs.client.key)
    return RelpClient("127.0.0.1", port, ctx, **kw)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("then, error", [(b"HTTP/1.1 400 Bad Request\r\n\r\n", "garbage"),
                                         (b"1 rsp 6 200 OK\n", "an rsp for no command"),
                                         (b"0 serverclose 0\n", "serverclose")])
def test_a_peer_that_breaks_the_protocol_gets_a_new_session_and_the_unanswered_again(certs, peer, then, error):
    server = peer((3, then), (None, b""))
    client = _client(certs, server.port, timeout=5)
    messages = [b"m%d" % i for i in range(10)]
    stats = client.deliver(messages, deadline=30, retry_delay=0.05)
    client.close()
    assert stats.acked == 10 and stats.connects == 2 and stats.errors == 1, (error, client.last_error)
    first, second = server.received
    assert first == messages  # all ten went out in the window; three were answered
    assert second == messages[3:]  # the unanswered, again, in their order


@pytest.mark.timeout(60)
def test_acks_that_come_with_the_end_of_the_connection_count_and_only_the_rest_is_resent(certs, peer):
    server = peer((3, None), (None, b""))
    client = _client(certs, server.port, timeout=5)
    messages = [b"m%d" % i for i in range(10)]
    stats = client.deliver(messages, deadline=30, retry_delay=0.05)
    client.close()
    assert stats.acked == 10 and stats.connects == 2 and stats.errors == 1, client.last_error
    assert "closed the connection" in client.last_error
    first, second = server.received
    assert first == messages[:len(first)] and second == messages[3:]  # the peer may close before it read all


@pytest.mark.timeout(60)
def test_a_connection_that_ends_right_after_the_last_ack_is_not_an_error_of_that_delivery(certs, peer):
    """The end is found with the acks (what had arrived is read at once) and raised by the
    next read, not by this one: every message was answered, so deliver has succeeded."""
    server = peer((10, None))
    client = _client(certs, server.port, timeout=5)
    stats = client.deliver([b"m%d" % i for i in range(10)], deadline=30, retry_delay=0.05)
    assert stats.acked == 10 and stats.connects == 1 and stats.errors == 0, client.last_error
    client.close()  # its close finds the connection gone; never raises
    assert client.pending == 0


@pytest.mark.timeout(60)
@pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="TCP_QUICKACK is Linux's")
def test_each_read_is_acknowledged_at_tcp_level_at_once(certs, peer, monkeypatch):
    """imrelp (librelp) leaves Nagle on: each of its rsp frames after the first of a burst waits
    for our TCP ACK, which a delayed ACK holds back ~40 ms.  Every read re-arms TCP_QUICKACK."""
    calls: list[tuple[int, int, int]] = []
    setsockopt = ssl.SSLSocket.setsockopt

    def spy(self, level, option, value, *rest):
        calls.append((level, option, value))
        return setsockopt(self, level, option, value, *rest)

    monkeypatch.setattr(ssl.SSLSocket, "setsockopt", spy, raising=False)
    server = peer((None, b""))
    client = _client(certs, server.port, window=4, timeout=5)
    reads = 0
    read = client._read

    def counted() -> None:
        nonlocal reads
        reads += 1
        read()

    client._read = counted
    client.deliver([b"m%d" % i for i in range(40)], deadline=30)
    client.close()
    quickacks = calls.count((socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1))
    assert reads >= 10 and quickacks >= reads - 1  # the close's answer may come with the end


@pytest.mark.timeout(60)
def test_a_peer_that_stops_answering_is_timed_out_and_the_unanswered_resent(certs, peer):
    server = peer((4, b""), (None, b""), (None, b""), (None, b""))  # spares, should a loaded machine stall
    client = _client(certs, server.port, timeout=1.0)
    messages = [b"m%d" % i for i in range(10)]
    started = time.monotonic()
    stats = client.deliver(messages, deadline=30, retry_delay=0.05)
    client.close()
    assert stats.acked == 10 and stats.resent >= 6 and stats.errors >= 1
    assert "no answer in 1 s" in client.last_error
    assert server.received[1][:6] == messages[4:]  # the six unanswered, first, in their order
    assert time.monotonic() - started < 20


@pytest.mark.timeout(60)
def test_a_server_certificate_for_another_name_is_refused_before_any_command(certs, peer):
    server = peer((None, b""))
    ctx = client_context(ca=certs.ca, cert=certs.client.cert, key=certs.client.key)
    client = RelpClient("127.0.0.1", server.port, ctx, server_name="collector.example", timeout=5)
    client.send([b"m"])
    with pytest.raises(TransportError, match="certificate"):
        client.connect()
    assert client.stats.sent == 0 and client.stats.errors == 1 and client.pending == 1


# ---- a real rsyslogd: imrelp over TLS, tls.authmode="name" ---------------------------------

FMT = SyslogFormat(hostname="web-1")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return Certs.make(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def rsyslog(tmp_path, certs):
    with Rsyslog(tmp_path / "rsyslog", certs) as rs:
        yield rs


def _records(count: int) -> list[bytes]:
    return [FMT.format({"seq": i, "n": i, "ts": "2026-12-01T16:56:17.123456Z", "level": "INFO", "pid": 100 + i % 2,
                        "logger": "app", "msg": f"record {i}", "fields": {"producer": i % 2}}) for i in range(count)]


def _seqs(rs: Rsyslog) -> list[int]:
    """The seq of every message rsyslog wrote, each checked to be RFC 5424 that came by imrelp."""
    lines = rs.lines()
    assert all(line["input"] == "imrelp" and line["v"] == "1" for line in lines)
    return [record_from_message(parse_message(line["raw"].encode("utf-8")))["seq"] for line in lines]


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("window", [128, 1024])
def test_every_record_reaches_imrelp_at_least_once_across_a_sigkill_and_restart(rsyslog, certs, window):
    count = 40_000  # 2 producers x 20,000
    ctx = client_context(ca=certs.ca, cert=certs.client.cert, key=certs.client.key)
    acked: list[int] = []
    client = RelpClient("127.0.0.1", rsyslog.relp_port, ctx, window=window, timeout=5, on_ack=acked.append)
    killed = threading.Event()

    def kill_midway() -> None:
        deadline = time.monotonic() + 60
        while client.stats.sent < count // 2 and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(0.02)  # mid-stream, not at a moment the client chose
        rsyslog.kill()
        killed.set()
        time.sleep(0.5)  # a receiver away for a moment: the client retries meanwhile
        rsyslog.start()

    killer = threading.Thread(target=kill_midway, daemon=True)
    killer.start()
    started = time.monotonic()
    try:
        stats = client.deliver(_records(count), deadline=90)
    finally:
        client.close()
        killer.join(timeout=30)
    elapsed = time.monotonic() - started
    assert killed.is_set() and rsyslog.starts == 2
    seqs = _seqs(rsyslog)
    counts = collections.Counter(seqs)
    duplicates = len(seqs) - len(counts)
    print(f"\nrelp, window {window}: {count} records, {stats.acked} acked, {stats.sent} sent ({stats.resent} resent), "
          f"{stats.connects} sessions, {stats.errors} broken; rsyslog wrote {len(seqs)} lines: "
          f"{duplicates} duplicate(s) {sorted(s for s, c in counts.items() if c > 1)[:20]}; "
          f"{elapsed:.2f} s ({count / elapsed:.0f}/s)")
    assert set(counts) == set(range(count)), f"missing at rsyslog: {sorted(set(range(count)) - set(counts))[:20]}"
    assert stats.acked == count and stats.connects >= 2 and stats.errors >= 1
    assert sorted(acked) == list(range(count))  # locally, each record's acknowledgement came once
    assert duplicates <= stats.resent  # a duplicate is only ever a resend of an unanswered message


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("who", ["refused", "stranger", "no certificate"])
def test_a_refused_client_certificate_delivers_nothing_and_is_counted(rsyslog, certs, who):
    """refused: our CA, a name not permitted; stranger: another CA's certificate under the
    permitted name; no certificate at all."""
    pair = {"refused": certs.refused, "stranger": certs.stranger}.get(who)
    ctx = client_context(ca=certs.ca, cert=pair.cert if pair else None, key=pair.key if pair else None)
    client = RelpClient("127.0.0.1", rsyslog.relp_port, ctx, timeout=3)
    with pytest.raises(TransportError, match="not acknowledged"):
        client.deliver(_records(10), deadline=2, retry_delay=0.1)
    assert client.stats.acked == 0 and client.stats.connects == 0 and client.stats.errors >= 1
    assert client.pending == 10
    time.sleep(0.3)
    assert rsyslog.lines() == []
