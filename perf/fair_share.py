"""Fair share under a flood, and what the per-process account costs the producer's call.

`python -m perf.fair_share` runs, side by side in one run:
- the flood: a real writer drains a 1 MiB ring while one process logs 1,500-byte records as
  fast as it can (drop mode) and two victims log 200 records/s each (one in drop mode, one
  in block mode).  Once with fair share, once with the flooder unaccounted (its process has
  no entry in the ring's process table, so it is never refused for its share: the ring as it
  was before).  Reported: the victims' loss, worst and p99 call times, the flooder's refusals.
- the hot path: claim + copy + commit + drain + release in C (lsr_bench), and one
  `Producer.info` call, each with the account kept and without, rounds interleaved; medians.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

from perf.procs import stop

CAPACITY = 1 << 20

# the flooding process: 1,500-byte records, drop mode, as fast as it can; with
# LS_UNACCOUNTED=1 its process keeps no entry in the process table
FLOODER = textwrap.dedent("""
    import json, os, sys, time
    import logger_system
    if os.environ.get("LS_UNACCOUNTED") == "1":
        from logger_system._native import lib
        lib.lsr_test_accounting(0)
    ring, seconds = sys.argv[1], float(sys.argv[2])
    log = logger_system.connect(ring, name="flood", on_full="drop")
    filler = ("flood filler words " * 80)[:1500]
    attempts = accepted = 0
    deadline = time.monotonic() + seconds
    print("started", flush=True)
    while time.monotonic() < deadline:
        for _ in range(200):
            accepted += log.info(filler)
        attempts += 200
    print(json.dumps({"attempts": attempts, "accepted": accepted}), flush=True)
""")

# a victim: `rate` calls a second for `seconds` in mode drop or block; each call timed
VICTIM = textwrap.dedent("""
    import json, sys, time
    import logger_system
    ring, mode, seconds, rate = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    log = logger_system.connect(ring, name="victim." + mode, on_full=mode, block_timeout=2.0)
    waits, accepted, i = [], 0, 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        i += 1
        start = time.perf_counter()
        accepted += log.info("victim %s call %d", mode, i, i=i)
        waits.append(time.perf_counter() - start)
        pause = t0 + i / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    waits.sort()
    print(json.dumps({"attempts": i, "accepted": accepted, "worst_wait": waits[-1],
                      "p99_wait": waits[int(len(waits) * 0.99)]}), flush=True)
