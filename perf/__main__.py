"""Run the perf suite: `python -m perf` (quick, about a minute) or `python -m perf --full`.

Everything is measured side by side in one run on this machine and reported as
medians and ratios; nothing here asserts a speed.  Results go to
perf/results/latest.json and perf/results/latest.md.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import logging.handlers
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from perf.ours import run_logger_system
from perf.peers import RUNNERS
from perf.workload import MESSAGE, args_for

RESULTS = Path(__file__).parent / "results"


def _progress(text: str) -> None:
    print(f"  .. {text}", file=sys.stderr, flush=True)


def per_cpu(measure):
    """Run measure() pinned to each CPU in turn: on shared machines one CPU is often
    slower than another (steal), and a single figure would hide which one ran it."""
    cpus = sorted(os.sched_getaffinity(0))
    out = {}
    try:
        for cpu in cpus:
            os.sched_setaffinity(0, {cpu})
            out[f"cpu{cpu}"] = measure()
    finally:
        os.sched_setaffinity(0, set(cpus))
    return out


def ring_bench(rounds: int, n: int = 2_000_000, payload: int = 100) -> dict:
    """C claim + copy + commit + drain + release of `payload`-byte records, one producer."""
    from logger_system._native import lib
    from logger_system.ring import Ring

    name = f"perf-ring-{uuid.uuid4().hex[:8]}"
    ring = Ring(name, capacity=16 << 20)
    try:
        rates = []
        for i in range(rounds):
            _progress(f"ring: round {i + 1}/{rounds}")
            secs = lib.lsr_bench(ring.ptr, n, payload)
            rates.append(n / secs)
    finally:
        ring.unlink()
        ring.close()
    return {"records_per_s": statistics.median(rates), "rounds": rates, "payload": payload}


def _per_call(fn, calls: int, rounds: int) -> dict:
    """Median and spread of the per-call cost of fn() over `rounds` batches of `calls`."""
    per = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        for i in range(calls):
            fn(i)
        per.append((time.perf_counter_ns() - t0) / calls / 1000)
    return {"median_us": statistics.median(per), "min_us": min(per), "max_us": max(per)}


def _lean_logger(name: str, handler: logging.Handler) -> logging.Logger:
    """A logger as logger_system.install() leaves them: the lean Logger class."""
    from logger_system.handler import Logger

    lg = logging.getLogger(name)
    lg.__class__ = Logger
    lg.propagate = False
    lg.handlers[:] = [handler]
    lg.setLevel(logging.INFO)
    return lg


def _drain_queue(queue, ctl) -> None:
    """Listener of a queue-based peer: reads as many records as asked, then says so."""
    os.sched_setaffinity(0, range(os.cpu_count() or 1))  # not pinned with the producer
    while n := ctl.recv():
        for _ in range(n):
            queue.get(timeout=60)
        ctl.send(n)


class _NothingHandler(logging.Handler):
    """A handler that does nothing: what is left is the stdlib Logger's own cost per call."""

    def handle(self, record):
        return True

    def emit(self, record):
        pass


