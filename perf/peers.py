"""End-to-end throughput of the multi-process logging setups users would
otherwise pick, measured exactly the way ``logger_system`` is measured.

Every runner does the same thing:

* fork ``n_producers`` processes; each builds its logger and its share of
  the workload (``perf.workload``) and then waits on a start barrier shared
  with the parent;
* the clock starts when the parent passes that barrier, i.e. when every
  producer is ready and released at once;
* each producer logs its ``n_records`` records as fast as it can;
* the clock stops when the consumer side has written every record to a
  file and closed it, so buffered data that never reached the file cannot
  flatter a figure;
* the file is then read back and checked with ``check_complete``; a
  throughput figure is only reported for a complete file.

Every wait is bounded by ``timeout``: a runner that runs out of time
returns ``complete=False`` with a ``reason`` instead of hanging.

Line layout: the logging libraries all write the same layout,
second-resolution timestamp, level, logger name, message. Milliseconds are
left out because picologging 0.9.3 (the newest release for this Python)
prints garbage for ``asctime`` without an explicit ``datefmt`` and for
``msecs`` (picologging issue #203); dropping them everywhere keeps the
per-record formatting work equal across libraries.

Run ``python -m perf.peers`` (or ``python perf/peers.py``) for a quick
comparison with 2 producers x 50,000 records each.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import multiprocessing
import multiprocessing.context
import multiprocessing.synchronize
import os
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

try:
    from perf.workload import MESSAGE, check_complete, producer_args
except ModuleNotFoundError:  # run as a script: the perf directory is sys.path[0]
    from workload import MESSAGE, check_complete, producer_args  # type: ignore[no-redef]

__all__ = [
    "DEFAULT_TIMEOUT",
    "RUNNERS",
    "run_stdlib",
    "run_faster_fifo",
    "run_picologging",
    "run_loguru",
]

Result = dict[str, Any]

# Generous for the default 2 x 50,000 records on a 2-core machine (the
# slowest peer needs a few seconds), yet short enough that a wedged run
# fails a suite rather than stalling it.
DEFAULT_TIMEOUT = 120.0

# Producers only build their workload before the barrier; if they are not
# all there by then, something is broken and waiting longer will not help.
_BARRIER_TIMEOUT = 30.0

_NOT_READY = "producers did not all reach the start barrier (one failed or timed out)"

# Ample for cleanup after a failed run: its data is no longer of interest.
_CLEANUP_TIMEOUT = 2.0

# The layout shared by the logging libraries (see the module docstring).
_LAYOUT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_DATEFMT = "%Y-%m-%d %H:%M:%S"
_LOGURU_LAYOUT = "{time:YYYY-MM-DD HH:mm:ss} {level} {name} {message}"

# Forked children inherit the parent's queues and loggers as they are,
# which is what the loguru recipe needs and what keeps start-up cheap.
_FORK: multiprocessing.context.ForkContext = multiprocessing.get_context("fork")


class _Producers:
    """Forked producer processes held on one start barrier with the parent.

    ``target`` is called in each child as
    ``target(barrier, producer, n_records, *extra)`` and must wait on the
    barrier once its setup is done.
    """

    def __init__(
        self,
        target: Callable[..., None],
        n_producers: int,
        n_records: int,
        extra: tuple[Any, ...] = (),
    ) -> None:
        # The parent is the extra party so that it knows the instant the
        # producers are released, which is when the clock must start.
        self.barrier: multiprocessing.synchronize.Barrier = _FORK.Barrier(n_producers + 1)
        self.procs = [
            _FORK.Process(
                target=_producer_main,
                args=(target, self.barrier, producer, n_records, *extra),
                name=f"perf-producer-{producer}",
                # A parent that dies must not leave producers behind.
                daemon=True,
            )
            for producer in range(n_producers)
        ]

    def start(self) -> None:
        for proc in self.procs:
            proc.start()

    def release(self) -> float:
        """Wait until every producer is ready; return the start time.

        Raises ``threading.BrokenBarrierError`` if they are not all ready in
        time (e.g. a producer crashed during setup).
        """
        self.barrier.wait(_BARRIER_TIMEOUT)
        return time.perf_counter()

    def failure(self) -> str | None:
        """Why a producer has already failed, if one has."""
        for proc in self.procs:
            if proc.exitcode not in (None, 0):
                return f"{proc.name} exited with code {proc.exitcode}"
        return None

    def join(self, deadline: float) -> str | None:
        """Wait for every producer to exit; a reason if that went wrong."""
        for proc in self.procs:
            proc.join(max(0.0, deadline - time.perf_counter()))
            if proc.is_alive():
                return f"{proc.name} still running at the deadline"
        return self.failure()

    def stop(self) -> None:
        """End any producer still running; a no-op after a clean run."""
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
        for proc in self.procs:
            proc.join(_CLEANUP_TIMEOUT)
            if proc.is_alive():
                proc.kill()
                proc.join(_CLEANUP_TIMEOUT)


def _producer_main(
    target: Callable[..., None],
    barrier: multiprocessing.synchronize.Barrier,
    *args: Any,
) -> None:
    """Run one producer; a failure breaks the barrier for everyone.

    Without this, a producer that fails during setup would leave the parent
    waiting out the whole barrier timeout before it could report anything.
    """
    try:
        target(barrier, *args)
    except BaseException:
        barrier.abort()
        raise


def _bounded(fn: Callable[[], object], timeout: float) -> bool:
    """Call ``fn``; False if it has not returned within ``timeout`` seconds.

    The libraries' shutdown calls (``QueueListener.stop``, loguru's
    ``remove``) join their worker thread with no timeout. Running them on a
    daemon thread lets a runner give up on a stuck consumer without hanging
    the whole process.
    """
    errors: list[BaseException] = []

    def call() -> None:
        try:
            fn()
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    worker = threading.Thread(target=call, name="perf-bounded-call", daemon=True)
    worker.start()
    worker.join(max(0.0, timeout))
    if worker.is_alive():
        return False
    if errors:
        raise errors[0]
    return True


def _result(
    name: str,
    n_producers: int,
    n_records: int,
    seconds: float | None,
    path: str,
    reason: str | None,
) -> Result:
    """Check the output file and build the runner's result."""
    total = n_producers * n_records
    try:
        with open(path, encoding="utf-8", errors="replace") as lines:
            check = check_complete(lines, n_producers, n_records)
    except FileNotFoundError:
        check = {"complete": False, "missing": total, "duplicates": 0, "out_of_order": 0, "unexpected": 0}
    complete = reason is None and seconds is not None and bool(check["complete"])
    result: Result = {
        "name": name,
        "producers": n_producers,
        "records": total,
        "records_per_producer": n_records,
        "seconds": seconds,
        # A figure for a run that lost or reordered records is meaningless.
        "records_per_s": total / seconds if complete and seconds else None,
        **check,
        "complete": complete,
    }
    if reason is not None:
        result["reason"] = reason
    elif not check["complete"]:
        result["reason"] = "output file failed the completeness check"
    return result


