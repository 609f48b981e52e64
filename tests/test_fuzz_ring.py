"""Fuzzing what the writer trusts least: bytes in shared memory, and the C decoders.

The ring's data area is written by every producer, so the writer decodes it as
untrusted input.  These property tests put arbitrary bytes and record-shaped
garbage (valid-looking words with wrong lengths, slots or checks, lengths past
the end of the garbage, of the data area or of the ring, zero lengths, huge
values, records cut at the wrap point) between records committed by a
Producer, then drain everything the way the writer does (lsr_drain, and
lsr_recover for a stall) and check:

  * nothing crashes and nothing hangs: every loop is bounded by the bytes left;
  * every record the format can still frame comes back intact; a record is
    lost only behind a plausible word whose length reaches over it;
  * decoded offsets and lengths stay inside the batch buffer, records are
    contiguous in it, and each one is what the segment holds at its seq;
  * FormatJsonl (and Sanitize before it) turn whatever was decoded into valid
    JSON lines with no raw control bytes;
  * the counters cover the cursor's movement: a drain that moves the cursor
    returns or counts something unless it only skipped padding, and the totals
    add up.

The decoders are also fuzzed on their own: lsr_json_valid against Python's
json module, lsr_format_jsonl with arbitrary records, and the sanitizer's
scanner (lsr_san_scan_text, lsr_san_scan) with arbitrary text.  Inputs go to
C in buffers of their exact size, so that AddressSanitizer (.ci/sanitizers)
sees a read one byte too far.

LSR_FUZZ_EXAMPLES scales the number of examples (default 1.0); run this file
as a script to drive the same checks with atheris, if it is installed:

    python tests/test_fuzz_ring.py -runs=100000
"""
from __future__ import annotations

import codecs
import datetime
import json
import mmap
import os
import pickle
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st

from logger_system import connect
from logger_system._native import ffi, lib
from logger_system.pipeline import Batch
from logger_system.pipeline.sanitize import Sanitize
from logger_system.pipeline.stages import FormatJsonl
from logger_system.policy import BUILTIN_RULES, Policy
from logger_system.record import LEVEL_NAMES, META_DTYPE
from logger_system.ring import unlink

SCALE = float(os.environ.get("LSR_FUZZ_EXAMPLES", "1"))


def fuzz_settings(examples: int, **kw) -> settings:
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much], **kw)


# ---------------------------------------------------------------------------
# the segment layout (native/ring.h, native/ring.c), host byte order

MAGIC = 0x31304752534C534C
HEADER_BYTES = 4096
SLOTS = 1024
SLOT_BYTES = 64
PROCS = 512  # the process table (LSR_PROCS entries of 64 bytes) sits between slots and data
DATA_OFFSET = HEADER_BYTES + SLOTS * SLOT_BYTES + PROCS * 64
# hdr_t: magic, version, header_bytes, capacity, max_record, owner_uid, ring_id, created_ns, ready,
# 20 bytes of padding, then tail and head, each followed by 56 bytes of padding
TAIL_OFFSET = 64  # hdr_t (native/ring.c): the first 64 bytes are the geometry and identity
HEAD_OFFSET = TAIL_OFFSET + 64
REC_HEADER = lib.LSR_REC_HEADER
REC = struct.Struct("=QQIIIHBBII")  # word ts_ns pid tid msg_len logger_len level flags fields_len reserved
assert REC.size == REC_HEADER

FREE, CLAIMED, COMMITTED, PADDING = 0, 1, 2, 3
M64 = (1 << 64) - 1

CAP = lib.LSR_MIN_CAPACITY  # 64 KiB: the data area wraps every few examples
MAX_RECORD = CAP // 4
META_SIZE = META_DTYPE.itemsize
UINT32_MAX = 0xFFFFFFFF

TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
# bytes that must never stand raw in a formatted line: C0 (the final newline aside), DEL, C1, U+2028/9
RAW_CONTROL = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xa8\xa9]")


def align8(n: int) -> int:
    return (n + 7) & ~7


def word_check(length: int, slot: int, state: int) -> int:
    """The 16-bit check of a record word, as ring.c computes it."""
    x = ((length << 19) ^ (slot << 3) ^ state ^ 0x6C6F67) & M64
    return ((x * 0x9E3779B97F4A7C15) & M64) >> 48


def make_word(length: int, slot: int, state: int) -> int:
    length &= 0xFFFFFFF8
    return (word_check(length, slot & 0xFFFF, state) << 48) | ((slot & 0xFFFF) << 32) | length | (state & 7)


def w_len(w: int) -> int:
    return w & 0xFFFFFFF8


def w_state(w: int) -> int:
    return w & 7


def w_valid(w: int) -> bool:
    state, length, slot = w & 7, w & 0xFFFFFFF8, (w >> 32) & 0xFFFF
    return (CLAIMED <= state <= PADDING and length >= 8 and slot < SLOTS
            and w >> 48 == word_check(length, slot, state))


def plausible(w: int, pos: int, tail: int) -> bool:
    """A word the drain would follow at pos: valid check, and its length stays in the lap and below tail."""
    return w_valid(w) and w_len(w) <= CAP - (pos % CAP) and w_len(w) <= tail - pos


