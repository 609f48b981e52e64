"""The whole pipeline with real processes: producers, the writer, signals, shared memory.

Every record a producer logs carries the fields producer=<label>, i=<index>, so
the files can be checked for each record exactly once and in order.  Producer
processes report what their calls returned through shared arrays; the ring's
counters are checked against those reports, not against themselves.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

import pytest

from conftest import proc_state, read_records, stats, wait_for
from logger_system import connect
from logger_system.errors import RingError
from logger_system.ring import Ring, unlink
from logger_system.files.chain import log_files

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="needs /proc and POSIX shared memory")

DRAIN_TIMEOUT = 30.0
JOIN_TIMEOUT = 60.0
VICTIM = 99  # the label of a producer that is stopped or killed


# ---- code run in producer processes (module level: spawn imports it) -------

def _produce(ring: str, label: int, count: int, failed=None, progress=None, started=None,
             pace: float = 0.0, options: dict | None = None) -> None:
    """Log `count` records; failed[label] = calls that returned False.

    pace: spread the records evenly over this many seconds (0: full speed).
    progress[label]: records attempted so far, updated every 64 records.
    """
    log = connect(ring, name=f"producer-{label}", **(options or {}))
    if started is not None:
        started.set()
    misses = 0
    t0 = time.monotonic()
    for i in range(count):
        if not log.info("record %d of producer %d", i, label, producer=label, i=i):
            misses += 1
        if progress is not None and i % 64 == 0:
            progress[label] = i
        if pace and i % 50 == 49:
            delay = t0 + pace * (i + 1) / count - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    if failed is not None:
        failed[label] = misses
    if progress is not None:
        progress[label] = count


def _pause_in_claim(ring: str, mode: int, warmup: int, after: int) -> None:
    """Log `warmup` records, then one that stops itself inside its claim
    (lsr_test_pause), then, if continued, `after` more."""
    from logger_system._native import lib

    log = connect(ring, name=f"producer-{VICTIM}")
    for i in range(warmup):
        log.info("warmup %d", i, producer=VICTIM, i=i)
    lib.lsr_test_pause(mode)
    log.info("in flight", producer=VICTIM, i=warmup)  # SIGSTOPs itself inside
    lib.lsr_test_pause(0)
    for i in range(warmup + 1, warmup + 1 + after):
        log.info("after %d", i, producer=VICTIM, i=i)


def _fill_until_blocked(ring: str, label: int, results, misses_wanted: int,
                        block_timeout: float) -> None:
    """Block policy against a live but stopped writer: log until `misses_wanted`
    calls returned False.  results[0]=attempts, [1]=False returns,
    [2]=how long the first False call took, in microseconds (it waited; the
    later ones drop at once)."""
    log = connect(ring, name=f"producer-{label}", on_full="block", block_timeout=block_timeout)
    attempts = misses = 0
    first = 0
    while misses < misses_wanted and attempts < 100_000:
        t = time.monotonic()
        ok = log.info("fill %d", attempts, producer=label, i=attempts)
        took = time.monotonic() - t
        attempts += 1
        if not ok:
            misses += 1
            first = first or int(took * 1e6)
    results[0], results[1], results[2] = attempts, misses, first


def _log_with(producer, label: int, count: int) -> None:
    """Run in a spawn-started child with a pickled Producer."""
    for i in range(count):
        producer.warning("spawned %d", i, producer=label, i=i)


# ---- helpers ----------------------------------------------------------------

def _wait_stopped(pid: int, timeout: float = 10.0) -> None:
    wait_for(lambda: proc_state(pid) == "T", timeout=timeout, interval=0.005,
             what=f"process {pid} to be stopped")


def _join(procs, timeout: float = JOIN_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.1, deadline - time.monotonic()))
        assert not p.is_alive(), f"{p.name} (pid {p.pid}) did not finish within {timeout}s"
        assert p.exitcode == 0, f"{p.name} exited with {p.exitcode}"


def _by_producer(records: list[dict]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for r in records:
        f = r.get("fields")
        if isinstance(f, dict) and "producer" in f:
            out[f["producer"]].append(f["i"])
    return out


def _describe(got: list[int], n: int | None = None) -> str:
    c = Counter(got)
    dups = sorted(k for k, v in c.items() if v > 1)
    disorder = sum(1 for a, b in zip(got, got[1:]) if b <= a)
    text = f"{len(got)} records, {len(dups)} duplicated (first {dups[:5]}), {disorder} out of order"
    if n is not None:
        missing = sorted(set(range(n)) - set(c))
        text += f", {len(missing)} of {n} missing (first {missing[:5]})"
    return text


def _assert_exactly_once(records: list[dict], expected: dict[int, int]) -> dict[int, list[int]]:
    """Each producer label -> count: records 0..count-1 once each, in file order."""
    by = _by_producer(records)
    for label, n in expected.items():
        got = by.get(label, [])
        assert got == list(range(n)), f"producer {label}: {_describe(got, n)}"
    return by


def _assert_seq_increasing(records: list[dict]) -> None:
    seqs = [r["seq"] for r in records]
    bad = [(a, b) for a, b in zip(seqs, seqs[1:]) if b <= a]
    assert not bad, f"seq not increasing in file order: {bad[:5]}"


def _drained(ring: str):
    """Stats once the writer has consumed everything in the ring (head == tail)."""
    def check():
        s = stats(ring)
        return s if s["used_bytes"] == 0 and s["head"] == s["tail"] else None
    return check


def _wait_written(ring: str, n: int, timeout: float = DRAIN_TIMEOUT, writer=None) -> dict:
    def check():
        s = stats(ring)
        return s if s["written"] >= n and s["used_bytes"] == 0 else None
    try:
        return wait_for(check, timeout=timeout, interval=0.05, what=f"{n} records written")
    except AssertionError:
        raise AssertionError(f"not drained: {stats(ring)}; writer stderr: "
                             f"{writer.stderr() if writer else ''}") from None


@pytest.fixture
def children():
    """Processes (multiprocessing) and pids (os.fork) a test started; killed at teardown."""
    started: list = []
    yield started
    for c in started:
        if isinstance(c, int):
            try:
                os.kill(c, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(c, 0)
            except ChildProcessError:
                pass
        elif c.pid is not None and c.is_alive():
            c.kill()
            c.join(10)


def _start(ctx, children, target, *args, **kwargs):
    p = ctx.Process(target=target, args=args, kwargs=kwargs, daemon=True)
    p.start()
    children.append(p)
    return p


def _cli() -> list[str]:
    exe = shutil.which("logger-system")
    return [exe] if exe else [sys.executable, "-m", "logger_system"]


# ---- 1. many producers, rotation, permissions, counters ---------------------

@pytest.mark.slow
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_many_producers_every_record_once_in_order(method, ring_name, writer_factory, tmp_path,
                                                   children):
    n_prod, per = 4, 5000
    logs = tmp_path / "logs"
    if method == "spawn":
        logs.mkdir(mode=0o755)  # a directory that is too open: the writer must tighten it
        os.chmod(logs, 0o755)
    w = writer_factory("--rotate-size", "200KB", "--fsync", "never").start()
    ctx = mp.get_context(method)
    failed = ctx.Array("q", n_prod, lock=False)
    procs = [_start(ctx, children, _produce, ring_name, p, per, failed) for p in range(n_prod)]
    _join(procs)
    assert list(failed) == [0] * n_prod, "a producer call returned False with a writer running"
    s = _wait_written(ring_name, n_prod * per, writer=w)
    assert w.proc.poll() is None, w.stderr()
    assert w.stop() == 0, w.stderr()

    records = read_records(logs)
    assert len(records) == n_prod * per
    by = _assert_exactly_once(records, {p: per for p in range(n_prod)})
    assert set(by) == set(range(n_prod))
    _assert_seq_increasing(records)
    pids = {p.pid for p in procs}
    assert {r["pid"] for r in records} == pids, "records must carry their producer's pid"
    for r in records:
        assert r["logger"] == f"producer-{r['fields']['producer']}"
        assert r["msg"] == f"record {r['fields']['i']} of producer {r['fields']['producer']}"

    files = log_files(logs)
    assert len(files) >= 3, f"--rotate-size 200KB should give several files, got {files}"
    for f in files:
        path = logs / f.name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, f"{f.name} mode"
    assert stat.S_IMODE(logs.stat().st_mode) == 0o700

    s = stats(ring_name)
    assert s["committed"] == s["written"] == n_prod * per
    assert s["dropped"] == 0
    assert s["abandoned"] == 0 and s["malformed"] == 0


# ---- 2. producers before the writer -----------------------------------------

@pytest.mark.slow
def test_records_wait_in_ring_until_writer_starts(ring_name, writer_factory, tmp_path, children):
    ctx = mp.get_context("fork")
    failed = ctx.Array("q", 2, lock=False)
    # producer 0 logs and exits before any writer exists; producer 1 is still logging
    # when the writer starts
    early = _start(ctx, children, _produce, ring_name, 0, 3000, failed)
    _join([early])
    s = stats(ring_name)  # the producer created the ring
    assert s["writer_pid"] == 0
    assert s["committed"] == 3000 and s["written"] == 0 and s["used_bytes"] > 0
    late = _start(ctx, children, _produce, ring_name, 1, 3000, failed, pace=1.5)
    time.sleep(0.3)
    assert late.is_alive()
    assert not (tmp_path / "logs").exists() or not log_files(tmp_path / "logs")

    w = writer_factory().start()
    _join([late])
    assert list(failed) == [0, 0]
    _wait_written(ring_name, 6000, writer=w)
    assert w.stop() == 0, w.stderr()
    records = read_records(tmp_path / "logs")
    _assert_exactly_once(records, {0: 3000, 1: 3000})
    assert len(records) == 6000
    s = stats(ring_name)
    assert s["committed"] == s["written"] == 6000 and s["dropped"] == 0


# ---- 3. a producer killed between claim and commit --------------------------

@pytest.mark.slow
@pytest.mark.parametrize("mode", [1, 2], ids=["after-claim-cas", "after-claimed-word"])
def test_producer_killed_inside_claim_is_abandoned(mode, ring_name, writer_factory, tmp_path,
                                                   children):
    w = writer_factory().start()
    ctx = mp.get_context("fork")
    warmup = 10
    victim = _start(ctx, children, _pause_in_claim, ring_name, mode, warmup, 0)
    _wait_stopped(victim.pid)
    committed_at_stop = stats(ring_name)["committed"]
    assert committed_at_stop == warmup

    # other producers log after the stuck claim while its owner is stopped
    failed = ctx.Array("q", 2, lock=False)
    others = [_start(ctx, children, _produce, ring_name, p, 4000, failed, pace=1.5)
              for p in range(2)]
    wait_for(lambda: stats(ring_name)["committed"] >= committed_at_stop + 500, timeout=20,
             what="other producers to log past the stuck claim")
    time.sleep(0.3)  # several stall_grace periods
    s = stats(ring_name)
    assert s["abandoned"] == 0, "a stopped (live) producer's claim must not be skipped"
    assert s["written"] <= warmup, "records after a live claim must wait for it"
    assert proc_state(victim.pid) == "T"

    os.kill(victim.pid, signal.SIGKILL)
    victim.join(10)
    assert victim.exitcode == -signal.SIGKILL
    _join(others)
    assert list(failed) == [0, 0]
    attempted = warmup + 1 + 2 * 4000

    s = _wait_written(ring_name, warmup + 2 * 4000, timeout=20, writer=w)
    assert w.proc.poll() is None, w.stderr()
    assert s["abandoned"] == 1
    assert s["committed"] + s["dropped"] + s["abandoned"] == attempted
    assert s["written"] == s["committed"] == attempted - 1
    assert s["malformed"] == 0
    records = read_records(tmp_path / "logs")
    _assert_exactly_once(records, {0: 4000, 1: 4000, VICTIM: warmup})
    assert len(records) == attempted - 1
    assert w.stop() == 0, w.stderr()


# ---- 4. producers killed at random moments ----------------------------------

@pytest.mark.slow
def test_producers_killed_at_random_never_stall_writer(ring_name, writer_factory, tmp_path,
                                                      children):
    seed = int(os.environ.get("LS_TEST_SEED", time.time_ns() % 1_000_000))
    rnd = random.Random(seed)
    w = writer_factory().start()
    ctx = mp.get_context("fork")
    rounds, survivors_n, per = 4, 2, 20000
    failed = ctx.Array("q", 256, lock=False)
    expected: dict[int, int] = {}
    victims: list[int] = []
    kills = 0
    for rnd_no in range(rounds):
        base = rnd_no * 10
        started = ctx.Event()
        victim_label = base + 9
        victim = _start(ctx, children, _produce, ring_name, victim_label, 10**8, None, None,
                        started)
        survivors = [_start(ctx, children, _produce, ring_name, base + k, per, failed)
                     for k in range(survivors_n)]
        assert started.wait(10)
        delay = rnd.uniform(0.05, 0.5)
        time.sleep(delay)
        os.kill(victim.pid, signal.SIGKILL)
        kills += 1
        victim.join(10)
        assert victim.exitcode == -signal.SIGKILL, f"seed {seed}: victim was not killed"
        _join(survivors)
        for k in range(survivors_n):
            assert failed[base + k] == 0, f"seed {seed}: producer {base + k} had drops"
            expected[base + k] = per
        victims.append(victim_label)
        # the writer keeps going: everything of the survivors arrives, the ring empties
        try:
            wait_for(_drained(ring_name), timeout=20, interval=0.05,
                     what=f"ring drained after kill {kills}")
        except AssertionError:
            raise AssertionError(
                f"seed {seed}: writer stalled after kill {kills} (delay {delay:.3f}s): "
                f"{stats(ring_name)}; {w.stderr()}") from None
        assert w.proc.poll() is None, w.stderr()

    s = stats(ring_name)
    records = read_records(tmp_path / "logs")
    by = _assert_exactly_once(records, expected)
    assert s["dropped"] == 0
    for label in victims:
        got = by.get(label, [])
        assert got == list(range(len(got))), (
            f"seed {seed}: killed producer {label} must leave a prefix of its records: "
            f"{_describe(got)}")
    assert set(by) <= set(expected) | set(victims)
    assert s["abandoned"] <= kills, f"seed {seed}: {s}"
    assert s["malformed"] == 0, f"seed {seed}: {s}"
    assert s["written"] == len(records), "the written counter must match the files"
    _assert_seq_increasing(records)
    assert w.stop() == 0, w.stderr()


# ---- 5. a producer stopped and continued ------------------------------------

@pytest.mark.slow
def test_producer_stopped_mid_logging_loses_nothing(ring_name, writer_factory, tmp_path,
                                                    children):
    w = writer_factory().start()
    ctx = mp.get_context("fork")
    n_victim, n_other = 200_000, 8000
    failed = ctx.Array("q", 128, lock=False)
    progress = ctx.Array("q", 128, lock=False)
    victim = _start(ctx, children, _produce, ring_name, VICTIM, n_victim, failed, progress)
    others = [_start(ctx, children, _produce, ring_name, p, n_other, failed, None, None, 2.0)
              for p in range(2)]
    wait_for(lambda: progress[VICTIM] >= 2000, timeout=20, interval=0.001,
             what="the producer to be logging")
    os.kill(victim.pid, signal.SIGSTOP)
    _wait_stopped(victim.pid)
    assert progress[VICTIM] < n_victim, "the producer finished before it could be stopped"
    time.sleep(2.5)
    s = stats(ring_name)
    assert s["abandoned"] == 0
    os.kill(victim.pid, signal.SIGCONT)
    _join([victim, *others])
    assert failed[VICTIM] == 0 and failed[0] == 0 and failed[1] == 0
    total = n_victim + 2 * n_other
    s = _wait_written(ring_name, total, writer=w)
    assert s["abandoned"] == 0 and s["dropped"] == 0 and s["malformed"] == 0
    assert s["written"] == s["committed"] == total
    records = read_records(tmp_path / "logs")
    _assert_exactly_once(records, {VICTIM: n_victim, 0: n_other, 1: n_other})
    assert w.stop() == 0, w.stderr()


@pytest.mark.slow
def test_producer_stopped_inside_claim_then_continued(ring_name, writer_factory, tmp_path,
                                                      children):
    w = writer_factory().start()
    ctx = mp.get_context("fork")
    warmup, after = 20, 2000
    victim = _start(ctx, children, _pause_in_claim, ring_name, 2, warmup, after)
    _wait_stopped(victim.pid)
    failed = ctx.Array("q", 2, lock=False)
    other = _start(ctx, children, _produce, ring_name, 0, 3000, failed)
    _join([other])
    time.sleep(2.5)  # fifty times the writer's stall grace
    s = stats(ring_name)
    assert s["abandoned"] == 0, "a stopped producer is alive: its claim must be waited for"
    assert s["written"] == warmup, "nothing after the live claim may be written before it"
    os.kill(victim.pid, signal.SIGCONT)
    _join([victim])
    total = warmup + 1 + after + 3000
    s = _wait_written(ring_name, total, writer=w)
    assert s["abandoned"] == 0 and s["dropped"] == 0
    assert s["written"] == s["committed"] == total
    records = read_records(tmp_path / "logs")
    _assert_exactly_once(records, {VICTIM: warmup + 1 + after, 0: 3000})
    assert w.stop() == 0, w.stderr()


@pytest.mark.slow
@pytest.mark.parametrize("mode", [1, 2], ids=["after-claim-cas", "after-claimed-word"])
def test_claim_committed_between_stall_and_recover_is_not_skipped(mode, ring_name, children):
    """The writer drains, sees a claim in flight, and calls lsr_recover a little later.
    A producer may commit in between (it was only slow or stopped): recovery must then
    not step over the committed record.  This test plays the writer's two calls itself
    so that the interleaving drain -> commit -> recover is certain."""
    from logger_system._native import ffi, lib

    ring = Ring(ring_name)
    try:
        ctx = mp.get_context("fork")
        victim = _start(ctx, children, _pause_in_claim, ring_name, mode, 0, 0)
        _wait_stopped(victim.pid)
        meta = ffi.new("lsr_meta[]", 16)
        buf = ffi.new("uint8_t[]", 1 << 17)
        b = ffi.new("lsr_batch *")
        b.meta, b.buf, b.max_records, b.buf_cap = meta, buf, 16, 1 << 17
        head = lib.lsr_head(ring.ptr)
        assert lib.lsr_drain(ring.ptr, head, b) == 0
        assert (b.n, b.stalled) == (0, 1), "the drain must stop at the claim in flight"

        os.kill(victim.pid, signal.SIGCONT)  # the producer goes on and commits
        _join([victim], timeout=20)
        assert ring.stats().committed == 1

        skip_to = ffi.new("uint64_t *")
        reason = ffi.new("int *")
        rc = lib.lsr_recover(ring.ptr, head, 0, skip_to, reason)
        assert rc == 0 or skip_to[0] == head, (
            f"lsr_recover stepped over a committed record: rc={rc} reason={reason[0]} "
            f"({'abandoned' if reason[0] == 1 else 'malformed'}), skip {head} -> {skip_to[0]}")
        assert lib.lsr_drain(ring.ptr, head, b) == 0
        assert b.n == 1 and b.stalled == 0
    finally:
        ring.close()


# ---- 6. the writer killed and restarted -------------------------------------

@pytest.mark.slow
def test_writer_killed_and_restarted_no_loss_no_duplicates(ring_name, writer_factory, tmp_path,
                                                           children):
    seed = int(os.environ.get("LS_TEST_SEED", time.time_ns() % 1_000_000))
    rnd = random.Random(seed)
    logs = tmp_path / "logs"
    w = writer_factory("--rotate-size", "300KB", directory=logs).start()
    ctx = mp.get_context("fork")
    n_prod, per, pace = 4, 25000, 5.0
    failed = ctx.Array("q", n_prod, lock=False)
    procs = [_start(ctx, children, _produce, ring_name, p, per, failed, None, None, pace)
             for p in range(n_prod)]
    kills = 0
    for _ in range(4):
        # kill when the writer has work in hand
        time.sleep(rnd.uniform(0.2, 0.7))
        wait_for(lambda: stats(ring_name)["written"] > 0, timeout=20, what="the writer to write")
        w.kill()
        kills += 1
        w = writer_factory("--rotate-size", "300KB", directory=logs).start()
    _join(procs)
    assert list(failed) == [0] * n_prod, f"seed {seed}: drops"
    s = _wait_written(ring_name, n_prod * per, writer=w)
    assert w.stop() == 0, w.stderr()
    assert kills == 4
    records = read_records(logs)
    _assert_exactly_once(records, {p: per for p in range(n_prod)})
    assert len(records) == n_prod * per, f"seed {seed}"
    _assert_seq_increasing(records)
    s = stats(ring_name)
    assert s["written"] == s["committed"] == n_prod * per, f"seed {seed}: {s}"
    assert s["dropped"] == 0 and s["malformed"] == 0 and s["abandoned"] == 0


# ---- 7. a full ring under both policies -------------------------------------

@pytest.mark.slow
def test_ring_full_drop_and_block_counted_exactly(ring_name, writer_factory, tmp_path, children):
    ctx = mp.get_context("fork")
    per = 3000  # ~70 bytes each in the ring: far more than 64 KiB
    failed = ctx.Array("q", 2, lock=False)
    small = {"capacity": 65536, "max_record": 4096}
    procs = [
        _start(ctx, children, _produce, ring_name, 0, per, failed,
               options={**small, "on_full": "drop"}),
        _start(ctx, children, _produce, ring_name, 1, per, failed,
               options={**small, "on_full": "block", "block_timeout": 0.1}),
    ]
    _join(procs, timeout=60)  # no writer: a blocking producer must not wait for one
    misses = list(failed)
    assert all(0 < m <= per for m in misses), f"each producer alone overfills the ring: {misses}"
    s = stats(ring_name)
    assert s["capacity_bytes"] == 65536
    assert s["dropped"] == sum(misses)
    assert s["committed"] == 2 * per - sum(misses)
    assert s["written"] == 0

    w = writer_factory().start()
    s = _wait_written(ring_name, 2 * per - sum(misses), writer=w)

    # now block for real: a live writer that is stopped makes the producer wait, then drop
    os.kill(w.proc.pid, signal.SIGSTOP)
    _wait_stopped(w.proc.pid)
    res = ctx.Array("q", 3, lock=False)
    blocked_before = s["blocked"]
    filler = _start(ctx, children, _fill_until_blocked, ring_name, 2, res, 3, 0.1)
    _join([filler], timeout=4.0)  # within the writer's 5 s heartbeat window
    attempts, fill_misses, first_us = list(res)
    assert fill_misses == 3
    assert first_us >= 95_000, f"a blocking call gave up after {first_us} us, not 0.1 s"
    os.kill(w.proc.pid, signal.SIGCONT)

    attempted = 2 * per + attempts
    total_misses = sum(misses) + fill_misses
    s = _wait_written(ring_name, attempted - total_misses, writer=w)
    assert s["blocked"] - blocked_before == 1  # it waited once; then its calls dropped at once
    assert s["dropped_stalled"] == fill_misses - 1
    assert s["dropped"] == total_misses
    assert s["committed"] + s["dropped"] + s["abandoned"] == attempted
    assert s["written"] == s["committed"] == attempted - total_misses
    assert w.stop() == 0, w.stderr()

    records = read_records(tmp_path / "logs")
    by = _by_producer(records)
    for label, n, m in ((0, per, misses[0]), (1, per, misses[1]), (2, attempts, fill_misses)):
        got = by.get(label, [])
        assert len(got) + m == n, f"producer {label}: {len(got)} written + {m} dropped != {n}"
        assert len(set(got)) == len(got) and got == sorted(got), _describe(got)


# ---- 8. garbage in the segment ----------------------------------------------

@pytest.mark.slow
def test_garbage_in_segment_is_skipped_writer_survives(ring_name, writer_factory, tmp_path,
                                                       children):
    from logger_system._native import lib

    w = writer_factory().start()
    ctx = mp.get_context("fork")
    failed = ctx.Array("q", 2, lock=False)
    procs = [_start(ctx, children, _produce, ring_name, p, 20000, failed, None, None, 1.5)
             for p in range(2)]
    ring = Ring(ring_name, create=False)
    injected = 0
    try:
        deadline = time.monotonic() + 20
        while injected < 6 and time.monotonic() < deadline:
            junk = bytearray(os.urandom(256))
            if not any(junk[:8]):
                junk[0] = 1
            if lib.lsr_inject(ring.ptr, bytes(junk), 256) == 0:
                injected += 1
            time.sleep(0.1)
    finally:
        ring.close()
    assert injected == 6
    _join(procs)
    assert list(failed) == [0, 0]
    s = _wait_written(ring_name, 40000, writer=w)
    assert w.proc.poll() is None, f"the writer died on garbage: {w.stderr()}"
    assert s["malformed"] >= 1
    assert s["written"] == s["committed"] == 40000
    records = read_records(tmp_path / "logs")
    _assert_exactly_once(records, {0: 20000, 1: 20000})
    assert len(records) == 40000, "garbage must not become a record"
    # the writer still works after the garbage
    log = connect(ring_name, name="late")
    assert log.info("after the garbage", producer=7, i=0)
    _wait_written(ring_name, 40001, writer=w)
    assert w.stop() == 0, w.stderr()
    assert _by_producer(read_records(tmp_path / "logs"))[7] == [0]


# ---- 9. fork-inherited and pickled producers --------------------------------

def _fork_children(log, labels, count, children) -> dict[int, int]:
    pids = {}
    for label in labels:
        pid = os.fork()
        if pid == 0:  # child: never return into pytest
            code = 1
            try:
                for i in range(count):
                    log.info("child %d", i, producer=label, i=i)
                code = 0
            finally:
                os._exit(code)
        children.append(pid)
        pids[label] = pid
    return pids


def _waitpid(pid: int, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    raise AssertionError(f"child {pid} did not exit within {timeout}s")


@pytest.mark.slow
def test_fork_inherited_and_spawn_pickled_producers(ring_name, writer_factory, tmp_path, children):
    w = writer_factory().start()
    log = connect(ring_name, name="parent")
    assert log.info("parent before fork", producer=0, i=0)
    pids = _fork_children(log, [1, 2, 3], 1000, children)
    for i in range(1, 1000):  # the parent keeps logging while its children do
        log.info("parent %d", i, producer=0, i=i)
    for label, pid in pids.items():
        assert _waitpid(pid) == 0, f"fork child {label} failed"

    ctx = mp.get_context("spawn")
    spawned = _start(ctx, children, _log_with, log, 4, 1000)  # the Producer is pickled
    _join([spawned])

    _wait_written(ring_name, 5000, writer=w)
    assert w.stop() == 0, w.stderr()
    records = read_records(tmp_path / "logs")
    _assert_exactly_once(records, {0: 1000, 1: 1000, 2: 1000, 3: 1000, 4: 1000})
    expected_pid = {0: os.getpid(), 4: spawned.pid, **pids}
    for r in records:
        label = r["fields"]["producer"]
        assert r["pid"] == expected_pid[label], f"record of producer {label} has pid {r['pid']}"
        assert r["logger"] == "parent"
        assert r["level"] == ("WARNING" if label == 4 else "INFO")
    s = stats(ring_name)
    assert s["written"] == s["committed"] == 5000


@pytest.mark.slow
def test_fork_inherited_producer_after_inspecting_ring(ring_name, writer_factory, tmp_path,
                                                       children):
    """Opening and closing another mapping of the ring in the parent (as stats() does)
    must not make fork children log under the parent's identity."""
    w = writer_factory().start()
    log = connect(ring_name, name="parent")
    assert log.info("parent before fork", producer=0, i=0)
    assert stats(ring_name)["committed"] == 1  # a second Ring of the name, opened and closed
    pids = _fork_children(log, [1, 2], 500, children)
    for i in range(1, 500):
        log.info("parent %d", i, producer=0, i=i)
    for pid in pids.values():
        assert _waitpid(pid) == 0
    _wait_written(ring_name, 1500, writer=w)
    assert w.stop() == 0, w.stderr()
    records = read_records(tmp_path / "logs")
    _assert_exactly_once(records, {0: 500, 1: 500, 2: 500})
    expected_pid = {0: os.getpid(), **pids}
    wrong = Counter((r["fields"]["producer"], r["pid"]) for r in records
                    if r["pid"] != expected_pid[r["fields"]["producer"]])
    assert not wrong, (f"records of fork children carry another pid "
                       f"(producer, pid): count = {dict(wrong)}; parent {os.getpid()}, "
                       f"children {pids}")


