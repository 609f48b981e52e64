"""Shipping over TLS on loopback, side by side with rsyslog's own TLS forwarding.

`python -m perf.shipping` (needs rsyslog, rsyslog-relp, rsyslog-openssl and trustme) runs, in
one run, against one receiving rsyslogd (imrelp with TLS, imtcp with ossl; the test
configuration, tests/rsyslog_env.py):

- ours: a writer with `--ship relp://...` (then `syslog+tls://...`); producers log N records;
  the time from the first call (the earliest producer's, wall clock: interpreter start-up is
  not counted) until the receiver has written all N: records/s delivered.
  Beside it, the same records through the same writer with no `--ship`: how long the local
  pipeline takes, and with `--ship` how long until the files hold all N (shipping must not
  be what limits the local pipeline).
- the RELP pair again with a window of 1024 on both sides (`relp_window` in a [[ship]]
  table; omrelp's `windowSize`): librelp's default of 128 holds omrelp back most.
- ours, spooled: syslog+tls with the receiver started only once the writer's files (and so
  its spool) hold all N: the shipper's transport rate from a full spool, as rsyslog's
  forwarder has its whole input at hand.
- ours, to a sink: the spooled round against a TLS receiver that only reads and discards:
  what the shipper itself sends when the receiver is no limit.
- ours over ls:// to `logger-system serve` (plaintext there, so that the figure is the
  transport's and the server's pipeline, not its sealing): records/s until serve has written N.
- rsyslog: a second rsyslogd, fed the same messages (RFC 5424, as our shipper makes them) on
  a plain loopback TCP input (imptcp), forwarding with omrelp (TLS) and omfwd (ossl, octet
  counted) to the same receiver: records/s from the first byte sent until the receiver has
  all N.

Two rates per scenario: `delivered` (from the first record made, or for rsyslog sent, until
the receiver has all N: what a user waits) and `transport` (from the receiver's first record
until its last: the sender's rate once records flow, with the producers' and the local
pipeline's time taken out; the fairer comparison with rsyslog, whose input arrives made).

Each figure is the median of `--rounds` rounds; the rounds of ours and rsyslog's alternate.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from pathlib import Path

from perf.procs import stop

TESTS = Path(__file__).resolve().parent.parent / "tests"
PRODUCER = textwrap.dedent("""
    import sys
    import time
    import logger_system
    ring, who, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    log = logger_system.connect(ring, name="app.perf")
    print(time.time(), flush=True)  # the first call's time: interpreter start-up is not shipping
    for i in range(count):
        log.info("request %d from %s took %d ms with status %d", i, who, i % 900, 200, p=who, i=i)
""")


def _env():
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    import rsyslog_env

    return rsyslog_env


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.01)
    raise RuntimeError(f"timed out: {what}")


def _delivery(count, n: int, timeout: float, what: str) -> tuple[float, float]:
    """Wall-clock times at which count() first saw a record and then all n."""
    first = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = count()
        now = time.time()
        if got and first is None:
            first = now
        if got >= n:
            return first, now
        time.sleep(0.005)
    raise RuntimeError(f"timed out: {what}")


class _LineCounter:
    """Lines of a growing file, reading only what was added since the last call (a poll
    must not read the whole output again: it would take the CPU the receiver needs)."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.lines = path, 0, 0

    def __call__(self) -> int:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                while chunk := f.read(1 << 20):
                    self.lines += chunk.count(b"\n")
                    self.offset += len(chunk)
        except FileNotFoundError:
            pass
        return self.lines


class _Receiver:
    """The receiving rsyslogd, its output file emptied between rounds (by a restart)."""

    def __init__(self, work: Path, certs) -> None:
        self.rs = _env().Rsyslog(work, certs)

    def fresh(self):
        self.rs.stop()
        self.rs.received.unlink(missing_ok=True)
        self.rs.start()
        return self.rs


def _writer(ring: str, logs: Path, ship: list[str]):
    cmd = [sys.executable, "-P", "-m", "logger_system", "writer", "--ring", ring, "--dir", str(logs),
           "--plaintext", *ship]
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    from logger_system.ring import writer_attached

    _wait(lambda: writer_attached(ring, p.pid) or p.poll() is not None, 30, "the writer attached")
    if p.poll() is not None:
        raise RuntimeError(f"writer failed: {p.stderr.read().decode()[-2000:]}")
    return p




