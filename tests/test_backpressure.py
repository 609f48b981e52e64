"""Backpressure never stalls a service: a full ring costs a process at most one wait.

With the writer stopped (SIGSTOP: alive, heartbeat fresh, not draining) and the
ring full, on_full="block" waits block_timeout once; later calls of that
process drop at once, counted, until one finds room.  A call on a thread that
runs an asyncio event loop never waits.  All producer slots taken by a hostile
process: calls drop and count, through Producer and Handler alike, and nothing
raises or prints a record.  Each assertion is on counters, not on time.
"""
from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import os
import signal
import threading
import time

import pytest

import logger_system
from logger_system.ring import Ring

from conftest import proc_state, stats, wait_for

pytestmark = pytest.mark.slow

SMALL = ("--capacity", "64KiB", "--max-record", "4KiB")


def _stopped_full(writer_factory, ring_name):
    """A writer that is alive but stopped, and a ring that is full."""
    w = writer_factory(*SMALL).start()
    os.kill(w.proc.pid, signal.SIGSTOP)
    wait_for(lambda: proc_state(w.proc.pid) == "T", what="writer stopped")
    _fill(ring_name)
    return w


def _fill(ring_name):
    """Fill the ring to the last few bytes: no record of these tests fits in what is left."""
    filler = logger_system.connect(ring_name, on_full="drop", name="fill")
    for size in (300, 20, 0):
        while filler.info("f" + "x" * size):
            pass


def _resume(w):
    os.kill(w.proc.pid, signal.SIGCONT)


def _balanced(d: dict) -> bool:
    return d["attempted"] == d["committed"] + d["dropped"] + d["abandoned"]


def test_block_waits_once_then_drops_at_once_until_there_is_room(writer_factory, ring_name):
    w = _stopped_full(writer_factory, ring_name)
    try:
        log = logger_system.connect(ring_name, on_full="block", block_timeout=0.3, name="victim")
        before = stats(ring_name)
        results = [log.info("request %d", i) for i in range(400)]
        after = stats(ring_name)
        assert not any(results)
        assert after["blocked"] - before["blocked"] == 1  # one wait, not 400
        assert after["block_timeouts"] - before["block_timeouts"] == 1
        assert after["dropped_stalled"] - before["dropped_stalled"] == 399
        assert after["dropped"] - before["dropped"] == 400
    finally:
        _resume(w)
    # the writer drains: the next call finds room, which ends the stalled state
    wait_for(lambda: stats(ring_name)["used_bytes"] == 0, what="ring drained")
    assert log.info("back") is True
    # a new stall costs one more wait, and only one
    os.kill(w.proc.pid, signal.SIGSTOP)
    wait_for(lambda: proc_state(w.proc.pid) == "T", what="writer stopped")
    _fill(ring_name)
    before = stats(ring_name)
    for i in range(50):
        log.info("again %d", i)
    after = stats(ring_name)
    _resume(w)
    assert after["blocked"] - before["blocked"] == 1
    assert after["dropped_stalled"] - before["dropped_stalled"] == 49
    assert w.stop() == 0
    assert _balanced(stats(ring_name))


def test_threads_of_one_process_wait_at_most_once_each_and_not_after_the_stall(writer_factory, ring_name):
    w = _stopped_full(writer_factory, ring_name)
    try:
        log = logger_system.connect(ring_name, on_full="block", block_timeout=0.3, name="threads")
        before = stats(ring_name)
        barrier = threading.Barrier(8)

        def work():
            barrier.wait()
            for i in range(100):
                log.info("t %d", i)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        after = stats(ring_name)
        waits = after["blocked"] - before["blocked"]
        assert 1 <= waits <= 8  # only waits already under way when the first timed out
        assert after["dropped"] - before["dropped"] == 800
        assert after["dropped_stalled"] - before["dropped_stalled"] >= 800 - 8
    finally:
        _resume(w)


def test_a_call_on_a_thread_running_an_event_loop_never_waits(writer_factory, ring_name):
    w = _stopped_full(writer_factory, ring_name)
    try:
        log = logger_system.connect(ring_name, on_full="block", block_timeout=5.0, name="loop")
        before = stats(ring_name)

        async def handler_calls():
            results = []
            for i in range(200):
                results.append(log.info("in the loop %d", i))
                await asyncio.sleep(0)
            return results

        results = asyncio.run(handler_calls())
        after = stats(ring_name)
        assert not any(results)
        assert after["blocked"] == before["blocked"]  # not one wait
        assert after["dropped_in_loop"] - before["dropped_in_loop"] == 200
        assert after["dropped"] - before["dropped"] == 200
    finally:
        _resume(w)


