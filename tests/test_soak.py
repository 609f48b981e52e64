"""Soak: a steady load for a while, with the sanitizer on and sealed output.

LS_SOAK_SECONDS sets the duration (60 s when unset).  Every second the test
samples the RSS of the writer and of each producer, the records written and
the ring's counters.  It checks for growth, not for speed: memory after the
warm-up stays within RSS_GROWTH_LIMIT, the written rate in the last third of
the run is at least half that of the first third, and at the end every record
is in the files exactly once, readable with the key, and `verify` passes.

It is marked `soak` and left out of a plain pytest run (pyproject's addopts);
.ci/run runs it for ten minutes beside the suite:

    LS_SOAK_SECONDS=600 python -m pytest -q -s -m soak tests/test_soak.py
"""
from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict

import psutil
import pytest

from conftest import wait_for
from logger_system import connect
from logger_system.keys import keygen, load_keyring
from logger_system.files.reader import iter_records
from logger_system.ring import Ring
from logger_system.files.chain import log_files

pytestmark = [pytest.mark.soak,
              pytest.mark.skipif(not sys.platform.startswith("linux"),
                                 reason="needs fork and POSIX shared memory")]

SOAK_SECONDS = float(os.environ.get("LS_SOAK_SECONDS", "60"))
PRODUCERS = 3
RATE = 1500.0  # records per second per producer
RSS_GROWTH_LIMIT = 16 << 20
WARMUP = max(3.0, SOAK_SECONDS / 6)
MIB = 1 << 20


def _steady(ring: str, label: int, rate: float, stop, calls, misses) -> None:
    """Log at `rate` per second until stopped; calls[label] = calls made, misses[label] =
    calls that returned False.  One record in ten carries something the sanitizer removes."""
    log = connect(ring, name=f"soak-{label}")
    t0 = time.monotonic()
    i = missed = 0
    while not stop.value:
        if i % 10 == 0:
            ok = log.info("login %d for user%d@example.com from 10.1.%d.%d", i, label, i % 250,
                          label, p=label, i=i, password="hunter2")
        else:
            ok = log.info("request %d served in %d ms", i, i % 97, p=label, i=i, path="/api/items")
        missed += not ok
        i += 1
        if i % 50 == 0:
            calls[label], misses[label] = i, missed
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    calls[label], misses[label] = i, missed


def _rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def _cli() -> list[str]:
    exe = shutil.which("logger-system")
    return [exe] if exe else [sys.executable, "-m", "logger_system"]


