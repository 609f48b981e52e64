"""The framework recipes of README.md's "Quick starts", run as a user would run them.

Each slow test starts the real programs (redis-server, a Celery worker with a
prefork pool, gunicorn, uvicorn) as child processes in their own process
groups, bound to 127.0.0.1, beside a real writer; it configures them with the
README's code block itself (only the ring name, address and port changed),
drives real requests or tasks, stops everything with real signals and reads
the writer's files back.  Every wait has a deadline, and every process group
is killed in `finally`.
"""
from __future__ import annotations

import concurrent.futures
import http.client
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from conftest import WriterProcess, read_records, wait_for
from logger_system.handler import Handler, install
from logger_system.ring import Ring
from test_ring import Drainer

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="needs fork and POSIX shared memory")


def readme_block(first_line: str) -> str:
    """The README python block whose first line is `first_line` (e.g. "# tasks.py")."""
    blocks = re.findall(r"^```python\n(.*?)^```$", README.read_text(), re.M | re.S)
    found = [b for b in blocks if b.startswith(first_line + "\n")]
    assert len(found) == 1, f"README.md has {len(found)} python blocks starting {first_line!r}"
    return found[0]


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} is not in the recipe exactly once"
    return text.replace(old, new)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Child processes, each the leader of its own process group, killed as groups at the end."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.procs: list[subprocess.Popen] = []
        self.logs: dict[int, Path] = {}

    def start(self, name: str, cmd: list[str], *, env: dict | None = None) -> subprocess.Popen:
        log = self.dir / f"{name}.out"
        with open(log, "wb") as out:
            p = subprocess.Popen(cmd, cwd=self.dir, env={**os.environ, **(env or {})},
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        self.procs.append(p)
        self.logs[p.pid] = log
        return p

    def output(self, p: subprocess.Popen) -> str:
        return self.logs[p.pid].read_text(errors="replace")

    def stop(self, p: subprocess.Popen, timeout: float = 30.0) -> int:
        """SIGTERM, as a service manager would send it, and wait for the exit."""
        p.send_signal(signal.SIGTERM)
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{p.args[:4]} did not stop in {timeout}s:\n{self.output(p)[-3000:]}")

    def kill_all(self) -> None:
        for p in reversed(self.procs):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture
def procs(tmp_path):
    made = Processes(tmp_path)
    yield made
    made.kill_all()


@pytest.fixture
def writer(ring_name, tmp_path):
    w = WriterProcess(ring_name, tmp_path / "logs")
    yield w
    if w.proc is not None and w.proc.poll() is None:
        w.kill()


def children(pid: int, marker: str = "") -> set[int]:
    """The pids of pid's children whose command line has `marker` in it."""
    import psutil

    found = set()
    try:
        for c in psutil.Process(pid).children():
            try:
                if marker in " ".join(c.cmdline()):
                    found.add(c.pid)
            except psutil.NoSuchProcess:
                pass
    except psutil.NoSuchProcess:
        pass
    return found


def wait_children(pid: int, n: int, *, without: int | None = None, marker: str = "",
                  what: str) -> set[int]:
    """The child pids of `pid` once there are n of them (none of them `without`)."""
    def ready() -> set[int] | None:
        c = children(pid, marker)
        return c if len(c) == n and without not in c else None

    return wait_for(ready, timeout=30, interval=0.05, what=what)


def get(port: int, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_http(port: int, server: subprocess.Popen, procs: Processes, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            raise AssertionError(f"server exited {server.returncode}:\n{procs.output(server)[-3000:]}")
        try:
            if get(port, "/ok?rid=warmup-" + uuid.uuid4().hex[:8], timeout=2.0)[0] == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"server did not answer in {timeout}s:\n{procs.output(server)[-3000:]}")
        time.sleep(0.1)


def drive(port: int, n: int, *, threads: int = 8, during=None, at: int = 0) -> tuple[set[str], int]:
    """n GET /ok?rid=... requests from `threads` threads; `during()` runs once `at` have answered.
    Returns the request ids answered 200 with their own id as the body, and the failure count."""
    ok: set[str] = set()
    failed = 0
    rids = [f"r{i}-{uuid.uuid4().hex[:8]}" for i in range(n)]

    def one(rid: str) -> bool:
        try:
            status, body = get(port, f"/ok?rid={rid}")
        except (OSError, http.client.HTTPException):  # a worker killed mid-request
            return False
        return status == 200 and body == rid.encode()

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        futures = {pool.submit(one, rid): rid for rid in rids}
        done = 0
        for fut in concurrent.futures.as_completed(futures, timeout=120):
            done += 1
            if fut.result():
                ok.add(futures[fut])
            else:
                failed += 1
            if during is not None and done == at:
                during()
    return ok, failed


def by_logger(records: list[dict], logger: str) -> list[dict]:
    return [r for r in records if r["logger"] == logger]


# ---- install(also=...) and the optional dependency, in this process ----------

def test_install_also_puts_the_handler_on_loggers_that_do_not_propagate(ring_name):
    name = f"server.error.{uuid.uuid4().hex[:6]}"
    server = logging.getLogger(name)
    server.propagate = False
    server.setLevel(logging.WARNING)  # the server's own --log-level
    saved = logging.root.handlers[:], logging.root.level, logging.root.__class__
    factory, cls = logging.getLogRecordFactory(), logging.getLoggerClass()
    ring = None
    try:
        first = install(ring_name, level="INFO", also=[name])
        h = install(ring_name, level="INFO", also=[name])  # again: replaces, never doubles
        assert first.producer.closed
        assert [x for x in server.handlers if isinstance(x, Handler)] == [h]
        assert [x for x in logging.root.handlers if isinstance(x, Handler)] == [h]
        assert server.level == logging.WARNING
        try:
            raise ValueError("bad request body")
        except ValueError:
            server.exception("Error handling request /x")
        server.info("below the server's level")
        logging.getLogger("app.web").info("an application record")
        ring = Ring(ring_name, create=False)
        recs, malformed, abandoned = Drainer(ring).drain_all()
        got = [r.obj for r in recs]
        assert [(r["logger"], r["msg"]) for r in got] == [
            (name, "Error handling request /x"), ("app.web", "an application record")]
        assert "ValueError: bad request body" in got[0]["fields"]["exc_info"]
    finally:
        for x in [x for x in server.handlers if isinstance(x, Handler)]:
            server.removeHandler(x)
        logging.root.handlers[:] = saved[0]
        logging.root.setLevel(saved[1])
        logging.root.__class__ = saved[2]
        logging.setLogRecordFactory(factory)
        logging.setLoggerClass(cls)
        if ring is not None:
            ring.close()


def test_importing_logger_system_does_not_import_celery():
    code = ("import sys, logger_system, logger_system.handler; logger_system.Handler; "
            "assert 'celery' not in sys.modules, 'celery was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_celery_install_rejects_an_unknown_option_at_once():
    pytest.importorskip("celery")
    import logger_system.celery as lsc

    with pytest.raises(TypeError, match="on_ful"):
        lsc.install("app", on_ful="drop")
    assert lsc.handler() is None  # not a worker: nothing made, no ring opened


# ---- Celery -------------------------------------------------------------------

CELERY_TASKS = '''

# ---- the test's tasks ----
import os

std_log = logging.getLogger("lstasks.std")
tlog = get_task_logger("lstasks.tasklog")


@app.task
def work(i):
    std_log.info("std %d", i, extra={"task_no": i})
    tlog.info("task %d", i)
    if i == 0:
        tlog.warning("console %d", i)
        print(f"printed {i}")
    return os.getpid()
'''

N_TASKS = 200
PER_CHILD = 5


def run_celery_worker(ring_name: str, tmp_path: Path, procs: Processes, writer: WriterProcess,
                      n_tasks: int, per_child: int, extra_source: str = ""):
    """redis-server, the writer and `celery -A lstasks worker` (the README's tasks.py with the
    test's tasks), n_tasks tasks run and their results waited for, the worker and the writer
    stopped with SIGTERM.  Returns (records, the pid that ran each task, the worker)."""
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    celery = pytest.importorskip("celery")
    redis = pytest.importorskip("redis")

    port = free_port()
    broker, backend = f"redis://127.0.0.1:{port}/0", f"redis://127.0.0.1:{port}/1"
    server = procs.start("redis", [redis_server, "--port", str(port), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no", "--dir", str(tmp_path)])

    def redis_up() -> bool:
        if server.poll() is not None:
            raise AssertionError(f"redis-server exited:\n{procs.output(server)}")
        try:
            return redis.Redis(host="127.0.0.1", port=port, socket_timeout=1).ping()
        except redis.exceptions.ConnectionError:
            return False

    wait_for(redis_up, timeout=20, interval=0.05, what="redis-server")
    writer.start()

    source = readme_block("# tasks.py")
    source = replace_once(source, "redis://127.0.0.1:6379/0", broker)
    source = replace_once(source, "redis://127.0.0.1:6379/1", backend)
    source = replace_once(source, 'install("app"', f'install("{ring_name}"')
    (tmp_path / "lstasks.py").write_text(source + CELERY_TASKS + extra_source)

    worker = procs.start("celery", [
        sys.executable, "-m", "celery", "-A", "lstasks", "worker", "--pool", "prefork",
        "--concurrency", "2", "--max-tasks-per-child", str(per_child), "--loglevel", "WARNING",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
        "--hostname", f"{ring_name}@localhost"], env={"PYTHONPATH": str(tmp_path)})

    client = celery.Celery("lstasks", broker=broker, backend=backend)
    try:
        results = [client.send_task("lstasks.work", args=[i]) for i in range(n_tasks)]
        deadline = time.monotonic() + 90
        pids = []
        for r in results:
            left = deadline - time.monotonic()
            if worker.poll() is not None or left <= 0:
                raise AssertionError(f"worker exited or too slow:\n{procs.output(worker)[-3000:]}")
            pids.append(r.get(timeout=left))
    finally:
        client.close()
    assert procs.stop(worker) == 0
    assert writer.stop() == 0
    return read_records(tmp_path / "logs"), pids, worker


def check_task_records(records: list[dict], pids: list[int], per_child: int, worker_pid: int) -> None:
    std = Counter((r["msg"], r["pid"]) for r in by_logger(records, "lstasks.std"))
    task = Counter((r["msg"], r["pid"]) for r in by_logger(records, "lstasks.tasklog")
                   if r["level"] == "INFO")
    # every task's two records, exactly once each, from the pool child that ran it
    assert std == Counter({(f"std {i}", pid): 1 for i, pid in enumerate(pids)})
    assert task == Counter({(f"task {i}", pid): 1 for i, pid in enumerate(pids)})
    assert {r["fields"]["task_no"] for r in by_logger(records, "lstasks.std")} == set(range(len(pids)))
    # max_tasks_per_child replaced the children: far more of them than the first two
    assert len(set(pids)) >= -(-len(pids) // per_child)
    assert worker_pid not in set(pids)


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_celery_worker_and_every_pool_child_log_into_the_ring(ring_name, tmp_path, procs, writer):
    records, pids, worker = run_celery_worker(ring_name, tmp_path, procs, writer, N_TASKS, PER_CHILD)
    check_task_records(records, pids, PER_CHILD, worker.pid)
    # the worker itself (Celery's own INFO lines, below --loglevel WARNING) and print() in a task
    assert any(r["pid"] == worker.pid and r["logger"].startswith("celery") for r in records)
    assert [r["msg"] for r in records if r["logger"] == "celery.redirected"] == ["printed 0"]
    succeeded = [r for r in records if r["logger"] == "celery.app.trace" and "succeeded" in r["msg"]]
    assert len(succeeded) == N_TASKS
    # Celery's own stderr output stays, at --loglevel: the warning is there, INFO lines are not
    out = procs.output(worker)
    assert "console 0" in out
    assert "std 1" not in out and "task 1" not in out


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_celery_spawned_pool_children_log_into_the_ring(ring_name, tmp_path, procs, writer):
    # children started as fresh interpreters inherit nothing: they set up logging themselves
    records, pids, worker = run_celery_worker(
        ring_name, tmp_path, procs, writer, 8, 3,
        extra_source='\napp.conf.worker_pool_start_method = "spawn"\n')
    check_task_records(records, pids, 3, worker.pid)


# ---- gunicorn -----------------------------------------------------------------

WSGI_APP = '''
import logging
from urllib.parse import parse_qs

log = logging.getLogger("lsweb")


def app(environ, start_response):
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if environ["PATH_INFO"] == "/boom":
        raise RuntimeError("boom " + query["token"][0])
    rid = query["rid"][0]
    log.info("request %s", rid, extra={"rid": rid})
    body = rid.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''

N_REQUESTS = 400


def check_requests(records: list[dict], logger: str, answered: set[str]) -> None:
    """Every request answered 200 has exactly one record, and no request has two."""
    counts = Counter(r["fields"]["rid"] for r in by_logger(records, logger))
    twice = {rid for rid, n in counts.items() if n != 1}
    assert not twice, f"requests with more than one record: {sorted(twice)[:5]}"
    missing = answered - set(counts)
    assert not missing, f"{len(missing)} requests answered 200 have no record: {sorted(missing)[:5]}"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_gunicorn_workers_and_master_log_into_the_ring(ring_name, tmp_path, procs, writer):
    pytest.importorskip("gunicorn")
    import psutil

    port = free_port()
    conf = readme_block("# gunicorn.conf.py")
    conf = replace_once(conf, '"127.0.0.1:8000"', f'"127.0.0.1:{port}"')
    conf = replace_once(conf, 'install("app"', f'install("{ring_name}"')
    (tmp_path / "gunicorn.conf.py").write_text(conf)
    (tmp_path / "lsweb.py").write_text(WSGI_APP)
    writer.start()
    master = procs.start("gunicorn", [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                                      "lsweb:app"],
                         # gunicorn's control socket goes in the test's directory, not in ~
                         env={"PYTHONPATH": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path),
                              "HOME": str(tmp_path)})
    wait_http(port, master, procs)
    first = wait_children(master.pid, 4, what="4 gunicorn workers")
    victim = min(first)

    def kill_a_worker() -> None:
        os.kill(victim, signal.SIGKILL)

    answered, failed = drive(port, N_REQUESTS, during=kill_a_worker, at=N_REQUESTS // 3)
    assert failed <= 8, f"{failed} requests failed"  # at most those in flight on the killed worker
    # gunicorn replaced the killed worker
    now = wait_children(master.pid, 4, without=victim, what="gunicorn to replace the killed worker")
    assert not psutil.pid_exists(victim) or psutil.Process(victim).status() == psutil.STATUS_ZOMBIE

    token = uuid.uuid4().hex
    status, _ = get(port, f"/boom?token={token}")
    assert status == 500
    answered |= drive(port, 40)[0]  # the replacement serves beside the others

    assert procs.stop(master) == 0
    assert writer.stop() == 0
    records = read_records(tmp_path / "logs")
    check_requests(records, "lsweb", answered)
    served_by = {r["pid"] for r in by_logger(records, "lsweb")}
    assert served_by <= first | now and victim in served_by
    errors = by_logger(records, "gunicorn.error")
    # the failed request's traceback, from the worker, via gunicorn.error
    boom = [r for r in errors if f"RuntimeError: boom {token}" in r["fields"].get("exc_info", "")]
    assert len(boom) == 1 and boom[0]["msg"].startswith("Error handling request")
    assert boom[0]["pid"] in now
    # the master's own lines: the killed worker, and the shutdown
    assert any(r["pid"] == master.pid and str(victim) in r["msg"] for r in errors)
    assert any(r["pid"] == master.pid and "Shutting down" in r["msg"] for r in errors)


# ---- uvicorn ------------------------------------------------------------------

ASGI_APP = '''

# ---- the test's application, in place of the recipe's ----
from urllib.parse import parse_qs


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    query = parse_qs(scope["query_string"].decode())
    if scope["path"] == "/boom":
        raise RuntimeError("boom " + query["token"][0])
    rid = query["rid"][0]
    logging.getLogger("lsasgi").info("request %s", rid, extra={"rid": rid})
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": rid.encode()})
'''


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_uvicorn_workers_log_into_the_ring(ring_name, tmp_path, procs, writer):
    pytest.importorskip("uvicorn")

    port = free_port()
    source = readme_block("# main.py")
    source = replace_once(source, 'install("app"', f'install("{ring_name}"')
    (tmp_path / "lsasgi.py").write_text(source + ASGI_APP)
    writer.start()
    # the README's command line, with the test's module and port
    server = procs.start("uvicorn", [sys.executable, "-m", "uvicorn", "lsasgi:app", "--host",
                                     "127.0.0.1", "--port", str(port), "--workers", "2"],
                         env={"PYTHONPATH": str(tmp_path)})
    wait_http(port, server, procs)
    # its workers, not multiprocessing's resource tracker
    first = wait_children(server.pid, 2, marker="spawn_main", what="2 uvicorn workers")
    victim = min(first)

    def kill_a_worker() -> None:
        os.kill(victim, signal.SIGKILL)

    answered, failed = drive(port, N_REQUESTS, during=kill_a_worker, at=N_REQUESTS // 3)
    assert failed <= 8, f"{failed} requests failed"  # at most those in flight on the killed worker
    # uvicorn's supervisor replaced the killed worker
    now = wait_children(server.pid, 2, without=victim, marker="spawn_main",
                        what="uvicorn to replace the killed worker")
    (new,) = now - first
    wait_for(lambda: f"Started server process [{new}]" in procs.output(server), timeout=30,
             interval=0.05, what="the replacement worker to start")
    token = uuid.uuid4().hex
    status, _ = get(port, f"/boom?token={token}")
    assert status == 500
    answered |= drive(port, 40)[0]
    workers = first | now

    assert procs.stop(server) == 0
    assert writer.stop() == 0
    records = read_records(tmp_path / "logs")
    check_requests(records, "lsasgi", answered)
    assert {r["pid"] for r in by_logger(records, "lsasgi")} <= workers
    errors = by_logger(records, "uvicorn.error")
    boom = [r for r in errors if f"RuntimeError: boom {token}" in r["fields"].get("exc_info", "")]
    assert len(boom) == 1 and boom[0]["msg"].startswith("Exception in ASGI application")
    assert boom[0]["pid"] in workers
    # the workers' own uvicorn.error lines: each worker's, the replacement's too
    started = {r["pid"] for r in errors if r["msg"].startswith("Started server process")}
    assert started == workers and len(workers) == 3