def call_cost(rounds: int, calls: int = 20_000) -> dict:
    """Per-call cost of each way to log, contenders interleaved round by round.

    The queue-based peers are drained after each of their rounds, so the work
    their feeder threads still owe never lands in the next contender's round.
    """
    import logger_system
    from logger_system.ring import unlink

    name = f"perf-call-{uuid.uuid4().hex[:8]}"
    # big enough that no round fills it: this measures the call, not back-pressure
    log = logger_system.connect(name, capacity=512 << 20, on_full="drop", name="perf")
    work = [args_for(i, 0) for i in range(calls)]
    # the shape the core issue states its target in: one %s argument, ~100 bytes
    one = "request handled for user %s in the orders service; status ok, cache warm, retries none"
    users = [f"user{i:06d}" for i in range(calls)]
    quiet = logger_system.connect(name, on_full="drop", name="perf", level="INFO")
    handler = logger_system.Handler(name, on_full="drop")
    std = logging.getLogger("perf.handler")
    std.propagate = False
    std.handlers[:] = [handler]
    std.setLevel(logging.INFO)
    lean = _lean_logger("perf.lean", handler)
    null = logging.getLogger("perf.null")
    null.propagate = False
    null.handlers[:] = [_NothingHandler()]
    null.setLevel(logging.INFO)
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    stdq = logging.getLogger("perf.stdlib")
    stdq.propagate = False
    stdq.handlers[:] = [logging.handlers.QueueHandler(q)]
    stdq.setLevel(logging.INFO)
    # (label, call, calls per round, queue the records go through)
    contenders = [
        ("producer_info_one_arg", lambda i: log.info(one, users[i]), calls, None),
        ("producer_info", lambda i: log.info(MESSAGE, *work[i]), calls, None),
        # below the producer's minimum level: discarded in the caller
        ("producer_debug_filtered", lambda i: quiet.debug(MESSAGE, *work[i]), calls, None),
        ("logging_handler", lambda i: std.info(MESSAGE, *work[i]), calls, None),
        ("logging_lean_logger", lambda i: lean.info(MESSAGE, *work[i]), calls, None),
        # the same plain Logger with a handler that does nothing: the floor of logging_handler
        ("logging_null_handler", lambda i: null.info(MESSAGE, *work[i]), calls, None),
        ("stdlib_queue_handler", lambda i: stdq.info(MESSAGE, *work[i]), calls // 4, q),
    ]
    try:
        import picologging
        import picologging.handlers
    except ImportError:
        pass
    else:  # the peer logger_system.Handler is to beat: picologging's own queue handler
        pq = ctx.Queue()
        pico = picologging.getLogger("perf.pico")
        pico.propagate = False
        pico.handlers[:] = [picologging.handlers.QueueHandler(pq)]
        pico.setLevel(picologging.INFO)
        contenders.append(("picologging_queue_handler", lambda i: pico.info(MESSAGE, *work[i]),
                           calls // 4, pq))
    per: dict[str, list[float]] = {c[0]: [] for c in contenders}
    consumers = {}
    for label, _, _, queue in contenders:
        if queue is not None:  # a listener process, as in the recipe, reads each queue
            per[label + "_until_sent"] = []
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=_drain_queue, args=(queue, theirs), daemon=True)
            proc.start()
            consumers[label] = (proc, ours)
    try:
        for r in range(rounds):
            _progress(f"call cost: round {r + 1}/{rounds}")
            for label, fn, n, queue in contenders:
                if queue is None:
                    per[label].append(_per_call(fn, n, 1)["median_us"])
                    continue
                proc, ctl = consumers[label]
                ctl.send(n)
                t0 = time.perf_counter_ns()
                for i in range(n):
                    fn(i)
                t1 = time.perf_counter_ns()
                # the queue's feeder thread pickles and sends in this process after the call
                # returns: the round ends when the listener has every record
                if not ctl.poll(60):
                    raise RuntimeError(f"{label}: the listener did not get every record")
                ctl.recv()
                t2 = time.perf_counter_ns()
                per[label].append((t1 - t0) / n / 1000)
                per[label + "_until_sent"].append((t2 - t0) / n / 1000)
    finally:
        unlink(name)
        for proc, ctl in consumers.values():
            ctl.send(0)
            proc.join(10)
    out: dict = {label: {"median_us": statistics.median(v), "min_us": min(v), "max_us": max(v)}
                 for label, v in per.items()}
    out["ratio_stdlib_over_producer"] = (out["stdlib_queue_handler"]["median_us"]
                                         / out["producer_info"]["median_us"])
    out["ratio_stdlib_until_sent_over_producer"] = (out["stdlib_queue_handler_until_sent"]["median_us"]
                                                    / out["producer_info"]["median_us"])
    return out


def latency(calls: int = 100_000) -> dict:
    """Per-call latency percentiles with a writer running (sanitizer on, sealed), logging flat out."""
    import signal as _signal

    import numpy as np

    import logger_system
    from logger_system.keys import keygen
    from logger_system.ring import unlink
    from perf.ours import start_writer

    name = f"perf-lat-{uuid.uuid4().hex[:8]}"
    out = {}
    with tempfile.TemporaryDirectory(prefix="perf-lat-") as workdir:
        key = Path(workdir) / "k.key"
        keygen(key)
        writer = start_writer(name, os.path.join(workdir, "logs"), "--key", str(key))
        try:
            log = logger_system.connect(name, name="perf")
            handler = logger_system.Handler(name)
            std = logging.getLogger("perf.latency")
            std.propagate = False
            std.handlers[:] = [handler]
            std.setLevel(logging.INFO)
            work = [args_for(i, 0) for i in range(calls)]
            clock = time.perf_counter_ns
            lean = _lean_logger("perf.latency.lean", handler)
            for label, call in (("producer_info", log.info), ("logging_handler", std.info),
                                ("logging_lean_logger", lean.info)):
                _progress(f"latency: {label}")
                t = np.empty(calls, np.int64)
                for i in range(calls):
                    t0 = clock()
                    call(MESSAGE, *work[i])
                    t[i] = clock() - t0
                us = t / 1000
                out[label] = {"p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99)),
                              "p99_9_us": float(np.percentile(us, 99.9)), "max_us": float(us.max())}
        finally:
            writer.send_signal(_signal.SIGTERM)
            writer.wait(60)
            unlink(name)
    return out


# (producers, groups) for the groups contender: one ring and writer per group
GROUPS = ((4, 2), (8, 2), (8, 4))

_CPU_KEYS = ("writer_cpu_share", "writer_wait_share", "producers_cpu_share")


def _median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def scaling_figures(producer_counts=(1, 2, 4, 8), total: int = 200_000, groups=GROUPS,
                    rounds: int = 1) -> dict:
    """End to end by number of producers (`total` records split between them): the default
    pipeline (sealed), the pipeline off, the stdlib recipe, and one ring and sealed writer per
    group of producers; contenders interleaved, `rounds` rounds, medians.

    Returns {"scaling": records/s by contender and str(producers), None where incomplete;
    "scaling_cpu": the CPU shares over the timed window, same shape, each a dict of
    writer_cpu_share / writer_wait_share / producers_cpu_share (per writer lists for groups)}."""
    from perf.groups import run_groups

    runs: dict = {}

    def keep(label: str, n: int, res: dict) -> None:
        runs.setdefault(label, {}).setdefault(str(n), []).append(res)

    with tempfile.TemporaryDirectory(prefix="perf-scale-") as workdir:
        for r in range(rounds):
            for n in producer_counts:
                per = total // n
                _progress(f"scaling: {n} producers, round {r + 1}/{rounds}")
                keep("logger_system", n, run_logger_system(n, per, workdir, sealed=True))
                keep("logger_system_pipeline_off", n, run_logger_system(
                    n, per, workdir, writer_args=("--no-sanitize",), name="off"))
                for gn, g in groups:
                    if gn == n:
                        _progress(f"scaling: {n} producers in {g} groups, round {r + 1}/{rounds}")
                        keep(f"groups_{g}", n, run_groups(n, per, g, workdir))
                keep("stdlib", n, RUNNERS["stdlib"](n, per, workdir))
    rates: dict = {}
    cpu: dict = {}
    for label, by_n in runs.items():
        rates[label] = {}
        for n, results in by_n.items():
            ok = [x for x in results if x.get("complete")]
            rates[label][n] = _median_or_none([x["records_per_s"] for x in ok]) if len(ok) == len(results) else None
            if label.startswith("groups_"):
                writers = list(zip(*(x["writers"] for x in ok)))
                shares = {k: [_median_or_none([w.get(k) for w in ws]) for ws in writers]
                          for k in _CPU_KEYS[:2]}
                shares["producers_cpu_share"] = _median_or_none([x.get("producers_cpu_share") for x in ok])
            elif label.startswith("logger_system"):
                shares = {k: _median_or_none([x.get(k) for x in ok]) for k in _CPU_KEYS}
            else:
                continue
            cpu.setdefault(label, {})[n] = shares
    return {"scaling": rates, "scaling_cpu": {"records": total, "rounds": rounds, "contenders": cpu}}


def scaling(producer_counts=(1, 2, 4, 8), total: int = 200_000) -> dict:
    """Records/s end to end by number of producers, by contender (see scaling_figures)."""
    return scaling_figures(producer_counts, total)["scaling"]


@contextlib.contextmanager
def _stopped_writer(prefix: str):
    """A ring of 64 KiB whose writer is stopped (SIGSTOP): alive, its heartbeat fresh, not
    draining.  Yields the ring's name; the writer is resumed, stopped and the ring removed after."""
    import signal as _signal

    from logger_system.ring import unlink
    from perf.ours import start_writer

    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as workdir:
        writer = start_writer(name, os.path.join(workdir, "logs"), "--capacity", "64KiB",
                              "--max-record", "4KiB")
        try:
            writer.send_signal(_signal.SIGSTOP)
            yield name
        finally:
            writer.send_signal(_signal.SIGCONT)
            writer.send_signal(_signal.SIGTERM)
            writer.wait(60)
            unlink(name)


def full_ring(drop_calls: int = 100_000, block_calls: int = 40) -> dict:
    """What producers see when the ring is full (the writer stopped, alive): latency and drops."""
    import numpy as np

    import logger_system

    out = {}
    with _stopped_writer("perf-full") as name:
        for policy, calls in (("drop", drop_calls), ("block", block_calls)):
            _progress(f"full ring: on_full={policy}")
            log = logger_system.connect(name, on_full=policy, block_timeout=0.05, name=policy)
            while log.info("fill %s", "x" * 200):
                pass  # until the ring is full
            before = log.ring.stats().dropped
            t = np.empty(calls, np.int64)
            for i in range(calls):
                t0 = time.perf_counter_ns()
                log.info("request %s", i)
                t[i] = time.perf_counter_ns() - t0
            us = t / 1000
            out[policy] = {"calls": calls, "dropped": log.ring.stats().dropped - before,
                           "p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99)),
                           "max_us": float(us.max())}
    return out


def stalled_writer(calls: int = 400, block_timeout: float = 1.0) -> dict:
    """A stopped writer (SIGSTOP: alive, not draining) and a full ring: the total time of
    `calls` log calls under on_full="block" (waits at most once), the same calls made
    inside a running asyncio event loop (never wait), and on_full="drop"."""
    import asyncio

    import logger_system

    out = {}
    for case in ("block", "block_in_event_loop", "drop"):
        with _stopped_writer("perf-stall") as name:
            _progress(f"stopped writer: {case}, {calls} calls")
            log = logger_system.connect(name, on_full="drop" if case == "drop" else "block",
                                        block_timeout=block_timeout, name=case)
            filler = logger_system.connect(name, on_full="drop", name="fill")
            while filler.info("fill %s", "x" * 200):
                pass  # until the ring is full (a drop-mode fill never waits)
            before = log.ring.stats().as_dict()

            def run() -> float:
                t0 = time.perf_counter()
                for i in range(calls):
                    log.info("request %s", i)
                return time.perf_counter() - t0

            if case == "block_in_event_loop":
                async def in_loop() -> float:
                    return run()
                total = asyncio.run(in_loop())
            else:
                total = run()
            after = log.ring.stats().as_dict()
            out[case] = {"calls": calls, "block_timeout_s": block_timeout, "total_s": total,
                         **{k: after[k] - before[k] for k in ("dropped", "blocked", "block_timeouts",
                                                              "dropped_stalled", "dropped_in_loop")}}
    return out


def memory(records: int = 300_000) -> dict:
    """Resident memory (psutil) of a producer before and after attaching, and of a writer under load."""
    import signal as _signal

    import psutil

    from logger_system.ring import unlink
    from perf.ours import start_writer

    code = ("import psutil, sys, logger_system; p = psutil.Process(); a = p.memory_full_info(); "
            "log = logger_system.connect(sys.argv[1]); log.info('x'); b = p.memory_full_info(); "
            "print(a.rss, a.uss, b.rss, b.uss)")
    name = f"perf-mem-{uuid.uuid4().hex[:8]}"
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="perf-mem-") as workdir:
        writer = start_writer(name, os.path.join(workdir, "logs"))
        try:
            _progress("memory: a producer before and after attaching")
            got = subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True, timeout=60)
            rss0, uss0, rss1, uss1 = map(int, got.stdout.split())
            out["producer"] = {"rss_before_mb": rss0 / 2**20, "rss_after_mb": rss1 / 2**20,
                               "uss_before_mb": uss0 / 2**20, "uss_after_mb": uss1 / 2**20}
            _progress("memory: the writer under load")
            w = psutil.Process(writer.pid)
            peak = w.memory_info().rss
            load = subprocess.Popen([sys.executable, "-c",
                                     "import sys, logger_system\nlog = logger_system.connect(sys.argv[1])\n"
                                     "for i in range(int(sys.argv[2])): log.info('request %s handled in %d ms', 'abc', i)",
                                     name, str(records)])
            while load.poll() is None:
                peak = max(peak, w.memory_info().rss)
                time.sleep(0.05)
            out["writer"] = {"rss_peak_mb": peak / 2**20, "uss_after_mb": w.memory_full_info().uss / 2**20}
        finally:
            writer.send_signal(_signal.SIGTERM)
            writer.wait(60)
            unlink(name)
    return out


