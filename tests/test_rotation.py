"""Rotation and retention policy, file names, and the writer's resume point in a file."""
from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone

import pytest

from logger_system.errors import ConfigError
from logger_system.rotation import (LogFile, RotationPolicy, next_file, parse_duration, parse_size,
                                    to_delete)
from logger_system.files.format import last_seq_in

KiB, MiB, GiB, TiB = 1024, 1024**2, 1024**3, 1024**4

# ---------------------------------------------------------------------------
# sizes


@pytest.mark.parametrize("text, expected", [
    ("4096", 4096),
    (4096, 4096),
    (1, 1),
    ("1", 1),
    ("10B", 10),
    ("10b", 10),
    ("1K", 1000),
    ("1KB", 1000),
    ("1kb", 1000),
    ("1KiB", KiB),
    ("1kib", KiB),
    ("1.5KiB", 1536),
    ("0.5K", 500),
    ("64MiB", 64 * MiB),
    ("10MB", 10 * 1000**2),
    ("10M", 10 * 1000**2),
    (" 2 GiB ", 2 * GiB),
    ("3g", 3 * 1000**3),
    ("1GB", 1000**3),
    ("1T", 1000**4),
    ("1TB", 1000**4),
    ("2TiB", 2 * TiB),
    ("007", 7),
])
def test_parse_size(text, expected):
    assert parse_size(text) == expected
    assert isinstance(parse_size(text), int)


@pytest.mark.parametrize("text", [
    "0", 0, -1, "-5K", "0B", "0.0001K", "", "   ", "abc", "K", "KiB", "10XB", "10 iB", "10KI",
    "10PB", "1.5.5K", "1e3", "1,000", "nan", "inf", "ten MB", "10 MB extra", True, False, None,
])
def test_parse_size_rejects(text):
    with pytest.raises(ConfigError) as info:
        parse_size(text)
    assert isinstance(info.value, ValueError)


# ---------------------------------------------------------------------------
# durations


@pytest.mark.parametrize("text, expected", [
    ("10", 10.0),
    (10, 10.0),
    (2.5, 2.5),
    ("0.25", 0.25),
    ("500ms", 0.5),
    ("100MS", 0.1),
    ("30s", 30.0),
    ("10m", 600.0),
    ("10M", 600.0),
    ("1h", 3600.0),
    ("2H", 7200.0),
    ("1d", 86400.0),
    ("1.5h", 5400.0),
    ("1h30m", 5400.0),
    ("1h 30m", 5400.0),
    (" 45s ", 45.0),
    ("1d2h3m4s5ms", 86400 + 7200 + 180 + 4 + 0.005),
    ("90s", 90.0),
])
def test_parse_duration(text, expected):
    assert parse_duration(text) == pytest.approx(expected)
    assert isinstance(parse_duration(text), float)


@pytest.mark.parametrize("text", [
    "0", 0, 0.0, -1, -0.5, "-5", "-1h", "", " ", "abc", "s", "ms", "1x", "h1", "1hh", "1m30",
    "1h-30m", "0s", "0ms", "0h0m", "1 hour", "1w", True, False, None,
    "nan", "NaN", float("nan"),
])
def test_parse_duration_rejects(text):
    with pytest.raises(ConfigError) as info:
        parse_duration(text)
    assert isinstance(info.value, ValueError)


def test_parse_duration_never_returns_a_non_positive_or_nan_value():
    for text in ["1", "1ms", "0.001", "1e-3", "59m59s", "1d"]:
        v = parse_duration(text)
        assert v > 0 and not math.isnan(v)


# ---------------------------------------------------------------------------
# rotation policy


def test_policy_rotates_on_size():
    p = RotationPolicy(max_bytes=100, interval=None)
    assert not p.due(99, opened=0.0, now=1e9)
    assert p.due(100, opened=0.0, now=0.0)
    assert p.due(101, opened=5.0, now=5.0)


def test_policy_rotates_on_interval():
    p = RotationPolicy(max_bytes=None, interval=60.0)
    assert not p.due(1, opened=100.0, now=159.9)
    assert p.due(1, opened=100.0, now=160.0)
    assert p.due(10**12, opened=100.0, now=1000.0)
    assert not p.due(10**12, opened=100.0, now=100.0)


