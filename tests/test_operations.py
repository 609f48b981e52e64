"""Operating the writer: access rules, health thresholds, the Prometheus endpoint,
SIGHUP reload under load, check-config and the stats view.

Every test runs a real `logger-system writer` process over a real ring.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

import logger_system
from logger_system import access
from logger_system.access import AccessFilter
from logger_system.errors import ConfigError
from logger_system.pipeline import Batch
from logger_system.record import META_DTYPE

from conftest import read_records, stats, wait_for

ME = pwd.getpwuid(os.getuid()).pw_name


def _config(tmp_path, text: str, plaintext: bool = True):
    cfg = tmp_path / "writer.toml"
    cfg.write_text(("[writer]\nplaintext = true\n" if plaintext else "") + text)
    return cfg


# ---- access rules --------------------------------------------------------------------------

def _batch(rows: list[tuple[str, int, int, bytes]]) -> Batch:
    """A batch as the writer drains it: (logger, pid, level, fields) per record."""
    meta = np.zeros(len(rows), META_DTYPE)
    buf = bytearray()
    for i, (logger, pid, level, fields) in enumerate(rows):
        m = meta[i]
        m["seq"], m["pid"], m["level"] = i, pid, level
        m["logger_off"], m["logger_len"] = len(buf), len(logger)
        buf += logger.encode()
        m["fields_off"], m["fields_len"] = len(buf), len(fields)
        buf += fields
    return Batch(meta=meta, buf=bytes(buf), end=len(rows))


def test_access_rules_first_match_decides_and_denials_are_counted():
    policy = access.parse({
        "default": "deny",
        "rule": [
            {"action": "deny", "logger": "app.audit.*", "max_level": "INFO"},
            {"action": "allow", "logger": ["app", "app.*"], "os_user": [ME]},
            {"action": "allow", "user": "svc-*", "min_level": "WARNING"},
            {"action": "allow", "file": "*/jobs/*.py"},
        ],
    })
    child = subprocess.Popen(["sleep", "30"])  # a live process of our OS user
    me = child.pid
    dead = 2**22 + 12345  # no such process: its OS user is unknown
    f = AccessFilter(policy)
    try:
        rows = _batch([
            ("app.web", me, 20, b""),                               # rule 2
            ("app.audit.login", me, 20, b""),                       # rule 1 denies first
            ("app.audit.login", me, 40, b""),                       # above rule 1's range: rule 2
            ("app.web", dead, 20, b""),                             # unknown user: default deny
            ("other", dead, 30, b'{"user":"svc-billing"}'),         # rule 3
            ("other", dead, 20, b'{"user":"svc-billing"}'),         # below rule 3's level
            ("other", dead, 20, b'{"file":"/srv/jobs/nightly.py","line":3}'),  # rule 4
            ("other", dead, 20, b'{"file":"/srv/web/views.py"}'),   # nothing matches
            ("other", dead, 20, b'not json, "user"'),               # unreadable fields: no user
            ("app.web", os.getpid(), 10, b""),                      # the writer's own records pass
        ])
        b = f(rows)
    finally:
        child.kill()
        child.wait()
    assert b.keep.tolist() == [1, 0, 1, 0, 1, 0, 1, 0, 0, 1]
    assert b.delta.denied == 5
    # records already removed by an earlier stage are not counted twice
    again = f(b)
    assert again.delta.denied == 5


@pytest.mark.parametrize("table, needle", [
    ({"default": "maybe"}, "default"),
    ({"rule": [{"action": "allow"}]}, "at least one of"),
    ({"rule": [{"action": "permit", "logger": "a"}]}, "action"),
    ({"rule": [{"action": "allow", "os_user": "no-such-user-here"}]}, "no OS user named"),
    ({"rule": [{"action": "allow", "min_level": "LOUD"}]}, "unknown log level"),
    ({"rule": [{"action": "allow", "min_level": 40, "max_level": 10}]}, "above max_level"),
    ({"rule": [{"action": "allow", "logger": []}]}, "glob"),
    ({"rule": [{"action": "allow", "loger": "x"}]}, "unknown key"),
    ({"rules": []}, "unknown key"),
])
def test_access_parse_errors_name_the_problem(table, needle):
    with pytest.raises(ConfigError, match=needle):
        access.parse(table)


def _produce(ring: str, name: str, n: int, level: str, fields: dict) -> None:
    log = logger_system.connect(ring, name=name)
    for i in range(n):
        assert log.log(level, "%s %d", name, i, **fields)


@pytest.mark.slow
def test_writer_applies_access_rules_and_counts_denied(ring_name, writer_factory, tmp_path):
    cfg = _config(tmp_path, f'''
[access]
default = "allow"
[[access.rule]]
action = "deny"
logger = "payments.*"
max_level = "INFO"
[[access.rule]]
action = "deny"
user = "intruder*"
[[access.rule]]
action = "allow"
os_user = ["{ME}"]
logger = "app"
''' + '''
[[access.rule]]
action = "deny"
logger = "app"
''')
    w = writer_factory("--config", str(cfg)).start()
    _produce(ring_name, "payments.card", 100, "INFO", {})       # denied
    _produce(ring_name, "payments.card", 10, "ERROR", {})       # allowed: above the range
    _produce(ring_name, "web", 50, "INFO", {"user": "intruder7"})  # denied by the user field
    _produce(ring_name, "web", 20, "INFO", {"user": "alice"})   # allowed by default
    _produce(ring_name, "app", 30, "INFO", {})                  # allowed: our OS user
    wait_for(lambda: stats(ring_name)["written"] + stats(ring_name)["denied"] == 210, what="all drained")
    assert w.stop() == 0, w.stderr()
    s = stats(ring_name)
    assert s["denied"] == 150 and s["written"] == 60 and s["committed"] == 210
    assert s["in_ring"] == 0
    got = sorted((r["logger"], r["level"]) for r in read_records(tmp_path / "logs"))
    assert got == sorted([("payments.card", "ERROR")] * 10 + [("web", "INFO")] * 20 + [("app", "INFO")] * 30)


# ---- thresholds ----------------------------------------------------------------------------

@pytest.mark.slow
def test_error_rate_threshold_logs_a_warning_record(ring_name, writer_factory, tmp_path):
    cfg = _config(tmp_path, '''
[thresholds]
window = "0.5s"
error_rate = 20
drop_rate = 1000000
''')
    w = writer_factory("--config", str(cfg)).start()
    _produce(ring_name, "app", 200, "ERROR", {})
    wait_for(lambda: stats(ring_name)["warnings"] >= 1, timeout=30, what="a health warning")
    wait_for(lambda: any(r["logger"] == "logger_system.writer" for r in read_records(tmp_path / "logs")),
             timeout=30, what="the warning record in the files")
    assert w.stop() == 0, w.stderr()
    warnings = [r for r in read_records(tmp_path / "logs") if r["logger"] == "logger_system.writer"]
    assert warnings[0]["level"] == "WARNING"
    assert warnings[0]["fields"]["threshold"] == "error_rate"
    assert warnings[0]["fields"]["value"] > 20
    assert "error rate" in warnings[0]["msg"]
    assert all(r["fields"]["threshold"] == "error_rate" for r in warnings)  # drops stayed under theirs
    s = stats(ring_name)
    assert s["warnings"] == len(warnings)


@pytest.mark.parametrize("text, needle", [
    ("[thresholds]\nwindow = \"forever\"\n", "window"),
    ("[thresholds]\nerror_rate = -1\n", "error_rate"),
    ("[thresholds]\nerror_rte = 1\n", "unknown key"),
])
def test_threshold_errors_name_the_problem(text, needle, tmp_path):
    from logger_system.config import build

    with pytest.raises(ConfigError, match=needle):
        build(_config(tmp_path, text))


# ---- Prometheus ----------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


@pytest.mark.slow
def test_metrics_endpoint_serves_the_ring_counters(ring_name, writer_factory, tmp_path):
    port = _free_port()
    w = writer_factory("--metrics", str(port)).start()
    wait_for(lambda: _try_scrape(port), timeout=20, what="the metrics endpoint")
    log = logger_system.connect(ring_name, name="m")
    for i in range(500):
        log.info("card 4111 1111 1111 1111 number %d", i)
    wait_for(lambda: stats(ring_name)["written"] == 500, what="records written")
    m = _scrape(port)
    assert m["logger_system_written_total"] == 500
    assert m["logger_system_committed_total"] == 500
    assert m["logger_system_dropped_total"] == 0
    assert m["logger_system_sanitized_total"] == 500
    assert m['logger_system_sanitizer_hits_total{rule="credit_card"}'] == 500
    assert 0 <= m["logger_system_ring_utilization"] <= 1
    assert m["logger_system_writer_resident_bytes"] > 1 << 20
    assert m["logger_system_writer_cpu_seconds_total"] > 0
    assert 0 <= m["logger_system_last_drain_age_seconds"] < 60
    # per producer: at most the top 10 by bytes, however many processes logged
    code = "import sys, logger_system; l = logger_system.connect(sys.argv[1]); [l.info('x') for _ in range(int(sys.argv[2]))]"
    for n in range(1, 13):
        p = subprocess.run([sys.executable, "-c", code, ring_name, str(n * 10)], timeout=60)
        assert p.returncode == 0
    wait_for(lambda: stats(ring_name)["written"] == 500 + sum(n * 10 for n in range(1, 13)), what="written")
    m = _scrape(port)
    series = {k: v for k, v in m.items() if k.startswith("logger_system_producer_committed_total{")}
    assert len(series) == 10 and m["logger_system_producers"] >= 13
    assert sorted(series.values(), reverse=True)[:9] == [500.0, 120.0, 110.0, 100.0, 90.0, 80.0, 70.0, 60.0, 50.0]
    assert f'logger_system_producer_committed_total{{pid="{os.getpid()}"}}' in series
    # loopback only: the port is not open on another address of this machine
    others = [a for a in _addresses() if not a.startswith("127.")]
    for addr in others:
        with socket.socket() as s:
            s.settimeout(2)
            assert s.connect_ex((addr, port)) != 0, f"metrics reachable on {addr}"
    assert w.stop() == 0, w.stderr()


def _try_scrape(port: int) -> bool:
    try:
        _scrape(port)
        return True
    except OSError:
        return False


def _addresses() -> list[str]:
    import psutil

    return [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
            if a.family == socket.AF_INET]


def test_metrics_listen_address_is_checked():
    from logger_system.metrics import parse_listen

    assert parse_listen("9464") == ("127.0.0.1", 9464)
    assert parse_listen("0.0.0.0:80") == ("0.0.0.0", 80)
    assert parse_listen("[::1]:9464") == ("::1", 9464)
    for bad in ("http://x:1", "host:99999", "example.com:80", ""):
        with pytest.raises(ConfigError, match="metrics"):
            parse_listen(bad)


# ---- SIGHUP reload -------------------------------------------------------------------------

def _steady(ring: str, producer: int, n: int, pace: float) -> None:
    log = logger_system.connect(ring, name=f"p{producer}", block_timeout=10)
    for i in range(n):
        if not log.info("token zx9-%d-%d from producer", producer, i, p=producer, i=i):
            os._exit(3)
        if i % 100 == 0:
            time.sleep(pace)
    os._exit(0)


@pytest.mark.slow
def test_sighup_reload_under_load_loses_nothing_and_applies(ring_name, writer_factory, tmp_path):
    cfg = _config(tmp_path, "")
    w = writer_factory("--config", str(cfg)).start()
    ctx = mp.get_context("fork")
    n_prod, per = 3, 6000
    procs = [ctx.Process(target=_steady, args=(ring_name, p, per, 0.004)) for p in range(n_prod)]
    for p in procs:
        p.start()
    wait_for(lambda: stats(ring_name)["written"] > 2000, what="load running")
    # 1: a custom sanitizer rule; 2: an invalid file (kept running as before); 3: the rule removed
    cfg.write_text('[writer]\nplaintext = true\n[sanitize]\n[[sanitize.rules]]\nname = "ztoken"\n'
                   'pattern = "zx9-[0-9]+-[0-9]+"\n')
    w.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: '"reloaded"' in w.stderr(), what="the reload")
    [reloaded] = [e for e in map(json.loads, w.stderr().splitlines()) if e.get("writer") == "reloaded"]
    written_at_reload = reloaded["written"]  # the writer's own count when the new rule took over
    time.sleep(0.3)
    cfg.write_text("[writer]\nplaintext = true\nkeep = 0\n")
    w.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: '"reload_failed"' in w.stderr(), what="the refused reload")
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    wait_for(lambda: stats(ring_name)["written"] == n_prod * per, what="everything written")
    assert w.stop() == 0, w.stderr()
    s = stats(ring_name)
    assert s["committed"] == s["written"] == n_prod * per and s["dropped"] == 0
    records = read_records(tmp_path / "logs")
    seen = sorted((r["fields"]["p"], r["fields"]["i"]) for r in records)
    assert seen == [(p, i) for p in range(n_prod) for i in range(per)]  # every record once
    redacted = [r for r in records if "zx9-" not in r["msg"]]
    assert redacted and all("[REDACTED:ztoken]" in r["msg"] for r in redacted)
    assert len(redacted) == n_prod * per - written_at_reload  # all after the reload, none before
    assert "keep=0" in w.stderr()  # the refused setting was named


# ---- check-config --------------------------------------------------------------------------

def _check(path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "logger_system", "check-config", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_check_config_explains_a_good_file(tmp_path):
    cfg = _config(tmp_path, f'''dir = "{tmp_path / 'logs'}"
rotate_size = "16MiB"
keep = 5
metrics = "9464"
[sanitize]
redact_fields = ["password"]
[[sanitize.rules]]
name = "order_id"
pattern = "ORD-[0-9]+"
[access]
default = "deny"
[[access.rule]]
action = "allow"
logger = "app.*"
[thresholds]
drop_rate = 10
''')
    proc = _check(cfg)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"{cfg}: ok" in out
    assert "1 custom rule" in out and "1 rule(s), default deny" in out
    assert "drop_rate=10.0" in out and "metrics: 9464" in out and "plaintext" in out


@pytest.mark.parametrize("text, needle", [
    ("[writer]\nplaintext = true\nfsync = \"sometimes\"\n", "fsync"),
    ("[writer]\nplaintext = true\n[access]\ndefault = \"nope\"\n", "default"),
    ("[writer]\nplaintext = true\n[sanitize]\n[[sanitize.rules]]\nname = \"x\"\npattern = \"(a\"\n",
     "invalid pattern"),
    ("[writer]\nplaintext = true\n[loging]\n", "unknown table"),
    ("[writer]\nkeep = 3\n", "set key, recipient or plaintext"),
    ("[writer]\nplaintext = true\nmetrics = \"example.com:1\"\n", "not an IP address"),
    ("[writer]\nkey = \"/nonexistent/writer.key\"\n", "writer.key"),
    ("[writer\n", "not valid TOML"),
])
def test_check_config_names_what_is_wrong(text, needle, tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    proc = _check(cfg)
    assert proc.returncode == 2
    assert needle in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


# ---- stats ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_stats_view_shows_counters_rates_and_rule_hits(ring_name, writer_factory, tmp_path):
    w = writer_factory().start()
    log = logger_system.connect(ring_name, name="s")
    for i in range(300):
        log.info("mail me at someone%d@example.com", i)
    wait_for(lambda: stats(ring_name)["written"] == 300, what="records written")
    one = subprocess.run([sys.executable, "-m", "logger_system", "stats", "--ring", ring_name],
                         capture_output=True, text=True, timeout=60)
    assert one.returncode == 0, one.stderr
    out = one.stdout
    assert f"pid {w.proc.pid}" in out and "rss" in out and "last drain" in out
    for key in ("denied", "warnings", "sanitized", "writer_errors"):
        assert key in out
    assert "email 300" in out
    # --watch prints rates from the second view on
    watch = subprocess.Popen([sys.executable, "-m", "logger_system", "stats", "--ring", ring_name,
                              "--watch", "--interval", "0.3"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(2.0)
    finally:
        watch.send_signal(signal.SIGINT)
        text, _ = watch.communicate(timeout=10)
    assert watch.returncode == 0
    assert text.count("ring ") >= 2 and "/s" in text
    assert w.stop() == 0


@pytest.mark.slow
def test_sighup_takes_a_rotated_key_and_new_access_rules(ring_name, writer_factory, tmp_path):
    import shutil

    from logger_system import sealed
    from logger_system.keys import keygen, load_keyring

    key = tmp_path / "writer.key"
    keygen(key)
    old_only = tmp_path / "old.key"
    shutil.copy(key, old_only)
    os.chmod(old_only, 0o600)
    cfg = tmp_path / "writer.toml"
    cfg.write_text(f'[writer]\nkey = "{key}"\n')
    w = writer_factory("--config", str(cfg), plaintext=False).start()
    log, noisy = logger_system.connect(ring_name, name="app"), logger_system.connect(ring_name, name="noisy")
    for i in range(100):
        log.info("before %d", i)
        noisy.info("noise before %d", i)
    wait_for(lambda: stats(ring_name)["written"] == 200, what="first records written")
    keygen(key, rotate=True)
    cfg.write_text(f'[writer]\nkey = "{key}"\n[access]\n[[access.rule]]\naction = "deny"\nlogger = "noisy"\n')
    w.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: '"reloaded"' in w.stderr(), what="the reload")
    for i in range(100):
        log.info("after %d", i)
        noisy.info("noise after %d", i)
    wait_for(lambda: stats(ring_name)["written"] + stats(ring_name)["denied"] == 400, what="all drained")
    assert w.stop() == 0, w.stderr()
    s = stats(ring_name)
    assert s["denied"] == 100 and s["written"] == 300
    logs = tmp_path / "logs"
    records = read_records_sealed(logs, load_keyring(key))
    assert sorted(r["msg"] for r in records) == sorted(
        [f"before {i}" for i in range(100)] + [f"noise before {i}" for i in range(100)]
        + [f"after {i}" for i in range(100)])
    files = sorted(logs.glob("*.lsx"))
    old = load_keyring(old_only)
    sealed.data_key(sealed.parse_header(files[0].read_bytes()), keyring=old)  # the old key opens it
    with pytest.raises(sealed.WrongKeyError):  # the file after the reload needs the new key
        sealed.data_key(sealed.parse_header(files[-1].read_bytes()), keyring=old)
    proc = subprocess.run([sys.executable, "-m", "logger_system", "verify", "--key", str(key), str(logs)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def read_records_sealed(directory, keyring) -> list[dict]:
    from logger_system.files.reader import iter_records

    return list(iter_records([directory], keyring=keyring))


def test_level_filter_keeps_the_writers_own_warnings():
    from logger_system.pipeline.stages import LevelFilter

    b = _batch([("app", 1234, 30, b""), ("logger_system.writer", os.getpid(), 30, b""),
                ("app", 1234, 40, b"")])
    LevelFilter(40, own_pid=os.getpid())(b)
    assert b.keep.tolist() == [0, 1, 1] and b.delta.filtered == 1