def sealing(rounds: int, chunk: int = 1 << 20, chunks: int = 64) -> dict:
    """The seal stage alone: AES-256-GCM chunks as the writer makes them, GB/s of plaintext."""
    import os as _os

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from logger_system.sealed import seal_chunk

    aead = AESGCM(AESGCM.generate_key(256))
    data = _os.urandom(chunk)
    digest = bytes(32)
    buf = bytearray()  # reused, as the writer reuses its chunk buffer
    rates = []
    for r in range(rounds):
        _progress(f"sealing: round {r + 1}/{rounds}")
        t0 = time.perf_counter()
        for i in range(chunks):
            seal_chunk(aead, digest, i, data, final=False, last_seq=i, out=buf)
        rates.append(chunk * chunks / (time.perf_counter() - t0) / 1e9)
    return {"gb_per_s": statistics.median(rates), "rounds": rates, "chunk_bytes": chunk}


def sanitizer(rounds: int, n: int) -> dict:
    """The sanitize stage against the naive one-re.sub-per-rule baseline, same corpora."""
    from perf.sanitize_bench import measure
    from perf.corpus import dense, realistic

    _progress("sanitizer: realistic corpus")
    out = {"realistic": measure(realistic(n=n), rounds)}
    _progress("sanitizer: dense corpus")
    out["dense"] = measure(dense(n=n), rounds)
    return out


