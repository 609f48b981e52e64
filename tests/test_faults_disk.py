"""The writer against a disk that refuses: full, read-only, removed, not permitted.

Each fault is real: the log directory is a small tmpfs mounted for the test
(so "full" means the kernel answers ENOSPC), remounted read-only (EROFS),
removed with rm -rf (ENOENT), or made unwritable for a writer that runs
without the capabilities that let root ignore file permissions (EACCES).

What a production user relies on, checked in every case: the writer stays
up, counts the failure in `writer_errors`, keeps the records it could not
write in the ring (producers with on_full="drop" then see drops, counted),
and once the disk takes data again every committed record is in the files
exactly once, in order per producer.  Every record carries the fields
producer=<label>, i=<index> for that check.

Mounting needs root (or a container that allows it); without it the tests
that need a mount are skipped with the reason.
"""
from __future__ import annotations

import errno
import json
import multiprocessing as mp
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import WriterProcess, proc_state, stats, wait_for
from logger_system import connect
from logger_system.keys import keygen, load_keyring
from logger_system.files.reader import iter_records
from logger_system.files.chain import log_files

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="needs tmpfs, mount(8) and /proc")

DISK_SIZE = "1m"           # the small disk: a few thousand records
BIG_DISK_SIZE = "64m"      # "space returns": the same tmpfs, grown in place
RING_FLAGS = ("--capacity", "256KiB", "--max-record", "4KiB")
PAGE = os.sysconf("SC_PAGESIZE")
TIMEOUT = 60.0             # the longest any single wait may take on a slow, shared machine
MAX_BACKOFF = 2.0          # the writer's longest sleep between two failed writes


class RecordsLostSilently(AssertionError):
    """Records counted as written that are in no file, with no error counted."""


class RecordsWrittenTwice(AssertionError):
    """The files hold a committed record more than once."""


class ShutdownNotClean(AssertionError):
    """A writer asked to stop did not exit cleanly (status 0, no traceback)."""


# ---- the disk --------------------------------------------------------------------------------

def _mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)


def _remount(path: Path, options: str) -> None:
    r = _mount("-o", f"remount,{options}", str(path))
    assert r.returncode == 0, f"mount -o remount,{options} {path}: {r.stderr.strip()}"


def _free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _total_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize


def _files_bytes(directory: Path) -> int:
    return sum((directory / f.name).stat().st_size for f in log_files(directory))


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of DISK_SIZE mounted at tmp_path/disk, the log directory itself.

    The writer's stderr file goes to the directory's parent, which is not on it.
    """
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("mount(8)/umount(8) not installed")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = _mount("-t", "tmpfs", "-o", f"size={DISK_SIZE},mode=0700", "tmpfs", str(mnt))
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (the container may forbid it): {r.stderr.strip()}")
    try:
        assert _total_bytes(mnt) <= 2 * 1024 * 1024, "the tmpfs is not the small disk asked for"
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


# ---- the writer's side -----------------------------------------------------------------------

def _events(w: WriterProcess) -> list[dict]:
    """The writer's JSON diagnostics on stderr, in order."""
    out = []
    for line in w.stderr().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "writer" in event:
            out.append(event)
    return out


def _failures(w: WriterProcess, code: str) -> int:
    """How many write_failed lines name errno `code` (e.g. "ENOSPC")."""
    return sum(1 for e in _events(w) if e["writer"] == "write_failed" and e.get("errno") == code)


def _files_open_under(pid: int, directory: Path) -> list[str]:
    """The files below `directory` that process `pid` holds open (removed ones included)."""
    prefix = os.path.realpath(directory) + os.sep
    fd_dir = f"/proc/{pid}/fd"
    found = []
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if target.startswith(prefix):
            found.append(target)
    return found


def _wait_no_open_file(w: WriterProcess, directory: Path) -> None:
    """Until the writer has closed its file (its --rotate-interval passed while idle)."""
    wait_for(lambda: not _files_open_under(w.proc.pid, directory), timeout=TIMEOUT, interval=0.05,
             what=f"the writer to close its file in {directory}")


