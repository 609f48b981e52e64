"""One ring and one writer per group of workers, read back as one log: `cat DIR...` merges the
directories' records by `ts`, each directory judged by the chain's rules alone, and `verify
DIR...` checks each.  Real writers, real producer processes, the CLI as a user runs it."""
from __future__ import annotations

import json
import multiprocessing
import shutil
import subprocess
import time
import uuid

import pytest

from conftest import WriterProcess, cli
from logger_system.query import record_ns
from logger_system.ring import unlink

GROUPS = 2
PER_GROUP = 2
RECORDS = 400


def _worker(ring: str, group: int, worker: int, barrier) -> None:
    import logger_system

    log = logger_system.connect(ring, name=f"app.g{group}")
    barrier.wait(30)
    for i in range(RECORDS):
        log.info("request %d of worker %d", i, worker, group=group, worker=worker, i=i)
        if i % 50 == 0:
            time.sleep(0.002)  # the groups' records interleave in time


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(cli(*args), capture_output=True, timeout=timeout)


@pytest.fixture(scope="module")
def groups(tmp_path_factory):
    """Two groups of two worker processes, each group logging into a ring of its own drained by
    a sealing writer of its own into a directory of its own (one key for both)."""
    base = tmp_path_factory.mktemp("groups")
    key = base / "log.key"
    assert _run("keygen", "--out", key).returncode == 0
    rings = [f"lsgroup-{uuid.uuid4().hex[:10]}" for _ in range(GROUPS)]
    dirs = [base / f"g{g}" for g in range(GROUPS)]
    writers = [WriterProcess(r, d, "--key", key, "--rotate-size", "16KiB", plaintext=False)
               for r, d in zip(rings, dirs)]
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(GROUPS * PER_GROUP)
    procs = []
    try:
        for w in writers:
            w.start()
        for g, ring in enumerate(rings):
            for k in range(PER_GROUP):
                p = ctx.Process(target=_worker, args=(ring, g, g * PER_GROUP + k, barrier))
                p.start()
                procs.append(p)
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        for w in writers:
            assert w.stop() == 0, w.stderr()
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(10)
        for w in writers:
            if w.proc is not None and w.proc.poll() is None:
                w.kill()
        for r in rings:
            unlink(r)
    return key, dirs


def _copy(groups, tmp_path):
    key, dirs = groups
    copies = []
    for d in dirs:
        shutil.copytree(d, tmp_path / d.name)
        copies.append(tmp_path / d.name)
    return key, copies


def _records(out: bytes) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def test_cat_merges_the_groups_directories_by_ts(groups):
    key, dirs = groups
    assert all(len(list(d.glob("log-*"))) > 2 for d in dirs), "each group rotated files"
    res = _run("cat", "--key", key, *dirs)
    assert res.returncode == 0, res.stderr
    recs = _records(res.stdout)
    # every record once
    got = sorted((r["fields"]["worker"], r["fields"]["i"]) for r in recs)
    assert got == sorted((w, i) for w in range(GROUPS * PER_GROUP) for i in range(RECORDS))
    # each worker's records in the order it logged them
    for w in range(GROUPS * PER_GROUP):
        assert [r["fields"]["i"] for r in recs if r["fields"]["worker"] == w] == list(range(RECORDS))
    # each directory's records in their own order (n), the two interleaved by time
    for g in range(GROUPS):
        ns = [r["n"] for r in recs if r["fields"]["group"] == g]
        assert ns == list(range(len(ns)))
    switches = sum(a["fields"]["group"] != b["fields"]["group"] for a, b in zip(recs, recs[1:]))
    assert switches > 10, "the groups' records interleave"
    # in ts order: the merge's time (a stream's latest so far) never goes back
    latest = {g: 0 for g in range(GROUPS)}
    merged = []
    for r in recs:
        g = r["fields"]["group"]
        latest[g] = max(latest[g], record_ns(r["ts"]))
        merged.append(latest[g])
    assert merged == sorted(merged)


def test_verify_checks_each_group_directory(groups):
    key, dirs = groups
    res = _run("verify", "--key", key, *dirs)
    assert res.returncode == 0, res.stdout + res.stderr
    listed = {line.split(": ")[0]: line.split(": ")[1] for line in res.stdout.decode().splitlines()}
    for d in dirs:
        for f in d.glob("log-*"):
            assert listed[str(f)] == "ok"
    assert len(listed) == sum(len(list(d.glob("log-*"))) for d in dirs)


def test_filters_and_text_output_apply_across_the_groups(groups):
    key, dirs = groups
    res = _run("cat", "--key", key, "--grep", "request 7 of", "--output", "text", *dirs)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.decode().splitlines()
    assert len(lines) == GROUPS * PER_GROUP  # "request 7 of worker W" once a worker (not 70..79)
    assert {line.split("[")[0].split()[-1] for line in lines} == {f"app.g{g}" for g in range(GROUPS)}


def test_a_tampered_file_in_one_group_fails_cat_and_verify_naming_it(groups, tmp_path):
    key, dirs = _copy(groups, tmp_path)
    victim = sorted(dirs[1].glob("log-*"))[1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    res = _run("cat", "--key", key, *dirs)
    assert res.returncode != 0
    assert victim.name in res.stderr.decode()
    # the other group's records all came out
    recs = _records(res.stdout)
    assert len([r for r in recs if r["fields"]["group"] == 0]) == PER_GROUP * RECORDS
    res = _run("verify", "--key", key, *dirs)
    assert res.returncode != 0 and victim.name in res.stdout.decode()


def test_a_file_moved_from_one_group_to_the_other_is_caught(groups, tmp_path):
    key, dirs = _copy(groups, tmp_path)
    moved = sorted(dirs[0].glob("log-*"))[1]
    number = moved.name.split("-")[1]
    for other in dirs[1].glob(f"log-{number}-*"):
        other.unlink()  # the other group's file of the same number, replaced by it
    target = dirs[1] / moved.name
    shutil.move(moved, target)
    res = _run("verify", "--key", key, *dirs)
    out = res.stdout.decode()
    assert res.returncode != 0
    assert f"{dirs[0]}" in out and "missing" in out  # a hole where it was
    assert str(target) in out  # a file of another stream where it is now
    after = sorted(dirs[1].glob(f"log-{int(number) + 1:08d}-*"))[0]
    assert f"{after}: predecessor missing" in out  # the genuine file it stands in for is gone
    res = _run("cat", "--key", key, *dirs)
    assert res.returncode != 0 and moved.name in res.stderr.decode()


def test_a_file_removed_from_the_middle_of_one_group_is_caught(groups, tmp_path):
    key, dirs = _copy(groups, tmp_path)
    gone = sorted(dirs[0].glob("log-*"))[1]
    gone.unlink()
    res = _run("cat", "--key", key, *dirs)
    assert res.returncode != 0 and "missing" in res.stderr.decode()


def test_one_directory_alone_reads_as_before(groups):
    key, dirs = groups
    res = _run("cat", "--key", key, dirs[0])
    assert res.returncode == 0, res.stderr
    recs = _records(res.stdout)
    assert [r["n"] for r in recs] == list(range(PER_GROUP * RECORDS))