def plausible_at(snap: bytes, start: int, tail: int) -> np.ndarray:
    """plausible() for every word of snap (ring bytes from position start), at once."""
    w = np.frombuffer(snap, "=u8")
    pos = start + 8 * np.arange(len(w), dtype=np.uint64)
    state, length, slot = w & np.uint64(7), w & np.uint64(0xFFFFFFF8), (w >> np.uint64(32)) & np.uint64(0xFFFF)
    x = (length << np.uint64(19)) ^ (slot << np.uint64(3)) ^ state ^ np.uint64(0x6C6F67)
    check = (x * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(48)
    valid = (state >= 1) & (state <= 3) & (length >= 8) & (slot < SLOTS) & ((w >> np.uint64(48)) == check)
    return valid & (length <= np.uint64(CAP) - pos % np.uint64(CAP)) & (length <= np.uint64(tail) - pos)


def exact(data: bytes):
    """A C buffer of exactly len(data) bytes (ffi.new(bytes) would add a terminating NUL)."""
    buf = ffi.new("uint8_t[]", len(data))
    if data:
        ffi.memmove(buf, data, len(data))
    return buf


def _one_byte_at_a_time(err: UnicodeDecodeError) -> tuple[str, int]:
    return "\ufffd", err.start + 1


codecs.register_error("lsr-fuzz-each-byte", _one_byte_at_a_time)


def c_text(b: bytes) -> str:
    """What the formatter makes of bytes: each byte that starts no valid UTF-8 sequence is U+FFFD
    (Python's "replace" would take a whole invalid sequence at once)."""
    return b.decode("utf-8", "lsr-fuzz-each-byte")


def level_name(level: int) -> str:
    return LEVEL_NAMES.get(level, f"Level {level}")


def stamp(ts_ns: int) -> str:
    sec = min(ts_ns // 10**9, 253402300799)  # the formatter keeps hostile stamps 4-digit
    t = datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=sec)
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}." \
           f"{(ts_ns // 1000) % 1_000_000:06d}Z"


def note(what: str) -> None:
    """A hypothesis event (see --hypothesis-show-statistics); nothing outside a hypothesis test."""
    try:
        event(what)
    except Exception:  # noqa: BLE001 - the atheris harness runs the same code
        pass


def check_lines(out: bytes, count: int) -> list[dict]:
    """count JSON objects, one per line, nothing raw that could act on a terminal or split a line."""
    assert (out == b"") == (count == 0)
    assert out.count(b"\n") == count and (not out or out.endswith(b"\n"))
    objs = []
    for line in out.split(b"\n")[:-1]:
        assert not RAW_CONTROL.search(line), line
        obj = json.loads(line.decode("utf-8"))
        assert isinstance(obj, dict)
        assert TS_RE.match(obj["ts"]), obj["ts"]
        objs.append(obj)
    return objs


# ---------------------------------------------------------------------------
# the ring as another process sees it


class Segment:
    """The ring's shared memory, mapped from /dev/shm by name."""

    def __init__(self, name: str) -> None:
        fd = os.open(f"/dev/shm/{name}", os.O_RDWR)
        try:
            self.mm = mmap.mmap(fd, DATA_OFFSET + CAP)
        finally:
            os.close(fd)

    def u64(self, off: int) -> int:
        return struct.unpack_from("=Q", self.mm, off)[0]

    @property
    def tail(self) -> int:
        return self.u64(TAIL_OFFSET)

    @property
    def head(self) -> int:
        return self.u64(HEAD_OFFSET)

    def read(self, pos: int, n: int) -> bytes:
        out = bytearray()
        while n:
            i = pos % CAP
            k = min(n, CAP - i)
            out += self.mm[DATA_OFFSET + i:DATA_OFFSET + i + k]
            pos, n = pos + k, n - k
        return bytes(out)

    def write(self, pos: int, data: bytes) -> None:
        while data:
            i = pos % CAP
            k = min(len(data), CAP - i)
            self.mm[DATA_OFFSET + i:DATA_OFFSET + i + k] = data[:k]
            pos, data = pos + k, data[k:]

    def claim_raw(self, data: bytes, head: int) -> int | None:
        """Claim len(data) bytes at tail and fill them, like lsr_inject but across the end of the
        data area too (a record cut at the wrap point); the position, or None if it does not fit."""
        tail = self.tail
        if tail - head + len(data) > CAP:
            return None
        self.write(tail, data)
        struct.pack_into("=Q", self.mm, TAIL_OFFSET, tail + len(data))
        return tail

    def close(self) -> None:
        self.mm.close()


LOGGERS = ("root", "app.db", "ünïcode", "")
_LAYOUT_CHECKED: list[bool] = []


class Fixture:
    """A fresh ring with its producers and its segment mapped; closed and removed by close()."""

    def __init__(self) -> None:
        self.name = f"lsfuzz-{uuid.uuid4().hex[:12]}"
        self.log = connect(self.name, capacity=CAP, max_record=MAX_RECORD, on_full="drop")
        self.ring = self.log.ring
        self.ptr = self.ring.ptr
        self.producers = {n: self.log if n == "root" else self.log.child(n) for n in LOGGERS}
        self.live_slot = self.ring.slot()
        self.seg = Segment(self.name)
        assert self.seg.u64(0) == MAGIC and self.seg.u64(16) == CAP
        if not _LAYOUT_CHECKED:
            self.check_layout()

    def check_layout(self) -> None:
        """tail and head where this file reads and writes them: one record in and out of a ring."""
        seg, ptr = self.seg, self.ptr
        assert seg.tail == seg.head == 0
        assert lib.lsr_write(ptr, self.live_slot, 20, 0, b"x", 1, b"", 0, b"", 0, 0, 0) == 0
        assert seg.tail == lib.lsr_tail(ptr) == 48 and seg.head == 0
        Drainer(self, 1, CAP).drain_all()
        assert seg.head == lib.lsr_head(ptr) == 48
        _LAYOUT_CHECKED.append(True)

    def close(self) -> None:
        self.seg.close()
        self.ring.close()
        unlink(self.name)


@pytest.fixture
def fx():
    f = Fixture()
    yield f
    f.close()


_STAGES: dict[str, object] = {}


def stages() -> tuple[FormatJsonl, Sanitize, FormatJsonl]:
    """One formatter for the raw batch, and Sanitize + formatter as the writer runs them."""
    if not _STAGES:
        _STAGES["fmt"], _STAGES["san"], _STAGES["san_fmt"] = FormatJsonl(), Sanitize(Policy()), FormatJsonl()
    return _STAGES["fmt"], _STAGES["san"], _STAGES["san_fmt"]


# ---------------------------------------------------------------------------
# what a scenario puts in the ring


@dataclass(frozen=True)
class Rec:
    """A record committed by a Producer."""

    level: int
    msg: str
    fields: tuple
    logger: str


@dataclass(frozen=True)
class Word:
    """One 8-byte word shaped like a record word."""

    state: int
    slot: int
    length: tuple  # see resolve_length
    check: str     # "ok", "flip" (one bit off) or "zero"


@dataclass(frozen=True)
class Image:
    """A whole record image: a word, a header whose lengths may lie, and a payload."""

    word: Word
    ts_ns: int
    pid: int
    tid: int
    level: int
    flags: int
    msg: bytes
    logger: bytes
    fields: bytes
    lens: tuple  # (msg_len, logger_len, fields_len) adjustments, see resolve_field_len
    reserved: int


@dataclass(frozen=True)
class Garbage:
    parts: tuple        # bytes, Word or Image, each starting on a word
    fill: int           # byte that pads bytes and images to a multiple of 8
    mode: str           # "hook": lsr_inject, "raw": written through the mapping, may straddle the end


@dataclass
class Placed:
    pos: int
    size: int


@dataclass
class ValidRec(Placed):
    rec: Rec
    image: bytes = b""


@dataclass
class Scenario:
    start: int
    records: list[ValidRec] = field(default_factory=list)
    garbage: list[Placed] = field(default_factory=list)


def resolve_length(spec: tuple, at: int, own: int, blob_end: int) -> int:
    """A word's length: relative to the word, the blob, the data area, or a raw value."""
    room = CAP - at % CAP
    kind = spec[0]
    if kind == "self":
        return own
    if kind == "blob_end":
        return blob_end - at
    if kind == "words":
        return 8 * spec[1]
    if kind == "past_blob":  # over the records that follow the garbage
        return blob_end - at + 8 * spec[1]
    if kind == "room":  # padding-shaped: to the end of the data area
        return room
    if kind == "room_plus":
        return room + 8 * spec[1]
    return spec[1]


def resolve_field_len(how: str, actual: int, limit: int) -> int:
    return {"exact": actual, "plus1": actual + 1, "plus8": actual + 8, "minus1": max(actual - 1, 0),
            "zero": 0, "huge": limit}[how]


def render_word(w: Word, at: int, own: int, blob_end: int, live_slot: int) -> bytes:
    slot = w.slot if w.slot != live_slot else live_slot + 1  # a live owner's claim is waited for
    length = resolve_length(w.length, at, own, blob_end) & 0xFFFFFFFF
    value = make_word(length, slot, w.state)
    if w.check == "flip":
        value ^= 1 << (48 + (length >> 3) % 16)
    elif w.check == "zero":
        value &= (1 << 48) - 1
    return struct.pack("=Q", value)


def render(g: Garbage, at: int, live_slot: int) -> bytes:
    """The blob's bytes once it is known to start at ring position `at`."""
    sizes = []
    for p in g.parts:
        if isinstance(p, bytes):
            sizes.append(align8(len(p)))
        elif isinstance(p, Word):
            sizes.append(8)
        else:
            sizes.append(align8(REC_HEADER + len(p.msg) + len(p.logger) + len(p.fields)))
    blob_end = at + sum(sizes)
    out = bytearray()
    for p, size in zip(g.parts, sizes):
        here = at + len(out)
        if isinstance(p, bytes):
            out += p + bytes([g.fill]) * (size - len(p))
        elif isinstance(p, Word):
            out += render_word(p, here, 8, blob_end, live_slot)
        else:
            word = render_word(p.word, here, size, blob_end, live_slot)
            msg_len = resolve_field_len(p.lens[0], len(p.msg), UINT32_MAX)
            logger_len = resolve_field_len(p.lens[1], len(p.logger), 0xFFFF) & 0xFFFF
            fields_len = resolve_field_len(p.lens[2], len(p.fields), UINT32_MAX)
            header = REC.pack(0, p.ts_ns, p.pid, p.tid, msg_len & UINT32_MAX, logger_len, p.level,
                              p.flags, fields_len & UINT32_MAX, p.reserved)
            body = word + header[8:] + p.msg + p.logger + p.fields
            out += body + bytes([g.fill]) * (size - len(body))
    assert at + len(out) == blob_end
    return bytes(out)


# ---------------------------------------------------------------------------
# strategies

u8 = st.integers(0, 255)
u32 = st.integers(0, UINT32_MAX)
u64 = st.integers(0, M64)
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=60)

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63) | text
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(text, c, max_size=3),
                           max_leaves=8)
