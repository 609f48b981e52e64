"""Process faults beyond single kills: chaos rounds, fork storms, a removed ring, clock steps.

Each producer process records what every call did in shared memory before and
after the call (status CALLED, then TRUE or FALSE), so a process killed in the
middle of a call leaves at most one call whose outcome is unknown: it may be
committed, dropped, abandoned, or may never have reached the ring.  The files
and the ring's counters are checked against those reports.

Seeds: LS_TEST_SEED fixes the random choices; without it a seed is drawn and
named in every assertion message, so a failing run can be repeated.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from conftest import read_records, stats, wait_for
from logger_system import connect
from logger_system.ring import Ring
from logger_system.rotation import LogFile
from logger_system.files.chain import log_files

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="needs /proc, fork and POSIX shared memory")

CALLED, TRUE, FALSE = 1, 2, 3
CHAOS_SECONDS = float(os.environ.get("LS_CHAOS_SECONDS", "20"))
CHAOS_CAPACITY = 1 << 20  # small enough to fill while no writer runs
PER_LABEL = 40_000  # calls one chaos producer may make
MAX_LABELS = 256


def _seed() -> int:
    env = os.environ.get("LS_TEST_SEED")
    return int(env) if env else random.SystemRandom().randrange(1_000_000)


def _cli() -> list[str]:
    exe = shutil.which("logger-system")
    return [exe] if exe else [sys.executable, "-m", "logger_system"]


@pytest.fixture
def procs():
    """multiprocessing children and raw fork pids of a test; killed and reaped at teardown."""
    started: list = []
    yield started
    for c in started:
        if isinstance(c, int):
            for step in (lambda: os.kill(c, signal.SIGKILL), lambda: os.waitpid(c, 0)):
                try:
                    step()
                except (ProcessLookupError, ChildProcessError):
                    pass
        elif c.pid is not None and c.is_alive():
            c.kill()
            c.join(10)


def _start(ctx, procs, target, *args):
    p = ctx.Process(target=target, args=args, daemon=True)
    p.start()
    procs.append(p)
    return p


def _join(ps, timeout: float = 60.0, where: str = "") -> None:
    deadline = time.monotonic() + timeout
    for p in ps:
        p.join(max(0.1, deadline - time.monotonic()))
        assert not p.is_alive(), f"{where}: {p.name} (pid {p.pid}) hung: still running after {timeout}s"
        assert p.exitcode == 0, f"{where}: {p.name} (pid {p.pid}) exited with {p.exitcode}"


def _by_label(records: list[dict]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for r in records:
        f = r.get("fields")
        if isinstance(f, dict) and "p" in f:
            out[f["p"]].append(f["i"])
    return out


def _strictly_increasing(values: list[int]) -> list[tuple[int, int]]:
    return [(a, b) for a, b in zip(values, values[1:]) if b <= a][:5]


def _quiet(ring: str):
    """Stats once the writer has consumed everything in the ring."""
    def check():
        s = stats(ring)
        return s if s["used_bytes"] == 0 and s["head"] == s["tail"] else None
    return check


# ---- code run in producer processes ------------------------------------------

def _chaos_producer(ring: str, label: int, status, stop, rate: float, on_full: str) -> None:
    """Log (p=label, i) at `rate` per second until told to stop; status[label, i]
    says CALLED before each call and TRUE/FALSE after it."""
    log = connect(ring, name=f"chaos-{label}", on_full=on_full, block_timeout=0.2,
                  capacity=CHAOS_CAPACITY)
    base = label * PER_LABEL
    t0 = time.monotonic()
    for i in range(PER_LABEL):
        if stop.value:
            break
        status[base + i] = CALLED
        ok = log.info("chaos %d of %d", i, label, p=label, i=i)
        status[base + i] = TRUE if ok else FALSE
        if i % 20 == 19:
            delay = t0 + (i + 1) / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)


# ---- a. chaos: producers and the writer killed at random, round after round --

def _check_chaos(logs: Path, ring: str, view: np.ndarray, labels: int, killed: set[int],
                 where: str) -> dict:
    """Every TRUE call once, in order, nothing that was not called; the counters
    balance against the producers' own reports."""
    s = stats(ring)
    records = read_records(logs)
    seqs = [r["seq"] for r in records]
    assert not _strictly_increasing(seqs), f"{where}: seq not increasing in file order: " \
                                           f"{_strictly_increasing(seqs)}"
    by = _by_label(records)
    foreign = len(records) - sum(len(v) for v in by.values())
    assert foreign == 0, f"{where}: {foreign} records in the files that no chaos producer logged"
    rows = view[:labels]
    n_true = int((rows == TRUE).sum())
    n_false = int((rows == FALSE).sum())
    per_label = np.count_nonzero(rows == CALLED, axis=1)
    assert per_label.max(initial=0) <= 1, f"{where}: a producer with two calls in flight"
    in_flight = {int(label) for label in np.flatnonzero(per_label)}
    stray = sorted(in_flight - killed)
    assert not stray, f"{where}: producers {stray} finished with a call still in flight"
    found_in_flight = 0
    for label in range(labels):
        got = by.get(label, [])
        bad = _strictly_increasing(got)
        assert not bad, f"{where}: producer {label}: duplicated or out of order (i, next i): {bad}"
        got_set = set(got)
        row = rows[label]
        missing = [int(i) for i in np.flatnonzero(row == TRUE) if int(i) not in got_set]
        assert not missing, (f"{where}: producer {label}: {len(missing)} calls returned True but "
                             f"are not in the files (first {missing[:5]})")
        extra = [i for i in got if row[i] != TRUE]
        assert all(row[i] == CALLED for i in extra), (
            f"{where}: producer {label}: records in the files whose call returned False or was "
            f"never made: {[(i, int(row[i])) for i in extra][:5]}")
        found_in_flight += len(extra)
    c, d, a = s["committed"], s["dropped"], s["abandoned"]
    calls = (f"{where}: calls TRUE {n_true}, FALSE {n_false}, in flight at a kill {len(in_flight)} "
             f"(of which in the files {found_in_flight}); ring {s}")
    # the writer wrote every committed record (no filter, access rule or drop rule applies)
    assert len(records) == s["written"], f"written counter {s['written']} != {len(records)} lines; {calls}"
    assert s["in_ring"] == 0 and s["malformed"] == 0, calls
    assert (s["written"] + s["malformed"] + s["filtered"] + s["denied"] + s["sanitize_dropped"]
            + s["in_ring"]) == c, f"written + malformed + ... + in_ring != committed; {calls}"
    # committed, dropped, abandoned account for every call: each finished call exactly, each
    # call cut by a kill at most once
    assert c == n_true + found_in_flight, f"committed != calls that returned True + committed in flight; {calls}"
    assert d >= n_false, f"dropped < calls that returned False; {calls}"
    unknown = len(in_flight) - found_in_flight
    assert (d - n_false) + a <= unknown, f"more drops/abandons than calls cut by a kill; {calls}"
    assert n_true + n_false <= c + d + a <= n_true + n_false + len(in_flight), calls
    return {"records": len(records), "true": n_true, "false": n_false, "in_flight": len(in_flight),
            **{k: s[k] for k in ("committed", "dropped", "abandoned")}}


