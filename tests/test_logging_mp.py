"""The stdlib `logging` integration with real processes, a real writer and a real ring.

Worker processes are configured the ways applications configure them:
dictConfig naming "logger_system.Handler" as the initializer of a spawn or
forkserver pool, install() in a spawn initializer, and a pre-fork server whose
children (and their threads) log through the Handler object the parent made.
Every test reads back the writer's JSON lines and checks each record exactly
once, with its pid, logger, level, message, call site, thread and fields.

Functions run in pool workers are at module level: spawn and forkserver
children import this module by name (`test_logging_mp`), which works because
the parent's sys.path, tests/ included, is handed to every spawned child.
"""
from __future__ import annotations

import concurrent.futures
import logging
import logging.config
import multiprocessing as mp
import os
import random
import re
import select
import signal
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from conftest import read_records, stats, wait_for
from logger_system import handler as hmod

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="needs fork, forkserver and POSIX shared memory")

DRAIN_TIMEOUT = 30.0
RESULT_TIMEOUT = 60.0
EXIT_TIMEOUT = 30.0

WORKER_LOGGER = "mp.worker"
LEAN_LOGGER = "mp.lean"
PER_TASK = 120
TASKS = 6
LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING)
LEVEL_NAMES = {logging.DEBUG: "DEBUG", logging.INFO: "INFO", logging.WARNING: "WARNING",
               logging.ERROR: "ERROR"}
THIS_FILE = __file__


def _site(tag: str) -> int:
    """The line of this file marked `# site: <tag>`: the call site a record must name."""
    marker = f"# site: {tag}"
    lines = [n for n, text in enumerate(Path(THIS_FILE).read_text().splitlines(), 1)
             if text.rstrip().endswith(marker)]
    assert len(lines) == 1, f"marker {marker!r} found on lines {lines}"
    return lines[0]


# ---- code run in pool workers (module level: spawn and forkserver import it) --

def _init_dict_config(ring: str) -> None:
    """Pool initializer: the Handler comes from a dictConfig, as an application's would."""
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"ring": {"class": "logger_system.Handler", "ring": ring, "level": "DEBUG"}},
        "loggers": {WORKER_LOGGER: {"handlers": ["ring"], "level": "DEBUG", "propagate": False}},
    })


def _fail(task: int) -> None:
    raise ValueError(f"boom in task {task}")


def _work(task: int, count: int) -> tuple[int, int]:
    """Log one plain record, `count` records with extra fields, and one exception."""
    log = logging.getLogger(WORKER_LOGGER)
    log.info("start of task %d", task)  # site: work-start
    for i in range(count):
        log.log(LEVELS[i % 3], "task %d record %d: données", task, i,  # site: work-loop
                extra={"task": task, "i": i, "tags": ["x", task]})
    try:
        _fail(task)
    except ValueError:
        log.exception("task %d failed", task, extra={"task": task, "i": -1})  # site: work-exc
    return task, os.getpid()


def _init_install(ring: str) -> None:
    """Pool initializer: logger_system.install() with the lean Logger and LogRecord."""
    import logger_system

    logger_system.install(ring, level="DEBUG", lean=True)


def _via_helper(log: logging.Logger, task: int) -> None:
    log.info("helper of task %d", task, stacklevel=2)


def _work_lean(task: int, count: int) -> tuple[int, int, dict]:
    """Log through the lean Logger: the direct path, stacklevel, extra, and the root logger."""
    log = logging.getLogger(LEAN_LOGGER)
    for i in range(count):
        log.info("lean %d/%d", task, i)  # site: lean-loop
    _via_helper(log, task)  # site: lean-helper
    log.warning("lean extra %d", task, extra={"task": task})  # site: lean-extra
    logging.info("lean root %d", task)  # site: lean-root
    log.debug("lean stack %d", task, stack_info=True)  # site: lean-stack
    try:
        _fail(task)
    except ValueError:
        log.exception("lean failure %d", task)  # site: lean-exc
    seen = {
        "logger_class": type(log).__qualname__,
        "logger_module": type(log).__module__,
        "root_is_lean": isinstance(logging.root, hmod.Logger),
        "factory_is_lean": logging.getLogRecordFactory() is hmod.LogRecord,
        "root_handlers": [type(h).__qualname__ for h in logging.root.handlers],
    }
    return task, os.getpid(), seen


