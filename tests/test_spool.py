"""A destination's spool: what goes in comes out once, in order, sealed, bounded, across crashes."""
from __future__ import annotations

import json
import os
import stat
import time

import pytest

from logger_system.keys import keygen, load_keyring
from logger_system.ship.spool import CURSOR_INTERVAL, Spool


def lines(first: int, count: int, word: str = "record") -> bytes:
    return b"".join(json.dumps({"n": n, "msg": f"{word} {n}"}).encode() + b"\n" for n in range(first, first + count))


def numbers(spool: Spool, from_n: int = 0) -> list[int]:
    out = []
    for f in spool.frames(from_n):
        got = [json.loads(x)["n"] for x in f.lines.splitlines()]
        assert got == list(range(f.first_n, f.end_n))
        out += got
    return out


@pytest.fixture(params=["key", "local"])
def keyring(request, tmp_path):
    if request.param == "local":
        return None
    path = tmp_path / "writer.key"
    keygen(path)
    return load_keyring(path)


def test_records_come_out_once_in_order_and_a_batch_drained_again_is_not_spooled_twice(tmp_path, keyring):
    s = Spool(tmp_path / "spool", "ls://127.0.0.1:1", keyring=keyring, segment_bytes=2000)
    assert s.append(0, 10, lines(0, 10)) == 10
    assert s.append(5, 10, lines(5, 10)) == 5      # 5..9 spooled already (a crash, then again)
    assert s.append(0, 10, lines(0, 10)) == 0
    assert s.append(40, 5, lines(40, 5)) == 5      # the stream's own gap (records lost before)
    assert numbers(s) == list(range(15)) + list(range(40, 45))
    assert numbers(s, 12) == [12, 13, 14, 40, 41, 42, 43, 44]
    assert s.end_n == 45 and s.pending == 45
    s.close()
    again = Spool(tmp_path / "spool", "ls://127.0.0.1:1", keyring=keyring, segment_bytes=2000)
    assert numbers(again) == list(range(15)) + list(range(40, 45)) and again.end_n == 45


def test_acknowledged_files_go_and_the_cursor_survives(tmp_path, keyring):
    s = Spool(tmp_path / "spool", "ls://h:1", keyring=keyring, segment_bytes=500)
    for k in range(20):
        s.append(k * 5, 5, lines(k * 5, 5))
    files = len(list(s.dir.glob("spool-*.lsp")))
    assert files > 3
    s.acknowledge(60)
    assert len(list(s.dir.glob("spool-*.lsp"))) < files
    assert numbers(s, s.acked_n) == list(range(60, 100))
    s.close()
    again = Spool(tmp_path / "spool", "ls://h:1", keyring=keyring, segment_bytes=500)
    assert again.acked_n == 60 and again.pending == 40
    assert numbers(again, again.acked_n) == list(range(60, 100))


def test_past_its_bound_new_records_are_counted_not_spooled(tmp_path):
    s = Spool(tmp_path / "spool", "ls://h:1", max_bytes=3000, segment_bytes=1000)
    taken = sum(s.append(k * 10, 10, lines(k * 10, 10)) for k in range(20))
    assert 0 < taken < 200 and s.overflow == 200 - taken
    assert numbers(s) == list(range(taken))  # one unbroken stretch: no later batch slipped in
    s.acknowledge(taken)  # the receiver took what was there: room again
    assert s.append(200, 10, lines(200, 10)) == 10
    assert numbers(s, s.acked_n)[-10:] == list(range(200, 210))


def test_a_torn_tail_is_cut_at_open_counted_and_appended_after(tmp_path, keyring):
    s = Spool(tmp_path / "spool", "ls://h:1", keyring=keyring)
    s.append(0, 10, lines(0, 10))
    s.append(10, 10, lines(10, 10))
    s.close()
    (path,) = s.dir.glob("spool-*.lsp")
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - 7)  # the second frame cut by a crash
    again = Spool(tmp_path / "spool", "ls://h:1", keyring=keyring)
    assert again.torn == 10 and again.end_n == 10
    assert again.append(10, 10, lines(10, 10)) == 10
    assert numbers(again) == list(range(20))


