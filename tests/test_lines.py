"""The line layout read back in C (logger_system.lines, native/lines.c) against the
general Python paths that hold the rules: the log server's decode and SyslogFormat.format.

Lines are made by the real formatter (FormatJsonl) from records of every kind of text and
field; then both paths must give the same columns and the same messages.  Hostile lines
(any byte changed, cut, repeated) must never be taken by the fast path where the general
one refuses them, or taken differently.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logger_system import lines as layout
from logger_system.pipeline import Batch
from logger_system.pipeline.stages import FormatJsonl
from logger_system.record import META_DTYPE
from logger_system.serve import ingest
from logger_system.ship.ls import ProtocolError
from logger_system.ship.syslog import SyslogFormat, frame

LEVELS = st.sampled_from([0, 10, 20, 30, 40, 50, 5, 25, 45, 99, 255, 256, 70000])
TEXT = st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["", "app.x", "a b", 'x]"\\y', "\u2028", "\x7f\x85", "é" * 20, "a" * 33, "tab\there", "nl\nx"])
KEYS = st.sampled_from(["a", "b", "status", "seq", "bad key", "k=v", 'q"', "x]", "é", "k" * 33, ""]) | st.text(
    max_size=6)
SCALARS = (st.text(max_size=12) | st.integers(-10**20, 10**20) | st.booleans() | st.none()
           | st.floats(allow_nan=False, allow_infinity=False))
VALUES = SCALARS | st.lists(SCALARS, max_size=3) | st.dictionaries(st.text(max_size=3), SCALARS, max_size=2)
FIELDS = st.none() | st.dictionaries(KEYS, VALUES, max_size=5)

RECORD = st.fixed_dictionaries({
    "seq": st.integers(0, 2**64 - 1),
    "ts_ns": st.integers(0, 2**64 - 1),
    "pid": st.integers(0, 2**32 - 1),
    "level": LEVELS,
    "logger": TEXT,
    "msg": TEXT,
    "fields": FIELDS,
    "spaced": st.booleans(),  # fields as json.dumps writes them by default: ", " and ": "
})


def write_lines(records: list[dict], first_n: int) -> bytes:
    """The lines the writer's formatter makes of these records."""
    meta = np.zeros(len(records), META_DTYPE)
    buf = bytearray()
    for i, r in enumerate(records):
        logger = r["logger"].encode("utf-8", "surrogatepass")
        msg = r["msg"].encode("utf-8", "surrogatepass")
        fields = b""
        if r["fields"] is not None:
            seps = (", ", ": ") if r["spaced"] else (",", ":")
            fields = json.dumps(r["fields"], ensure_ascii=False, separators=seps).encode()
        m = meta[i]
        m["seq"], m["ts_ns"], m["pid"], m["level"] = r["seq"], r["ts_ns"], r["pid"], r["level"]
        m["logger_off"], m["logger_len"] = len(buf), len(logger)
        buf += logger
        m["msg_off"], m["msg_len"] = len(buf), len(msg)
        buf += msg
        m["fields_off"], m["fields_len"] = len(buf), len(fields)
        buf += fields
    batch = Batch(meta=meta, buf=memoryview(bytes(buf)), end=0, n=first_n)
    return FormatJsonl()(batch).out


def columns(batch: Batch) -> list[tuple]:
    out = []
    for m in batch.meta:
        text = bytes(batch.buf)
        fields = text[m["fields_off"]:m["fields_off"] + m["fields_len"]]
        out.append((int(m["seq"]), int(m["ts_ns"]), int(m["pid"]), int(m["level"]),
                    text[m["logger_off"]:m["logger_off"] + m["logger_len"]],
                    text[m["msg_off"]:m["msg_off"] + m["msg_len"]],
                    json.loads(fields) if fields else None))
    return out


def outcome(decode, lines: bytes, first_n: int, count: int):
    """The columns a decode gives, or the refusal's message (a level over 255, ...)."""
    try:
        return columns(decode(lines, first_n, count))
    except ProtocolError as e:
        return f"refused: {e}"


