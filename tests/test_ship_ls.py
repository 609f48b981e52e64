"""The ls:// frame codec: fed whole, byte by byte and with trailing garbage; bad frames refused."""
from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given, strategies as st

from logger_system.ship import ls


def _lines(first: int, count: int) -> bytes:
    return b"".join(json.dumps({"seq": i * 8, "n": first + i, "msg": f"m{i}"}).encode() + b"\n"
                    for i in range(count))


def _conversation() -> bytes:
    return b"".join([ls.hello(0xABCDEF0123456789), ls.batch(5, _lines(5, 3), 3, head={"chunks": 2}),
                     ls.batch(8, b"", 0), ls.bye()])


def test_frames_fed_whole_or_byte_by_byte_decode_the_same():
    data = _conversation()
    whole = ls.Decoder().feed(data)
    d = ls.Decoder()
    one = [f for i in range(len(data)) for f in d.feed(data[i:i + 1])]
    assert whole == one and [f.kind for f in whole] == [ls.HELLO, ls.BATCH, ls.BATCH, ls.BYE]
    assert ls.parse_source(whole[0].json()) == 0xABCDEF0123456789
    b = ls.parse_batch(whole[1].payload)
    assert (b.first_n, b.count, b.head, b.gap) == (5, 3, {"chunks": 2}, 0)
    assert [json.loads(x)["n"] for x in b.lines.splitlines()] == [5, 6, 7]
    assert d.pending == 0


def test_trailing_bytes_of_an_incomplete_frame_wait_and_garbage_is_refused():
    d = ls.Decoder()
    frames = d.feed(ls.welcome(7) + ls.ack(9)[:3])
    assert [ls.parse_next_n(f.json(), "w") for f in frames] == [7] and d.pending == 3
    with pytest.raises(ls.ProtocolError, match="unknown frame kind"):
        ls.Decoder().feed(ls.ack(1) + b"Zgarbage")
    d = ls.Decoder()
    with pytest.raises(ls.ProtocolError):
        d.feed(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(ls.ProtocolError):  # spent: every later feed says so
        d.feed(ls.ack(1))


@pytest.mark.parametrize("frame", [
    struct.pack(">cI", b"B", ls.MAX_FRAME + 1),        # a batch over the limit
    struct.pack(">cI", b"A", ls.MAX_CONTROL + 1),      # a control frame over its limit
    struct.pack(">cI", b"H", 0xFFFFFFFF),              # a length that is all ones
])
def test_an_oversize_length_is_refused_before_its_bytes_arrive(frame):
    with pytest.raises(ls.ProtocolError, match="over the limit"):
        ls.Decoder().feed(frame)


@pytest.mark.parametrize("payload,match", [
    (b'{"first_n": 1, "count": 2}\n{"n":1}\n', "2 records"),
    (b'{"first_n": 1, "count": 1}\n{"n":1}', "1 records"),
    (b'{"first_n": -1, "count": 0}\n', "integers"),
    (b'{"first_n": "1", "count": 0}\n', "integers"),
    (b'{"first_n": 1, "count": 0, "head": 5}\n', "head"),
    (b'{"first_n": 1, "count": 0}\nstray', "0 records"),
    (b'[1, 2]\n', "object"),
    (b'\xff\xfe\n', "JSON"),
    (b'no newline at all', "header line"),
])
def test_a_malformed_batch_is_a_protocol_error(payload, match):
    with pytest.raises(ls.ProtocolError, match=match):
        ls.parse_batch(payload)


@pytest.mark.parametrize("obj", [{"version": 2, "source": "0" * 16}, {"version": 1, "source": "xyz"},
                                 {"version": 1, "source": "0" * 15 + "G"}, {"version": 1}])
def test_a_hello_must_name_version_1_and_a_source_tag(obj):
    with pytest.raises(ls.ProtocolError):
        ls.parse_source(obj)


@given(first=st.integers(0, 1 << 62), count=st.integers(0, 50), gap=st.integers(0, 1000),
       cut=st.integers(1, 64))
def test_batches_round_trip_in_any_pieces(first, count, gap, cut):
    frame = ls.batch(first, _lines(first, count), count, gap=gap)
    d = ls.Decoder()
    frames = [f for i in range(0, len(frame), cut) for f in d.feed(frame[i:i + cut])]
    assert len(frames) == 1
    b = ls.parse_batch(frames[0].payload)
    assert (b.first_n, b.count, b.gap) == (first, count, gap) and b.lines == _lines(first, count)


@given(sizes=st.lists(st.tuples(st.integers(0, 30), st.integers(0, 3)), min_size=0, max_size=30),
       max_bytes=st.integers(1, 3000), max_records=st.integers(1, 40))
def test_spooled_frames_join_into_batches_within_bounds_and_never_across_a_gap(sizes, max_bytes, max_records):
    from logger_system.ship.shipper import joined
    from logger_system.ship.spool import Frame

    frames, n = [], 0
    for count, gap in sizes:
        n += gap
        if count:
            frames.append(Frame(n, count, _lines(n, count)))
        n += count
    out = list(joined(iter(frames), max_bytes, max_records))
    assert [r for f in out for r in range(f.first_n, f.end_n)] == [r for f in frames for r in range(f.first_n, f.end_n)]
    for f in out:
        rows = f.lines.splitlines(keepends=True)
        assert [json.loads(r)["n"] for r in rows] == list(range(f.first_n, f.end_n))
        assert f.count <= max_records and (len(f.lines) <= max_bytes or f.count == 1)
    # where the numbers jump (a gap the header must tell), a batch starts
    after_gap = {f.first_n for prev, f in zip(frames, frames[1:]) if f.first_n != prev.end_n}
    assert after_gap <= {f.first_n for f in out}
    if max_bytes >= 3000 and max_records >= 40:
        assert len(out) <= len(frames)


def test_welcome_says_the_servers_largest_frame_and_a_bad_one_is_refused():
    (w,) = ls.Decoder().feed(ls.welcome(7, 65536))
    assert ls.parse_next_n(w.json(), "welcome") == 7 and ls.parse_max_frame(w.json()) == 65536
    assert ls.parse_max_frame(ls.Decoder().feed(ls.welcome(7))[0].json()) is None
    with pytest.raises(ls.ProtocolError, match="max_frame"):
        ls.parse_max_frame({"next_n": 1, "max_frame": 12})


@pytest.mark.parametrize("max_frame", [1024, 4096, 1 << 20, ls.MAX_FRAME, None])
def test_an_ls_session_keeps_its_batches_under_the_frame_the_server_takes(max_frame):
    from types import SimpleNamespace

    from logger_system.ship.shipper import BATCH_BYTES, LsSession, joined
    from logger_system.ship.spool import Frame

    session = object.__new__(LsSession)
    session.client = SimpleNamespace(max_frame=max_frame)
    frames = [Frame(n, 50, _lines(n, 50)) for n in range(0, 20000, 50)]
    head = {"file": "ab" * 16, "chunk": 123456, "digest": "cd" * 32, "next_n": 1 << 40}
    limit = max_frame or BATCH_BYTES
    out = list(joined(iter(frames), *session.batch_limits()))
    assert sum(f.count for f in out) == 20000
    for f in out:
        assert len(ls.batch(f.first_n, f.lines, f.count, head=head, gap=12345)) - 5 <= limit