# ---- code run in fork children -----------------------------------------------

def _fork_child_log(log: logging.Logger, label: int, count: int) -> None:
    for i in range(count):
        if i % 2:
            log.info("child %d record %d", label, i)  # site: fork-plain
        else:
            log.warning("child %d record %d", label, i,  # site: fork-extra
                        extra={"child": label, "i": i})


def _fork_paced_child(log: logging.Logger, label: int, count: int, seconds: float) -> None:
    """_fork_child_log spread over `seconds`, so the child is still logging when another dies."""
    t0 = time.monotonic()
    for start in range(0, count, 50):
        _fork_child_log_range(log, label, start, min(count, start + 50))
        delay = t0 + seconds * (start + 50) / count - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def _fork_child_log_range(log: logging.Logger, label: int, start: int, stop: int) -> None:
    for i in range(start, stop):
        log.info("child %d record %d", label, i, extra={"child": label, "i": i})


def _fork_victim(log: logging.Logger, label: int, ready_fd: int, limit_s: float) -> None:
    """Log as fast as possible until killed; say so on ready_fd after a while."""
    deadline = time.monotonic() + limit_s
    i = 0
    while time.monotonic() < deadline:
        log.info("victim record %d", i, extra={"child": label, "i": i})
        i += 1
        if i == 300:
            os.write(ready_fd, b"x")
    os._exit(3)  # never killed: the test did not do what it meant to


def _threaded_child(log: logging.Logger, label: int, n_threads: int, per: int) -> None:
    """A fork child whose threads log concurrently, half with extra fields."""
    barrier = threading.Barrier(n_threads)

    def run(k: int) -> None:
        barrier.wait(10)
        for i in range(per):
            if i % 2:
                log.info("c%d t%d r%d", label, k, i)  # site: thread-plain
            else:
                log.info("c%d t%d r%d", label, k, i, extra={"i": i})  # site: thread-extra

    threads = [threading.Thread(target=run, args=(k,), name=f"c{label}-worker-{k}")
               for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(EXIT_TIMEOUT)
    if any(t.is_alive() for t in threads):
        os._exit(2)


# ---- helpers ----------------------------------------------------------------

def _bounded(fn, timeout: float, what: str) -> None:
    """Run fn() (which has no timeout of its own) and fail if it takes longer than timeout."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # reported in the test's thread
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"{what} did not finish within {timeout}s"
    if errors:
        raise errors[0]


def _wait_written(ring: str, n: int, writer) -> dict:
    def check():
        s = stats(ring)
        return s if s["written"] >= n and s["used_bytes"] == 0 and s["head"] == s["tail"] else None
    try:
        return wait_for(check, timeout=DRAIN_TIMEOUT, interval=0.05, what=f"{n} records written")
    except AssertionError:
        raise AssertionError(f"not drained: {stats(ring)}; writer stderr: {writer.stderr()}") from None


def _finish(ring: str, writer, logs: Path, n: int) -> list[dict]:
    """Wait for the writer to write n records, stop it, and return every record it wrote."""
    _wait_written(ring, n, writer)
    assert writer.proc.poll() is None, writer.stderr()
    assert writer.stop() == 0, writer.stderr()
    records = read_records(logs)
    s = stats(ring)
    assert len(records) == n, f"{len(records)} records in the files, {n} logged; {s}"
    assert s["written"] == s["committed"] == n, s
    assert s["dropped"] == 0 and s["malformed"] == 0 and s["abandoned"] == 0, s
    return records


def _waitpid(pid: int, timeout: float = EXIT_TIMEOUT) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.005)
    raise AssertionError(f"child {pid} did not exit within {timeout}s")


def _fork(target, *args) -> int:
    """os.fork() a child that runs target(*args) and leaves with os._exit, never into pytest."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            target(*args)
            code = 0
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


@pytest.fixture
def forked():
    """Pids of os.fork() children a test started; any still running is killed at teardown."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def _plain_logger(name: str, cls: type, handler: logging.Handler) -> logging.Logger:
    """A logger outside logging's registry, so tests leave nothing behind in it."""
    lg = cls(name)
    lg.parent = logging.root
    lg.propagate = False
    lg.setLevel(logging.DEBUG)
    lg.addHandler(handler)
    return lg


def _run_pool(kind: str, method: str, init, ring: str, task_fn, tasks: int, count: int) -> list:
    """Run task_fn(t, count) for every task in 2 workers of a `kind` pool started by `method`."""
    ctx = mp.get_context(method)
    if kind == "pool":
        pool = ctx.Pool(2, initializer=init, initargs=(ring,))
        try:
            results = pool.starmap_async(task_fn, [(t, count) for t in range(tasks)],
                                         chunksize=1).get(timeout=RESULT_TIMEOUT)
            pool.close()
            _bounded(pool.join, EXIT_TIMEOUT, "pool workers exiting")
        finally:
            pool.terminate()
        return results
    ex = concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx, initializer=init,
                                                initargs=(ring,))
    try:
        futures = [ex.submit(task_fn, t, count) for t in range(tasks)]
        results = [f.result(timeout=RESULT_TIMEOUT) for f in futures]
    finally:
        _bounded(lambda: ex.shutdown(wait=True, cancel_futures=True), EXIT_TIMEOUT,
                 "executor shutdown")
    return results