json_docs = st.builds(
    lambda d, sep, ascii_only: json.dumps(d, separators=sep, ensure_ascii=ascii_only).encode(),
    st.dictionaries(text, json_values, max_size=4),
    st.sampled_from([(",", ":"), (", ", ": ")]),
    st.booleans(),
)

LENGTHS = st.one_of(
    st.just(("self",)), st.just(("blob_end",)), st.just(("room",)),
    st.tuples(st.just("words"), st.integers(0, 40)),
    st.tuples(st.just("past_blob"), st.integers(0, 40)),
    st.tuples(st.just("room_plus"), st.integers(1, 4)),
    st.tuples(st.just("raw"), st.sampled_from([0, 8, 40, 48, 1 << 16, CAP // 4, CAP, (1 << 29) - 8, 1 << 29,
                                              0xFFFFFFF8]) | u32),
)
STATES = st.sampled_from([COMMITTED, COMMITTED, COMMITTED, CLAIMED, PADDING, FREE, 4, 7])
SLOT_CHOICES = st.sampled_from([0, 1, 2, 1023, 1024, 0xFFFF]) | st.integers(0, 1100)
words = st.builds(Word, state=STATES, slot=SLOT_CHOICES, length=LENGTHS,
                  check=st.sampled_from(["ok", "ok", "ok", "flip", "zero"]))
record_words = st.builds(Word, state=st.sampled_from([COMMITTED] * 4 + [CLAIMED, PADDING]),
                         slot=SLOT_CHOICES, length=st.just(("self",)) | LENGTHS,
                         check=st.sampled_from(["ok"] * 6 + ["flip"]))
LEN_HOW = st.sampled_from(["exact"] * 6 + ["plus1", "plus8", "minus1", "zero", "huge"])
images = st.builds(
    Image, word=record_words, ts_ns=u64, pid=u32, tid=u32, level=u8, flags=u8,
    msg=st.binary(max_size=64) | text.map(str.encode),
    logger=st.sampled_from([b"", b"root", b"x.y"]) | st.binary(max_size=12),
    fields=st.just(b"") | json_docs | st.binary(max_size=24) | json_docs.map(lambda d: d[:-1]),
    lens=st.tuples(LEN_HOW, LEN_HOW, LEN_HOW), reserved=st.just(0) | u32,
)
# images the drain accepts: garbage that decodes as a record
good_images = st.builds(
    Image, word=st.builds(Word, state=st.just(COMMITTED), slot=SLOT_CHOICES, length=st.just(("self",)),
                          check=st.just("ok")),
    ts_ns=u64, pid=u32, tid=u32, level=u8, flags=u8, msg=st.binary(max_size=64) | text.map(str.encode),
    logger=text.map(str.encode), fields=st.just(b"") | json_docs, lens=st.just(("exact",) * 3),
    reserved=st.just(0) | u32,
)
parts = st.one_of(
    st.binary(min_size=1, max_size=200),
    st.integers(1, 6).map(lambda k: bytes(8 * k)),
    words,
    images,
    good_images,
)
garbage = st.builds(Garbage, parts=st.lists(parts, min_size=1, max_size=6).map(tuple),
                    fill=st.sampled_from([0, 0xFF, 0xA5]), mode=st.sampled_from(["hook", "hook", "raw"]))

field_keys = st.text(st.characters(exclude_categories=["Cs"]), max_size=8).filter(
    lambda k: k not in ("msg", "self", "level"))
field_values = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | text
records = st.builds(
    Rec,
    level=st.sampled_from([0, 10, 20, 30, 40, 50, 255]),
    msg=text | st.integers(200, 3000).map(lambda k: "m" * k),
    fields=st.dictionaries(field_keys, field_values, max_size=3).map(lambda d: tuple(d.items())),
    logger=st.sampled_from(LOGGERS),
)
# where the first item lands: bytes before the end of the data area (CAP: at a lap start)
start_rooms = st.sampled_from([CAP, 8, 16, 40, 48]) | st.integers(1, 400).map(lambda k: 8 * k)
items = st.lists(records | garbage, min_size=1, max_size=10)


# ---------------------------------------------------------------------------
# putting a scenario in the ring


def record_at(before: int, after: int) -> Placed:
    """Where the record that moved tail from `before` to `after` lies (after padding, if any)."""
    room = CAP - before % CAP
    pos = before + room if after - before > room else before
    return Placed(pos, after - pos)


def write_record(fx: Fixture, sc: Scenario, rec: Rec) -> None:
    before = lib.lsr_tail(fx.ptr)
    ok = fx.producers[rec.logger].log(rec.level, rec.msg, **dict(rec.fields))
    after = lib.lsr_tail(fx.ptr)
    if not ok:  # the ring was full: dropped and counted, nothing claimed
        assert after == before
        return
    p = record_at(before, after)
    sc.records.append(ValidRec(p.pos, p.size, rec, fx.seg.read(p.pos, p.size)))


def write_garbage(fx: Fixture, sc: Scenario, g: Garbage) -> None:
    at = lib.lsr_tail(fx.ptr)
    data = render(g, at, fx.live_slot)
    if len(data) > MAX_RECORD:
        return
    pos = None
    if g.mode == "hook":
        rc = lib.lsr_inject(fx.ptr, data, len(data))
        if rc == 0:
            pos = at
        else:
            assert rc == lib.LSR_EFULL  # it would cross the end of the data area, or the ring is full
    if pos is None:
        pos = fx.seg.claim_raw(data, lib.lsr_head(fx.ptr))
    if pos is not None:
        assert pos == at
        sc.garbage.append(Placed(pos, len(data)))
        if pos // CAP != (pos + len(data) - 1) // CAP:
            note("garbage across the end of the data area")


def move_to_room(fx: Fixture, room: int) -> None:
    """Fill and drain records until `room` bytes are left before the end of the data area."""
    for _ in range(16):
        tail = lib.lsr_tail(fx.ptr)
        left = CAP - tail % CAP
        if left == room:
            return
        need = left - room if left > room else left + (CAP - room)
        size = min(need, MAX_RECORD)
        if 0 < need - size < REC_HEADER:  # leave enough for one more record
            size = need - REC_HEADER
        size = max(size, REC_HEADER)  # less than a record: wrap around and come back
        sc = Scenario(tail)
        msg = b"f" * (size - REC_HEADER)
        assert lib.lsr_write(fx.ptr, fx.live_slot, 20, 0, msg, len(msg), b"", 0, b"", 0, 0, 0) == 0
        p = record_at(tail, lib.lsr_tail(fx.ptr))
        sc.records.append(ValidRec(p.pos, p.size, Rec(20, msg.decode(), (), ""), fx.seg.read(p.pos, p.size)))
        drain_and_check(fx, sc)
    raise AssertionError(f"could not move the ring to {room} bytes before the end")


