"""Writers ship to `logger-system serve` over ls://: exactly once across kills of both sides.

Real processes: producers, two writers (`--ship ls://...`, sealed with a key), the log server
(sealed with its own key), certificates made by the test, 127.0.0.1 only.  The server is
SIGKILLed twice and one writer once while the producers log; afterwards every record of each
source is in DIR/<client>/ exactly once, `verify` passes there and in the writers' own
directories, and the chain heads the server kept match the writers' files, until a writer's
newest file is removed.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from conftest import WriterProcess, cli, wait_for
from logger_system.ring import unlink
from test_serve import ServeProcess, pki  # noqa: F401  (pki: the fixture)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PER_SOURCE = 12_000
PRODUCER = textwrap.dedent("""
    import sys, time
    import logger_system
    ring, who, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    log = logger_system.connect(ring, name="app." + who, block_timeout=30)
    for i in range(count):
        assert log.info("order %d of %s, card 4111 1111 1111 1111", i, who, p=who, i=i), i
        if i % 200 == 0:
            time.sleep(0.01)
""")


def _cat(directory, key) -> list[dict]:
    r = subprocess.run(cli("cat", "--key", key, directory), capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    return [json.loads(line) for line in r.stdout.splitlines()]


def _verify(directory, key, *extra) -> subprocess.CompletedProcess:
    return subprocess.run(cli("verify", "--key", key, *extra, directory), capture_output=True, text=True,
                          timeout=120)


def _writer(ring, logs, key, port, ca, cert) -> WriterProcess:
    crt, k = cert
    return WriterProcess(ring, logs, "--key", key, "--ship", f"ls://127.0.0.1:{port}", "--tls-ca", ca,
                         "--tls-cert", crt, "--tls-key", k, "--rotate-size", "64KiB", plaintext=False)


def test_two_writers_ship_exactly_once_across_kills_of_the_server_and_a_writer(pki, tmp_path):  # noqa: F811
    key, ca = pki["key"], pki["ca"]
    srv = ServeProcess(pki, tmp_path / "srv").start()
    tag = uuid.uuid4().hex[:8]  # a ring of this run's own (a name from tmp_path comes again)
    rings = {"a": f"lsship-a-{tag}", "b": f"lsship-b-{tag}"}
    logs = {w: tmp_path / f"logs-{w}" for w in rings}
    certs = {"a": pki["a.example"], "b": pki["b.example"]}
    writers = {w: _writer(rings[w], logs[w], key, srv.port, ca, certs[w]).start() for w in rings}
    producers = [subprocess.Popen([sys.executable, "-c", PRODUCER, rings[w], w, str(PER_SOURCE)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for w in rings]
    try:
        server_dir = {"a": srv.dir / "a.example", "b": srv.dir / "b.example"}

        def at_server(w: str) -> int:
            try:
                return len(_cat(server_dir[w], key))
            except AssertionError:
                return 0

        wait_for(lambda: at_server("a") > 2_000, timeout=120, what="records at the server")
        srv.kill()
        time.sleep(0.5)
        srv.restart()
        writers["a"].kill()  # SIGKILL: its spool and files are what the next one starts from
        time.sleep(0.3)
        writers["a"] = _writer(rings["a"], logs["a"], key, srv.port, ca, certs["a"]).start()
        wait_for(lambda: at_server("b") > 6_000, timeout=120, what="more records at the server")
        srv.kill()
        time.sleep(0.5)
        srv.restart()
        for p in producers:
            out, err = p.communicate(timeout=180)
            assert p.returncode == 0, err.decode()[-2000:]
        wait_for(lambda: all(at_server(w) >= PER_SOURCE for w in rings), timeout=180,
                 what="every record at the server")
        for w in rings:
            got = _cat(server_dir[w], key)
            ns = [r["n"] for r in got]
            assert sorted(ns) == list(range(PER_SOURCE)), f"{w}: {len(ns)} records, {len(set(ns))} distinct"
            assert sorted(r["fields"]["i"] for r in got) == list(range(PER_SOURCE))
            assert all(r["host"] == f"{w}.example" and r["logger"] == f"app.{w}" for r in got)
            assert not any("4111 1111 1111 1111" in r["msg"] for r in got)
            v = _verify(server_dir[w], key)
            assert v.returncode == 0, v.stdout + v.stderr
        for w, wp in writers.items():
            assert wp.stop() == 0, wp.stderr()
            local = _cat(logs[w], key)
            assert sorted(r["n"] for r in local) == list(range(PER_SOURCE))
            v = _verify(logs[w], key)
            assert v.returncode == 0, v.stdout + v.stderr
        # the chain heads the server kept, against each writer's directory
        heads = srv.dir / ".serve" / "heads" / "a.example.jsonl"
        v = _verify(logs["a"], key, "--heads", heads)
        assert v.returncode == 0 and " 0 not here" in v.stdout, v.stdout + v.stderr
        # a tail removed on the writer's host after it was shipped: whole files, so that what
        # is left is a finished chain that the directory alone cannot tell from a whole one
        files = sorted(logs["a"].glob("log-*.lsx"))
        assert len(files) > 4
        for f in files[-3:]:
            f.unlink()
        v = _verify(logs["a"], key)
        assert v.returncode == 0, v.stdout + v.stderr
        v = _verify(logs["a"], key, "--heads", heads)
        assert v.returncode == 1 and "removed after it was shipped" in v.stdout, v.stdout + v.stderr
        assert srv.stop() == 0
    finally:
        for p in producers:
            if p.poll() is None:
                p.kill()
        for wp in writers.values():
            if wp.proc and wp.proc.poll() is None:
                wp.kill()
        if srv.proc and srv.proc.poll() is None:
            srv.proc.kill()
        for name in rings.values():
            unlink(name)