def _check_worker_records(records: list[dict], results: list[tuple[int, int]], count: int) -> None:
    """What _work logged, each record once, from the process that ran its task."""
    pid_of_task = dict(results)
    assert sorted(pid_of_task) == list(range(TASKS))
    assert os.getpid() not in pid_of_task.values()
    expected_per_pid = Counter()
    for task, pid in results:
        expected_per_pid[pid] += count + 2
    assert Counter(r["pid"] for r in records) == expected_per_pid

    start_line, loop_line, exc_line = _site("work-start"), _site("work-loop"), _site("work-exc")
    starts: dict[int, int] = Counter()
    loops: dict[int, list[int]] = defaultdict(list)
    failures: dict[int, int] = Counter()
    for r in records:
        assert r["logger"] == WORKER_LOGGER, r
        f = r["fields"]
        assert f["file"] == THIS_FILE, r
        assert f["func"] == "_work", r
        assert f["thread"] == "MainThread", r
        m = re.fullmatch(r"start of task (\d+)", r["msg"])
        if m:
            task = int(m.group(1))
            starts[task] += 1
            assert r["level"] == "INFO"
            assert f["line"] == start_line, r
            assert set(f) == {"file", "line", "func", "thread"}, r
            assert r["pid"] == pid_of_task[task]
            continue
        task = f["task"]
        assert r["pid"] == pid_of_task[task], f"task {task} record from the wrong process: {r}"
        if f["i"] == -1:
            failures[task] += 1
            assert r["msg"] == f"task {task} failed"
            assert r["level"] == "ERROR"
            assert f["line"] == exc_line, r
            text = f["exc_info"]
            assert text.startswith("Traceback (most recent call last):"), text
            assert 'in _work' in text and 'in _fail' in text, text
            assert text.rstrip().endswith(f"ValueError: boom in task {task}"), text
            continue
        i = f["i"]
        loops[task].append(i)
        assert r["msg"] == f"task {task} record {i}: données", r
        assert r["level"] == LEVEL_NAMES[LEVELS[i % 3]], r
        assert f["line"] == loop_line, r
        assert f["tags"] == ["x", task], r
        assert "exc_info" not in f and "stack_info" not in f, r
    for task in range(TASKS):
        assert starts[task] == 1, f"task {task}: {starts[task]} start records"
        assert failures[task] == 1, f"task {task}: {failures[task]} exception records"
        assert loops[task] == list(range(count)), f"task {task}: records {loops[task][:20]}..."


# ---- 1, 2. dictConfig in pool initializers -------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("kind,method", [("pool", "spawn"), ("executor", "spawn"),
                                         ("pool", "forkserver"), ("executor", "forkserver")])
def test_dict_config_in_pool_initializer(kind, method, ring_name, writer_factory, tmp_path):
    w = writer_factory().start()
    results = _run_pool(kind, method, _init_dict_config, ring_name, _work, TASKS, PER_TASK)
    records = _finish(ring_name, w, tmp_path / "logs", TASKS * (PER_TASK + 2))
    _check_worker_records(records, results, PER_TASK)


# ---- 4. install() with the lean Logger in a spawn child -------------------------