@pytest.mark.slow
@pytest.mark.timeout(int(CHAOS_SECONDS * 6) + 300)
def test_chaos_random_kills_of_producers_and_writer(ring_name, writer_factory, tmp_path, procs):
    """For LS_CHAOS_SECONDS (20 s when unset), in rounds of 1-2.5 s: three producers
    (block or drop policy, different paces) log into a 1 MiB ring; at random moments a
    producer is SIGKILLed and replaced, or the writer is SIGKILLed and started again
    after up to 1.2 s (the ring fills and calls drop meanwhile).  After each round the
    survivors stop, the ring drains, and `_check_chaos` checks the files and counters
    against what every call returned.  The seed repeats the choices, not the timing."""
    seed = _seed()
    rnd = random.Random(seed)
    logs = tmp_path / "logs"
    flags = ("--capacity", "1MiB", "--rotate-size", "256KB", "--fsync", "never")
    w = writer_factory(*flags, directory=logs).start()
    ctx = mp.get_context("fork")
    status = ctx.RawArray("b", MAX_LABELS * PER_LABEL)
    view = np.frombuffer(status, dtype=np.int8).reshape(MAX_LABELS, PER_LABEL)
    labels = 0
    killed: set[int] = set()
    writer_kills = 0
    deadline = time.monotonic() + CHAOS_SECONDS
    round_no = 0
    summary: dict = {}
    while round_no < 2 or time.monotonic() < deadline:
        round_no += 1
        where = f"seed {seed}, round {round_no}"
        stop = ctx.RawValue("b", 0)
        running: dict[int, mp.Process] = {}

        def launch() -> None:
            nonlocal labels
            label, labels = labels, labels + 1
            assert label < MAX_LABELS, f"{where}: more producers than MAX_LABELS"
            running[label] = _start(ctx, procs, _chaos_producer, ring_name, label, status, stop,
                                    rnd.choice((1000.0, 2500.0, 5000.0, 20000.0)),
                                    rnd.choice(("block", "drop")))

        for _ in range(3):
            launch()
        round_end = time.monotonic() + rnd.uniform(1.0, 2.5)
        # the first round always kills both kinds of process
        plan = ["producer", "writer"] if round_no == 1 else []
        while time.monotonic() < round_end or plan:
            time.sleep(rnd.uniform(0.05, 0.5))
            event = plan.pop(0) if plan else rnd.choices(("producer", "writer", "none"), (5, 3, 2))[0]
            if event == "producer":
                label = rnd.choice(sorted(running))
                victim = running.pop(label)
                os.kill(victim.pid, signal.SIGKILL)
                victim.join(10)
                if victim.exitcode == -signal.SIGKILL:
                    killed.add(label)
                else:  # it had already finished all its calls
                    assert victim.exitcode == 0, f"{where}: producer {label} exited {victim.exitcode}"
                launch()
            elif event == "writer":
                assert w.proc.poll() is None, f"{where}: the writer died by itself: {w.stderr()}"
                w.kill()
                writer_kills += 1
                time.sleep(rnd.uniform(0.0, 1.2))  # the ring fills while no writer runs
                w = writer_factory(*flags, directory=logs).start()
        stop.value = 1
        _join(list(running.values()), where=where)
        assert w.proc.poll() is None, f"{where}: the writer died by itself: {w.stderr()}"
        try:
            wait_for(_quiet(ring_name), timeout=60, interval=0.05, what="the ring to drain")
        except AssertionError:
            raise AssertionError(f"{where}: writer stalled: {stats(ring_name)}; {w.stderr()}") from None
        summary = _check_chaos(logs, ring_name, view, labels, killed, where)

    assert w.stop() == 0, w.stderr()
    s = stats(ring_name)
    assert s["writer_pid"] == 0
    assert writer_kills >= 1 and killed, f"seed {seed}: the chaos killed nothing"
    assert summary["records"] > 0, f"seed {seed}: {summary}"
    print(f"chaos seed {seed}: {round_no} rounds, {labels} producers ({len(killed)} killed), "
          f"{writer_kills} writer kills, {summary}")