def ours(n: int, producers: int, url: str | None, certs, receiver: Path | None, before_delivery=None,
         relp_window: int | None = None) -> dict:
    """One round: N records through a writer (shipping to url, or not).  before_delivery:
    called once the files hold all N (the receiver started only then: the spool full)."""
    from logger_system.ring import Ring, unlink

    ring = f"perf-ship-{uuid.uuid4().hex[:8]}"
    ship = [] if url is None else ["--ship", url, "--tls-ca", str(certs.ca), "--tls-cert", str(certs.client.cert),
                                   "--tls-key", str(certs.client.key)]
    with tempfile.TemporaryDirectory() as tmp:
        if relp_window is not None:  # a [[ship]] table: the window is no flag
            conf = Path(tmp) / "writer.toml"
            conf.write_text(f'[[ship]]\nurl = "{url}"\ntls_ca = "{certs.ca}"\ntls_cert = "{certs.client.cert}"\n'
                            f'tls_key = "{certs.client.key}"\nrelp_window = {relp_window}\n')
            ship = ["--config", str(conf)]
        w = _writer(ring, Path(tmp) / "logs", ship)
        try:
            per = n // producers
            watch: dict = {}
            if receiver is not None:  # watched from the start: the first record may arrive early
                count = receiver if callable(receiver) else _LineCounter(receiver)

                def watching():
                    try:
                        watch["times"] = _delivery(count, per * producers, 900, "delivered")
                    except RuntimeError as e:
                        watch["error"] = e

                watcher = threading.Thread(target=watching, daemon=True)
                watcher.start()
            ps = [subprocess.Popen([sys.executable, "-c", PRODUCER, ring, str(k), str(per)], stdout=subprocess.PIPE)
                  for k in range(producers)]
            starts = []
            for p in ps:
                out_text = p.communicate(timeout=600)[0]
                if p.returncode != 0:
                    raise RuntimeError("a producer failed")
                starts.append(float(out_text.split()[0]))
            t0 = min(starts)

            def written():
                r = Ring(ring, create=False)
                try:
                    return r.stats().written >= per * producers
                finally:
                    r.close()

            _wait(written, 600, "written locally")
            t_local = time.time() - t0
            out = {"local_s": round(t_local, 3), "local_records_per_s": round(per * producers / t_local)}
            if before_delivery is not None:
                before_delivery()
            if receiver is not None:
                watcher.join()
                if "error" in watch:
                    raise watch["error"]
                out.update(_rates(per * producers, t0, *watch["times"]))
            return out
        finally:
            stop(w)
            unlink(ring)


def _messages(n: int) -> bytes:
    from logger_system.ship.syslog import SyslogFormat

    fmt = SyslogFormat()
    base = {"seq": 0, "n": 0, "ts": "2026-12-01T00:00:00.000000Z", "level": "INFO", "logger": "app.perf",
            "pid": os.getpid(), "msg": "", "fields": {}}
    out = bytearray()
    for i in range(n):
        rec = {**base, "seq": i * 160, "n": i, "msg": f"request {i} from 0 took {i % 900} ms with status 200",
               "fields": {"p": "0", "i": i}}
        out += fmt.format(rec) + b"\n"
    return bytes(out)


def _rates(n: int, t0: float, t_first: float, t_end: float) -> dict:
    """delivered: from the first record made (ours) or sent (rsyslog's) until the receiver
    has all n; transport: from the receiver's first record until its last (the sender's
    rate once records flow, whatever made them)."""
    return {"delivered_s": round(t_end - t0, 3), "delivered_records_per_s": round(n / (t_end - t0)),
            "transport_records_per_s": round(n / max(t_end - t_first, 1e-3))}