@pytest.mark.slow
def test_install_in_spawn_initializer_lean_logger(ring_name, writer_factory, tmp_path):
    per = 50
    w = writer_factory().start()
    results = _run_pool("pool", "spawn", _init_install, ring_name, _work_lean, TASKS, per)
    for _task, _pid, seen in results:
        assert seen["logger_class"] == "Logger" and seen["logger_module"] == hmod.__name__, seen
        assert seen["root_is_lean"] and seen["factory_is_lean"], seen
        assert seen["root_handlers"] == ["Handler"], seen
    records = _finish(ring_name, w, tmp_path / "logs", TASKS * (per + 5))
    pid_of_task = {t: p for t, p, _ in results}
    sites = {"lean-loop": _site("lean-loop"), "lean-helper": _site("lean-helper"),
             "lean-extra": _site("lean-extra"), "lean-root": _site("lean-root"),
             "lean-stack": _site("lean-stack"), "lean-exc": _site("lean-exc")}
    seen_loop: dict[int, list[int]] = defaultdict(list)
    seen_other: Counter = Counter()
    for r in records:
        f = r["fields"]
        assert f["file"] == THIS_FILE and f["func"] == "_work_lean", r
        assert f["thread"] == "MainThread", r
        if m := re.fullmatch(r"lean (\d+)/(\d+)", r["msg"]):
            task, i = int(m.group(1)), int(m.group(2))
            seen_loop[task].append(i)
            where, level, logger = "lean-loop", "INFO", LEAN_LOGGER
        elif m := re.fullmatch(r"helper of task (\d+)", r["msg"]):
            task, where, level, logger = int(m.group(1)), "lean-helper", "INFO", LEAN_LOGGER
        elif m := re.fullmatch(r"lean extra (\d+)", r["msg"]):
            task, where, level, logger = int(m.group(1)), "lean-extra", "WARNING", LEAN_LOGGER
            assert f["task"] == task, r
        elif m := re.fullmatch(r"lean root (\d+)", r["msg"]):
            task, where, level, logger = int(m.group(1)), "lean-root", "INFO", "root"
        elif m := re.fullmatch(r"lean stack (\d+)", r["msg"]):
            task, where, level, logger = int(m.group(1)), "lean-stack", "DEBUG", LEAN_LOGGER
            text = f["stack_info"]
            assert text.startswith("Stack (most recent call last):"), text
            assert "in _work_lean" in text.splitlines()[-2], text
            assert "exc_info" not in f, r
        elif m := re.fullmatch(r"lean failure (\d+)", r["msg"]):
            task, where, level, logger = int(m.group(1)), "lean-exc", "ERROR", LEAN_LOGGER
            text = f["exc_info"]
            assert text.startswith("Traceback (most recent call last):"), text
            assert "in _work_lean" in text and "in _fail" in text, text
            assert text.rstrip().endswith(f"ValueError: boom in task {task}"), text
        else:
            raise AssertionError(f"unexpected record {r}")
        if where != "lean-loop":
            seen_other[(task, where)] += 1
        assert f["line"] == sites[where], f"{where}: {r}"
        assert r["level"] == level and r["logger"] == logger, r
        assert r["pid"] == pid_of_task[task], r
    for task in range(TASKS):
        assert seen_loop[task] == list(range(per)), f"task {task}: {seen_loop[task]}"
        for where in ("lean-helper", "lean-extra", "lean-root", "lean-stack", "lean-exc"):
            assert seen_other[(task, where)] == 1, f"task {task} {where}"


# ---- 3. a pre-fork server -------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("logger_cls", [logging.Logger, hmod.Logger],
                         ids=["stdlib-logger", "lean-logger"])
