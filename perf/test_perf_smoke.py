"""CI smoke run of the perf suite: it must work and every contender must be complete.

Speed is not asserted here (shared, noisy machines); `python -m perf` measures it.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from perf.__main__ import (call_cost, end_to_end, full_ring, latency, main, memory, render, ring_bench,
                           sanitizer, scaling_figures, sealing, secrets_corpus, stalled_writer)
from perf.workload import check_complete


@pytest.mark.slow
def test_suite_runs_small_and_every_contender_is_complete(tmp_path):
    res = {
        "mode": "smoke", "date": "now", "machine": {"cpus": 2, "platform": "x", "python": "3"},
        "ring": ring_bench(1, n=200_000),
        "call_cost": call_cost(1, calls=2_000),
        "sanitizer": sanitizer(1, 2_000),
        "secrets_corpus": secrets_corpus(1, 1, 2_000),
        "sealing": sealing(1, chunks=4),
        "latency": latency(2_000),
        "memory": memory(2_000),
        "full_ring": full_ring(2_000, 4),
        "stalled_writer": stalled_writer(40, block_timeout=0.2),
        "end_to_end": end_to_end(1, 2, 2_000, ["stdlib", "faster_fifo"]),
        **scaling_figures((1, 2), total=2_000, groups=((2, 2),)),
    }
    assert res["ring"]["records_per_s"] > 0
    for name, s in res["end_to_end"]["contenders"].items():
        assert s["complete"], f"{name} lost, duplicated or reordered records"
    assert res["latency"]["producer_info"]["p50_us"] <= res["latency"]["producer_info"]["max_us"]
    assert res["full_ring"]["drop"]["dropped"] == 2_000 and res["full_ring"]["block"]["dropped"] == 4
    stalled = res["stalled_writer"]
    assert stalled["block"]["blocked"] == 1 and stalled["block"]["dropped_stalled"] == 39
    assert stalled["block_in_event_loop"]["blocked"] == 0 and stalled["block_in_event_loop"]["dropped_in_loop"] == 40
    assert all(v["dropped"] == 40 for v in stalled.values())
    assert res["memory"]["producer"]["rss_after_mb"] > 0 and res["memory"]["writer"]["rss_peak_mb"] > 0
    for corpus in ("realistic", "dense"):
        assert res["sanitizer"][corpus]["ours_mb_s"] > 0
    for key in ("producer_info", "logging_handler", "logging_lean_logger", "logging_null_handler",
                "stdlib_queue_handler"):
        assert res["call_cost"][key]["median_us"] > 0, key
    corpus = res["secrets_corpus"]
    assert corpus["corpus"]["secret_records"] > 0 and corpus["corpus"]["negative_records"] > 0
    assert corpus["ours"]["mb_s"] > 0 and 0 <= corpus["ours"]["recall"] <= 1
    assert corpus["realistic"]["ours_mb_s"] > 0 and corpus["realistic"]["ratio"] > 0
    assert corpus["detect_secrets"]["mb_s"] > 0, "the peer is in the perf extra"
    md = render(res)
    assert "## Labeled corpus: logger_system against detect-secrets" in md
    assert "logger_system" in md and "stdlib" in md
    assert "## Targets" in md and "`logging` through Handler (after install())" in md
    assert "a handler that does nothing" in md
    for label in ("logger_system", "logger_system_pipeline_off", "stdlib"):
        for n in ("1", "2"):
            assert res["scaling"][label][n], f"{label}, {n} producers: incomplete"
    assert res["scaling"]["groups_2"]["2"], "groups: incomplete"
    cpu = res["scaling_cpu"]["contenders"]
    assert cpu["logger_system"]["2"]["writer_cpu_share"] >= 0  # present; a tiny run can end before the first reading
    assert len(cpu["groups_2"]["2"]["writer_cpu_share"]) == 2
    assert "## End to end by number of producers (records/s)" in md and "groups_2: writer on CPU" in md
    json.dumps(res)


@pytest.mark.slow
def test_groups_read_back_merged_by_cat(tmp_path):
    """One ring and writer per group: every producer's records complete in its group's directory,
    and `logger-system cat DIR DIR` prints them all, each producer's in order."""
    from logger_system.errors import RingError
    from logger_system.ring import Ring
    from perf.groups import run_groups

    res = run_groups(5, 400, 2, str(tmp_path))
    assert res["complete"] and res["merged_complete"], res.get("reason")
    assert res["records"] == 2_000 and res["dropped"] == 0
    # present, not positive: at this size a writer can have written its share before the first reading
    assert len(res["writers"]) == 2 and all(w["writer_cpu_s"] >= 0 for w in res["writers"])
    for ring in res["rings"]:  # removed on return
        with pytest.raises(RingError):
            Ring(ring, create=False)
    out = subprocess.run([sys.executable, "-m", "logger_system", "cat", "--key", res["key"],
                          *res["directories"]], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(records) == 2_000
    check = check_complete((r["msg"] for r in records), 5, 400)
    assert check["complete"], check


@pytest.mark.slow
def test_command_writes_json_and_markdown(tmp_path):
    assert main(["--records", "1000", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "latest.json").read_text())
    assert data["end_to_end"]["contenders"]["logger_system"]["complete"]
    assert (tmp_path / "latest.md").read_text().startswith("# perf results")
    for chart in ("end_to_end.png", "sanitizer.png", "latency.png"):
        assert (tmp_path / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", chart


@pytest.mark.slow
def test_writer_capacity_runs_small(tmp_path):
    from perf.writer_capacity import CONFIGS, PROFILE_ROWS, render, run

    res = run(3_000, rounds=1, profile_records=3_000)
    assert set(res["configs"]) == set(CONFIGS) and set(res["profile"]) == set(CONFIGS)
    for name, s in res["configs"].items():
        for key in ("records_per_s", "mb_per_s", "raw_mb_per_s", "share_of_raw", "bytes_per_record",
                    "writer_on_cpu_share", "records_per_s_uncontended", "share_of_raw_uncontended"):
            assert s[key] > 0, (name, key)
        (r,) = s["rounds"]
        assert r["records"] == 3_000 and r["dropped"] == 0 and r["malformed"] == 0 and r["output_bytes"] > 0
    for name, p in res["profile"].items():
        assert set(p["ns_per_record"]) == {*PROFILE_ROWS, "total"}, name
        assert p["ns_per_record"]["total"] > 0 and p["records_per_s"] > 0
        for stage in ("drain", "format", "write", "release"):
            assert p["ns_per_record"][stage] > 0, (name, stage)
    assert res["profile"]["sealed"]["ns_per_record"]["sanitize"] > 0
    assert "sanitize" not in res["profile"]["sanitizer_off"]["present"]
    assert "| sealed |" in render(res)
    json.dumps(res)
