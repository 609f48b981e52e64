"""Sealed (encrypted, chained) log files end to end: keys, the writer, verify, cat.

Every writer here is a real `logger-system writer` process sealing with --key
or --recipient; every check of the files goes through the real `logger-system
cat` / `verify` commands (exit status and messages), except the property tests
of the chunk reader, which build files in-process with the format's own
functions.  Records carry the fields producer=<label>, i=<index>, so the
output can be checked for every record exactly once and in order.
"""
from __future__ import annotations

import base64
import json
import multiprocessing as mp
import os
import queue
import random
import re
import shutil
import signal
import stat
import string
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import WriterProcess, stats, wait_for
from logger_system import connect, sealed
from logger_system.keys import Identity, Keyring, load_keyring
from logger_system.ring import unlink, writer_attached
from logger_system.rotation import LogFile
from logger_system.files.chain import log_files

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="needs /proc, flock and POSIX shared memory")

CLI = [sys.executable, "-m", "logger_system"]
CLI_TIMEOUT = 60.0
DRAIN_TIMEOUT = 30.0

try:
    import zstandard  # noqa: F401
    HAVE_ZSTD = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_ZSTD = False

needs_zstd = pytest.mark.skipif(
    not HAVE_ZSTD, reason="--compress needs the `zstandard` package (pip install zstandard); "
                          "it is not installed here")


# ---- processes ----------------------------------------------------------------

