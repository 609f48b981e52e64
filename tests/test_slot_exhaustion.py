"""1,100 live threads against a ring of 1,024 producer slots: no call raises, every record is
committed or counted as dropped (dropped_no_slot), through Producer and through the stdlib
Handler alike, with a writer draining; nothing of a refused record is printed; and the
accounting identity holds once the threads are gone."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from conftest import WriterProcess, read_records, stats, wait_for

pytestmark = pytest.mark.slow

THREADS = 1100

# in a child process, so the 1,100 threads and their slots go with it
CHILD = textwrap.dedent("""
    import json, logging, sys, threading
    import logger_system

    ring, threads, via = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    log = logger_system.connect(ring, name="many")
    logger = logging.getLogger("many")
    logger.addHandler(logger_system.Handler(ring))
    logger.propagate = False
    logger.setLevel(logging.INFO)
    started, go = threading.Barrier(threads + 1), threading.Event()
    raised, results = [], []

    def worker(k):
        try:
            started.wait(60)  # every thread alive before any logs: they hold their slots until the end
            go.wait(60)
            for j in range(3):
                if via == "producer":
                    results.append(log.info("thread %d call %d secret-arg-%d", k, j, k, k=k, j=j))
                else:
                    logger.info("thread %d call %d secret-arg-%d", k, j, k, extra={"k": k, "j": j})
                    results.append(None)
            go2.wait(60)
        except BaseException as exc:  # any raise is the failure this test looks for
            raised.append(repr(exc))

    go2 = threading.Event()
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    started.wait(60)
    go.set()
    # all calls made while every thread is still alive (so no slot is given back)
    import time
    t0 = time.monotonic()
    while len(results) < threads * 3 and time.monotonic() - t0 < 120:
        time.sleep(0.05)
    go2.set()
    for t in ts:
        t.join(60)
    print(json.dumps({"raised": raised, "accepted": sum(r is True for r in results),
                      "results": len(results)}))
""")


@pytest.mark.parametrize("via", ["producer", "handler"])
def test_more_live_threads_than_slots_never_raise_and_every_refusal_is_counted(via, ring_name, tmp_path):
    logs = tmp_path / "logs"
    w = WriterProcess(ring_name, logs).start()
    try:
        before = stats(ring_name)
        r = subprocess.run([sys.executable, "-c", CHILD, ring_name, str(THREADS), via],
                           capture_output=True, text=True, timeout=240)
        assert r.returncode == 0, r.stderr[-2000:]
        out = json.loads(r.stdout.strip().splitlines()[-1])
        assert out["raised"] == []
        assert "secret-arg" not in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
        calls = THREADS * 3
        wait_for(lambda: stats(ring_name)["used_bytes"] == 0, what="drained")
        after = stats(ring_name)
        committed = after["committed"] - before["committed"]
        dropped = after["dropped"] - before["dropped"]
        no_slot = after["dropped_no_slot"] - before["dropped_no_slot"]
        assert committed + dropped == calls, after
        assert no_slot >= 3 * (THREADS - 1024), after  # at least the threads with no slot
        assert dropped == no_slot, after
        if via == "producer":
            assert out["results"] == calls and out["accepted"] == committed
        assert w.stop() == 0, w.stderr()
        s = stats(ring_name)
        # the accounting identity: what was committed is written (nothing filtered here)
        assert s["written"] == s["committed"], s
        mine = [x for x in read_records(logs) if x["logger"] == "many"]
        assert len(mine) == committed
    finally:
        if w.proc and w.proc.poll() is None:
            w.kill()
