"""Garbage stored into the ring's header while real producers log and a real writer drains.

Each test maps the segment from /dev/shm as any process of the user could, stores a
value into one header field, and checks that the writer keeps running (or that a
restarted one runs), that later records of well-behaved producers reach the files, and
that what the writer set right is counted in `header_repairs`.
"""
from __future__ import annotations

import json
import mmap
import os
import struct
import subprocess
import sys
import time

import pytest

from conftest import read_records, stats, wait_for

# byte offsets in the header (native/ring.c, hdr_t)
FIELDS = {
    "magic": (0, "Q"), "version": (8, "I"), "header_bytes": (12, "I"), "capacity": (16, "Q"),
    "max_record": (24, "I"), "owner_uid": (28, "I"), "ring_id": (32, "Q"), "created_ns": (40, "Q"),
    "ready": (48, "I"), "removed": (52, "I"), "tail": (64, "Q"), "head": (128, "Q"),
    "high_water": (192, "Q"), "writer_pid": (448, "i"), "active": (452, "I"), "writer_start": (456, "Q"),
    "heartbeat": (464, "Q"), "totals_gen": (512, "Q"),
    # in totals[gen & 1], the current buffer; totals1: in the other one
    "totals.head": (576, "Q"), "totals.written": (584, "Q"), "totals1.head": (576, "Q"),
}

# a producer that logs until told to stop, then exits 0 (any exception: non-zero)
PRODUCER = r"""
import sys, time
from logger_system import connect
log = connect(sys.argv[1], on_full=sys.argv[3])
tag, deadline, i = sys.argv[2], time.monotonic() + float(sys.argv[4]), 0
while time.monotonic() < deadline:
    log.info("rec", tag=tag, i=i)
    i += 1
    if i % 50 == 0:
        time.sleep(0.001)
print(i)
"""


class Header:
    def __init__(self, ring: str) -> None:
        fd = os.open(f"/dev/shm/{ring}", os.O_RDWR)
        try:
            self.mm = mmap.mmap(fd, 4096)
        finally:
            os.close(fd)

    def where(self, field: str) -> tuple[int, str]:
        off, fmt = FIELDS[field]
        if field.startswith("totals"):  # the current buffer (totals_gen & 1), or the other one
            gen = struct.unpack_from("=Q", self.mm, FIELDS["totals_gen"][0])[0]
            off += 128 * ((gen + field.startswith("totals1")) & 1)
        return off, fmt

    def get(self, field: str) -> int:
        off, fmt = self.where(field)
        return struct.unpack_from("=" + fmt, self.mm, off)[0]

    def put(self, field: str, value: int) -> None:
        off, fmt = self.where(field)
        bits = struct.calcsize(fmt) * 8
        if fmt == "i":
            value = (value + (1 << 31)) % (1 << 32) - (1 << 31)
        else:
            value %= 1 << bits
        struct.pack_into("=" + fmt, self.mm, off, value)

    def close(self) -> None:
        self.mm.close()