def test_policy_never_rotates_an_empty_file():
    for p in (RotationPolicy(1, 0.001), RotationPolicy(None, 0.001), RotationPolicy(1, None)):
        assert not p.due(0, opened=0.0, now=10**6)


def test_policy_with_both_limits():
    p = RotationPolicy(max_bytes=1000, interval=10.0)
    assert not p.due(999, 0.0, 9.99)
    assert p.due(1000, 0.0, 0.0)
    assert p.due(1, 0.0, 10.0)


def test_policy_without_limits_never_rotates():
    p = RotationPolicy(max_bytes=None, interval=None)
    assert not p.due(10**15, 0.0, 10**9)


def test_default_policy_is_64_mib():
    p = RotationPolicy()
    assert not p.due(64 * MiB - 1, 0.0, 10**9)
    assert p.due(64 * MiB, 0.0, 0.0)


# ---------------------------------------------------------------------------
# file names

RID = 0x0123456789ABCDEF


def test_log_file_name_format():
    f = LogFile(5, "20240102T030405Z", RID, "jsonl")
    assert f.name == "log-00000005-20240102T030405Z-0123456789abcdef.jsonl"
    assert LogFile(7, "20240102T030405Z", 0xAB, "age").name == \
        "log-00000007-20240102T030405Z-00000000000000ab.age"


@pytest.mark.parametrize("f", [
    LogFile(1, "20240102T030405Z", RID, "jsonl"),
    LogFile(0, "19700101T000000Z", 0, "jsonl"),
    LogFile(99999999, "99991231T235959Z", 2**64 - 1, "lsx"),
    LogFile(123456789, "20240102T030405Z", 1, "lsx"),
])
def test_log_file_round_trip(f):
    assert LogFile.parse(f.name) == f
    assert LogFile.parse(f.name).name == f.name


@pytest.mark.parametrize("suffix", ["age", "x1", "log", "jsonl.1", "JSONL", "lsx.bak"])
def test_only_the_two_formats_the_writer_writes_are_log_file_names(suffix):
    assert LogFile.parse(f"log-00000001-20240102T030405Z-0123456789abcdef.{suffix}") is None


@pytest.mark.parametrize("name", [
    "",
    "log-00000001-20240102T030405Z-0123456789abcdef",  # no suffix
    "log-0000001-20240102T030405Z-0123456789abcdef.jsonl",  # 7-digit index
    "log-00000001-20240102T030405-0123456789abcdef.jsonl",  # no Z
    "log-00000001-2024010T030405Z-0123456789abcdef.jsonl",
    "log-00000001-20240102T030405Z-0123456789ABCDEF.jsonl",  # upper-case id
    "log-00000001-20240102T030405Z-0123456789abcde.jsonl",  # 15 hex digits
    "log-00000001-20240102T030405Z-0123456789abcdef0.jsonl",
    "log-00000001-20240102T030405Z-0123456789abcdef.JSONL",
    "log-00000001-20240102T030405Z-0123456789abcdef.jsonl.tmp",
    "log-00000001-20240102T030405Z-0123456789abcdef.",
    "xlog-00000001-20240102T030405Z-0123456789abcdef.jsonl",
    "log-00000001-20240102T030405Z-0123456789abcdef.jsonl~",
    "log--0000001-20240102T030405Z-0123456789abcdef.jsonl",
    "log-00000001-20240102T030405Z-0123456789abcdef.jsonl\n",
    "writer.err",
])
def test_log_file_parse_rejects(name):
    assert LogFile.parse(name) is None


def test_log_files_sort_in_write_order():
    files = [
        LogFile(i, stamp, rid, "jsonl")
        for i, stamp, rid in [
            (1, "20240105T000000Z", 9), (2, "20240101T000000Z", 1), (10, "20231231T235959Z", 5),
            (9, "20240102T000000Z", 3), (100000000, "20240101T000000Z", 2), (99999999, "20250101T000000Z", 4),
        ]
    ]
    names = [f.name for f in files]
    random.Random(3).shuffle(names)
    parsed = sorted(LogFile.parse(n) for n in names)
    assert [f.index for f in parsed] == [1, 2, 9, 10, 99999999, 100000000]