def _skipped(name: str, reason: str) -> Result:
    return {"name": name, "skipped": reason}


# --------------------------------------------------------------------------
# stdlib and picologging: QueueHandler -> multiprocessing.Queue -> QueueListener
# --------------------------------------------------------------------------


def _queue_handler_producer(
    barrier: multiprocessing.synchronize.Barrier,
    producer: int,
    n_records: int,
    log_queue: Any,
    logging_module: Any,
    handlers_module: Any,
) -> None:
    # The logger is set up after the fork, so it owns exactly one handler no
    # matter what the parent configured, and never propagates to the root
    # logger (whose handlers would write the records a second time).
    log = logging_module.getLogger(f"perf.peer.p{producer}")
    log.setLevel(logging_module.INFO)
    log.propagate = False
    log.handlers.clear()
    log.addHandler(handlers_module.QueueHandler(log_queue))
    work = producer_args(producer, n_records)
    barrier.wait(_BARRIER_TIMEOUT)
    info = log.info
    for args in work:
        info(MESSAGE, *args)
    # Returning is enough: multiprocessing's exit hooks flush the queue's
    # feeder thread into the pipe before the process ends.


def _run_queue_listener(
    name: str,
    logging_module: Any,
    handlers_module: Any,
    n_producers: int,
    n_records: int,
    workdir: str,
    timeout: float,
) -> Result:
    """The documented multi-process recipe, for logging and look-alikes."""
    path = os.path.join(workdir, f"{name}.log")
    log_queue = _FORK.Queue()
    file_handler = logging_module.FileHandler(path, mode="w", encoding="utf-8")
    file_handler.setFormatter(logging_module.Formatter(_LAYOUT, datefmt=_DATEFMT))
    listener = handlers_module.QueueListener(log_queue, file_handler)
    producers = _Producers(
        _queue_handler_producer,
        n_producers,
        n_records,
        (log_queue, logging_module, handlers_module),
    )
    seconds: float | None = None
    reason: str | None = None
    listening = False
    try:
        producers.start()
        # Started after the fork so the children do not inherit a copy of a
        # running listener thread's state.
        listener.start()
        listening = True
        started = producers.release()
        deadline = started + timeout
        reason = producers.join(deadline)
        if reason is None:
            # stop() queues a sentinel behind every record and joins the
            # listener thread, so once it returns each record has been
            # handed to the file handler; closing flushes the file.
            if _bounded(listener.stop, deadline - time.perf_counter()):
                listening = False
                file_handler.close()
                seconds = time.perf_counter() - started
            else:
                reason = "listener did not drain the queue before the deadline"
    except threading.BrokenBarrierError:
        reason = _NOT_READY
    finally:
        producers.stop()
        if listening:
            _bounded(listener.stop, _CLEANUP_TIMEOUT)
        file_handler.close()
        # Whatever is left in the queue is of no interest any more; do not
        # let interpreter exit wait on flushing it.
        log_queue.cancel_join_thread()
        log_queue.close()
    return _result(name, n_producers, n_records, seconds, path, reason)


