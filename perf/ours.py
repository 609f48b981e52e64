"""End-to-end throughput of logger_system, measured like the peers (perf.peers).

Producers are forked, connect to the ring, build their workload and wait on a
barrier; the clock starts when they are released and stops when the writer
has released every record into its files (the ring's `written` counter is
published only after the batch's write returned).  The files are then read
back and checked with check_complete: a figure counts only if complete.  The run itself is
perf.groups' with one group; what is here is what both read from /proc, and the writer's start.

Over that same window the writer's CPU is read from /proc: `writer_cpu_share` is its CPU
seconds (every thread) over the window's wall seconds, so 1.0 is one full core, and
`writer_wait_share` the share of the window its draining thread was runnable but waiting for
a CPU.  A writer whose CPU share nears 1.0 while the producers wait on a full ring is the bound; the way past it is
one ring and writer per group of producers (perf.groups).
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

from logger_system.ring import writer_attached

from perf.peers import DEFAULT_TIMEOUT, Result, _Producers


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
    """One ring, one writer (perf.groups with one group): the result of perf.peers._result, the
    ring's `dropped`, the writer's CPU and wait shares at the top level, the producers' CPU."""
    from perf.groups import run_groups

    result = run_groups(n_producers, n_records, 1, workdir, timeout=timeout, writer_args=writer_args,
                        name=name, sealed=sealed)
    result.update(result.pop("writers")[0])
    return result