# ---- 10. SIGTERM / SIGINT drain ----------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_drains_everything_committed_and_exits_zero(sig, ring_name, writer_factory,
                                                           tmp_path, children):
    w = writer_factory().start()
    os.kill(w.proc.pid, signal.SIGSTOP)  # hold the writer so that a backlog builds up
    _wait_stopped(w.proc.pid)
    ctx = mp.get_context("fork")
    failed = ctx.Array("q", 2, lock=False)
    _join([_start(ctx, children, _produce, ring_name, p, 15000, failed) for p in range(2)])
    assert list(failed) == [0, 0]
    s = stats(ring_name)
    assert s["committed"] == 30000
    assert s["written"] < 30000 and s["used_bytes"] > 0, "no backlog to drain"

    os.kill(w.proc.pid, sig)
    os.kill(w.proc.pid, signal.SIGCONT)
    try:
        rc = w.proc.wait(30)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"writer did not exit on {sig!r}: {w.stderr()}") from None
    assert rc == 0, w.stderr()
    s = stats(ring_name)
    assert s["written"] == s["committed"] == 30000
    assert s["used_bytes"] == 0
    assert s["writer_pid"] == 0, "a writer that exits must give the ring up"
    records = read_records(tmp_path / "logs")
    _assert_exactly_once(records, {0: 15000, 1: 15000})
    assert len(records) == 30000