def rsyslog_forwarding(n: int, transport: str, certs, work: Path, receiver, window: int | None = None) -> dict:
    """One round: rsyslogd forwarding N messages from a plain loopback input to the receiver."""
    env = _env()
    fwd_dir = work / f"fwd-{uuid.uuid4().hex[:6]}"
    fwd_dir.mkdir(parents=True)
    port = env.free_port()
    c = certs
    if transport == "relp":
        action = (f'action(type="omrelp" target="127.0.0.1" port="{receiver.relp_port}" tls="on" '
                  f'tls.tlsLib="openssl" tls.caCert="{c.ca}" tls.myCert="{c.client.cert}" '
                  f'tls.myPrivKey="{c.client.key}" tls.authMode="name" tls.permittedPeer=["localhost"]'
                  + (f' windowSize="{window}"' if window else "") + ')')
        module = 'module(load="omrelp")'
    else:
        action = (f'action(type="omfwd" target="127.0.0.1" port="{receiver.tcp_port}" protocol="tcp" '
                  f'streamDriver="ossl" streamDriverMode="1" streamDriverAuthMode="x509/name" '
                  f'streamDriverPermittedPeers="localhost" tcp_framing="octet-counted" '
                  f'template="RSYSLOG_SyslogProtocol23Format")')
        module = ""
    conf = fwd_dir / "rsyslog.conf"
    conf.write_text(textwrap.dedent(f"""\
        global(workDirectory="{fwd_dir}" maxMessageSize="64k" net.enableDNS="off"
               defaultNetstreamDriverCAFile="{c.ca}" defaultNetstreamDriverCertFile="{c.client.cert}"
               defaultNetstreamDriverKeyFile="{c.client.key}")
        module(load="imptcp")
        {module}
        input(type="imptcp" address="127.0.0.1" port="{port}" ruleset="fwd")
        ruleset(name="fwd") {{
            {action}
        }}
        """))
    rsyslogd = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    p = subprocess.Popen([rsyslogd, "-n", "-f", str(conf), "-i", str(fwd_dir / "pid")], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=open(fwd_dir / "err", "wb"), start_new_session=True)
    try:
        _wait(lambda: env._listening(port) or p.poll() is not None, 15, "the forwarder listening")
        data = _messages(n)
        t0 = time.time()
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(data)
        t_first, t_end = _delivery(_LineCounter(receiver.received), n, 900, "forwarded")
        return _rates(n, t0, t_first, t_end)
    finally:
        stop(p, 10)


class _TlsSink:
    """A TLS receiver that reads and discards (counting messages by their BOM), to show what
    the shipper itself can send when the receiver is no limit.  It accepts only once
    `open()` is called: the spool is full by then, as in the spooled round."""

    def __init__(self, certs) -> None:
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certs.ca))
        self.ctx.load_cert_chain(str(certs.server.cert), str(certs.server.key))
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.seen = 0
        self.go = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def open(self) -> None:
        self.go.set()

    def count(self) -> int:
        return self.seen

    def _serve(self) -> None:
        self.go.wait()
        while True:
            raw, _ = self.listener.accept()
            try:
                tls = self.ctx.wrap_socket(raw, server_side=True)
                while data := tls.recv(1 << 20):
                    self.seen += data.count(b"\xef\xbb\xbf")  # a BOM split by a read is missed: rare
            except (OSError, ssl.SSLError):
                pass
            finally:
                raw.close()


class _Serve:
    """`logger-system serve` (plaintext, so that the figure is the transport's) for ls://."""

    def __init__(self, work: Path, certs) -> None:
        self.work, self.certs = work, certs
        self.proc = None
        self.n = 0

    def fresh(self) -> tuple[str, object]:
        self.stop()
        self.n += 1
        self.dir = self.work / f"serve-{self.n}"
        self._seen: dict[Path, tuple[int, int]] = {}  # file -> (bytes read, lines in them)
        port = _env().free_port()
        c = self.certs
        self.proc = subprocess.Popen([sys.executable, "-P", "-m", "logger_system", "serve", "--listen",
                                      f"127.0.0.1:{port}", "--dir", str(self.dir), "--tls-ca", str(c.ca),
                                      "--tls-cert", str(c.server.cert), "--tls-key", str(c.server.key),
                                      "--allow", _env().ALLOWED, "--plaintext"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: _env()._listening(port) or self.proc.poll() is not None, 30, "serve listening")
        return f"ls://127.0.0.1:{port}", self._written

    def _written(self) -> int:
        """Records serve has written: the lines of its plaintext files under DIR/<client>/, read
        on from where the last call stopped (a `stats --server` subprocess per poll would cost
        a core of a small machine, and its counters are saved only every half second)."""
        total = 0
        for path in sorted(self.dir.glob("*/*.jsonl")):
            at, lines = self._seen.get(path, (0, 0))
            try:
                with open(path, "rb") as f:
                    f.seek(at)
                    data = f.read()
            except FileNotFoundError:
                continue
            whole = data.rfind(b"\n") + 1  # a line being written counts once it is complete
            lines += data.count(b"\n", 0, whole)
            self._seen[path] = (at + whole, lines)
            total += lines
        return total

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, 30)


SCENARIOS = ("local_only", "ours_relp", "rsyslog_omrelp", "ours_relp_w1024", "rsyslog_omrelp_w1024", "ours_syslog_tls", "ours_syslog_tls_spooled",
             "ours_syslog_tls_to_sink", "rsyslog_omfwd_tls", "ours_ls")