def test_a_tampered_frame_ends_its_file_and_nothing_of_it_is_read(tmp_path, keyring):
    s = Spool(tmp_path / "spool", "ls://h:1", keyring=keyring)
    s.append(0, 5, lines(0, 5))
    s.append(5, 5, lines(5, 5))
    s.close()
    (path,) = s.dir.glob("spool-*.lsp")
    data = bytearray(path.read_bytes())
    data[-3] ^= 1
    path.write_bytes(bytes(data))
    again = Spool(tmp_path / "spool", "ls://h:1", keyring=keyring)
    assert numbers(again) == list(range(5)) and again.torn == 5


def test_nothing_of_a_record_is_on_disk_in_the_clear(tmp_path, keyring):
    s = Spool(tmp_path / "spool", "relp://h:1", keyring=keyring, fsync="batch")
    s.append(0, 50, lines(0, 50, word="zebra-unlikely-word"))
    s.close()
    for p in s.dir.iterdir():
        assert b"zebra-unlikely-word" not in p.read_bytes()
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert stat.S_IMODE(s.dir.stat().st_mode) == 0o700
    assert (s.dir / "spool.key").exists() == (keyring is None)


def test_each_destination_has_its_own_spool(tmp_path):
    a = Spool(tmp_path / "spool", "ls://a:1")
    b = Spool(tmp_path / "spool", "ls://b:1")
    a.append(0, 3, lines(0, 3))
    assert a.dir != b.dir and numbers(b) == [] and numbers(a) == [0, 1, 2]
    os.rename(a.dir / "spool.key", a.dir / "spool.key.x")
    os.rename(b.dir / "spool.key", a.dir / "spool.key")  # another destination's key: nothing opens
    a.close()
    assert numbers(Spool(tmp_path / "spool", "ls://a:1")) == []


def test_a_reader_that_keeps_up_decrypts_only_what_is_new_and_can_still_go_back(tmp_path, keyring, monkeypatch):
    s = Spool(tmp_path / "spool", "ls://h:1", keyring=keyring, segment_bytes=1 << 20)
    for k in range(10):
        s.append(k * 10, 10, lines(k * 10, 10))
    assert numbers(s) == list(range(100))
    opened = []
    real = s._frames_in

    def counting(data, key_id, *a, **kw):
        for frame, end in real(data, key_id, *a, **kw):
            opened.append(frame.first_n)
            yield frame, end

    monkeypatch.setattr(s, "_frames_in", counting)
    s.append(100, 10, lines(100, 10))
    assert numbers(s, 100) == list(range(100, 110))
    assert opened == [100]  # not the ten frames before it again
    assert numbers(s, 95) == list(range(95, 110))  # a resend from further back reads the file again
    assert numbers(s, 0) == list(range(110))


def test_the_cursor_is_written_at_most_every_interval_and_never_ahead_of_the_files(tmp_path, keyring):
    """Acknowledgements move acked_n at once; the cursor file follows at most every
    CURSOR_INTERVAL, and files go only by the cursor on disk: a spool reopened after a
    crash between the two resends from the durable cursor and finds every record there."""
    s = Spool(tmp_path / "spool", "relp://h:1", keyring=keyring, segment_bytes=500)
    for k in range(20):
        s.append(k * 5, 5, lines(k * 5, 5))
    s.acknowledge(10)  # the first is written at once
    files = len(list(s.dir.glob("spool-*.lsp")))
    s.acknowledge(60)
    s.acknowledge(70)
    assert s.acked_n == 70 and s.pending == 30
    assert json.loads((s.dir / "cursor").read_bytes())["next_n"] == 10
    assert len(list(s.dir.glob("spool-*.lsp"))) == files  # nothing removed by an unwritten cursor
    # a crash here: the reopened spool starts at the cursor on disk, with every record after it
    again = Spool(tmp_path / "spool", "relp://h:1", keyring=keyring, segment_bytes=500)
    assert again.acked_n == 10 and numbers(again, again.acked_n) == list(range(10, 100))
    again.close()
    s.flush_cursor()
    assert json.loads((s.dir / "cursor").read_bytes())["next_n"] == 70
    assert len(list(s.dir.glob("spool-*.lsp"))) < files
    time.sleep(CURSOR_INTERVAL + 0.05)
    s.acknowledge(80)  # past the interval: written
    assert json.loads((s.dir / "cursor").read_bytes())["next_n"] == 80
    s.acknowledge(90)
    s.close()  # close writes what is owed
    assert Spool(tmp_path / "spool", "relp://h:1", keyring=keyring).acked_n == 90