def test_next_file():
    now = datetime(2024, 1, 2, 3, 4, 5, 999999, tzinfo=timezone.utc)
    first = next_file(None, RID, now, "jsonl")
    assert first == LogFile(1, "20240102T030405Z", RID, "jsonl")
    second = next_file(first, 7, now + timedelta(seconds=1), "age")
    assert second == LogFile(2, "20240102T030406Z", 7, "age")
    # stamps are UTC whatever zone the clock is given in
    plus2 = timezone(timedelta(hours=2))
    third = next_file(second, 7, datetime(2024, 1, 2, 5, 0, 0, tzinfo=plus2), "jsonl")
    assert third.stamp == "20240102T030000Z" and third.index == 3
    assert first < second < third


# ---------------------------------------------------------------------------
# retention


def _files(n: int) -> list[LogFile]:
    return [LogFile(i, f"2024010{1 + i % 9}T000000Z", RID, "jsonl") for i in range(1, n + 1)]


def test_to_delete_keeps_everything_without_a_limit():
    assert to_delete(_files(50), None) == []


@pytest.mark.parametrize("n, keep", [(0, 1), (1, 1), (3, 3), (3, 10)])
def test_to_delete_within_the_limit(n, keep):
    assert to_delete(_files(n), keep) == []


@pytest.mark.parametrize("n, keep", [(2, 1), (5, 2), (10, 9), (10, 1)])
def test_to_delete_drops_the_oldest(n, keep):
    files = _files(n)
    shuffled = files[:]
    random.Random(n * 31 + keep).shuffle(shuffled)
    gone = to_delete(shuffled, keep)
    assert gone == files[: n - keep]
    kept = [f for f in files if f not in gone]
    assert kept == files[n - keep:] and files[-1] in kept  # the newest (current) is kept


# ---------------------------------------------------------------------------
# the writer's resume point: last_seq_in


def line(seq: int, msg: str = "message") -> bytes:
    return (f'{{"seq":{seq},"ts":"2024-01-02T03:04:05.000006Z","level":"INFO","pid":42,'
            f'"logger":"root","msg":"{msg}","fields":{{"seq":999}}}}\n').encode()


SEQS = [0, 104, 4096, 2**40, 2**64 - 8]
BODY = b"".join(line(s) for s in SEQS)


def write(path, data: bytes) -> None:
    path.write_bytes(data)


@pytest.mark.parametrize("repair", [False, True])
def test_last_seq_of_a_whole_file(tmp_path, repair):
    p = tmp_path / "f.jsonl"
    write(p, BODY)
    assert last_seq_in(p, repair=repair) == SEQS[-1]
    assert p.read_bytes() == BODY


@pytest.mark.parametrize("repair", [False, True])
def test_last_seq_of_empty_and_foreign_files(tmp_path, repair):
    p = tmp_path / "f.jsonl"
    write(p, b"")
    assert last_seq_in(p, repair=repair) is None
    write(p, b"not a record\n{}\n[1]\n")
    assert last_seq_in(p, repair=repair) is None
    assert p.read_bytes() == b"not a record\n{}\n[1]\n"
    write(p, b"\n\n\n")
    assert last_seq_in(p, repair=repair) is None


def test_torn_last_line_at_every_offset(tmp_path):
    p = tmp_path / "f.jsonl"
    prefix = b"".join(line(s) for s in SEQS[:-1])
    last = line(SEQS[-1])
    for k in range(len(last) + 1):
        data = prefix + last[:k]
        complete = k == len(last)
        expect = SEQS[-1] if complete else SEQS[-2]

        write(p, data)
        assert last_seq_in(p, repair=False) == expect, k
        assert p.read_bytes() == data  # without repair the file is left alone

        assert last_seq_in(p, repair=True) == expect, k
        assert p.read_bytes() == (data if complete else prefix), k
        # repaired: asking again gives the same answer and changes nothing
        assert last_seq_in(p, repair=True) == expect
        assert p.read_bytes() == (data if complete else prefix)


