"""Writer capacity: how fast one writer empties a full ring, against the disk's raw rate.

    python -m perf.writer_capacity [--records 2000000] [--rounds 3] [--json OUT]
                                   [--profile-records N] [--profile-rounds N] [--py-spy RAW]
                                   [--only sealed,plaintext,sanitizer_off]

A ring large enough for every record is made by a writer that is then stopped
(SIGSTOP, after it said `started`: its start-up is over before the clock runs).
Producer processes (the real `logger_system.connect` API) fill the ring with
the workload's 7-argument message (perf/workload.py) while nothing drains it.
The writer is then continued (SIGCONT) and the drain timed from that instant
to the writer's own timestamp of the release that made `written` equal the
records (`released_ns`, CLOCK_MONOTONIC, in the ring's totals).  The writer's
steady rate from its own clock (first release seen to the last) is reported
too, and from /proc/PID/schedstat the share of the drain the writer was on a
CPU and the share it was runnable but waiting for one (other work on a shared
machine); the rate without that wait is what the writer does with a CPU of
its own (its disk waits still counted).

In the same round the files the writer made are written again, in the same
directory, in pieces of the writer's batch size, each file fsync'ed when it
is complete as the writer does at rotation and close (its fsync=interval
fires only when it is idle, never during a flat-out drain): that is the raw
write+fsync rate of the same bytes, and the writer's MB/s is given as a share
of it.  (The writer's last file is fsync'ed at its stop, after the clock:
`stop_seconds` says what the stop took.)

Three configurations, interleaved round by round (A B C A B C ...): sealed
(the default: sanitizer on, AES-256-GCM with a key), plaintext (sanitizer on),
and sanitizer off (plaintext, `--no-sanitize`, `sanitize = false` in [writer]).

The per-stage profile runs a real `Writer` in this process over a ring filled
the same way, each of its stage objects, its drain, seal, write, fsync and
release timed by wrapping them on the instance (the writer's code is not
changed): nanoseconds per record for each.  `--py-spy RAW` also records the
sealed writer process during one drain with `py-spy record --native` and
reports its top frames.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from perf.workload import MESSAGE, args_for, format_message

CONFIGS: dict[str, tuple[str, ...]] = {
    "sealed": (),  # the default pipeline; the key is added per run
    "plaintext": ("--plaintext",),
    "sanitizer_off": ("--plaintext", "--no-sanitize"),
}
PRODUCERS = 2
BATCH_RECORDS = 8192  # WriterConfig.batch_records, the writer's default
BATCH_BYTES = 4 << 20  # WriterConfig.batch_bytes
_FORK = multiprocessing.get_context("fork")


def _progress(text: str) -> None:
    print(f"  .. {text}", file=sys.stderr, flush=True)


def _name(producer: int) -> str:
    return f"perf.p{producer}"


def ring_bytes_needed(n_records: int, producers: int = PRODUCERS) -> int:
    """An upper bound on the ring bytes the workload's records take (native/ring.h: a 40-byte
    header, the message, the logger name, no fields, padded to 8)."""
    per = n_records // producers + 1
    total = 0
    for p in range(producers):
        sample = [*range(min(per, 64)), per - 1]
        longest = max(len(format_message(i, p).encode()) for i in sample)
        total += per * ((40 + longest + len(_name(p)) + 7) // 8 * 8)
    return total


def ring_capacity(n_records: int) -> int:
    """The smallest ring (a power of two) that holds every record without reaching the fair
    share's pressure point (less than a quarter free), or ValueError."""
    from logger_system._native import lib

    need = ring_bytes_needed(n_records)
    most = 1 << 30  # LSR_MAX_CAPACITY (native/ring.h)
    cap = lib.LSR_MIN_CAPACITY
    while cap * 3 // 4 < need * 1.02:
        cap *= 2
    if cap > most:
        raise ValueError(f"{n_records} records take about {need >> 20} MiB: more than one ring holds "
                         f"below its fair-share point ({most * 3 // 4 >> 20} MiB)")
    return cap


def _fill_one(ring: str, producer: int, n: int) -> None:
    import logger_system

    log = logger_system.connect(ring, name=_name(producer))
    info = log.info
    for i in range(n):
        info(MESSAGE, *args_for(i, producer))
    log.close()


