"""The writer ships what it writes to a real rsyslogd, over RELP and RFC 5425, through its spool.

Real processes throughout: producers, the writer (`--ship`), rsyslogd from Debian with its own
work directory, certificates made by the test, 127.0.0.1 only.  Each test is bounded in time
and stops every process it started.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import WriterProcess, cli, read_records, stats, wait_for
from rsyslog_env import ALLOWED, Certs, Rsyslog
from logger_system.ship.syslog import parse_message, record_from_message

pytestmark = pytest.mark.slow

CARD = "4111 1111 1111 1111"
PRODUCER = textwrap.dedent("""
    import sys, time
    import logger_system
    ring, who, count, card = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    log = logger_system.connect(ring, name="app." + who)
    worst = 0.0
    for i in range(count):
        t = time.perf_counter()
        ok = log.info("order %d of %s paid with card %s", i, who, card, p=who, i=i)
        worst = max(worst, time.perf_counter() - t)
        assert ok, i
        if i % 500 == 0:
            time.sleep(0.002)
    print(worst)
""")


def _ship_args(certs: Certs, url: str) -> list[str]:
    return ["--ship", url, "--tls-ca", str(certs.ca), "--tls-cert", str(certs.client.cert),
            "--tls-key", str(certs.client.key)]


def _produce(ring: str, who: str, count: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PRODUCER, ring, who, str(count), CARD],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(p: subprocess.Popen, timeout: float = 120) -> float:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err[-2000:]
    return float(out.strip())


def _received(rs: Rsyslog) -> list[dict]:
    return [record_from_message(parse_message(line["raw"].encode())) for line in rs.lines()]


def _ship_status(ring: str) -> list[dict]:
    r = subprocess.run(cli("stats", "--ring", ring, "--json"), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["ship"]


@pytest.fixture
def certs(tmp_path):
    return Certs.make(tmp_path / "pki")


@pytest.mark.timeout(300)
def test_relp_every_record_at_least_once_across_a_sigkill_and_exactly_once_locally(ring_name, tmp_path, certs):
    logs = tmp_path / "logs"
    with Rsyslog(tmp_path / "rsyslog", certs) as rs:
        w = WriterProcess(ring_name, logs, *_ship_args(certs, f"relp://127.0.0.1:{rs.relp_port}")).start()
        try:
            ps = [_produce(ring_name, who, 20_000) for who in ("a", "b")]
            wait_for(lambda: len(rs.lines()) >= 8_000, timeout=120, what="rsyslog has a share")
            rs.kill()
            time.sleep(0.5)
            rs.start()
            for p in ps:
                _finish(p)
            got = wait_for(lambda: len({r["n"] for r in _received(rs)}) >= 40_000 and _received(rs),
                           timeout=180, what="every record at rsyslog")
            ns = [r["n"] for r in got]
            duplicates = len(ns) - len(set(ns))
            print(f"\nrelp: {len(ns)} messages at rsyslog for 40,000 records, {duplicates} duplicates "
                  f"(rsyslogd SIGKILLed once)")
            assert set(ns) == set(range(40_000))
            # structured-data values are text at the receiver
            assert {(r["fields"]["p"], r["fields"]["i"]) for r in got} == {
                (p, str(i)) for p in "ab" for i in range(20_000)}
            assert not any(CARD in line["raw"] for line in rs.lines())
            wait_for(lambda: _ship_status(ring_name)[0]["acked"] == 40_000, timeout=60, what="acknowledged")
            st = _ship_status(ring_name)[0]
            assert st["pending"] == 0 and st["connected"] and st["url"] == f"relp://127.0.0.1:{rs.relp_port}"
            assert st["errors"] >= 1  # the kill broke a session
            assert w.stop() == 0, w.stderr()
        finally:
            if w.proc.poll() is None:
                w.kill()
    local = read_records(logs)
    assert sorted(r["n"] for r in local) == list(range(40_000))
    assert not any(CARD in json.dumps(r) for r in local)


@pytest.mark.timeout(300)
def test_syslog_tls_10000_records_each_a_valid_rfc5424_message(ring_name, tmp_path, certs):
    logs = tmp_path / "logs"
    with Rsyslog(tmp_path / "rsyslog", certs) as rs:
        w = WriterProcess(ring_name, logs, *_ship_args(certs, f"syslog+tls://127.0.0.1:{rs.tcp_port}")).start()
        try:
            _finish(_produce(ring_name, "s", 10_000))
            lines = rs.wait_for(10_000, timeout=120)
            assert len(lines) == 10_000, rs.output()[-3000:]
            records = [record_from_message(parse_message(line["raw"].encode())) for line in lines]
            assert sorted(r["n"] for r in records) == list(range(10_000))
            assert all(line["v"] == "1" and line["msgid"] == "app.s" for line in lines)
            assert not any(CARD in line["raw"] for line in lines)
            assert w.stop() == 0, w.stderr()
        finally:
            if w.proc.poll() is None:
                w.kill()


@pytest.mark.timeout(300)
def test_a_receiver_away_records_spool_nothing_blocks_delivery_resumes(ring_name, tmp_path, certs):
    """rsyslogd is not there when the writer starts: producers log at full speed with no
    wait, the local files get everything, the spool holds it (pending, errors counted, not
    connected); once rsyslogd listens, every record arrives and the spool empties."""
    logs = tmp_path / "logs"
    rs = Rsyslog(tmp_path / "rsyslog", certs)
    w = WriterProcess(ring_name, logs, *_ship_args(certs, f"relp://127.0.0.1:{rs.relp_port}")).start()
    try:
        worst = _finish(_produce(ring_name, "away", 5_000))
        assert worst < 0.5  # no call waited on the receiver
        wait_for(lambda: stats(ring_name)["written"] == 5_000, what="written locally")
        st = wait_for(lambda: (s := _ship_status(ring_name)[0])["errors"] >= 2 and s["pending"] == 5_000 and s,
                      timeout=30, what="connect attempts")
        assert st["pending"] == 5_000 and not st["connected"] and st["acked"] == 0
        rs.start()
        got = wait_for(lambda: len({r["n"] for r in _received(rs)}) >= 5_000 and _received(rs), timeout=120,
                       what="delivered after the receiver came")
        assert {r["n"] for r in got} == set(range(5_000))
        wait_for(lambda: _ship_status(ring_name)[0]["pending"] == 0, timeout=60, what="the spool emptied")
        assert w.stop() == 0, w.stderr()
    finally:
        rs.stop()
        if w.proc.poll() is None:
            w.kill()


@pytest.mark.timeout(300)
def test_the_spool_bound_holds_and_what_it_did_not_take_is_counted(ring_name, tmp_path, certs):
    """A 1 MiB spool and a receiver away: the spool stops taking records at its bound
    (counted `overflow`), the files still get all; when the receiver comes it gets exactly
    what the spool held, and spooled + overflow == written."""
    logs = tmp_path / "logs"
    rs = Rsyslog(tmp_path / "rsyslog", certs)
    conf = tmp_path / "w.toml"
    conf.write_text(textwrap.dedent(f"""
        [writer]
        plaintext = true
        [[ship]]
        url = "relp://127.0.0.1:{rs.relp_port}"
        tls_ca = "{certs.ca}"
        tls_cert = "{certs.client.cert}"
        tls_key = "{certs.client.key}"
        spool_size = "1MiB"
    """))
    w = WriterProcess(ring_name, logs, "--config", str(conf)).start()
    try:
        _finish(_produce(ring_name, "big", 20_000))
        wait_for(lambda: stats(ring_name)["written"] == 20_000, what="written locally")
        # published about once a second
        st = wait_for(lambda: (s := _ship_status(ring_name)[0])["pending"] + s["overflow"] == 20_000 and s,
                      timeout=30, what="the status published")
        spool_bytes = sum(p.stat().st_size for p in (logs / ".spool").rglob("spool-*.lsp"))
        assert st["overflow"] > 0 and spool_bytes <= 1 << 20, (st, spool_bytes)
        held = st["pending"]
        assert held + st["overflow"] == 20_000
        rs.start()
        got = wait_for(lambda: len(rs.lines()) >= held and _received(rs), timeout=120, what="the spool delivered")
        assert sorted(r["n"] for r in got) == list(range(held))
        assert w.stop() == 0, w.stderr()
    finally:
        rs.stop()
        if w.proc.poll() is None:
            w.kill()


@pytest.mark.timeout(120)
def test_a_refused_client_certificate_delivers_nothing_and_is_counted(ring_name, tmp_path, certs):
    logs = tmp_path / "logs"
    with Rsyslog(tmp_path / "rsyslog", certs) as rs:
        args = ["--ship", f"relp://127.0.0.1:{rs.relp_port}", "--tls-ca", str(certs.ca),
                "--tls-cert", str(certs.refused.cert), "--tls-key", str(certs.refused.key)]
        w = WriterProcess(ring_name, logs, *args).start()
        try:
            _finish(_produce(ring_name, "r", 100))
            st = wait_for(lambda: (s := _ship_status(ring_name)[0])["errors"] >= 2 and s["pending"] == 100 and s,
                          timeout=30, what="refusals counted")
            assert st["acked"] == 0 and st["pending"] == 100 and not st["connected"]
            assert rs.lines() == []
            assert ALLOWED not in str(certs.refused.cert)
            assert w.stop() == 0, w.stderr()
        finally:
            if w.proc.poll() is None:
                w.kill()
    assert len(read_records(logs)) == 100