def general_messages(fmt: SyslogFormat, lines: bytes, framed: bool = False) -> list[bytes]:
    """What SyslogFormat.format makes of each line (one it refuses makes none)."""
    rows = lines.split(b"\n")
    if rows and rows[-1] == b"":
        rows.pop()
    out = []
    for line in rows:
        try:
            message = fmt.format(json.loads(line))
        except Exception:
            continue
        out.append(frame(message) if framed else message)
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(RECORD, min_size=1, max_size=12), st.integers(0, 2**40))
def test_the_server_decodes_the_writers_lines_as_the_general_path_does(records, first_n):
    lines = write_lines(records, first_n)
    assert outcome(ingest.decode, lines, first_n, len(records)) == \
        outcome(ingest.decode_general, lines, first_n, len(records))


def test_the_fast_path_takes_the_writers_lines():
    records = [{"seq": i, "ts_ns": 1_764_000_000_123_456_000 + i, "pid": 7, "level": 20, "logger": "app",
                "msg": f'm "{i}" ] é \u2028', "fields": {"a": i, "b": "x"}, "spaced": i % 2 == 0}
               for i in range(50)]
    lines = write_lines(records, 1000)
    parsed = layout.parse(lines, 1000)
    assert parsed is not None and len(parsed.meta) == 50 and (parsed.status == layout.OK).all()
    assert parsed.meta["seq"].tolist() == list(range(50))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(RECORD, min_size=1, max_size=12), st.integers(0, 2**40), st.booleans(),
       st.sampled_from([None, 480, 520, 700, 128 * 1024]))
def test_syslog_messages_from_lines_are_the_general_paths(records, first_n, framed, max_octets):
    fmt = SyslogFormat(hostname="host.test", max_octets=max_octets)
    lines = write_lines(records, first_n)
    made = fmt.format_lines(lines, first_n, framed=framed)
    want = general_messages(fmt, lines, framed)
    assert made.messages() == want
    assert len(made.ns) + made.unshippable == len(records)
    assert made.data == b"".join(want)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(RECORD, st.integers(0, 2**40), st.data())
def test_a_hostile_line_is_never_taken_where_the_general_path_refuses_it(record, first_n, data):
    line = write_lines([record], first_n)
    kind = data.draw(st.sampled_from(["byte", "cut", "insert", "dup"]))
    at = data.draw(st.integers(0, len(line) - 1))
    if kind == "byte":
        line = line[:at] + bytes([data.draw(st.integers(0, 255))]) + line[at + 1:]
    elif kind == "cut":
        line = line[:at] + line[at + data.draw(st.integers(1, 8)):]
    elif kind == "insert":
        line = line[:at] + data.draw(st.sampled_from([b" ", b"\\", b'"', b"\n", b"0", b"\\ud800", b"}", b",\"x\":1"])) \
            + line[at:]
    else:
        line = line[:at] + line[at:at + 6] * 2 + line[at + 6:]
    count = max(line.count(b"\n"), 1) if line.endswith(b"\n") else line.count(b"\n") + 1
    parsed = layout.parse(line, first_n, count)
    try:
        general = ingest.decode_general(line, first_n, count)
    except ProtocolError:
        general = None
    if parsed is not None and len(parsed.meta) == count and parsed.all_taken \
            and not (parsed.meta["level"] > 255).any():
        assert general is not None, f"the fast path took a line the general path refuses: {line!r}"
        fast = Batch(meta=parsed.meta, buf=memoryview(parsed.buf), end=0, n=first_n)
        assert columns(fast) == columns(general)
    # and whatever the path, the server's decode agrees with the general one
    try:
        got = ingest.decode(line, first_n, count)
    except ProtocolError:
        assert general is None
    else:
        assert general is not None and columns(got) == columns(general)
    # the syslog shipper makes of it what the general path makes, or counts it
    fmt = SyslogFormat(hostname="h")
    assert fmt.format_lines(line, first_n).messages() == general_messages(fmt, line)


