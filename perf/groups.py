"""End to end with one ring and one writer per group of producers: the way past one writer.

A writer is one process draining one ring; when it is the bound (its CPU share near a full
core while producers wait on a full ring), the producers can be split into groups, each
group logging to a ring of its own with its own writer and directory.  The writers share
nothing but the key.  Each directory is a complete, verifiable stream of its own; read
together, `cat` merges the records of all of them into one log in `ts` order, each directory
checked on its own (docs/OPERATIONS.md):

    logger-system cat --key app.key logs/g0 logs/g1

Measured like perf.ours: producers forked and held on one barrier, every writer started and
attached before they are released; the clock runs from their release until every writer has
written its group's share.  Each directory is read back (checked, decrypted) and each
producer's records checked complete and in order; the records of all directories are then
merged in `ts` order by the reader `cat` uses, and checked again.
"""
from __future__ import annotations

import signal
import threading
import time
import uuid
from pathlib import Path

from logger_system.files.reader import iter_records
from logger_system.ring import Ring, unlink

from perf.ours import children_cpu, cpu_shares, proc_cpu, producers_cpu_at, start_writer
from perf.peers import DEFAULT_TIMEOUT, Result, _Producers, _result
from perf.workload import MESSAGE, check_complete, producer_args


def group_of(producer: int, n_groups: int) -> int:
    """The group a producer logs to: producers dealt round-robin over the groups."""
    return producer % n_groups


def _producer(barrier, producer: int, n_records: int, rings: tuple[str, ...]) -> None:
    import logger_system

    log = logger_system.connect(rings[group_of(producer, len(rings))], name=f"perf.p{producer}")
    work = producer_args(producer, n_records)
    barrier.wait(30)
    info = log.info
    for args in work:
        info(MESSAGE, *args)


def merged_in_ts_order(directories: list[Path], **keys) -> list[dict]:
    """Every record of the directories merged in `ts` order, as `cat DIR DIR...` prints them."""
    return list(iter_records(directories, **keys))


def run_groups(n_producers: int, n_records: int, n_groups: int, workdir: str, *,
               timeout: float = DEFAULT_TIMEOUT, writer_args: tuple[str, ...] = (),
               name: str | None = None, sealed: bool = True) -> Result:
    """n_producers x n_records records through n_groups rings, each with its own writer
    (sealed: one key for all; else plaintext).  The result of perf.peers._result, plus per
    writer its CPU and wait shares over the window (`writers`), `seconds_each` (when each
    writer had its share), the producers' CPU, the rings' names (removed on return), the
    directories and key file, and, for more than one group, `merged_complete` for the records
    merged in `ts` order.  One group is perf.ours.run_logger_system."""
    from logger_system.keys import keygen, load_keyring

    if not 1 <= n_groups <= n_producers:
        raise ValueError("need 1 <= groups <= producers")
    name = name or f"groups_{n_groups}"
    tag = uuid.uuid4().hex[:10]
    rings = tuple(f"perf-{tag}-g{g}" for g in range(n_groups))
    base = Path(workdir) / f"groups-{tag}"
    base.mkdir()
    directories = [base / f"g{g}" for g in range(n_groups)]
    key = base / "app.key" if sealed else None
    keyring = None
    if key is not None:
        keygen(key)
        keyring = load_keyring(key)
    sealing = ("--key", str(key)) if key is not None else ()
    share = [sum(1 for p in range(n_producers) if group_of(p, n_groups) == g) * n_records
             for g in range(n_groups)]
    reason: str | None = None
    seconds: float | None = None
    each: list[float | None] = [None] * n_groups
    cpu: list[dict] = [{} for _ in range(n_groups)]
    producers_cpu: dict = {}
    writers = []
    watchers: list[Ring] = []
    producers = _Producers(_producer, n_producers, n_records, (rings,))
    try:
        for ring, directory in zip(rings, directories):
            writers.append(start_writer(ring, str(directory), *writer_args, *sealing))
            watchers.append(Ring(ring, create=False))
        producers.start()
        started = producers.release()
        before = [proc_cpu(w.pid) for w in writers]
        producers_before = producers_cpu_at(producers)
        reaped_before = children_cpu()
        deadline = started + timeout
        while time.perf_counter() < deadline:
            for g, watcher in enumerate(watchers):
                if each[g] is None and watcher.stats().written >= share[g]:
                    each[g] = time.perf_counter() - started
                    cpu[g] = {"writer_cpu": proc_cpu(writers[g].pid), "seconds": each[g]}
            if all(s is not None for s in each):
                seconds = max(each)  # type: ignore[type-var]
                break
            time.sleep(0.0005)
        else:
            reason = "a writer did not write its group's records before the deadline"
        reason = producers.join(deadline) or reason
        if seconds and reason is None:
            used = children_cpu() - reaped_before - producers_before
            producers_cpu = {"producers_cpu_s": used, "producers_cpu_share": used / seconds}
        for g, w in enumerate(writers):
            w.send_signal(signal.SIGTERM)
            if w.wait(30) != 0:
                reason = reason or f"writer of group {g} exited with {w.returncode}"
    except threading.BrokenBarrierError:
        reason = "producers did not all reach the start barrier"
    finally:
        producers.stop()
        for w in writers:
            if w.poll() is None:
                w.kill()
                w.wait()
        dropped = sum(watcher.stats().dropped for watcher in watchers)
        for watcher in watchers:
            watcher.close()
        for ring in rings:
            unlink(ring)
    # per directory, then the directories one after the other: each producer is in one group,
    # so its order is checked within its own writer's stream
    msgs = base / "all.msgs"
    with open(msgs, "w", encoding="utf-8") as out:
        for directory in directories:
            if directory.exists():
                for rec in iter_records([directory], keyring=keyring):
                    out.write(rec["msg"] + "\n")
    result = _result(name, n_producers, n_records, seconds, str(msgs), reason)
    if n_groups > 1:
        merged = merged_in_ts_order([d for d in directories if d.exists()], keyring=keyring)
        result["merged_complete"] = bool(check_complete((r["msg"] for r in merged), n_producers,
                                                        n_records)["complete"])
        result["complete"] = result["complete"] and result["merged_complete"]
        if not result["complete"]:
            result["records_per_s"] = None
            result.setdefault("reason", "records merged in ts order failed the completeness check")
    result["groups"] = n_groups
    result["dropped"] = dropped
    result["seconds_each"] = each
    result["writers"] = [cpu_shares(before[g], c["writer_cpu"], c["seconds"], writers[g].pid) if c else {}
                         for g, c in enumerate(cpu)]
    result.update(producers_cpu)
    result["rings"] = list(rings)
    result["directories"] = [str(d) for d in directories]
    result["key"] = None if key is None else str(key)
    return result
