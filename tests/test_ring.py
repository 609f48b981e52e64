"""The ring through its Python binding: real shared memory, no writer process.

Records are written with Producer (or lsr_write for framing the producer would
never produce), drained with lsr_drain into an lsr_batch as the writer does,
formatted with the FormatJsonl stage, and released with lsr_release.
"""
from __future__ import annotations

import json
import os
import random
import re
import signal
import stat
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest

from logger_system import ConfigError, RingError, RingPermissionError, connect
from logger_system._native import ffi, lib
from logger_system.pipeline import Batch
from logger_system.pipeline.stages import FormatJsonl, LevelFilter
from logger_system.producer import Producer
from logger_system.record import (FLAG_FORMAT_ERROR, FLAG_TRUNCATED, META_DTYPE,
                                  TRUNCATION_MARKER)
from logger_system.ring import Ring, attach, unlink

KIB = 1024
MIN_CAP = 64 * KIB
HEADER = lib.LSR_REC_HEADER
META_SIZE = META_DTYPE.itemsize
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def align8(n: int) -> int:
    return (n + 7) & ~7


# ---------------------------------------------------------------------------
# draining helpers


@dataclass
class Rec:
    seq: int
    ts_ns: int
    pid: int
    tid: int
    level: int
    flags: int
    msg: bytes
    logger: bytes
    fields: bytes
    line: bytes
    obj: dict

    @property
    def size(self) -> int:
        """Bytes the record takes in the ring."""
        return align8(HEADER + len(self.msg) + len(self.logger) + len(self.fields))


@dataclass
class Drained:
    start: int
    end: int
    n: int
    malformed: int
    abandoned: int
    stalled: int
    records: list
    meta: np.ndarray
    buf: bytes


class Drainer:
    """Drains a ring the way the writer does, checking every formatted line."""

    def __init__(self, ring: Ring, max_records: int = 4096, buf_bytes: int | None = None) -> None:
        self.ring = ring
        self.buf_cap = buf_bytes or ring.capacity
        self._meta = ffi.new("lsr_meta[]", max_records)
        self._buf = ffi.new("uint8_t[]", self.buf_cap)
        b = ffi.new("lsr_batch *")
        b.meta, b.buf, b.max_records, b.buf_cap = self._meta, self._buf, max_records, self.buf_cap
        self.b = b
        self.fmt = FormatJsonl()

    @property
    def head(self) -> int:
        return lib.lsr_head(self.ring.ptr)

    def drain(self, cursor: int | None = None) -> Drained:
        cursor = self.head if cursor is None else cursor
        b = self.b
        assert lib.lsr_drain(self.ring.ptr, cursor, b) == 0
        n = b.n
        meta = np.frombuffer(ffi.buffer(self._meta, n * META_SIZE), META_DTYPE).copy() if n \
            else np.empty(0, META_DTYPE)
        buf = ffi.buffer(self._buf, b.buf_len)[:]
        records = []
        if n:
            batch = self.fmt(Batch(meta=meta, buf=buf, end=b.end))
            records = self._records(meta, buf, batch.out)
            assert batch.last_seq == records[-1].seq
        return Drained(cursor, b.end, n, b.malformed, b.abandoned, b.stalled, records, meta, buf)

    @staticmethod
    def _records(meta: np.ndarray, buf: bytes, out: bytes) -> list[Rec]:
        # the formatted text: one line per record, nothing that could act on a terminal
        assert out.endswith(b"\n")
        assert out.count(b"\n") == len(meta)
        assert b"\x1b" not in out and b"\r" not in out and b"\x00" not in out
        lines = out.split(b"\n")[:-1]
        recs = []
        for m, line in zip(meta, lines):
            obj = json.loads(line)
            assert isinstance(obj, dict)

            def part(off: str, ln: str) -> bytes:
                return buf[int(m[off]): int(m[off]) + int(m[ln])]

            rec = Rec(int(m["seq"]), int(m["ts_ns"]), int(m["pid"]), int(m["tid"]), int(m["level"]),
                      int(m["flags"]), part("msg_off", "msg_len"), part("logger_off", "logger_len"),
                      part("fields_off", "fields_len"), line + b"\n", obj)
            assert obj["seq"] == rec.seq
            assert obj["pid"] == rec.pid
            assert TS_RE.match(obj["ts"]), obj["ts"]
            assert obj["logger"] == rec.logger.decode("utf-8")
            if rec.fields:
                assert obj["fields"] == json.loads(rec.fields)
            else:
                assert "fields" not in obj
            recs.append(rec)
        return recs

    def release(self, upto: int, **delta: int) -> None:
        d = ffi.new("lsr_totals *")
        for k, v in delta.items():
            setattr(d, k, v)
        assert lib.lsr_release(self.ring.ptr, upto, d) == 0

    def drain_release(self) -> Drained:
        d = self.drain()
        self.release(d.end, written=d.n, malformed=d.malformed, abandoned=d.abandoned)
        return d

    def drain_all(self, recover: bool = False, limit: int = 10_000) -> tuple[list[Rec], int, int]:
        """Everything committed, released; with recover, stalls are stepped over.

        Returns (records, malformed, abandoned)."""
        out: list[Rec] = []
        malformed = abandoned = 0
        for _ in range(limit):
            d = self.drain_release()
            out += d.records
            malformed += d.malformed
            abandoned += d.abandoned
            if d.end != d.start:
                continue
            if not (recover and d.stalled):
                return out, malformed, abandoned
            skip_to = ffi.new("uint64_t *")
            reason = ffi.new("int *")
            assert lib.lsr_recover(self.ring.ptr, d.end, 0, skip_to, reason) == 1
            assert skip_to[0] > d.end
            if reason[0] == 1:
                abandoned += 1
                self.release(skip_to[0], abandoned=1)
            else:
                assert reason[0] == 2
                malformed += 1
                self.release(skip_to[0], malformed=1)
        raise AssertionError("the ring did not drain")


def msgs(records: list[Rec]) -> list[str]:
    return [r.obj["msg"] for r in records]