def cli(*args: str | Path, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess:
    """`logger-system ARGS` as a child process; text output."""
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


class SealedWriter(WriterProcess):
    """`logger-system writer` without --plaintext: the options decide how files are sealed."""

    def __init__(self, ring: str, directory: Path, *extra: str | Path) -> None:
        super().__init__(ring, directory, *extra, plaintext=False)

    def wait_exit(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"writer did not exit within {timeout}s: {self.stderr()}") from None

    def stop(self, timeout: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def events(self) -> list[dict]:
        return _events(self.stderr())


def _events(text: str) -> list[dict]:
    """The writer's diagnostics: one JSON object per line of its stderr."""
    out = []
    for line in text.splitlines():
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if isinstance(d, dict) and "writer" in d:
            out.append(d)
    return out


_all_writers: list[SealedWriter] = []


def _reap_writers() -> None:
    while _all_writers:
        w = _all_writers.pop()
        if w.proc is not None and w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait(10)


def new_writer(ring: str, directory: Path, *extra: str | Path) -> SealedWriter:
    w = SealedWriter(ring, directory, *extra)
    _all_writers.append(w)
    return w


@pytest.fixture
def writer(ring_name, tmp_path):
    """make(*options, directory=None, ring=None): a sealed writer, killed at teardown if alive."""
    def make(*extra, directory: Path | None = None, ring: str | None = None) -> SealedWriter:
        return new_writer(ring or ring_name, directory or tmp_path / "logs", *extra)

    yield make
    _reap_writers()


@pytest.fixture
def children():
    started: list = []
    yield started
    for c in started:
        if c.pid is not None and c.is_alive():
            c.kill()
            c.join(10)


# ---- keys ---------------------------------------------------------------------

def make_key(path: Path) -> Path:
    r = cli("keygen", "--out", path)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return path


def make_identity(path: Path) -> tuple[Path, str]:
    r = cli("keygen", "--x25519", "--out", path)
    assert r.returncode == 0, r.stderr
    recipient = r.stdout.strip()
    assert recipient.startswith("lsx1:"), r.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return path, recipient


def key_ids(path: Path) -> list[bytes]:
    return [bytes.fromhex(line.split(":")[1]) for line in path.read_text().splitlines() if line.strip()]


def secrets_in(*paths: Path) -> list[str]:
    """The base64 key material of key and identity files (and its raw hex, for good measure)."""
    out = []
    for p in paths:
        for line in p.read_text().splitlines():
            if not line.strip():
                continue
            b64 = line.rsplit(":", 1)[1].strip()
            out += [b64, base64.b64decode(b64).hex()]
    return out


def assert_no_secret(text: str, *keyfiles: Path) -> None:
    for s in secrets_in(*keyfiles):
        assert s not in text, "key material appears in output"


def copy_secret(src: Path, dst: Path) -> Path:
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o600)
    return dst


# ---- records ------------------------------------------------------------------

def new_marker() -> str:
    return "quokka" + "".join(random.choice(string.ascii_lowercase) for _ in range(14))


def log_range(ring: str, start: int, stop: int, label: int = 0, marker: str = "rec") -> None:
    log = connect(ring, name=f"sealed-{label}")
    for i in range(start, stop):
        assert log.info("%s record %d of %d", marker, i, label, producer=label, i=i), "dropped"


def wait_written(ring: str, n: int, writer: SealedWriter | None = None,
                 timeout: float = DRAIN_TIMEOUT) -> dict:
    def check():
        s = stats(ring)
        return s if s["written"] >= n and s["used_bytes"] == 0 else None
    try:
        return wait_for(check, timeout=timeout, interval=0.01, what=f"{n} records written")
    except AssertionError:
        raise AssertionError(f"not drained: {stats(ring)}; writer stderr: "
                             f"{writer.stderr() if writer else ''}") from None


def parse_lines(text: str) -> list[dict]:
    assert text == "" or text.endswith("\n"), "output ends inside a line"
    return [json.loads(line) for line in text.splitlines()]


def by_producer(records: list[dict]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for r in records:
        f = r.get("fields") or {}
        out[f["producer"]].append(f["i"])
    return out


def describe(got: list[int], n: int) -> str:
    c = Counter(got)
    dups = sorted(k for k, v in c.items() if v > 1)
    missing = sorted(set(range(n)) - set(c))
    disorder = sum(1 for a, b in zip(got, got[1:]) if b <= a)
    return (f"{len(got)} records, {len(dups)} duplicated (first {dups[:5]}), {disorder} out of order, "
            f"{len(missing)} of {n} missing (first {missing[:5]})")


def assert_exactly_once(records: list[dict], expected: dict[int, int], context: str = "") -> None:
    by = by_producer(records)
    assert set(by) == set(expected), f"producers {sorted(by)} != {sorted(expected)}{context}"
    for label, n in expected.items():
        assert by[label] == list(range(n)), f"producer {label}: {describe(by[label], n)}{context}"
    seqs = [r["seq"] for r in records]
    assert all(b > a for a, b in zip(seqs, seqs[1:])), f"seq does not increase in file order{context}"


def sealed_files(directory: Path) -> list[Path]:
    return [directory / f.name for f in log_files(directory)]


def verify_lines(stdout: str) -> dict[str, str]:
    """verify's stdout: one line per file, `path: ok|open` or a message starting with the path."""
    out = {}
    for line in stdout.splitlines():
        m = re.match(r"^(\S+\.lsx): (.*)$", line)
        assert m, f"unexpected verify line {line!r}"
        out[m.group(1)] = m.group(2)
    return out


# ---- a written sequence, shared by several tests ----------------------------------

@dataclass
class Corpus:
    dir: Path
    files: list[Path]
    n: int  # records 0..n-1 of producer 0
    marker: str
    writer_stderr: str


def write_corpus(base: Path, seal: list[str | Path], *, groups: int, per_group: int = 10,
                 rotate: str = "6KB", extra: tuple[str, ...] = ()) -> Corpus:
    """A real writer seals `groups` batches of records (each batch its own chunk) into base/logs."""
    ring = f"lstest-{uuid.uuid4().hex[:12]}"
    base.mkdir(parents=True, exist_ok=True)
    logs = base / "logs"
    marker = new_marker()
    try:
        w = new_writer(ring, logs, *seal, "--rotate-size", rotate, *extra).start()
        n = 0
        for _ in range(groups):
            log_range(ring, n, n + per_group, marker=marker)
            n += per_group
            wait_written(ring, n, w)
        assert w.stop() == 0, w.stderr()
        s = stats(ring)
        assert s["written"] == s["committed"] == n, s
        return Corpus(logs, sealed_files(logs), n, marker, w.stderr())
    finally:
        _reap_writers()
        unlink(ring)


@pytest.fixture(scope="module")
def keydir(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    make_key(d / "writer.key")
    make_key(d / "other.key")
    make_identity(d / "reader.identity")
    make_identity(d / "other.identity")
    return d


@pytest.fixture(scope="module")
def key_corpus(tmp_path_factory, keydir):
    """Closed files sealed with --key: about eight files of several chunks each."""
    c = write_corpus(tmp_path_factory.mktemp("keyseq"), ["--key", keydir / "writer.key"], groups=24)
    assert len(c.files) >= 5, "the corpus needs several files"
    assert len(scan_file(c.files[2]).chunks) >= 4, "the damage tests need three data chunks in file 3"
    return c


@pytest.fixture(scope="module")
def foreign_corpus(tmp_path_factory, keydir):
    """Another writer's sequence, sealed with the very same key, with more files than key_corpus."""
    return write_corpus(tmp_path_factory.mktemp("foreign"), ["--key", keydir / "writer.key"],
                        groups=8, per_group=60, rotate="3KB")


def scan_file(path: Path) -> sealed.Scan:
    return sealed.scan_chunks(path.read_bytes(), str(path))


def flip_bit(path: Path, offset: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


# ---- 1. round trips ----------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("mode,compress", [
    ("key", False),
    pytest.param("key", True, marks=needs_zstd),
    ("recipient", False),
    pytest.param("recipient", True, marks=needs_zstd),
])
def test_round_trip_every_record_once_and_nothing_in_clear(mode, compress, tmp_path, keydir):
    key, ident = keydir / "writer.key", keydir / "reader.identity"
    if mode == "key":
        seal, read = ["--key", key], ["--key", key]
    else:
        ident, recipient = make_identity(tmp_path / "mine.identity")
        seal, read = ["--recipient", recipient], ["--identity", ident]
    # compressed records take a fraction of the room: smaller files for the same rotation count
    c = write_corpus(tmp_path, [*seal, *(["--compress"] if compress else [])], groups=12,
                     rotate="1200" if compress else "6KB")
    assert len(c.files) >= 3
    assert all(p.suffix == ".lsx" for p in c.files)
    for p in c.files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600

    # not plaintext: no record text in the raw bytes
    for p in c.files:
        raw = p.read_bytes()
        assert raw[:4] == sealed.MAGIC
        assert c.marker.encode() not in raw, f"{p.name} holds record text in the clear"
        assert b'"seq":' not in raw and b"record" not in raw
        s = sealed.scan_chunks(raw, str(p))
        assert s.final and s.torn_at is None
        assert s.header.mode == (sealed.MODE_KEY if mode == "key" else sealed.MODE_RECIPIENTS)
        assert bool(s.header.flags & sealed.FLAG_ZSTD) == compress
        data_chunks = s.chunks[:-1]
        assert data_chunks, "a file without records"
        assert all(bool(ch.flags & sealed.CHUNK_ZSTD) == compress for ch in data_chunks)

    r = cli("cat", *read, c.dir)
    assert r.returncode == 0, r.stderr
    records = parse_lines(r.stdout)
    assert_exactly_once(records, {0: c.n})
    assert all(c.marker in rec["msg"] for rec in records)

    r = cli("verify", *read, c.dir)
    assert r.returncode == 0, r.stdout + r.stderr
    states = verify_lines(r.stdout)
    assert states == {str(p): "ok" for p in c.files}

    assert_no_secret(c.writer_stderr + r.stdout + r.stderr, key, ident)


# ---- 2. recipient mode: the writer cannot read its own files -------------------

@pytest.mark.slow
def test_recipient_mode_only_the_identity_reads(tmp_path, keydir):
    ident, recipient = make_identity(tmp_path / "reader.identity")
    c = write_corpus(tmp_path, ["--recipient", recipient], groups=6)
    # what the writer had: only the recipient string, no secret; a keyring or nothing fails
    for args in (["--key", keydir / "writer.key"], [], ["--identity", keydir / "other.identity"]):
        r = cli("cat", *args, c.dir)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        fault = "wrong key" if args else "these files are sealed: give --key or --identity"
        assert fault in r.stderr, r.stderr
        assert str(c.files[0]) in r.stderr
        assert r.stdout == "", "records were printed without the identity"
        v = cli("verify", *args, c.dir)
        assert v.returncode == 1, v.stdout
        for p in c.files:
            assert f"{p}: {fault}" in v.stdout, v.stdout
        assert_no_secret(r.stderr + v.stdout + v.stderr, ident, keydir / "writer.key",
                         keydir / "other.identity")
    r = cli("cat", "--identity", ident, c.dir)
    assert r.returncode == 0, r.stderr
    assert_exactly_once(parse_lines(r.stdout), {0: c.n})
    # two recipients: each identity opens the files on its own
    ident2, recipient2 = make_identity(tmp_path / "second.identity")
    c2 = write_corpus(tmp_path / "two", ["--recipient", recipient, "--recipient", recipient2], groups=2)
    for i in (ident, ident2):
        r = cli("cat", "--identity", i, c2.dir)
        assert r.returncode == 0, r.stderr
        assert_exactly_once(parse_lines(r.stdout), {0: c2.n})


# ---- 3. key rotation ------------------------------------------------------------

@pytest.mark.slow
def test_key_rotation_old_and_new_files_open_old_keyring_cannot_open_new(ring_name, writer,
                                                                         tmp_path):
    key = make_key(tmp_path / "writer.key")
    logs = tmp_path / "logs"
    w = writer("--key", key, "--rotate-size", "4KB").start()
    log_range(ring_name, 0, 100)
    wait_written(ring_name, 100, w)
    assert w.stop() == 0, w.stderr()
    before = sealed_files(logs)
    (old_id,) = key_ids(key)

    old_keyring = copy_secret(key, tmp_path / "before-rotation.key")
    r = cli("keygen", "--rotate", "--out", key)
    assert r.returncode == 0, r.stderr
    ids = key_ids(key)
    assert len(ids) == 2 and ids[1] == old_id and ids[0] != old_id, "the new key goes in front"
    new_id = ids[0]
    assert new_id.hex() in r.stderr
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert_no_secret(r.stdout + r.stderr, key)

    w = writer("--key", key, "--rotate-size", "4KB").start()
    log_range(ring_name, 100, 200)
    wait_written(ring_name, 200, w)
    assert w.stop() == 0, w.stderr()
    after = [p for p in sealed_files(logs) if p not in before]
    assert before and after
    for p in before:
        assert scan_file(p).header.key_block[:8] == old_id
    for p in after:
        assert scan_file(p).header.key_block[:8] == new_id, f"{p.name} not sealed with the new key"

    r = cli("cat", "--key", key, logs)
    assert r.returncode == 0, r.stderr
    assert_exactly_once(parse_lines(r.stdout), {0: 200})
    v = cli("verify", "--key", key, logs)
    assert v.returncode == 0, v.stdout + v.stderr
    assert set(verify_lines(v.stdout).values()) == {"ok"}

    # the keyring from before the rotation opens the old files, not the new ones
    r = cli("cat", "--key", old_keyring, *before)
    assert r.returncode == 0, r.stderr
    assert_exactly_once(parse_lines(r.stdout), {0: 100})
    r = cli("cat", "--key", old_keyring, logs)
    assert r.returncode == 1
    assert "wrong key" in r.stderr and str(after[0]) in r.stderr, r.stderr
    assert new_id.hex() in r.stderr  # names the key id it needs (an id, not the key)
    v = cli("verify", "--key", old_keyring, logs)
    assert v.returncode == 1
    states = verify_lines(v.stdout)
    for p in before:
        assert states[str(p)] == "ok"
    for p in after:
        assert "wrong key" in states[str(p)]
    assert_no_secret(r.stderr + v.stdout + v.stderr, key)


# ---- 4. damage ------------------------------------------------------------------

def _chunk_ciphertext_offset(path: Path, chunk: int) -> int:
    c = scan_file(path).chunks[chunk]
    return c.start + sealed._CHUNK.size + (c.end - c.start - sealed._CHUNK.size) // 2


def _damage(case: str, d: Path, files: list[Path], foreign: list[Path]) -> tuple[list[Path], list[str]]:
    """Damage the copy in d; (files that must be named, phrases the messages must hold)."""
    victim = files[2]
    if case == "chunk_bit":
        flip_bit(victim, _chunk_ciphertext_offset(victim, 2), 3)
        return [victim], ["tampered at chunk 2"]
    if case == "first_chunk_bit":
        flip_bit(victim, _chunk_ciphertext_offset(victim, 0), 7)
        return [victim], ["tampered at chunk 0"]
    if case == "header_bit":
        flip_bit(victim, 30, 1)  # inside the file id
        return [victim], ["tampered", "header"]
    if case == "header_index_bit":
        flip_bit(victim, 44, 0)  # the file index in the header
        return [victim], ["tampered", "header"]
    if case == "tail_cut":
        data = victim.read_bytes()
        victim.write_bytes(data[:-7])
        return [victim], ["truncated"]
    if case == "final_chunk_cut":  # exactly the final chunk, on a chunk boundary
        s = scan_file(victim)
        victim.write_bytes(victim.read_bytes()[:s.chunks[-1].start])
        return [victim], ["truncated"]
    if case == "half":
        data = victim.read_bytes()
        victim.write_bytes(data[:len(data) // 2])
        return [victim], ["truncated"]
    if case == "deleted_middle":
        victim.unlink()
        return [files[3]], ["predecessor missing"]
    if case == "swapped":
        a, b = files[2], files[3]
        tmp = d / "swap.tmp"
        a.rename(tmp)
        b.rename(a)
        tmp.rename(b)
        return [a, b], ["renamed or swapped"]
    if case == "appended":
        with open(victim, "ab") as f:
            f.write(os.urandom(64))
        return [victim], ["tampered", "follow the final chunk"]
    if case == "appended_newest":
        victim = files[-1]
        with open(victim, "ab") as f:
            f.write(b"\0" * 10)
        return [victim], ["tampered", "follow the final chunk"]
    if case == "foreign":
        newest = LogFile.parse(files[-1].name)
        nxt = newest.index + 1
        src = next(p for p in foreign if LogFile.parse(p.name).index == nxt)
        # a plausible next name: next index, this sequence's ring id
        name = LogFile(nxt, LogFile.parse(src.name).stamp, newest.ring_id, newest.suffix).name
        shutil.copyfile(src, d / name)
        return [d / name], ["not part of this sequence"]
    raise AssertionError(case)


# what cat must say besides naming the file (chain damage may be worded its own way)
CAT_PHRASES = {"chunk_bit": ["tampered at chunk 2"], "first_chunk_bit": ["tampered at chunk 0"],
               "header_bit": ["tampered"], "header_index_bit": ["tampered"], "tail_cut": ["truncated"],
               "final_chunk_cut": ["truncated"], "half": ["truncated"], "appended": ["tampered"],
               "appended_newest": ["tampered"]}

DAMAGE = ["chunk_bit", "first_chunk_bit", "header_bit", "header_index_bit", "tail_cut",
          "final_chunk_cut", "half", "deleted_middle", "swapped", "appended", "appended_newest",
          "foreign"]


@pytest.mark.slow
@pytest.mark.parametrize("case", DAMAGE)
def test_damage_caught_by_verify_and_cat(case, key_corpus, foreign_corpus, keydir, tmp_path):
    key = keydir / "writer.key"
    d = tmp_path / "logs"
    shutil.copytree(key_corpus.dir, d)
    files = [d / p.name for p in key_corpus.files]
    named, phrases = _damage(case, d, files, foreign_corpus.files)

    v = cli("verify", "--key", key, d)
    assert v.returncode == 1, f"verify missed {case}: {v.stdout}{v.stderr}"
    bad = [line for line in v.stdout.splitlines() if not line.endswith((": ok", ": open"))]
    for p in named:
        lines = [line for line in bad if line.startswith(f"{p}:")]
        assert lines, f"verify does not name {p.name} as damaged:\n{v.stdout}"
        for phrase in phrases:
            assert any(phrase in line for line in lines), \
                f"verify says nothing of {phrase!r} for {p.name}:\n{v.stdout}"
    assert "failed" in v.stderr

    r = cli("cat", "--key", key, d)
    assert r.returncode != 0, f"cat missed {case}: exit 0 with {len(r.stdout.splitlines())} records"
    msg = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
    assert msg.startswith("logger-system cat: "), r.stderr
    assert any(p.name in msg for p in named), f"cat does not name the damaged file: {msg}"
    for phrase in CAT_PHRASES.get(case, []):
        assert phrase in msg, f"cat does not say {phrase!r}: {msg}"
    assert "Traceback" not in r.stderr
    assert_no_secret(v.stdout + v.stderr + r.stderr, key)


@pytest.mark.slow
def test_damage_wrong_key(key_corpus, keydir):
    v = cli("verify", "--key", keydir / "other.key", key_corpus.dir)
    assert v.returncode == 1
    states = verify_lines(v.stdout)
    assert set(states) == {str(p) for p in key_corpus.files}
    assert all(s.startswith("wrong key") for s in states.values()), v.stdout
    r = cli("cat", "--key", keydir / "other.key", key_corpus.dir)
    assert r.returncode == 1 and r.stdout == ""
    assert "wrong key" in r.stderr and str(key_corpus.files[0]) in r.stderr
    r2 = cli("cat", "--identity", keydir / "reader.identity", key_corpus.dir)
    assert r2.returncode == 1 and "wrong key" in r2.stderr
    assert_no_secret(v.stdout + r.stderr + r2.stderr, keydir / "writer.key", keydir / "other.key",
                     keydir / "reader.identity")


@pytest.mark.slow
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_loose_key_file_refused_by_writer_cat_and_verify(mode, ring_name, writer, key_corpus,
                                                         keydir, tmp_path):
    key = copy_secret(keydir / "writer.key", tmp_path / "loose.key")
    os.chmod(key, mode)
    w = writer("--key", key, directory=tmp_path / "newlogs").start(wait=False)
    rc = w.wait_exit(30)
    assert rc == 2, w.stderr()
    assert "chmod 600" in w.stderr() and str(key) in w.stderr()
    assert f"{mode:04o}" in w.stderr()
    assert not (tmp_path / "newlogs").exists() or not os.listdir(tmp_path / "newlogs"), \
        "the writer touched the directory before checking the key"
    msgs = w.stderr()
    for cmd in ("cat", "verify"):
        r = cli(cmd, "--key", key, key_corpus.dir)
        assert r.returncode == 2, (cmd, r.stdout, r.stderr)
        assert "chmod 600" in r.stderr and r.stdout == ""
        msgs += r.stderr
    r = cli("keygen", "--rotate", "--out", key)
    assert r.returncode == 2 and "chmod 600" in r.stderr
    assert key_ids(key) == key_ids(keydir / "writer.key"), "a loose key file was rotated"
    assert_no_secret(msgs + r.stderr, key)


def test_compress_needs_sealing(tmp_path, ring_name):
    r = cli("writer", "--ring", ring_name, "--dir", tmp_path / "logs", "--plaintext", "--compress")
    assert r.returncode == 2
    assert "compress applies to sealed files" in r.stderr
    r = cli("writer", "--ring", ring_name, "--dir", tmp_path / "logs", "--compress")
    assert r.returncode == 2 and "refusing to write logs without encryption" in r.stderr
    assert not (tmp_path / "logs").exists()


@pytest.mark.slow
def test_world_readable_identity_refused(tmp_path):
    ident, recipient = make_identity(tmp_path / "reader.identity")
    c = write_corpus(tmp_path, ["--recipient", recipient], groups=2)
    os.chmod(ident, 0o644)
    msgs = ""
    for cmd in ("cat", "verify"):
        r = cli(cmd, "--identity", ident, c.dir)
        assert r.returncode == 2, (cmd, r.stdout, r.stderr)
        assert "chmod 600" in r.stderr and "identity" in r.stderr and r.stdout == ""
        msgs += r.stderr
    assert_no_secret(msgs, ident)
    os.chmod(ident, 0o600)
    assert cli("verify", "--identity", ident, c.dir).returncode == 0


@pytest.mark.slow
def test_writer_never_deletes_a_damaged_newest_file(ring_name, writer, tmp_path):
    """Garbage after the newest file's final chunk is damage, not a header torn by a crash:
    a restarted writer must not remove the file (its records would be lost for good).  It
    moves it aside, as `<name>.damaged`, and goes on."""
    key = make_key(tmp_path / "writer.key")
    logs = tmp_path / "logs"
    w = writer("--key", key).start()
    log_range(ring_name, 0, 50)
    wait_written(ring_name, 50, w)
    assert w.stop() == 0, w.stderr()
    (newest,) = sealed_files(logs)
    with open(newest, "ab") as f:
        f.write(b"garbage")
    damaged = newest.read_bytes()
    w2 = writer("--key", key).start(wait=False)
    deadline = time.monotonic() + 20
    while w2.proc.poll() is None and not writer_attached(ring_name, w2.proc.pid):
        assert time.monotonic() < deadline, "writer neither started nor refused"
        time.sleep(0.02)
    if w2.proc.poll() is None:
        w2.stop()
    kept = newest.with_name(newest.name + ".damaged")
    assert kept.exists(), f"the restarted writer deleted {newest.name}: {w2.stderr()}"
    assert kept.read_bytes() == damaged


def _started(w: SealedWriter) -> dict:
    return next(e for e in w.events() if e["writer"] == "started")


def _last_seq_in_files(key: Path, logs: Path) -> int:
    r = cli("cat", "--key", key, logs)
    assert r.returncode == 0, r.stderr
    return parse_lines(r.stdout)[-1]["seq"]


def _wrong_chunk_seqs(files: list[Path], keyring) -> list[str]:
    """Chunks whose header last_seq is not the seq of the last record in or before them."""
    wrong = []
    for p in files:
        data = p.read_bytes()
        s = sealed.scan_chunks(data, str(p))
        key = sealed.data_key(s.header, keyring=keyring)
        last = None
        for c, pt in zip(s.chunks, sealed.open_chunks(data, s, key)):
            if pt:
                last = json.loads(pt.splitlines()[-1])["seq"]
            if c.last_seq != last:
                wrong.append(f"{p.name} chunk {c.index}: header says "
                             f"{'none' if c.last_seq == sealed.NO_SEQ else c.last_seq}, "
                             f"its last record is seq {last}")
    return wrong


@pytest.mark.slow
def test_chunk_headers_carry_the_seq_of_their_last_record(key_corpus, keydir):
    """Each chunk's last_seq (authenticated, read without the key) is the seq of its last
    record; the final chunk repeats the last one.  A restarted writer resumes from it."""
    wrong = _wrong_chunk_seqs(key_corpus.files, load_keyring(keydir / "writer.key"))
    assert not wrong, f"{len(wrong)} chunks with a wrong last_seq: {wrong[:4]}"


@pytest.mark.slow
@pytest.mark.parametrize("lines_per_file", ["several", "one"])
def test_resume_point_after_a_clean_stop(lines_per_file, ring_name, writer, tmp_path):
    key = make_key(tmp_path / "writer.key")
    logs = tmp_path / "logs"
    # "one": a rotation size below header + two lines, so every piece of a batch is one line
    rotate = "3KB" if lines_per_file == "several" else "200"
    log_range(ring_name, 0, 10)  # waiting in the ring: the writer drains them as one batch
    w = writer("--key", key, "--rotate-size", rotate).start()
    for k in range(1, 4):
        wait_written(ring_name, k * 10, w)
        log_range(ring_name, k * 10, k * 10 + 10)
    wait_written(ring_name, 40, w)
    assert w.stop() == 0, w.stderr()
    assert _started(w)["resume_seq"] is None
    files = sealed_files(logs)
    if lines_per_file == "one":
        assert len(files) == 40
    wrong = _wrong_chunk_seqs(files, load_keyring(key))
    last_seq = _last_seq_in_files(key, logs)
    w2 = writer("--key", key, "--rotate-size", rotate).start()
    assert w2.stop() == 0
    resume = _started(w2)["resume_seq"]
    assert resume == last_seq and not wrong, (
        f"restarted writer resumes at {resume}, the files hold up to seq {last_seq}; "
        f"{len(wrong)} chunks with a wrong last_seq: {wrong[:3]}")


@pytest.mark.slow
def test_resume_point_survives_a_crash_right_after_a_new_header(ring_name, writer, tmp_path):
    """A writer killed between a new file's header and its first chunk leaves the newest file
    with no records; the records of this ring are in the file before it, and a restarted writer
    must resume after them (else records still in the ring are written a second time)."""
    key = make_key(tmp_path / "writer.key")
    logs = tmp_path / "logs"
    w = writer("--key", key).start()
    log_range(ring_name, 0, 30)
    wait_written(ring_name, 30, w)
    assert w.stop() == 0, w.stderr()
    (first,) = sealed_files(logs)
    last_seq = _last_seq_in_files(key, logs)
    # the state such a crash leaves: the next file holds its header, chained to the first
    data = first.read_bytes()
    s = sealed.scan_chunks(data)
    f1 = LogFile.parse(first.name)
    header, _ = sealed.make_header(
        stream_id=s.header.stream_id, index=f1.index + 1, ring_id=s.header.ring_id,
        created_ns=time.time_ns(), prev_id=s.header.file_id, prev_digest=s.digest_of_last(data),
        prev_chunks=len(s.chunks), prev_flags=0, compress=False, keyring=load_keyring(key))
    second = logs / LogFile(f1.index + 1, f1.stamp, f1.ring_id, f1.suffix).name
    fd = os.open(second, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, header)
    os.close(fd)
    w2 = writer("--key", key).start()
    assert w2.stop() == 0
    assert _started(w2)["resume_seq"] == last_seq, \
        f"restarted writer resumes at {_started(w2)['resume_seq']}, the files hold up to seq {last_seq}"
    v = cli("verify", "--key", key, logs)  # the header-only file was closed by the restart
    assert v.returncode == 0, v.stdout + v.stderr


# ---- 5. retention ---------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("how", ["keep", "keep_size"])
def test_retention_keeps_sequence_verifiable(how, ring_name, writer, tmp_path):
    key = make_key(tmp_path / "writer.key")
    logs = tmp_path / "logs"
    opts = ["--keep", "3"] if how == "keep" else ["--keep-size", "10KB"]
    w = writer("--key", key, "--rotate-size", "3KB", *opts).start()
    n = 0
    for _ in range(20):
        log_range(ring_name, n, n + 10)
        n += 10
        wait_written(ring_name, n, w)
    assert w.stop() == 0, w.stderr()
    files = sealed_files(logs)
    indexes = [LogFile.parse(p.name).index for p in files]
    assert indexes[0] > 1, "nothing was removed"
    assert indexes == list(range(indexes[0], indexes[0] + len(indexes))), "not the newest kept"
    if how == "keep":
        assert len(files) == 3
    else:
        sizes = [p.stat().st_size for p in files]
        # checked when a file is opened: the files before the newest fit in the budget
        assert sum(sizes[:-1]) <= 10_000, sizes
        assert len(files) >= 2
    v = cli("verify", "--key", key, logs)
    assert v.returncode == 0, v.stdout + v.stderr
    assert set(verify_lines(v.stdout).values()) == {"ok"}
    notes = [line for line in v.stderr.splitlines() if line.startswith("note:")
             and "cannot be proven locally" not in line]  # the newest file's note, always there
    assert any(str(files[0]) in line and "earlier files were removed" in line for line in notes), v.stderr
    assert len(notes) == 1, v.stderr
    r = cli("cat", "--key", key, logs)
    assert r.returncode == 0, r.stderr
    got = by_producer(parse_lines(r.stdout))[0]
    assert got and got == list(range(got[0], n)), "cat does not give a contiguous tail"


@pytest.mark.slow
def test_retention_by_age(ring_name, writer, tmp_path):
    key = make_key(tmp_path / "writer.key")
    logs = tmp_path / "logs"
    w = writer("--key", key, "--rotate-size", "3KB", "--keep-age", "1h").start()
    n = 0
    for _ in range(6):
        log_range(ring_name, n, n + 10)
        n += 10
        wait_written(ring_name, n, w)
    assert w.stop() == 0, w.stderr()
    first = sealed_files(logs)
    assert len(first) >= 3
    # files of an earlier writer are as old as their mtime says (those of the running writer
    # are as old as the monotonic time since it closed them: see test_faults_process)
    old, current = first[:-1], first[-1]
    past = time.time() - 2 * 3600
    for p in old:
        os.utime(p, (past, past))
    young = time.time() - 600  # ten minutes: kept
    os.utime(current, (young, young))
    w = writer("--key", key, "--rotate-size", "3KB", "--keep-age", "1h").start()
    for _ in range(6):  # more files: retention runs when each is opened
        log_range(ring_name, n, n + 10)
        n += 10
        wait_written(ring_name, n, w)
    assert w.stop() == 0, w.stderr()
    now = sealed_files(logs)
    assert not any(p.exists() for p in old), "files older than --keep-age were kept"
    assert current in now, "a file younger than --keep-age was removed"
    v = cli("verify", "--key", key, logs)
    assert v.returncode == 0, v.stdout + v.stderr
    assert f"note: {current}: the sequence starts here" in v.stderr
    r = cli("cat", "--key", key, logs)
    got = by_producer(parse_lines(r.stdout))[0]
    assert got == list(range(got[0], n))


# ---- 6. crash recovery ------------------------------------------------------------

def _produce(ring: str, label: int, count: int, pace: float, failed) -> None:
    log = connect(ring, name=f"producer-{label}", block_timeout=5.0)
    misses = 0
    t0 = time.monotonic()
    for i in range(count):
        if not log.info("crash test %d of %d", i, label, producer=label, i=i):
            misses += 1
        if i % 50 == 49:
            delay = t0 + pace * (i + 1) / count - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    failed[label] = misses


@pytest.mark.slow
def test_writer_sigkilled_under_load_recovers_every_record_once(ring_name, writer, tmp_path,
                                                                children):
    seed = int(os.environ.get("LS_TEST_SEED", time.time_ns() % 1_000_000))
    rnd = random.Random(seed)
    key = make_key(tmp_path / "writer.key")
    logs = tmp_path / "logs"
    opts = ("--key", key, "--rotate-size", "48KB")
    w = writer(*opts).start()
    ctx = mp.get_context("fork")
    n_prod, per, pace = 3, 6000, 4.0
    failed = ctx.Array("q", n_prod, lock=False)
    procs = []
    for p in range(n_prod):
        proc = ctx.Process(target=_produce, args=(ring_name, p, per, pace, failed), daemon=True)
        proc.start()
        children.append(proc)
        procs.append(proc)
    unfinished_left = 0
    stderrs = []
    kills = 0
    for _ in range(3):
        time.sleep(rnd.uniform(0.3, 0.8))
        before = stats(ring_name)["written"]
        if before >= n_prod * per:
            break  # a slow machine: the producers were done before this kill (at least one ran)
        wait_for(lambda: stats(ring_name)["written"] > before or stats(ring_name)["written"] >= n_prod * per,
                 timeout=20, what="the writer to write")  # kill with work in hand
        w.kill()
        kills += 1
        stderrs.append(w.stderr())
        newest = sealed_files(logs)[-1]
        try:
            final = scan_file(newest).final
        except sealed.SealError:
            final = True  # a header torn by the kill: removed by the next writer
        if not final:
            unfinished_left += 1
            if unfinished_left == 1:  # no writer holds it: not "open", and verify fails
                v = cli("verify", "--key", key, logs)
                assert v.returncode == 1, v.stdout
                state = verify_lines(v.stdout)[str(newest)]
                assert "unfinished" in state or "truncated" in state, state
        w = writer(*opts).start()
    deadline = time.monotonic() + 60
    for p in procs:
        p.join(max(0.1, deadline - time.monotonic()))
        assert p.exitcode == 0, f"seed {seed}: producer exit {p.exitcode}"
    assert list(failed) == [0] * n_prod, f"seed {seed}: drops"
    assert kills >= 1, f"seed {seed}: no kill happened while the producers ran"
    wait_written(ring_name, n_prod * per, w)
    assert w.stop() == 0, w.stderr()
    stderrs.append(w.stderr())
    s = stats(ring_name)
    assert s["written"] == s["committed"] == n_prod * per, f"seed {seed}: {s}"

    r = cli("cat", "--key", key, logs)
    assert r.returncode == 0, f"seed {seed}: {r.stderr}"
    records = parse_lines(r.stdout)
    dup_seqs = sorted(k for k, v in Counter(rec["seq"] for rec in records).items() if v > 1)
    events = [e for text in stderrs for e in _events(text)]
    resumes = [e.get("resume_seq") for e in events if e["writer"] == "started"]
    closed = [e.get("chunks") for e in events if e["writer"] == "closing_unfinished_file"]
    context = (f"\nseed {seed}; writers resumed at {resumes}, closing unfinished files of {closed} "
               f"chunks; duplicated seqs {dup_seqs[:3]}..."
               f"{dup_seqs[-1:]}; chunks with a wrong last_seq: "
               f"{len(_wrong_chunk_seqs(sealed_files(logs), load_keyring(key)))}")
    assert_exactly_once(records, {p: per for p in range(n_prod)}, context)
    assert len(records) == n_prod * per

    v = cli("verify", "--key", key, logs)
    assert v.returncode == 0, f"seed {seed}: {v.stdout}{v.stderr}"
    files = sealed_files(logs)
    assert set(verify_lines(v.stdout).values()) == {"ok"}
    not_final = [p for p in files if not scan_file(p).final]
    vouched = [line for line in v.stderr.splitlines() if "closed after a writer crash" in line]
    assert len(vouched) == len(not_final), f"seed {seed}: {v.stderr}"
    for p in not_final:
        assert any(line.startswith(f"note: {p}:") for line in vouched)
    if unfinished_left:
        assert vouched, f"seed {seed}: a kill left an unfinished file, verify does not say so"
    assert_no_secret("".join(stderrs) + v.stderr + r.stderr, key)


# ---- 7. a file still being written -------------------------------------------------

@pytest.mark.slow
def test_verify_reports_open_file_then_ok(ring_name, writer, tmp_path):
    key = make_key(tmp_path / "writer.key")
    logs = tmp_path / "logs"
    w = writer("--key", key, "--rotate-size", "4KB").start()
    for k in range(3):
        log_range(ring_name, k * 40, (k + 1) * 40)
        wait_written(ring_name, (k + 1) * 40, w)
    total = 120
    if scan_file(sealed_files(logs)[-1]).final:
        # the last batch filled its file to the rotation size exactly: the writer closed it,
        # and opens the next file with the next record
        log_range(ring_name, total, total + 1)
        total += 1
        wait_written(ring_name, total, w)
    files = sealed_files(logs)
    assert len(files) >= 2
    assert len(scan_file(files[-1]).chunks) >= 1, "no chunk flushed yet"
    v = cli("verify", "--key", key, logs)
    assert v.returncode == 0, v.stdout + v.stderr
    states = verify_lines(v.stdout)
    assert states[str(files[-1])] == "open"
    assert all(states[str(p)] == "ok" for p in files[:-1])
    assert f"note: {files[-1]}: open" in v.stderr
    r = cli("cat", "--key", key, logs)  # an open file reads up to its last chunk
    assert r.returncode == 0, r.stderr
    assert_exactly_once(parse_lines(r.stdout), {0: total})
    assert w.stop() == 0, w.stderr()
    v = cli("verify", "--key", key, logs)
    assert v.returncode == 0, v.stdout + v.stderr
    assert verify_lines(v.stdout) == {str(p): "ok" for p in sealed_files(logs)}


# ---- 8. the chunk reader, property based ---------------------------------------------

_KEYRING = Keyring({b"k" * 8: os.urandom(32)}, b"k" * 8)
_IDENTITY = Identity(X25519PrivateKey.generate())


@dataclass
class Built:
    data: bytes
    plaintexts: list[bytes]  # of the data chunks
    boundaries: list[int]  # header end, then the end of every chunk (the final one last)
    header_len: int


def build_file(chunks: list[bytes], mode: str, compress: bool, reuse: bool = False) -> Built:
    kw = {"keyring": _KEYRING} if mode == "key" else {"recipients": [_IDENTITY.recipient]}
    header, key = sealed.make_header(stream_id=os.urandom(16), index=7, ring_id=42, created_ns=1,
                                     prev_id=os.urandom(16), prev_digest=os.urandom(32), prev_chunks=3,
                                     prev_flags=0, compress=compress, **kw)
    aead = AESGCM(key)
    digest = sealed.parse_header(header).digest
    comp = None
    if compress:
        import zstandard

        comp = zstandard.ZstdCompressor(level=3)
    out, bounds = [header], [len(header)]
    buf = bytearray() if reuse else None  # the writer's path: one buffer, reused chunk after chunk
    for i, pt in enumerate(chunks):
        out.append(bytes(sealed.seal_chunk(aead, digest, i, pt, final=False, last_seq=i * 10,
                                           compressor=comp, out=buf)))
        bounds.append(bounds[-1] + len(out[-1]))
    out.append(sealed.seal_chunk(aead, digest, len(chunks), b"", final=True, last_seq=len(chunks) * 10))
    bounds.append(bounds[-1] + len(out[-1]))
    return Built(b"".join(out), list(chunks), bounds, len(header))


def read_all(data: bytes) -> tuple[sealed.Scan, list[bytes]]:
    s = sealed.scan_chunks(data, "f")
    key = sealed.data_key(s.header, keyring=_KEYRING, identity=_IDENTITY, where="f")
    return s, list(sealed.open_chunks(data, s, key, "f"))


_chunks = st.lists(st.binary(min_size=0, max_size=200), min_size=0, max_size=5)
_modes = st.sampled_from(["key", "recipient"])
_compress = st.sampled_from([False, True] if HAVE_ZSTD else [False])
_PROPS = settings(max_examples=40, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@_PROPS
@given(chunks=_chunks, mode=_modes, compress=_compress, reuse=st.booleans())
def test_property_whole_file_reads_back(chunks, mode, compress, reuse):
    b = build_file(chunks, mode, compress, reuse)
    s, pts = read_all(b.data)
    assert s.final and s.torn_at is None
    assert len(s.chunks) == len(chunks) + 1
    assert [c.end for c in s.chunks] == b.boundaries[1:]
    assert pts == chunks + [b""]
    assert s.last_seq == len(chunks) * 10


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(chunks=st.lists(st.binary(min_size=0, max_size=60), min_size=0, max_size=4), mode=_modes,
       compress=_compress)
def test_property_every_prefix_reads_its_complete_chunks(chunks, mode, compress):
    b = build_file(chunks, mode, compress)
    everything = chunks + [b""]
    for cut in range(len(b.data) + 1):
        part = b.data[:cut]
        try:
            s = sealed.scan_chunks(part, "f")
        except sealed.SealError as exc:
            assert cut < b.header_len, f"cut {cut} after the header raised {exc}"
            assert "truncated" in str(exc) or cut < 4
            continue
        except Exception as exc:  # noqa: BLE001 - the property: nothing but SealError
            raise AssertionError(f"cut {cut}: {type(exc).__name__}: {exc}") from None
        assert cut >= b.header_len
        complete = sum(1 for e in b.boundaries[1:] if e <= cut)
        assert len(s.chunks) == complete, f"cut {cut}"
        if cut in b.boundaries:
            assert s.torn_at is None, f"cut {cut} on a chunk boundary reported torn"
        else:
            assert s.torn_at == b.boundaries[complete], f"cut {cut}: torn_at {s.torn_at}"
        assert s.final == (cut == len(b.data))
        key = sealed.data_key(s.header, keyring=_KEYRING, identity=_IDENTITY, where="f")
        assert list(sealed.open_chunks(part, s, key, "f")) == everything[:complete]


@_PROPS
@given(chunks=_chunks, mode=_modes, garbage=st.binary(min_size=1, max_size=100))
def test_property_bytes_after_the_final_chunk_are_damage(chunks, mode, garbage):
    b = build_file(chunks, mode, False)
    with pytest.raises(sealed.SealError, match="follow the final chunk"):
        sealed.scan_chunks(b.data + garbage, "f")


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(chunks=_chunks, mode=_modes, compress=_compress, where=st.floats(0, 1, exclude_max=True),
       mask=st.integers(1, 255))
def test_property_any_flipped_byte_is_noticed(chunks, mode, compress, where, mask):
    b = build_file(chunks, mode, compress)
    pos = int(where * len(b.data))
    data = bytearray(b.data)
    data[pos] ^= mask
    try:
        s, pts = read_all(bytes(data))
    except sealed.SealError:
        return
    except Exception as exc:  # noqa: BLE001 - the property: nothing but SealError
        raise AssertionError(f"flip at {pos}: {type(exc).__name__}: {exc}") from None
    # not an error: then the damage must show as an incomplete file, never as a complete one
    # with other contents
    assert s.torn_at is not None or not s.final, f"flip at {pos} of {len(data)} went unnoticed"
    everything = chunks + [b""]
    assert pts == everything[:len(pts)], f"flip at {pos}: plaintext changed"


@_PROPS
@given(chunks=_chunks)
def test_property_other_keys_are_wrong_keys(chunks):
    b = build_file(chunks, "key", False)
    s = sealed.scan_chunks(b.data)
    other = Keyring({b"k" * 8: os.urandom(32)}, b"k" * 8)  # same id, other key
    with pytest.raises(sealed.SealError):
        sealed.data_key(s.header, keyring=other)
    with pytest.raises(sealed.WrongKeyError):
        sealed.data_key(s.header, keyring=Keyring({b"j" * 8: os.urandom(32)}, b"j" * 8))
    b = build_file(chunks, "recipient", False)
    s = sealed.scan_chunks(b.data)
    with pytest.raises(sealed.WrongKeyError):
        sealed.data_key(s.header, keyring=_KEYRING)
    with pytest.raises(sealed.WrongKeyError):
        sealed.data_key(s.header, identity=Identity(X25519PrivateKey.generate()))


# ---- 9. cat --follow ----------------------------------------------------------------

@pytest.mark.slow
def test_cat_follow_shows_records_written_after_it_started(ring_name, writer, tmp_path):
    key = make_key(tmp_path / "writer.key")
    logs = tmp_path / "logs"
    w = writer("--key", key, "--rotate-size", "4KB").start()
    log_range(ring_name, 0, 30)
    wait_written(ring_name, 30, w)
    follower = subprocess.Popen([*CLI, "cat", "--follow", "--key", str(key), str(logs)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    lines: queue.Queue = queue.Queue()

    def pump():
        for line in follower.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    got: list[dict] = []

    def read_until(n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(got) < n:
            left = deadline - time.monotonic()
            assert left > 0, f"cat --follow printed {len(got)} of {n} records"
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                continue
            assert line is not None, f"cat --follow exited: {follower.stderr.read().decode()}"
            got.append(json.loads(line))

    try:
        read_until(30, 15)  # the records already in files
        for k in range(4):  # then new ones, in new chunks and new files
            log_range(ring_name, 30 + k * 30, 60 + k * 30)
            time.sleep(0.1)
        read_until(150, 15)
        time.sleep(0.5)
        while not lines.empty():
            line = lines.get_nowait()
            if line is not None:
                got.append(json.loads(line))
        assert follower.poll() is None, "cat --follow stopped by itself"
    finally:
        follower.send_signal(signal.SIGTERM)
        try:
            follower.wait(10)
        except subprocess.TimeoutExpired:
            follower.kill()
            follower.wait(10)
        follower.stdout.close()
        follower.stderr.close()
    assert w.stop() == 0
    assert len(sealed_files(logs)) >= 3
    assert_exactly_once(got, {0: 150})


@pytest.mark.slow
@pytest.mark.parametrize("case", ["appended", "chunk_bit"])
def test_cat_follow_does_not_skip_a_damaged_file_silently(case, key_corpus, foreign_corpus, keydir,
                                                          tmp_path):
    """A damaged file in a followed directory is reported, not passed over: its records would
    otherwise be missing from the output without a word."""
    d = tmp_path / "logs"
    shutil.copytree(key_corpus.dir, d)
    files = [d / p.name for p in key_corpus.files]
    named, _ = _damage(case, d, files, foreign_corpus.files)
    # it keeps following (records still come), but says so on stderr at once
    proc = subprocess.Popen([*CLI, "cat", "--follow", "--key", str(keydir / "writer.key"), str(d)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    try:
        line = _read_line(proc.stderr, timeout=6)
    finally:
        proc.kill()
        proc.wait(10)
        proc.stderr.close()
    assert line is not None, f"cat --follow kept running without a word about {named[0].name}"
    assert str(named[0]) in line and "tampered" in line, line


def _read_line(stream, timeout: float) -> str | None:
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(stream, selectors.EVENT_READ)
    if not sel.select(timeout):
        return None
    return stream.readline()


# ---- 10. no key material in output ---------------------------------------------------

@pytest.mark.slow
def test_no_key_material_in_any_output(ring_name, writer, tmp_path, keydir):
    key = copy_secret(keydir / "writer.key", tmp_path / "writer.key")
    ident = copy_secret(keydir / "reader.identity", tmp_path / "reader.identity")
    out: list[str] = []
    w = writer("--key", key).start()
    log_range(ring_name, 0, 20)
    wait_written(ring_name, 20, w)
    r = cli("stats", "--ring", ring_name, "--json")
    assert r.returncode == 0
    out += [r.stdout, r.stderr]
    r = cli("stats", "--ring", ring_name)
    out += [r.stdout, r.stderr]
    assert w.stop() == 0
    out.append(w.stderr())
    # errors that handle key files: existing output file, malformed key, an identity as a
    # recipient, a keyring as an identity and the other way round
    r = cli("keygen", "--out", key)
    assert r.returncode == 2 and "refusing to overwrite" in r.stderr
    out.append(r.stdout + r.stderr)
    bad = tmp_path / "bad.key"
    line = key.read_text().splitlines()[0]
    fd = os.open(bad, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, (line[:-6] + "\n").encode())  # a key cut short
    os.close(fd)
    r = cli("cat", "--key", bad, tmp_path / "logs")
    assert r.returncode == 2 and "not a key line" in r.stderr
    out.append(r.stdout + r.stderr)
    assert line[:-6].split(":")[2] not in r.stderr
    r = cli("cat", "--key", ident, tmp_path / "logs")
    assert r.returncode == 2
    out.append(r.stdout + r.stderr)
    r = cli("cat", "--identity", key, tmp_path / "logs")
    assert r.returncode == 2
    out.append(r.stdout + r.stderr)
    w2 = writer("--recipient", ident.read_text().strip(), directory=tmp_path / "x").start(wait=False)
    assert w2.wait_exit(30) == 2
    assert "not a recipient string" in w2.stderr()
    out.append(w2.stderr())
    text = "".join(out)
    assert text
    assert_no_secret(text, key, ident)
