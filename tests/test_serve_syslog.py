"""RFC 5425 syslog-over-TLS clients of `logger-system serve`: written like ls:// records,
dropped and counted past --rate-limit while an ls:// client keeps being served, and a
client that breaks octet counting counted malformed and closed."""
from __future__ import annotations

import json
import socket
import ssl
import time

import pytest

from logger_system.serve.syslog_input import batch_of
from logger_system.ship.client import SyslogTlsClient
from logger_system.ship.errors import FrameError
from logger_system.ship.syslog import SyslogFormat, frame, parse_message
from logger_system.ship.tls import client_context
from test_serve import ServeProcess, lines, pki, records, verify, wait_stats  # noqa: F401

pytestmark = pytest.mark.timeout(120)


def _client(srv: ServeProcess, name: str) -> SyslogTlsClient:
    crt, key = srv.pki[name]
    return SyslogTlsClient("127.0.0.1", srv.port, client_context(ca=srv.pki["ca"], cert=crt, key=key))


def _messages(count: int, start: int = 0) -> list[bytes]:
    fmt = SyslogFormat(hostname="web-1", app_name="shop")
    return [fmt.format({"seq": 8 * i, "n": i, "ts": "2026-12-01T10:00:00.000001Z", "level": "WARNING",
                        "logger": "app.pay", "pid": 77, "msg": f"payment {i} card 4111 1111 1111 1111",
                        "fields": {"i": i}}) for i in range(start, start + count)]


def test_messages_become_records_numbered_by_the_server():
    plain = b"<34>1 2026-12-01T11:00:00.5+01:00 host-9 sshd 812 AUTH [origin ip=\"10.0.0.9\"] login failed"
    ours = _messages(1)[0]
    got = [json.loads(x) for x in batch_of([plain, ours], 40, time.time_ns()).splitlines()]
    assert [r["n"] for r in got] == [40, 41]
    a, b = got
    assert a["ts"] == "2026-12-01T10:00:00.500000Z" and a["level"] == "CRITICAL" and a["logger"] == "AUTH"
    assert a["pid"] == 812 and a["msg"] == "login failed"
    assert a["fields"]["syslog"]["sd"] == {"origin": {"ip": "10.0.0.9"}}
    assert a["fields"]["syslog"]["hostname"] == "host-9" and a["fields"]["syslog"]["facility"] == 4
    assert b["logger"] == "app.pay" and b["level"] == "WARNING" and b["fields"]["i"] == "0"
    with pytest.raises(FrameError):
        batch_of([b"<13>not a 5424 message"], 0, 0)
    assert parse_message(ours).msgid == "app.pay"


def test_a_syslog_client_is_written_sanitized_and_verifiable(pki, tmp_path):  # noqa: F811
    srv = ServeProcess(pki, tmp_path / "srv").start()
    try:
        with _client(srv, "c.example") as c:
            c.send(_messages(1000))
            c.check(0.5)
        d = wait_stats(srv.dir, lambda d: d["clients"].get("c.example", {}).get("written", 0) == 1000, timeout=30)
        assert d["clients"]["c.example"]["malformed"] == 0
        got = records(srv.dir / "c.example", pki["key"])
        assert [r["n"] for r in got] == list(range(1000))
        assert all(r["host"] == "c.example" and r["logger"] == "app.pay" for r in got)
        assert not any("4111 1111 1111 1111" in r["msg"] for r in got)
        v = verify(srv.dir / "c.example", pki["key"])
        assert v.returncode == 0, v.stdout + v.stderr
    finally:
        assert srv.stop() == 0


def test_past_the_rate_limit_syslog_is_dropped_and_counted_while_ls_is_served(pki, tmp_path):  # noqa: F811
    srv = ServeProcess(pki, tmp_path / "srv", "--rate-limit", "200").start()
    try:
        flood = _client(srv, "m.example")
        sent = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.0:
            flood.send(_messages(100, sent))
            sent += 100
        flood.check(0.5)
        flood.close()
        # meanwhile, and after, a well-behaved ls:// client is served
        good = srv.client("a.example")
        n = good.connect()
        assert good.ship(n, lines(n, 50), 50) == n + 50
        good.bye()
        d = wait_stats(srv.dir, lambda d: d["clients"].get("m.example", {}).get("received", 0) == sent, timeout=30)
        m = d["clients"]["m.example"]
        assert m["refused_rate"] > 0 and m["written"] + m["refused_rate"] == sent, m
        assert m["written"] <= 200 * 4 + 200  # the bucket's burst and 3 s at 200/s, roughly
        assert d["clients"]["a.example"]["written"] >= 50
    finally:
        assert srv.stop() == 0


@pytest.mark.parametrize("garbage", [b"12x <13>1 - - - - - -", b"99999999999 " + b"x" * 10,
                                     frame(b"<13>not rfc 5424 at all")])
def test_a_syslog_client_that_breaks_the_framing_is_counted_malformed_and_closed(pki, tmp_path, garbage):  # noqa: F811
    srv = ServeProcess(pki, tmp_path / "srv").start()
    try:
        crt, key = pki["b.example"]
        ctx = client_context(ca=pki["ca"], cert=crt, key=key)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(frame(_messages(1)[0]) + garbage)
                s.settimeout(10)
                try:
                    while s.recv(4096):
                        pass
                except (ssl.SSLError, OSError):
                    pass  # closed on us: what this test wants
        d = wait_stats(srv.dir, lambda d: d["clients"].get("b.example", {}).get("malformed", 0) == 1, timeout=20)
        assert d["clients"]["b.example"]["malformed"] == 1
    finally:
        assert srv.stop() == 0


def test_a_syslog_client_trickling_a_message_is_closed_at_the_frame_timeout(pki, tmp_path):  # noqa: F811
    """Slow-loris over RFC 5425: a byte every 0.2 s never lets a read time out, but a message
    begun must be whole within --frame-timeout; the whole message before it is kept, the
    closing counted, and an ls:// client is served all the while."""
    srv = ServeProcess(pki, tmp_path / "srv", "--frame-timeout", "1s").start()
    try:
        crt, key = pki["b.example"]
        ctx = client_context(ca=pki["ca"], cert=crt, key=key)
        partial = frame(_messages(1, 1)[0])
        closed_after = None
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(frame(_messages(1)[0]) + partial[:20])
                t0 = time.monotonic()
                good = srv.client("a.example")
                n = good.connect()
                assert good.ship(n, lines(n, 20), 20) == n + 20
                good.bye()
                try:
                    for octet in partial[20:-1]:
                        s.sendall(bytes([octet]))
                        time.sleep(0.2)
                        if time.monotonic() - t0 > 15:
                            break
                    s.settimeout(5)
                    s.recv(1)
                except (ssl.SSLError, OSError):
                    pass
                closed_after = time.monotonic() - t0
        assert closed_after < 10, f"the trickling client was not closed ({closed_after:.1f} s)"
        d = wait_stats(srv.dir, lambda d: d["clients"].get("b.example", {}).get("timeouts", 0) == 1, timeout=20)
        b = d["clients"]["b.example"]
        assert b["timeouts"] == 1 and b["written"] == 1 and b.get("malformed", 0) == 0, b
        assert d["clients"]["a.example"]["written"] == 20
    finally:
        assert srv.stop() == 0
