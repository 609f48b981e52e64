"""`logger-system cat` filters: --since/--until, --level, --logger, --pid, --grep, --output.

The Query is tested alone first (pure).  Then every filter runs through the real
`logger-system cat` command over directories written by a real writer process,
plaintext and sealed, fed by real producer processes.  What cat prints is held
against the whole unfiltered output filtered here with plain predicates, so each
test checks the exact records, in order.  Skipping by time is proven on the file
boundary: which files were opened (the reader instrumented in-process), and that
a skipped file's damaged contents do not matter while its place in the chain does.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import WriterProcess, stats, wait_for
from logger_system import connect, sealed
from logger_system.files import reader
from logger_system.errors import ConfigError
from logger_system.keys import load_identity, load_keyring
from logger_system.query import MARGIN_NS, Query, parse_time, plain_start_ns, record_level, record_ns
from logger_system.ring import unlink
from logger_system.rotation import LogFile

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="needs /proc, flock and POSIX shared memory")

ROOT = Path(__file__).resolve().parent.parent
NOW = 1_717_243_200 * 10**9  # 2024-06-01T12:00:00Z
LEVELS = ("debug", "info", "warning", "error", "critical")
LEVELS_UP = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOGGERS = ("app.db", "app.web", "worker.io")
GAP = 5.0  # seconds between the two phases of a data set: more than the margin and a rounded second


def cli(*args, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "logger_system", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, stdin=subprocess.DEVNULL)


def ts_ns(text: str) -> int:
    """A record's ts, parsed independently of the module under test."""
    dt = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return (dt - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1) * 1000


def rfc3339(ns: int) -> str:
    dt = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=ns // 1000)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def jsonl(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


# ---- the Query, pure -------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("2024-06-01T12:00:00Z", NOW),
    ("2024-06-01t12:00:00z", NOW),
    ("2024-06-01 12:00:00Z", NOW),
    ("2024-06-01T14:00:00+02:00", NOW),
    ("2024-06-01T07:30:00-04:30", NOW),
    ("2024-06-01T12:00:00.5Z", NOW + 500_000_000),
    ("2024-06-01T12:00:00.000001Z", NOW + 1000),
    ("2024-06-01T12:00:00.123456789Z", NOW + 123_456_789),
    ("2024-06-01", NOW - 12 * 3600 * 10**9),
    ("  2024-06-01T12:00:00Z ", NOW),
    ("90s", NOW - 90 * 10**9),
    ("10m", NOW - 600 * 10**9),
    ("2h", NOW - 7200 * 10**9),
    ("3d", NOW - 3 * 86400 * 10**9),
    ("1h30m", NOW - 5400 * 10**9),
    ("-10m", NOW - 600 * 10**9),
    ("500ms", NOW - 500_000_000),
    ("0s", NOW),
])
def test_parse_time_accepts(text, expected):
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text, says", [
    ("", "invalid time"),
    ("yesterday", "invalid time"),
    ("10", "invalid time"),  # a bare number: seconds? minutes? refused
    ("10 minutes", "invalid time"),
    ("2024-06-01T12:00:00", "no UTC offset"),
    ("2024-06-01T12:00", "invalid time"),
    ("2024-13-01", "not a valid date"),
    ("2024-02-30T00:00:00Z", "not a valid date"),
    ("2024-06-01T24:00:00Z", "not a valid date"),
    ("2024-06-01T23:59:60Z", "not a valid date"),
    ("2024-06-01T12:00:00+24:00", "not a valid date"),
    ("2024-06-01T12:00:00.1234567890Z", "invalid time"),
    ("1" * 100 + "s", "invalid time"),
])
def test_parse_time_refuses_with_the_flag_named(text, says):
    with pytest.raises(ConfigError, match=says) as exc:
        parse_time(text, NOW, "--since")
    assert str(exc.value).startswith("--since: ")


@given(st.integers(min_value=0, max_value=253402300799 * 10**6))
@settings(max_examples=300, deadline=None)
def test_record_ns_reads_what_the_writer_writes(us):
    ns = us * 1000
    assert record_ns(rfc3339(ns)) == ns
    assert parse_time(rfc3339(ns), 0) == ns


@given(st.integers(min_value=-62135596800 * 10**6, max_value=253402300799 * 10**6 + 999999),
       st.integers(min_value=-10**20, max_value=10**20), st.booleans())
