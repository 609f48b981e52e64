"""`logger-system serve`: real server processes, real TLS with certificates made here, real
`ls://` clients (logger_system/ship/lsclient.py), 127.0.0.1 only.

Exactly once under SIGKILL of the server, refusals at the handshake, malformed frames,
slow and half-open clients against the handshake budget, the rate limit, SIGTERM and
SIGHUP, and the counters `stats --server DIR --json` reports for all of it.  The pure
decisions (allowlist, limits, ingest) are tested by calling them directly first."""
from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from hypothesis import given, settings, strategies as st
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import cli
from logger_system.errors import ShipError
from logger_system.pipeline.sanitize import Sanitize
from logger_system.pipeline.stages import FormatJsonl
from logger_system.policy import parse as parse_policy
from logger_system.serve import ingest
from logger_system.serve.auth import Allowlist, cert_names
from logger_system.serve.limits import HandshakeBudget, RateLimit
from logger_system.ship import ls
from logger_system.ship.lsclient import LsClient

pytestmark = pytest.mark.timeout(120)

SOURCE_A, SOURCE_B = 0x1111222233334444, 0x5555666677778888


# ---- certificates -----------------------------------------------------------------------------

def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


class CA:
    """A certificate authority of the test's own, issuing leaf certificates into `dir`."""

    def __init__(self, directory: Path, name: str) -> None:
        self.dir, self.name = directory, name
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(hours=1))
                     .not_valid_after(now + datetime.timedelta(days=2))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                  content_commitment=False, key_encipherment=False,
                                                  data_encipherment=False, key_agreement=False,
                                                  encipher_only=False, decipher_only=False), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.pem = directory / f"{name}.pem"
        self.pem.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, label: str, dns: list[str] = (), ip: str | None = None, cn: str | None = None,
              server: bool = False) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        b = (x509.CertificateBuilder().subject_name(_name(cn or label)).issuer_name(self.cert.subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(hours=1))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH if server
                                                   else x509.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        sans = [x509.DNSName(d) for d in dns]
        if ip:
            import ipaddress

            sans.append(x509.IPAddress(ipaddress.ip_address(ip)))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = b.sign(self.key, hashes.SHA256())
        crt, keyf = self.dir / f"{self.name}-{label}.crt", self.dir / f"{self.name}-{label}.key"
        crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(keyf, key)
        return crt, keyf


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca, other = CA(d, "test-ca"), CA(d, "other-ca")
    p = {"ca": ca.pem, "server": ca.issue("server", dns=["localhost"], ip="127.0.0.1", server=True)}
    for name in ("a.example", "b.example", "m.example", "slow.example", "c.example"):
        p[name] = ca.issue(name, dns=[name])
    p["refused"] = ca.issue("refused", dns=["intruder.elsewhere"])
    p["cn-only"] = ca.issue("cn-only", cn="cn.example")
    p["other-ca"] = other.issue("other", dns=["a.example"])
    p["key"] = d / "server.key"
    p["issuer"] = ca
    subprocess.run(cli("keygen", "--out", p["key"]), check=True, capture_output=True)
    return p


# ---- processes ---------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess:
    """`logger-system serve` as a child process on a fixed port (kept across restarts)."""

    def __init__(self, pki, directory: Path, *extra: str, allow=("*.example",), seal: bool | list = True) -> None:
        self.pki, self.dir = pki, directory
        self.port = _free_port()
        self.args = ["serve", "--listen", f"127.0.0.1:{self.port}", "--dir", directory,
                     "--tls-ca", pki["ca"], "--tls-cert", pki["server"][0], "--tls-key", pki["server"][1],
                     *[x for a in allow for x in ("--allow", a)],
                     *(seal if isinstance(seal, list) else ["--key", pki["key"]] if seal else ["--plaintext"]),
                     *extra]
        self.proc: subprocess.Popen | None = None
        self.err = directory.parent / f"serve-{self.port}.err"

    def start(self) -> "ServeProcess":
        with open(self.err, "ab") as err:
            self.proc = subprocess.Popen(cli(*self.args), stdout=subprocess.DEVNULL, stderr=err,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}: {self.err.read_text()[-2000:]}")
            if self.started_count() > self._starts:
                return self
            time.sleep(0.02)
        raise AssertionError("serve did not start: " + self.err.read_text()[-2000:])

    _starts = 0

    def started_count(self) -> int:
        try:
            return self.err.read_text().count('"serve": "started"')
        except FileNotFoundError:
            return 0

    def restart(self) -> "ServeProcess":
        self._starts = self.started_count()
        return self.start()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._starts = self.started_count()

    def stop(self, timeout: float = 20) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def log(self) -> str:
        return self.err.read_text()

    def client(self, name: str, source: int = SOURCE_A, **kw) -> LsClient:
        crt, key = self.pki[name] if name else (None, None)
        return LsClient("127.0.0.1", self.port, source, ca=str(self.pki["ca"]), cert=crt and str(crt),
                        key=key and str(key), timeout=kw.pop("timeout", 10.0), **kw)

    def raw_tls(self, name: str) -> ssl.SSLSocket:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(str(self.pki["ca"]))
        ctx.load_cert_chain(*map(str, self.pki[name]))
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.port), timeout=10),
                            server_hostname="127.0.0.1")
        return s