@pytest.mark.parametrize("line", [
    b'{"seq":1,"n":5,"ts":"2026-02-30T00:00:00.000000Z","level":"INFO","pid":1,"logger":"a","msg":"m"}',
    b'{"seq":1,"n":5,"ts":"2026-01-01T00:00:60.000000Z","level":"INFO","pid":1,"logger":"a","msg":"m"}',
    b'{"seq":1,"n":5,"ts":"2026-01-01T00:00:00.000Z","level":"INFO","pid":1,"logger":"a","msg":"m"}',
    b'{"seq":1,"n":5,"ts":"1969-12-31T23:59:59.000000Z","level":"INFO","pid":1,"logger":"a","msg":"m"}',
    b'{"seq":1,"n":5,"ts":"2026-01-01T00:00:00.000000Z","level":"Level 20","pid":1,"logger":"a","msg":"m"}',
    b'{"seq":1,"n":5,"ts":"2026-01-01T00:00:00.000000Z","level":"WARN","pid":1,"logger":"a","msg":"m"}',
    b'{"seq":1,"n":5,"ts":"2026-01-01T00:00:00.000000Z","level":"Level 07","pid":1,"logger":"a","msg":"m"}',
    b'{"seq":01,"n":5,"ts":"2026-01-01T00:00:00.000000Z","level":"INFO","pid":1,"logger":"a","msg":"m"}',
    b'{"seq":1,"n":6,"ts":"2026-01-01T00:00:00.000000Z","level":"INFO","pid":1,"logger":"a","msg":"m"}',
    b'{"seq":1,"n":5,"ts":"2026-01-01T00:00:00.000000Z","level":"INFO","pid":4294967296,"logger":"a","msg":"m"}',
    b'{"seq":18446744073709551616,"n":5,"ts":"2026-01-01T00:00:00.000000Z","level":"INFO","pid":1,"logger":"a",'
    b'"msg":"m"}',
    b'{"seq":1,"n":5,"ts":"2026-01-01T00:00:00.000000Z","level":"INFO","pid":1,"logger":"\\ud800","msg":"m"}',
    b'{"seq":1,"n":5,"ts":"2026-01-01T00:00:00.000000Z","level":"INFO","pid":1,"logger":"a","msg":"\\udc00x"}',
    b'{"seq":1,"n":5,"ts":"2026-01-01T00:00:00.000000Z","level":"INFO","pid":1,"logger":"a","msg":"m\x01"}',
    b'{"seq":1,"n":5,"ts":"2026-01-01T00:00:00.000000Z","level":"INFO","pid":1,"logger":"a","msg":"\xff"}',
    b'{"seq":1,"n":5,"ts":"2026-01-01T00:00:00.000000Z","level":"INFO","pid":1,"logger":"a","msg":"m"} ',
    b'{"seq":1,"n":5,"ts":"2026-01-01T00:00:00.000000Z","level":"INFO","pid":1,"logger":"a","msg":"m"}\r',
    b'{"seq":1,"n":5,"ts":"2026-01-01T00:00:00.000000Z","level":"INFO","pid":1,"logger":"a","msg":"m",'
    b'"fields":{"a":1,"a":2}}',
    b'{"seq":1,"n":5,"ts":"2026-01-01T00:00:00.000000Z","level":"INFO","pid":1,"logger":"a","msg":"m",'
    b'"fields":{"a":NaN}}',
    b'{"seq":1,"n":5,"ts":"2026-01-01T00:00:00.000000Z","level":"INFO","pid":1,"logger":"a","msg":"m",'
    b'"fields":[1]}',
    b'{"seq":1,"n":5,"ts":"2026-01-01T00:00:00.000000Z","level":"INFO","pid":1,"logger":"a","msg":"m",'
    b'"fields":null}',
    b'{"seq":1,"n":5,"ts":"2026-01-01T00:00:00.000000Z","level":"INFO","pid":1,"logger":"a","msg":"m",'
    b'"fields":{"a":-0,"b":1.0,"c":1e2}}',
    b'{"seq":1,"n":5,"ts":"2026-01-01T00:00:00.000000Z","level":"INFO","pid":1,"logger":"a","msg":"m",'
    b'"fields":{"a":"x\\ud800"}}',
    b'{"seq":1,"n":5,"ts":"2026-01-01T00:00:00.000000Z","level":"INFO","pid":1,"logger":"a","msg":"m",'
    b'"fields":{"a":"\\ud83d\\ude00","b":"\\\\ud800"}}',
    b'{"seq":1,"n":5,"ts":"2026-01-01T00:00:00.000000Z","level":"INFO","pid":1,"logger":"a","msg":"m",'
    b'"host":"relay"}',
    b'{"seq":1,"n":5,"ts":"2026-01-01T00:00:00.000000Z","level":"INFO","pid":1,"msg":"m","logger":"a"}',
    b'{"seq":1, "n":5,"ts":"2026-01-01T00:00:00.000000Z","level":"INFO","pid":1,"logger":"a","msg":"m"}',
    b'{"seq":1,"n":5,"ts":"2026-01-01T00:00:00.000000Z","level":"INFO","pid":1,"logger":"a","msg":"m","x":1}',
    b'',
])
def test_edge_lines_go_where_the_general_path_says(line):
    """Each of these is either not the layout (the general path decides: it refuses or takes
    them) or the layout (and then taken exactly as the general path takes it)."""
    for data in (line, line + b"\n"):
        try:
            general = ingest.decode_general(data, 5, 1)
        except ProtocolError:
            general = None
        try:
            got = ingest.decode(data, 5, 1)
        except ProtocolError:
            assert general is None
        else:
            assert general is not None and columns(got) == columns(general)
        fmt = SyslogFormat(hostname="h")
        try:
            want = [fmt.format(json.loads(data))]
        except Exception:
            want = []
        assert fmt.format_lines(data, 5).messages() == want


