"""A ring whose shared-memory segment group or others may read: the writer says so at start
and `stats` shows the mode.  One that they may write is refused by the ring itself (LSR_EPERM),
by the writer and by `stats` alike."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

import logger_system
from logger_system.ring import Ring

from conftest import cli, read_records, stats, wait_for


def _make(name: str, mode: int) -> str:
    ring = Ring(name, capacity=1 << 16)
    path = ring.segment_path
    ring.close()
    os.chmod(path, mode)
    return path


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(cli(*args), capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_ring_others_can_read_is_said_at_start_and_shown_by_stats(mode, ring_name, writer_factory,
                                                                    tmp_path):
    path = _make(ring_name, mode)
    assert path == f"/dev/shm/{ring_name}"
    w = writer_factory().start()
    wait_for(lambda: w.events("started"), timeout=20, what="started")  # attached before it says so
    said = w.events("ring_mode_open")
    assert said[0]["mode"] == f"{mode:04o}" and said[0]["segment"] == path
    assert "chmod 600" in said[0]["note"] and f"ring rm {ring_name}" in said[0]["note"]
    assert "not sanitized" in said[0]["note"]
    started = [json.loads(line)["writer"] for line in w.stderr().splitlines()]
    assert started.index("ring_mode_open") < started.index("started")

    r = _run("stats", "--ring", ring_name, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["mode"] == f"{mode:04o}" and d["open_to_others"] is True
    r = _run("stats", "--ring", ring_name)
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if x.strip().startswith("mode"))
    assert f"{mode:04o}" in line and "open to group or others" in line and "chmod 600" in line

    # the writer works on: it only says so
    assert logger_system.connect(ring_name, name="t").info("still written")
    wait_for(lambda: stats(ring_name)["written"] >= 1, what="the record written")
    # stats reads the segment's mode as it is now
    os.chmod(path, 0o600)
    d = json.loads(_run("stats", "--ring", ring_name, "--json").stdout)
    assert d["mode"] == "0600" and d["open_to_others"] is False
    assert w.stop() == 0, w.stderr()
    assert [r["msg"] for r in read_records(tmp_path / "logs")] == ["still written"]


def test_a_ring_the_writer_makes_is_private(ring_name, writer_factory):
    w = writer_factory().start()
    assert os.stat(f"/dev/shm/{ring_name}").st_mode & 0o777 == 0o600
    d = json.loads(_run("stats", "--ring", ring_name, "--json").stdout)
    assert d["mode"] == "0600" and d["open_to_others"] is False
    text = _run("stats", "--ring", ring_name).stdout
    line = next(x for x in text.splitlines() if x.strip().startswith("mode"))
    assert line.split() == ["mode", "0600"]
    assert w.stop() == 0
    assert not w.events("ring_mode_open")


@pytest.mark.parametrize("mode", [0o660, 0o606, 0o666])
def test_a_ring_others_can_write_is_refused(mode, ring_name, writer_factory):
    _make(ring_name, mode)
    w = writer_factory().start(wait=False)
    assert w.proc.wait(30) == 1
    assert "writable by others" in w.stderr()
    assert not w.events("started")
    r = _run("stats", "--ring", ring_name)
    assert r.returncode == 1
    assert "writable by others" in r.stderr and f"mode {mode:04o}" in r.stderr
    # what the note says to do works: removed, the next writer makes a private ring
    assert _run("ring", "rm", ring_name).returncode == 0
    w2 = writer_factory().start()
    assert json.loads(_run("stats", "--ring", ring_name, "--json").stdout)["mode"] == "0600"
    assert w2.stop() == 0
