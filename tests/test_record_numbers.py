"""`n`: every record a writer writes has its consecutive number in the directory's stream.

Real writer processes (the console script) drain a real ring; the files are read back
here, plaintext as lines and sealed files by decrypting their chunks with the key or
identity, so that the numbers checked are the ones on disk.  n starts at 0, goes up by
one per record written (a record the writer filters gets none), and goes on across
rotation, SIGTERM, SIGKILL and a ring replaced by `ring rm`.
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import WriterProcess, cli, stats, wait_for
from logger_system import connect, sealed
from logger_system.keys import load_identity, load_keyring
from logger_system.ring import unlink
from logger_system.files.chain import log_files
from test_faults_disk import small_disk  # noqa: F401  (a fixture: a small tmpfs)

WRITER_LOGGER = "logger_system.writer"
_LINE = re.compile(rb'^\{"seq":(\d+),"n":(\d+),"ts":')


def make_key(path: Path) -> Path:
    r = subprocess.run(cli("keygen", "--out", path), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return path


def make_identity(path: Path) -> str:
    r = subprocess.run(cli("keygen", "--x25519", "--out", path), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().splitlines()[-1]


class Seal:
    """How a test's writer seals (or not) and how the test reads what it wrote."""

    def __init__(self, mode: str, base: Path) -> None:
        self.mode = mode
        self.keyring = self.identity = None
        if mode == "plaintext":
            self.args: list[str] = []
        elif mode == "key":
            key = make_key(base / "writer.key")
            self.args = ["--key", str(key)]
            self.keyring = load_keyring(key)
        else:
            recipient = make_identity(base / "reader.identity")
            self.args = ["--recipient", recipient]
            self.identity = load_identity(base / "reader.identity")

    def writer(self, ring: str, directory: Path, *extra: str) -> WriterProcess:
        return WriterProcess(ring, directory, *self.args, *extra, plaintext=self.mode == "plaintext")


def file_lines(path: Path, keyring=None, identity=None) -> list[bytes]:
    """The complete lines a file holds (a sealed file's complete chunks, decrypted)."""
    data = path.read_bytes()
    if path.suffix == ".jsonl":
        text = data[:data.rfind(b"\n") + 1]
    else:
        scan = sealed.scan_chunks(data, str(path))
        key = sealed.data_key(scan.header, keyring=keyring, identity=identity, where=str(path))
        text = b"".join(sealed.open_chunks(data, scan, key, str(path)))
    return text.splitlines()


def records(directory: Path, keyring=None, identity=None) -> list[dict]:
    out = []
    for f in log_files(directory):
        for line in file_lines(directory / f.name, keyring, identity):
            m = _LINE.match(line)
            assert m, f"line does not start with seq then n: {line[:80]!r}"
            rec = json.loads(line)
            assert (rec["seq"], rec["n"]) == (int(m.group(1)), int(m.group(2)))
            rec["_file"] = f.name
            out.append(rec)
    return out


def log(ring: str, label: str, count: int, level: str = "info", start: int = 0) -> None:
    p = connect(ring, name=f"numbers-{label}")
    try:
        for i in range(start, start + count):
            assert getattr(p, level)("%s record %d", label, i, label=label, i=i), "dropped"
    finally:
        p.close()


def drained(ring: str, committed: int, writer: WriterProcess) -> dict:
    """Wait until the writer has taken every record committed so far (at least `committed`)."""
    def check():
        s = stats(ring)
        done = s["written"] + s["filtered"]
        return s if s["committed"] >= committed and done >= s["committed"] and s["used_bytes"] == 0 else None
    try:
        return wait_for(check, timeout=30, interval=0.01, what=f"{committed} records drained")
    except AssertionError:
        raise AssertionError(f"not drained: {stats(ring)}; writer stderr: {writer.stderr()}") from None


def producers_only(recs: list[dict]) -> list[dict]:
    return [r for r in recs if r["logger"] != WRITER_LOGGER]


@pytest.fixture
def started():
    made: list[WriterProcess] = []
    yield made
    for w in made:
        if w.proc and w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait(10)


@pytest.mark.parametrize("mode", ["plaintext", "key", "recipient"])
def test_n_consecutive_across_rotation_sigterm_and_sigkill(mode, ring_name, tmp_path, started):
    seal = Seal(mode, tmp_path)
    d = tmp_path / "logs"
    committed = 0
    for round_, how in enumerate(["term", "kill", "term", "kill", "term"]):
        w = seal.writer(ring_name, d, "--rotate-size", "6KiB")
        started.append(w)
        w.start()
        for part in range(3):  # several batches, so several chunks and rotations
            log(ring_name, f"r{round_}", 40, start=part * 40)
            committed += 40
            drained(ring_name, committed, w)
        if how == "term":
            assert w.stop() == 0, w.stderr()
        else:
            w.kill()
    recs = records(d, seal.keyring, seal.identity)
    assert [r["n"] for r in recs] == list(range(len(recs)))
    mine = producers_only(recs)
    assert len(mine) == committed
    for round_ in range(5):
        got = [r["fields"]["i"] for r in mine if r["fields"]["label"] == f"r{round_}"]
        assert got == list(range(120)), f"round {round_}"
    assert len({r["_file"] for r in recs}) > 5  # rotated within rounds and at every start
    s = stats(ring_name)
    assert s["lost"] == 0 and s["next_n"] == len(recs)