# ---- b. fork while another thread of the same process logs -------------------

def _log_range(log, label: int, n: int) -> int:
    misses = 0
    for i in range(n):
        misses += not log.info("forked %d", i, p=label, i=i)
    return misses


def _child_body(log, label: int, n: int, grandchild: int | None, status_pipe: int) -> None:
    """In a fork child: log with a new thread and the main thread at once; optionally
    fork a grandchild in the middle.  Reports misses and pids on the pipe, then _exits."""
    misses = [0]
    t = threading.Thread(target=lambda: misses.__setitem__(0, _log_range(log, label + 1000, n)))
    t.start()
    report = {"pid": os.getpid(), "grandchild": None}
    half = n // 2
    m = _log_range_from(log, label, 0, half)
    if grandchild is not None:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                gm = _log_range(log, grandchild, n)
                os.write(status_pipe, (json.dumps({"pid": os.getpid(), "label": grandchild,
                                                   "misses": gm}) + "\n").encode())
                code = 0
            finally:
                os._exit(code)
        report["grandchild"] = pid
    m += _log_range_from(log, label, half, n)
    t.join()
    if grandchild is not None:
        _, st = os.waitpid(report["grandchild"], 0)
        report["grandchild_exit"] = os.waitstatus_to_exitcode(st)
    report.update(label=label, misses=m + misses[0])
    os.write(status_pipe, (json.dumps(report) + "\n").encode())