def test_torn_only_line(tmp_path):
    p = tmp_path / "f.jsonl"
    only = line(7)
    for k in range(len(only)):
        write(p, only[:k])
        assert last_seq_in(p, repair=True) is None, k
        assert p.read_bytes() == b""
    write(p, only)
    assert last_seq_in(p, repair=True) == 7


@pytest.mark.parametrize("garbage", [
    b"garbage",
    b"\x00" * 100,  # a crash can leave a zero-filled tail
    b'{"seq":123',
    b'{"seq":999999,"ts"',
    b"\xff\xfe\x00\x01",
    b"x" * 70000,  # longer than the 64 KiB the search reads at a time
])
def test_trailing_garbage_is_cut(tmp_path, garbage):
    p = tmp_path / "f.jsonl"
    write(p, BODY + garbage)
    assert last_seq_in(p, repair=False) == SEQS[-1]
    assert p.read_bytes() == BODY + garbage
    assert last_seq_in(p, repair=True) == SEQS[-1]
    assert p.read_bytes() == BODY


def test_complete_garbage_lines_are_skipped(tmp_path):
    p = tmp_path / "f.jsonl"
    data = BODY + b"garbage line\n" + b"\x00" * 10 + b"\n" + b'{"msg":"no seq"}\n'
    write(p, data)
    assert last_seq_in(p, repair=True) == SEQS[-1]
    assert p.read_bytes() == data  # complete lines are not a torn tail


def test_long_lines_across_search_chunks(tmp_path):
    p = tmp_path / "f.jsonl"
    big = line(555, "m" * 200_000)
    last = line(777, "n" * 100_000)
    prefix = line(1) + big
    # cut the last line at a few offsets, including around the 64 KiB search chunks
    for k in [0, 1, 7, 8, 65535, 65536, 65537, len(last) - 1, len(last)]:
        data = prefix + last[:k]
        write(p, data)
        expect = 777 if k == len(last) else 555
        assert last_seq_in(p, repair=True) == expect, k
        assert p.read_bytes() == (data if k == len(last) else prefix)
    # the newest line with a seq is far back, behind long lines without one
    write(p, line(3) + b"y" * 150_000 + b"\n" + b"z" * 70_000 + b"\n")
    assert last_seq_in(p, repair=False) == 3


# ---------------------------------------------------------------------------
# a file finished at rotation is fsynced and closed behind the writer


def _rotating(tmp_path, keep=None):
    from logger_system.files.format import of
    from logger_system.files.rotating import RotatingFiles

    return RotatingFiles(tmp_path, 1, RotationPolicy(max_bytes=len(line(0)) * 2), keep,
                         "interval", 1.0, of(None))


def test_a_failed_fsync_behind_the_writer_is_raised_by_the_next_write(tmp_path, monkeypatch):
    import errno
    import os
    import threading

    files = _rotating(tmp_path)
    real, failed = os.fsync, []

    def fsync(fd):
        if threading.current_thread().name == "close-behind" and not failed:
            failed.append(fd)
            raise OSError(errno.EIO, "Input/output error")
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    files.write(line(0) + line(1) + line(2))  # the first file is finished, its fsync fails
    files._behind.wait()
    assert failed
    with pytest.raises(OSError) as exc:
        files.write(line(3))
    assert exc.value.errno == errno.EIO and files.progress == 0
    files.write(line(3))  # raised once; the records are written on the retry
    files.close()
    assert b"".join(p.read_bytes() for p in sorted(tmp_path.iterdir())) == b"".join(
        line(s) for s in range(4))


def test_close_waits_for_the_fsyncs_behind_and_retention_never_removes_a_pending_file(
        tmp_path, monkeypatch):
    import os
    import threading

    files = _rotating(tmp_path, keep=1)
    real, gate, synced = os.fsync, threading.Event(), []

    def fsync(fd):
        if threading.current_thread().name == "close-behind":
            gate.wait(5)
            synced.append(fd)
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    threading.Timer(0.3, gate.set).start()
    # the second file opens while the first one's fsync waits: retention must wait for it
    files.write(line(0) + line(1) + line(2))
    assert synced
    files.close()
    assert not files._behind._pending