# ---------------------------------------------------------------------------
# draining it the way the writer does, and the checks


@dataclass
class Decoded:
    seq: int
    meta: np.void
    msg: bytes
    logger: bytes
    fields: bytes


@dataclass
class Drained:
    records: list[Decoded] = field(default_factory=list)
    malformed: int = 0
    abandoned: int = 0
    padding_only_moves: int = 0


class Drainer:
    def __init__(self, fx: Fixture, max_records: int, buf_cap: int) -> None:
        self.fx = fx
        self.max_records, self.buf_cap = max_records, buf_cap
        self.meta = ffi.new("lsr_meta[]", max_records)
        self.buf = ffi.new("uint8_t[]", buf_cap)
        b = ffi.new("lsr_batch *")
        b.meta, b.buf, b.max_records, b.buf_cap = self.meta, self.buf, max_records, buf_cap
        self.b = b

    def release(self, upto: int, **delta: int) -> None:
        d = ffi.new("lsr_totals *")
        for k, v in delta.items():
            setattr(d, k, v)
        assert lib.lsr_release(self.fx.ptr, upto, d) == 0

    def drain_all(self) -> Drained:
        ptr, b = self.fx.ptr, self.b
        cursor, tail = lib.lsr_head(ptr), lib.lsr_tail(ptr)
        out = Drained()
        # every step that does not end the loop moves the cursor by at least one word
        for _ in range((tail - cursor) // 8 + 2):
            assert lib.lsr_drain(ptr, cursor, b) == 0
            assert cursor <= b.end <= tail
            assert b.n <= self.max_records and b.buf_len <= self.buf_cap
            if b.end == cursor:
                assert b.n == 0 and b.malformed == 0 and b.abandoned == 0
                if cursor == tail:
                    assert not b.stalled
                    return out
                assert b.stalled, "the drain neither moved nor stalled"
                skip_to, reason = ffi.new("uint64_t *"), ffi.new("int *")
                assert lib.lsr_recover(ptr, cursor, 0, skip_to, reason) == 1, \
                    f"stall at {cursor} with no live claimant was not stepped over"
                assert cursor < skip_to[0] <= tail and skip_to[0] % 8 == 0
                assert reason[0] in (1, 2)
                if reason[0] == 1:
                    out.abandoned += 1
                    self.release(skip_to[0], abandoned=1)
                else:
                    out.malformed += 1
                    self.release(skip_to[0], malformed=1)
                cursor = skip_to[0]
                continue
            batch = self.check_batch(cursor, b.end)
            out.records += batch
            out.malformed += b.malformed
            out.abandoned += b.abandoned
            if not batch and not b.malformed and not b.abandoned:
                # the only silent move: padding, which always reaches the end of the data area
                assert b.end % CAP == 0, (cursor, b.end)
                out.padding_only_moves += 1
            self.release(b.end, written=b.n, malformed=b.malformed, abandoned=b.abandoned)
            cursor = b.end
        raise AssertionError("the ring did not drain within its own size in steps")

    def check_batch(self, start: int, end: int) -> list[Decoded]:
        b = self.b
        n, blen = b.n, b.buf_len
        if not n:
            assert blen == 0
            return []
        meta = np.frombuffer(ffi.buffer(self.meta, n * META_SIZE), META_DTYPE).copy()
        buf = ffi.buffer(self.buf, blen)[:]
        # the decoded records tile the buffer, in ring order, inside [start, end)
        at, prev = 0, -1
        recs = []
        for m in meta:
            seq = int(m["seq"])
            assert start <= seq < end and seq > prev and seq % 8 == 0
            prev = seq
            assert int(m["msg_off"]) == at
            assert int(m["logger_off"]) == at + int(m["msg_len"])
            assert int(m["fields_off"]) == int(m["logger_off"]) + int(m["logger_len"])
            at = int(m["fields_off"]) + int(m["fields_len"])
            assert at <= blen
            msg = buf[int(m["msg_off"]):int(m["logger_off"])]
            logger = buf[int(m["logger_off"]):int(m["fields_off"])]
            fields = buf[int(m["fields_off"]):at]
            logger.decode("utf-8")  # the drain refuses a logger name that is not UTF-8
            if fields:
                assert lib.lsr_json_valid(exact(fields), len(fields)) == 1
                assert isinstance(json.loads(fields.decode("utf-8")), dict)
            assert m["level"] <= 255 and m["flags"] <= 255
            recs.append(Decoded(seq, m, msg, logger, fields))
        assert at == blen

        fmt, san, san_fmt = stages()
        formatted = fmt(Batch(meta=meta.copy(), buf=buf, end=end))
        assert formatted.last_seq == recs[-1].seq
        for d, obj in zip(recs, check_lines(bytes(formatted.out), n)):
            assert obj["seq"] == d.seq and obj["pid"] == int(d.meta["pid"])
            assert obj["level"] == level_name(int(d.meta["level"]))
            assert obj["ts"] == stamp(int(d.meta["ts_ns"]))
            assert obj["logger"] == d.logger.decode("utf-8")
            assert obj["msg"] == c_text(d.msg)
            if d.fields:
                assert obj["fields"] == json.loads(d.fields)
            else:
                assert "fields" not in obj
        # the writer's stages: whatever was decoded is sanitized into valid lines too
        sanitized = san_fmt(san(Batch(meta=meta.copy(), buf=buf, end=end)))
        check_lines(bytes(sanitized.out or b""), sanitized.kept)
        return recs


def drain_and_check(fx: Fixture, sc: Scenario, max_records: int = 4096, buf_cap: int = CAP) -> Drained:
    ptr = fx.ptr
    tail = lib.lsr_tail(ptr)
    before = fx.ring.stats()
    snap = fx.seg.read(sc.start, tail - sc.start)  # the drain zeroes what it releases

    def word(pos: int) -> int:
        return struct.unpack_from("=Q", snap, pos - sc.start)[0]

    got = Drainer(fx, max_records, buf_cap).drain_all()

    after = fx.ring.stats()
    assert after.head == after.tail == tail == lib.lsr_head(ptr) == fx.seg.head
    assert after.written - before.written == len(got.records)
    assert after.malformed - before.malformed == got.malformed
    assert after.abandoned - before.abandoned == got.abandoned
    assert fx.seg.read(sc.start, tail - sc.start) == bytes(tail - sc.start), "released bytes are zeroed"

    valid = {r.pos: r for r in sc.records}
    for r in sc.records:
        assert snap[r.pos - sc.start:r.pos - sc.start + r.size] == r.image, "a committed record changed"
    # a record can only be jumped over from a plausible word before it that is not a record's own
    words = np.frombuffer(snap, "=u8")
    can_follow = plausible_at(snap, sc.start, tail)
    reach = [(q, q + w_len(int(words[i]))) for i in np.nonzero(can_follow)[0].tolist()
             if (q := sc.start + 8 * i) not in valid]

    def shadowed(p: int) -> bool:
        return any(q < p < e for q, e in reach)

    returned = {}
    for d in got.records:
        # each decoded record is what the segment holds at its seq: a plausible committed word,
        # a header whose lengths fill the word's length, and the payload bytes
        w = word(d.seq)
        assert plausible(w, d.seq, tail) and w_state(w) == COMMITTED
        _, ts, pid, tid, msg_len, logger_len, level, flags, fields_len, _ = REC.unpack_from(snap, d.seq - sc.start)
        payload = msg_len + logger_len + fields_len
        assert payload + REC_HEADER <= w_len(w) < payload + REC_HEADER + 8
        assert (ts, pid, tid, level, flags) == (int(d.meta["ts_ns"]), int(d.meta["pid"]), int(d.meta["tid"]),
                                                int(d.meta["level"]), int(d.meta["flags"]))
        body = snap[d.seq - sc.start + REC_HEADER:d.seq - sc.start + REC_HEADER + payload]
        assert (d.msg, d.logger, d.fields) == (body[:msg_len], body[msg_len:msg_len + logger_len],
                                               body[msg_len + logger_len:])
        if d.seq in valid:
            r = valid[d.seq]
            assert w_len(w) == r.size
            assert (d.msg.decode(), d.logger.decode(), int(d.meta["level"]), int(d.meta["pid"])) == \
                (r.rec.msg, r.rec.logger, r.rec.level, os.getpid())
            assert (json.loads(d.fields) if d.fields else {}) == dict(r.rec.fields)
            returned[d.seq] = d
        else:
            assert any(g.pos <= d.seq < g.pos + g.size for g in sc.garbage) or shadowed(d.seq)

    lost = [r for r in sc.records if r.pos not in returned]
    for r in lost:
        assert shadowed(r.pos), f"record at {r.pos} was lost though no plausible word reaches over it"

    # what the counters cover: each count is a distinct cursor stop outside the records returned
    territory = (tail - sc.start) - sum(r.size for r in sc.records if r.pos in returned)
    garbage_decoded = len(got.records) - len(returned)
    assert got.malformed + got.abandoned + garbage_decoded <= territory // 8

    for what, happened in [("a record lost behind a plausible word", lost),
                           ("garbage decoded as a record", garbage_decoded), ("a claim abandoned", got.abandoned),
                           ("malformed", got.malformed), ("padding-only drain", got.padding_only_moves),
                           ("a wrap", tail // CAP != sc.start // CAP)]:
        if happened:
            note(what)
    garbage_words = [q for g in sc.garbage for q in range(g.pos, g.pos + g.size, 8)]
    if not any(can_follow[(q - sc.start) // 8] for q in garbage_words):
        # garbage the format cannot mistake for a record: each stretch of it is stepped over and
        # counted, and costs no record
        runs = 0
        for i, g in enumerate(sc.garbage):
            if i == 0 or sc.garbage[i - 1].pos + sc.garbage[i - 1].size != g.pos:
                runs += 1
        assert not lost and garbage_decoded == 0 and got.abandoned == 0
        assert runs <= got.malformed <= len(garbage_words)
    return got


def run_scenario(fx: Fixture, start_room: int | None, todo: list, max_records: int, buf_cap: int) -> Drained:
    if start_room is not None:
        move_to_room(fx, start_room)
    sc = Scenario(lib.lsr_tail(fx.ptr))
    assert sc.start == lib.lsr_head(fx.ptr)
    for item in todo:
        if isinstance(item, Rec):
            write_record(fx, sc, item)
        else:
            write_garbage(fx, sc, item)
    return drain_and_check(fx, sc, max_records, buf_cap)


# ---------------------------------------------------------------------------
# garbage in the ring


@fuzz_settings(250)
@given(start_room=st.none() | start_rooms, todo=items, max_records=st.sampled_from([1, 3, 4096]),
       buf_cap=st.sampled_from([MAX_RECORD, CAP]))
# a padding-shaped word in the last 8 bytes of the data area, zeros after the wrap: a drain that
# only skips padding, then a stall that is stepped over as malformed
@example(start_room=64, todo=[Rec(20, "before", (), "root"),
                              Garbage((Word(PADDING, 1, ("room",), "ok"), bytes(16), b"rest"), 0, "raw"),
                              Rec(20, "after", (), "root")], max_records=1, buf_cap=CAP)
# a record image that decodes, then a claim of a dead slot
@example(start_room=None, todo=[Garbage((Image(Word(COMMITTED, 9, ("self",), "ok"), 5, 6, 7, 30, 0, b"img",
                                               b"x", b'{"a":1}', ("exact",) * 3, 0),
                                         Word(CLAIMED, 9, ("words", 2), "ok"), bytes(8)), 0, "hook"),
                                 Rec(40, "after", (("k", "v"),), "app.db")], max_records=4096, buf_cap=MAX_RECORD)
def test_garbage_between_records(start_room, todo, max_records, buf_cap):
    fx = Fixture()
    try:
        run_scenario(fx, start_room, todo, max_records, buf_cap)
    finally:
        fx.close()


@fuzz_settings(100)
@given(start_room=start_rooms, before=st.lists(records, max_size=2), raw=st.binary(min_size=1, max_size=600),
       after=st.lists(records, min_size=1, max_size=3), mode=st.sampled_from(["hook", "raw"]))
def test_arbitrary_bytes_between_records(start_room, before, raw, after, mode):
    fx = Fixture()
    try:
        run_scenario(fx, start_room, [*before, Garbage((raw,), 0, mode), *after], 4096, CAP)
    finally:
        fx.close()


def test_record_cut_at_the_wrap_point(fx):
    """A well-formed record image written across the end of the data area: its word claims more than
    is left before the end, so it is malformed, and the record after it is intact."""
    move_to_room(fx, 48)
    sc = Scenario(lib.lsr_tail(fx.ptr))
    img = Image(Word(COMMITTED, 3, ("self",), "ok"), 1, 2, 3, 20, 0, b"m" * 40, b"root", b"", ("exact",) * 3, 0)
    write_garbage(fx, sc, Garbage((img,), 0, "raw"))
    assert sc.garbage[0].pos % CAP == CAP - 48 and sc.garbage[0].size > 48  # it straddles the end
    write_record(fx, sc, Rec(20, "after", (("k", 1),), "root"))
    got = drain_and_check(fx, sc)
    assert [d.msg for d in got.records] == [b"after"] and got.malformed >= 1


@pytest.mark.parametrize("state", [COMMITTED, CLAIMED, PADDING])
def test_plausible_word_reaching_past_the_garbage_hides_what_follows(fx, state):
    """The format's limit, pinned down: a word that passes the check is believed.  Its length
    reaching past the garbage takes the next record with it: counted as one malformed record
    (committed), one abandoned claim (claimed), or not at all (padding, to the end of the data
    area once tail has wrapped: the lost record stays in `in_ring`)."""
    move_to_room(fx, 256)
    sc = Scenario(lib.lsr_tail(fx.ptr))
    write_record(fx, sc, Rec(20, "before", (), "root"))  # 56 bytes
    # one word, then "hidden" (56 bytes): a length of 64 ends where "hidden" ends
    length = ("room",) if state == PADDING else ("past_blob", 7)
    write_garbage(fx, sc, Garbage((Word(state, 5, length, "ok"),), 0, "hook"))
    write_record(fx, sc, Rec(20, "hidden", (), "root"))
    write_record(fx, sc, Rec(20, "a" * 200, (), "root"))  # does not fit: padding, then a lap start
    assert [r.size for r in sc.records] == [56, 56, 248] and sc.records[2].pos % CAP == 0
    got = drain_and_check(fx, sc)
    assert [d.msg for d in got.records if d.seq in (sc.records[0].pos, sc.records[2].pos)] == [b"before", b"a" * 200]
    assert sc.records[1].pos not in [d.seq for d in got.records]
    if state == CLAIMED:
        assert got.abandoned == 1 and got.malformed == 0
    elif state == PADDING:
        assert got.malformed == got.abandoned == 0 and len(got.records) == 2
        assert fx.ring.stats().as_dict()["in_ring"] == 1  # committed, never written nor counted


# ---------------------------------------------------------------------------
# the field validator against Python's json module

JSON_TOKENS = [b"{", b"}", b"[", b"]", b'"', b'"a"', b":", b",", b" ", b"\\", b"\\u", b"\\u00e9", b'\\"',
               b"0", b"-", b"1", b"1.5e3", b"01", b"1.", b".5", b"1e", b"-0", b"true", b"false", b"null", b"nul",
               b"NaN", b"Infinity", b"\x00", b"\t", b"\n", b"\x1f", b"\x7f", b"\xc2\x85", b"\xe2\x80\xa8", b"\xc3\xa9",
               b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xf0\x9f\x98\x80", b"\xc0\xaf", b"\xff", b"\xe2\x80"]
token_soup = st.lists(st.sampled_from(JSON_TOKENS), max_size=30).map(b"".join)


@st.composite
def mutated_docs(draw):
    doc = bytearray(draw(json_docs))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(doc)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "cut"]))
        tok = draw(st.sampled_from(JSON_TOKENS))
        if op == "insert":
            doc[i:i] = tok
        elif op == "delete":
            del doc[i:i + 1]
        elif op == "replace":
            doc[i:i + 1] = tok
        else:
            del doc[i:]
    return bytes(doc)


def depth(v) -> int:
    if isinstance(v, dict):
        return 1 + max((depth(x) for x in v.values()), default=0)
    if isinstance(v, list):
        return 1 + max((depth(x) for x in v), default=0)
    return 0


def _no_constants(name):
    raise ValueError(name)


def python_accepts(s: bytes) -> bool:
    """The field format by Python's json: an object, valid UTF-8, no NaN/Infinity, nesting <= 64,
    and no tab, CR or LF anywhere (space is the only whitespace; raw controls are never in strings)."""
    if not s.startswith(b"{") or any(c in s for c in b"\t\r\n"):
        return False
    try:
        v = json.loads(s.decode("utf-8"), parse_constant=_no_constants)
    except (ValueError, RecursionError):
        return False
    return isinstance(v, dict) and depth(v) <= 64


@fuzz_settings(400)
@given(s=json_docs | mutated_docs() | token_soup | st.binary(max_size=64)
       | st.integers(60, 70).map(lambda d: b'{"a":' + b"[" * (d - 1) + b"]" * (d - 1) + b"}"))
@example(s=b'{"a":1} ')
@example(s=b' {"a":1}')
@example(s=b'{"a":"\\ud800"}')
def test_json_valid_agrees_with_python(s):
    got = lib.lsr_json_valid(exact(s), len(s))
    assert got in (0, 1)
    assert got == python_accepts(s), (s, got)
    if s:  # a shorter length is a different text: the byte after it is never read
        assert lib.lsr_json_valid(exact(s[:-1]), len(s) - 1) == python_accepts(s[:-1])


# ---------------------------------------------------------------------------
# the formatter with arbitrary decoded records


@st.composite
def formatter_batches(draw):
    n = draw(st.integers(1, 8))
    parts, recs = [], []
    for _ in range(n):
        msg = draw(st.binary(max_size=80) | text.map(str.encode))
        logger = draw(st.binary(max_size=16) | st.sampled_from([b"", b"root"]))
        fields = draw(st.just(b"") | json_docs)
        recs.append((draw(u64), draw(u64), draw(u32), draw(u32), draw(u32), draw(u32), msg, logger, fields))
        parts += [msg, logger, fields]
    order = draw(st.permutations(range(len(parts))))  # payloads in any order in the buffer
    keep = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return recs, order, keep


@fuzz_settings(200)
@given(batch=formatter_batches())
def test_format_jsonl_renders_any_decoded_record(batch):
    recs, order, keep = batch
    pieces = [p for r in recs for p in r[6:]]
    buf, offs = b"", {}
    for i in order:
        offs[i] = len(buf)
        buf += pieces[i]
    meta = ffi.new("lsr_meta[]", len(recs))
    for k, (seq, ts, pid, tid, level, flags, msg, logger, fields) in enumerate(recs):
        m = meta[k]
        m.seq, m.ts_ns, m.pid, m.tid, m.level, m.flags = seq, ts, pid, tid, level, flags
        m.msg_off, m.msg_len = offs[3 * k], len(msg)
        m.logger_off, m.logger_len = offs[3 * k + 1], len(logger)
        m.fields_off, m.fields_len = offs[3 * k + 2], len(fields)
    keep_c = exact(bytes(keep))
    cap = lib.lsr_format_bound(len(recs), len(buf))
    out = ffi.new("uint8_t[]", cap)
    size = lib.lsr_format_jsonl(meta, len(recs), exact(buf), keep_c, 7, out, cap)
    assert 0 <= size <= cap
    kept = [r for r, k in zip(recs, keep) if k]
    objs = check_lines(ffi.buffer(out, size)[:], len(kept))
    for i, ((seq, ts, pid, _tid, level, _flags, msg, logger, fields), obj) in enumerate(zip(kept, objs)):
        assert obj["seq"] == seq and obj["pid"] == pid and obj["ts"] == stamp(ts)
        assert obj["n"] == 7 + i and list(obj)[:2] == ["seq", "n"]
        assert obj["level"] == level_name(level)
        assert obj["logger"] == c_text(logger) and obj["msg"] == c_text(msg)
        assert obj.get("fields") == (json.loads(fields) if fields else None)
    # without keep every record is rendered, and a buffer below the bound is refused
    assert lib.lsr_format_jsonl(meta, len(recs), exact(buf), ffi.NULL, 7, out, cap) >= size
    assert lib.lsr_format_jsonl(meta, len(recs), exact(buf), ffi.NULL, 0, out, 64) == lib.LSR_EARG


# ---------------------------------------------------------------------------
# the sanitizer's scanner

SECRETISH = [b"4111 1111 1111 1111", b"4111111111111111", b"123-45-6789", b"user@example.com", b"@", b".",
             b"10.0.0.1", b"256.1.1.1", b"fe80::1", b"::", b":", b"::ffff:10.0.0.1", b"eyJhbGciOiJIUzI1NiJ9",
             b"eyJ", b"AKIAABCDEFGHIJKLMNOP", b"ghp_", b"a" * 36, b"github_pat_", b"xoxb-", b"0123456789",
             b"-----BEGIN RSA PRIVATE KEY-----", b"-----END ", b"-----", b"password", b"=", b": ", b"Bearer ",
             b"Authorization", b"proxy-authorization", b"https://", b"user:pw@", b"token", b"'", b'"', b'\\"',
             b"\\", b"\\u00", b" ", b"\t", b"\n", b"\x00", b"\xff", b"\xc3\xa9", b"-", b"_", b"db.password"]
scan_texts = st.binary(max_size=200) | st.lists(st.sampled_from(SECRETISH), max_size=24).map(b"".join)
san_configs = st.tuples(st.integers(0, (1 << len(BUILTIN_RULES)) - 1) | st.just((1 << len(BUILTIN_RULES)) - 1),
                        st.lists(st.integers(0, 3), min_size=64, max_size=64))


def san_config(enabled: int, actions: list[int], redact: tuple = ()):
    cfg = ffi.new("lsr_san_config *")
    cfg.enabled = enabled | (1 << lib.LSR_R_FIELD if redact else 0)
    for i, a in enumerate(actions):
        cfg.action[i] = a
    names = b"".join(bytes([len(n)]) + n for n in redact)
    keep = exact(names or b"\0")
    cfg.field_names, cfg.field_names_len = keep, len(names)
    return cfg, keep


def check_spans(spans, count: int, regions: list[tuple[int, int, int, bool]], cfg) -> None:
    """Spans sorted, not overlapping, each inside one region (rec, start, end, in_fields) of its record."""
    prev_end = 0
    for k in range(count):
        s = spans[k]
        assert s.len >= 1 and s.start >= prev_end, (k, s.start, s.len, prev_end)
        prev_end = s.start + s.len
        rule = s.rule
        assert rule < len(BUILTIN_RULES) or rule == lib.LSR_R_FIELD
        assert s.action == cfg.action[rule] and s.repl_off == UINT32_MAX and s.repl_len == 0
        assert any(rec == s.rec and a <= s.start and s.start + s.len <= b and bool(s.flags & 2) == f
                   for rec, a, b, f in regions), (s.rec, s.start, s.len, s.flags)


@fuzz_settings(400)
@given(s=scan_texts, config=san_configs, max_spans=st.sampled_from([1, 2, 64]))
def test_scan_text_spans_stay_inside_the_text(s, config, max_spans):
    cfg, _names = san_config(*config)
    spans = ffi.new("lsr_span[]", max_spans)
    got = lib.lsr_san_scan_text(exact(s), len(s), cfg, spans, max_spans)
    assert got == lib.LSR_EFULL or 0 <= got <= max_spans
    more = ffi.new("lsr_span[]", 4096)
    everything = lib.lsr_san_scan_text(exact(s), len(s), cfg, more, 4096)
    assert everything >= 0
    check_spans(more, everything, [(0, 0, len(s), False)], cfg)
    assert all(more[k].flags == 0 and (cfg.enabled >> more[k].rule) & 1 for k in range(everything))
    # a short span array: refused as full when more were found, and the first ones are the same
    assert got == (everything if everything <= max_spans else lib.LSR_EFULL)
    assert ffi.buffer(spans, min(everything, max_spans) * ffi.sizeof("lsr_span"))[:] == \
        ffi.buffer(more, min(everything, max_spans) * ffi.sizeof("lsr_span"))[:]


@st.composite
def scan_batches(draw):
    """Records as the drain hands them over: any message, a UTF-8 logger, fields that pass the validator."""
    n = draw(st.integers(1, 6))
    buf, rows = b"", []
    for _ in range(n):
        msg = draw(scan_texts)
        logger = draw(st.sampled_from([b"", b"root", b"app.db"]))
        fields = draw(st.just(b"") | json_docs | st.lists(st.sampled_from(SECRETISH), max_size=6).map(
            lambda p: json.dumps({"v": b"".join(p).decode("utf-8", "replace"),
                                  "password": 1, "n": 4111111111111111}).encode()))
        assert not fields or lib.lsr_json_valid(fields, len(fields)) == 1
        rows.append((len(buf), msg, logger, fields))
        buf += msg + logger + fields
    return buf, rows


@fuzz_settings(200)
@given(batch=scan_batches(), config=san_configs, redact=st.sampled_from([(), (b"password",), (b"v", b"n")]))
def test_scan_and_sanitize_a_drained_batch(batch, config, redact):
    buf, rows = batch
    meta_np = np.zeros(len(rows), META_DTYPE)
    regions = []
    for i, (off, msg, logger, fields) in enumerate(rows):
        m = meta_np[i]
        m["seq"], m["ts_ns"], m["level"] = 8 * i, 10**18, 20
        m["msg_off"], m["msg_len"] = off, len(msg)
        m["logger_off"], m["logger_len"] = off + len(msg), len(logger)
        m["fields_off"], m["fields_len"] = off + len(msg) + len(logger), len(fields)
        regions += [(i, off, off + len(msg), False),
                    (i, int(m["fields_off"]), int(m["fields_off"]) + len(fields), True)]
    cfg, _names = san_config(*config, redact)
    meta = ffi.new("lsr_meta[]", len(rows))
    ffi.memmove(meta, meta_np.tobytes(), meta_np.nbytes)
    spans = ffi.new("lsr_span[]", 256)
    got = lib.lsr_san_scan(meta, len(rows), exact(buf), ffi.NULL, cfg, spans, 256)
    assert got >= 0
    check_spans(spans, got, regions, cfg)

    # the whole stage, then the formatter: valid lines for every record kept
    policy = Policy(redact_fields=tuple(n.decode() for n in redact))
    batch_ = Sanitize(policy)(Batch(meta=meta_np.copy(), buf=buf, end=8 * len(rows)))
    objs = check_lines(bytes(FormatJsonl()(batch_).out or b""), batch_.kept)
    for obj in objs:
        assert isinstance(obj.get("fields", {}), dict)


def run_in_child(fn, arg, timeout: float = 10.0):
    """fn(arg) in a forked child, so that a C call that never returns fails the test instead of
    hanging it; returns what fn returned."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        try:
            result = (True, fn(arg))
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            result = (False, repr(exc))
        os.write(w, pickle.dumps(result))
        os._exit(0)
    os.close(w)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(r)
            raise AssertionError(f"no result within {timeout} s for {arg!r}")
        time.sleep(0.001)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child died: status {status} for {arg!r}"
    ok, value = pickle.loads(data)
    assert ok, value
    return value


def scan_fields(fields: bytes) -> int:
    cfg, _names = san_config((1 << len(BUILTIN_RULES)) - 1, [0] * 64, (b"password",))
    meta = ffi.new("lsr_meta[]", 1)
    meta[0].fields_len = len(fields)
    spans = ffi.new("lsr_span[]", 64)
    got = lib.lsr_san_scan(meta, 1, exact(fields), ffi.NULL, cfg, spans, 64)
    assert got == lib.LSR_EFULL or 0 <= got <= 64
    if got > 0:
        check_spans(spans, got, [(0, 0, len(fields), True)], cfg)
    return got


@fuzz_settings(150, phases=[Phase.explicit, Phase.generate], report_multiple_bugs=False)
@given(fields=token_soup | mutated_docs() | st.binary(max_size=64))
@example(fields=b"[\x00]")
@example(fields=b'{"a": {"password":')  # a key with nothing after its ':' (read past the end once)
@example(fields=b'[{"name":')
def test_scan_fields_outside_the_drain_contract_terminates(fields):
    """Fields the drain would refuse (they fail lsr_json_valid) must still not hang or crash the scanner."""
    run_in_child(scan_fields, fields, timeout=3.0)


# ---------------------------------------------------------------------------
# atheris: the same checks driven by a coverage-guided fuzzer, when it is installed

# ---------------------------------------------------------------------------
# the header: random stores into its fields while a real writer drains and producers log

# hdr_t fields after tail and head (native/ring.c): high_water, the counters, the writer's
# pid, start and heartbeat, the totals generation and the two totals buffers
HEADER_FIELDS = {
    "magic": (0, "Q"), "version": (8, "I"), "header_bytes": (12, "I"), "capacity": (16, "Q"),
    "max_record": (24, "I"), "owner_uid": (28, "I"), "ring_id": (32, "Q"), "created_ns": (40, "Q"),
    "ready": (48, "I"), "removed": (52, "I"), "tail": (TAIL_OFFSET, "Q"), "head": (HEAD_OFFSET, "Q"),
    "high_water": (HEAD_OFFSET + 64, "Q"), "writer_pid": (HEAD_OFFSET + 320, "I"),
    "active": (HEAD_OFFSET + 324, "I"),
    "writer_start": (HEAD_OFFSET + 328, "Q"), "heartbeat": (HEAD_OFFSET + 336, "Q"),
    "totals_gen": (HEAD_OFFSET + 384, "Q"), "totals0.head": (HEAD_OFFSET + 448, "Q"),
    "totals0.written": (HEAD_OFFSET + 456, "Q"), "totals1.head": (HEAD_OFFSET + 576, "Q"),
    "totals1.written": (HEAD_OFFSET + 584, "Q"),
}
# how a store changes a field: a value outright, or one relative to what is there
header_stores = st.lists(st.tuples(
    st.sampled_from(sorted(HEADER_FIELDS)),
    st.sampled_from(["set", "add", "sub", "xor"]),
    st.one_of(st.integers(0, 64), st.sampled_from([8, 4096, CAP, CAP - 8, 1 << 32, 1 << 40, 1 << 63, M64]),
              st.integers(0, M64)),
    st.integers(0, 40)), min_size=1, max_size=6)


def _store(mm: mmap.mmap, field: str, how: str, value: int) -> None:
    off, fmt = HEADER_FIELDS[field]
    mod = 1 << (8 * struct.calcsize(fmt))
    old = struct.unpack_from("=" + fmt, mm, off)[0]
    new = {"set": value, "add": old + value, "sub": old - value, "xor": old ^ value}[how] % mod
    struct.pack_into("=" + fmt, mm, off, new)


def _writer(name: str, directory: str, err) -> subprocess.Popen:
    cmd = [sys.executable, "-P", "-m", "logger_system", "writer", "--ring", name, "--dir", directory,
           "--plaintext", "--capacity", str(CAP)]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)


def _tags(directory: str) -> set:
    from logger_system.files.reader import iter_records

    return {(r.get("fields") or {}).get("tag") for r in iter_records([Path(directory)])}


def _until(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@fuzz_settings(12, phases=[Phase.explicit, Phase.generate])
@example(stores=[("tail", "add", 1 << 40, 5)])
@example(stores=[("magic", "set", 0, 0), ("head", "xor", 8, 3)])
@given(stores=header_stores)
def test_writer_survives_random_header_stores(stores):
    """The writer keeps running through any stores into the header while a producer in
    another process logs; records logged afterwards reach the files; what it set right is
    counted; and once drained, every committed record of the ring it ends on is accounted for."""
    from logger_system.ring import Ring

    name = f"lshdr-{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory() as tmp:
        logs = os.path.join(tmp, "logs")
        err = open(os.path.join(tmp, "writer.err"), "wb")
        w = _writer(name, logs, err)
        busy = None
        try:
            _until(lambda: _attached(name, w), 20, "the writer")
            busy = subprocess.Popen([sys.executable, "-c", _FUZZ_PRODUCER, name, "busy", "drop", "2.0"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            fd = os.open(f"/dev/shm/{name}", os.O_RDWR)
            try:
                mm = mmap.mmap(fd, HEADER_BYTES)
            finally:
                os.close(fd)
            try:
                for field, how, value, pause_ms in stores:
                    _store(mm, field, how, value)
                    time.sleep(pause_ms / 1000)
            finally:
                mm.close()
            _, perr = busy.communicate(timeout=60)
            assert busy.returncode == 0, perr.decode(errors="replace")
            assert w.poll() is None, open(os.path.join(tmp, "writer.err")).read()
            late = subprocess.run([sys.executable, "-c", _FUZZ_PRODUCER, name, "late", "block", "0.3"],
                                  capture_output=True, timeout=60)
            assert late.returncode == 0, late.stderr.decode(errors="replace")
            _until(lambda: "late" in _tags(logs), 30, "records logged after the stores")
            assert w.poll() is None, open(os.path.join(tmp, "writer.err")).read()
            text = open(os.path.join(tmp, "writer.err")).read()
            for line in text.splitlines():
                json.loads(line)  # every event a JSON line
            def drained():
                r = Ring(name, create=False)
                try:
                    d = r.stats().as_dict()
                finally:
                    r.close()
                return d["used_bytes"] == 0 and d
            d = _until(drained, 30, "the ring drained")
            touched = {f for f, *_ in stores}
            if "header_repaired" in text or "header_unrepairable" in text or "ring_discarded" in text:
                event("repaired")
                assert d["header_repairs"] >= 1 or "ring_replaced" in text, (d, text)
            if not touched & {"tail", "head", "removed", "magic", "version", "header_bytes", "ready",
                              "totals0.head", "totals1.head", "totals_gen"}:
                # nothing that moves records or rings: the identity holds exactly
                assert d["committed"] == (d["written"] + d["malformed"] + d["filtered"]
                                          + d["sanitize_dropped"] + d["denied"]), (d, text)
            w.send_signal(signal.SIGTERM)
            assert w.wait(30) == 0, text
        finally:
            for p in (w, busy):
                if p is not None and p.poll() is None:
                    p.kill()
                    p.wait(10)
            err.close()
            unlink(name)


def _attached(name: str, w: subprocess.Popen) -> bool:
    if w.poll() is not None:
        raise AssertionError(f"writer exited {w.returncode}")
    from logger_system.ring import writer_attached

    return writer_attached(name, w.pid)


_FUZZ_PRODUCER = r"""
import sys, time
from logger_system import connect
log = connect(sys.argv[1], on_full=sys.argv[3])
tag, deadline, i = sys.argv[2], time.monotonic() + float(sys.argv[4]), 0
while time.monotonic() < deadline:
    log.info("rec", tag=tag, i=i)
    i += 1
    if i % 20 == 0:
        time.sleep(0.001)
"""



def atheris_one_input(data: bytes, _state={}) -> None:  # noqa: B006 - one ring per fuzzing process
    import atheris

    fdp = atheris.FuzzedDataProvider(data)
    target = fdp.ConsumeIntInRange(0, 3)
    if target == 0:
        s = fdp.ConsumeBytes(fdp.remaining_bytes())
        assert lib.lsr_json_valid(exact(s), len(s)) == python_accepts(s)
    elif target == 1:
        s = fdp.ConsumeBytes(fdp.remaining_bytes())
        cfg, _names = san_config((1 << len(BUILTIN_RULES)) - 1, [0] * 64)
        spans = ffi.new("lsr_span[]", 64)
        got = lib.lsr_san_scan_text(exact(s), len(s), cfg, spans, 64)
        if got >= 0:
            check_spans(spans, got, [(0, 0, len(s), False)], cfg)
    else:
        if "fx" not in _state:
            _state["fx"] = Fixture()
            # mapped already; libFuzzer's exit() runs no cleanup.  Only the name goes: `ring rm`
            # (unlink()) would also mark the ring removed, and its producers would move away
            lib.lsr_unlink(("/" + _state["fx"].name).encode())
        fx = _state["fx"]
        room = 8 * fdp.ConsumeIntInRange(1, 400) if target == 3 else None
        todo: list = [Rec(20, fdp.ConsumeUnicodeNoSurrogates(40), (), "root")]
        for _ in range(fdp.ConsumeIntInRange(1, 4)):
            raw = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 512))
            if raw:
                todo.append(Garbage((raw,), 0, "raw" if fdp.ConsumeBool() else "hook"))
            todo.append(Rec(fdp.ConsumeIntInRange(0, 255), fdp.ConsumeUnicodeNoSurrogates(60), (), "app.db"))
        run_scenario(fx, room, todo, fdp.ConsumeIntInRange(1, 64), CAP)


def test_atheris_harness_runs_briefly():
    pytest.importorskip("atheris")
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    with tempfile.TemporaryDirectory() as artifacts:  # a crash input is written there, not in the tree
        proc = subprocess.run([sys.executable, __file__, "-runs=1500", "-seed=1",
                               f"-artifact_prefix={artifacts}/"], cwd=root, env=env,
                              capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]


def _instrument_checks() -> None:
    """Coverage feedback from this file's helpers and checks (gcc builds the C code without it)."""
    import atheris

    for obj in list(globals().values()):
        if getattr(obj, "__module__", None) != __name__:
            continue
        funcs = vars(obj).values() if isinstance(obj, type) else [obj]
        for f in funcs:
            if callable(f) and hasattr(f, "__code__") and not f.__name__.startswith("test_"):
                atheris.instrument_func(f)


if __name__ == "__main__":
    import atheris

    _instrument_checks()
    atheris.Setup(sys.argv, atheris_one_input)
    atheris.Fuzz()
