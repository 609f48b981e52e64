"""`logger-system demo`: a writer and several producer processes on defaults.

Starts a real writer process, forks producers that log a realistic mix of
web-service records (some carrying PII, as real logs do), stops everything
cleanly and shows what was written and whether the counters add up.
"""
from __future__ import annotations

import multiprocessing
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from .keys import keygen, load_keyring
from .files.reader import iter_records, verify
from .ring import Ring, unlink, writer_attached

_PATHS = ["/api/v1/orders", "/api/v1/users/me", "/api/v1/search", "/checkout", "/login"]
_USERS = ["alice@example.com", "bob@example.org", "carol@example.net", "dave@example.com"]


def _produce(ring: str, worker: int, seconds: float, results) -> None:
    import logger_system

    log = logger_system.connect(ring, name=f"web.worker{worker}")
    rng = random.Random(worker)
    attempted = accepted = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(200):
            attempted += 1
            roll = rng.random()
            path = rng.choice(_PATHS)
            if roll < 0.90:
                ok = log.info("%s %s -> %d in %.1f ms", "GET", path, 200, rng.uniform(1, 90),
                              request_id=uuid.UUID(int=rng.getrandbits(128)).hex, worker=worker)
            elif roll < 0.95:
                ok = log.warning("login for %s from %s failed", rng.choice(_USERS),
                                 f"203.0.113.{rng.randint(1, 254)}", attempt=rng.randint(1, 5))
            elif roll < 0.99:
                ok = log.info("payment accepted card=%s amount=%.2f", "4111 1111 1111 1111",
                              rng.uniform(5, 500), user=rng.choice(_USERS))
            else:
                ok = log.error("upstream timeout calling %s", "https://svc:hunter2@pay.internal/charge",
                               retry=True)
            accepted += ok
        time.sleep(0.01)  # a service, not a benchmark: leave room to breathe
    results.put((worker, attempted, accepted))


def run_demo(seconds: float = 3.0, producers: int = 4, keep_dir: str | None = None) -> int:
    """Run the demo; its directory (logs and key) is removed at the end unless `keep_dir` names one."""
    base = Path(keep_dir) if keep_dir else Path(tempfile.mkdtemp(prefix="logger-system-demo-"))
    ring = f"demo-{uuid.uuid4().hex[:8]}"
    try:
        return _run(ring, base, seconds, producers, keep=bool(keep_dir))
    finally:
        unlink(ring)
        if not keep_dir:
            shutil.rmtree(base, ignore_errors=True)


def writer_command(*args: str) -> list[str]:
    """The command that runs `logger-system` in a child process.

    `-P`: the working directory is not put on sys.path, so a source tree there
    (the root of a clone, unbuilt) can never shadow the installed package.
    """
    return [sys.executable, "-P", "-m", "logger_system", *args]


def _run(ring: str, base: Path, seconds: float, producers: int, keep: bool) -> int:
    directory = base / "logs"
    print(f"demo: ring {ring!r}, writing to {directory}")
    err_path = base / "writer.err"
    base.mkdir(parents=True, exist_ok=True)
    key_path = base / "demo.key"
    keygen(key_path)
    keyring = load_keyring(key_path)
    print(f"demo: files are sealed with a new key, {key_path} (mode 0600)"
          + ("" if keep else "; both are removed at the end (--dir DIR keeps them)"))
    with open(err_path, "wb") as err:
        writer = subprocess.Popen(
            writer_command("writer", "--ring", ring, "--dir", str(directory), "--key", str(key_path),
                           "--rotate-size", "4MiB"),
            stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
    try:
        try:
            _wait_for_writer(ring, writer)
        except _WriterFailed as exc:
            _print_failure(str(exc), err_path)
            return 1
        ctx = multiprocessing.get_context("fork")
        results = ctx.Queue()
        procs = [ctx.Process(target=_produce, args=(ring, w, seconds, results)) for w in range(producers)]
        print(f"demo: {producers} producer processes logging for {seconds:g}s ...")
        for p in procs:
            p.start()
        counts = [results.get(timeout=seconds + 60) for _ in procs]
        for p in procs:
            p.join(30)
        writer.send_signal(signal.SIGTERM)
        rc = writer.wait(60)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    if rc != 0:
        _print_failure(f"the writer exited with {rc}", err_path)
        return 1

    files = sorted(directory.iterdir())
    records = list(iter_records([directory], keyring=keyring))
    checked = verify([directory], keyring=keyring)
    print(f"\ndemo: {len(files)} file(s), {sum(f.stat().st_size for f in files):,} bytes:")
    shown = files if len(files) <= 5 else files[:3] + [None] + files[-2:]
    for f in shown:
        if f is None:
            print(f"  ... {len(files) - 5} more")
        else:
            print(f"  {f.name}  {f.stat().st_size:>10,} bytes  mode {oct(f.stat().st_mode & 0o777)}")
    ok = not checked.faults
    print(f"demo: verify: {checked.files - checked.failed} of {checked.files} file(s) authentic and complete")
    print(f"demo: a record's text in the raw files: "
          f"{'FOUND' if any(b'GET /api' in f.read_bytes() for f in files) else 'nowhere (sealed)'}")
    print("\ndemo: a few of the records, as `logger-system cat --key` prints them:")
    sample = records[:2]
    for level in ("WARNING", "ERROR"):
        sample += [r for r in records if r["level"] == level][:1]
    sample += [r for r in records if "card=" in r["msg"]][:1]
    sample += [r for r in records if "login for" in r["msg"]][:1]
    for r in {r["seq"]: r for r in sample}.values():
        print("  " + _short(r))
    r = Ring(ring, create=False)
    st = r.stats().as_dict()
    r.close()
    attempted = sum(c[1] for c in counts)
    print("\ndemo: counters")
    for key in ("committed", "written", "dropped", "abandoned", "malformed", "truncated",
                "writer_errors", "sanitized", "high_water_bytes"):
        print(f"  {key:<18}{st[key]:>12,}")
    hits = ", ".join(f"{k}={v:,}" for k, v in st["rule_hits"].items() if v)
    print(f"  sanitizer hits by rule: {hits or 'none'}")
    balanced = attempted == st["written"] + st["dropped"] + st["abandoned"] + st["malformed"]
    print(f"\ndemo: producers attempted {attempted:,} records; written {len(records):,} lines; "
          f"accounting identity {'holds' if balanced and len(records) == st['written'] else 'BROKEN'}")
    leaked = [r for r in records if "4111 1111 1111 1111" in r["msg"] or "hunter2" in r["msg"]
              or any(u in r["msg"] for u in _USERS)]
    print(f"demo: records with the logged card number, password or e-mail left in them: {len(leaked)}")
    return 0 if balanced and not leaked and ok else 1


def _short(rec: dict) -> str:
    import json

    line = json.dumps(rec)
    return line if len(line) <= 200 else line[:197] + "..."


class _WriterFailed(Exception):
    pass


def _print_failure(what: str, err_path: Path) -> None:
    text = err_path.read_text(errors="replace").strip() if err_path.exists() else ""
    print(f"demo: {what}; its messages:\n{text or '(none)'}", file=sys.stderr)


def _wait_for_writer(ring: str, writer: subprocess.Popen) -> None:
    deadline = time.monotonic() + 20
    while not writer_attached(ring, writer.pid):
        if writer.poll() is not None:
            raise _WriterFailed(f"the writer exited with {writer.returncode}")
        if time.monotonic() > deadline:
            raise _WriterFailed("the writer did not start within 20s")
        time.sleep(0.02)