def secrets_corpus(rounds: int, corpus_rounds: int = 2, realistic_n: int = 20_000) -> dict:
    """The labeled corpus: ours against detect-secrets, recall, precision and MB/s side by side."""
    from perf.secrets_peer import run

    _progress("labeled corpus: logger_system and detect-secrets")
    return run(rounds=rounds, corpus_rounds=corpus_rounds, realistic_n=realistic_n)


def end_to_end(rounds: int, producers: int, records: int, peers: list[str]) -> dict:
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="perf-e2e-") as workdir:
        for r in range(rounds):
            # interleave contenders round by round so that machine noise hits all alike
            for name in ["logger_system", "logger_system_plaintext", "logger_system_no_sanitize", *peers]:
                _progress(f"end to end: {name}, round {r + 1}/{rounds}")
                if name == "logger_system":  # the full default pipeline: sanitized, sealed, rotated
                    res = run_logger_system(producers, records, workdir, sealed=True)
                elif name == "logger_system_plaintext":
                    res = run_logger_system(producers, records, workdir, name=name)
                elif name == "logger_system_no_sanitize":
                    res = run_logger_system(producers, records, workdir, writer_args=("--no-sanitize",),
                                            name=name)
                else:
                    res = RUNNERS[name](producers, records, workdir)
                results.setdefault(name, []).append(res)
    summary = {}
    for name, runs in results.items():
        if any("skipped" in r for r in runs):
            summary[name] = {"skipped": runs[0]["skipped"]}
            continue
        rates = [r["records_per_s"] for r in runs if r.get("complete")]
        summary[name] = {
            "complete": all(r.get("complete") for r in runs),
            "median_records_per_s": statistics.median(rates) if rates else None,
            "rounds": [r.get("records_per_s") for r in runs],
        }
    ours = summary["logger_system"].get("median_records_per_s")
    for name, s in summary.items():
        if not name.startswith("logger_system") and s.get("median_records_per_s") and ours:
            s["logger_system_ratio"] = ours / s["median_records_per_s"]
    return {"producers": producers, "records_per_producer": records, "contenders": summary}