def run_stdlib(n_producers: int, n_records: int, workdir: str, *, timeout: float = DEFAULT_TIMEOUT) -> Result:
    """The standard library's recipe for logging from several processes.

    Each producer logs through a ``logging.Logger`` whose only handler is a
    ``QueueHandler`` on a ``multiprocessing.Queue``; in the parent a
    ``QueueListener`` feeds a ``FileHandler``. ``QueueHandler`` formats the
    message in the producer and pickles the record across the pipe.
    """
    return _run_queue_listener("stdlib", logging, logging.handlers, n_producers, n_records, workdir, timeout)


def run_picologging(n_producers: int, n_records: int, workdir: str, *, timeout: float = DEFAULT_TIMEOUT) -> Result:
    """picologging's drop-in copy of the stdlib recipe.

    picologging ships ``QueueHandler`` and ``QueueListener`` with the same
    API, and its records pickle, so the recipe is used unchanged.
    """
    try:
        import picologging
        import picologging.handlers
    except ImportError as exc:
        return _skipped("picologging", f"not importable: {exc}")
    return _run_queue_listener(
        "picologging", picologging, picologging.handlers, n_producers, n_records, workdir, timeout
    )


# --------------------------------------------------------------------------
# faster-fifo: raw shared-memory transport, no logging library at all
# --------------------------------------------------------------------------

# Large enough that a consumer briefly descheduled on 2 cores does not make
# producers block; faster-fifo's own examples size queues generously too.
_FIFO_BYTES = 16 * 1024 * 1024


def _faster_fifo_producer(
    barrier: multiprocessing.synchronize.Barrier,
    producer: int,
    n_records: int,
    fifo: Any,
    put_timeout: float,
) -> None:
    work = producer_args(producer, n_records)
    barrier.wait(_BARRIER_TIMEOUT)
    put = fifo.put
    for args in work:
        # Raises faster_fifo.Full after put_timeout, which ends this
        # producer with a non-zero exit code that the parent reports.
        put(MESSAGE % args, True, put_timeout)


def run_faster_fifo(n_producers: int, n_records: int, workdir: str, *, timeout: float = DEFAULT_TIMEOUT) -> Result:
    """faster-fifo used directly as the transport, the floor for a Python pipeline.

    Producers format the message themselves (``MESSAGE % args``) and ``put``
    each string on a shared-memory ``faster_fifo.Queue``; the parent
    ``get_many``s batches and writes them to the file as lines.

    Producers deliberately call ``put`` once per record: that is what a
    logging call does, so the figure compares per-call costs. Batching with
    ``put_many`` would be faster but is not something a logging call site
    can do. Lines carry the bare message with no timestamp, level or
    logger name, so this measures transport and file writing only.
    """
    import faster_fifo

    name = "faster_fifo"
    path = os.path.join(workdir, f"{name}.log")
    total = n_producers * n_records
    fifo = faster_fifo.Queue(max_size_bytes=_FIFO_BYTES)
    producers = _Producers(_faster_fifo_producer, n_producers, n_records, (fifo, timeout))
    seconds: float | None = None
    reason: str | None = None
    try:
        producers.start()
        out = open(path, "w", encoding="utf-8")
        try:
            started = producers.release()
            deadline = started + timeout
            received = 0
            while received < total:
                if time.perf_counter() > deadline:
                    reason = f"consumer had {received} of {total} records at the deadline"
                    break
                try:
                    # A short timeout keeps the deadline and producer
                    # failures checked even when nothing arrives.
                    batch = fifo.get_many(block=True, timeout=0.1)
                except faster_fifo.Empty:
                    reason = producers.failure()
                    if reason is not None:
                        break
                    continue
                out.write("\n".join(batch))
                out.write("\n")
                received += len(batch)
        finally:
            out.close()
        if reason is None:
            seconds = time.perf_counter() - started
            # Every record is on disk; the producers are merely exiting, and
            # waiting for that is not part of the measured work.
            reason = producers.join(deadline)
    except threading.BrokenBarrierError:
        reason = _NOT_READY
    finally:
        producers.stop()
    return _result(name, n_producers, n_records, seconds, path, reason)


