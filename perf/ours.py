"""End-to-end throughput of logger_system, measured like the peers (perf.peers).

Producers are forked, connect to the ring, build their workload and wait on a
barrier; the clock starts when they are released and stops when the writer
has released every record into its files (the ring's `written` counter is
published only after the batch's write returned).  The files are then read
back and checked with check_complete: a figure counts only if complete.

Over that same window the writer's CPU is read from /proc: `writer_cpu_share` is its CPU
seconds (every thread) over the window's wall seconds, so 1.0 is one full core, and
`writer_wait_share` the share of the window its draining thread was runnable but waiting for
a CPU.  A writer whose
CPU share nears 1.0 while the producers wait on a full ring is the bound; the way past it is
one ring and writer per group of producers (perf.groups).
"""
from __future__ import annotations

import os
import resource
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


_TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> dict:
    """What a process has used so far: `cpu_s` from /proc/PID/stat (utime + stime of every
    thread, exited ones too, in clock ticks) and, where the kernel keeps schedstat, `tasks`:
    per thread id (ns on a CPU, ns runnable and waiting for one) from /proc/PID/task/TID/schedstat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces
    out: dict = {"cpu_s": (int(fields[11]) + int(fields[12])) / _TICK}
    tasks = {}
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    run_ns, wait_ns = f.read().split()[:2]
            except (FileNotFoundError, ProcessLookupError):
                continue  # the thread ended between the listing and the read
            tasks[int(tid)] = (int(run_ns), int(wait_ns))
    except FileNotFoundError:
        pass
    if tasks:
        out["tasks"] = tasks
    return out


def cpu_shares(before: dict, after: dict, seconds: float, pid: int) -> dict:
    """`writer_cpu_s`, `writer_cpu_share` (CPU seconds / wall seconds) and, with schedstat,
    `writer_wait_share` between two proc_cpu() readings of process `pid`.  With schedstat the
    CPU is every thread's alive at the second reading (a thread started in between counts from
    zero), and the wait is the main thread's, the one that drains: the share of the window it
    was runnable but waiting for a CPU (the threads' waits summed could pass 1.0).  Without
    schedstat the CPU comes from /proc/PID/stat (ticks)."""
    if "tasks" in before and "tasks" in after:
        run = 0
        for tid, (r, _) in after["tasks"].items():
            run += r - before["tasks"].get(tid, (0, 0))[0]
        wait = after["tasks"].get(pid, (0, 0))[1] - before["tasks"].get(pid, (0, 0))[1]
        cpu = run / 1e9
        out = {"writer_cpu_s": cpu, "writer_cpu_share": cpu / seconds, "writer_wait_share": wait / 1e9 / seconds}
    else:
        cpu = after["cpu_s"] - before["cpu_s"]
        out = {"writer_cpu_s": cpu, "writer_cpu_share": cpu / seconds}
    return out


def producers_cpu_at(producers: _Producers) -> float:
    """CPU seconds the producer processes have used so far (schedstat of each; they have one
    thread), or /proc/PID/stat where there is no schedstat."""
    total = 0.0
    for proc in producers.procs:
        try:
            cpu = proc_cpu(proc.pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
        tasks = cpu.get("tasks")
        total += sum(r for r, _ in tasks.values()) / 1e9 if tasks else cpu["cpu_s"]
    return total


def children_cpu() -> float:
    """CPU seconds of this process's children that have been waited for (getrusage)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


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
    cpu: dict = {}
    try:
        producers.start()
        started = producers.release()
        writer_before = proc_cpu(writer.pid)
        # the producers were released the instant before: what they used until now is their
        # set-up (and a few µs of logging), taken off their whole lives' CPU below
        producers_before = producers_cpu_at(producers)
        reaped_before = children_cpu()
        deadline = started + timeout
        while time.perf_counter() < deadline:
            if watcher.stats().written >= total:
                seconds = time.perf_counter() - started
                cpu.update(cpu_shares(writer_before, proc_cpu(writer.pid), seconds, writer.pid))
                break
            time.sleep(0.0005)
        else:
            reason = "writer did not write every record before the deadline"
        reason = producers.join(deadline) or reason
        if seconds and reason is None:
            # only the producers were waited for since reaped_before: the writer is waited below
            used = children_cpu() - reaped_before - producers_before
            cpu["producers_cpu_s"] = used
            cpu["producers_cpu_share"] = used / seconds
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
    result.update(cpu)
    return result