def test_prefork_children_share_the_parents_handler(logger_cls, ring_name, writer_factory,
                                                    tmp_path, forked):
    n_children, per, parent_n = 4, 400, 200
    w = writer_factory().start()
    h = hmod.Handler(ring_name)
    log = _plain_logger("prefork.server", logger_cls, h)
    try:
        log.info("parent before fork")  # site: parent-before
        pids = {}
        for label in range(n_children):
            pid = _fork(_fork_child_log, log, label, per)
            forked.append(pid)
            pids[label] = pid
        for i in range(parent_n):
            log.info("parent while children log %d", i)  # site: parent-during
        for label, pid in pids.items():
            assert _waitpid(pid) == 0, f"child {label} failed"
        for i in range(parent_n):
            log.error("parent after children %d", i, extra={"i": i})  # site: parent-after
    finally:
        log.removeHandler(h)
        h.close()
    records = _finish(ring_name, w, tmp_path / "logs", 1 + 2 * parent_n + n_children * per)

    parent = os.getpid()
    by_child: dict[int, list[int]] = defaultdict(list)
    parent_msgs = []
    plain, extra = _site("fork-plain"), _site("fork-extra")
    for r in records:
        f = r["fields"]
        assert r["logger"] == "prefork.server" and f["file"] == THIS_FILE, r
        assert f["thread"] == "MainThread", r
        m = re.fullmatch(r"child (\d+) record (\d+)", r["msg"])
        if m is None:
            assert r["pid"] == parent, r
            assert f["func"] == "test_prefork_children_share_the_parents_handler", r
            parent_msgs.append((r["msg"], r["level"], f["line"]))
            continue
        label, i = int(m.group(1)), int(m.group(2))
        assert r["pid"] == pids[label], f"child {label} record with pid {r['pid']}: {r}"
        assert f["func"] == "_fork_child_log", r
        if i % 2:
            assert (r["level"], f["line"]) == ("INFO", plain), r
            assert set(f) == {"file", "line", "func", "thread"}, r
        else:
            assert (r["level"], f["line"]) == ("WARNING", extra), r
            assert f["child"] == label and f["i"] == i, r
        by_child[label].append(i)
    assert sorted(by_child) == list(range(n_children))
    for label, got in by_child.items():
        assert got == list(range(per)), f"child {label}: {len(got)} records, {got[:10]}..."
    expected_parent = ([("parent before fork", "INFO", _site("parent-before"))]
                       + [(f"parent while children log {i}", "INFO", _site("parent-during"))
                          for i in range(parent_n)]
                       + [(f"parent after children {i}", "ERROR", _site("parent-after"))
                          for i in range(parent_n)])
    assert parent_msgs == expected_parent


@pytest.mark.slow
def test_prefork_child_killed_mid_logging_wedges_nothing(ring_name, writer_factory, tmp_path,
                                                         forked):
    seed = int(os.environ.get("LS_TEST_SEED", time.time_ns() % 1_000_000))
    rnd = random.Random(seed)
    survivors, per, parent_n, victim_label = 2, 3000, 300, 99
    w = writer_factory().start()
    h = hmod.Handler(ring_name)
    log = _plain_logger("prefork.kill", hmod.Logger, h)
    ready_r, ready_w = os.pipe()
    try:
        log.info("parent before fork")
        victim = _fork(_fork_victim, log, victim_label, ready_w, 20.0)
        forked.append(victim)
        os.close(ready_w)
        pids = {}
        for label in range(survivors):
            pid = _fork(_fork_paced_child, log, label, per, 1.5)
            forked.append(pid)
            pids[label] = pid
        ready, _, _ = select.select([ready_r], [], [], 20)
        assert ready, f"seed {seed}: the victim never logged 300 records"
        time.sleep(rnd.uniform(0.0, 0.1))
        os.kill(victim, signal.SIGKILL)
        for label, pid in pids.items():  # the survivors log before, during and after the kill
            assert os.waitpid(pid, os.WNOHANG) == (0, 0), f"seed {seed}: {label} ended too soon"
        assert _waitpid(victim) == -signal.SIGKILL, f"seed {seed}"
        t0 = time.monotonic()
        for i in range(parent_n):
            log.info("parent after kill %d", i)
        took = time.monotonic() - t0
        for label, pid in pids.items():
            assert _waitpid(pid) == 0, f"seed {seed}: survivor {label} failed"
        for i in range(parent_n, 2 * parent_n):
            log.info("parent after kill %d", i)
    finally:
        os.close(ready_r)
        log.removeHandler(h)
        h.close()
    assert took < 5.0, f"seed {seed}: {parent_n} records took {took:.2f}s after the kill"

    expected_min = 1 + survivors * per + 2 * parent_n
    try:
        _wait_written(ring_name, expected_min, w)
    except AssertionError as exc:
        raise AssertionError(f"seed {seed}: writer stalled after the kill: {exc}") from None
    assert w.proc.poll() is None, w.stderr()
    assert w.stop() == 0, w.stderr()
    records = read_records(tmp_path / "logs")
    s = stats(ring_name)
    assert s["written"] == s["committed"] == len(records), f"seed {seed}: {s}"
    assert s["dropped"] == 0 and s["malformed"] == 0, f"seed {seed}: {s}"
    assert 0 <= s["abandoned"] <= 1, f"seed {seed}: {s}"

    parent = os.getpid()
    by_child: dict[int, list[int]] = defaultdict(list)
    parent_i = []
    for r in records:
        if m := re.fullmatch(r"child (\d+) record (\d+)", r["msg"]):
            label = int(m.group(1))
            assert r["pid"] == pids[label], r
            by_child[label].append(int(m.group(2)))
        elif m := re.fullmatch(r"victim record (\d+)", r["msg"]):
            assert r["pid"] == victim and r["fields"]["i"] == int(m.group(1)), r
            by_child[victim_label].append(int(m.group(1)))
        elif m := re.fullmatch(r"parent after kill (\d+)", r["msg"]):
            assert r["pid"] == parent, r
            parent_i.append(int(m.group(1)))
        else:
            assert r["msg"] == "parent before fork" and r["pid"] == parent, r
    for label in range(survivors):
        assert by_child[label] == list(range(per)), f"seed {seed}: survivor {label}"
    assert parent_i == list(range(2 * parent_n)), f"seed {seed}"
    got = by_child[victim_label]
    assert len(got) >= 300 and got == list(range(len(got))), (
        f"seed {seed}: the killed child must leave a prefix of its records, got {len(got)}")