# --------------------------------------------------------------------------
# loguru: enqueue=True file sink, producers forked after configuration
# --------------------------------------------------------------------------


def _loguru_producer(
    barrier: multiprocessing.synchronize.Barrier,
    producer: int,
    n_records: int,
    log: Any,
) -> None:
    work = producer_args(producer, n_records)
    barrier.wait(_BARRIER_TIMEOUT)
    info = log.info
    for args in work:
        # loguru formats with str.format, not %, so a loguru user formats
        # the message at the call site (as an f-string would).
        info(MESSAGE % args)


def run_loguru(n_producers: int, n_records: int, workdir: str, *, timeout: float = DEFAULT_TIMEOUT) -> Result:
    """loguru's multi-process recipe: an ``enqueue=True`` file sink.

    loguru's docs require the sink to be added in the parent before the
    children are forked; the children then log through the inherited
    ``logger``. The enqueued handler formats in the producer, pickles the
    message across a ``multiprocessing.SimpleQueue`` and a writer thread in
    the parent writes it to the file.

    loguru has a single global ``logger``: this runner removes its handlers
    (including the default stderr one, which would otherwise print every
    record) and leaves it with none.
    """
    try:
        from loguru import logger
    except ImportError as exc:
        return _skipped("loguru", f"not importable: {exc}")

    name = "loguru"
    path = os.path.join(workdir, f"{name}.log")
    logger.remove()
    sink_id = logger.add(
        path,
        format=_LOGURU_LAYOUT,
        level="INFO",
        enqueue=True,
        mode="w",
        encoding="utf-8",
        colorize=False,
    )
    producers = _Producers(_loguru_producer, n_producers, n_records, (logger,))
    seconds: float | None = None
    reason: str | None = None
    sink_open = True
    try:
        producers.start()
        started = producers.release()
        deadline = started + timeout
        reason = producers.join(deadline)
        if reason is None:
            # Producers write to the queue's pipe synchronously, so once they
            # have exited every record is queued. remove() queues a stop
            # marker behind them, joins the writer thread and closes the file.
            if _bounded(lambda: logger.remove(sink_id), deadline - time.perf_counter()):
                sink_open = False
                seconds = time.perf_counter() - started
            else:
                reason = "loguru's writer thread did not drain the queue before the deadline"
    except threading.BrokenBarrierError:
        reason = _NOT_READY
    finally:
        producers.stop()
        if sink_open:
            _bounded(lambda: logger.remove(sink_id), _CLEANUP_TIMEOUT)
    return _result(name, n_producers, n_records, seconds, path, reason)


RUNNERS: dict[str, Callable[..., Result]] = {
    "stdlib": run_stdlib,
    "faster_fifo": run_faster_fifo,
    "picologging": run_picologging,
    "loguru": run_loguru,
}


def _describe(result: Result) -> str:
    """One human-readable line per runner."""
    name = result["name"]
    if "skipped" in result:
        return f"{name:<12} skipped: {result['skipped']}"
    shape = f"{result['producers']}x{result['records_per_producer']}"
    if result["complete"]:
        return (
            f"{name:<12} {shape:>10}  {result['records_per_s']:>10,.0f} records/s  {result['seconds']:7.3f} s  complete"
        )
    defects = ", ".join(
        f"{key}={result[key]}" for key in ("missing", "duplicates", "out_of_order", "unexpected") if result.get(key)
    )
    return f"{name:<12} {shape:>10}  INCOMPLETE: {result.get('reason', '')} {defects}".rstrip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--producers", type=int, default=2)
    parser.add_argument("--records", type=int, default=50_000, help="records per producer")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    parser.add_argument("--only", choices=sorted(RUNNERS), action="append", help="run only these peers")
    options = parser.parse_args(argv)
    names = options.only or list(RUNNERS)
    failed = False
    with tempfile.TemporaryDirectory(prefix="perf-peers-") as workdir:
        for name in names:
            result = RUNNERS[name](options.producers, options.records, workdir, timeout=options.timeout)
            print(_describe(result), flush=True)
            failed |= "skipped" not in result and not result["complete"]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