# ---- 11. refusals --------------------------------------------------------------

def test_writer_refuses_without_plaintext(ring_name, tmp_path):
    logs = tmp_path / "logs"
    r = subprocess.run([sys.executable, "-m", "logger_system", "writer", "--ring", ring_name,
                        "--dir", str(logs)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "--plaintext" in r.stderr
    # refused before creating anything
    assert not logs.exists()
    with pytest.raises(RingError):
        Ring(ring_name, create=False).close()


@pytest.mark.slow
def test_second_writer_on_same_ring_refuses(ring_name, writer_factory, tmp_path):
    w = writer_factory().start()
    r = subprocess.run([sys.executable, "-m", "logger_system", "writer", "--ring", ring_name,
                        "--dir", str(tmp_path / "other"), "--plaintext"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "another writer is running" in r.stderr, r.stderr
    assert w.proc.poll() is None, "the first writer must keep running"
    assert stats(ring_name)["writer_pid"] == w.proc.pid
    assert w.stop() == 0, w.stderr()
    # once the first one has stopped, a new writer may take the ring
    w2 = writer_factory().start()
    assert w2.stop() == 0, w2.stderr()


def test_second_writer_on_same_directory_refuses(ring_name, writer_factory, tmp_path):
    """One writer per directory, whatever ring it drains: the second is refused with the
    first one's pid, and the directory is free again once the first has gone (even killed)."""
    logs = tmp_path / "logs"
    w = writer_factory(directory=logs).start()
    other = f"{ring_name}-b"
    try:
        r = subprocess.run([sys.executable, "-m", "logger_system", "writer", "--ring", other,
                            "--dir", str(logs), "--plaintext"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r.stderr
        assert f"in use by another writer (pid {w.proc.pid})" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
        assert w.proc.poll() is None, "the first writer must keep running"
        w.proc.kill()
        w.proc.wait(10)
        w2 = writer_factory(ring=other, directory=logs).start()
        assert w2.stop() == 0, w2.stderr()
    finally:
        unlink(other)


# ---- 12. stats --json and cat ----------------------------------------------------

_RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")


@pytest.mark.slow
def test_stats_json_and_cat_output(ring_name, writer_factory, tmp_path):
    logs = tmp_path / "logs"
    w = writer_factory("--rotate-size", "20KB").start()
    log = connect(ring_name, name="svc.api")
    n = 600
    levels = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
    odd = 'line one\nline "two"\t\u00e9\u2028 \\ end'
    for i in range(n):
        lvl = levels[i % 5]
        msg = odd if i == 7 else "event %d"
        assert log.log(lvl, msg, *(() if i == 7 else (i,)), producer=1, i=i, tag=["x", i])
    _wait_written(ring_name, n, writer=w)

    r = subprocess.run([*_cli(), "stats", "--ring", ring_name, "--json"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    keys = {"capacity_bytes", "used_bytes", "utilization", "high_water_bytes", "committed",
            "written", "dropped", "abandoned", "malformed", "writer_errors", "sanitized"}
    assert keys <= set(d), f"missing {keys - set(d)}"
    assert d["capacity_bytes"] == 32 << 20
    assert d["committed"] == d["written"] == n
    assert d["dropped"] == d["abandoned"] == d["malformed"] == d["writer_errors"] == 0
    assert d["used_bytes"] == 0 and d["utilization"] == 0
    assert 0 < d["high_water_bytes"] <= d["capacity_bytes"]
    assert w.stop() == 0, w.stderr()

    assert len(log_files(logs)) >= 2
    r = subprocess.run([*_cli(), "cat", str(logs)], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode("utf-8").split("\n")
    assert lines[-1] == ""
    lines = lines[:-1]
    assert len(lines) == n, "one line per record"
    now = datetime.now(timezone.utc)
    prev_seq = -1
    for i, line in enumerate(lines):
        rec = json.loads(line)
        assert {"seq", "ts", "level", "pid", "logger", "msg", "fields"} <= set(rec), rec
        assert isinstance(rec["seq"], int) and rec["seq"] > prev_seq
        prev_seq = rec["seq"]
        assert _RFC3339_UTC.match(rec["ts"]), rec["ts"]
        ts = datetime.fromisoformat(rec["ts"].replace("Z", "+00:00"))
        assert ts.utcoffset() == timedelta(0)
        assert abs(now - ts) < timedelta(minutes=10)
        assert rec["level"] == levels[i % 5]
        assert rec["pid"] == os.getpid()
        assert rec["logger"] == "svc.api"
        assert rec["msg"] == (odd if i == 7 else f"event {i}")
        assert rec["fields"] == {"producer": 1, "i": i, "tag": ["x", i]}
