"""A cut tail is not laundered, and a damaged newest file does not stop the writer.

The ring remembers what its writer released (the stream's tag, last seq written and
next n).  A writer started on it after someone cut the newest file's tail (at a chunk
boundary, inside a chunk, or a plaintext file's last lines) finds records released that
no file holds: it counts them in `lost`, says `records_lost` on stderr, numbers on past
them (the gap in n is exactly the records cut) and begins a new file, whose sealed header
records the loss (PREV_LOSS, lost=count).  A newest sealed file that is damaged is moved
aside as `<name>.damaged`; the next file's header says so (PREV_DAMAGED) and chains to the
last intact file.  Real writer processes, a real ring, files read back from disk.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import WriterProcess, stats, wait_for
from logger_system import sealed
from logger_system.files.chain import log_files
from test_record_numbers import Seal, drained, file_lines, log, producers_only, records


@pytest.fixture
def started():
    made: list[WriterProcess] = []
    yield made
    for w in made:
        if w.proc and w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait(10)


def run_writer(seal: Seal, ring: str, d: Path, started: list, label: str, batches: int, per: int,
               committed: int, stop: str = "term") -> tuple[WriterProcess, int]:
    """A writer that writes `batches` batches of `per` records, then is stopped or killed."""
    w = seal.writer(ring, d)
    started.append(w)
    w.start()
    for b in range(batches):
        log(ring, label, per, start=b * per)
        committed += per
        drained(ring, committed, w)
    if stop == "term":
        assert w.stop() == 0, w.stderr()
    else:
        w.kill()
    return w, committed


def newest(d: Path) -> Path:
    return d / log_files(d)[-1].name


def data_chunks(scan: sealed.Scan) -> list[sealed.Chunk]:
    return [c for c in scan.chunks if not c.final]


def lines_of_chunk(path: Path, chunk: sealed.Chunk, keyring) -> int:
    data = path.read_bytes()
    scan = sealed.scan_chunks(data, str(path))
    key = sealed.data_key(scan.header, keyring=keyring)
    one = sealed.Scan(scan.header, [chunk], scan.size, None)
    return len(b"".join(sealed.open_chunks(data, one, key)).splitlines())


def check_loss(seal: Seal, ring: str, d: Path, started: list, committed: int, cut: int, cut_file: Path):
    """Start a writer after `cut` records were cut from the end of cut_file: the loss is found,
    counted and said, n jumps over exactly those records, and a new file begins after it."""
    before = records(d, seal.keyring, seal.identity)
    first_lost = before[-1]["n"] + 1
    lost_before = stats(ring)["lost"]
    w = seal.writer(ring, d)
    started.append(w)
    w.start()
    # attached to the ring first; what it found in the files it says before "started"
    wait_for(lambda: w.events("started"), timeout=30, what="the writer started")
    said = w.events("records_lost")
    assert len(said) == 1, w.stderr()
    assert said[0]["count"] == cut and said[0]["first_n"] == first_lost, said
    assert said[0]["file"] == str(cut_file)
    assert stats(ring)["lost"] == lost_before + cut
    log(ring, "after", 25)
    drained(ring, committed + 25, w)
    assert w.stop() == 0, w.stderr()
    after = records(d, seal.keyring, seal.identity)
    ns = [r["n"] for r in after]
    assert ns == list(range(first_lost)) + list(range(first_lost + cut, first_lost + cut + len(after) - first_lost))
    first_new = after[first_lost]
    assert first_new["n"] == first_lost + cut
    assert first_new["_file"] != cut_file.name  # the loss sits at a file boundary
    assert all(r["fields"]["label"] == "after" for r in producers_only(after[first_lost:]))
    if seal.mode != "plaintext":
        h = sealed.scan_chunks((d / first_new["_file"]).read_bytes()).header
        assert h.prev_flags & sealed.PREV_LOSS and h.lost == cut
        assert not h.prev_flags & sealed.PREV_UNCONFIRMED
    # the next start finds nothing more missing
    w = seal.writer(ring, d)
    started.append(w)
    w.start()
    assert w.stop() == 0
    assert not w.events("records_lost"), w.stderr()
    assert stats(ring)["lost"] == lost_before + cut


def test_plaintext_last_lines_cut(ring_name, tmp_path, started):
    seal = Seal("plaintext", tmp_path)
    d = tmp_path / "logs"
    _, committed = run_writer(seal, ring_name, d, started, "before", 3, 20, 0)
    path = newest(d)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-7]))
    check_loss(seal, ring_name, d, started, committed, 7, path)


@pytest.mark.parametrize("mode", ["key", "recipient"])
@pytest.mark.parametrize("stop", ["term", "kill"])
@pytest.mark.parametrize("where", ["chunk_boundary", "mid_chunk"])
def test_sealed_tail_cut(where, stop, mode, ring_name, tmp_path, started):
    seal = Seal(mode, tmp_path)
    d = tmp_path / "logs"
    _, committed = run_writer(seal, ring_name, d, started, "before", 4, 15, 0, stop=stop)
    path = newest(d)
    scan = sealed.scan_chunks(path.read_bytes())
    chunks = data_chunks(scan)
    assert len(chunks) >= 3, "each drained batch is a chunk"
    gone = chunks[-2:]
    cut = gone[-1].next_n - chunks[-3].next_n  # the chunk headers count the records
    if mode == "key":
        assert cut == sum(lines_of_chunk(path, c, seal.keyring) for c in gone)
    at = gone[0].start if where == "chunk_boundary" else gone[0].start + 40
    with open(path, "r+b") as f:
        f.truncate(at)
    check_loss(seal, ring_name, d, started, committed, cut, path)
    h = sealed.scan_chunks(newest_after_loss(d, path).read_bytes()).header
    assert h.prev_flags & sealed.PREV_RECOVERED  # the cut file had lost its final chunk


def newest_after_loss(d: Path, cut_file: Path) -> Path:
    """The file right after the cut one."""
    names = [f.name for f in log_files(d)]
    return d / names[names.index(cut_file.name) + 1]


def test_recipient_mode_numbers_go_on_from_the_ring(ring_name, tmp_path, started):
    """Sealed to recipients the writer cannot read its files: a crash between writing a batch
    and releasing it still leaves no duplicate and no gap in n (the ring and the files agree)."""
    seal = Seal("recipient", tmp_path)
    d = tmp_path / "logs"
    committed = 0
    for k in range(3):
        _, committed = run_writer(seal, ring_name, d, started, f"r{k}", 2, 30, committed, stop="kill")
    recs = records(d, seal.keyring, seal.identity)
    assert [r["n"] for r in recs] == list(range(len(recs)))
    assert stats(ring_name)["lost"] == 0


def test_crash_closed_file_without_the_ring_is_unconfirmed(ring_name, tmp_path, started):
    """A new ring knows nothing of the stream: the header after a crash-closed file says
    its end is vouched for by the files alone."""
    seal = Seal("key", tmp_path)
    d = tmp_path / "logs"
    _, committed = run_writer(seal, ring_name, d, started, "before", 2, 10, 0, stop="kill")
    from logger_system.ring import unlink

    unlink(ring_name)
    w = seal.writer(ring_name, d)
    started.append(w)
    w.start()
    assert w.stop() == 0
    assert not w.events("records_lost")
    files = [d / f.name for f in log_files(d)]
    h = sealed.scan_chunks(files[1].read_bytes()).header
    assert h.prev_flags & sealed.PREV_RECOVERED and h.prev_flags & sealed.PREV_UNCONFIRMED
    assert [r["n"] for r in records(d, seal.keyring)] == list(range(20))


def damage_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[5] = 9  # an unknown mode: a complete header, damaged
    path.write_bytes(bytes(data))


def append_after_final(path: Path) -> None:
    with open(path, "ab") as f:
        f.write(b"\x00" * 64)


@pytest.mark.parametrize("damage", [damage_header, append_after_final])
def test_damaged_newest_file_is_moved_aside(damage, ring_name, tmp_path, started):
    seal = Seal("key", tmp_path)
    d = tmp_path / "logs"
    _, committed = run_writer(seal, ring_name, d, started, "one", 1, 20, 0)
    _, committed = run_writer(seal, ring_name, d, started, "two", 1, 20, committed)
    first, second = [d / f.name for f in log_files(d)]
    first_scan = sealed.scan_chunks(first.read_bytes())
    damaged_index = log_files(d)[-1].index
    damage(second)
    w = seal.writer(ring_name, d)
    started.append(w)
    w.start()  # keeps running
    log(ring_name, "three", 10)
    drained(ring_name, committed + 10, w)
    assert w.proc.poll() is None
    moved = w.events("moved_damaged_file")
    assert len(moved) == 1 and moved[0]["file"] == str(second), w.stderr()
    aside = Path(moved[0]["to"])
    assert aside == second.with_name(second.name + ".damaged") and aside.exists() and not second.exists()
    assert stats(ring_name)["damaged_files"] == 1
    # the damaged file's records are missing from the readable files: said and numbered past
    said = w.events("records_lost")
    assert len(said) == 1 and said[0]["count"] == 20 and said[0]["first_n"] == 20, w.stderr()
    assert w.stop() == 0
    files = log_files(d)
    assert [f.index for f in files] == [1, damaged_index + 1]
    h = sealed.scan_chunks((d / files[-1].name).read_bytes()).header
    assert h.index == damaged_index + 1
    assert h.prev_flags & sealed.PREV_DAMAGED and h.prev_flags & sealed.PREV_LOSS and h.lost == 20
    assert not h.prev_flags & sealed.PREV_RECOVERED  # the intact file before it was closed cleanly
    assert h.prev_id == first_scan.header.file_id and h.prev_chunks == len(first_scan.chunks)
    assert h.stream_id == first_scan.header.stream_id
    recs = records(d, seal.keyring)
    ns = [r["n"] for r in recs]
    assert ns[:20] == list(range(20)) and ns[20:] == list(range(40, 40 + len(ns) - 20))
    assert [r["fields"]["label"] for r in producers_only(recs)] == ["one"] * 20 + ["three"] * 10
    assert file_lines(first, seal.keyring)  # the intact file is untouched


@pytest.mark.parametrize("mode", ["plaintext", "key"])
def test_a_loss_is_counted_once_across_restarts_that_write_nothing(mode, ring_name, tmp_path, started):
    seal = Seal(mode, tmp_path)
    d = tmp_path / "logs"
    _, committed = run_writer(seal, ring_name, d, started, "before", 2, 20, 0)
    path = newest(d)
    if mode == "plaintext":
        lines = path.read_bytes().splitlines(keepends=True)
        path.write_bytes(b"".join(lines[:-5]))
        cut = 5
    else:
        gone = data_chunks(sealed.scan_chunks(path.read_bytes()))[-1]
        cut = lines_of_chunk(path, gone, seal.keyring)
        with open(path, "r+b") as f:
            f.truncate(gone.start)
    for k in range(3):  # started and stopped (or killed) before any record comes
        w = seal.writer(ring_name, d)
        started.append(w)
        w.start()
        if k == 1:
            w.kill()
        else:
            assert w.stop() == 0, w.stderr()
        assert len(w.events("records_lost")) == (1 if k == 0 else 0), w.stderr()
        assert stats(ring_name)["lost"] == cut
    w = seal.writer(ring_name, d)
    started.append(w)
    w.start()
    log(ring_name, "after", 10)
    drained(ring_name, committed + 10, w)
    assert w.stop() == 0
    assert stats(ring_name)["lost"] == cut
    ns = [r["n"] for r in records(d, seal.keyring)]
    assert ns == list(range(40 - cut)) + list(range(40, 50))
    if mode == "key":
        flagged = [sealed.scan_chunks((d / f.name).read_bytes()).header for f in log_files(d)]
        assert [h.lost for h in flagged if h.prev_flags & sealed.PREV_LOSS] == [cut]
