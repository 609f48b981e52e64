"""One set of sequence rules: every attack on a log directory, run against `verify`, `cat`
and `cat --follow`, in key and in recipient mode.

The attacker can write the log directory and knows the recipient string (it is public);
in key mode they do not hold the key.  Each attack must make verify exit 1 naming the
file, cat exit non-zero naming it (and never print a forged record), and cat --follow
report it on stderr at once (and never print a forged record).
"""
from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import logger_system
from logger_system import sealed
from logger_system.keys import parse_recipient
from logger_system.ring import unlink
from logger_system.rotation import LogFile

from conftest import WriterProcess, cli, stats, wait_for

FORGED = "forgedrecordzebra"
pytestmark = pytest.mark.slow


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run(cli(*args), capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


@dataclass
class Corpus:
    dir: Path
    mode: str           # "key" or "recipient"
    read: list[str]     # the reader's key arguments
    seal: list[str]     # the writer's
    recipient: str | None
    records: int

    def files(self, d: Path | None = None) -> list[Path]:
        d = d or self.dir
        return sorted(d / n for n in os.listdir(d) if LogFile.parse(n))


def make_identity(path: Path) -> tuple[Path, str]:
    r = run("keygen", "--x25519", "--out", path)
    assert r.returncode == 0, r.stderr
    return path, r.stdout.strip()


def _write(base: Path, seal: list[str], groups: int = 12, per: int = 10) -> Path:
    ring = f"lstest-{uuid.uuid4().hex[:12]}"
    logs = base / "logs"
    w = WriterProcess(ring, logs, *seal, "--rotate-size", "3KB", plaintext=False)
    try:
        w.start()
        log = logger_system.connect(ring, name="chain")
        n = 0
        for _ in range(groups):
            for _ in range(per):
                assert log.info("genuine record %d", n, i=n)
                n += 1
            wait_for(lambda: stats(ring)["written"] >= n, what="written")
        assert w.stop() == 0, w.stderr()
    finally:
        if w.proc and w.proc.poll() is None:
            w.kill()
        unlink(ring)
    return logs


@pytest.fixture(scope="module", params=["key", "recipient"])
def corpus(request, tmp_path_factory):
    base = tmp_path_factory.mktemp(f"chain-{request.param}")
    if request.param == "key":
        key = base / "writer.key"
        assert run("keygen", "--out", key).returncode == 0
        seal, read, recipient = ["--key", str(key)], ["--key", str(key)], None
    else:
        ident, recipient = make_identity(base / "reader.identity")
        seal, read = ["--recipient", recipient], ["--identity", str(ident)]
    logs = _write(base, seal)
    c = Corpus(logs, request.param, read, seal, recipient, 120)
    assert len(c.files()) >= 4, "the attacks need several files"
    v = run("verify", *read, logs)
    assert v.returncode == 0, v.stdout + v.stderr
    return c


@pytest.fixture
def victim(corpus, tmp_path):
    """A fresh copy of the corpus directory to attack."""
    d = tmp_path / "logs"
    shutil.copytree(corpus.dir, d)
    os.chmod(d, 0o700)
    return d


def _name(index: int, like: Path, suffix: str, stamp: str = "20991231T235959Z") -> str:
    f = LogFile.parse(like.name)
    return LogFile(index, stamp, f.ring_id, suffix).name


def _forged_line(n: int) -> bytes:
    return (json.dumps({"seq": 1 << 40, "n": n, "ts": "2026-12-01T00:00:00.000000Z", "level": "INFO",
                        "pid": 1, "logger": "chain", "msg": f"{FORGED} admin granted"}) + "\n").encode()


def _follow(d: Path, read: list[str], timeout: float = 6.0, before=None) -> tuple[str, str]:
    """Run cat --follow on d; `before` (callable) runs once it has printed what is there.
    Returns (its stdout, its first stderr line or '') after the first report or timeout."""
    proc = subprocess.Popen(cli("cat", "--follow", *read, d), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    out = bytearray()
    err = b""
    try:
        os.set_blocking(proc.stdout.fileno(), False)
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        sel.register(proc.stderr, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() < deadline and not err:
            for key, _ in sel.select(0.1):
                if key.fileobj is proc.stdout:
                    out += proc.stdout.read() or b""
                    quiet_since = time.monotonic()
                else:
                    err = proc.stderr.readline()
            if before is not None and time.monotonic() - quiet_since > 1.0:
                before()
                before = None
                deadline = time.monotonic() + timeout
        out += proc.stdout.read() or b""
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
    return out.decode(), err.decode()


def assert_caught(d: Path, read: list[str], named: Path | str, phrase: str, follow: bool = True) -> None:
    named = str(named)
    v = run("verify", *read, d)
    assert v.returncode == 1, f"verify passed:\n{v.stdout}{v.stderr}"
    assert any(line.startswith(named) and phrase in line for line in v.stdout.splitlines()), v.stdout
    c = run("cat", *read, d)
    assert c.returncode != 0, "cat exit 0"
    assert any(named in line and phrase in line for line in c.stderr.splitlines()), c.stderr
    assert FORGED not in c.stdout
    if follow:
        out, err = _follow(d, read)
        assert named in err and phrase in err, f"cat --follow said {err!r}"
        assert FORGED not in out


# ---- plaintext dropped into a sealed directory ------------------------------------------

def test_plaintext_file_with_a_new_index_is_a_fault(corpus, victim):
    files = corpus.files(victim)
    p = victim / _name(LogFile.parse(files[-1].name).index + 1, files[-1], "jsonl")
    p.write_bytes(_forged_line(corpus.records))
    assert_caught(victim, corpus.read, p, "not sealed")


def test_plaintext_file_replacing_a_middle_file_is_a_fault(corpus, victim):
    files = corpus.files(victim)
    middle = files[2]
    middle.unlink()
    p = victim / _name(LogFile.parse(middle.name).index, middle, "jsonl")
    p.write_bytes(_forged_line(30))
    assert_caught(victim, corpus.read, p, "not sealed")
    v = run("verify", *corpus.read, victim)
    assert "missing" in v.stdout  # and the sealed sequence has a hole


@pytest.mark.parametrize("suffix", ["log", "txt", "jsonl.1", "lsx.bak", "JSONL"])
def test_a_log_file_of_any_other_name_is_a_fault(corpus, victim, suffix):
    files = corpus.files(victim)
    p = victim / (_name(LogFile.parse(files[-1].name).index + 1, files[-1], "jsonl")[:-5] + suffix)
    p.write_bytes(_forged_line(corpus.records))
    assert_caught(victim, corpus.read, p, "not a log file the writer writes")


def test_plaintext_in_a_sealed_directory_read_without_a_key_is_still_refused(corpus, victim):
    files = corpus.files(victim)
    p = victim / _name(LogFile.parse(files[-1].name).index + 1, files[-1], "jsonl")
    p.write_bytes(_forged_line(corpus.records))
    c = run("cat", victim)
    assert c.returncode != 0 and FORGED not in c.stdout


# ---- copies, replays, forks -------------------------------------------------------------

def test_a_genuine_file_copied_under_its_own_index_is_a_fault(corpus, victim):
    files = corpus.files(victim)
    copy = victim / _name(LogFile.parse(files[1].name).index, files[1], "lsx")
    shutil.copy(files[1], copy)
    assert_caught(victim, corpus.read, copy, "a second file numbered")


def test_an_old_file_replayed_as_the_newest_is_a_fault(corpus, victim):
    files = corpus.files(victim)
    replay = victim / _name(LogFile.parse(files[-1].name).index + 1, files[-1], "lsx")
    shutil.copy(files[0], replay)
    assert_caught(victim, corpus.read, replay, "renamed or swapped")


def test_follow_reports_a_file_replayed_while_it_runs(corpus, victim):
    files = corpus.files(victim)
    replay = victim / _name(LogFile.parse(files[-1].name).index + 1, files[-1], "lsx")
    out, err = _follow(victim, corpus.read, before=lambda: shutil.copy(files[1], replay))
    assert str(replay) in err, err
    genuine = [json.loads(line) for line in out.splitlines()]
    assert [r["n"] for r in genuine] == list(range(corpus.records))  # printed once, not twice


def _forge(corpus: Corpus, d: Path, index: int, prev: Path | None, lines: list[bytes], stamp: str) -> Path:
    """A sealed file made with the public recipient string alone."""
    assert corpus.recipient is not None
    if prev is not None:
        data = prev.read_bytes()
        scan = sealed.scan_chunks(data, str(prev))
        link = dict(prev_id=scan.header.file_id, prev_digest=scan.digest_of_last(data),
                    prev_chunks=len(scan.chunks), prev_flags=0)
        stream, ring_id = scan.header.stream_id, scan.header.ring_id
    else:
        link = dict(prev_id=bytes(16), prev_digest=bytes(32), prev_chunks=0, prev_flags=0)
        stream, ring_id = os.urandom(16), 1
    header, key = sealed.make_header(stream_id=stream, index=index, ring_id=ring_id, created_ns=time.time_ns(),
                                     compress=False, recipients=[parse_recipient(corpus.recipient)], **link)
    digest = sealed.parse_header(header).digest
    aead = AESGCM(key)
    next_n = json.loads(lines[-1])["n"] + 1
    body = sealed.seal_chunk(aead, digest, 0, b"".join(lines), final=False, last_seq=1 << 40, next_n=next_n)
    final = sealed.seal_chunk(aead, digest, 1, b"", final=True, last_seq=1 << 40, next_n=next_n)
    path = d / LogFile(index, stamp, ring_id, "lsx").name
    path.write_bytes(header + body + final)
    return path


def test_a_fork_from_the_middle_made_with_the_recipient_string_is_a_fault(corpus, victim):
    if corpus.mode != "recipient":
        pytest.skip("forging needs the recipient string: recipient mode")
    files = corpus.files(victim)
    fork = _forge(corpus, victim, LogFile.parse(files[2].name).index, files[1], [_forged_line(20)],
                  "20991231T235959Z")
    assert_caught(victim, corpus.read, fork, "a second file numbered")


def test_a_forged_successor_of_the_newest_file_shows_as_a_gap_in_n(corpus, victim):
    """With the recipient string an attacker can append a valid-looking file; the records
    it claims must still continue `n`, or verify names the gap.  (One that continues `n`
    is what a local verifier cannot tell from the writer: docs/SECURITY.md.)"""
    if corpus.mode != "recipient":
        pytest.skip("forging needs the recipient string: recipient mode")
    files = corpus.files(victim)
    nxt = _forge(corpus, victim, LogFile.parse(files[-1].name).index + 1, files[-1],
                 [_forged_line(corpus.records + 50)], "20991231T235959Z")
    v = run("verify", *corpus.read, victim)
    assert v.returncode == 1 and any(str(nxt) in line and "missing" in line for line in v.stdout.splitlines()), \
        v.stdout


# ---- a cut tail -------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["chunk_boundary", "mid_chunk"])
def test_a_cut_tail_with_no_writer_is_a_fault(corpus, victim, where):
    newest = corpus.files(victim)[-1]
    data = newest.read_bytes()
    scan = sealed.scan_chunks(data, str(newest))
    cut = scan.chunks[-1].start if where == "chunk_boundary" else scan.chunks[-2].start + 20
    newest.write_bytes(data[:cut])
    assert_caught(victim, corpus.read, newest, "truncated" if where == "mid_chunk" else "unfinished")


def test_a_middle_file_cut_short_is_a_fault(corpus, victim):
    files = corpus.files(victim)
    data = files[1].read_bytes()
    scan = sealed.scan_chunks(data, str(files[1]))
    files[1].write_bytes(data[:scan.chunks[-1].start])
    assert_caught(victim, corpus.read, files[1], "truncated")


def test_removing_the_oldest_files_is_named_as_beyond_a_local_verifier(corpus, victim):
    files = corpus.files(victim)
    files[0].unlink()
    v = run("verify", *corpus.read, victim)
    assert v.returncode == 0, v.stdout
    assert "earlier files were removed" in v.stderr and "cannot tell" in v.stderr


def test_a_damaged_file_moved_aside_is_named(corpus, victim):
    files = corpus.files(victim)
    os.rename(files[-1], str(files[-1]) + ".damaged")
    assert_caught(victim, corpus.read, str(files[-1]) + ".damaged", "damaged", follow=True)


# ---- a cut tail after a writer restart, and a damaged newest file ----------------------

def _restart_on(corpus: Corpus, d: Path, ring: str) -> str:
    w = WriterProcess(ring, d, *corpus.seal, "--rotate-size", "3KB", plaintext=False)
    try:
        w.start()
        log = logger_system.connect(ring, name="chain")
        for k in range(5):
            assert log.info("after the restart %d", k)
        wait_for(lambda: stats(ring)["used_bytes"] == 0, what="drained")
        assert w.stop() == 0, w.stderr()
    finally:
        if w.proc and w.proc.poll() is None:
            w.kill()
    return w.stderr()


@pytest.mark.parametrize("where", ["chunk_boundary", "mid_chunk"])
def test_a_tail_cut_before_a_writer_restart_is_recorded_not_laundered(corpus, tmp_path, where):
    """The ring confirms what it released: the restarted writer records the loss in the next
    header, and every reader fails on it until --accept-loss."""
    ring = f"lstest-{uuid.uuid4().hex[:12]}"
    d2 = tmp_path / "second"
    d2.mkdir()
    w = WriterProcess(ring, d2 / "logs", *corpus.seal, "--rotate-size", "3KB", plaintext=False)
    try:
        w.start()
        log = logger_system.connect(ring, name="chain")
        for k in range(40):
            assert log.info("genuine record %d", k)
            if k % 10 == 9:
                wait_for(lambda: stats(ring)["used_bytes"] == 0, what="drained")
        assert w.stop() == 0
        newest = corpus.files(d2 / "logs")[-1]
        data = newest.read_bytes()
        scan = sealed.scan_chunks(data, str(newest))
        gone = [c for c in scan.chunks if not c.final][-2:]
        newest.write_bytes(data[:gone[0].start if where == "chunk_boundary" else gone[0].start + 30])
        err = _restart_on(corpus, d2 / "logs", ring)
        assert "records_lost" in err, err
        logs = d2 / "logs"
        v = run("verify", *corpus.read, logs)
        assert v.returncode == 1 and "lost just before this file" in v.stdout, v.stdout + v.stderr
        c = run("cat", *corpus.read, logs)
        assert c.returncode != 0 and "lost" in c.stderr
        _out, ferr = _follow(logs, corpus.read)
        assert "lost" in ferr, ferr
        ok = run("verify", "--accept-loss", *corpus.read, logs)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "accepted" in ok.stderr
    finally:
        if w.proc and w.proc.poll() is None:
            w.kill()
        unlink(ring)


def test_a_damaged_newest_header_is_moved_aside_and_named(corpus, tmp_path):
    ring = f"lstest-{uuid.uuid4().hex[:12]}"
    logs = tmp_path / "logs"
    w = WriterProcess(ring, logs, *corpus.seal, "--rotate-size", "3KB", plaintext=False)
    try:
        w.start()
        log = logger_system.connect(ring, name="chain")
        for k in range(30):
            assert log.info("genuine record %d", k)
        wait_for(lambda: stats(ring)["used_bytes"] == 0, what="drained")
        assert w.stop() == 0
        newest = corpus.files(logs)[-1]
        data = bytearray(newest.read_bytes())
        data[5] = 9  # a complete header, damaged: no key is needed to do this
        newest.write_bytes(bytes(data))
        err = _restart_on(corpus, logs, ring)  # the writer keeps running and writes on
        assert "moved_damaged_file" in err, err
        damaged = Path(str(newest) + ".damaged")
        assert damaged.exists()
        v = run("verify", *corpus.read, logs)
        assert v.returncode == 1 and str(damaged) in v.stdout and "damaged" in v.stdout, v.stdout
        c = run("cat", *corpus.read, logs)
        assert c.returncode != 0 and str(damaged) in c.stderr
        ok = run("verify", "--accept-loss", *corpus.read, logs)
        assert ok.returncode == 0, ok.stdout + ok.stderr
    finally:
        if w.proc and w.proc.poll() is None:
            w.kill()
        unlink(ring)


def test_a_plaintext_gap_in_n_is_a_fault(tmp_path):
    ring = f"lstest-{uuid.uuid4().hex[:12]}"
    logs = tmp_path / "logs"
    w = WriterProcess(ring, logs)
    try:
        w.start()
        log = logger_system.connect(ring, name="chain")
        for k in range(20):
            assert log.info("plain record %d", k)
        wait_for(lambda: stats(ring)["used_bytes"] == 0, what="drained")
        assert w.stop() == 0
    finally:
        if w.proc and w.proc.poll() is None:
            w.kill()
        unlink(ring)
    f = sorted(logs.iterdir())[0]
    lines = f.read_bytes().splitlines(keepends=True)
    f.write_bytes(b"".join(lines[:5] + lines[6:]))  # one record removed from the middle
    v = run("verify", logs)
    assert v.returncode == 1 and "record n=5 missing" in v.stdout, v.stdout
    c = run("cat", logs)
    assert c.returncode != 0 and "record n=5 missing" in c.stderr
    _out, ferr = _follow(logs, [])
    assert "record n=5 missing" in ferr