def _wait_stats(ring: str, predicate, what: str, w: WriterProcess | None = None,
                timeout: float = TIMEOUT) -> dict:
    def check():
        s = stats(ring)
        return s if predicate(s) else None
    try:
        return wait_for(check, timeout=timeout, interval=0.05, what=what)
    except AssertionError:
        raise AssertionError(f"timed out waiting for {what}: {stats(ring)}; writer stderr tail: "
                             f"{w.stderr()[-2000:] if w else ''}") from None


def _all_written(s: dict) -> bool:
    return s["written"] == s["committed"] and s["used_bytes"] == 0


def _assert_alive(w: WriterProcess) -> None:
    assert w.proc.poll() is None, f"the writer exited ({w.proc.returncode}): {w.stderr()[-3000:]}"


def _stop_cleanly(w: WriterProcess) -> None:
    rc = w.stop()
    err = w.stderr()
    assert rc == 0, f"writer exit status {rc}: {err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]


# ---- reading back ----------------------------------------------------------------------------

def _read(directory: Path, key: Path | None) -> list[dict]:
    keys = {"keyring": load_keyring(key)} if key is not None else {}
    return list(iter_records([directory], **keys))


def _by_producer(records: list[dict]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for r in records:
        f = r.get("fields")
        if isinstance(f, dict) and "i" in f:
            out[f.get("producer", 0)].append(f["i"])
    return out


def _describe(got: list[int], want: list[int]) -> str:
    seen: dict[int, int] = defaultdict(int)
    for i in got:
        seen[i] += 1
    dups = sorted(i for i, n in seen.items() if n > 1)
    missing = sorted(set(want) - set(seen))
    extra = sorted(set(seen) - set(want))
    disorder = sum(1 for a, b in zip(got, got[1:]) if b <= a)
    return (f"{len(got)} records for {len(want)} expected: {len(dups)} duplicated {dups[:5]}, "
            f"{len(missing)} missing {missing[:5]}, {len(extra)} never committed {extra[:5]}, "
            f"{disorder} out of order")


def _assert_exactly_once(records: list[dict], expected: dict[int, list[int]]) -> None:
    """producer label -> the indices it committed: each once, in that order, nothing else."""
    by = _by_producer(records)
    assert set(by) <= set(expected), f"records of unknown producers: {set(by) - set(expected)}"
    for label, want in expected.items():
        got = by.get(label, [])
        assert got == want, f"producer {label}: {_describe(got, want)}"
    assert len(records) == sum(len(v) for v in expected.values())


def _verify_sealed(directory: Path, key: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "logger_system", "verify", "--key", str(key),
                        str(directory)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"verify failed:\n{r.stdout}\n{r.stderr}"


def _sealing(tmp_path: Path, mode: str) -> tuple[tuple[str, ...], dict, Path | None]:
    """Writer flags, writer_factory keywords and key file for plaintext or sealed output."""
    if mode == "plaintext":
        return (), {}, None
    key = tmp_path / "writer.key"
    keygen(key)
    return ("--key", str(key)), {"plaintext": False}, key


# ---- producers -------------------------------------------------------------------------------

def _produce(ring: str, label: int, count: int, accepted, pad: int) -> None:
    """Run in a child process: log `count` records, accepted[i] = what call i returned."""
    log = connect(ring, name=f"producer-{label}", on_full="drop")
    filler = "." * pad
    for i in range(count):
        accepted[i] = log.info("record %d of producer %d %s", i, label, filler, producer=label, i=i)


def _log_range(log, start: int, stop: int, label: int = 0) -> None:
    """In this process: records start..stop-1, each of which must enter the ring."""
    for i in range(start, stop):
        assert log.info("record %d", i, producer=label, i=i), f"record {i} did not enter the ring"


def _log_one_written(log, ring: str, i: int, pad: int, w: WriterProcess) -> None:
    """One record, and wait until the writer has written it (one record: one batch, one write)."""
    before = stats(ring)["written"]
    assert log.info("record %d %s", i, "." * pad, producer=0, i=i)
    _wait_stats(ring, lambda s: s["written"] > before, f"record {i} written", w)


def _fill_to_the_page(mnt: Path, ring: str, log, w: WriterProcess, first: int, tail_room: int) -> int:
    """Leave the disk with no free page, and the writer's file `tail_room` bytes short of a
    page boundary (what is left of its last page is all it can still write).

    Records are logged one by one and written; their size is chosen so the file ends
    where asked.  Then a filler file (not a log file: no reader looks at it) takes every
    free page.  Returns the next record index.
    """
    want = (PAGE - tail_room) % PAGE
    i = first
    _log_one_written(log, ring, i, 0, w)
    i += 1
    [current] = log_files(mnt)
    path = mnt / current.name
    size = path.stat().st_size
    per_record = None  # bytes a record adds to the file besides its padding
    for _ in range(40):
        need = (want - size) % PAGE
        if need == 0:
            break
        if per_record is None:
            pad = 64
        else:
            pad = need - per_record
            if pad < 0:
                pad += PAGE
            if pad > 2000:  # too long for one record: take a step and measure again
                pad = 1000
        _log_one_written(log, ring, i, pad, w)
        i += 1
        new = path.stat().st_size
        per_record, size = new - size - pad, new
    else:
        raise AssertionError(f"could not end {path.name} {tail_room} bytes before a page boundary")
    assert [f.name for f in log_files(mnt)] == [current.name], "the writer rotated while aligning"

    fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        block = b"\0" * PAGE
        while True:
            try:
                os.write(fd, block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
    finally:
        os.close(fd)
    assert _free_bytes(mnt) == 0, f"{_free_bytes(mnt)} bytes still free"
    assert path.stat().st_size % PAGE == want
    return i


# ---- 1. the disk fills up --------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("mode", ["plaintext", "sealed"])
def test_full_disk_keeps_records_in_ring_and_resumes_exactly_once(mode, ring_name, writer_factory,
                                                                  small_disk, tmp_path):
    mnt = small_disk
    flags, kw, key = _sealing(tmp_path, mode)
    w = writer_factory(*RING_FLAGS, *flags, directory=mnt, **kw).start()

    # far more than the disk and the ring hold together
    n_prod, per, pad = 2, 6000, 100
    ctx = mp.get_context("fork")
    accepted = [ctx.Array("b", per, lock=False) for _ in range(n_prod)]
    procs = [ctx.Process(target=_produce, args=(ring_name, p, per, accepted[p], pad), daemon=True)
             for p in range(n_prod)]
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join(TIMEOUT)
            assert p.exitcode == 0, f"producer exit code {p.exitcode}"
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(10)
    committed_calls = sum(sum(a) for a in accepted)
    dropped_calls = n_prod * per - committed_calls

    # the disk is full: the writer is up, counts errors, keeps what it could not write
    s = _wait_stats(ring_name, lambda s: s["writer_errors"] > 0 and s["in_ring"] > 0,
                    "writer errors with records left in the ring", w)
    wait_for(lambda: _failures(w, "ENOSPC") > 0, timeout=TIMEOUT, what="ENOSPC on the writer's stderr")
    _assert_alive(w)
    total, free, held = _total_bytes(mnt), _free_bytes(mnt), _files_bytes(mnt)
    assert held > total // 2 and free < total // 2, \
        f"the disk did not fill: {held} bytes in files, {free} of {total} free"
    assert s["dropped"] > 0, "the ring should have filled behind the full disk"
    assert s["dropped"] == dropped_calls, "every False return is one counted drop"
    assert s["committed"] == committed_calls
    assert s["written"] < s["committed"]
    time.sleep(0.5)  # it stays that way: nothing is thrown away to make room
    s2 = stats(ring_name)
    assert s2["written"] == s["written"] and s2["in_ring"] == s["in_ring"]
    _assert_alive(w)

    # space returns (nothing is deleted: the same disk grows) and the writer catches up
    _remount(mnt, f"size={BIG_DISK_SIZE}")
    s = _wait_stats(ring_name, _all_written, "every committed record written", w)
    _assert_alive(w)
    assert s["written"] == s["committed"] == committed_calls
    assert s["dropped"] == dropped_calls
    assert s["abandoned"] == 0 and s["malformed"] == 0
    _stop_cleanly(w)

    expected = {p: [i for i in range(per) if accepted[p][i]] for p in range(n_prod)}
    _assert_exactly_once(_read(mnt, key), expected)
    if key is not None:
        _verify_sealed(mnt, key)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["plaintext", "sealed"])
def test_full_disk_at_rotation_writes_no_record_twice(mode, ring_name, writer_factory, small_disk,
                                                      tmp_path):
    """The disk fills exactly where a batch crosses the rotation size: the batch's first piece
    fits in the current file, its next piece finds no room in a new one.  The writer retries
    several times before space returns."""
    mnt = small_disk
    flags, kw, key = _sealing(tmp_path, mode)
    limit = 64 * 1024
    w = writer_factory(*RING_FLAGS, "--rotate-size", "64KiB", *flags, directory=mnt, **kw).start()
    log = connect(ring_name, name="producer-0", on_full="drop")

    # one file a few records short of the rotation size
    i = 0
    _log_one_written(log, ring_name, i, 0, w)
    i += 1
    [current] = log_files(mnt)
    path = mnt / current.name
    while path.stat().st_size < limit - 6000:
        _log_one_written(log, ring_name, i, 1500, w)
        i += 1
    size = path.stat().st_size
    assert limit - 6000 <= size <= limit - 2000 and [f.name for f in log_files(mnt)] == [current.name]

    # room for that file up to the rotation size (a sealed one: and its chunk headers and final
    # chunk, one page more), and not one page for a new file
    st = os.statvfs(mnt)
    assert st.f_frsize == PAGE
    keep = limit // PAGE - -(-size // PAGE) + (1 if mode == "sealed" else 0)
    fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        block = b"\0" * PAGE
        for _ in range(st.f_bavail - keep):
            assert os.write(fd, block) == PAGE
    finally:
        os.close(fd)
    assert os.statvfs(mnt).f_bavail == keep

    # a burst the writer drains as one batch: it is stopped while the records arrive
    before = stats(ring_name)
    burst = 300
    os.kill(w.proc.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: proc_state(w.proc.pid) == "T", timeout=TIMEOUT, what="the writer stopped")
        _log_range(log, i, i + burst)
        i += burst
    finally:
        os.kill(w.proc.pid, signal.SIGCONT)
    _wait_stats(ring_name, lambda s: s["writer_errors"] >= before["writer_errors"] + 3,
                "three failed writes", w)
    wait_for(lambda: _failures(w, "ENOSPC") >= 3, timeout=TIMEOUT, what="ENOSPC on the writer's stderr")
    _assert_alive(w)
    s = stats(ring_name)
    assert s["written"] == before["written"] and s["in_ring"] == burst
    in_files = len(_read(mnt, key))
    assert in_files > s["written"], "the batch's first piece should be in the file already"

    _remount(mnt, f"size={BIG_DISK_SIZE}")
    s = _wait_stats(ring_name, _all_written, "every committed record written", w)
    assert s["written"] == s["committed"] == i and s["dropped"] == 0
    _stop_cleanly(w)
    if key is not None:
        _verify_sealed(mnt, key)
    try:
        _assert_exactly_once(_read(mnt, key), {0: list(range(i))})
    except AssertionError as exc:
        raise RecordsWrittenTwice(str(exc)) from None


# ---- 2. the disk turns read-only -------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("mode", ["plaintext", "sealed"])
def test_read_only_disk_keeps_records_in_ring_until_writable(mode, ring_name, writer_factory,
                                                             small_disk, tmp_path):
    """A filesystem with a file open for writing cannot be remounted read-only (EBUSY), so the
    writer rotates on a short interval: idle, it closes its file, and the remount can happen
    between two files.  The next file it opens then meets EROFS."""
    mnt = small_disk
    flags, kw, key = _sealing(tmp_path, mode)
    w = writer_factory(*RING_FLAGS, "--rotate-interval", "300ms", *flags, directory=mnt, **kw).start()
    log = connect(ring_name, name="producer-0", on_full="drop")
    _log_range(log, 0, 200)
    _wait_stats(ring_name, lambda s: s["written"] == 200, "the first 200 records written", w)

    _wait_no_open_file(w, mnt)
    deadline = time.monotonic() + TIMEOUT
    while True:
        r = _mount("-o", "remount,ro", str(mnt))
        if r.returncode == 0:
            break
        assert time.monotonic() < deadline, f"remount,ro kept failing: {r.stderr.strip()}"
        time.sleep(0.1)
    with pytest.raises(OSError) as info:
        (mnt / "probe").write_bytes(b"x")
    assert info.value.errno == errno.EROFS

    _log_range(log, 200, 500)
    s = _wait_stats(ring_name, lambda s: s["writer_errors"] > 0, "writer errors counted", w)
    wait_for(lambda: _failures(w, "EROFS") > 0, timeout=TIMEOUT, what="EROFS on the writer's stderr")
    _assert_alive(w)
    s = stats(ring_name)
    assert s["written"] == 200 and s["in_ring"] == 300 and s["dropped"] == 0

    _remount(mnt, "rw")
    s = _wait_stats(ring_name, _all_written, "every committed record written", w)
    assert s["written"] == s["committed"] == 500 and s["dropped"] == 0
    _assert_alive(w)
    _stop_cleanly(w)
    _assert_exactly_once(_read(mnt, key), {0: list(range(500))})
    if key is not None:
        _verify_sealed(mnt, key)


# ---- 3. the log directory is removed ---------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("mode", ["plaintext", "sealed"])
def test_removed_log_directory_loses_no_record_silently(mode, ring_name, writer_factory, tmp_path):
    logs = tmp_path / "logs"
    flags, kw, key = _sealing(tmp_path, mode)
    w = writer_factory(*flags, directory=logs, **kw).start()
    log = connect(ring_name, name="producer-0", on_full="drop")
    _log_range(log, 0, 100)
    _wait_stats(ring_name, lambda s: s["written"] == 100, "the first 100 records written", w)

    shutil.rmtree(logs)
    _log_range(log, 100, 300)
    s = _wait_stats(ring_name, lambda s: _all_written(s) or s["writer_errors"] > 0,
                    "the records written or an error counted", w)
    time.sleep(0.3)
    _assert_alive(w)
    s = stats(ring_name)

    # the writer made the directory again and copied its open file back into it: the records
    # logged before the removal are there too, each once; the copy is said on stderr
    in_files = _by_producer(_read(logs, key)).get(0, []) if logs.is_dir() else []
    if in_files != list(range(300)):
        open_files = _files_open_under(w.proc.pid, logs)
        raise RecordsLostSilently(
            f"300 records logged, {logs} removed after 100: written={s['written']}, "
            f"writer_errors={s['writer_errors']}, in_ring={s['in_ring']}, directory exists: "
            f"{logs.exists()}, {len(in_files)} of them in files; the writer holds open "
            f"{open_files}; its stderr: {[e['writer'] for e in _events(w)]}")
    assert s["written"] == s["committed"] == 300 and s["writer_errors"] == 0
    events = [e["writer"] for e in _events(w)]
    assert "directory_recreated" in events and "removed_file_restored" in events, events
    assert stat.S_IMODE(os.stat(logs).st_mode) == 0o700
    # the directory made again is held like the first: a second writer is refused
    r = subprocess.run([sys.executable, "-m", "logger_system", "writer", "--ring", f"{ring_name}-b",
                        "--dir", str(logs), "--plaintext"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "in use by another writer" in r.stderr, r.stderr
    _stop_cleanly(w)
    _assert_exactly_once(_read(logs, key), {0: list(range(300))})
    if key is not None:
        _verify_sealed(logs, key)


@pytest.mark.slow
def test_removed_log_directory_between_files_keeps_records_in_ring(ring_name, writer_factory,
                                                                   tmp_path):
    """Removed while the writer has no file open: the writer makes the directory again (0700)
    when it next opens a file, and says so."""
    logs = tmp_path / "logs"
    w = writer_factory("--rotate-interval", "300ms", directory=logs).start()
    log = connect(ring_name, name="producer-0", on_full="drop")
    _log_range(log, 0, 100)
    _wait_stats(ring_name, lambda s: s["written"] == 100, "the first 100 records written", w)
    _wait_no_open_file(w, logs)

    shutil.rmtree(logs)
    _log_range(log, 100, 300)
    s = _wait_stats(ring_name, lambda s: _all_written(s) or s["writer_errors"] > 0,
                    "the records written or an error counted", w)
    assert s["written"] == s["committed"] == 300 and s["writer_errors"] == 0
    assert stat.S_IMODE(os.stat(logs).st_mode) == 0o700
    assert "directory_recreated" in [e["writer"] for e in _events(w)]
    _assert_alive(w)
    _stop_cleanly(w)
    # the first 100 went with the removed directory; every later one is there, once
    _assert_exactly_once(_read(logs, None), {0: list(range(100, 300))})


# ---- 4. permission denied --------------------------------------------------------------------

def _denied_prefix(tmp_path: Path) -> list[str]:
    """A command prefix under which the writer meets file permissions, or skip.

    root ignores file permissions through CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH; a writer
    started without them in its bounding set stays uid 0 (so it can still reach this
    interpreter and owns the ring and directory) but is refused like any owner."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root, and setpriv(1) is not installed to drop CAP_DAC_OVERRIDE")
    prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
    probe = tmp_path / "probe"
    probe.mkdir(mode=0o500)
    os.chmod(probe, 0o500)
    code = ("import sys, logger_system.writer\n"
            "try:\n    open(sys.argv[1] + '/x', 'w')\nexcept PermissionError:\n    print('denied')\n"
            "else:\n    print('allowed')\n")
    r = subprocess.run([*prefix, sys.executable, "-c", code, str(probe)], capture_output=True,
                       text=True, timeout=120)
    if r.returncode != 0 or r.stdout.strip() != "denied":
        pytest.skip(f"cannot run the writer without CAP_DAC_OVERRIDE here: "
                    f"{(r.stdout + r.stderr).strip()[-500:]}")
    return prefix


@pytest.fixture
def prefixed_writers():
    made: list[WriterProcess] = []
    yield made
    for w in made:
        if w.proc and w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait(10)


@pytest.mark.slow
def test_permission_denied_keeps_records_in_ring(ring_name, tmp_path, prefixed_writers):
    prefix = _denied_prefix(tmp_path)
    logs = tmp_path / "logs"
    w = WriterProcess(ring_name, logs, "--rotate-interval", "300ms", prefix=prefix)
    prefixed_writers.append(w)
    w.start()
    log = connect(ring_name, name="producer-0", on_full="drop")
    _log_range(log, 0, 100)
    _wait_stats(ring_name, lambda s: s["written"] == 100, "the first 100 records written", w)
    _wait_no_open_file(w, logs)

    os.chmod(logs, 0o500)  # no new file can be made in it
    try:
        _log_range(log, 100, 300)
        _wait_stats(ring_name, lambda s: s["writer_errors"] > 0, "writer errors counted", w)
        wait_for(lambda: _failures(w, "EACCES") > 0, timeout=TIMEOUT, what="EACCES on stderr")
        _assert_alive(w)
        s = stats(ring_name)
        assert s["written"] == 100 and s["in_ring"] == 200 and s["dropped"] == 0
    finally:
        os.chmod(logs, 0o700)
    s = _wait_stats(ring_name, _all_written, "every committed record written", w)
    assert s["written"] == s["committed"] == 300
    _assert_alive(w)
    _stop_cleanly(w)
    _assert_exactly_once(_read(logs, None), {0: list(range(300))})


# ---- 5. asked to stop while the disk is full -------------------------------------------------

SHUTDOWN_TIMEOUT = 1.0


@pytest.mark.slow
@pytest.mark.parametrize("mode, tail_room", [
    ("plaintext", 0),
    ("sealed", 512),
    ("sealed", 0),
], ids=["plaintext", "sealed-room-for-final-chunk", "sealed-no-room-for-final-chunk"])
def test_stop_with_full_disk_leaves_records_for_the_next_writer(mode, tail_room, ring_name,
                                                                writer_factory, small_disk,
                                                                tmp_path):
    mnt = small_disk
    flags, kw, key = _sealing(tmp_path, mode)
    cfg = tmp_path / "writer.toml"
    cfg.write_text(f'[writer]\nshutdown_timeout = "{SHUTDOWN_TIMEOUT}s"\n')
    writer_flags = (*RING_FLAGS, "--config", str(cfg), *flags)
    w = writer_factory(*writer_flags, directory=mnt, **kw).start()
    log = connect(ring_name, name="producer-0", on_full="drop")

    n = _fill_to_the_page(mnt, ring_name, log, w, 0, tail_room)
    written_before = stats(ring_name)["written"]
    assert written_before == n
    waiting = 300
    _log_range(log, n, n + waiting)
    n += waiting
    _wait_stats(ring_name, lambda s: s["writer_errors"] > 0, "writer errors counted", w)
    wait_for(lambda: _failures(w, "ENOSPC") > 0, timeout=TIMEOUT, what="ENOSPC on the writer's stderr")
    _assert_alive(w)
    assert stats(ring_name)["in_ring"] == waiting

    t0 = time.monotonic()
    w.proc.send_signal(signal.SIGTERM)
    bound = SHUTDOWN_TIMEOUT + MAX_BACKOFF + 20.0  # generous: the machine may be slow
    try:
        rc = w.proc.wait(bound)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the writer did not exit within {bound:.0f}s of SIGTERM with a full "
                             f"disk (shutdown_timeout {SHUTDOWN_TIMEOUT}s): {w.stderr()[-2000:]}")
    took = time.monotonic() - t0
    err = w.stderr()
    after = stats(ring_name)
    problems = []
    if rc != 0:
        problems.append(f"exit status {rc}")
    if "Traceback" in err:
        problems.append("a traceback on stderr: " + err[err.index("Traceback"):][-1500:])
    if not _events(w) or _events(w)[-1]["writer"] != "stopped":
        problems.append("no 'stopped' line at the end of stderr")
    if after["writer_pid"] != 0:
        problems.append(f"the ring still names pid {after['writer_pid']} as its writer")
    # whatever the exit, nothing was written, nothing was lost: the records wait in the ring
    assert after["written"] == written_before and after["in_ring"] == waiting, after
    assert after["committed"] == n and after["dropped"] == 0

    # space returns; a new writer writes them, once
    _remount(mnt, f"size={BIG_DISK_SIZE}")
    w2 = writer_factory(*writer_flags, directory=mnt, **kw).start()
    s = _wait_stats(ring_name, _all_written, "every committed record written by the new writer", w2)
    assert s["written"] == s["committed"] == n
    _stop_cleanly(w2)
    _assert_exactly_once(_read(mnt, key), {0: list(range(n))})
    if key is not None:
        _verify_sealed(mnt, key)
    if problems:
        raise ShutdownNotClean(f"stopped after {took:.1f}s: " + "; ".join(problems))