@pytest.fixture
def make_log(ring_name):
    """connect() to this test's ring; every ring opened is closed at the end."""
    rings: list[Ring] = []

    def make(**options) -> Producer:
        options.setdefault("capacity", MIN_CAP)
        options.setdefault("max_record", options["capacity"] // 4)
        options.setdefault("on_full", "drop")
        log = connect(ring_name, **options)
        rings.append(log.ring)
        return log

    yield make
    for r in rings:
        r.close()


# ---------------------------------------------------------------------------
# process helpers


def proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    return data[data.rindex(")") + 2]


def wait_stopped(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc_state(pid) == "T":
            return
        time.sleep(0.005)
    raise AssertionError(f"child {pid} did not stop")


def reap(pid: int, timeout: float = 10.0) -> int:
    """Wait for a child to exit; its exit code."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"child {pid} did not exit")


def fork(fn) -> int:
    """Run fn in a forked child that exits with 0 (or 1 if fn raised)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            fn()
            code = 0
        finally:
            os._exit(code)
    return pid


def kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


# ---------------------------------------------------------------------------
# open, attach, permissions, configuration


def test_create_then_attach_by_name(ring_name):
    a = Ring(ring_name, capacity=MIN_CAP, max_record=4 * KIB)
    try:
        assert a.created
        st = os.stat(f"/dev/shm/{ring_name}")
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_uid == os.geteuid()
        assert st.st_size == lib.LSR_MIN_CAPACITY + 4096 + 1024 * 64 + 512 * 64

        # a second mapping attaches to the same ring, whatever geometry it asks for
        b = Ring(ring_name, create=False, capacity=1 << 20, max_record=1024)
        try:
            assert not b.created
            assert b.ring_id == a.ring_id != 0
            assert b.capacity == MIN_CAP and b.max_record == 4 * KIB
            slot = b.slot()
            assert lib.lsr_write(b.ptr, slot, 20, 0, b"hi", 2, b"x", 1, b"", 0, 0, 0) == 0
            # what one mapping writes, the other sees
            assert a.stats().committed == 1
            assert a.stats().tail == align8(HEADER + 3)
        finally:
            b.close()
        c = Ring(ring_name)  # create=True on an existing ring attaches
        try:
            assert not c.created and c.ring_id == a.ring_id
        finally:
            c.close()
    finally:
        a.close()


def test_mode_is_applied_when_created(ring_name):
    log = connect(ring_name, capacity=MIN_CAP, max_record=4 * KIB, mode=0o640)
    try:
        assert stat.S_IMODE(os.stat(f"/dev/shm/{ring_name}").st_mode) == 0o640
    finally:
        log.ring.close()


def test_attach_missing_ring_raises(ring_name):
    with pytest.raises(RingError) as info:
        Ring(ring_name, create=False)
    assert not isinstance(info.value, RingPermissionError)
    assert not os.path.exists(f"/dev/shm/{ring_name}")


@pytest.mark.parametrize("mode", [0o666, 0o620, 0o602])
def test_ring_writable_by_others_is_refused(ring_name, mode):
    r = Ring(ring_name, capacity=MIN_CAP, max_record=4 * KIB)
    ring_id = r.ring_id
    r.close()
    os.chmod(f"/dev/shm/{ring_name}", mode)

    with pytest.raises(RingPermissionError) as info:
        Ring(ring_name, create=False)
    assert isinstance(info.value, PermissionError) and isinstance(info.value, RingError)
    with pytest.raises(RingPermissionError):
        Ring(ring_name)  # create=True falls back to attaching: same check
    with pytest.raises(RingPermissionError):
        connect(ring_name)

    ok = Ring(ring_name, create=False, allow_foreign=True)
    try:
        assert ok.ring_id == ring_id
    finally:
        ok.close()


def test_group_readable_ring_is_accepted(ring_name):
    r = Ring(ring_name, capacity=MIN_CAP, max_record=4 * KIB)
    r.close()
    os.chmod(f"/dev/shm/{ring_name}", 0o640)
    again = Ring(ring_name, create=False)
    again.close()


@pytest.mark.parametrize("capacity", [0, 1000, 32 * KIB, 3 * MIN_CAP, MIN_CAP + 8, 2 << 30, -MIN_CAP])
def test_bad_capacity_raises_config_error(ring_name, capacity):
    with pytest.raises(ConfigError) as info:
        Ring(ring_name, capacity=capacity)
    assert isinstance(info.value, ValueError)
    assert not os.path.exists(f"/dev/shm/{ring_name}")


@pytest.mark.parametrize("max_record", [0, 63, MIN_CAP // 4 + 1, MIN_CAP, -1])
def test_bad_max_record_raises_config_error(ring_name, max_record):
    with pytest.raises(ConfigError):
        Ring(ring_name, capacity=MIN_CAP, max_record=max_record)
    with pytest.raises(ValueError):
        connect(ring_name, capacity=MIN_CAP, max_record=max_record)
    assert not os.path.exists(f"/dev/shm/{ring_name}")


@pytest.mark.parametrize("name", ["", "/abs", "a/b", "-lead", ".hidden", "_x", "a b", "na\u00efve",
                                  "a" * 201, "x\x00y", "tab\there", 7, None])
def test_bad_ring_names_raise_config_error(name, monkeypatch):
    if name is None:  # None means $LOGGER_SYSTEM_RING, so make that bad
        monkeypatch.setenv("LOGGER_SYSTEM_RING", "bad/name")
    with pytest.raises(ConfigError):
        Ring(name, capacity=MIN_CAP, max_record=4 * KIB)
    with pytest.raises(ValueError):
        connect(name, capacity=MIN_CAP, max_record=4 * KIB)


def test_ring_name_with_trailing_newline_is_refused():
    name = f"lstest-nl-{os.getpid()}-{time.monotonic_ns()}\n"
    try:
        with pytest.raises(ConfigError):
            Ring(name, capacity=MIN_CAP, max_record=4 * KIB).close()
    finally:
        lib.lsr_unlink(("/" + name).encode())


def test_long_valid_name_is_accepted():
    name = "lstest-" + "n" * 193  # 200 characters: the longest allowed
    r = Ring(name, capacity=MIN_CAP, max_record=4 * KIB)
    try:
        assert os.path.exists(f"/dev/shm/{name}")
    finally:
        r.close()
        r.unlink()


def test_bad_producer_options_raise_config_error(make_log):
    log = make_log()
    with pytest.raises(ConfigError):
        Producer(log.ring, on_full="wait")
    with pytest.raises(ConfigError):
        Producer(log.ring, block_timeout=-1)
    with pytest.raises(ValueError):
        Producer(log.ring, level="LOUD")


def test_attach_returns_one_ring_per_name(make_log, ring_name):
    log = make_log()
    assert attach(ring_name) is log.ring
    assert connect(ring_name).ring is log.ring


# ---------------------------------------------------------------------------
# write, drain, release


def test_records_drain_with_every_field(make_log):
    log = make_log(name="svc.api", max_record=8 * KIB)
    ring = log.ring
    t0 = time.time_ns()
    calls = [
        (10, "debug %d", (1,), {}),
        (20, "plain", (), {"user": "ann", "n": 3}),
        (30, "warn", (), {"nested": {"a": [1, 2.5, None, True]}, "u": "\u00e9\u4e2d\U0001f600"}),
        (40, "err %s=%r", ("k", "v"), {}),
        (50, "crit", (), {}),
        (7, "custom level", (), {"x": -1}),
    ]
    for level, msg, args, fields in calls:
        assert log.log(level, msg, *args, **fields) is True
    t1 = time.time_ns()

    d = Drainer(ring)
    got = d.drain()
    assert got.n == len(calls) and got.malformed == 0 and got.abandoned == 0 and got.stalled == 0
    assert got.start == 0 and got.end == ring.stats().tail
    expected_msgs = ["debug 1", "plain", "warn", "err k='v'", "crit", "custom level"]
    names = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "Level 7"]
    seqs = []
    for rec, (level, _, _, fields), text, lname in zip(got.records, calls, expected_msgs, names):
        assert rec.msg.decode() == text == rec.obj["msg"]
        assert rec.logger == b"svc.api"
        assert rec.level == level and rec.obj["level"] == lname
        assert rec.pid == os.getpid()
        assert rec.tid == threading.get_native_id()
        assert rec.flags == 0
        assert t0 <= rec.ts_ns <= t1
        if fields:
            assert json.loads(rec.fields) == fields
        else:
            assert rec.fields == b""
        seqs.append(rec.seq)
    assert seqs == sorted(set(seqs)) and seqs[0] == 0
    # positions are the records' sizes apart: no gaps, no overlap
    for a, b in zip(got.records, got.records[1:]):
        assert b.seq - a.seq == a.size

    before = ring.stats()
    assert before.committed == len(calls) and before.written == 0 and before.head == 0
    assert before.used_bytes == got.end
    d.release(got.end, written=got.n)
    after = ring.stats()
    assert after.written == len(calls)
    assert after.head == got.end == after.tail
    assert after.used_bytes == 0
    assert after.high_water_bytes == got.end
    assert lib.lsr_head(ring.ptr) == got.end
    # the released range is free again: nothing left to drain
    again = d.drain()
    assert again.n == 0 and again.end == got.end and again.stalled == 0


def test_release_and_drain_reject_positions_outside_the_ring(make_log):
    log = make_log()
    log.info("one")
    d = Drainer(log.ring)
    tail = log.ring.stats().tail
    t = ffi.new("lsr_totals *")
    assert lib.lsr_release(log.ring.ptr, tail + 8, t) == lib.LSR_EARG
    assert lib.lsr_drain(log.ring.ptr, tail + 8, d.b) == lib.LSR_EARG
    assert lib.lsr_release(log.ring.ptr, tail, t) == 0
    assert lib.lsr_release(log.ring.ptr, 0, t) == lib.LSR_EARG  # behind head
    assert log.ring.stats().head == tail


def test_level_threshold_is_applied_in_the_caller(make_log):
    log = make_log()
    quiet = Producer(log.ring, level="WARNING", on_full="drop")
    assert quiet.info("no") is False
    assert quiet.debug("no") is False
    assert quiet.error("yes") is True
    st = log.ring.stats()
    assert st.committed == 1 and st.dropped == 0
    recs, _, _ = Drainer(log.ring).drain_all()
    assert msgs(recs) == ["yes"]


# ---------------------------------------------------------------------------
# full ring and accounting

RECORD_MSG = 1000
RECORD_SIZE = align8(HEADER + RECORD_MSG + len("root"))  # 1048


def fill(log: Producer, attempts: int) -> tuple[int, int]:
    ok = failed = 0
    for i in range(attempts):
        if log.info(f"{i:04d}".ljust(RECORD_MSG, ".")):
            ok += 1
        else:
            failed += 1
    return ok, failed


@pytest.mark.parametrize("on_full", ["drop", "block"])
def test_full_ring_without_writer_drops_at_once(make_log, on_full):
    log = make_log(on_full=on_full, block_timeout=5.0)
    fits = MIN_CAP // RECORD_SIZE  # 62: the 63rd needs padding plus itself
    t0 = time.monotonic()
    ok, failed = fill(log, 100)
    elapsed = time.monotonic() - t0
    assert elapsed < 2.0  # nobody drains: "block" must not wait 38 x 5 s
    assert (ok, failed) == (fits, 100 - fits)
    st = log.ring.stats()
    assert st.committed == fits
    assert st.dropped == 100 - fits
    assert st.committed + st.dropped == 100
    assert st.as_dict()["attempted"] == 100
    assert st.blocked == 0
    assert st.used_bytes == fits * RECORD_SIZE <= MIN_CAP
    assert st.high_water_bytes == st.used_bytes

    # what was accepted is intact and in order
    recs, malformed, _ = Drainer(log.ring).drain_all()
    assert malformed == 0
    assert [m[:4] for m in msgs(recs)] == [f"{i:04d}" for i in range(fits)]
    assert log.info("room again") is True


def test_accounting_identity_over_partial_drains(make_log):
    log = make_log(max_record=4 * KIB)
    ring = log.ring
    # one framed record with bad fields: committed by the producer, malformed for the writer
    assert lib.lsr_write(ring.ptr, ring.slot(), 20, 0, b"bad", 3, b"root", 4, b'{"a":', 5, 0, 0) == 0
    attempted = 1
    levels = [10, 20, 30, 40]
    i = 0

    def write(n: int) -> None:
        nonlocal attempted, i
        for _ in range(n):
            log.log(levels[i % 4], f"{i:05d}".ljust(RECORD_MSG, "-"))
            attempted += 1
            i += 1

    small = Drainer(ring, max_records=7)
    peek = Drainer(ring)
    level_filter = LevelFilter(30)

    def in_ring() -> int:
        # committed records not yet released: good ones and the malformed one alike
        got = peek.drain()
        assert not got.stalled
        return got.n + got.malformed

    def check() -> None:
        st = ring.stats()
        assert st.committed + st.dropped == attempted
        assert st.committed == st.written + st.malformed + st.filtered + in_ring()
        assert st.as_dict()["in_ring"] == in_ring()

    write(80)  # fills the ring, the rest is dropped
    check()
    assert ring.stats().dropped > 0
    for round_ in range(6):
        got = small.drain()
        assert 0 < got.n <= 7
        batch = level_filter(Batch(meta=got.meta, buf=got.buf, end=got.end))
        small.release(got.end, written=batch.kept, filtered=batch.delta.filtered,
                      malformed=got.malformed)
        check()
        write(5)
        check()
    # everything out
    while True:
        got = small.drain()
        if got.end == got.start:
            break
        batch = level_filter(Batch(meta=got.meta, buf=got.buf, end=got.end))
        small.release(got.end, written=batch.kept, filtered=batch.delta.filtered,
                      malformed=got.malformed)
    check()
    st = ring.stats()
    assert st.malformed == 1
    assert st.filtered > 0 and st.written > 0
    assert in_ring() == 0 and st.head == st.tail and st.used_bytes == 0


def test_block_waits_for_a_live_writer_then_drops(make_log):
    log = make_log()
    ring = log.ring
    fits, _ = fill(log, 70)
    assert lib.lsr_writer_acquire(ring.ptr) == 0
    try:
        lib.lsr_heartbeat(ring.ptr)
        assert ring.stats().writer_pid == os.getpid()
        before = ring.stats()
        blocking = Producer(ring, on_full="block", block_timeout=0.2)
        t0 = time.monotonic()
        assert blocking.info("x" * RECORD_MSG) is False
        elapsed = time.monotonic() - t0
        assert 0.15 <= elapsed < 5.0
        after = ring.stats()
        assert after.dropped == before.dropped + 1
        assert after.blocked == before.blocked + 1
        assert after.committed == before.committed == fits
        # "drop" does not wait even with a writer alive
        t0 = time.monotonic()
        assert Producer(ring, on_full="drop", block_timeout=5.0).info("y" * RECORD_MSG) is False
        assert time.monotonic() - t0 < 2.0
        assert ring.stats().dropped == before.dropped + 2
    finally:
        lib.lsr_writer_release(ring.ptr)
    assert ring.stats().writer_pid == 0


def test_block_succeeds_when_the_writer_makes_room(make_log):
    log = make_log()
    ring = log.ring
    fits, _ = fill(log, 70)
    assert lib.lsr_writer_acquire(ring.ptr) == 0
    drained: list = []

    def writer() -> None:
        time.sleep(0.1)
        lib.lsr_heartbeat(ring.ptr)
        drained.append(Drainer(ring).drain_release())

    t = threading.Thread(target=writer)
    try:
        lib.lsr_heartbeat(ring.ptr)
        before = ring.stats()
        t.start()
        blocking = Producer(ring, on_full="block", block_timeout=5.0)
        t0 = time.monotonic()
        assert blocking.info("late".ljust(RECORD_MSG, "!")) is True
        elapsed = time.monotonic() - t0
        t.join(10)
        assert 0.05 <= elapsed < 5.0
        after = ring.stats()
        assert after.dropped == before.dropped
        assert after.blocked == before.blocked + 1
        assert after.committed == fits + 1
        assert drained[0].n == fits
    finally:
        t.join(10)
        lib.lsr_writer_release(ring.ptr)
    recs, _, _ = Drainer(ring).drain_all()
    assert msgs(recs) == ["late".ljust(RECORD_MSG, "!")]


def test_second_writer_is_refused_while_the_first_lives(make_log, ring_name):
    log = make_log()
    assert lib.lsr_writer_acquire(log.ring.ptr) == 0
    try:
        assert lib.lsr_writer_acquire(log.ring.ptr) == 0  # the same process again: fine

        def other() -> None:
            r = Ring(ring_name, create=False)
            rc = lib.lsr_writer_acquire(r.ptr)
            os._exit(0 if rc == lib.LSR_EEXIST else 3)

        pid = fork(other)
        assert reap(pid) == 0
    finally:
        lib.lsr_writer_release(log.ring.ptr)


# ---------------------------------------------------------------------------
# wrap-around


def test_wrap_around_keeps_order_and_pads_the_end(make_log):
    log = make_log(name="wrap", max_record=16 * KIB)
    ring = log.ring
    cap = ring.capacity
    rng = random.Random(1234)
    sizes = []
    for i in range(900):
        kind = rng.random()
        if kind < 0.5:
            sizes.append(rng.randrange(0, 300))
        elif kind < 0.85:
            sizes.append(rng.randrange(300, 4000))
        else:
            sizes.append(rng.randrange(4000, 16 * KIB - 200))
    # four records of exactly max_record bytes end exactly at the end of the data area
    # (record 0 carries the field {"i":0}); then one that needs padding
    sizes[:6] = [16384 - HEADER - 4 - 7 - 7, 16384 - HEADER - 4 - 7, 16384 - HEADER - 4 - 7,
                 16384 - HEADER - 4 - 7, 100, 16000]

    d = Drainer(ring, max_records=64)
    out: list[Rec] = []
    expected: list[str] = []
    failures = 0
    for i, n in enumerate(sizes):
        msg = f"{i:06d}:" + "abcdefgh"[i % 8] * n
        fields = {"i": i} if i % 5 == 0 else {}
        expected.append(msg)
        if not log.info(msg, **fields):
            failures += 1
            out += d.drain_release().records
            assert log.info(msg, **fields)
        if i % 7 == 0:
            out += d.drain_release().records
    rest, malformed, abandoned = d.drain_all()
    out += rest
    assert malformed == 0 and abandoned == 0
    assert msgs(out) == expected
    assert [r.size for r in out[:4]] == [16384] * 4
    assert out[4].seq == cap  # the first lap ended exactly at the end: no padding
    for i, r in enumerate(out):
        assert (json.loads(r.fields) if r.fields else {}) == ({"i": i} if i % 5 == 0 else {})
    seqs = [r.seq for r in out]
    assert all(a < b for a, b in zip(seqs, seqs[1:]))
    st = ring.stats()
    assert st.tail > 20 * cap  # it went around many times
    assert st.committed == len(sizes) and st.dropped == failures and st.written == len(sizes)
    assert st.head == st.tail
    # gaps between consecutive records are padding, and padding always ends the data area
    pads = 0
    for a, b in zip(out, out[1:]):
        gap = b.seq - (a.seq + a.size)
        assert gap >= 0
        if gap:
            pads += 1
            assert b.seq % cap == 0, (a.seq, a.size, b.seq)
            assert gap < b.size
        # no record crosses the end of the data area
        assert a.seq // cap == (a.seq + a.size - 1) // cap
    assert pads > 5


# ---------------------------------------------------------------------------
# truncation


def test_long_message_is_cut_with_a_visible_marker(make_log):
    log = make_log(max_record=1024)
    budget = 1024 - HEADER - len("root")
    long = "a" * 5000
    assert log.info(long) is True
    assert log.info("b" * budget) is True  # exactly fits: not cut
    assert log.info("c" * (budget + 1)) is True
    assert log.info("\u00e9" * 3000) is True  # 6000 bytes of two-byte characters
    recs, _, _ = Drainer(log.ring).drain_all()
    assert len(recs) == 4
    first, exact, over, wide = recs
    marker = TRUNCATION_MARKER.format(5000).encode()
    assert first.msg.endswith(marker) and first.msg.startswith(b"aaaa")
    assert first.obj["msg"].endswith(" ...[truncated 5000 bytes]")
    assert first.flags & FLAG_TRUNCATED
    assert HEADER + len(first.msg) + len(first.logger) <= 1024
    assert exact.msg == b"b" * budget and exact.flags == 0
    assert over.flags & FLAG_TRUNCATED
    assert over.msg.endswith(TRUNCATION_MARKER.format(budget + 1).encode())
    text = wide.msg.decode("utf-8")  # not cut inside a character
    assert text.endswith(" ...[truncated 6000 bytes]") and text.startswith("\u00e9\u00e9")
    st = log.ring.stats()
    assert st.truncated == 3 and st.dropped == 0 and st.committed == 4


def test_huge_fields_are_replaced(make_log):
    log = make_log(max_record=1024)
    blob = "x" * 5000
    assert log.info("keep me", blob=blob, n=1) is True
    assert log.info("y" * 3000, blob=blob) is True
    recs, _, _ = Drainer(log.ring).drain_all()
    a, b = recs
    original = len(json.dumps({"blob": blob, "n": 1}, separators=(",", ":")))
    assert a.obj["fields"] == {"_truncated_fields_bytes": original}
    assert a.obj["msg"] == "keep me"
    assert a.flags & FLAG_TRUNCATED
    assert b.obj["fields"] == {"_truncated_fields_bytes": 5000 + len('{"blob":""}')}
    assert b.obj["msg"].endswith(" ...[truncated 3000 bytes]")
    for r in recs:
        assert HEADER + len(r.msg) + len(r.logger) + len(r.fields) <= 1024
    assert log.ring.stats().truncated == 2


@pytest.mark.parametrize("max_record", [64, 96, 128, 256])
def test_long_message_is_cut_not_dropped_at_small_max_record(make_log, max_record):
    # max_record=64 is a valid ring; a record over it must still be cut, not lost
    log = make_log(max_record=max_record)
    assert log.info("z" * 500) is True
    st = log.ring.stats()
    assert st.dropped == 0 and st.committed == 1 and st.truncated == 1
    recs, _, _ = Drainer(log.ring).drain_all()
    assert len(recs) == 1 and recs[0].flags & FLAG_TRUNCATED
    assert recs[0].msg.startswith(b"z") or b"truncated" in recs[0].msg


def test_long_logger_name_does_not_make_every_record_drop(make_log):
    # the logger name is cut to 1024 bytes, which alone leaves no room at max_record=1024
    log = make_log(max_record=1024)
    named = Producer(log.ring, name="L" * 5000, on_full="drop")
    assert named.info("hello") is True
    st = log.ring.stats()
    assert st.dropped == 0 and st.committed == 1
    (r,), _, _ = Drainer(log.ring).drain_all()
    assert r.obj["logger"].startswith("LLLL")
    assert HEADER + len(r.msg) + len(r.logger) + len(r.fields) <= 1024


# ---------------------------------------------------------------------------
# formatting errors


class BadStr:
    def __str__(self):
        raise RuntimeError("no str")


class BadRepr:
    def __repr__(self):
        raise RuntimeError("no repr")


class BadBoth:
    def __str__(self):
        raise RuntimeError("no str")

    def __repr__(self):
        raise RuntimeError("no repr")


FORMAT_FAILURES = [
    ("%d items", ("x",)),
    ("%s %s", (1,)),
    ("%s", (1, 2)),
    ("%", (1,)),
    ("%(a)s", ({"b": 1},)),
    ("%s", (BadStr(),)),
    ("%r", (BadRepr(),)),
    ("%s %r", (BadBoth(), BadBoth())),
    (BadStr(), ()),
    (BadBoth(), (1,)),
]


def test_formatting_errors_become_records(make_log):
    log = make_log()
    for msg, args in FORMAT_FAILURES:
        assert log.error(msg, *args) is True
    recs, malformed, _ = Drainer(log.ring).drain_all()
    assert malformed == 0
    assert len(recs) == len(FORMAT_FAILURES)
    for r in recs:
        assert "formatting failed" in r.obj["msg"]
        assert r.flags & FLAG_FORMAT_ERROR
        assert r.obj["level"] == "ERROR"
    assert "TypeError" in recs[0].obj["msg"]
    assert "KeyError" in recs[4].obj["msg"]
    st = log.ring.stats()
    assert st.format_errors == len(FORMAT_FAILURES)
    assert st.committed == len(FORMAT_FAILURES)


def test_well_formed_messages_are_not_format_errors(make_log):
    log = make_log()
    cases = [
        (("100% sure",), "100% sure"),  # no args: not interpreted
        (("%s",), "%s"),
        (("%(a)s-%(b)d", {"a": "x", "b": 2}), "x-2"),
        (("%s-%s", 1, 2), "1-2"),
        (("%r", "q"), "'q'"),
        ((42,), "42"),
        ((["l", 1],), "['l', 1]"),
        (("%s", {"k": 1}), "{'k': 1}"),
    ]
    for args, _ in cases:
        assert log.info(*args) is True
    recs, _, _ = Drainer(log.ring).drain_all()
    assert msgs(recs) == [text for _, text in cases]
    assert all(r.flags == 0 for r in recs)
    assert log.ring.stats().format_errors == 0


# ---------------------------------------------------------------------------
# odd input


class Megabyte:
    def __str__(self):
        return "M" * (1 << 20)


def test_odd_input_never_raises_and_formats_valid_lines(make_log):
    log = make_log(max_record=16 * KIB)
    cyclic: dict = {"name": "loop"}
    cyclic["self"] = cyclic
    cyclic_list: list = [1]
    cyclic_list.append(cyclic_list)
    controls = "a\x00b\rc\nd\x1be\x7ff\x85g\u2028h\u2029i\x9b[31mj"
    calls = [
        (("lone \ud800 high and \udfff low",), {}),
        ((controls,), {}),
        (("fields",), {"f": controls, "esc": "\x1b[2J"}),
        (("cyclic",), {"d": cyclic, "l": cyclic_list}),
        (("keys",), {"d": {1: "int", (1, 2): "tuple", None: "none", 2.5: "float"}}),
        (("objects",), {"o": object(), "b": b"\xff\x00", "s": {1, 2}, "e": ValueError("v")}),
        (("%s",), {}),
        (("%s", Megabyte()), {}),
        (("big field",), {"m": Megabyte()}),
        (("surrogate field",), {"v": "\udcff", "nested": ["\ud800"]}),
        (("\x1b]0;title\x07",), {}),
        ((b"bytes msg \xff",), {}),
    ]
    for args, fields in calls:
        assert log.info(*args, **fields) is True
    recs, malformed, _ = Drainer(log.ring).drain_all()
    assert malformed == 0
    assert len(recs) == len(calls)
    by = iter(recs)

    r = next(by)
    assert r.obj["msg"] == "lone \\ud800 high and \\udfff low"
    r = next(by)
    assert r.obj["msg"] == controls
    r = next(by)
    assert r.obj["fields"] == {"f": controls, "esc": "\x1b[2J"}
    r = next(by)
    assert r.obj["fields"]["d"]["name"] == "loop"
    assert r.obj["fields"]["l"][0] == 1
    r = next(by)
    assert r.obj["fields"]["d"]["1"] == "int" and "tuple" in r.obj["fields"]["d"].values()
    r = next(by)
    f = r.obj["fields"]
    assert f["o"].startswith("<object object") and "\\xff" in f["b"] and f["e"] == "v"
    r = next(by)
    assert r.obj["msg"] == "%s"
    r = next(by)
    assert r.obj["msg"].startswith("MMMM")
    assert r.obj["msg"].endswith(TRUNCATION_MARKER.format(1 << 20))
    assert r.flags & FLAG_TRUNCATED
    r = next(by)
    assert r.obj["fields"]["m"].startswith("MMMM") and len(r.obj["fields"]["m"]) <= 4096 + 20
    r = next(by)
    assert r.obj["fields"] == {"v": "\\udcff", "nested": ["\\ud800"]}
    r = next(by)
    assert r.obj["msg"] == "\x1b]0;title\x07"
    r = next(by)
    assert r.obj["msg"] == "b'bytes msg \\xff'"


def test_c1_controls_and_line_separators_are_escaped_in_messages(make_log):
    log = make_log()
    text = "x\x85y\u2028z\x9b"
    log.info(text)
    (r,), _, _ = Drainer(log.ring).drain_all()
    assert r.obj["msg"] == text
    assert b"\\u0085" in r.line and b"\\u2028" in r.line and b"\\u009b" in r.line
    assert len(r.line.decode("utf-8").splitlines()) == 1


def test_non_finite_float_fields_do_not_lose_the_record(make_log):
    log = make_log()
    assert log.info("nan", x=float("nan")) is True
    assert log.info("inf", x=float("inf"), y=float("-inf")) is True
    assert log.info("after") is True
    recs, malformed, _ = Drainer(log.ring).drain_all()
    assert malformed == 0
    assert msgs(recs) == ["nan", "inf", "after"]
    assert "x" in recs[0].obj["fields"] and "y" in recs[1].obj["fields"]


def test_field_key_with_lone_surrogate_keeps_the_other_fields(make_log):
    log = make_log()
    assert log.info("k", **{"bad\udc80": 1, "ok": 2}) is True
    (r,), _, _ = Drainer(log.ring).drain_all()
    assert r.obj["fields"].get("ok") == 2
    assert r.obj["fields"].get("bad\\udc80") == 1


# ---------------------------------------------------------------------------
# malformed data in the ring

GARBAGE = [
    pytest.param(b"\xa5" * 64, id="pattern"),
    pytest.param(bytes(range(1, 65)), id="counting"),
    pytest.param(bytes(64), id="zeros"),
    pytest.param(bytes(8) + b"\xff" * 56, id="zero-then-ones"),
    pytest.param(b"\xff" * 24 + bytes(16) + b"\x11" * 24, id="ones-zeros-ones"),
    pytest.param(random.Random(7).randbytes(256), id="random"),
]


@pytest.mark.parametrize("garbage", GARBAGE)
def test_injected_garbage_is_skipped_as_malformed(make_log, garbage):
    log = make_log()
    ring = log.ring
    log.info("before")
    assert lib.lsr_inject(ring.ptr, garbage, len(garbage)) == 0
    log.info("after-1")
    log.info("after-2", k="v")
    d = Drainer(ring)
    first = d.drain()
    assert [r.obj["msg"] for r in first.records][:1] == ["before"]
    recs, malformed, abandoned = d.drain_all(recover=True)
    assert msgs(recs) == ["before", "after-1", "after-2"]
    assert recs[2].obj["fields"] == {"k": "v"}
    assert malformed >= 1 and abandoned == 0
    st = ring.stats()
    assert st.malformed == malformed and st.written == 3 and st.head == st.tail


def test_injected_garbage_at_the_end_alone_is_recovered(make_log):
    log = make_log()
    ring = log.ring
    assert lib.lsr_inject(ring.ptr, bytes(32), 32) == 0
    d = Drainer(ring)
    got = d.drain()
    assert got.n == 0 and got.stalled == 1 and got.end == 0
    recs, malformed, _ = d.drain_all(recover=True)
    assert recs == [] and malformed >= 1
    assert ring.stats().head == 32
    log.info("later")
    assert msgs(d.drain_all()[0]) == ["later"]


def test_inject_rejects_bad_lengths(make_log):
    log = make_log()
    assert lib.lsr_inject(log.ring.ptr, b"1234567", 7) == lib.LSR_EARG
    assert lib.lsr_inject(log.ring.ptr, b"", 0) == lib.LSR_EARG
    assert log.ring.stats().tail == 0


def raw_write(ring: Ring, msg: bytes, fields: bytes, logger: bytes = b"root", level: int = 20) -> int:
    return lib.lsr_write(ring.ptr, ring.slot(), level, 0, msg, len(msg), logger, len(logger),
                         fields, len(fields), 0, 0)


@pytest.mark.parametrize("fields", [b'{"a":', b'{"a":1', b"[1,2]", b'{"a":NaN}', b'{"a":"\n"}',
                                    b'{"a":1}x', b'{"a":"\xff"}',
                                    b'{"a":' + b"[" * 99 + b"]" * 99 + b"}"])
def test_framed_record_with_invalid_fields_is_malformed(make_log, fields):
    log = make_log()
    ring = log.ring
    log.info("before")
    assert raw_write(ring, b"bad fields", fields) == 0
    log.info("after")
    recs, malformed, _ = Drainer(ring).drain_all()
    assert msgs(recs) == ["before", "after"]
    assert malformed == 1
    st = ring.stats()
    assert st.committed == 3 and st.written == 2 and st.malformed == 1


def test_framed_record_with_invalid_logger_is_malformed_but_bad_msg_is_escaped(make_log):
    log = make_log()
    ring = log.ring
    assert raw_write(ring, b"x", b"", logger=b"\xc0\xafbad") == 0
    assert raw_write(ring, b"bad \xff\xfe utf8 \xed\xa0\x80 \x1b", b'{"ok":true}', level=255) == 0
    recs, malformed, _ = Drainer(ring).drain_all()
    assert malformed == 1
    (r,) = recs
    assert r.obj["msg"].startswith("bad \ufffd\ufffd utf8 ") and r.obj["msg"].endswith("\x1b")
    assert r.obj["level"] == "Level 255"
    assert r.obj["fields"] == {"ok": True}


# ---------------------------------------------------------------------------
# stalled claims


@pytest.mark.parametrize("pause", [1, 2])
def test_claim_of_a_killed_producer_is_recovered_as_abandoned(make_log, pause):
    log = make_log()
    ring = log.ring
    assert log.info("before") is True

    def child() -> None:
        lib.lsr_test_pause(pause)
        log.info("never committed " + "p" * 100)

    pid = fork(child)
    try:
        wait_stopped(pid)
        assert log.info("after") is True  # claimed behind the stopped claim
        os.kill(pid, signal.SIGKILL)
        assert reap(pid) == -signal.SIGKILL
    finally:
        kill_quietly(pid)

    d = Drainer(ring)
    got = d.drain()
    assert msgs(got.records) == ["before"] and got.stalled == 1
    d.release(got.end, written=1)
    again = d.drain()
    assert again.n == 0 and again.stalled == 1 and again.end == got.end

    skip_to = ffi.new("uint64_t *")
    reason = ffi.new("int *")
    assert lib.lsr_recover(ring.ptr, got.end, 0, skip_to, reason) == 1
    assert reason[0] == 1
    hole = skip_to[0] - got.end
    assert hole >= align8(HEADER + 116 + len("root"))
    d.release(skip_to[0], abandoned=1)

    recs, malformed, abandoned = d.drain_all()
    assert msgs(recs) == ["after"] and malformed == 0 and abandoned == 0
    st = ring.stats()
    assert st.abandoned == 1 and st.written == 2 and st.committed == 2
    assert st.as_dict()["attempted"] == 3
    assert st.head == st.tail
    # the ring keeps working, and the dead producer's slot can be taken over
    assert log.info("later") is True
    assert msgs(d.drain_all()[0]) == ["later"]


@pytest.mark.parametrize("pause", [1, 2])
def test_claim_of_a_stopped_live_producer_is_waited_for(make_log, pause):
    log = make_log()
    ring = log.ring
    assert log.info("before") is True

    def child() -> None:
        lib.lsr_test_pause(pause)
        log.info("from the stopped child")

    pid = fork(child)
    try:
        wait_stopped(pid)
        assert log.info("after") is True
        d = Drainer(ring)
        got = d.drain()
        assert msgs(got.records) == ["before"] and got.stalled == 1
        d.release(got.end, written=1)
        skip_to = ffi.new("uint64_t *")
        reason = ffi.new("int *")
        assert lib.lsr_recover(ring.ptr, got.end, 0, skip_to, reason) == 0
        assert d.drain().n == 0
        os.kill(pid, signal.SIGCONT)
        assert reap(pid) == 0
    finally:
        kill_quietly(pid)
    recs, malformed, abandoned = d.drain_all()
    assert msgs(recs) == ["from the stopped child", "after"]
    assert recs[0].pid == pid and recs[1].pid == os.getpid()
    assert malformed == 0 and abandoned == 0
    st = ring.stats()
    assert st.abandoned == 0 and st.committed == 3 and st.written == 3


# ---------------------------------------------------------------------------
# a ring removed while in use


def test_producers_move_to_the_next_ring_of_the_name_after_ring_rm(make_log, ring_name):
    log = make_log()
    child = log.child("svc.child")
    assert log.info("before") and child.info("before")
    old = Ring(ring_name, create=False)  # a view of the first ring that stays put
    try:
        assert unlink(ring_name) and old.removed
        assert lib.lsr_write(old.ptr, 0, 20, 0, b"x", 1, b"r", 1, b"", 0, 0, 0) == lib.LSR_EREMOVED
        # each producer moves on its next call; other threads lease slots in the new ring
        got = []
        t = threading.Thread(target=lambda: got.append(child.info("after, from a thread")))
        assert log.info("after") is True
        t.start()
        t.join(10)
        assert got == [True]
        assert log.ring.ring_id != old.ring_id and not log.ring.removed
        s_old, s_new = old.stats(), log.ring.stats()
        assert s_old.committed == 2 and s_new.committed == 2 and s_new.dropped == 0
        d = Drainer(log.ring)
        recs, malformed, abandoned = d.drain_all()
        assert sorted(r.msg for r in recs) == [b"after", b"after, from a thread"]
        assert malformed == abandoned == 0
        # a Producer made after the removal, from the same Ring object, goes there too
        late = connect(ring_name, name="late", capacity=MIN_CAP, on_full="drop")
        assert late.ring is log.ring and late.info("late")
        assert [r.msg for r in d.drain_all()[0]] == [b"late"]
    finally:
        old.close()


def test_ring_rm_of_a_missing_ring_is_false(ring_name):
    assert unlink(ring_name) is False


# fork


def test_producer_keeps_working_in_a_forked_child(make_log):
    log = make_log()
    ring = log.ring
    assert log.info("parent before") is True
    parent_slot = ring.slot()
    rfd, wfd = os.pipe()

    def child() -> None:
        os.close(rfd)
        ok = log.info("from child", who="child")
        info = {"ok": ok, "slot": ring.slot(), "live": ring.stats().live_slots,
                "tid": threading.get_native_id()}
        os.write(wfd, json.dumps(info).encode())

    pid = fork(child)
    os.close(wfd)
    try:
        with os.fdopen(rfd, "rb") as f:
            info = json.loads(f.read() or b"{}")
        assert reap(pid) == 0
    finally:
        kill_quietly(pid)
    assert log.info("parent after") is True
    assert info["ok"] is True
    assert info["slot"] != parent_slot
    assert info["live"] == 2

    recs, _, _ = Drainer(ring).drain_all()
    assert msgs(recs) == ["parent before", "from child", "parent after"]
    assert [r.pid for r in recs] == [os.getpid(), pid, os.getpid()]
    assert recs[1].tid == info["tid"] != recs[0].tid
    assert recs[1].obj["fields"] == {"who": "child"}
    assert recs[0].tid == recs[2].tid == threading.get_native_id()


def test_slot_of_each_thread_is_distinct_and_released(make_log):
    log = make_log()
    ring = log.ring
    log.info("main")
    base = ring.stats().live_slots
    slots = []
    gate = threading.Barrier(4)
    hold = threading.Event()

    def work() -> None:
        log.info("thread")
        slots.append(ring.slot())
        gate.wait(5)
        hold.wait(5)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        gate.wait(5)
        assert ring.stats().live_slots == base + 3
    finally:
        hold.set()
        for t in threads:
            t.join(5)
    assert len(set(slots + [ring.slot()])) == 4
    # a thread's slot is given back when the thread ends
    deadline = time.monotonic() + 5
    while ring.stats().live_slots != base and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ring.stats().live_slots == base
    recs, _, _ = Drainer(ring).drain_all()
    assert len({r.tid for r in recs}) == 4


# ---------------------------------------------------------------------------
# the fields JSON checker

VALID_JSON = [
    b"{}",
    b'{"a":1}',
    b'{"a":1,"b":-2.5e+10,"c":0,"d":-0,"e":1E-3,"f":0.25}',
    b'{"a":[1,[2,[3,{}]],{"b":{"c":null}}],"t":true,"f":false}',
    b'{"a":[]}',
    b'{"\xc3\xa9":"\xe4\xb8\xad\xf0\x9f\x98\x80"}',
    b'{"e":"\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\uD83D\\ude00"}',
    b'{ "a" : 1 , "b" : [ 1 , 2 ] }',
    b'{"a":1} ',
    b'{"a":"\x7f"}',
    b'{"a":' + b"[" * 63 + b"]" * 63 + b"}",  # depth 64
    b'{"":""}',
    b'{"a":1,"a":2}',
]

INVALID_JSON = [
    b"",
    b" ",
    b"[]",
    b"[1]",
    b'"a"',
    b"1",
    b"null",
    b' {"a":1}',
    b'{"a":1}x',
    b'{"a":1}{}',
    b'{"a":1}\n',
    b'{"a":"\n"}',
    b'{"a":"\t"}',
    b'{\t"a":1}',
    b'{\n"a":1}',
    b'{"a":"\x00"}',
    b'{"a":"\x1b"}',
    b'{"a":1,}',
    b'{,}',
    b'{"a"}',
    b'{"a":}',
    b'{"a" 1}',
    b"{a:1}",
    b"{'a':1}",
    b'{"a":01}',
    b'{"a":.5}',
    b'{"a":1.}',
    b'{"a":1e}',
    b'{"a":-}',
    b'{"a":+1}',
    b'{"a":0x10}',
    b'{"a":NaN}',
    b'{"a":Infinity}',
    b'{"a":tru}',
    b'{"a":nul}',
    b'{"a":"\\x41"}',
    b'{"a":"\\u12"}',
    b'{"a":"\\u12g4"}',
    b'{"a":"abc',
    b'{"a":"abc\\"}',
    b'{"a":1',
    b'{"a":[1,2}',
    b'{"a":[1,2]]}',
    b'{"a":"\xff"}',
    b'{"a":"\xc3"}',
    b'{"a":"\xc0\xaf"}',
    b'{"a":"\xe0\x80\xaf"}',
    b'{"a":"\xed\xa0\x80"}',
    b'{"a":"\xf4\x90\x80\x80"}',
    b'{"\xff":1}',
    b'{"a":' + b"[" * 99 + b"]" * 99 + b"}",  # depth 100
    b'{"a":' + b"[" * 64 + b"]" * 64 + b"}",  # depth 65
    b'{"a":' + b'{"a":' * 99 + b"1" + b"}" * 100,
]


@pytest.mark.parametrize("text", VALID_JSON)
def test_json_valid_accepts(text):
    assert lib.lsr_json_valid(text, len(text)) == 1
    assert isinstance(json.loads(text), dict)


@pytest.mark.parametrize("text", INVALID_JSON)
def test_json_valid_rejects(text):
    assert lib.lsr_json_valid(text, len(text)) == 0


def test_json_valid_respects_the_length_it_is_given():
    text = b'{"a":1}garbage'
    assert lib.lsr_json_valid(text, 7) == 1
    assert lib.lsr_json_valid(text, 6) == 0
    assert lib.lsr_json_valid(text, len(text)) == 0
