"""Shared fixtures: a fresh ring name per test, and a real writer process."""
from __future__ import annotations

import importlib.machinery
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _test_the_installed_package() -> None:
    """Run from a source tree that has no compiled extension (an unpacked sdist, or the
    repository after a plain `pip install .`), `python -m pytest` would import that tree's
    logger_system, which cannot load: it has no _lsr_native.  The package to test is then the
    installed one.  The tree moves to the end of sys.path (perf/ stays importable from it, and
    nothing puts it back in front), and child processes get PYTHONSAFEPATH, so that neither
    `python -m logger_system` nor `python -c` puts their working directory first either.
    An editable install builds the extension into the tree: the tree is the package, and
    nothing changes."""
    source = ROOT / "logger_system"
    built = any((source / f"_lsr_native{suffix}").exists()
                for suffix in importlib.machinery.EXTENSION_SUFFIXES)
    if built or not source.is_dir():
        return
    sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != ROOT] + [str(ROOT)]
    os.environ["PYTHONSAFEPATH"] = "1"


_test_the_installed_package()

from logger_system.files.reader import iter_records  # noqa: E402
from logger_system.ring import Ring, unlink, writer_attached  # noqa: E402


def cli(*args: str) -> list[str]:
    """The command line that runs `logger-system ARGS` with this interpreter, whatever the
    child's working directory: -P keeps that directory off sys.path, so a source tree there
    never stands in for the package under test (editable or installed)."""
    return [sys.executable, "-P", "-m", "logger_system", *map(str, args)]


@pytest.fixture
def ring_name():
    name = f"lstest-{uuid.uuid4().hex[:12]}"
    yield name
    unlink(name)


class WriterProcess:
    """`logger-system writer` as a child process, with the test's options."""

    def __init__(self, ring: str, directory: Path, *extra: str, plaintext: bool = True,
                 prefix: tuple[str, ...] = ()) -> None:
        self.prefix = list(prefix)  # a command the writer runs under (e.g. setpriv), exec'd
        self.ring = ring
        self.dir = directory
        self.extra = [str(e) for e in extra] + (["--plaintext"] if plaintext else [])
        self.proc: subprocess.Popen | None = None
        self.err_path: Path | None = None

    def start(self, wait: bool = True) -> "WriterProcess":
        cmd = [*self.prefix, *cli("writer", "--ring", self.ring, "--dir", self.dir, *self.extra)]
        # a file, not a pipe: a writer must never block on a full pipe nobody reads
        self.err_path = self.dir.parent / f"writer-{self.ring}-{time.monotonic_ns()}.err"
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err,
                                         stdin=subprocess.DEVNULL)
        if wait:
            self.wait_attached()
        return self

    def wait_attached(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not writer_attached(self.ring, self.proc.pid):
            if self.proc.poll() is not None:
                raise AssertionError(f"writer exited {self.proc.returncode}: {self.stderr()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"writer did not attach in time: {self.stderr()}")
            time.sleep(0.02)

    def stop(self, timeout: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        return rc

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def stderr(self) -> str:
        return self.err_path.read_text() if self.err_path and self.err_path.exists() else ""

    def events(self, name: str) -> list[dict]:
        """The writer's stderr events of this name (its JSON lines with "writer": name)."""
        out = []
        for line in self.stderr().splitlines():
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if isinstance(d, dict) and d.get("writer") == name:
                out.append(d)
        return out


def proc_state(pid: int) -> str | None:
    """The state letter of a process in /proc/PID/stat ("T": stopped), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2:][:1].decode()


@pytest.fixture
def writer_factory(ring_name, tmp_path):
    made: list[WriterProcess] = []

    def make(*extra: str, directory: Path | None = None, ring: str | None = None,
             plaintext: bool = True) -> WriterProcess:
        w = WriterProcess(ring or ring_name, directory or tmp_path / "logs", *extra, plaintext=plaintext)
        made.append(w)
        return w

    yield make
    for w in made:
        if w.proc and w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait(10)


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.02, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def read_records(directory: Path) -> list[dict]:
    return list(iter_records([directory]))


def stats(ring: str) -> dict:
    r = Ring(ring, create=False)
    try:
        return r.stats().as_dict()
    finally:
        r.close()