@pytest.fixture
def serve(pki, tmp_path):
    started: list[ServeProcess] = []

    def make(*extra, **kw) -> ServeProcess:
        s = ServeProcess(pki, tmp_path / "srv", *extra, **kw)
        started.append(s)
        return s.start()

    yield make
    for s in started:
        if s.proc is not None and s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(10)


def stats(directory: Path) -> dict:
    out = subprocess.run(cli("stats", "--server", directory, "--json"), capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def wait_stats(directory: Path, check, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            d = stats(directory)
            if check(d):
                return d
        except (AssertionError, json.JSONDecodeError):
            d = None
        if time.monotonic() > deadline:
            raise AssertionError(f"counters never got there: {d}")
        time.sleep(0.2)


def records(directory: Path, key: Path | None, *extra: str) -> list[dict]:
    out = subprocess.run(cli("cat", *(["--key", key] if key else []), *extra, directory),
                         capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    return [json.loads(line) for line in out.stdout.splitlines()]


def verify(directory: Path, key: Path | None, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(cli("verify", *(["--key", key] if key else []), *extra, directory),
                          capture_output=True, text=True, timeout=60)


def lines(first: int, count: int, source: str = "a", msg: str = "record {n} of {src}") -> bytes:
    return b"".join(json.dumps({
        "seq": 2 * n + 1, "n": n, "ts": "2026-01-02T03:04:05.000006Z", "level": "INFO", "pid": 4242,
        "logger": "app.ship", "msg": msg.format(n=n, src=source), "fields": {"i": n}},
        separators=(",", ":")).encode() + b"\n" for n in range(first, first + count))


# A shipper process: ships `total` numbered records of one source, reconnecting and sending
# again from what WELCOME says whenever the conversation breaks; prints what it saw.
SHIPPER = r"""
import json, sys, time
from collections import deque
from logger_system.errors import ShipError
from logger_system.ship.lsclient import LsClient
port, ca, crt, key, source, total, batch, window, label = sys.argv[1:]
port, source, total, batch, window = int(port), int(source, 16), int(total), int(batch), int(window)
def lines(first, count):
    return b"".join(json.dumps({"seq": 2 * n + 1, "n": n, "ts": "2026-01-02T03:04:05.000006Z",
        "level": "INFO", "pid": 4242, "logger": "app.ship", "msg": f"record {n} of {label}",
        "fields": {"i": n}}, separators=(",", ":")).encode() + b"\n" for n in range(first, first + count))
c = LsClient("127.0.0.1", port, source, ca=ca, cert=crt, key=key, timeout=5.0)
acked, connects, sent = 0, 0, 0
deadline = time.monotonic() + 90
while acked < total and time.monotonic() < deadline:
    try:
        acked = c.connect()
        connects += 1
        send, inflight = acked, 0
        while acked < total:
            while inflight < window and send < total:
                k = min(batch, total - send)
                c.send(send, lines(send, k), k)
                sent += k
                send += k
                inflight += 1
                time.sleep(0.02)
            acked = c.wait_ack()
            inflight -= 1
            print(f"acked {acked}", flush=True)
    except ShipError as exc:
        time.sleep(0.05)
try:
    c.bye()
except ShipError:
    pass
print(json.dumps({"acked": acked, "connects": connects, "sent": sent}))
"""


class Shipper:
    """A shipper process; `acked` follows its progress as it says it."""

    def __init__(self, s: ServeProcess, name: str, source: int, total: int, batch: int = 100,
                 window: int = 4) -> None:
        crt, key = s.pki[name]
        self.err = s.dir.parent / f"shipper-{name}.err"
        with open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-P", "-c", SHIPPER, str(s.port), str(s.pki["ca"]), str(crt), str(key),
                 f"{source:016x}", str(total), str(batch), str(window), name],
                stdout=subprocess.PIPE, stderr=err, text=True)
        self.acked, self.result = 0, None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("acked "):
                self.acked = int(line.split()[1])
            elif line.startswith("{"):
                self.result = json.loads(line)

    def wait(self, timeout: float) -> dict:
        rc = self.proc.wait(timeout)
        self._reader.join(10)
        assert rc == 0, self.err.read_text()[-2000:]
        return self.result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# ---- the pure decisions ------------------------------------------------------------------------

def test_allowlist_takes_the_first_allowed_dns_name_and_refuses_unsafe_or_unlisted_names():
    allow = Allowlist.of(["*.prod.example", "db1.example"])
    assert allow.decide(["x.other", "Web1.PROD.example".lower()]).name == "web1.prod.example"
    assert allow.decide(["db1.example"]).name == "db1.example"
    refused = allow.decide(["intruder.elsewhere"])
    assert refused.name is None and refused.kind == "not_allowed"
    assert Allowlist.of(["*"]).decide(["../etc"]).kind == "unsafe_name"
    assert Allowlist.of(["*"]).decide([".hidden"]).kind == "unsafe_name"
    assert allow.decide([]).kind == "no_name"
    cert = {"subject": ((("commonName", "CN.example"),),), "subjectAltName": (("DNS", "A.example"),)}
    assert cert_names(cert) == ["a.example"]  # SANs first; the CN only without them
    assert cert_names({"subject": ((("commonName", "CN.example"),),)}) == ["cn.example"]


def test_rate_limit_slows_by_a_debt_and_drops_only_in_the_all_or_nothing_form():
    r = RateLimit(100, now=0.0)
    assert r.delay(100, 0.0) == 0.0          # one second's worth at once
    assert r.delay(50, 0.0) == pytest.approx(0.5)
    assert r.delay(50, 1.0) == pytest.approx(0.0)  # the debt was paid by waiting
    s = RateLimit(10, now=0.0)
    assert s.allow(10, 0.0) and not s.allow(1, 0.0) and s.allow(5, 0.5)


def test_handshake_budget_gives_up_the_oldest_when_full_and_expires_the_slow():
    b = HandshakeBudget(2, timeout=1.0)
    assert b.admit("a", 0.0) == [] and b.admit("b", 0.1) == []
    assert b.admit("c", 0.2) == ["a"] and len(b) == 2
    assert b.expired(1.15) == ["b"] and b.next_deadline() == pytest.approx(1.2)
    b.done("c")
    assert len(b) == 0


@pytest.mark.parametrize("line,match", [
    (b"not json", "not JSON"),
    (b"[1,2]", "not a JSON object"),
    (b'{"seq":1,"n":9,"ts":"2026-01-02T03:04:05Z","level":"INFO","pid":1,"logger":"a","msg":"m"}', "its n is 9"),
    (b'{"seq":1,"n":0,"ts":"yesterday","level":"INFO","pid":1,"logger":"a","msg":"m"}', "ts"),
    (b'{"seq":-1,"n":0,"ts":"2026-01-02T03:04:05Z","level":"INFO","pid":1,"logger":"a","msg":"m"}', "seq"),
    (b'{"seq":1,"n":0,"ts":"2026-01-02T03:04:05Z","level":"INFO","pid":1,"logger":"a","msg":"m","x":1}', "unknown"),
    (b'{"seq":1,"n":0,"ts":"2026-01-02T03:04:05Z","level":"INFO","pid":1,"logger":"a","msg":"m",'
     b'"fields":{"x":NaN}}', "not JSON"),
    (b'{"seq":1,"n":0,"ts":"2026-01-02T03:04:05Z","level":"INFO","pid":1,"logger":"a","msg":"m",'
     b'"fields":{"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}}", "not JSON"),
    (b'\xff\xfe', "not UTF-8"),
    (b'{"seq":1,"n":0,"ts":"2600-01-02T03:04:05Z","level":"INFO","pid":1,"logger":"a","msg":"m"}', "2554"),
])
def test_ingest_refuses_a_batch_with_any_line_that_is_not_a_record(line, match):
    with pytest.raises(ls.ProtocolError, match=match):
        ingest.decode(line + b"\n", 0, 1)


def test_a_control_frame_nested_past_the_recursion_limit_is_a_protocol_error():
    with pytest.raises(ls.ProtocolError, match="not JSON"):
        ls.Frame(ls.HELLO, b"[" * 4000).json()


def test_ingest_resanitizes_and_a_dropped_record_keeps_its_number_as_a_stub():
    policy = parse_policy({"rules": [{"name": "secret", "pattern": "TOPSECRET", "action": "drop"}]})
    data = lines(7, 2, msg="card 4111 1111 1111 1111 n={n}")
    data = data.replace(b"n=8", b"TOPSECRET n=8")
    batch = ingest.decode(data, 7, 2)
    before = ingest.Batch(meta=batch.meta.copy(), buf=batch.buf, end=0, n=7)
    kept = batch.keep.copy()
    batch = ingest.keep_numbered(Sanitize(policy)(batch), before, kept)
    out = [json.loads(x) for x in FormatJsonl(host="a.example")(batch).out.splitlines()]
    assert [r["n"] for r in out] == [7, 8] and all(r["host"] == "a.example" for r in out)
    assert "4111" not in out[0]["msg"] and "[REDACTED:credit_card]" in out[0]["msg"]
    assert out[1]["msg"] == ingest.DROPPED_MSG.decode() and "fields" not in out[1]
    assert (out[1]["seq"], out[1]["pid"], out[1]["logger"]) == (17, 4242, "app.ship")
    assert np.all(batch.keep == 1)


# ---- exactly once ------------------------------------------------------------------------------

@pytest.mark.slow
def test_two_sources_every_record_exactly_once_across_two_sigkills_of_the_server_and_one_of_a_shipper(
        serve, pki, tmp_path):
    s = serve()
    # b ships more than a: it is still shipping while a's replacement catches up after its kill
    totals = {"a.example": 8000, "b.example": 14000}
    t0 = time.monotonic()
    ships = [Shipper(s, "a.example", SOURCE_A, totals["a.example"]),
             Shipper(s, "b.example", SOURCE_B, totals["b.example"])]
    killed = None
    try:
        for mark, what in ((1500, "server"), (3000, "shipper"), (5000, "server")):
            deadline = time.monotonic() + 60
            while min(p.acked for p in ships) < mark:  # each kill falls while both are shipping
                assert time.monotonic() < deadline, [p.acked for p in ships]
                time.sleep(0.01)
            if what == "server":
                s.kill()
                time.sleep(0.3)  # shippers find it gone, and retry
                s.restart()
            else:  # a shipper killed with batches in flight; a new one starts from WELCOME
                killed = ships[0]
                killed.kill()
                ships[0] = Shipper(s, "a.example", SOURCE_A, totals["a.example"])
        results = [p.wait(100) for p in ships]
    finally:
        for p in ships:
            p.kill()
    assert killed is not None and 0 < killed.acked < totals["a.example"]
    assert s.stop() == 0
    assert [r["acked"] for r in results] == list(totals.values()), results
    # each shipper's conversation broke: the kills fell while it shipped
    assert results[0]["connects"] >= 1 and results[1]["connects"] >= 3, results
    assert results[1]["sent"] > totals["b.example"]  # something was sent twice...
    for name, src in (("a.example", SOURCE_A), ("b.example", SOURCE_B)):
        recs = records(s.dir / name, pki["key"])
        assert [r["n"] for r in recs] == list(range(totals[name]))  # ...and written once
        assert all(r["host"] == name and r["msg"] == f"record {r['n']} of {name}" for r in recs)
        assert recs[5]["seq"] == 11 and recs[5]["pid"] == 4242 and recs[5]["fields"] == {"i": 5}
        v = verify(s.dir / name, pki["key"])
        assert v.returncode == 0, v.stdout + v.stderr
        assert all(f"{src:016x}" in f.name for f in (s.dir / name).glob("log-*"))
    d = stats(s.dir)
    for name, total in totals.items():
        c = d["clients"][name]
        assert c["written"] == total and c["malformed"] == 0 and c["connections"] >= 1, d
    assert not d["server"]["running"]
    print(f"exactly once: {sum(totals.values())} records of 2 sources, 2 SIGKILLs of the server and 1 "
          f"of a shipper, {time.monotonic() - t0:.1f} s, {results}")


def test_a_resend_after_a_lost_ack_is_skipped_and_welcome_says_where_the_files_end(serve, pki):
    s = serve()
    c = s.client("a.example")
    assert c.connect() == 0
    assert c.ship(0, lines(0, 10), 10) == 10
    c.close()  # as if the ACK had been lost: the client sends the batch again, and more
    assert c.connect() == 10
    head = {"file_id": "ab" * 16, "chunks": 3, "digest": "cd" * 32}
    assert c.ship(5, lines(5, 10), 10, head=head) == 15
    assert c.ship(0, lines(0, 10), 10) == 15  # all of it a resend
    assert c.bye() == 15
    assert s.stop() == 0
    assert [r["n"] for r in records(s.dir / "a.example", pki["key"])] == list(range(15))
    c = stats(s.dir)["clients"]["a.example"]
    assert (c["received"], c["written"], c["duplicates"]) == (30, 15, 15)
    # the chain head the batch carried is kept, with where the stream stood after it
    kept = [json.loads(x) for x in (s.dir / ".serve" / "heads" / "a.example.jsonl").read_text().splitlines()]
    assert [(k["next_n"], k["head"]) for k in kept] == [(15, head)]


def test_another_source_under_one_client_name_is_refused_and_counted(serve, pki):
    s = serve()
    c = s.client("a.example")
    c.connect()
    c.ship(0, lines(0, 3), 3)
    c.bye()
    other = s.client("a.example", source=SOURCE_B)
    with pytest.raises(ShipError, match="one directory holds one source"):
        other.connect()
    assert s.stop() == 0
    assert stats(s.dir)["clients"]["a.example"]["refused_source"] == 1
    assert [r["n"] for r in records(s.dir / "a.example", pki["key"])] == [0, 1, 2]


def test_a_gap_in_the_stream_is_recorded_as_a_loss_that_verify_reports(serve, pki):
    s = serve()
    c = s.client("c.example")
    c.connect()
    c.ship(0, lines(0, 10), 10)
    assert c.ship(15, lines(15, 5), 5, gap=5) == 20
    c.bye()
    assert s.stop() == 0
    d = s.dir / "c.example"
    v = verify(d, pki["key"])
    assert v.returncode == 1 and "5 record(s) lost just before this file" in v.stdout + v.stderr
    assert verify(d, pki["key"], "--accept-loss").returncode == 0
    assert [r["n"] for r in records(d, pki["key"], "--accept-loss")] == list(range(10)) + list(range(15, 20))
    c = stats(s.dir)["clients"]["c.example"]
    assert (c["lost"], c["gaps"], c["written"]) == (5, 1, 15)


# ---- abuse -------------------------------------------------------------------------------------

def _closed_with_error(sock: ssl.SSLSocket, timeout: float = 10.0) -> str:
    """Read until the server closes; the text of its ERROR frame."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ssl.SSLError, OSError):
        pass
    frames = ls.Decoder().feed(data)
    errors = [f.json()["error"] for f in frames if f.kind == ls.ERROR]
    return errors[-1] if errors else ""


class GoodClient(threading.Thread):
    """A well-behaved client shipping the whole time the abuse goes on."""

    def __init__(self, s: ServeProcess, name: str, total: int, batch: int = 50) -> None:
        super().__init__(daemon=True)
        self.s, self.name, self.total, self.batch = s, name, total, batch
        self.acked, self.error = 0, None

    def run(self) -> None:
        try:
            c = self.s.client(self.name)
            n = c.connect()
            while n < self.total:
                k = min(self.batch, self.total - n)
                n = c.ship(n, lines(n, k), k)
                self.acked = n
                time.sleep(0.01)
            c.bye()
        except Exception as exc:  # the assertion names it
            self.error = exc


@pytest.mark.slow
def test_refused_certificates_and_malformed_frames_are_counted_while_a_good_client_is_served(serve, pki):
    s = serve()
    good = GoodClient(s, "a.example", 3000)
    good.start()
    # refused at the handshake: a name not allowed, another CA, no certificate at all
    for who in ("refused", "other-ca", None):
        with pytest.raises(ShipError):
            s.client(who).connect()
    # a certificate with only a CN: the CN is its name
    c = s.client("cn-only")
    c.connect()
    c.bye()
    # malformed, each on an allowed connection: garbage, an oversize length, bad JSON, bad records
    bad = [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
           struct.pack(">cI", b"B", 0x7FFFFFFF),
           ls.encode(ls.HELLO, b"{not json"),
           ls.hello(SOURCE_B) + ls.batch(0, b'{"seq":"x"}\n', 1)]
    reasons = []
    for frame in bad:
        sock = s.raw_tls("m.example")
        sock.sendall(frame)
        reasons.append(_closed_with_error(sock))
        sock.close()
    assert all(r.startswith("malformed") for r in reasons), reasons
    # an RFC 5425 client whose octet count is not a number: closed with no ls:// ERROR (it
    # would mean nothing to a syslog client), counted malformed like the rest
    sock = s.raw_tls("b.example")
    sock.sendall(b"12x <34>1 2026-01-02T03:04:05Z host app - - - octet count that is not a number")
    assert _closed_with_error(sock) == ""
    sock.close()
    d = wait_stats(s.dir, lambda d: d["clients"].get("b.example", {}).get("malformed", 0) == 1)
    assert d["clients"]["m.example"]["malformed"] == len(bad) and d["clients"]["b.example"]["refused_source"] == 0
    good.join(60)
    assert good.error is None and good.acked == 3000
    assert s.stop() == 0
    d = stats(s.dir)
    assert d["clients"]["m.example"]["malformed"] == len(bad) and d["clients"]["b.example"]["malformed"] == 1
    assert d["clients"]["a.example"]["written"] == 3000 and d["clients"]["a.example"]["malformed"] == 0
    assert "cn.example" in d["clients"] and "intruder.elsewhere" not in d["clients"]
    r = d["handshake_refused"]
    assert r["not_allowed"] == 1 and r["untrusted"] == 1 and r["no_certificate"] == 1
    assert d["handshake_failures"] >= 3
    assert [x["n"] for x in records(s.dir / "a.example", pki["key"])] == list(range(3000))
    assert not (s.dir / "m.example").exists() or not list((s.dir / "m.example").glob("log-*"))


@pytest.mark.slow
def test_half_open_and_slow_clients_cannot_exhaust_the_handshake_budget(serve, pki):
    s = serve("--max-handshakes", "4", "--handshake-timeout", "1s", "--frame-timeout", "1s",
              "--idle-timeout", "2s")
    stop = threading.Event()
    socks = []
    # 20 half-open connections: TCP, then nothing
    for _ in range(20):
        socks.append(socket.create_connection(("127.0.0.1", s.port), timeout=5))

    def loris():  # a TLS ClientHello that never ends, a byte every 0.2 s
        with socket.create_connection(("127.0.0.1", s.port), timeout=5) as so:
            for b in b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40):
                if stop.is_set():
                    return
                try:
                    so.send(bytes([b]))
                except OSError:
                    return
                time.sleep(0.2)

    lorises = [threading.Thread(target=loris, daemon=True) for _ in range(5)]
    for t in lorises:
        t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    good = GoodClient(s, "a.example", 500)
    good.start()
    good.join(20)
    took = time.monotonic() - t0
    assert good.error is None and good.acked == 500, good.error
    assert took < 10
    # after the handshake: a frame trickled a byte at a time (never a quiet read), and a
    # connection that says nothing
    slow = s.raw_tls("slow.example")
    idle = s.raw_tls("m.example")

    def trickle():
        for b in ls.hello(SOURCE_A):
            try:
                slow.send(bytes([b]))
            except (OSError, ssl.SSLError):
                return
            time.sleep(0.15)

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    t1 = time.monotonic()
    assert "not completed" in _closed_with_error(slow)
    assert time.monotonic() - t1 < 5  # within --frame-timeout 1s (and a poll), not the whole hello
    assert "no frame" in _closed_with_error(idle)
    trickler.join(15)
    stop.set()
    for so in socks:
        so.close()
    for t in lorises:
        t.join(15)
    d = wait_stats(s.dir, lambda d: d["handshake_failures"] >= 25)
    assert d["handshake_refused"]["timeout"] + d["handshake_refused"]["evicted"] >= 25
    assert d["clients"]["slow.example"]["timeouts"] == 1 and d["clients"]["m.example"]["timeouts"] == 1
    assert s.stop() == 0
    print(f"good client served in {took:.2f} s next to 20 half-open and 5 slow-loris connections")


@pytest.mark.slow
def test_rate_limit_slows_an_ls_client_down_and_loses_nothing(serve, pki):
    s = serve("--rate-limit", "400")
    c = s.client("a.example", timeout=20)
    c.connect()
    t0 = time.monotonic()
    n = 0
    while n < 1600:
        n = c.ship(n, lines(n, 100), 100)
    took = time.monotonic() - t0
    c.bye()
    assert s.stop() == 0
    # one second's burst, then 400/s: 1200 records past the burst take about 3 s
    assert 2.5 <= took < 8, took
    assert [r["n"] for r in records(s.dir / "a.example", pki["key"])] == list(range(1600))
    c = stats(s.dir)["clients"]["a.example"]
    assert c["written"] == 1600 and c["refused_rate"] == 0


# ---- signals -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_sigterm_writes_and_acknowledges_every_batch_received_then_exits_0(serve, pki):
    s = serve("--rate-limit", "100")  # ACKs wait: batches pile up unacknowledged at the server
    c = s.client("a.example", timeout=15)
    c.connect()
    for i in range(5):
        c.send(i * 100, lines(i * 100, 100), 100)
    time.sleep(0.5)
    s.signal(signal.SIGTERM)
    acks = []
    with pytest.raises(ShipError, match="server stopping"):
        while True:
            acks.append(c.wait_ack())
    assert acks[-1] == 500 and sorted(acks) == acks
    assert s.proc.wait(20) == 0
    d = s.dir / "a.example"
    v = verify(d, pki["key"])
    assert v.returncode == 0 and "open" not in v.stdout, v.stdout + v.stderr
    assert [r["n"] for r in records(d, pki["key"])] == list(range(500))


@pytest.mark.slow
def test_sighup_reloads_the_allowlist_for_new_connections_and_revokes_old_ones(serve, pki, tmp_path):
    allow = tmp_path / "allow.txt"
    allow.write_text("a.example  # the first\n")
    s = serve("--allow-file", allow, allow=())
    a = s.client("a.example")
    a.connect()
    a.ship(0, lines(0, 5), 5)
    with pytest.raises(ShipError, match="not allowed"):
        s.client("b.example", source=SOURCE_B).connect()
    allow.write_text("b.example\n")
    s.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while '"serve": "reloaded"' not in s.log():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    b = s.client("b.example", source=SOURCE_B)
    assert b.connect() == 0 and b.ship(0, lines(0, 3), 3) == 3
    with pytest.raises(ShipError, match="no longer allowed"):
        a.ship(5, lines(5, 5), 5)
    b.bye()
    assert s.stop() == 0
    d = stats(s.dir)
    assert d["clients"]["a.example"]["revoked"] == 1 and d["handshake_refused"]["not_allowed"] == 1
    assert [r["n"] for r in records(s.dir / "a.example", pki["key"])] == list(range(5))


def test_metrics_export_the_counters_per_client(serve, pki):
    port = _free_port()
    s = serve("--metrics", f"127.0.0.1:{port}")
    c = s.client("a.example")
    c.connect()
    c.ship(0, lines(0, 7), 7)
    c.bye()
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert 'logger_system_serve_client_written_total{client="a.example"} 7.0' in text
    assert "logger_system_serve_handshake_failures_total" in text
    assert s.stop() == 0


def test_serve_refuses_to_start_without_a_seal_choice_or_an_allowlist(pki, tmp_path):
    base = ["serve", "--listen", "127.0.0.1:0", "--dir", tmp_path / "d", "--tls-ca", pki["ca"],
            "--tls-cert", pki["server"][0], "--tls-key", pki["server"][1]]
    out = subprocess.run(cli(*base, "--allow", "*"), capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "--key FILE, --recipient STR or --plaintext" in out.stderr
    out = subprocess.run(cli(*base, "--plaintext"), capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "--allow" in out.stderr


def test_plaintext_server_directory_reads_and_verifies_like_a_writers(serve, pki):
    s = serve(seal=False)
    c = s.client("a.example")
    c.connect()
    c.ship(0, lines(0, 20), 20)
    c.bye()
    assert s.stop() == 0
    assert [r["n"] for r in records(s.dir / "a.example", None)] == list(range(20))
    assert verify(s.dir / "a.example", None).returncode == 0
    assert os.stat(s.dir / "a.example").st_mode & 0o077 == 0


def test_recipient_mode_resumes_from_chunk_headers_after_a_sigkill_without_the_key(serve, pki, tmp_path):
    identity = tmp_path / "reader.identity"
    out = subprocess.run(cli("keygen", "--x25519", "--out", identity), capture_output=True, text=True,
                         check=True, timeout=30)
    s = serve(seal=["--recipient", out.stdout.strip()])
    c = s.client("a.example")
    c.connect()
    c.ship(0, lines(0, 100), 100)
    s.kill()  # the server can seal but not read: its next_n must come from the chunk headers
    s.restart()
    c = s.client("a.example")
    assert c.connect() == 100
    assert c.ship(100, lines(100, 50), 50) == 150
    c.bye()
    assert s.stop() == 0
    d = s.dir / "a.example"
    v = subprocess.run(cli("verify", "--identity", identity, d), capture_output=True, text=True, timeout=60)
    assert v.returncode == 0, v.stdout + v.stderr
    got = subprocess.run(cli("cat", "--identity", identity, d), capture_output=True, timeout=60)
    assert [json.loads(x)["n"] for x in got.stdout.splitlines()] == list(range(150))


def _wait_log(s: ServeProcess, text: str, count: int = 1, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while s.log().count(text) < count:
        assert time.monotonic() < deadline, f"never said {text}: {s.log()[-2000:]}"
        time.sleep(0.05)


@pytest.mark.slow
def test_sighup_reloads_the_certificates_and_a_bad_reload_keeps_the_running_ones(serve, pki, tmp_path):
    ca_file = tmp_path / "ca-bundle.pem"
    ca_file.write_bytes(pki["ca"].read_bytes())
    crt, key = tmp_path / "server.crt", tmp_path / "server.key"
    crt.write_bytes(pki["server"][0].read_bytes())
    key.write_bytes(pki["server"][1].read_bytes())
    s = serve("--tls-ca", ca_file, "--tls-cert", crt, "--tls-key", key)  # the later flags win
    serial = s.raw_tls("a.example").getpeercert()["serialNumber"]
    with pytest.raises(ShipError):
        s.client("other-ca").connect()  # its CA is not trusted yet
    # the CA bundle gains the other CA, and the server gets a new certificate
    other_ca = pki["ca"].parent / "other-ca.pem"
    ca_file.write_bytes(pki["ca"].read_bytes() + other_ca.read_bytes())
    renewed = pki["issuer"].issue("server-renewed", dns=["localhost"], ip="127.0.0.1", server=True)
    crt.write_bytes(renewed[0].read_bytes())
    key.write_bytes(renewed[1].read_bytes())
    s.signal(signal.SIGHUP)
    _wait_log(s, '"serve": "reloaded"')
    assert s.raw_tls("a.example").getpeercert()["serialNumber"] != serial
    c = s.client("other-ca")
    assert c.connect() == 0  # named a.example by a CA trusted now
    c.bye()
    # a reload that cannot be done (no CA file) keeps what runs
    ca_file.write_text("not a certificate\n")
    s.signal(signal.SIGHUP)
    _wait_log(s, '"serve": "reload_failed"')
    c = s.client("a.example")
    assert c.connect() == 0
    c.bye()
    assert s.stop() == 0


def test_one_client_cannot_take_more_than_its_share_of_connections(serve, pki):
    s = serve("--max-client-connections", "2")
    held = [s.raw_tls("m.example") for _ in range(2)]
    for h in held:  # each one is served: it says HELLO and is welcomed
        h.sendall(ls.hello(SOURCE_A))
        h.settimeout(10)
        assert ls.Decoder().feed(h.recv(4096))[0].kind == ls.WELCOME
    third = s.raw_tls("m.example")
    assert "more than 2 connections of m.example" in _closed_with_error(third)
    c = s.client("a.example")  # another client is not affected
    assert c.connect() == 0
    c.bye()
    for h in held:
        h.close()
    assert s.stop() == 0
    assert stats(s.dir)["connections_refused"] == 1


def test_client_sink_in_plaintext_records_a_gap_at_a_file_boundary_and_reads_next_n_back(tmp_path):
    from logger_system.policy import Policy
    from logger_system.rotation import RotationPolicy
    from logger_system.serve.sink import ClientSink

    d = tmp_path / "srv" / "a.example"
    sink = ClientSink(d, "a.example", None, Policy(), RotationPolicy(None))
    assert sink.welcome(SOURCE_A) == 0
    assert sink.write(SOURCE_A, ls.parse_batch(ls.batch(0, lines(0, 4), 4)[5:])).next_n == 4
    w = sink.write(SOURCE_A, ls.parse_batch(ls.batch(7, lines(7, 3), 3)[5:]))
    assert (w.next_n, w.lost, w.written) == (10, 3, 3)
    sink.close()
    assert len(list(d.glob("log-*.jsonl"))) == 2  # the gap falls between two files
    v = verify(d, None)
    assert v.returncode == 1 and "records n=4..6 missing" in v.stdout + v.stderr
    assert verify(d, None, "--accept-loss").returncode == 0
    again = ClientSink(d, "a.example", None, Policy(), RotationPolicy(None))
    assert again.welcome(SOURCE_A) == 10  # from the files, nothing else
    again.close()


_json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-2**53, 2**53),
                         st.text(st.characters(blacklist_categories=("Cs",)), max_size=20))
_json_value = st.recursive(_json_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(recs=st.lists(st.fixed_dictionaries({
    "seq": st.integers(0, 2**64 - 1), "pid": st.integers(0, 2**32 - 1),
    "ts": st.datetimes(min_value=datetime.datetime(1970, 1, 2), max_value=datetime.datetime(2554, 1, 1)),
    "level": st.sampled_from(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "Level 7"]),
    "logger": st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
    "msg": st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
    "fields": st.dictionaries(st.text(max_size=8), _json_value, max_size=4)}), min_size=1, max_size=6),
    first=st.integers(0, 2**40))
def test_a_shipped_record_comes_out_of_the_server_formatter_as_it_went_in_plus_host(recs, first):
    sent = []
    for i, r in enumerate(recs):
        r = dict(r, n=first + i, ts=r["ts"].strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        if not r["fields"]:
            del r["fields"]
        sent.append(r)
    data = b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in sent)
    out = FormatJsonl(host="h.example")(ingest.decode(data, first, len(sent))).out
    assert [json.loads(x) for x in out.splitlines()] == [dict(r, host="h.example") for r in sent]


@settings(max_examples=300, deadline=None)
@given(junk=st.one_of(
    st.binary(max_size=200),
    st.dictionaries(st.sampled_from(["seq", "n", "ts", "level", "pid", "logger", "msg", "fields", "host"]),
                    _json_value, max_size=9).map(lambda d: json.dumps(d).encode())))
def test_ingest_of_anything_is_a_batch_or_a_protocol_error_never_a_crash(junk):
    line = junk.replace(b"\n", b" ") + b"\n"
    try:
        batch = ingest.decode(line, 0, 1)
    except ls.ProtocolError:
        return
    out = FormatJsonl(host="h.example")(batch).out
    assert json.loads(out)["host"] == "h.example"