def _table(title: str, header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown section: heading, then a table whose first column is text and the rest numbers."""
    return [f"## {title}", "", "| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1),
            *("| " + " | ".join(r) + " |" for r in rows), ""]


def targets(res: dict) -> list[list[str]]:
    """Each target the issues set, what this run measured, and whether it held."""
    rows: list[list[str]] = []

    def row(target: str, measured: str, held: bool | None) -> None:
        rows.append([target, measured, "—" if held is None else ("yes" if held else "**no**")])

    if "ring" in res:
        rate = res["ring"]["records_per_s"]
        row("C ring, 100-byte records, 1 producer: >= 10 M/s", f"{rate / 1e6:.2f} M/s", rate >= 10e6)
    cc = res.get("call_cost")
    if cc:
        one = cc["producer_info_one_arg"]["median_us"]
        row("`Producer.info(msg, x)`: median <= 1.5 µs", f"{one:.2f} µs", one <= 1.5)
        ratio, sent = cc["ratio_stdlib_over_producer"], cc["ratio_stdlib_until_sent_over_producer"]
        row("direct call >= 10x cheaper than the stdlib QueueHandler's (call plus its feeder thread's "
            "work in the process; the call alone)", f"{sent:.1f}x; {ratio:.1f}x", sent >= 10)
        row("`Producer.info`, 7-argument workload message, >= 12x cheaper than the stdlib "
            "QueueHandler call (issue 17)", f"{ratio:.1f}x", ratio >= 12)
        pico = cc.get("picologging_queue_handler", {}).get("median_us")
        null = cc.get("logging_null_handler", {}).get("median_us")
        for key, what in (("logging_lean_logger", "after install()"), ("logging_handler", "plain logging.Logger")):
            ours = cc[key]["median_us"]
            # a plain Logger costs its own share before any handler runs: the floor of this row
            floor = f" (a handler that does nothing: {null:.2f} µs)" if null and key == "logging_handler" else ""
            row(f"`logging` through Handler ({what}) cheaper than picologging's QueueHandler",
                (f"{ours:.2f} vs {pico:.2f} µs ({pico / ours:.2f}x)" if pico else f"{ours:.2f} µs (picologging missing)")
                + floor, ours < pico if pico else None)
    for corpus, floor, ratio_floor in (("realistic", 150, 20), ("dense", 40, None)):
        r = res.get("sanitizer", {}).get(corpus)
        if r:
            ok = r["ours_mb_s"] >= floor and (ratio_floor is None or r["ratio"] >= ratio_floor)
            want = f">= {floor} MB/s" + (f" and >= {ratio_floor}x naive" if ratio_floor else "")
            row(f"sanitizer, {corpus} corpus: {want}", f"{r['ours_mb_s']:.1f} MB/s, {r['ratio']:.0f}x", ok)
    sc = res.get("secrets_corpus")
    if sc:
        o, p, r = sc["ours"], sc["detect_secrets"], sc["realistic"]
        if "recall" in p:
            row("labeled corpus: recall above detect-secrets'", f"{o['recall']:.1%} vs {p['recall']:.1%}",
                o["recall"] > p["recall"])
            row("labeled corpus: precision above detect-secrets'", f"{o['precision']:.1%} vs {p['precision']:.1%}",
                o["precision"] > p["precision"])
        row("sanitizer, realistic corpus, same run as the corpus scores: >= 300 MB/s and >= 60x naive",
            f"{r['ours_mb_s']:.1f} MB/s, {r['ratio']:.0f}x", r["ours_mb_s"] >= 300 and r["ratio"] >= 60)
    if "sealing" in res:
        gb = res["sealing"]["gb_per_s"]
        row("seal stage >= 1 GB/s", f"{gb:.2f} GB/s", gb >= 1)
    e = res.get("end_to_end", {}).get("contenders", {})
    for peer, floor, issue in (("stdlib", 10, ""), ("faster_fifo", 3, ""), ("stdlib", 25, " (issue 17)"),
                               ("faster_fifo", 6, " (issue 17)")):
        ratio = e.get(peer, {}).get("logger_system_ratio")
        if "end_to_end" not in res:
            break
        row(f"end to end, {res['end_to_end']['producers']} producers, full default pipeline: "
            f">= {floor}x {peer}{issue}", f"{ratio:.1f}x" if ratio else "not measured",
            ratio >= floor if ratio else None)
    return rows


def _share(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, list):
        return " / ".join(_share(x) for x in v)
    return f"{v:.2f}"


def render_scaling(rates: dict, cpu: dict | None) -> list[str]:
    """The scaling tables: records/s by contender and producers, then the CPU shares."""
    counts = sorted({n for v in rates.values() for n in v}, key=int)
    head = "| contender | " + " | ".join(counts) + " |"
    rule = "|---|" + "---:|" * len(counts)
    lines = ["## End to end by number of producers (records/s)", ""]
    if cpu:
        lines += [f"{cpu['records']:,} records in all, split between the producers; "
                  f"{'median of ' + str(cpu['rounds']) + ' rounds' if cpu['rounds'] > 1 else 'one round'}, "
                  "contenders interleaved. `groups_G`: the producers dealt over G rings, each with its "
                  "own sealed writer (one key), timed until every writer wrote its share; each "
                  "directory checked, then all merged in `ts` order and checked again. "
                  "— where not run.", ""]
    lines += [head, rule]
    for k, v in rates.items():
        lines.append(f"| {k} | " + " | ".join(
            ("—" if c not in v else f"{v[c]:,.0f}" if v[c] else "incomplete") for c in counts) + " |")
    lines.append("")
    if cpu and cpu.get("contenders"):
        lines += ["## CPU over the timed window (CPU seconds / wall seconds: 1.0 = one full core)", "",
                  "From /proc (schedstat): the writer's threads on a CPU, and its draining thread "
                  "runnable but waiting for one; the producers' CPU from their release until they exit, all of them "
                  "together. For groups, one figure per writer. A writer near 1.0 is the bound; "
                  "on this 2-core machine, waiting means the producers hold the CPUs.", "",
                  head, rule]
        what = {"writer_cpu_share": "writer on CPU", "writer_wait_share": "writer waiting for a CPU",
                "producers_cpu_share": "producers on CPU"}
        for label, by_n in cpu["contenders"].items():
            for key, text in what.items():
                lines.append(f"| {label}: {text} | " + " | ".join(
                    _share(by_n[c].get(key)) if c in by_n else "—" for c in counts) + " |")
        lines.append("")
    return lines


def render(res: dict) -> str:
    lines = [f"# perf results ({res['mode']} mode)", "",
             f"Machine: {res['machine']['cpus']} CPUs, {res['machine']['platform']}, "
             f"Python {res['machine']['python']}; {res['date']}", ""]
    lines += _table("Targets", ["target", "this run", "held"], targets(res))
    rb = res.get("ring")
    if rb:
        lines += ["## C ring: claim + copy + commit + drain, 100-byte records, 1 producer", "",
                  f"median {rb['records_per_s'] / 1e6:.2f} M records/s over {len(rb['rounds'])} rounds", ""]
    if "ring_per_cpu" in res:
        lines += ["Pinned to one CPU: " + ", ".join(f"{cpu} {v / 1e6:.2f} M/s" for cpu, v in res["ring_per_cpu"].items()), ""]
    cc = res.get("call_cost")
    if cc:
        lines += ["## Per-call cost (median of rounds, µs per call)", "",
                  "`producer_info_one_arg`: `log.info(msg, x)`, one %s, ~100 bytes; the others log the "
                  "end-to-end workload message (7 arguments, %s and %d). `logging_handler`: a stdlib "
                  "`logging.Logger` with `logger_system.Handler`; `logging_lean_logger`: the same after "
                  "`logger_system.install()`, which puts the lean Logger class in place; "
                  "`logging_null_handler`: the plain `logging.Logger` with a handler whose "
                  "`handle()` does nothing, the stdlib Logger's own cost per call (finding the "
                  "caller, building the LogRecord), which bounds `logging_handler` from below. "
                  "Contenders are interleaved round by round. The queue-based peers return before "
                  "their feeder thread pickles and sends the record from the same process; "
                  "`*_until_sent` rounds end when a listener process has every record.", "", "| call | median µs | min | max |",
                  "|---|---:|---:|---:|"]
        for key in ("producer_info_one_arg", "producer_info", "producer_debug_filtered", "logging_handler",
                    "logging_lean_logger", "logging_null_handler", "stdlib_queue_handler", "stdlib_queue_handler_until_sent",
                    "picologging_queue_handler", "picologging_queue_handler_until_sent"):
            if key not in cc:
                continue
            c = cc[key]
            lines.append(f"| {key} | {c['median_us']:.2f} | {c['min_us']:.2f} | {c['max_us']:.2f} |")
        lines += ["", f"stdlib QueueHandler call / Producer.info call: {cc['ratio_stdlib_over_producer']:.1f}x", ""]
    if "call_cost_per_cpu" in res:
        lines += ["Pinned to one CPU (median µs): " + "; ".join(
            f"{cpu}: " + ", ".join(f"{k} {v:.2f}" for k, v in d.items()) for cpu, d in res["call_cost_per_cpu"].items()), ""]
    if "sanitizer" in res:
        lines += ["## Sanitizer stage (payload MB/s, median of rounds)", "",
                  "| corpus | logger_system | naive re.sub per rule | ratio |", "|---|---:|---:|---:|"]
        for name, r in res["sanitizer"].items():
            lines.append(f"| {name} | {r['ours_mb_s']:.1f} | {r['naive_mb_s']:.1f} | {r['ratio']:.0f}x |")
        lines.append("")
    if "secrets_corpus" in res:
        from perf.secrets_peer import render as render_corpus

        lines += render_corpus(res["secrets_corpus"])
    if "latency" in res:
        lines += _table("Call latency with the writer running (sanitizer on, sealed), per call",
                        ["call", "p50 µs", "p99 µs", "p99.9 µs", "max µs"],
                        [[k, f"{v['p50_us']:.2f}", f"{v['p99_us']:.2f}", f"{v['p99_9_us']:.2f}",
                          f"{v['max_us']:.0f}"] for k, v in res["latency"].items()])
    if "full_ring" in res:
        lines += _table("A full ring (writer stopped but alive): what a producer sees (block_timeout 50 ms)",
                        ["on_full", "calls", "dropped", "p50 µs", "p99 µs", "max µs"],
                        [[k, str(v["calls"]), str(v["dropped"]), f"{v['p50_us']:.2f}", f"{v['p99_us']:.2f}",
                          f"{v['max_us']:.0f}"] for k, v in res["full_ring"].items()])
    if "stalled_writer" in res:
        lines += _table("A stopped writer and a full ring: total time of the calls",
                        ["case", "calls", "block_timeout s", "total s", "waits", "dropped"],
                        [[k, str(v["calls"]), f"{v['block_timeout_s']:g}", f"{v['total_s']:.3f}",
                          str(v["blocked"]), str(v["dropped"])] for k, v in res["stalled_writer"].items()])
    if "scaling" in res:
        lines += render_scaling(res["scaling"], res.get("scaling_cpu"))
    if "memory" in res:
        m = res["memory"]
        lines += ["## Memory (psutil; RSS counts the ring's shared pages, USS only private memory)", "",
                  f"producer: RSS {m['producer']['rss_before_mb']:.1f} -> {m['producer']['rss_after_mb']:.1f} MiB, "
                  f"USS {m['producer']['uss_before_mb']:.1f} -> {m['producer']['uss_after_mb']:.1f} MiB on attaching; "
                  f"writer under load: peak RSS {m['writer']['rss_peak_mb']:.1f} MiB, "
                  f"USS {m['writer']['uss_after_mb']:.1f} MiB", ""]
    if "sealing" in res:
        lines += [f"## Seal stage: {res['sealing']['gb_per_s']:.2f} GB/s "
                  f"(AES-256-GCM, {res['sealing']['chunk_bytes'] >> 20} MiB chunks, median)", ""]
    e = res.get("end_to_end")
    if e:
        lines += [f"## End to end: {e['producers']} producers x {e['records_per_producer']:,} records "
                  "(checked complete)", "", "| contender | median records/s | logger_system is |", "|---|---:|---:|"]
        for name, s in e["contenders"].items():
            if "skipped" in s:
                lines.append(f"| {name} | skipped: {s['skipped']} | |")
                continue
            rate = s["median_records_per_s"]
            ratio = s.get("logger_system_ratio")
            lines.append(f"| {name} | {rate:,.0f} | {f'{ratio:.1f}x faster' if ratio else ''} |"
                         if rate else f"| {name} | INCOMPLETE | |")
    return "\n".join(lines) + "\n"


PARTS = ("ring", "calls", "sanitizer", "corpus", "sealing", "latency", "memory", "full_ring", "stalled",
         "scaling", "end_to_end")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m perf", description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="more rounds, all peers (a few minutes)")
    p.add_argument("--records", type=int, default=None, help="records per producer, end to end")
    p.add_argument("--only", default=None, metavar="PART[,PART...]",
                   help="run only these parts: " + ", ".join(PARTS) + " (e.g. --only calls,latency)")
    p.add_argument("--rounds", type=int, default=None, help="rounds of each part (default 3, 5 with --full; scaling 1)")
    p.add_argument("--scaling-total", type=int, default=200_000,
                   help="records in all for each producer count of the scaling part (default 200,000)")
    p.add_argument("--no-per-cpu", action="store_true", help="skip the figures pinned to each CPU")
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args(argv)
    only = set(PARTS) if a.only is None else {x.strip() for x in a.only.split(",") if x.strip()}
    unknown = only - set(PARTS)
    if unknown:
        p.error(f"--only: unknown part(s) {', '.join(sorted(unknown))}; use {', '.join(PARTS)}")
    if a.only is None and not a.full:
        only.discard("scaling")
    rounds = a.rounds or (5 if a.full else 3)
    records = a.records or (100_000 if a.full else 50_000)
    peers = ["stdlib", "faster_fifo", "picologging", "loguru"] if a.full else ["stdlib", "faster_fifo"]
    per_cpu_too = not a.no_per_cpu
    n = 50_000 if a.full else 20_000
    parts = {  # in the order they run
        "ring": lambda: {"ring": ring_bench(rounds),
                         **({"ring_per_cpu": per_cpu(lambda: ring_bench(rounds)["records_per_s"])}
                            if per_cpu_too else {})},
        "calls": lambda: {"call_cost": call_cost(rounds),
                          **({"call_cost_per_cpu": per_cpu(lambda: {k: v["median_us"] for k, v in call_cost(rounds).items()
                                                                    if isinstance(v, dict)})}
                             if per_cpu_too else {})},
        "sanitizer": lambda: {"sanitizer": sanitizer(rounds, n)},
        "corpus": lambda: {"secrets_corpus": secrets_corpus(rounds, 2, n)},
        "sealing": lambda: {"sealing": sealing(rounds)},
        "latency": lambda: {"latency": latency(200_000 if a.full else 50_000)},
        "memory": lambda: {"memory": memory()},
        "full_ring": lambda: {"full_ring": full_ring()},
        "stalled": lambda: {"stalled_writer": stalled_writer()},
        "scaling": lambda: scaling_figures(total=a.scaling_total, rounds=a.rounds or 1),
        "end_to_end": lambda: {"end_to_end": end_to_end(a.rounds or (rounds if a.full else 2), 2, records, peers)},
    }
    res = {
        "mode": ("full" if a.full else "quick") + ("" if a.only is None else f" (only {','.join(sorted(only))})"),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
    }
    for part in PARTS:
        if part in only:
            res.update(parts[part]())
    a.out.mkdir(parents=True, exist_ok=True)
    name = "latest" if a.only is None else "latest-only"  # a partial run keeps the full one's files
    (a.out / f"{name}.json").write_text(json.dumps(res, indent=2))
    md = render(res)
    if a.only is None:
        from perf.charts import write_charts

        charts = write_charts(res, a.out)
        md += "\n" + "".join(f"![{c.stem}]({c.name})\n" for c in charts)
    (a.out / f"{name}.md").write_text(md)
    print(md)
    return 0 if all(s.get("complete", True) for s in res.get("end_to_end", {}).get("contenders", {}).values()) else 1


if __name__ == "__main__":
    sys.exit(main())