def run(n: int = 50_000, rounds: int = 3, producers: int = 2, only: tuple[str, ...] = SCENARIOS) -> dict:
    env = _env()
    if not (shutil.which("rsyslogd") or Path("/usr/sbin/rsyslogd").exists()):
        raise SystemExit("perf.shipping needs rsyslogd: apt-get install rsyslog rsyslog-relp rsyslog-openssl")
    results: dict = {"records": n, "rounds": rounds, "producers": producers}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        certs = env.Certs.make(work / "pki")
        recv = _Receiver(work / "receiver", certs)
        srv = _Serve(work, certs)
        try:

            def spooled_round():  # the receiver away until the spool holds every record
                rs = recv.fresh()
                rs.stop()
                rs.received.unlink(missing_ok=True)
                return ours(n, producers, f"syslog+tls://127.0.0.1:{rs.tcp_port}", certs, rs.received,
                            before_delivery=rs.start)

            def sink_round():
                sink = _TlsSink(certs)
                try:  # within 0.1% of all: BOMs split between two reads are not counted
                    return ours(n, producers, f"syslog+tls://127.0.0.1:{sink.port}", certs,
                                lambda: sink.count() * 1.001, before_delivery=sink.open)
                finally:
                    sink.listener.close()

            def ls_round():
                url, written = srv.fresh()
                return ours(n, producers, url, certs, written)

            scenario = {
                "local_only": lambda: ours(n, producers, None, certs, None),
                "ours_relp": lambda: (lambda rs: ours(n, producers, f"relp://127.0.0.1:{rs.relp_port}", certs,
                                                      rs.received))(recv.fresh()),
                "rsyslog_omrelp": lambda: rsyslog_forwarding(n, "relp", certs, work, recv.fresh()),
                "ours_relp_w1024": lambda: (lambda rs: ours(n, producers, f"relp://127.0.0.1:{rs.relp_port}", certs,
                                                            rs.received, relp_window=1024))(recv.fresh()),
                "rsyslog_omrelp_w1024": lambda: rsyslog_forwarding(n, "relp", certs, work, recv.fresh(), window=1024),
                "ours_syslog_tls": lambda: (lambda rs: ours(n, producers, f"syslog+tls://127.0.0.1:{rs.tcp_port}",
                                                            certs, rs.received))(recv.fresh()),
                "ours_syslog_tls_spooled": spooled_round,
                "ours_syslog_tls_to_sink": sink_round,
                "rsyslog_omfwd_tls": lambda: rsyslog_forwarding(n, "syslog", certs, work, recv.fresh()),
                "ours_ls": ls_round,
            }
            samples: dict[str, list[dict]] = {k: [] for k in SCENARIOS if k in only}
            for _ in range(rounds):
                for name in samples:
                    samples[name].append(scenario[name]())
        finally:
            recv.rs.stop()
            srv.stop()
    for name, rows in samples.items():
        keys = rows[0].keys()
        results[name] = {k: statistics.median(r[k] for r in rows) for k in keys}
    for ours_name, theirs in (("ours_relp", "rsyslog_omrelp"), ("ours_relp_w1024", "rsyslog_omrelp_w1024"),
                              ("ours_syslog_tls", "rsyslog_omfwd_tls"),
                              ("ours_syslog_tls_spooled", "rsyslog_omfwd_tls")):
        if ours_name not in results or theirs not in results:
            continue
        for k in ("delivered_records_per_s", "transport_records_per_s"):
            results[f"{ours_name}_vs_{theirs}"] = results.get(f"{ours_name}_vs_{theirs}", {})
            results[f"{ours_name}_vs_{theirs}"][k.split("_")[0]] = round(results[ours_name][k] / results[theirs][k], 2)
    if "local_only" in results:
        results["local_with_ship_vs_without"] = {
            k: round(results[k]["local_records_per_s"] / results["local_only"]["local_records_per_s"], 2)
            for k in ("ours_relp", "ours_relp_w1024", "ours_syslog_tls", "ours_syslog_tls_spooled",
                      "ours_syslog_tls_to_sink", "ours_ls") if k in results}
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m perf.shipping", description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--producers", type=int, default=2)
    ap.add_argument("--only", action="append", choices=SCENARIOS,
                    help="run only this scenario (repeatable; default all)")
    a = ap.parse_args(argv)
    print(json.dumps(run(a.records, a.rounds, a.producers, tuple(a.only or SCENARIOS)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