# ---- 5. threads inside forked children -----------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("logger_cls", [logging.Logger, hmod.Logger],
                         ids=["stdlib-logger", "lean-logger"])
def test_threads_in_forked_children_keep_their_names(logger_cls, ring_name, writer_factory,
                                                      tmp_path):
    n_children, n_threads, per = 2, 4, 300
    w = writer_factory().start()
    h = hmod.Handler(ring_name)
    log = _plain_logger("prefork.threads", logger_cls, h)
    ctx = mp.get_context("fork")
    procs = []
    try:
        # the parent holds a slot and cached call sites of its own before forking
        parent_thread = threading.Thread(target=log.info, args=("from a parent thread",),
                                         name="parent-thread")
        parent_thread.start()
        parent_thread.join(10)
        log.info("from the parent")
        for label in range(n_children):
            p = ctx.Process(target=_threaded_child, args=(log, label, n_threads, per),
                            daemon=True)
            p.start()
            procs.append(p)
        deadline = time.monotonic() + RESULT_TIMEOUT
        for p in procs:
            p.join(max(0.1, deadline - time.monotonic()))
            assert not p.is_alive(), f"child {p.pid} did not finish"
            assert p.exitcode == 0, f"child {p.pid} exited with {p.exitcode}"
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(10)
        log.removeHandler(h)
        h.close()
    records = _finish(ring_name, w, tmp_path / "logs", 2 + n_children * n_threads * per)

    pids = {label: p.pid for label, p in enumerate(procs)}
    plain, extra = _site("thread-plain"), _site("thread-extra")
    got: dict[tuple[int, int], list[int]] = defaultdict(list)
    parent_records = []
    for r in records:
        f = r["fields"]
        m = re.fullmatch(r"c(\d+) t(\d+) r(\d+)", r["msg"])
        if m is None:
            assert r["pid"] == os.getpid(), r
            parent_records.append((r["msg"], f["thread"]))
            continue
        label, k, i = (int(x) for x in m.groups())
        assert f["thread"] == f"c{label}-worker-{k}", r
        assert r["pid"] == pids[label], r
        assert f["func"] == "run" and f["file"] == THIS_FILE, r
        if i % 2:
            assert f["line"] == plain and set(f) == {"file", "line", "func", "thread"}, r
        else:
            assert f["line"] == extra and f["i"] == i, r
        got[(label, k)].append(i)
    assert sorted(parent_records) == [("from a parent thread", "parent-thread"),
                                      ("from the parent", "MainThread")]
    assert sorted(got) == [(c, k) for c in range(n_children) for k in range(n_threads)]
    for key, seq in got.items():
        assert seq == list(range(per)), f"child, thread {key}: {len(seq)} records"
