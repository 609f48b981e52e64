"""What a newcomer meets in the first hour: the messages and defaults of the commands.

Each test is one thing a new user typed, as they typed it: sealed files read without a key,
a small ring asked for with --capacity alone, a writer given sizes for a ring that exists,
keygen into a directory that does not exist yet, the key itself pasted where its path
belongs, and the documented rules (`$LOGGER_SYSTEM_RING`, the heartbeat, `seq`).
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import logger_system
from logger_system.producer import DEFAULT_WRITER_TIMEOUT

from conftest import WriterProcess, stats, wait_for
from conftest import cli as command

ROOT = Path(__file__).resolve().parent.parent
OPERATIONS = ROOT / "docs" / "OPERATIONS.md"


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(command(*args), capture_output=True, text=True, timeout=60, cwd=ROOT,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def sealed_dir(tmp_path, ring_name):
    key = tmp_path / "app.key"
    assert cli("keygen", "--out", key).returncode == 0
    w = WriterProcess(ring_name, tmp_path / "logs", "--key", key, plaintext=False).start()
    log = logger_system.connect(ring_name, name="app")
    for i in range(10):
        log.info("record %d", i)
    wait_for(lambda: stats(ring_name)["written"] == 10, what="records written")
    assert w.stop() == 0, w.stderr()
    return tmp_path / "logs", key


@pytest.mark.slow
def test_sealed_files_read_without_a_key_say_to_give_one(sealed_dir):
    directory, _key = sealed_dir
    for command in ("cat", "verify"):
        r = cli(command, directory)
        assert r.returncode == 1
        assert "these files are sealed: give --key or --identity" in r.stdout + r.stderr
        assert "the key file given" not in r.stdout + r.stderr


@pytest.mark.slow
def test_a_key_pasted_where_its_path_belongs_is_never_echoed(sealed_dir, tmp_path, ring_name):
    directory, key = sealed_dir
    text = key.read_text().strip()
    secret = text.split(":")[-1]
    runs = [cli("cat", "--key", text, directory), cli("verify", "--key", text, directory),
            cli("writer", "--ring", ring_name, "--dir", tmp_path / "other", "--key", text),
            cli("keygen", "--out", text),
            cli("cat", "--identity", text, directory)]
    for r in runs:
        assert r.returncode != 0
        out = r.stdout + r.stderr
        assert secret not in out and secret[:16] not in out, out
        assert "not shown" in out
    assert not any(p.name.startswith("lsk1") for p in ROOT.iterdir())  # no file named after the key


def test_keygen_makes_a_missing_directory_0700(tmp_path):
    out = tmp_path / "etc" / "logger-system" / "app.key"

    r = cli("keygen", "--out", out)

    assert r.returncode == 0, r.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    for d in (tmp_path / "etc", tmp_path / "etc" / "logger-system"):
        assert d.stat().st_mode & 0o777 == 0o700
    assert "made the directory" in r.stderr


def test_keygen_says_what_to_run_when_it_cannot_make_the_directory(tmp_path):
    blocker = tmp_path / "etc"
    blocker.write_text("a file, not a directory\n")

    r = cli("keygen", "--out", blocker / "logger-system" / "app.key")

    assert r.returncode == 2
    assert "mkdir -m 700 -p" in r.stderr or "Not a directory" in r.stderr


@pytest.mark.slow
def test_capacity_alone_chooses_a_max_record_that_fits(tmp_path, ring_name):
    w = WriterProcess(ring_name, tmp_path / "logs", "--capacity", "64KiB").start()
    try:
        s = stats(ring_name)
        assert s["capacity_bytes"] == 64 << 10
        assert s["max_record"] == 16 << 10
    finally:
        assert w.stop() == 0, w.stderr()


@pytest.mark.slow
def test_a_writer_given_other_sizes_for_an_existing_ring_says_so(tmp_path, ring_name):
    logger_system.connect(ring_name, capacity=1 << 20, max_record=8 << 10)  # a producer made it
    w = WriterProcess(ring_name, tmp_path / "logs", "--capacity", "64KiB", "--max-record", "4KiB").start()
    try:
        s = stats(ring_name)
        assert (s["capacity_bytes"], s["max_record"]) == (1 << 20, 8 << 10)
    finally:
        assert w.stop() == 0
    err = w.stderr()
    assert '"writer": "ring_size_differs"' in err
    assert f"logger-system ring rm {ring_name}" in err
    # the same sizes, or none given: nothing to say
    w2 = WriterProcess(ring_name, tmp_path / "logs2").start()
    assert w2.stop() == 0
    assert "ring_size_differs" not in w2.stderr()


@pytest.mark.slow
def test_the_writer_reads_LOGGER_SYSTEM_RING_as_documented(tmp_path, ring_name):
    env = {**os.environ, "LOGGER_SYSTEM_RING": ring_name}
    proc = subprocess.Popen(command("writer", "--dir", tmp_path / "logs", "--plaintext"), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _writer_pid(ring_name) == proc.pid, timeout=20, what="writer attached")
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
    text = OPERATIONS.read_text()
    assert "does not read `$LOGGER_SYSTEM_RING`" not in text
    assert "`$LOGGER_SYSTEM_RING`, as for producers" in text


def _writer_pid(ring: str) -> int:
    try:
        return stats(ring)["writer_pid"]
    except Exception:
        return 0


def test_the_heartbeat_rule_and_seq_are_documented_as_the_code_has_them():
    text = OPERATIONS.read_text()
    assert f"heartbeat is younger than {DEFAULT_WRITER_TIMEOUT:g} seconds" in text
    assert "### What `seq` is" in text and "position in the ring's byte stream" in text
    native = (ROOT / "native" / "ring.h").read_text()
    assert f"#define LSR_WRITER_TIMEOUT_NS {int(DEFAULT_WRITER_TIMEOUT * 1e9)}ull" in native