def test_filtered_records_get_no_number(ring_name, tmp_path, started):
    d = tmp_path / "logs"
    cfg = tmp_path / "writer.toml"
    cfg.write_text('[writer]\nmin_level = "INFO"\n')
    for round_ in range(2):
        w = WriterProcess(ring_name, d, "--config", str(cfg))
        started.append(w)
        w.start()
        p = connect(ring_name, name="mixed")
        for i in range(200):
            assert p.log("DEBUG" if i % 3 else "INFO", "mixed %d", i, i=i, round=round_)
        p.close()
        wait_for(lambda: stats(ring_name)["written"] + stats(ring_name)["filtered"]
                 >= stats(ring_name)["committed"] and stats(ring_name)["used_bytes"] == 0,
                 timeout=30, what="drained")
        assert w.stop() == 0
    recs = records(d)
    assert [r["n"] for r in recs] == list(range(len(recs)))
    kept = producers_only(recs)
    assert [(r["fields"]["round"], r["fields"]["i"]) for r in kept] == \
        [(k, i) for k in range(2) for i in range(0, 200, 3)]
    assert stats(ring_name)["filtered"] == 2 * (200 - 67)


def test_n_goes_on_in_the_ring_that_replaces_a_removed_one(ring_name, tmp_path, started):
    d = tmp_path / "logs"
    w = WriterProcess(ring_name, d)
    started.append(w)
    w.start()
    log(ring_name, "old", 50)
    drained(ring_name, 50, w)
    r = subprocess.run(cli("ring", "rm", ring_name), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: '"ring_replaced"' in w.stderr(), timeout=30, what="ring replaced")
    log(ring_name, "new", 50)
    wait_for(lambda: stats(ring_name)["written"] >= 50, timeout=30, what="new ring drained")
    assert w.stop() == 0, w.stderr()
    recs = records(d)
    assert [r["n"] for r in recs] == list(range(len(recs)))
    assert [r["fields"]["label"] for r in producers_only(recs)] == ["old"] * 50 + ["new"] * 50
    # and a writer started again on the new ring knows the stream: nothing lost, n goes on
    w = WriterProcess(ring_name, d)
    started.append(w)
    w.start()
    log(ring_name, "again", 10)
    drained(ring_name, 60, w)
    assert w.stop() == 0
    assert '"records_lost"' not in w.stderr()
    recs = records(d)
    assert [r["n"] for r in recs] == list(range(len(recs)))
    unlink(ring_name)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["plaintext", "key"])
def test_n_stays_consecutive_after_a_write_that_failed_halfway(mode, ring_name, tmp_path, started,
                                                               small_disk):
    """A batch crosses the rotation size on a disk that then fills: its first piece is in the
    old file, the rest fails (ENOSPC) again and again.  When space returns, the batch drained
    again skips what was written and numbers the rest right after it."""
    import os
    import signal

    from conftest import proc_state
    from test_faults_disk import PAGE, RING_FLAGS, _failures, _log_one_written, _log_range, _remount

    mnt = small_disk
    seal = Seal(mode, tmp_path)
    w = seal.writer(ring_name, mnt, *RING_FLAGS, "--rotate-size", "64KiB")
    started.append(w)
    w.start()
    p = connect(ring_name, name="producer-0", on_full="drop")
    i = 0
    _log_one_written(p, ring_name, i, 0, w)
    i += 1
    path = mnt / log_files(mnt)[0].name
    while path.stat().st_size < 64 * 1024 - 6000:
        _log_one_written(p, ring_name, i, 1500, w)
        i += 1
    st = os.statvfs(mnt)
    keep = 64 * 1024 // PAGE - -(-path.stat().st_size // PAGE) + (1 if mode == "key" else 0)
    with open(mnt / "filler", "wb") as f:
        for _ in range(st.f_bavail - keep):
            f.write(b"\0" * PAGE)
    os.kill(w.proc.pid, signal.SIGSTOP)  # the burst is drained as one batch
    try:
        wait_for(lambda: proc_state(w.proc.pid) == "T", timeout=60, what="the writer stopped")
        _log_range(p, i, i + 300)
        i += 300
    finally:
        os.kill(w.proc.pid, signal.SIGCONT)
    wait_for(lambda: _failures(w, "ENOSPC") >= 3, timeout=60, what="ENOSPC on the writer's stderr")
    partial = records(mnt, seal.keyring)
    assert len(partial) > stats(ring_name)["written"], "the batch's first piece should be in a file"
    _remount(mnt, "size=64m")
    wait_for(lambda: stats(ring_name)["written"] == stats(ring_name)["committed"] == i,
             timeout=60, what="every record written")
    assert w.stop() == 0, w.stderr()
    p.close()
    recs = records(mnt, seal.keyring)
    assert [r["n"] for r in recs] == list(range(len(recs))) and len(recs) == i
    assert [r["fields"]["i"] for r in recs] == list(range(i))
    assert recs[:len(partial)] == partial
