"""The server's counters: kept in memory, saved to DIR/.serve/stats.json, read by `stats`.

The file is replaced whole (written to a temporary name, fsynced, renamed over the old
one), so a reader sees one complete snapshot or the one before it, never a torn one.  The
server saves it at most every `every` seconds while counters move and when it stops; a
server that starts again loads it and counts on, so the counters are totals over the
server's life in that directory.  What a SIGKILL costs is the last half second of counts,
never records: nothing about delivery is decided from here (next_n comes from the files, see
sink.py).  `written` is even made whole again: each client's entry also says where its
stream stood (`next_n`) when it was saved, and a server that starts finds in the files how
far past that its killed predecessor wrote (`reconcile`).

`clients` has one entry per client name that passed the handshake (the names come from
certificates the CA issued and the allowlist admitted, so the map is bounded by them);
refusals before a name is known are counted at the top level, by reason.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from ..errors import CorruptRecordError

STATE_DIR = ".serve"
STATS_FILE = "stats.json"

CLIENT_COUNTERS = {
    "received": "Records received in batches (resends included).",
    "written": "Records written to the client's directory.",
    "duplicates": "Records received again after they were written (a resend), skipped.",
    "refused_rate": "Syslog records dropped past --rate-limit.",
    "malformed": "Frames or records that broke the protocol; each closed its connection.",
    "lost": "Records the client's stream skipped (a gap in n), recorded as a loss.",
    "gaps": "Gaps in the client's stream.",
    "sanitized": "Records in which the server's sanitizer removed something.",
    "sanitize_dropped": "Records the server's policy dropped (kept as numbered stubs).",
    "refused_source": "HELLOs of a source other than the one the client's directory holds.",
    "timeouts": "Connections closed for a frame not completed, or no frame, in time.",
    "write_errors": "Batches the server could not write (not acknowledged, sent again).",
    "revoked": "Connections closed because a reload no longer allows the client's name.",
    "connections": "Connections that passed the handshake.",
    "batches": "Batches received.",
}
TOP_COUNTERS = {
    "handshake_failures": "Connections refused or failed during the TLS handshake (any reason).",
    "handshake_timeouts": "Handshakes not finished within --handshake-timeout.",
    "handshake_evicted": "Handshakes given up to make room under --max-handshakes.",
    "connections_refused": "Connections closed after the handshake: the server, or the client's share "
                           "of it, was full.",
}
# the reasons behind handshake_failures
REFUSALS = ("tls_error", "no_certificate", "untrusted", "no_name", "not_allowed", "unsafe_name",
            "timeout", "evicted")


def stats_path(directory: Path) -> Path:
    return Path(directory) / STATE_DIR / STATS_FILE


class Counters:
    def __init__(self, directory: Path, every: float = 0.5) -> None:
        self.path = stats_path(directory)
        self.every = every
        self._lock = threading.Lock()
        self.clients: dict[str, dict[str, float]] = {}
        self.top: dict[str, int] = dict.fromkeys(TOP_COUNTERS, 0)
        self.refused: dict[str, int] = dict.fromkeys(REFUSALS, 0)
        self.connected: dict[str, int] = {}
        self.positions: dict[str, int] = {}  # client -> its stream's next_n
        self.started = time.time()
        self._dirty = True
        self._saved = 0.0
        self._load()

    def _load(self) -> None:
        try:
            old = read(self.path.parent.parent)
        except (FileNotFoundError, CorruptRecordError):
            return
        for name, c in (old.get("clients") or {}).items():
            if isinstance(c, dict):
                self.client(name).update({k: v for k, v in c.items() if k in CLIENT_COUNTERS
                                          and isinstance(v, (int, float))})
                if type(c.get("next_n")) is int:
                    self.positions[name] = c["next_n"]
        for k in TOP_COUNTERS:
            if isinstance(old.get(k), int):
                self.top[k] = old[k]
        for k, v in (old.get("handshake_refused") or {}).items():
            if k in self.refused and isinstance(v, int):
                self.refused[k] = v

    def client(self, name: str) -> dict:
        c = self.clients.get(name)
        if c is None:
            c = self.clients[name] = dict.fromkeys(CLIENT_COUNTERS, 0)
        return c

    def add(self, name: str, next_n: int | None = None, **counts: float) -> None:
        """Add to a client's counters; next_n: where its stream stands with them (one
        snapshot has both, or reconcile would count a batch twice)."""
        with self._lock:
            if next_n is not None and next_n > self.positions.get(name, -1):
                self.positions[name] = next_n
            c = self.client(name)
            for k, v in counts.items():
                c[k] += v
            c["last_seen"] = time.time()
            self._dirty = True

    def reconcile(self, name: str, next_n: int) -> None:
        """A client's directory opened: records the files hold past the saved position were
        written by a server killed before it saved its counters.  No saved position: none
        of them was counted (a client's position is saved with its first counted batch), so
        the directory's whole stream is counted from 0."""
        with self._lock:
            saved = self.positions.get(name, 0)
            if next_n > saved:
                self.client(name)["written"] += next_n - saved
            self.positions[name] = next_n
            self._dirty = True

    def refuse(self, reason: str) -> None:
        with self._lock:
            self.top["handshake_failures"] += 1
            self.refused[reason] = self.refused.get(reason, 0) + 1
            if reason == "timeout":
                self.top["handshake_timeouts"] += 1
            elif reason == "evicted":
                self.top["handshake_evicted"] += 1
            self._dirty = True

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.top[key] += n
            self._dirty = True

    def connection(self, name: str, delta: int) -> None:
        with self._lock:
            self.connected[name] = self.connected.get(name, 0) + delta
            self._dirty = True

    def snapshot(self) -> dict:
        with self._lock:
            clients = {}
            for name, c in sorted(self.clients.items()):
                d = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in c.items()}
                d["connected"] = self.connected.get(name, 0)
                if name in self.positions:
                    d["next_n"] = self.positions[name]
                clients[name] = d
            return {"clients": clients, **self.top, "handshake_refused": dict(self.refused),
                    "server": {"pid": os.getpid(), "started": self.started, "updated": time.time()}}

    def save(self, now: float, force: bool = False) -> None:
        """Replace the file with a snapshot, if anything moved (and `every` has passed)."""
        if not force and (not self._dirty or now - self._saved < self.every):
            return
        self._dirty = False
        self._saved = now
        data = json.dumps(self.snapshot(), sort_keys=True).encode()
        self.path.parent.mkdir(mode=0o700, exist_ok=True)
        tmp = self.path.with_name(f".{STATS_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)


def read(directory: Path) -> dict:
    """The counters a server saved in its --dir (FileNotFoundError when there are none)."""
    path = stats_path(directory)
    data = path.read_bytes()
    try:
        obj = json.loads(data)
    except ValueError:
        raise CorruptRecordError(f"{path}: not the JSON the server writes") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("clients"), dict):
        raise CorruptRecordError(f"{path}: not the counters the server writes")
    return obj