def test_stdlib_logging_in_an_event_loop_never_waits_either(writer_factory, ring_name):
    w = _stopped_full(writer_factory, ring_name)
    logger = logging.getLogger(f"bp.{ring_name}")
    handler = logger_system.Handler(ring_name, block_timeout=5.0)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        before = stats(ring_name)

        async def main():
            for i in range(100):
                logger.warning("served %d", i)

        asyncio.run(main())
        after = stats(ring_name)
        assert after["blocked"] == before["blocked"]
        assert after["dropped_in_loop"] - before["dropped_in_loop"] == 100
    finally:
        logger.removeHandler(handler)
        handler.close()
        _resume(w)


def test_no_live_writer_drops_at_once_and_writer_timeout_is_configurable(writer_factory, ring_name):
    w = _stopped_full(writer_factory, ring_name)
    try:
        # the heartbeat is at most a few ms old; with writer_timeout=0.2 it goes stale soon
        log = logger_system.connect(ring_name, block_timeout=30.0, writer_timeout=0.2, name="stale")
        time.sleep(0.3)
        before = stats(ring_name)
        assert log.info("nobody drains") is False
        after = stats(ring_name)
        assert after["blocked"] == before["blocked"]
        assert after["dropped_no_writer"] - before["dropped_no_writer"] == 1
    finally:
        _resume(w)
    with pytest.raises(logger_system.ConfigError, match="writer_timeout"):
        logger_system.connect(ring_name, writer_timeout=0)


def _child_logs(ring: str, q) -> None:
    log = logger_system.connect(ring, on_full="block", block_timeout=0.2, name="child")
    for i in range(20):
        log.info("child %d", i)
    q.put(os.getpid())


def test_a_forked_child_of_a_stalled_process_may_wait_once_itself(writer_factory, ring_name):
    w = _stopped_full(writer_factory, ring_name)
    try:
        log = logger_system.connect(ring_name, on_full="block", block_timeout=0.2, name="parent")
        log.info("stall the parent")
        before = stats(ring_name)
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=_child_logs, args=(ring_name, q))
        p.start()
        q.get(timeout=30)
        p.join(30)
        after = stats(ring_name)
        assert after["blocked"] - before["blocked"] == 1
        assert after["dropped_stalled"] - before["dropped_stalled"] == 19
    finally:
        _resume(w)


def _hold_every_slot(ring: str, ready, done) -> None:
    from logger_system._native import lib

    r = Ring(ring, create=False)
    held = 0
    while lib.lsr_slot_acquire(r.ptr) >= 0:
        held += 1
    ready.put(held)
    done.wait(60)


def test_every_slot_taken_drops_and_counts_without_raising_or_printing(ring_name, capfd):
    log = logger_system.connect(ring_name, name="victim")
    ctx = mp.get_context("fork")
    ready, done = ctx.Queue(), ctx.Event()
    hog = ctx.Process(target=_hold_every_slot, args=(ring_name, ready, done))
    hog.start()
    try:
        assert ready.get(timeout=30) >= 1000
        before = stats(ring_name)
        results = []

        def in_new_thread():  # a new thread needs a slot of its own: there is none
            results.append(log.info("no slot %s", "secret-arg-1"))
            logger = logging.getLogger(f"slots.{ring_name}")
            handler = logger_system.Handler(ring_name)
            logger.addHandler(handler)
            logger.propagate = False
            logger.error("no slot either %s", "secret-arg-2")
            logger.removeHandler(handler)

        t = threading.Thread(target=in_new_thread)
        t.start()
        t.join(30)
        after = stats(ring_name)
        assert results == [False]
        assert after["dropped_no_slot"] - before["dropped_no_slot"] == 2
        assert after["dropped"] - before["dropped"] == 2
        out = capfd.readouterr()
        assert "secret-arg" not in out.out + out.err
        assert "Traceback" not in out.err
    finally:
        done.set()
        hog.join(30)
    # the hog is gone: its slots are taken over, and a new thread logs again
    got = []
    t = threading.Thread(target=lambda: got.append(log.info("slots are free again")))
    t.start()
    t.join(30)
    assert got == [True]
    assert _balanced(stats(ring_name))


def test_handler_error_path_prints_no_record_content(ring_name, capfd):
    class Exploding(logger_system.Handler):
        def _write(self, *a, **k):
            raise RuntimeError("boom")

    h = Exploding(ring_name)
    logger = logging.getLogger(f"explode.{ring_name}")
    logger.addHandler(h)
    logger.propagate = False
    before = stats(ring_name)
    logger.error("card %s", "4111111111111111")
    logger.removeHandler(h)
    err = capfd.readouterr().err
    assert "4111111111111111" not in err
    assert "could not be written (RuntimeError)" in err
    assert stats(ring_name)["dropped"] - before["dropped"] == 1
