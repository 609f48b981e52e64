"""End-to-end throughput of logger_system, measured like the peers (perf.peers).

Producers are forked, connect to the ring, build their workload and wait on a
barrier; the clock starts when they are released and stops when the writer
has released every record into its files (the ring's `written` counter is
published only after the batch's write returned).  The files are then read
back and checked with check_complete: a figure counts only if complete.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

from pathlib import Path

from logger_system.files.reader import iter_records
from logger_system.ring import Ring, unlink, writer_attached

from perf.peers import DEFAULT_TIMEOUT, Result, _Producers, _result
from perf.workload import MESSAGE, producer_args


def _producer(barrier, producer: int, n_records: int, ring: str) -> None:
    import logger_system

    log = logger_system.connect(ring, name=f"perf.p{producer}")
    work = producer_args(producer, n_records)
    barrier.wait(30)
    info = log.info
    for args in work:
        info(MESSAGE, *args)


def start_writer(ring: str, directory: str, *extra: str) -> subprocess.Popen:
    err = open(os.path.join(os.path.dirname(directory), f"writer-{ring}.err"), "wb")
    sealing = ("--key" in extra or "--recipient" in extra)
    proc = subprocess.Popen(
        [sys.executable, "-m", "logger_system", "writer", "--ring", ring, "--dir", directory,
         *(() if sealing else ("--plaintext",)), *extra], stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 20
    while not writer_attached(ring, proc.pid):
        if proc.poll() is not None:
            raise RuntimeError(f"writer exited with {proc.returncode}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("writer did not start")
        time.sleep(0.02)
    return proc


def run_logger_system(n_producers: int, n_records: int, workdir: str, *,
                      timeout: float = DEFAULT_TIMEOUT, writer_args: tuple[str, ...] = (),
                      name: str = "logger_system", sealed: bool = False) -> Result:
    ring = f"perf-{uuid.uuid4().hex[:10]}"
    directory = os.path.join(workdir, ring)
    total = n_producers * n_records
    reason: str | None = None
    seconds: float | None = None
    keys = {}
    if sealed:
        from logger_system.keys import keygen, load_keyring

        key = Path(workdir) / f"{ring}.key"
        keygen(key)
        keys["keyring"] = load_keyring(key)
        writer_args = (*writer_args, "--key", str(key))
    writer = start_writer(ring, directory, *writer_args)
    watcher = Ring(ring, create=False)
    producers = _Producers(_producer, n_producers, n_records, (ring,))
    try:
        producers.start()
        started = producers.release()
        deadline = started + timeout
        while time.perf_counter() < deadline:
            if watcher.stats().written >= total:
                seconds = time.perf_counter() - started
                break
            time.sleep(0.0005)
        else:
            reason = "writer did not write every record before the deadline"
        reason = producers.join(deadline) or reason
        writer.send_signal(signal.SIGTERM)
        if writer.wait(30) != 0:
            reason = reason or f"writer exited with {writer.returncode}"
    except threading.BrokenBarrierError:
        reason = "producers did not all reach the start barrier"
    finally:
        producers.stop()
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        stats = watcher.stats().as_dict()
        watcher.close()
        unlink(ring)
    # the checker reads message text; take it out of the JSON lines, checking each
    merged = os.path.join(workdir, f"{ring}.msgs")
    with open(merged, "w", encoding="utf-8") as out:
        for rec in iter_records([Path(directory)], **keys):
            out.write(rec["msg"] + "\n")
    result = _result(name, n_producers, n_records, seconds, merged, reason)
    result["dropped"] = stats["dropped"]
    return result
