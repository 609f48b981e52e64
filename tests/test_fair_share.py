"""One process floods the ring; others logging at a modest rate still get in.

A real writer drains a small ring (sanitizer on) while a flooding process logs large records
as fast as it can in drop mode.  Two victim processes log 200 records/s during the flood: one
in drop mode (it may lose at most a few percent), one in block mode (it loses nothing and its
worst wait stays far below its block_timeout).  The flooder is the one refused
(`dropped_over_share`), and `stats --json`'s `producers` list names each process with exactly
what it committed and dropped.  The figures are printed (run with -s to see them).
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import WriterProcess, cli, read_records, stats, wait_for
from perf.fair_share import CAPACITY, run_flood

pytestmark = pytest.mark.slow

FLOOD_SECONDS = 8.0


def _cli_out(*args: str) -> str:
    r = subprocess.run(cli(*args), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_a_flooding_process_is_refused_first_and_victims_still_get_in(ring_name, tmp_path):
    logs = tmp_path / "logs"
    w = WriterProcess(ring_name, logs, "--capacity", str(CAPACITY)).start()
    try:
        before = stats(ring_name)
        outs = run_flood(ring_name, FLOOD_SECONDS)
        flooded = outs.pop("flood")
        wait_for(lambda: stats(ring_name)["used_bytes"] == 0, what="the ring drained")
        report = json.loads(_cli_out("stats", "--ring", ring_name, "--json"))
        by_pid = {p["pid"]: p for p in report["producers"]}
        drop, block = outs["drop"], outs["block"]
        drop_loss = 1 - drop["accepted"] / drop["attempts"]
        print(f"\nflood: {flooded['attempts']:,} calls, {flooded['accepted']:,} in "
              f"({1 - flooded['accepted'] / flooded['attempts']:.1%} refused); "
              f"drop victim: {drop['attempts']} calls, lost {drop_loss:.2%}, worst call "
              f"{drop['worst_wait'] * 1e3:.2f} ms; block victim: {block['attempts']} calls, lost "
              f"{block['attempts'] - block['accepted']}, worst wait {block['worst_wait'] * 1e3:.2f} ms, "
              f"p99 {block['p99_wait'] * 1e3:.2f} ms")

        # the flood filled the ring, and it was the flooder that was refused for its share
        flooder = by_pid[flooded["pid"]]
        assert flooded["accepted"] < flooded["attempts"]
        assert flooder["dropped_over_share"] > 0, report["producers"]
        assert report["dropped_over_share"] - before["dropped_over_share"] == flooder["dropped_over_share"]
        # victims: at most a few percent lost in drop mode, nothing lost in block mode, a bounded wait
        assert drop_loss <= 0.05, outs
        assert block["accepted"] == block["attempts"], outs
        assert block["worst_wait"] < 1.0, outs
        # who filled it: each process's own counts, exactly what its calls returned
        for mine in (flooded, drop, block):
            entry = by_pid[mine["pid"]]
            assert entry["committed"] == mine["accepted"], (entry, mine)
            assert entry["dropped"] == mine["attempts"] - mine["accepted"], (entry, mine)
            assert entry["held"] == 0 and not entry["alive"]
        assert report["producers"][0]["pid"] == flooded["pid"]  # most bytes first

        assert w.stop() == 0, w.stderr()
        s = stats(ring_name)
        committed = s["committed"] - before["committed"]
        assert committed == sum(m["accepted"] for m in (flooded, drop, block)) + (
            s["warnings"] - before["warnings"])
        # the accounting identity: every committed record was written (nothing filtered here)
        assert s["written"] == s["committed"], s
        records = read_records(logs)
        for mode, mine in outs.items():
            assert sum(r["logger"] == f"victim.{mode}" for r in records) == mine["accepted"]
    finally:
        if w.proc and w.proc.poll() is None:
            w.kill()


def test_producers_list_names_each_process_with_its_own_counts(ring_name, tmp_path):
    """Three processes log known counts into a ring with no writer; `stats --json` lists each,
    with committed, dropped and bytes as they did it, and the human view names the top ones."""
    from logger_system.ring import Ring

    ring = Ring(ring_name, capacity=1 << 16, max_record=1024)
    try:
        code = textwrap.dedent("""
            import sys, logger_system
            log = logger_system.connect(sys.argv[1], on_full="drop")
            n = int(sys.argv[2])
            print(sum(log.info("p" * 100) for _ in range(n)))
        """)
        counts = {}
        for n in (10, 40, 1000):  # the last one fills the 64 KiB ring and drops the rest
            r = subprocess.run([sys.executable, "-c", code, ring_name, str(n)], capture_output=True,
                               text=True, timeout=60)
            assert r.returncode == 0, r.stderr
            counts[n] = int(r.stdout)
        report = json.loads(_cli_out("stats", "--ring", ring_name, "--json"))
        rows = report["producers"]
        assert len(rows) == 3
        assert [r["committed"] + r["dropped"] for r in rows] == [1000, 40, 10]  # most bytes first
        for row, n in zip(rows, (1000, 40, 10)):
            assert row["committed"] == counts[n]
            assert row["dropped"] == n - counts[n]
            assert row["bytes"] == row["committed"] * 144  # 40-byte header + 100 + "root", aligned
            assert row["held"] == row["bytes"]  # no writer: all still in the ring
            assert row["alive"] is False and row["last_call"] <= time.time()
        assert sum(r["committed"] for r in rows) == report["committed"]
        text = _cli_out("stats", "--ring", ring_name)
        assert "producers (top 3 of 3 by bytes" in text
        assert f"pid {rows[0]['pid']}" in text
    finally:
        ring.close()
        ring.unlink()