""")


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def run_flood(ring: str, seconds: float, *, unaccounted: bool = False, rate: int = 200) -> dict:
    """The flooder and the two victims against `ring`, whose writer is running: what each
    reported, with its pid.  The victims start once the ring has refused something."""
    from logger_system.ring import Ring

    def dropped() -> int:
        r = Ring(ring, create=False)
        try:
            return r.stats().dropped
        finally:
            r.close()

    env = {**os.environ, "LS_UNACCOUNTED": "1" if unaccounted else "0"}
    procs: list[subprocess.Popen] = []
    try:
        before = dropped()
        flood = subprocess.Popen([sys.executable, "-c", FLOODER, ring, str(seconds)], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(flood)
        if flood.stdout.readline().strip() != "started":
            raise RuntimeError(f"the flooder did not start: {flood.communicate(timeout=30)[1][-2000:]}")
        deadline = time.monotonic() + 20
        while dropped() == before:
            if time.monotonic() > deadline:
                raise RuntimeError("the flood never filled the ring")
            time.sleep(0.02)
        victims = {mode: subprocess.Popen([sys.executable, "-c", VICTIM, ring, mode, str(max(1.0, seconds - 3)),
                                           str(rate)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for mode in ("drop", "block")}
        procs.extend(victims.values())
        out: dict = {}
        for name, p in (*victims.items(), ("flood", flood)):
            stdout, stderr = p.communicate(timeout=120)
            if p.returncode != 0:
                raise RuntimeError(f"{name} failed: {stderr[-2000:]}")
            out[name] = {**last_json(stdout), "pid": p.pid}
        return out
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)


def summary(out: dict) -> dict:
    drop, block, flood = out["drop"], out["block"], out["flood"]
    return {
        "flood_refused": round(1 - flood["accepted"] / flood["attempts"], 4),
        "drop_victim_loss": round(1 - drop["accepted"] / drop["attempts"], 4),
        "drop_victim_worst_ms": round(drop["worst_wait"] * 1e3, 2),
        "block_victim_lost": block["attempts"] - block["accepted"],
        "block_victim_worst_ms": round(block["worst_wait"] * 1e3, 2),
        "block_victim_p99_ms": round(block["p99_wait"] * 1e3, 2),
    }


def flood(seconds: float = 8.0) -> dict:
    """The flood with fair share and without, each against its own writer and ring."""
    results = {}
    for label, unaccounted in (("fair_share", False), ("unaccounted_flooder", True)):
        ring = f"perf-flood-{uuid.uuid4().hex[:8]}"
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-P", "-m", "logger_system", "writer", "--ring", ring, "--dir",
                   str(Path(tmp) / "logs"), "--plaintext", "--capacity", str(CAPACITY)]
            writer = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True)
            try:
                _wait_writer(ring, writer)
                results[label] = summary(run_flood(ring, seconds, unaccounted=unaccounted))
            finally:
                stop(writer)
                from logger_system.ring import unlink
                unlink(ring)
    return results


def _wait_writer(ring: str, writer: subprocess.Popen) -> None:
    from logger_system.ring import writer_attached

    deadline = time.monotonic() + 30
    while not writer_attached(ring, writer.pid):
        if writer.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the writer did not attach: {writer.stderr.read()[-2000:]}")
        time.sleep(0.02)


def hot_path(rounds: int = 9, n: int = 2_000_000, calls: int = 200_000) -> dict:
    """ns per record (C, lsr_bench) and per Producer.info call, with the per-process account
    kept and without; rounds interleaved, medians."""
    import logger_system
    from logger_system._native import lib
    from logger_system.ring import Ring

    c = {True: [], False: []}
    py = {True: [], False: []}
    try:
        for k in range(rounds):
            for on in ((True, False) if k % 2 else (False, True)):  # neither always goes first
                lib.lsr_test_accounting(int(on))
                name = f"perf-acct-{uuid.uuid4().hex[:8]}"
                ring = Ring(name, capacity=16 << 20)
                try:
                    c[on].append(lib.lsr_bench(ring.ptr, n, 100) / n * 1e9)
                finally:
                    ring.close()
                    ring.unlink()
                name = f"perf-acct-{uuid.uuid4().hex[:8]}"
                log = logger_system.connect(name, capacity=64 << 20, on_full="drop")
                try:
                    info, msg = log.info, "request %s took %d ms"
                    t0 = time.perf_counter()
                    for i in range(calls):
                        info(msg, "GET /api", i)
                    py[on].append((time.perf_counter() - t0) / calls * 1e9)
                finally:
                    log.ring.close()
                    log.ring.unlink()
    finally:
        lib.lsr_test_accounting(1)

    def med(xs: list) -> float:
        return round(statistics.median(xs), 1)

    return {"c_ns_per_record": {"accounted": med(c[True]), "unaccounted": med(c[False]),
                                "ratio": round(statistics.median(c[True]) / statistics.median(c[False]), 3)},
            "producer_info_ns": {"accounted": med(py[True]), "unaccounted": med(py[False]),
                                 "ratio": round(statistics.median(py[True]) / statistics.median(py[False]), 3)},
            "rounds": rounds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m perf.fair_share", description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="length of each flood")
    ap.add_argument("--rounds", type=int, default=9, help="hot-path rounds, each way")
    args = ap.parse_args(argv)
    print(json.dumps({"flood": flood(args.seconds), "hot_path": hot_path(args.rounds)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