def producer(ring: str, tag: str, seconds: float, on_full: str = "drop") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PRODUCER, ring, tag, on_full, str(seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(p: subprocess.Popen, timeout: float = 30.0) -> None:
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise
    assert p.returncode == 0, err.decode(errors="replace")


def tags(directory) -> set:
    return {(r.get("fields") or {}).get("tag") for r in read_records(directory)}


def arrives(directory, tag: str, timeout: float = 30.0) -> None:
    wait_for(lambda: tag in tags(directory), timeout=timeout, what=f"records tagged {tag}")


def identity_holds(ring: str) -> None:
    """Once the writer has drained everything, every committed record is accounted for."""
    def settled():
        d = stats(ring)
        return d["used_bytes"] == 0 and d["in_ring"] == 0 and d
    d = wait_for(settled, timeout=30, what="the ring drained")
    assert d["committed"] == (d["written"] + d["malformed"] + d["filtered"] + d["sanitize_dropped"]
                              + d["denied"]), d


def test_the_offsets_here_are_the_rings(ring_name):
    """The offsets above against what the ring reports through its own API."""
    from logger_system import connect
    from logger_system.ring import Ring

    log = connect(ring_name, on_full="drop")
    for i in range(3):
        log.info("x", i=i)
    hdr = Header(ring_name)
    try:
        d = Ring(ring_name, create=False).stats()
        assert hdr.get("magic") == 0x31304752534C534C and hdr.get("capacity") == d.capacity_bytes
        assert hdr.get("max_record") == d.max_record and hdr.get("ring_id") == d.ring_id
        assert hdr.get("tail") == d.tail > 0 and hdr.get("head") == d.head == 0
        assert hdr.get("high_water") == d.high_water_bytes and hdr.get("ready") == 1
        before = d.header_repairs
        hdr.put("totals.written", 77)
        assert Ring(ring_name, create=False).stats().written == 77
        hdr.put("totals.written", 0)
        assert before == 0
    finally:
        hdr.close()
        log.ring.close()


# (field, garbage, what counts it): "repair" in header_repairs; "either" in header_repairs or,
# for a tail moved back inside what producers claimed, as malformed bytes stepped over;
# "none": a field nothing reads until the writer writes it again
GARBAGE = [
    ("tail", lambda v: v + (1 << 40), "repair"),
    ("tail", lambda v: v - 8 if v >= 8 else (1 << 64) - 8, "either"),
    ("tail", lambda v: v + 3, "repair"),
    ("tail", lambda v: 0, "repair"),
    ("head", lambda v: v + (1 << 40), "repair"),
    ("head", lambda v: v + 4096, "repair"),
    ("head", lambda v: 0, "either"),
    ("capacity", lambda v: v * 2, "repair"),
    ("max_record", lambda v: 0xFFFFFFFF, "repair"),
    ("high_water", lambda v: 1 << 62, "repair"),
    ("writer_pid", lambda v: -1, "repair"),
    ("writer_start", lambda v: v ^ 0xFFFF, "repair"),
    ("heartbeat", lambda v: (1 << 64) - 1, "repair"),
    # the writer's next release may store over it before any check sees it (harmless, and not
    # always noticed): the writer runs on and the identity holds, a repair is not always counted
    ("totals_gen", lambda v: v + 1, "none"),
    ("totals.head", lambda v: v ^ (1 << 33), "repair"),
    ("totals1.head", lambda v: v ^ (1 << 33), "none"),
    ("totals.written", lambda v: v + 12345, "repair"),
    ("ring_id", lambda v: v ^ 0xDEADBEEF, "repair"),
    ("created_ns", lambda v: 7, "repair"),
    ("owner_uid", lambda v: 0xFFFF, "repair"),
    ("magic", lambda v: 0, "repair"),
    ("version", lambda v: 99, "repair"),
    ("header_bytes", lambda v: 1, "repair"),
    ("ready", lambda v: 0, "repair"),
    ("removed", lambda v: 1, "repair"),
    # the writer counts it again at each release: a store that one overwrites is not seen
    ("active", lambda v: 1 << 31, "none"),
    ("active", lambda v: 0, "none"),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("field,garbage,counted", GARBAGE, ids=[f"{f}-{i}" for i, (f, *_) in enumerate(GARBAGE)])
def test_running_writer_repairs_a_header_field_under_load(writer_factory, ring_name, field, garbage, counted):
    w = writer_factory().start()
    busy = producer(ring_name, "before", 3.0)
    hdr = None
    try:
        arrives(w.dir, "before")
        hdr = Header(ring_name)
        hdr.put(field, garbage(hdr.get(field)))
        finish(busy)
        late = producer(ring_name, "after", 0.5, on_full="block")
        finish(late)
        arrives(w.dir, "after")
        assert w.proc.poll() is None, w.stderr()
        d = stats(ring_name)
        err = w.stderr()
        if field == "removed":  # a mark no `ring rm` set: the writer finished the removal
            assert '"ring_replaced"' in err, err
        elif counted == "repair":
            assert d["header_repairs"] >= 1, (d, err)
            assert '"header_repaired"' in err, err
        elif counted == "either":
            assert d["header_repairs"] + d["malformed"] >= 1, (d, err)
        if field not in ("removed", "head", "tail", "totals.head", "totals.written"):
            identity_holds(ring_name)
        assert w.stop() == 0, w.stderr()
    finally:
        if hdr is not None:
            hdr.close()
        if busy.poll() is None:
            busy.kill()
            busy.communicate()


# (field, garbage, counted): whether the restarted writer has something to set right
RESTART = [("tail", lambda v: v + (1 << 40), True), ("tail", lambda v: 1 << 63, True),
           ("head", lambda v: v + (1 << 40), True), ("head", lambda v: v + 4096, True),
           ("totals.head", lambda v: v + (1 << 40), True), ("totals_gen", lambda v: v + 1, False),
           ("capacity", lambda v: 12345, True), ("max_record", lambda v: 0, True),
           ("removed", lambda v: 1, True), ("magic", lambda v: 0, True), ("version", lambda v: 99, True),
           ("header_bytes", lambda v: 0, True), ("ready", lambda v: 0, True),
           ("high_water", lambda v: 1 << 62, True), ("heartbeat", lambda v: (1 << 64) - 1, True),
           ("writer_pid", lambda v: 1, False), ("ring_id", lambda v: 5, False)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("field,garbage,counted", RESTART, ids=[f"{f}-{i}" for i, (f, *_) in enumerate(RESTART)])
def test_restarted_writer_runs_on_a_damaged_header(writer_factory, ring_name, field, garbage, counted):
    w = writer_factory().start()
    # a producer that logs all along, across the damage and the restart: it must not raise
    busy = producer(ring_name, "during", 4.0)
    try:
        arrives(w.dir, "during")
        assert w.stop() == 0
        hdr = Header(ring_name)
        try:
            hdr.put(field, garbage(hdr.get(field)))
        finally:
            hdr.close()
        time.sleep(0.2)
        w2 = writer_factory().start()
        # long enough to outlast a ring replacement (the writer waits REMOVED_GRACE before it
        # moves; until then a new ring has no writer, and block mode drops rather than wait)
        more = producer(ring_name, "later", 2.0, on_full="block")
        finish(more)
        arrives(w2.dir, "later")
        finish(busy)
        assert w2.proc.poll() is None, w2.stderr()
        err = w2.stderr()
        if counted:
            assert any(e in err for e in ('"header_repaired"', '"ring_discarded"', '"header_unrepairable"')), err
            assert stats(ring_name)["header_repairs"] >= 1, err
        assert w2.stop() == 0, w2.stderr()
    finally:
        if busy.poll() is None:
            busy.kill()
            busy.communicate()


# a process that comes while the ring's name holds a damaged segment: it logs through
# connect() and through the stdlib Handler, and reports what its calls returned
LATECOMER = r"""
import json, logging, sys, time
import logger_system
ring = sys.argv[1]
log = logger_system.connect(ring, name="late")
logger = logging.getLogger("late.std")
logger.addHandler(logger_system.Handler(ring))
logger.propagate = False
before = [log.info("before %d", i) for i in range(5)]
for i in range(5):
    logger.error("std before %s", "secret-arg-%d" % i)
print("waiting", flush=True)
sys.stdin.readline()  # the writer has replaced the segment
deadline, after = time.monotonic() + 20, []
while time.monotonic() < deadline and not any(after):
    after.append(log.info("after"))
    time.sleep(0.05)
logger.error("std after")
print(json.dumps({"before": before, "after": after}), flush=True)
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("damage", ["magic", "version", "ready"])
def test_a_producer_that_finds_a_damaged_segment_drops_counts_and_moves_on(writer_factory, ring_name, damage):
    """No raise from connect(), Handler() or a call while the name holds no ring of this
    version; the calls drop (nothing of them printed); once a writer has replaced the
    segment, the process logs into the new ring, which counts the drops as dropped_damaged."""
    from logger_system.ring import Ring

    r = Ring(ring_name)
    r.close()
    h = Header(ring_name)
    h.put(damage, {"magic": 0x4141414141414141, "version": 99, "ready": 0}[damage])
    h.close()
    p = subprocess.Popen([sys.executable, "-c", LATECOMER, ring_name], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "waiting", p.stderr.read()[-2000:]
        w = writer_factory().start()  # it replaces the segment (Ring.for_writer)
        p.stdin.write("go\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err[-2000:]
        assert "secret-arg" not in err and "Traceback" not in err, err[-2000:]
        res = json.loads(out.strip().splitlines()[-1])
        assert res["before"] == [False] * 5
        assert res["after"][-1] is True
        wait_for(lambda: stats(ring_name)["used_bytes"] == 0, what="drained")
        s = stats(ring_name)
        # 5 Producer calls, 5 Handler calls, and the "after" calls made before the move
        dropped = 10 + len(res["after"]) - 1
        assert s["dropped_damaged"] == dropped and s["dropped"] == dropped, s
        assert s["committed"] == 2 and s["written"] == 2, s
        assert w.stop() == 0, w.stderr()
        identity_holds(ring_name)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)


@pytest.mark.timeout(120)
def test_garbage_in_the_process_table_and_slots_stops_nothing(writer_factory, ring_name):
    """Random bytes over every process-table entry and the producer slots' counts while
    producers log: the writer runs on, producers neither raise nor stall, later records
    arrive, and `stats --json` still reads (its per-process counts are what the table says)."""
    import random

    w = writer_factory().start()
    busy = producer(ring_name, "before", 3.0)
    try:
        arrives(w.dir, "before")
        fd = os.open(f"/dev/shm/{ring_name}", os.O_RDWR)
        try:
            mm = mmap.mmap(fd, 4096 + 1024 * 64 + 512 * 64)
        finally:
            os.close(fd)
        rnd = random.Random(1234)
        try:
            for _ in range(20):
                table = 4096 + 1024 * 64
                mm[table:table + 512 * 64] = rnd.randbytes(512 * 64)
                for slot in range(1024):  # the counts after the claim (proc, unflushed, ...)
                    off = 4096 + slot * 64
                    mm[off + 20:off + 24] = rnd.randbytes(4)
                    mm[off + 40:off + 64] = rnd.randbytes(24)
                time.sleep(0.05)
        finally:
            mm.close()
        finish(busy)
        late = producer(ring_name, "after", 0.5, on_full="block")
        finish(late)
        arrives(w.dir, "after")
        assert w.proc.poll() is None, w.stderr()
        r = subprocess.run([sys.executable, "-P", "-m", "logger_system", "stats", "--ring", ring_name, "--json"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert isinstance(json.loads(r.stdout)["producers"], list)
        identity_holds(ring_name)
        assert w.stop() == 0, w.stderr()
    finally:
        if busy.poll() is None:
            busy.kill()
            busy.communicate()