@settings(max_examples=500, deadline=None)
def test_the_fast_text_comparison_agrees_with_the_time(us, bound, offset_form):
    """Records in the writer's form are compared as text, others parsed: the same answer, to
    the nanosecond of the bound, even for bounds outside the years a ts can name."""
    ts = rfc3339(us * 1000) if us >= 0 else None
    if ts is None:
        dt = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=us)
        ts = f"{dt.year:04d}-{dt:%m-%dT%H:%M:%S}.{dt.microsecond:06d}Z"
    if offset_form:  # the same instant, not in the writer's form
        ts = ts[:-1] + "+00:00"
    rec = _rec(ts=ts)
    assert Query(since_ns=bound).matches(rec) == (us * 1000 >= bound)
    assert Query(until_ns=bound).matches(rec) == (us * 1000 <= bound)


def test_record_ns_and_level_take_other_forms_or_none():
    assert record_ns("2024-06-01T14:00:00+02:00") == NOW
    assert record_ns("2024-06-01T12:00:00Z") == NOW
    for bad in (None, 17, "", "2024-06-01", "2024-06-01T12:00:00", "2024-06-01T12:00:00.abcdefZ",
                "2024-99-01T12:00:00.000000Z", "x" * 27):
        assert record_ns(bad) is None, bad
    assert [record_level(n) for n in ("NOTSET", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")] == \
        [0, 10, 20, 30, 40, 50]
    assert record_level("Level 25") == 25
    assert record_level(35) == 35
    for bad in (None, True, "info", "Level x", "Level 99999999999999999", [], "LOUD"):
        assert record_level(bad) is None, bad


def _rec(**kw) -> dict:
    rec = {"seq": 1, "ts": "2024-06-01T12:00:00.000000Z", "level": "INFO", "pid": 100,
           "logger": "app.db", "msg": "hello world"}
    rec.update(kw)
    return rec


def test_an_empty_query_matches_everything_and_is_inactive():
    q = Query.build(now_ns=NOW)
    assert not q.active
    assert q.matches(_rec(ts="garbage", level="LOUD", pid="x", logger=None, msg=None))
    assert q.may_hold(None) and q.may_hold(0)
    assert not q.over(NOW * 2)


def test_time_window_is_inclusive_to_the_microsecond():
    q = Query.build(since="2024-06-01T12:00:00.000010Z", until="2024-06-01T12:00:00.000020Z", now_ns=NOW)
    at = lambda us: _rec(ts=f"2024-06-01T12:00:00.{us:06d}Z")  # noqa: E731
    assert [us for us in range(0, 31) if q.matches(at(us))] == list(range(10, 21))
    assert not q.matches(_rec(ts="not a time"))
    assert not q.matches(_rec(ts=None))
    assert q.matches(_rec(ts="2024-06-01T14:00:00.000015+02:00"))  # another writer's offset form
    point = Query.build(since="2024-06-01T12:00:00Z", until="2024-06-01T12:00:00Z", now_ns=NOW)
    assert point.matches(_rec()) and not point.matches(_rec(ts="2024-06-01T12:00:00.000001Z"))


def test_level_is_this_level_and_above():
    names = ("NOTSET", *LEVELS_UP)
    for given_level, lowest in (("warning", 2), ("WARN", 2), ("Error", 3), ("10", 0), ("35", 3),
                                ("critical", 4), ("0", -1)):
        q = Query.build(level=given_level, now_ns=NOW)
        got = {n for n in names if q.matches(_rec(level=n))}
        assert got == set(names[lowest + 1:]), given_level
    q = Query.build(level="25", now_ns=NOW)
    assert q.matches(_rec(level="Level 25")) and not q.matches(_rec(level="Level 24"))
    assert not q.matches(_rec(level="LOUD"))


def test_logger_globs_are_case_sensitive_and_any_may_match():
    q = Query.build(loggers=["app.*", "worker.?o"], now_ns=NOW)
    assert [n for n in ("app.db", "app.web.x", "App.db", "app", "worker.io", "worker.iox", "xapp.db")
            if q.matches(_rec(logger=n))] == ["app.db", "app.web.x", "worker.io"]
    assert not q.matches(_rec(logger=None))
    exact = Query.build(loggers=["app.db"], now_ns=NOW)
    assert exact.matches(_rec()) and not exact.matches(_rec(logger="app.dbx"))
    assert Query.build(loggers=["[ab]pp.*"], now_ns=NOW).matches(_rec(logger="bpp.x"))


def test_pids_any_may_match():
    q = Query.build(pids=["100", 200, " 300 "], now_ns=NOW)
    assert [p for p in (100, 200, 300, 400) if q.matches(_rec(pid=p))] == [100, 200, 300]
    for odd in ("100", True, [100], None, 100.0):
        assert not q.matches(_rec(pid=odd)), odd
    for bad in ("0", "-1", "abc", "1e3", "", str(2**32), "9" * 30):
        with pytest.raises(ConfigError, match="--pid"):
            Query.build(pids=[bad], now_ns=NOW)


def test_grep_is_re2_searched_in_msg():
    q = Query.build(grep=r"fail(ed|ure)\b", now_ns=NOW)
    assert q.matches(_rec(msg="payment failed: declined"))
    assert not q.matches(_rec(msg="payment failedx"))
    assert not q.matches(_rec(msg="ok", fields={"note": "failed"}))  # msg only
    assert not q.matches(_rec(msg=None))
    assert Query.build(grep="(?i)PAYMENT", now_ns=NOW).matches(_rec(msg="payment"))
    assert Query.build(grep="^caf\u00e9+$", now_ns=NOW).matches(_rec(msg="caf\u00e9\u00e9"))
    assert Query.build(grep="x", now_ns=NOW).matches(_rec(msg="\ud800x"))  # a lone surrogate from JSON
    for bad in ("a(", "(?<=a)b", r"(a)\1", "[z-a]"):
        with pytest.raises(ConfigError, match="--grep") as exc:
            Query.build(grep=bad, now_ns=NOW)
        assert repr(bad) in str(exc.value)


def test_filters_combine_with_and():
    q = Query.build(since="2024-06-01T11:00:00Z", level="warning", loggers=["app.*"], pids=["7"],
                    grep="disk", now_ns=NOW)
    good = _rec(level="ERROR", pid=7, logger="app.io", msg="disk full")
    assert q.active and q.matches(good)
    for change in ({"level": "INFO"}, {"pid": 8}, {"logger": "web"}, {"msg": "net down"},
                   {"ts": "2024-06-01T10:59:59.999999Z"}):
        assert not q.matches({**good, **change}), change


def test_bad_queries_are_refused():
    with pytest.raises(ConfigError, match="--since is later than --until"):
        Query.build(since="1h", until="2h", now_ns=NOW)
    with pytest.raises(ConfigError, match="--until: invalid time"):
        Query.build(until="soon", now_ns=NOW)
    with pytest.raises(ConfigError, match="--level: unknown log level 'loud'"):
        Query.build(level="loud", now_ns=NOW)
    with pytest.raises(ConfigError, match="--level"):
        Query.build(level="256", now_ns=NOW)
    q = Query.build(now_ns=NOW)
    with pytest.raises(AttributeError):
        q.since_ns = 5  # frozen


def test_may_hold_only_rules_out_a_file_whose_successor_started_before_since_by_the_margin():
    since = NOW
    q = Query(since_ns=since)
    assert q.may_hold(None)  # the newest file: always read
    assert q.may_hold(since)
    assert q.may_hold(since - MARGIN_NS)  # a record may be up to the margin past the next start
    assert not q.may_hold(since - MARGIN_NS - 1)
    assert not q.may_hold(0)
    # --until never rules a file out: a file's records may be older than it by any amount
    u = Query(until_ns=since)
    assert all(u.may_hold(x) for x in (None, 0, since, since * 2))


def test_over_is_past_until_and_the_margin():
    q = Query(until_ns=NOW)
    assert not q.over(NOW) and not q.over(NOW + MARGIN_NS)
    assert q.over(NOW + MARGIN_NS + 1)


def test_plain_start_is_the_end_of_the_named_second():
    assert plain_start_ns("20240601T120000Z") == NOW + 10**9
    assert plain_start_ns("20241301T120000Z") is None
    assert plain_start_ns("nonsense") is None


# ---- data sets written by real processes -----------------------------------------

def _produce(ring: str, phase: str, child: int, n: int) -> None:
    logs = {name: connect(ring, name=name, block_timeout=5.0) for name in LOGGERS}
    for i in range(n):
        log = logs[LOGGERS[i % 3]]
        level = LEVELS[(i + child) % 5]
        msg = ("payment failed: card declined for u%d" if i % 10 == 0 else
               "caf\u00e9 order %d served" if i % 10 == 5 else "request %d ok") % i
        if not log.log(level, msg, phase=phase, child=child, i=i):
            os._exit(3)
    os._exit(0)


@dataclass
class DataSet:
    mode: str
    dir: Path
    keys: tuple[str, ...]  # cat's key options
    pids: dict[tuple[str, int], int]  # (phase, child) -> pid
    files: list[Path]
    by_file: list[list[dict]]  # records of each file, read here

    @property
    def all(self) -> list[dict]:
        return [r for recs in self.by_file for r in recs]

    def cat(self, *args) -> subprocess.CompletedProcess:
        return cli("cat", *self.keys, *args, self.dir)

    def reader_keys(self) -> dict:
        if self.mode == "key":
            return {"keyring": load_keyring(Path(self.keys[1]))}
        if self.mode == "identity":
            return {"identity": load_identity(Path(self.keys[1]))}
        return {}

    def phase_files(self, phase: str) -> list[int]:
        return [i for i, recs in enumerate(self.by_file) if recs and recs[0]["fields"]["phase"] == phase]


PER_CHILD = 40


def _make_dataset(mode: str, base: Path) -> DataSet:
    logs = base / "logs"
    ring = f"lstest-{uuid.uuid4().hex[:12]}"
    if mode == "plaintext":
        seal, keys = (), ()
    elif mode == "key":
        key = base / "writer.key"
        assert cli("keygen", "--out", key).returncode == 0
        seal, keys = ("--key", key), ("--key", str(key))
    else:
        ident = base / "reader.identity"
        made = cli("keygen", "--x25519", "--out", ident)
        assert made.returncode == 0, made.stderr
        seal, keys = ("--recipient", made.stdout.strip()), ("--identity", str(ident))
    w = WriterProcess(ring, logs, *seal, "--rotate-size", "2KB", "--rotate-interval", "1s",
                      plaintext=mode == "plaintext")
    ctx = mp.get_context("fork")
    pids: dict[tuple[str, int], int] = {}
    try:
        w.start()
        for k, phase in enumerate(("early", "late")):
            if k:
                time.sleep(GAP)  # the last early file is closed by --rotate-interval meanwhile
            procs = [ctx.Process(target=_produce, args=(ring, phase, c, PER_CHILD)) for c in (0, 1)]
            for c, p in enumerate(procs):
                p.start()
                pids[(phase, c)] = p.pid
            for p in procs:
                p.join(30)
                assert p.exitcode == 0, f"producer exited {p.exitcode}"
            n = 2 * PER_CHILD * (k + 1)
            wait_for(lambda: stats(ring)["written"] >= n and stats(ring)["used_bytes"] == 0,
                     timeout=30, what=f"{n} records written")
        time.sleep(1.5)
        assert w.stop() == 0, w.stderr()
    finally:
        if w.proc is not None and w.proc.poll() is None:
            w.kill()
        unlink(ring)
    files = [logs / f.name for f in sorted(LogFile.parse(p.name) for p in logs.iterdir())]
    ds = DataSet(mode, logs, keys, pids, files, [])
    ds.by_file = [list(reader.iter_records([f], **ds.reader_keys())) for f in files]
    assert len(ds.all) == 4 * PER_CHILD
    early, late = ds.phase_files("early"), ds.phase_files("late")
    # the layout the tests rely on: several early files, then a file boundary between the phases
    assert len(early) >= 3 and late and early[-1] + 1 == late[0], [len(r) for r in ds.by_file]
    assert all(r["fields"]["phase"] == "early" for i in early for r in ds.by_file[i])
    assert all(r["fields"]["phase"] == "late" for i in late for r in ds.by_file[i])
    return ds


_made: dict[str, DataSet] = {}


def dataset(mode: str, factory) -> DataSet:
    if mode not in _made:
        _made[mode] = _make_dataset(mode, factory.mktemp(f"catfilter-{mode}"))
    return _made[mode]


@pytest.fixture(scope="module", params=["plaintext", "key"])
def data(request, tmp_path_factory) -> DataSet:
    return dataset(request.param, tmp_path_factory)


def assert_cat(ds: DataSet, args, expected: list[dict]) -> list[dict]:
    r = ds.cat(*args)
    assert r.returncode == 0, r.stderr
    got = jsonl(r.stdout)
    assert got == expected, f"cat {' '.join(map(str, args))}: {len(got)} records, expected {len(expected)}"
    return got


# ---- time window at a file boundary -------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("mode", ["plaintext", "key", "identity"])
def test_time_window_edges_exactly_at_a_file_boundary(mode, tmp_path_factory):
    ds = dataset(mode, tmp_path_factory)
    everything = ds.all
    assert_cat(ds, (), everything)
    last_early_file, first_late_file = ds.phase_files("early")[-1], ds.phase_files("late")[0]
    last_early = ds.by_file[last_early_file][-1]
    first_late = ds.by_file[first_late_file][0]
    t_last, t_first = ts_ns(last_early["ts"]), ts_ns(first_late["ts"])
    assert t_first - t_last > GAP * 1e9 * 0.8

    def window(since=None, until=None):
        return [r for r in everything
                if (since is None or ts_ns(r["ts"]) >= since) and (until is None or ts_ns(r["ts"]) <= until)]

    early = [r for r in everything if r["fields"]["phase"] == "early"]
    late = [r for r in everything if r["fields"]["phase"] == "late"]
    # since at the first record after the rotation: exactly the later phase
    assert window(t_first) == late
    assert_cat(ds, ("--since", rfc3339(t_first)), late)
    # since at the last record before it: that record is in (inclusive)
    assert last_early in window(t_last)
    assert_cat(ds, ("--since", rfc3339(t_last)), window(t_last))
    assert_cat(ds, ("--since", rfc3339(t_last + 1000)), window(t_last + 1000))
    # until at the last record before the boundary: exactly the earlier phase
    assert window(until=t_last) == early
    assert_cat(ds, ("--until", rfc3339(t_last)), early)
    assert_cat(ds, ("--until", rfc3339(t_first - 1000)), early)
    assert_cat(ds, ("--until", rfc3339(t_first)), window(until=t_first))
    # since at the later file's start as its name gives it, and as its header gives it
    stamp = LogFile.parse(ds.files[first_late_file].name).stamp
    named = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    assert_cat(ds, ("--since", named.strftime("%Y-%m-%dT%H:%M:%SZ")), window(int(named.timestamp()) * 10**9))
    if mode != "plaintext":
        created = sealed.parse_header(ds.files[first_late_file].read_bytes()).created_ns
        assert_cat(ds, ("--since", rfc3339(created)), window(created // 1000 * 1000))
    # a window of one record, and an offset form of the same instant
    mid = everything[len(everything) // 3]
    t_mid = ts_ns(mid["ts"])
    assert_cat(ds, ("--since", rfc3339(t_mid), "--until", rfc3339(t_mid)), window(t_mid, t_mid))
    plus2 = (datetime.fromtimestamp(t_mid // 10**9, timezone(timedelta(hours=2)))
             .strftime("%Y-%m-%dT%H:%M:%S") + f".{t_mid // 1000 % 10**6:06d}+02:00")
    assert_cat(ds, ("--since", plus2, "--until", plus2), window(t_mid, t_mid))
    # relative: everything is younger than a day, none is from the future
    assert_cat(ds, ("--since", "1d"), everything)
    assert_cat(ds, ("--since", "0s"), [])
    assert_cat(ds, ("--until", "0s"), everything)


def _opened(monkeypatch) -> list[str]:
    """Names of the files whose records the reader parses, and of sealed files it decrypts."""
    seen: list[str] = []
    checked, open_chunks = reader.check_line, sealed.open_chunks

    def counting_checked(line, path, *a, **kw):
        if ("read", Path(path).name) not in seen:
            seen.append(("read", Path(path).name))
        return checked(line, path, *a, **kw)

    def counting_open_chunks(data, scan, key, where="file"):
        seen.append(("decrypt", Path(where).name))
        return open_chunks(data, scan, key, where)

    monkeypatch.setattr(reader, "check_line", counting_checked)
    monkeypatch.setattr(sealed, "open_chunks", counting_open_chunks)
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["plaintext", "key", "identity"])
def test_since_opens_no_file_wholly_before_it(mode, tmp_path_factory, monkeypatch):
    """Early files whose successor started more than the margin before --since are not
    read (plaintext) or decrypted (sealed); the last early file (its successor is the first
    late one) and all late files are."""
    ds = dataset(mode, tmp_path_factory)
    early, late = ds.phase_files("early"), ds.phase_files("late")
    since = ts_ns(ds.by_file[late[0]][0]["ts"])
    seen = _opened(monkeypatch)
    q = Query.build(since=rfc3339(since), now_ns=time.time_ns())
    got = [json.loads(line) for line in reader.iter_lines([ds.dir], query=q, **ds.reader_keys())]
    assert got == [r for r in ds.all if ts_ns(r["ts"]) >= since]
    names = {name for _, name in seen}
    skipped = {ds.files[i].name for i in early[:-1]}
    assert not names & skipped, f"opened {sorted(names & skipped)}"
    assert names == {ds.files[i].name for i in [early[-1], *late]}
    if mode != "plaintext":
        assert {n for what, n in seen if what == "decrypt"} == names
    # without --since every file is opened
    seen.clear()
    assert len(list(reader.iter_lines([ds.dir], **ds.reader_keys()))) == len(ds.all)
    assert {n for _, n in seen} == {f.name for f in ds.files}


@pytest.mark.slow
def test_follow_with_since_opens_no_file_wholly_before_it_and_until_ends_it(tmp_path_factory, monkeypatch):
    ds = dataset("key", tmp_path_factory)
    early, late = ds.phase_files("early"), ds.phase_files("late")
    since = ts_ns(ds.by_file[late[0]][0]["ts"])
    seen = _opened(monkeypatch)
    # --until in the past: one pass over the files, then follow ends by itself
    q = Query.build(since=rfc3339(since), until="1s", now_ns=time.time_ns())
    t0 = time.monotonic()
    got = [json.loads(line) for line in reader.follow(ds.dir, query=q, interval=0.05, **ds.reader_keys())]
    assert time.monotonic() - t0 < 10
    assert got == [r for r in ds.all if since <= ts_ns(r["ts"]) <= q.until_ns]
    assert got and got[-1] == ds.all[-1]
    assert not {n for _, n in seen} & {ds.files[i].name for i in early[:-1]}


# ---- proofs through the command: skipped contents do not matter, the chain does ------

@pytest.mark.slow
@pytest.mark.parametrize("mode", ["plaintext", "key"])
def test_a_skipped_files_contents_are_never_looked_at(mode, tmp_path_factory, tmp_path):
    """Damage that only reading (plaintext) or decrypting (sealed) a file can reveal, in a
    file wholly before --since: cat --since exits 0 with the right records, plain cat and
    verify report the damage.  (cat --since vouches for the records it shows and for the
    chain; a skipped file's chunks are for `verify`.)"""
    ds = dataset(mode, tmp_path_factory)
    logs = tmp_path / "logs"
    shutil.copytree(ds.dir, logs)
    copy = DataSet(ds.mode, logs, ds.keys, ds.pids, [logs / f.name for f in ds.files], ds.by_file)
    early, late = ds.phase_files("early"), ds.phase_files("late")
    victim = copy.files[early[0]]
    if mode == "plaintext":
        victim.write_bytes(b"\x00not json at all\n" * 20)
    else:
        data = bytearray(victim.read_bytes())
        scan = sealed.scan_chunks(bytes(data))
        assert len(scan.chunks) >= 2 and scan.final  # chunk 0 is not the last: no digest covers it
        data[scan.chunks[0].start + sealed._CHUNK.size + 5] ^= 0x01  # in the ciphertext
        victim.write_bytes(bytes(data))
    since = rfc3339(ts_ns(ds.by_file[late[0]][0]["ts"]))
    assert_cat(copy, ("--since", since), [r for r in ds.all if r["fields"]["phase"] == "late"])
    whole = copy.cat()
    assert whole.returncode == 1
    assert victim.name in whole.stderr
    assert ("tampered at chunk 0" if mode == "key" else "is not a JSON record") in whole.stderr
    if mode == "key":
        v = cli("verify", *copy.keys, logs)
        assert v.returncode == 1 and "tampered at chunk 0" in v.stdout


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["removed", "truncated"])
def test_skipping_keeps_the_chain_checks(damage, tmp_path_factory, tmp_path):
    """A sealed file removed from the middle, or cut short, before --since: the same error
    as without --since."""
    ds = dataset("key", tmp_path_factory)
    logs = tmp_path / "logs"
    shutil.copytree(ds.dir, logs)
    copy = DataSet(ds.mode, logs, ds.keys, ds.pids, [logs / f.name for f in ds.files], ds.by_file)
    early, late = ds.phase_files("early"), ds.phase_files("late")
    victim = copy.files[early[1]]
    if damage == "removed":
        victim.unlink()
        says = f"predecessor missing (file id"
    else:
        data = victim.read_bytes()
        scan = sealed.scan_chunks(data)
        victim.write_bytes(data[:scan.chunks[-1].start])  # without its final chunk
        says = f"{victim.name}: truncated"
    since = rfc3339(ts_ns(ds.by_file[late[0]][0]["ts"]))
    for args in ((), ("--since", since)):
        r = copy.cat(*args)
        assert r.returncode == 1, (args, r.stdout[-300:])
        assert says in r.stderr, (args, r.stderr)


# ---- level, logger, pid, grep, combined, output ------------------------------------

@pytest.mark.slow
def test_level(data):
    for given_level, keep in (("warning", {"WARNING", "ERROR", "CRITICAL"}), ("ERROR", {"ERROR", "CRITICAL"}),
                              ("warn", {"WARNING", "ERROR", "CRITICAL"}), ("40", {"ERROR", "CRITICAL"}),
                              ("debug", set(LEVELS_UP))):
        expected = [r for r in data.all if r["level"] in keep]
        assert expected
        assert_cat(data, ("--level", given_level), expected)


@pytest.mark.slow
def test_logger_glob(data):
    assert_cat(data, ("--logger", "app.*"), [r for r in data.all if r["logger"].startswith("app.")])
    assert_cat(data, ("--logger", "app.db"), [r for r in data.all if r["logger"] == "app.db"])
    assert_cat(data, ("--logger", "app.db", "--logger", "worker.*"),
               [r for r in data.all if r["logger"] in ("app.db", "worker.io")])
    assert_cat(data, ("--logger", "APP.*"), [])
    assert_cat(data, ("--logger", "app"), [])


@pytest.mark.slow
def test_pid_of_real_child_processes(data):
    p0, p1 = data.pids[("early", 0)], data.pids[("late", 1)]
    assert len(set(data.pids.values())) == 4
    assert {r["pid"] for r in data.all} == set(data.pids.values())
    one = assert_cat(data, ("--pid", p0), [r for r in data.all if r["pid"] == p0])
    assert len(one) == PER_CHILD and all(r["fields"]["child"] == 0 for r in one)
    both = assert_cat(data, ("--pid", p0, "--pid", p1), [r for r in data.all if r["pid"] in (p0, p1)])
    assert len(both) == 2 * PER_CHILD
    assert_cat(data, ("--pid", 1), [])


@pytest.mark.slow
def test_grep_re2(data):
    assert_cat(data, ("--grep", r"fail(ed|ure)"), [r for r in data.all if "failed" in r["msg"]])
    assert_cat(data, ("--grep", "(?i)^PAYMENT"), [r for r in data.all if r["msg"].startswith("payment")])
    assert_cat(data, ("--grep", "caf\u00e9 order [0-9]+5 "),
               [r for r in data.all if r["msg"].startswith("caf\u00e9 order") and r["fields"]["i"] > 10])
    assert_cat(data, ("--grep", "u10$"), [r for r in data.all if r["msg"].endswith("u10")])
    assert_cat(data, ("--grep", "declined"), [r for r in data.all if "declined" in r["msg"]])
    bad = data.cat("--grep", "fail(ed")
    assert bad.returncode == 2 and bad.stdout == ""
    assert "--grep: invalid pattern 'fail(ed'" in bad.stderr


@pytest.mark.slow
def test_filters_combined(data):
    late0 = data.pids[("late", 0)]
    since = ts_ns(data.by_file[data.phase_files("late")[0]][0]["ts"])
    args = ("--since", rfc3339(since), "--level", "info", "--logger", "app.*", "--logger", "worker.io",
            "--pid", late0, "--pid", data.pids[("early", 1)], "--grep", "ok$|served")
    expected = [r for r in data.all if ts_ns(r["ts"]) >= since and r["level"] != "DEBUG"
                and r["pid"] in (late0, data.pids[("early", 1)])
                and ("ok" in r["msg"] or "served" in r["msg"])]
    assert expected and all(r["pid"] == late0 for r in expected)
    assert_cat(data, args, expected)
    # and in text form, the same records
    r = data.cat(*args, "--output", "text")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [reader.render_text(x) for x in expected]


@pytest.mark.slow
def test_output_json_and_text(data):
    everything = data.all
    text = [reader.render_text(r) for r in everything]
    for args in (("--output", "text"), ("--text",), ("-o", "text"), ("--text", "--output", "text")):
        r = data.cat(*args)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == text, args
    for args in ((), ("--output", "json")):
        assert_cat(data, args, everything)
    r = data.cat("--text", "--output", "json")
    assert r.returncode == 2 and "--text contradicts --output json" in r.stderr


# ---- bad input ------------------------------------------------------------------------

@pytest.mark.parametrize("args, says", [
    (("--since", "yesterday"), "--since: invalid time 'yesterday'"),
    (("--until", "2024-13-01"), "--until: '2024-13-01' is not a valid date"),
    (("--since", "2024-05-01T10:00:00"), "has no UTC offset"),
    (("--since", "1h", "--until", "2h"), "--since is later than --until"),
    (("--level", "loud"), "--level: unknown log level 'loud'"),
    (("--pid", "abc"), "--pid: 'abc' is not a process id"),
    (("--grep", "(unclosed"), "--grep: invalid pattern '(unclosed'"),
    (("--grep", "(?<=x)y"), "--grep: invalid pattern '(?<=x)y'"),
    (("--text", "--output", "json"), "contradicts"),
    (("--output", "yaml"), "invalid choice"),
])
def test_bad_input_is_exit_2_with_a_clear_message(args, says, tmp_path):
    (tmp_path / "logs").mkdir()
    r = cli("cat", *args, tmp_path / "logs")
    assert r.returncode == 2, r
    assert says in r.stderr
    assert r.stdout == ""
    f = cli("cat", "--follow", *args, tmp_path / "logs", timeout=30)
    assert f.returncode == 2 and says in f.stderr


# ---- --follow with filters -------------------------------------------------------------

class Follower:
    def __init__(self, *args) -> None:
        cmd = [sys.executable, "-m", "logger_system", "cat", "--follow", *map(str, args)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, cwd=ROOT)
        self.lines: queue.Queue = queue.Queue()
        self.got: list[dict] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def read(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.got) < n:
            left = deadline - time.monotonic()
            assert left > 0, f"cat --follow printed {len(self.got)} of {n} records"
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            assert line is not None, f"cat --follow exited: {self.proc.stderr.read().decode()}"
            self.got.append(json.loads(line))

    def drain(self, settle: float) -> None:
        time.sleep(settle)
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return
            if line is not None:
                self.got.append(json.loads(line))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc.stdout.close()
        self.proc.stderr.close()


def _sealing(mode: str, tmp_path: Path) -> tuple[tuple, tuple]:
    if mode == "plaintext":
        return (), ()
    key = tmp_path / "writer.key"
    assert cli("keygen", "--out", key).returncode == 0
    return ("--key", key), ("--key", key)


def _log(ring: str, tag: str, start: int, stop: int) -> None:
    logs = {name: connect(ring, name=name) for name in LOGGERS}
    for i in range(start, stop):
        assert logs[LOGGERS[i % 3]].log(LEVELS[i % 5], "%s %d", tag, i, tag=tag, i=i), "dropped"


def _wait_written(ring: str, n: int) -> None:
    wait_for(lambda: stats(ring)["written"] >= n and stats(ring)["used_bytes"] == 0, timeout=30,
             what=f"{n} records written")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["plaintext", "key"])
def test_follow_prints_only_matching_records_as_they_are_written(mode, ring_name, writer_factory, tmp_path):
    seal, keys = _sealing(mode, tmp_path)
    logs = tmp_path / "logs"
    w = writer_factory(*seal, "--rotate-size", "2KB", plaintext=mode == "plaintext").start()
    _log(ring_name, "old", 0, 30)
    _wait_written(ring_name, 30)
    time.sleep(0.01)
    since = rfc3339(time.time_ns())
    f = Follower(*keys, "--since", since, "--level", "warning", "--logger", "app.*",
                 "--grep", "new [0-9]*[02468]$", logs)

    def wanted(r):
        return (r["fields"]["tag"] == "new" and r["level"] in ("WARNING", "ERROR", "CRITICAL")
                and r["logger"].startswith("app.") and r["fields"]["i"] % 2 == 0)
    try:
        time.sleep(0.5)  # it is following
        for k in range(4):  # new records, in new chunks and new files
            _log(ring_name, "new", k * 20, k * 20 + 20)
            time.sleep(0.2)
        _wait_written(ring_name, 110)
        assert w.stop() == 0
        everything = jsonl(cli("cat", *keys, logs).stdout)
        expected = [r for r in everything if wanted(r)]
        assert len(expected) >= 8
        assert len({LogFile.parse(p.name) for p in logs.iterdir()}) >= 4
        f.read(len(expected), 20)
        f.drain(0.6)
        assert f.proc.poll() is None, "cat --follow stopped by itself"
        assert f.got == expected
    finally:
        f.stop()


@pytest.mark.slow
def test_follow_until_stops_once_past_it(ring_name, writer_factory, tmp_path):
    logs = tmp_path / "logs"
    writer_factory("--rotate-size", "2KB").start()
    until_ns = time.time_ns() + 1_500_000_000
    f = Follower("--until", rfc3339(until_ns), "--logger", "app.*", logs)
    try:
        _log(ring_name, "before", 0, 30)
        time.sleep(max(0.0, (until_ns - time.time_ns()) / 1e9) + 0.2)
        _log(ring_name, "after", 0, 30)
        _wait_written(ring_name, 60)
        rc = f.proc.wait(timeout=(MARGIN_NS / 1e9) + 10)
        assert rc == 0, f.proc.stderr.read().decode()
        f.drain(0)
        everything = jsonl(cli("cat", logs).stdout)
        expected = [r for r in everything
                    if r["fields"]["tag"] == "before" and r["logger"].startswith("app.")]
        assert len(expected) == 20
        assert all(ts_ns(r["ts"]) <= until_ns for r in expected)
        assert f.got == expected
    finally:
        f.stop()