def fill(ring: str, n_records: int, producers: int = PRODUCERS) -> float:
    """Fill the ring with n_records from `producers` processes; the seconds it took."""
    share = [n_records // producers + (1 if p < n_records % producers else 0) for p in range(producers)]
    procs = [_FORK.Process(target=_fill_one, args=(ring, p, share[p]), daemon=True) for p in range(producers)]
    t0 = time.perf_counter()
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(600)
        if proc.exitcode != 0:
            raise RuntimeError(f"producer exited with {proc.exitcode}")
    return time.perf_counter() - t0


def _writer_args(config: str, key: Path) -> tuple[str, ...]:
    return CONFIGS[config] or ("--key", str(key))


def start_writer(ring: str, directory: Path, capacity: int, args: tuple[str, ...], err: Path) -> subprocess.Popen:
    """A writer subprocess that creates the ring; returns once it said `started` (its files,
    stages and ring are ready and it is in its drain loop)."""
    with open(err, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "logger_system", "writer", "--ring", ring,
                                 "--dir", str(directory), "--capacity", str(capacity), *args],
                                stdout=subprocess.DEVNULL, stderr=f)
    deadline = time.monotonic() + 30
    while b'"writer": "started"' not in err.read_bytes():
        if proc.poll() is not None:
            raise RuntimeError(f"writer exited with {proc.returncode}: {err.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("writer did not start")
        time.sleep(0.01)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _sched(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of a process's main thread so
    far (/proc/PID/schedstat): what is left of a span is time it was blocked (disk, sleep)."""
    with open(f"/proc/{pid}/schedstat") as f:
        run_ns, wait_ns, _ = f.read().split()
    return int(run_ns) / 1e9, int(wait_ns) / 1e9


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file())


def raw_rate(files: list[Path], chunk: int) -> dict:
    """Write the bytes of `files` again, each into a new file of the same directory, in
    pieces of `chunk` bytes, fsync'ed and closed when complete; only writing is timed."""
    seconds = 0.0
    total = 0
    for i, src in enumerate(files):
        data = memoryview(src.read_bytes())
        dst = src.with_name(f"raw-copy-{i}")
        t0 = time.perf_counter()
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            pos = 0
            while pos < len(data):
                pos += os.write(fd, data[pos:pos + chunk])
            os.fsync(fd)
        finally:
            os.close(fd)
        seconds += time.perf_counter() - t0
        total += len(data)
        dst.unlink()
    return {"bytes": total, "seconds": seconds, "mb_per_s": total / seconds / 1e6, "chunk_bytes": chunk}


def drain_round(config: str, n_records: int, workdir: Path, key: Path, *, py_spy: Path | None = None) -> dict:
    """One configuration: fill with the writer stopped, then time its drain; then the raw rate."""
    from logger_system.ring import Ring, unlink

    ring = f"perf-cap-{uuid.uuid4().hex[:10]}"
    directory = workdir / ring
    capacity = ring_capacity(n_records)
    writer = start_writer(ring, directory, capacity, _writer_args(config, key), workdir / f"{ring}.err")
    watcher = None
    spy = None
    try:
        writer.send_signal(signal.SIGSTOP)
        watcher = Ring(ring, create=False)
        fill_s = fill(ring, n_records)
        st = watcher.stats()
        if st.committed != n_records or st.dropped or st.written:
            raise RuntimeError(f"ring not filled as meant: committed={st.committed} dropped={st.dropped} "
                               f"written={st.written}")
        used = st.used_bytes
        if py_spy is not None:
            spy = subprocess.Popen(["py-spy", "record", "--native", "--pid", str(writer.pid), "--rate", "250",
                                    "--format", "raw", "--output", str(py_spy)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # let it attach
        first = None
        sched0 = _sched(writer.pid)
        t0 = time.monotonic_ns()
        writer.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 600
        while True:
            st = watcher.stats()
            if first is None and st.written:
                first = (st.written, st.released_ns)
            if st.written >= n_records:
                break
            if writer.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the writer did not drain the ring: written={st.written}")
            # the end is the writer's own timestamp, so polling can be slow: a stats() costs
            # ~40 us of a CPU the writer may need on a 2-core machine
            time.sleep(0.005)
        on_cpu, waiting = (b - a for a, b in zip(sched0, _sched(writer.pid)))
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(120)
        seconds = (st.released_ns - t0) / 1e9
        steady = ((st.written - first[0]) / ((st.released_ns - first[1]) / 1e9)
                  if st.released_ns > first[1] else None)
        t_stop = time.perf_counter()
        _stop(writer)  # the last file's final chunk and fsync, then the writer exits
        stop_s = time.perf_counter() - t_stop
        files = _files(directory)
        out_bytes = sum(p.stat().st_size for p in files)
        batches = max(math.ceil(n_records / BATCH_RECORDS), math.ceil(used / BATCH_BYTES))
        raw = raw_rate(files, max(1, out_bytes // batches))
        mb_s = out_bytes / seconds / 1e6
        return {
            "config": config, "records": n_records, "seconds": seconds, "records_per_s": n_records / seconds,
            "mb_per_s": mb_s, "steady_records_per_s": steady, "output_bytes": out_bytes,
            "bytes_per_record": out_bytes / n_records, "files": len(files), "ring_bytes": used,
            "ring_capacity": capacity, "fill_seconds": fill_s, "raw": raw, "share_of_raw": mb_s / raw["mb_per_s"],
            "malformed": st.malformed, "dropped": st.dropped, "writer_on_cpu_share": on_cpu / seconds,
            "writer_runqueue_share": waiting / seconds, "stop_seconds": stop_s,
            # the drain less the time the writer was runnable but had no CPU (other work on the
            # machine): its rate with a CPU of its own, disk waits still in
            "records_per_s_uncontended": n_records / (seconds - waiting),
            "share_of_raw_uncontended": out_bytes / (seconds - waiting) / 1e6 / raw["mb_per_s"],
        }
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
            spy.wait()
        _stop(writer)
        if watcher is not None:
            watcher.close()
        unlink(ring)
        shutil.rmtree(directory, ignore_errors=True)


# ---- per-stage profile: a real Writer in this process, its parts timed on the instance ----

_STAGE_NAMES = {"LevelFilter": "level", "AccessFilter": "access_filter", "Sanitize": "sanitize",
                "SkipWritten": "skip_written", "FormatJsonl": "format"}
PROFILE_ROWS = ("drain", "check_header", "access_filter", "level", "sanitize", "skip_written", "format", "seal",
                "write", "fsync_close", "open_file", "release", "other")


class _Clock:
    """Exclusive time per label: a wrapped call's time less that of the wrapped calls it made."""

    def __init__(self) -> None:
        self.ns: Counter = Counter()
        self.calls: Counter = Counter()
        self._inner: list[int] = []

    def wrap(self, label: str, fn):
        ns, calls, inner, clock = self.ns, self.calls, self._inner, time.perf_counter_ns

        def timed(*args, **kwargs):
            inner.append(0)
            t0 = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = clock() - t0
                ns[label] += spent - inner.pop()
                calls[label] += 1
                if inner:
                    inner[-1] += spent
        return timed


def stage_profile(config: str, n_records: int, workdir: Path, key: Path) -> dict:
    """ns per record of each part of the writer's batch path, for one configuration."""
    from logger_system.config import build
    from logger_system.ring import Ring, unlink
    from logger_system.writer import Writer

    ring = f"perf-cap-{uuid.uuid4().hex[:10]}"
    directory = workdir / ring
    capacity = ring_capacity(n_records)
    args = _writer_args(config, key)
    maker = Ring(ring, capacity=capacity)  # made here, filled by the producers, then the writer's
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    writer = None
    try:
        fill(ring, n_records)
        cfg = build(ring=ring, dir=str(directory), capacity=capacity, plaintext=True if "--plaintext" in args else None,
                    key=str(key) if "--key" in args else None,
                    sanitize=False if "--no-sanitize" in args else None)
        writer = Writer(cfg)
        clock = _Clock()
        c = writer.consumer
        c.drain = clock.wrap("drain", c.drain)
        c.release = clock.wrap("release", c.release)
        c.check = clock.wrap("check_header", c.check)
        f = writer.files
        f.format.piece = clock.wrap("seal", f.format.piece)
        f.format.end = clock.wrap("seal", f.format.end)
        f._write_all = clock.wrap("write", f._write_all)
        f._close_fd = clock.wrap("fsync_close", f._close_fd)
        if hasattr(f, "_close_behind"):  # handing a finished file to the close-behind thread
            f._close_behind = clock.wrap("fsync_close", f._close_behind)
        f._open = clock.wrap("open_file", f._open)  # a new file: its header, the directory's fsync, retention
        writer.stages = [clock.wrap(_STAGE_NAMES.get(type(s).__name__, type(s).__name__), s)
                         for s in writer.stages]
        drain_once = clock.wrap("total", writer.drain_once)
        cursor = c.head()
        t0 = time.perf_counter()
        while maker.stats().written < n_records:
            new, _ = drain_once(cursor)
            if new == cursor:
                raise RuntimeError("the in-process writer stopped draining before every record was written")
            cursor = new
        clock.wrap("total", f.close)()  # the last file's final chunk (sealed) and fsync, as at a stop
        wall = time.perf_counter() - t0
        out_bytes = sum(p.stat().st_size for p in _files(directory))
    finally:
        if writer is not None:
            writer.close()
        for s, h in saved.items():
            signal.signal(s, h)
        maker.close()
        unlink(ring)
        shutil.rmtree(directory, ignore_errors=True)
    ns = clock.ns
    # every part is timed inside "total" (drain_once and the final close); what is left of
    # "total" is the writer's own bookkeeping between the parts
    per = {k: ns.get(k, 0) / n_records for k in PROFILE_ROWS if k != "other"}
    per["other"] = ns["total"] / n_records
    per["total"] = sum(ns.values()) / n_records
    return {"config": config, "records": n_records, "ns_per_record": per,
            "present": sorted(k for k in PROFILE_ROWS if k in ns or k == "other"),
            "calls": dict(clock.calls),
            "batches": clock.calls["drain"], "records_per_s": n_records / wall, "output_bytes": out_bytes}


# ---- py-spy ----

_LINE = re.compile(r"\(([^()]*):\d+\)$")
_IDLE = ("sleep", "select", "epoll_wait", "nanosleep", "clock_nanosleep")


def summarize_collapsed(path: Path, top: int = 15) -> dict:
    """Top frames of a py-spy raw (collapsed) profile: by self samples (the innermost frame)
    and by inclusive samples (a frame anywhere on the stack, counted once per stack)."""
    own: Counter = Counter()
    incl: Counter = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_LINE.sub(r"(\1)", fr) for fr in stack.split(";")]  # by function, not by line
        total += n
        own[frames[-1]] += n
        for fr in set(frames):
            incl[fr] += n
    idle = sum(n for fr, n in own.items() if any(w in fr for w in _IDLE))

    # frames on (nearly) every stack say nothing: the interpreter's entry, main, Writer.run;
    # and bare addresses (libc's entry) are no function to name
    for fr in [fr for fr, n in incl.items() if n >= 0.98 * total or fr.startswith("0x")]:
        del incl[fr]

    def rows(c: Counter) -> list[dict]:
        return [{"frame": fr, "share": n / total} for fr, n in c.most_common(top)]
    return {"samples": total, "idle_share": idle / total if total else 0.0,
            "self": rows(own) if total else [], "inclusive": rows(incl) if total else []}


# ---- the run ----

def run(n_records: int = 2_000_000, rounds: int = 3, profile_records: int | None = None,
        py_spy: Path | None = None, configs: tuple[str, ...] = tuple(CONFIGS),
        profile_rounds: int | None = None) -> dict:
    from logger_system.keys import keygen

    profile_rounds = rounds if profile_rounds is None else profile_rounds
    res: dict = {"records": n_records, "rounds": rounds, "producers": PRODUCERS,
                 "ring_capacity": ring_capacity(n_records), "configs": {}, "profile": {}}
    with tempfile.TemporaryDirectory(prefix="perf-cap-", dir=os.environ.get("PERF_CAP_DIR")) as tmp:
        workdir = Path(tmp)
        key = workdir / "writer.key"
        keygen(key)
        res["dir"] = str(workdir)
        runs: dict[str, list[dict]] = {c: [] for c in configs}
        for r in range(rounds):
            for c in configs:  # interleaved: A B C A B C
                _progress(f"writer capacity: {c}, round {r + 1}/{rounds}")
                runs[c].append(drain_round(c, n_records, workdir, key))
        for c, rs in runs.items():
            med = statistics.median
            res["configs"][c] = {
                "records_per_s": med(x["records_per_s"] for x in rs),
                "mb_per_s": med(x["mb_per_s"] for x in rs),
                "raw_mb_per_s": med(x["raw"]["mb_per_s"] for x in rs),
                "share_of_raw": med(x["share_of_raw"] for x in rs),
                "steady_records_per_s": (med(steady) if (steady := [x["steady_records_per_s"] for x in rs
                                                                    if x["steady_records_per_s"]]) else None),
                "bytes_per_record": med(x["bytes_per_record"] for x in rs),
                "writer_on_cpu_share": med(x["writer_on_cpu_share"] for x in rs),
                "writer_runqueue_share": med(x["writer_runqueue_share"] for x in rs),
                "records_per_s_uncontended": med(x["records_per_s_uncontended"] for x in rs),
                "share_of_raw_uncontended": med(x["share_of_raw_uncontended"] for x in rs),
                "rounds": rs,
            }
        n_prof = profile_records or n_records
        profiles: dict[str, list[dict]] = {c: [] for c in configs}
        for r in range(profile_rounds):
            for c in configs:  # interleaved too
                _progress(f"writer capacity: stage profile, {c}, round {r + 1}/{profile_rounds}")
                profiles[c].append(stage_profile(c, n_prof, workdir, key))
        for c, ps in profiles.items():
            if not ps:
                continue
            res["profile"][c] = {
                "records": n_prof, "present": ps[0]["present"],
                "ns_per_record": {k: statistics.median(p["ns_per_record"][k] for p in ps)
                                  for k in ps[0]["ns_per_record"]},
                "records_per_s": statistics.median(p["records_per_s"] for p in ps),
                "batches": ps[0]["batches"], "rounds": ps,
            }
        if py_spy is not None and "sealed" in configs:
            _progress("writer capacity: py-spy record --native of the sealed writer")
            spied = drain_round("sealed", n_records, workdir, key, py_spy=py_spy)
            res["py_spy"] = {"raw_profile": str(py_spy), "records_per_s_under_py_spy": spied["records_per_s"],
                             **summarize_collapsed(py_spy)}
    return res


def render(res: dict) -> str:
    lines = [f"writer capacity: {res['records']:,} records from {res['producers']} producers, "
             f"ring {res['ring_capacity'] >> 20} MiB, medians of {res['rounds']} interleaved rounds", "",
             "| configuration | records/s | MB/s (output) | raw write+fsync MB/s | share of raw | bytes/record "
             "| writer on CPU / waiting for one (share of the drain) | records/s, share of raw, not counting "
             "the wait for a CPU |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for c, s in res["configs"].items():
        lines.append(f"| {c} | {s['records_per_s']:,.0f} | {s['mb_per_s']:.1f} | {s['raw_mb_per_s']:.1f} | "
                     f"{s['share_of_raw']:.3f} | {s['bytes_per_record']:.0f} | "
                     f"{s['writer_on_cpu_share']:.2f} / {s['writer_runqueue_share']:.2f} | "
                     f"{s['records_per_s_uncontended']:,.0f}, {s['share_of_raw_uncontended']:.3f} |")
    if res["profile"]:
        cs = list(res["profile"])
        lines += ["", "| ns per record | " + " | ".join(cs) + " |", "|---|" + "---:|" * len(cs)]
        for row in (*PROFILE_ROWS, "total"):
            cells = []
            for c in cs:
                p = res["profile"][c]
                cells.append(f"{p['ns_per_record'][row]:.0f}" if row in p["present"] or row == "total" else "-")
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        lines.append("| records/s in process | " + " | ".join(
            f"{res['profile'][c]['records_per_s']:,.0f}" for c in cs) + " |")
    spy = res.get("py_spy")
    if spy:
        lines += ["", f"py-spy (sealed, {spy['samples']} samples, idle {spy['idle_share']:.1%}; "
                  f"{spy['records_per_s_under_py_spy']:,.0f} records/s while sampled), top self frames:"]
        lines += [f"  {r['share']:6.1%}  {r['frame']}" for r in spy["self"]]
        lines += ["top inclusive frames:"]
        lines += [f"  {r['share']:6.1%}  {r['frame']}" for r in spy["inclusive"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m perf.writer_capacity", description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=2_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--profile-records", type=int, default=None,
                    help="records for the per-stage profile (default: --records)")
    ap.add_argument("--profile-rounds", type=int, default=None,
                    help="rounds of the per-stage profile, medians per stage (default: --rounds)")
    ap.add_argument("--py-spy", type=Path, default=None, metavar="RAW",
                    help="also record the sealed writer with py-spy --native into this file")
    ap.add_argument("--only", default=None, help="comma-separated configurations (default: all)")
    a = ap.parse_args(argv)
    configs = tuple(a.only.split(",")) if a.only else tuple(CONFIGS)
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        ap.error(f"unknown configuration(s) {sorted(unknown)}: use {', '.join(CONFIGS)}")
    try:
        ring_capacity(a.records)
    except ValueError as exc:
        ap.error(str(exc))
    res = run(a.records, a.rounds, a.profile_records, a.py_spy, configs, a.profile_rounds)
    print(render(res))
    if a.json is not None:
        a.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