def _log_range_from(log, label: int, start: int, end: int) -> int:
    misses = 0
    for i in range(start, end):
        misses += not log.info("forked %d", i, p=label, i=i)
    return misses


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_fork_while_another_thread_logs_every_record_once(ring_name, writer_factory, tmp_path, procs):
    """The parent's second thread logs without pause while the main thread forks six
    children between its own records.  Each child logs through the inherited
    Producer from its main thread and from a thread it starts; one child forks a
    grandchild in the middle of its own logging."""
    w = writer_factory().start()
    log = connect(ring_name, name="forker")
    stop = threading.Event()
    thread_result = {}

    def background() -> None:
        i = misses = 0
        while not stop.is_set() and i < 400_000:
            misses += not log.info("thread %d", i, p=0, i=i)
            i += 1
        thread_result.update(n=i, misses=misses)

    t = threading.Thread(target=background)
    t.start()
    read_fd, write_fd = os.pipe()
    n_child, per_child, main_n = 6, 3000, 6000
    children = {}
    main_misses = 0
    try:
        for k in range(n_child):
            # the parent's main thread logs between forks, the background thread all along
            for i in range(k * main_n // n_child, (k + 1) * main_n // n_child):
                main_misses += not log.info("main %d", i, p=1, i=i)
            label = 10 + k
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    os.close(read_fd)
                    _child_body(log, label, per_child, 99 if k == 2 else None, write_fd)
                    code = 0
                finally:
                    os._exit(code)
            procs.append(pid)
            children[label] = pid
        deadline = time.monotonic() + 120
        for label, pid in children.items():
            while True:
                done, st = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                assert time.monotonic() < deadline, f"fork child {label} (pid {pid}) hung"
                time.sleep(0.01)
            assert os.waitstatus_to_exitcode(st) == 0, f"fork child {label} failed"
    finally:
        stop.set()
        t.join(60)
        os.close(write_fd)
    assert not t.is_alive(), "the parent's logging thread hung"
    with os.fdopen(read_fd, "rb") as f:
        reports = [json.loads(line) for line in f.read().splitlines()]
    by_report = {r["label"]: r for r in reports}
    assert set(by_report) == set(children) | {99}, f"reports: {reports}"
    assert all(r["misses"] == 0 for r in reports), f"a call returned False: {reports}"
    assert by_report[12]["grandchild_exit"] == 0
    assert main_misses == 0 and thread_result["misses"] == 0

    expected = {0: thread_result["n"], 1: main_n, 99: per_child}
    for k in range(n_child):
        expected[10 + k] = per_child
        expected[1010 + k] = per_child
    total = sum(expected.values())

    def written():
        s = stats(ring_name)
        return s if s["written"] >= total and s["used_bytes"] == 0 else None
    try:
        s = wait_for(written, timeout=120, interval=0.05, what=f"{total} records written")
    except AssertionError:
        raise AssertionError(f"not drained: {stats(ring_name)}; {w.stderr()}") from None
    assert w.stop() == 0, w.stderr()
    assert s["committed"] == s["written"] == total
    assert s["dropped"] == s["abandoned"] == s["malformed"] == 0
    records = read_records(tmp_path / "logs")
    by = _by_label(records)
    assert set(by) == set(expected)
    for label, n in expected.items():
        got = by[label]
        assert got == list(range(n)), (f"producer {label}: {len(got)} of {n} records, "
                                       f"first disorder {_strictly_increasing(got)}")
    pid_of = {0: os.getpid(), 1: os.getpid(), 99: by_report[99]["pid"]}
    for label, pid in children.items():
        pid_of[label] = pid_of[label + 1000] = pid
    wrong = {(r["fields"]["p"], r["pid"]) for r in records if r["pid"] != pid_of[r["fields"]["p"]]}
    assert not wrong, f"records under another process's pid (label, pid): {sorted(wrong)[:10]}"


# ---- c. the ring's name removed while producers and the writer use it --------

def _paced(ring: str, label: int, n: int, seconds: float, results, more, extra: int) -> None:
    """Log n records over `seconds`; then wait for `more` and log `extra` more.
    results[2*label] = calls that returned False in the first part, [2*label+1] in the second."""
    log = connect(ring, name=f"paced-{label}")
    t0 = time.monotonic()
    misses = 0
    for i in range(n):
        misses += not log.info("paced %d", i, p=label, i=i)
        if i % 25 == 24:
            delay = t0 + seconds * (i + 1) / n - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    results[2 * label] = misses
    if not more.wait(120):
        os._exit(3)
    misses = 0
    for i in range(n, n + extra):
        misses += not log.info("paced %d", i, p=label, i=i)
    results[2 * label + 1] = misses


def _one_shot(ring: str, label: int, n: int, results) -> None:
    log = connect(ring, name=f"late-{label}")
    results[2 * label] = sum(not log.info("late %d", i, p=label, i=i) for i in range(n))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ring_removed_while_in_use(ring_name, writer_factory, tmp_path, procs):
    """`ring rm` while two producers and the writer run.  What happens, as documented
    in OPERATIONS.md ("ring ls and ring rm"):

    - `ring rm` removes the name and marks the ring removed;
    - the producers' calls keep returning True: from their next call on they log
      into a new ring of that name, which the first of them makes;
    - a process that connects after the removal logs into the new ring too;
    - the running writer drains the removed ring to its end, then moves to the new
      one (`ring_replaced` on stderr) and writes its records into new files with the
      new ring id, numbered after the old ones;
    - every record is in the files once; the two rings' counters add up.
    """
    logs = tmp_path / "logs"
    w1 = writer_factory("--rotate-size", "100KB", directory=logs).start()
    old = Ring(ring_name, create=False)  # the test's own view of the segment, kept past its removal
    try:
        ctx = mp.get_context("fork")
        results = ctx.Array("q", 8, lock=False)
        more = ctx.Event()
        n, extra, late = 6000, 500, 500
        producers = [_start(ctx, procs, _paced, ring_name, p, n, 3.0, results, more, extra)
                     for p in (0, 1)]
        wait_for(lambda: old.stats().written >= 1000, timeout=30, what="records written before rm")

        r = subprocess.run([*_cli(), "ring", "rm", ring_name], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert old.removed

        # the producers go on, in the new ring; so does a process that connects now
        late_results = ctx.Array("q", 8, lock=False)
        _join([_start(ctx, procs, _one_shot, ring_name, 2, late, late_results)])
        assert late_results[4] == 0
        wait_for(lambda: stats(ring_name)["committed"] + old.stats().committed >= 2 * n + late,
                 timeout=60, what="the producers to finish their first part")
        assert all(p.is_alive() for p in producers), "a producer died after the ring was removed"
        more.set()
        _join(producers)
        assert results[0] == results[1] == results[2] == results[3] == 0, \
            f"calls returned False after the ring's name was removed: {list(results[:4])}"

        total = 2 * (n + extra) + late
        s_old = old.stats()
        new_id = stats(ring_name)["ring_id"]
        assert new_id != f"{old.ring_id:016x}", "the producers kept the removed ring"

        def all_written():
            s = stats(ring_name)
            return s if s["written"] + old.stats().written == total else None
        try:
            s_new = wait_for(all_written, timeout=60, what="every record written")
        except AssertionError:
            raise AssertionError(f"old ring {old.stats()}; new ring {stats(ring_name)}; "
                                 f"{w1.stderr()[-3000:]}") from None
        s_old = old.stats()
        assert s_new["writer_pid"] == w1.proc.pid, "the writer did not move to the new ring"
        assert s_old.writer_pid == 0 and s_old.used_bytes == 0
        assert s_old.committed == s_old.written and s_old.dropped == s_old.abandoned == 0
        assert s_new["committed"] == s_new["written"] and s_new["dropped"] == s_new["abandoned"] == 0
        assert s_old.committed + s_new["committed"] == total
        assert '"ring_replaced"' in w1.stderr()
        assert w1.stop() == 0, w1.stderr()

        files = log_files(logs)
        old_files = [f for f in files if f.ring_id == old.ring_id]
        new_files = [f for f in files if f.ring_id == int(new_id, 16)]
        assert old_files and new_files and len(old_files) + len(new_files) == len(files)
        assert min(f.index for f in new_files) > max(f.index for f in old_files)
        by = _by_label(read_records(logs))
        assert by == {0: list(range(n + extra)), 1: list(range(n + extra)), 2: list(range(late))}, \
            "every record once, in order"
    finally:
        old.close()


# ---- d. the wall clock steps forward and back under a running writer ---------

FAKETIME_LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")

# libfaketime 0.9.10 (Debian 12) mistranslates clock_nanosleep(CLOCK_MONOTONIC,
# TIMER_ABSTIME) when the monotonic clock is not faked, and Python 3.11's
# time.sleep() then fails with EINVAL.  Preloaded first, this passes monotonic
# sleeps straight to the kernel, as they are unaffected by a wall-clock step.
_SLEEP_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

typedef int (*sleep_fn)(clockid_t, int, const struct timespec *, struct timespec *);

int clock_nanosleep(clockid_t clock, int flags, const struct timespec *req, struct timespec *rem) {
    if (clock == CLOCK_MONOTONIC) {
        long rc = syscall(SYS_clock_nanosleep, clock, flags, req, rem);
        return rc == 0 ? 0 : errno;
    }
    sleep_fn next = (sleep_fn)dlsym(RTLD_NEXT, "clock_nanosleep");
    return next(clock, flags, req, rem);
}
"""


class WallClock:
    """A wall-clock offset read by libfaketime in the writer at every clock call."""

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.file = directory / "clock-offset"
        self.env = {**env, "FAKETIME_TIMESTAMP_FILE": str(self.file)}
        self.offset = 0.0
        self.set(0)

    def set(self, seconds: float) -> None:
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(f"{seconds:+.0f}\n")
        os.replace(tmp, self.file)  # never a half-written offset
        self.offset = seconds

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + timedelta(seconds=self.offset)


@pytest.fixture
def wall_clock(tmp_path):
    if not FAKETIME_LIB.exists():
        pytest.skip(f"{FAKETIME_LIB} missing: apt-get install faketime")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler for the clock_nanosleep shim")
    src = tmp_path / "sleep_shim.c"
    src.write_text(_SLEEP_SHIM)
    shim = tmp_path / "sleep_shim.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(shim), str(src), "-ldl"], check=True,
                   capture_output=True, timeout=120)
    env = {"LD_PRELOAD": f"{shim}:{FAKETIME_LIB}", "FAKETIME_NO_CACHE": "1",
           # a wall-clock step leaves CLOCK_MONOTONIC alone; so does the fake one
           "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    clock = WallClock(tmp_path, env)
    # the machinery itself: a faked process sees the offset and sleeps normally
    probe = subprocess.run([sys.executable, "-c", "import time; t = time.time(); time.sleep(0.05); "
                            "print(t)"], env={**os.environ, **clock.env},
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert abs(float(probe.stdout) - time.time()) < 30
    clock.set(86400)
    probe = subprocess.run([sys.executable, "-c", "import time; print(time.time())"],
                           env={**os.environ, **clock.env}, capture_output=True, text=True, timeout=60)
    assert abs(float(probe.stdout) - time.time() - 86400) < 30, "libfaketime did not shift the clock"
    clock.set(0)
    return clock


def _start_faked(writer, clock: WallClock, monkeypatch):
    with monkeypatch.context() as m:  # the writer's environment only, never this process's clock
        for k, v in clock.env.items():
            m.setenv(k, v)
        return writer.start()


def _stamp(f: LogFile) -> datetime:
    return datetime.strptime(f.stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


def _log_for(log, seconds: float, start: int, rate: float = 300.0) -> int:
    """Log (p=0, i) at `rate` per second for `seconds`; the next i."""
    i, t0 = start, time.monotonic()
    while time.monotonic() - t0 < seconds:
        assert log.info("tick %d", i, p=0, i=i)
        i += 1
        delay = t0 + (i - start) / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return i


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_wall_clock_steps_keep_rotation_order_and_files(ring_name, writer_factory, tmp_path,
                                                        wall_clock, monkeypatch):
    """The writer's wall clock steps forward 20 min, back 2 h 20 min, a little forward,
    then forward 28.5 min, while records flow and files rotate every second.

    What the writer guarantees, and this checks:
    - rotation runs on CLOCK_MONOTONIC: it continues through every step;
    - file names carry the wall-clock time of opening (it goes back with the
      clock), but their index only increases, so name order is write order;
    - records stay in seq order across files; no file is lost or overwritten;
    - keep_age (1 h here) counts a file's age on CLOCK_MONOTONIC from when this
      writer closed it: no step removes anything (a step beyond keep_age: see the
      next test).
    """
    logs = tmp_path / "logs"
    w = _start_faked(writer_factory("--rotate-interval", "1s", "--keep-age", "1h", directory=logs),
                     wall_clock, monkeypatch)
    log = connect(ring_name, name="clock")
    # every step forward is smaller than keep_age, measured from the earlier files' times
    phases = [0, 20 * 60, -2 * 3600, -2 * 3600 + 90, -2 * 3600 + 30 * 60]
    i = 0
    stamps_by_phase = []
    for offset in phases:
        wall_clock.set(offset)
        expected_now = wall_clock.now()
        before = set(log_files(logs))
        i = _log_for(log, 2.5, i)
        opened = sorted(set(log_files(logs)) - before)
        assert opened, f"no file opened in the 2.5 s at offset {offset:+} s: rotation stopped"
        # the files opened in this phase are named for the faked wall clock
        off = [abs((_stamp(f) - expected_now).total_seconds()) for f in opened]
        assert min(off) < 30, (f"offset {offset:+}: file stamps {[f.stamp for f in opened]} do not "
                               f"show the faked time {expected_now:%Y%m%dT%H%M%SZ}")
        stamps_by_phase.append(opened)
    wait_for(lambda: stats(ring_name)["written"] == i, timeout=60, what=f"{i} records written")
    assert w.stop() == 0, w.stderr()
    s = stats(ring_name)
    assert s["committed"] == s["written"] == i and s["dropped"] == 0

    files = log_files(logs)
    assert [f.index for f in files] == list(range(1, len(files) + 1)), \
        f"file indexes not contiguous from 1 (a file lost, overwritten or removed): {files}"
    assert len(files) > len(phases), f"rotation every second gave only {len(files)} files"
    stamps = [f.stamp for f in files]
    assert stamps != sorted(stamps), "the step back should show in the file names' times"
    by_index = sorted(files, key=lambda f: f.index)
    assert [f.name for f in by_index] == sorted(f.name for f in files), "name order is not index order"
    records = read_records(logs)
    assert _by_label(records) == {0: list(range(i))}
    seqs = [r["seq"] for r in records]
    assert not _strictly_increasing(seqs), f"seq out of order across files: {_strictly_increasing(seqs)}"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_wall_clock_step_forward_beyond_keep_age_keeps_fresh_files(ring_name, writer_factory,
                                                                    tmp_path, wall_clock,
                                                                    monkeypatch):
    """Files this writer closed seconds ago (by CLOCK_MONOTONIC) are not "older than
    keep_age" just because the wall clock stepped forward a day (NTP correcting a
    machine that booted with a stale clock)."""
    logs = tmp_path / "logs"
    w = _start_faked(writer_factory("--rotate-interval", "1s", "--keep-age", "10m", directory=logs),
                     wall_clock, monkeypatch)
    log = connect(ring_name, name="clock")
    i = _log_for(log, 3.0, 0)
    wait_for(lambda: stats(ring_name)["written"] == i, timeout=60, what="records written")
    before_step = log_files(logs)
    assert len(before_step) >= 2
    wall_clock.set(86400)
    i = _log_for(log, 3.0, i)
    wait_for(lambda: stats(ring_name)["written"] == i, timeout=60, what="records written")
    assert w.stop() == 0, w.stderr()
    after = log_files(logs)
    gone = [f.name for f in before_step if f not in after]
    records = read_records(logs)
    assert not gone, (f"{len(gone)} of {len(before_step)} files written seconds before the step were "
                      f"removed by keep_age=10m; {len(records)} of {i} records remain")
    assert max(f.index for f in after) > max(f.index for f in before_step), "rotation stopped"
