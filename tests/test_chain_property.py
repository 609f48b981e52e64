"""Property: any single illegal edit of a sealed directory is caught by verify, cat and
cat --follow alike, or is one of the two edits a local verifier cannot see (the oldest or
the newest file removed), which verify then names in a note.

The readers are called in process (reader.verify, reader.iter_lines, reader.follow for one
pass), on copies of a real writer's directory, key and recipient mode."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logger_system.files import reader
from logger_system.errors import CorruptRecordError
from logger_system.keys import load_identity, load_keyring
from logger_system.query import Query
from logger_system.rotation import LogFile

from test_chain import corpus  # noqa: F401  (the module-scoped fixture: a real writer's files)

pytestmark = pytest.mark.slow

EDITS = ("delete", "truncate", "copy", "rename", "replace", "flip")


def _keys(c) -> dict:
    if c.mode == "key":
        return {"keyring": load_keyring(Path(c.read[1]))}
    return {"identity": load_identity(Path(c.read[1]))}


def _apply(d: Path, files: list[Path], edit: str, i: int, j: int, where: float) -> str | None:
    """Apply one edit; 'beyond' when it is an edit no local verifier can see, None if it is no edit."""
    f = files[i]
    if edit == "delete":
        f.unlink()
        return "beyond" if i in (0, len(files) - 1) else "fault"
    data = f.read_bytes()
    if edit == "truncate":
        cut = int(where * len(data))
        if cut >= len(data):
            return None
        f.write_bytes(data[:cut])
    elif edit == "flip":
        pos = min(int(where * len(data)), len(data) - 1)
        f.write_bytes(data[:pos] + bytes([data[pos] ^ 0x01]) + data[pos + 1:])
    elif edit in ("copy", "rename"):
        name = LogFile.parse(f.name)
        target = d / LogFile(j, "20991231T235959Z", name.ring_id, name.suffix).name
        (shutil.copy if edit == "copy" else os.rename)(f, target)
        if edit == "rename" and j == name.index + 0:
            return None
    elif edit == "replace":
        if i == j % len(files):
            return None
        f.write_bytes(files[j % len(files)].read_bytes())
    return "fault"


def _follow_faults(d: Path, keys: dict) -> list[str]:
    faults: list[str] = []
    q = Query.build(until="10s", now_ns=time.time_ns())  # past the margin: one pass, then the end
    for _ in reader.follow(d, query=q, interval=0.01, on_fault=faults.append, **keys):
        pass
    return faults


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edit=st.sampled_from(EDITS), i=st.integers(0, 50), j=st.integers(1, 14),
       where=st.floats(0, 1, exclude_max=True))
def test_any_single_illegal_edit_is_caught_by_all_three_readers(corpus, edit, i, j, where):  # noqa: F811
    keys = _keys(corpus)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "logs"
        shutil.copytree(corpus.dir, d)
        files = corpus.files(d)
        expected = _apply(d, files, edit, i % len(files), j, where)
        if expected is None:
            return
        v = reader.verify([d], **keys)
        try:
            list(reader.iter_lines([d], **keys))
            cat_failed = False
        except CorruptRecordError:
            cat_failed = True
        follow = _follow_faults(d, keys)
        if expected == "beyond":
            assert not v.faults, v.faults
            assert any("cannot tell" in n or "cannot be proven locally" in n for n in v.notes), v.notes
            return
        assert v.faults, f"verify passed after {edit} of file {i % len(files)}"
        assert cat_failed, f"cat passed after {edit}"
        assert follow, f"cat --follow said nothing after {edit}"


OPS = ("write", "write", "kill", "restart", "stop_start")


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.sampled_from(OPS), min_size=2, max_size=7),
       mode=st.sampled_from(["key", "recipient", "plaintext"]), keep=st.sampled_from([None, 3]))
def test_any_sequence_of_legal_writer_operations_verifies(tmp_path_factory, ops, mode, keep):
    """Write, rotate (small files), crash (SIGKILL), restart, stop and start, with or without
    retention: verify passes, cat reads every record still kept, in order of n."""
    import uuid

    import logger_system
    from logger_system.ring import unlink

    from conftest import WriterProcess, stats, wait_for
    from test_chain import make_identity, run

    base = tmp_path_factory.mktemp("legal")
    if mode == "key":
        key = base / "w.key"
        assert run("keygen", "--out", key).returncode == 0
        seal, read = ["--key", str(key)], ["--key", str(key)]
    elif mode == "recipient":
        ident, recipient = make_identity(base / "r.identity")
        seal, read = ["--recipient", recipient], ["--identity", str(ident)]
    else:
        seal, read = [], []
    ring = f"lstest-{uuid.uuid4().hex[:12]}"
    logs = base / "logs"
    extra = [*seal, "--rotate-size", "2KB", *(["--keep", str(keep)] if keep else [])]
    w = WriterProcess(ring, logs, *extra, plaintext=mode == "plaintext").start()
    n = 0
    try:
        log = logger_system.connect(ring, name="legal")
        for op in ops:
            if op == "write":
                for _ in range(25):
                    assert log.info("legal record %d", n, i=n)
                    n += 1
                wait_for(lambda: stats(ring)["written"] >= n, what="written")
            elif op == "kill":
                w.kill()
                w = WriterProcess(ring, logs, *extra, plaintext=mode == "plaintext").start()
            elif op == "restart":
                assert w.stop() == 0
                w = WriterProcess(ring, logs, *extra, plaintext=mode == "plaintext").start()
            else:
                assert w.stop() == 0, w.stderr()
                w = WriterProcess(ring, logs, *extra, plaintext=mode == "plaintext").start()
        wait_for(lambda: stats(ring)["written"] >= n, what="written")
        assert w.stop() == 0, w.stderr()
    finally:
        if w.proc and w.proc.poll() is None:
            w.kill()
        unlink(ring)
    v = run("verify", *read, logs)
    assert v.returncode == 0, f"{ops}: {v.stdout}{v.stderr}"
    c = run("cat", *read, logs)
    assert c.returncode == 0, c.stderr
    import json

    got = [json.loads(line)["fields"]["i"] for line in c.stdout.splitlines()
           if json.loads(line)["logger"] == "legal"]
    if keep is None:
        assert got == list(range(n)), f"{ops}: {len(got)} of {n}"
    else:
        assert got == list(range(n - len(got), n)), f"{ops}: not the newest {len(got)} records in order"