@pytest.mark.slow
@pytest.mark.timeout(int(SOAK_SECONDS * 3) + 300)
def test_soak_steady_load_sealed_and_sanitized(ring_name, writer_factory, tmp_path, capsys):
    key = tmp_path / "writer.key"
    keygen(key)
    logs = tmp_path / "logs"
    w = writer_factory("--key", str(key), "--rotate-size", "4MiB", directory=logs,
                       plaintext=False).start()
    ctx = mp.get_context("fork")
    stop = ctx.RawValue("b", 0)
    calls = ctx.RawArray("q", PRODUCERS)
    misses = ctx.RawArray("q", PRODUCERS)
    producers = [ctx.Process(target=_steady, args=(ring_name, p, RATE, stop, calls, misses), daemon=True)
                 for p in range(PRODUCERS)]
    ring = Ring(ring_name, create=False)
    samples: list[dict] = []
    try:
        for p in producers:
            p.start()
        t0 = time.monotonic()
        while True:
            now = time.monotonic() - t0
            s = ring.stats()
            samples.append({"t": now, "written": s.written, "committed": s.committed,
                            "dropped": s.dropped, "used": s.used_bytes,
                            "writer": _rss(w.proc.pid), "producers": [_rss(p.pid) for p in producers]})
            assert w.proc.poll() is None, f"the writer died at {now:.0f}s: {w.stderr()}"
            dead = [p.pid for p in producers if not p.is_alive()]
            assert not dead, f"producers {dead} died at {now:.0f}s"
            if now >= SOAK_SECONDS:
                break
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t0 - now)))
        stop.value = 1
        for p in producers:
            p.join(60)
            assert p.exitcode == 0, f"producer {p.pid} exited {p.exitcode}"
        total = sum(calls)
        assert list(misses) == [0] * PRODUCERS, f"calls returned False with on_full=block: {list(misses)}"

        def drained():
            st = ring.stats()
            return st if st.written >= total and st.used_bytes == 0 else None
        try:
            final = wait_for(drained, timeout=120, interval=0.1, what=f"{total} records written")
        except AssertionError:
            raise AssertionError(f"not drained: {ring.stats()}; {w.stderr()}") from None
    finally:
        stop.value = 1
        for p in producers:
            if p.is_alive():
                p.kill()
                p.join(10)
        ring.close()
    assert w.stop() == 0, w.stderr()

    # memory: after the warm-up, no process grows by more than the limit
    steady = [x for x in samples if x["t"] >= WARMUP]
    assert len(steady) >= 3, f"too few samples after the {WARMUP:.0f}s warm-up: {len(samples)}"
    series = {"writer": [x["writer"] for x in steady]}
    for k in range(PRODUCERS):
        series[f"producer {k}"] = [x["producers"][k] for x in steady]
    for name, values in series.items():
        growth = max(values) - values[0]
        assert growth < RSS_GROWTH_LIMIT, (
            f"{name}: RSS grew by {growth / MIB:.1f} MiB after the {WARMUP:.0f}s warm-up "
            f"(limit {RSS_GROWTH_LIMIT / MIB:.0f} MiB): from {values[0] / MIB:.1f} to a peak of "
            f"{max(values) / MIB:.1f} MiB, {values[-1] / MIB:.1f} MiB at the end")

    # throughput: the last third keeps at least half the rate of the first third
    def rate(a: dict, b: dict) -> float:
        return (b["written"] - a["written"]) / (b["t"] - a["t"])
    span = samples[-1]["t"]
    first = [x for x in samples if x["t"] <= span / 3]
    last = [x for x in samples if x["t"] >= 2 * span / 3]
    r_first, r_last = rate(first[0], first[-1]), rate(last[0], last[-1])
    assert r_last >= 0.5 * r_first, (
        f"written rate decayed: {r_last:.0f}/s in the last third against {r_first:.0f}/s in the "
        f"first (must stay at least half)")

    # counters balance: nothing dropped, filtered or lost; the sanitizer did work
    assert final.committed == final.written == total, final
    assert final.dropped == final.abandoned == final.malformed == 0, final
    assert final.filtered == final.denied == final.sanitize_dropped == 0, final
    assert final.sanitized > 0, "the sanitizer replaced nothing"

    # every record, readable with the key, once and in order
    records = list(iter_records([logs], keyring=load_keyring(key)))
    assert len(records) == total
    by: dict[int, list[int]] = defaultdict(list)
    for r in records:
        by[r["fields"]["p"]].append(r["fields"]["i"])
    for k in range(PRODUCERS):
        assert by[k] == list(range(calls[k])), f"producer {k}: records missing, repeated or out of order"
    leaked = [r for r in records if "hunter2" in str(r["fields"]) or "@example.com" in r["msg"]]
    assert not leaked, f"{len(leaked)} records kept what the sanitizer must remove: {leaked[:2]}"
    files = log_files(logs)
    assert all(f.suffix == "lsx" for f in files) and len(files) >= 1
    r = subprocess.run([*_cli(), "verify", "--key", str(key), str(logs)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, f"verify failed: {r.stdout}{r.stderr}"

    peak_w = max(x["writer"] for x in samples)
    peak_p = max(max(x["producers"]) for x in samples)
    with capsys.disabled():
        print(f"\nsoak {span:.0f}s: {total} records in {len(files)} sealed files, written "
              f"{r_first:.0f}/s first third, {r_last:.0f}/s last third; peak RSS writer "
              f"{peak_w / MIB:.1f} MiB (growth after warm-up {(max(series['writer']) - series['writer'][0]) / MIB:+.1f}), "
              f"producers {peak_p / MIB:.1f} MiB; sanitized {final.sanitized}")