@settings(max_examples=500, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False) | st.floats(width=32, allow_nan=False,
                                                                             allow_infinity=False), max_size=20))
def test_a_float_field_is_the_text_python_gives_it(values):
    """The C path copies a float as written only when it is Python's repr of its value."""
    fmt = SyslogFormat(hostname="h")
    texts = [json.dumps(v).encode() for v in values] + [b"1E5", b"1.50", b"0.1e1", b"-0.0", b"1e400"]
    lines = b"".join(b'{"seq":1,"n":%d,"ts":"2026-01-01T00:00:00.000000Z","level":"INFO","pid":1,'
                     b'"logger":"a","msg":"m","fields":{"x":%s}}\n' % (i, t) for i, t in enumerate(texts))
    assert fmt.format_lines(lines, 0).messages() == general_messages(fmt, lines, False)


def test_a_field_list_or_object_goes_the_general_path_and_keeps_its_place():
    fmt = SyslogFormat(hostname="h")
    recs = [{"seq": 1, "ts_ns": 10**18, "pid": 1, "level": 20, "logger": "a", "msg": "one", "fields": {"d": [0.25]},
             "spaced": False},
            {"seq": 2, "ts_ns": 10**18, "pid": 1, "level": 20, "logger": "a", "msg": "two", "fields": {"i": 3},
             "spaced": False},
            {"seq": 3, "ts_ns": 10**18, "pid": 1, "level": 20, "logger": "a", "msg": "three",
             "fields": {"o": {"x": [1]}}, "spaced": True}]
    lines = write_lines(recs, 40)
    made = fmt.format_lines(lines, 40, framed=True)
    assert made.ns == [40, 41, 42]
    assert made.messages() == [frame(fmt.format(json.loads(x))) for x in lines.splitlines()]
    assert b'd="[0.25\\]"' in made.messages()[0] and b'o="{\\"x\\":[1\\]}"' in made.messages()[2]


def test_an_empty_frame_makes_no_messages():
    made = SyslogFormat(hostname="h").format_lines(b"", 0, framed=True)
    assert made.data == b"" and made.ns == [] and made.unshippable == 0


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=120) | st.sampled_from([
    b'{"seq":1,"n":0,"ts":"', b'2026-01-01T00:00:00.000000Z', b'","level":"INFO","pid":1,"logger":"',
    b'","msg":"', b'","fields":{', b'"a":', b'"\\u', b'}}', b'"}', b"\n", b"\\"]), max_size=12))
def test_any_bytes_are_read_safely(parts):
    """Bytes of any kind (run under the sanitizers too): never a crash, and the syslog maker
    agrees with the general path on whatever they hold."""
    data = b"".join(parts)
    layout.parse(data, 0)
    fmt = SyslogFormat(hostname="h")
    assert fmt.format_lines(data, 0).messages() == general_messages(fmt, data)
