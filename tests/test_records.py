"""Property tests: what a producer writes comes out of drain + FormatJsonl as JSON that says the same.

One ring per test function, reused by every example: each example writes,
drains everything and releases it, so the ring is empty again for the next.
"""
from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from logger_system import connect
from logger_system._native import ffi, lib
from logger_system.pipeline import Batch
from logger_system.pipeline.stages import FormatJsonl
from logger_system.producer import Producer
from logger_system.record import LEVEL_NAMES, META_DTYPE

CAPACITY = 1 << 20
MAX_RECORD = 256 * 1024
META_SIZE = META_DTYPE.itemsize
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")

SETTINGS = settings(max_examples=200, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


def sub(text: str) -> str:
    """The producer's documented substitution: lone surrogates become backslash escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def sub_json(value):
    if isinstance(value, str):
        return sub(value)
    if isinstance(value, list):
        return [sub_json(v) for v in value]
    if isinstance(value, dict):
        return {sub(k): sub_json(v) for k, v in value.items()}
    return value


def level_name(level: int) -> str:
    return LEVEL_NAMES.get(level, f"Level {level}")


class RingDrain:
    """Drain everything committed, format it, release it; return the parsed lines.

    Everything is released before anything is checked, so that a failing
    example leaves an empty ring to the next one."""

    def __init__(self, ring) -> None:
        self.ring = ring
        self.meta = ffi.new("lsr_meta[]", 1024)
        self.buf = ffi.new("uint8_t[]", ring.capacity)
        b = ffi.new("lsr_batch *")
        b.meta, b.buf, b.max_records, b.buf_cap = self.meta, self.buf, 1024, ring.capacity
        self.b = b
        self.fmt = FormatJsonl()

    def __call__(self) -> list[tuple[dict, bytes]]:
        outputs = []  # (seqs, formatted text) per batch
        lost = []
        b = self.b
        while True:
            cursor = lib.lsr_head(self.ring.ptr)
            assert lib.lsr_drain(self.ring.ptr, cursor, b) == 0
            if b.end == cursor:
                assert not b.stalled
                break
            if b.malformed or b.abandoned:
                lost.append({"malformed": b.malformed, "abandoned": b.abandoned})
            n = b.n
            if n:
                meta = np.frombuffer(ffi.buffer(self.meta, n * META_SIZE), META_DTYPE).copy()
                buf = ffi.buffer(self.buf, b.buf_len)[:]
                outputs.append((meta["seq"].tolist(), self.fmt(Batch(meta=meta, buf=buf, end=b.end)).out))
            d = ffi.new("lsr_totals *")
            d.written, d.malformed, d.abandoned = n, b.malformed, b.abandoned
            assert lib.lsr_release(self.ring.ptr, b.end, d) == 0

        assert lost == [], f"records lost in the ring: {lost}"
        out = []
        for seqs, text in outputs:
            assert text.endswith(b"\n") and text.count(b"\n") == len(seqs)
            for seq, line in zip(seqs, text.split(b"\n")[:-1]):
                obj = json.loads(line)
                assert obj["seq"] == seq
                out.append((obj, line))
        return out


@pytest.fixture
def ring(ring_name):
    log = connect(ring_name, capacity=CAPACITY, max_record=MAX_RECORD, on_full="drop")
    yield log.ring
    log.ring.close()


def check_line(line: bytes) -> None:
    assert b"\n" not in line and b"\r" not in line and b"\x1b" not in line and b"\x00" not in line


# ---------------------------------------------------------------------------
# producer -> ring -> drain -> JSON line

json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30))
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children,
                                                                      max_size=4),
    max_leaves=12,
)


def no_surrogates(s: str) -> bool:
    return not any(0xD800 <= ord(c) <= 0xDFFF for c in s)


# keyword names the Producer methods take themselves cannot be fields
RESERVED = {"msg", "self", "level"}
field_keys = st.text(max_size=12).filter(lambda k: k not in RESERVED)
levels = st.sampled_from([0, 10, 20, 30, 40, 50]) | st.integers(min_value=0, max_value=255)


@SETTINGS
@given(msg=st.text(max_size=300), logger=st.text(max_size=40), level=levels)
@example(msg="\ud800\udc00 pair of lone halves \udfff", logger="\udcff", level=20)
@example(msg="\x00\x1b[31m\r\n\t\x7f\x85\u2028\u2029\"\\", logger="a\nb", level=7)
@example(msg="%s %d %(x)s %", logger="", level=0)
def test_message_logger_and_level_round_trip(ring, msg, logger, level):
    drain = RingDrain(ring)
    log = Producer(ring, name=logger, on_full="drop")
    assert log.log(level, msg) is True
    ((obj, line),) = drain()
    check_line(line)
    assert obj["msg"] == sub(msg)
    assert obj["logger"] == sub(logger)
    assert obj["level"] == level_name(level)
    assert obj["pid"] == os.getpid()
    assert TS_RE.match(obj["ts"])
    assert "fields" not in obj


@SETTINGS
@given(fields=st.dictionaries(field_keys.filter(no_surrogates), json_values, max_size=6),
       msg=st.text(max_size=50))
@example(fields={"v": "\ud800", "l": ["\udfff", {"k": "\udc80x"}]}, msg="s")
@example(fields={"ctl": "\x00\x1b\r\n\u2028\x85", "": None, "big": 2**70, "f": -0.0}, msg="")
def test_fields_round_trip(ring, fields, msg):
    drain = RingDrain(ring)
    log = Producer(ring, name="props", on_full="drop")
    assert log.info(msg, **fields) is True
    ((obj, line),) = drain()
    check_line(line)
    assert obj["msg"] == sub(msg)
    if fields:
        assert obj["fields"] == sub_json(fields)
    else:
        assert "fields" not in obj


@SETTINGS
@given(fields=st.dictionaries(field_keys, json_scalars, min_size=1, max_size=4))
@example(fields={"\ud800": 1, "ok": 2})
def test_fields_with_any_key_round_trip(ring, fields):
    # keys are text too: a lone surrogate in a key is substituted like one in a value
    drain = RingDrain(ring)
    log = Producer(ring, name="props", on_full="drop")
    assert log.info("k", **fields) is True
    ((obj, line),) = drain()
    check_line(line)
    assert obj["fields"] == sub_json(fields)


@SETTINGS
@given(values=st.lists(st.floats(), min_size=1, max_size=4))
@example(values=[float("nan")])
@example(values=[float("inf"), float("-inf")])
def test_any_float_field_keeps_the_record(ring, values):
    drain = RingDrain(ring)  # asserts nothing drained is malformed
    log = Producer(ring, name="props", on_full="drop")
    assert log.info("floats", v=values) is True
    ((obj, line),) = drain()
    check_line(line)
    assert obj["msg"] == "floats"
    got = obj["fields"]["v"]
    assert len(got) == len(values)
    for g, v in zip(got, values):
        if v == v and abs(v) != float("inf"):
            assert g == v


@SETTINGS
@given(template=st.text(alphabet=st.characters(blacklist_characters="%"), max_size=40),
       args=st.lists(st.integers() | st.text(max_size=20) | st.floats(allow_nan=False), max_size=4))
def test_percent_args_match_stdlib_formatting(ring, template, args):
    drain = RingDrain(ring)
    log = Producer(ring, name="props", on_full="drop")
    fmt = template + " %s" * len(args)
    assert log.info(fmt, *args) is True
    ((obj, line),) = drain()
    check_line(line)
    expected = fmt % tuple(args) if args else fmt
    assert obj["msg"] == sub(expected)


# ---------------------------------------------------------------------------
# the C checker and formatter on arbitrary bytes


@settings(max_examples=300, deadline=None, database=None)
@given(data=st.binary(max_size=200))
@example(data=b'{"a":1}')
@example(data=b'{"a":"\xed\xa0\x80"}')
@example(data=b'{"a":' + b"[" * 70)
def test_json_valid_on_arbitrary_bytes(data):
    ok = lib.lsr_json_valid(data, len(data))
    assert ok in (0, 1)
    if ok:
        obj = json.loads(data)
        assert isinstance(obj, dict)
        assert b"\n" not in data and b"\r" not in data and b"\t" not in data


json_texts = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None, database=None)
@given(obj=st.dictionaries(st.text(max_size=8), json_texts, max_size=4),
       ensure_ascii=st.booleans(), spaced=st.booleans())
def test_json_valid_accepts_what_python_writes(obj, ensure_ascii, spaced):
    sep = (", ", ": ") if spaced else (",", ":")
    text = json.dumps(obj, ensure_ascii=ensure_ascii, separators=sep)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: not UTF-8, so rejected below
        data = text.encode("utf-8", "surrogatepass")
        assert lib.lsr_json_valid(data, len(data)) == 0
        return
    assert lib.lsr_json_valid(data, len(data)) == 1


def record_parts():
    return st.tuples(
        st.binary(max_size=120),                       # msg: any bytes
        st.text(max_size=20).map(lambda s: s.encode("utf-8", "backslashreplace")),  # logger
        st.sampled_from([b"", b"{}", b'{"a":1}', b'{"k":["x",{"y":null}],"u":"\xc3\xa9"}']),
        st.integers(min_value=0, max_value=2**32 - 1),  # level
        st.integers(min_value=0, max_value=2**64 - 1),  # ts_ns
        st.integers(min_value=0, max_value=2**32 - 1),  # pid
        st.booleans(),                                  # keep
    )


@settings(max_examples=200, deadline=None, database=None)
@given(parts=st.lists(record_parts(), min_size=1, max_size=8),
       seq0=st.integers(min_value=0, max_value=2**63))
@example(parts=[(b"\xff\xfe\x1b\x00\r\n\xc2\x9b\xe2\x80\xa8", b"x", b"", 20, 0, 1, True)], seq0=0)
@example(parts=[(b"m", b"", b"{}", 2**32 - 1, 2**64 - 1, 2**32 - 1, True)], seq0=2**63)
def test_formatter_on_arbitrary_records(parts, seq0):
    buf = bytearray()
    meta = np.zeros(len(parts), META_DTYPE)
    keep = np.zeros(len(parts), np.uint8)
    for i, (msg, logger, fields, level, ts, pid, k) in enumerate(parts):
        off = len(buf)
        buf += msg + logger + fields
        # seq, ts_ns, pid, tid, msg_off, msg_len, logger_off, logger_len, fields_off,
        # fields_len, level, flags
        meta[i] = (seq0 + 64 * i, ts, pid, pid, off, len(msg), off + len(msg), len(logger),
                   off + len(msg) + len(logger), len(fields), level, 0)
        keep[i] = k
    assume(keep.any())
    batch = FormatJsonl()(Batch(meta=meta, buf=bytes(buf), end=0, keep=keep))
    out = batch.out
    kept = [i for i in range(len(parts)) if keep[i]]
    assert out.endswith(b"\n") and out.count(b"\n") == len(kept)
    assert b"\x1b" not in out and b"\r" not in out and b"\x00" not in out
    for i, line in zip(kept, out.split(b"\n")[:-1]):
        msg, logger, fields, level, ts, pid, _ = parts[i]
        obj = json.loads(line)
        assert obj["seq"] == seq0 + 64 * i
        assert obj["pid"] == pid
        assert obj["level"] == level_name(level)
        assert TS_RE.match(obj["ts"]), obj["ts"]
        assert obj["logger"] == logger.decode("utf-8")
        try:
            text = msg.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None:
            assert obj["msg"] == text
        else:
            assert "\ufffd" in obj["msg"]
        if fields:
            assert obj["fields"] == json.loads(fields)
        else:
            assert "fields" not in obj
    assert batch.last_seq == seq0 + 64 * kept[-1]
