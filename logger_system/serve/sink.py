"""One client's directory, DIR/<client>/: its stream of records and where it stands.

The invariant that makes `ls://` exactly once:

    next_n (what WELCOME and ACK say) is read back from the files themselves, and
    moves only after the records below it are in a file and fsynced.

The directory is one stream of the writer's own file format (files/format.py, written by
files/rotating.RotatingFiles with fsync on every write), so its next_n is where the files
end: the `n` after the last complete line (plaintext), or the `next_n` of the last whole
chunk header (sealed: readable without the key, so recipient mode works too).  A server
killed anywhere leaves a torn tail at most; the restart cuts it (as a writer does) and
says the next_n of what is whole.  A batch killed before its fsync is not acknowledged
and is sent again; one killed after the fsync and before its ACK is in the files, the
client resends it, and every record numbered below next_n is skipped.  No second state
file exists that could disagree with the files.

The source: a directory holds the records of one source stream (the HELLO's tag), and
that tag is the `ring id` in every file's name and sealed header, written with the
records.  A HELLO of another tag under the same client name is refused (SourceRefused,
counted `refused_source`): two streams numbered independently cannot share one sequence
of `n`, and letting a certificate start a new stream in its directory would let whoever
holds it bury what is there.  A legitimately new stream (the client's log directory was
recreated) is taken on by the operator: move DIR/<client> aside, the next HELLO starts a
fresh one.

A gap (a batch that starts past next_n, or a header `gap`): the records in between never
reach this server.  It is recorded the way the writer records a loss: the current file is
finished, and the next one opens with a header that says how many records were lost just
before its first `n` (sealed.PREV_LOSS; in plaintext, the gap in `n` at a file boundary),
so `verify` reports it until an operator accepts it (--accept-loss).

Chain heads: a batch's header says where the source's sealed chain stood after its
records (`head`); the server appends it, with the next_n it goes with, to
DIR/.serve/heads/<client>.jsonl, fsynced before the ACK, so that the server holds points of
the source's chain that a tail cut or rewritten on the source's host no longer matches.

A record the server's own policy drops keeps its number as a stub (ingest.keep_numbered).
One lock per client: connections of one client (a reconnect while the old socket is not
yet gone) are served one batch at a time, and the skip below next_n keeps them from
writing anything twice.
"""
from __future__ import annotations

import errno
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .. import sealed
from ..errors import LoggerSystemError
from ..files.chain import log_files
from ..files.format import SEQ_N, Sealing
from ..files.format import of as format_of
from ..files.rotating import RotatingFiles
from . import say
from ..pipeline import Batch
from ..pipeline.sanitize import Sanitize
from ..pipeline.stages import FormatJsonl
from ..policy import Policy
from ..rotation import RotationPolicy
from ..ship import ls
from ..writer import lock_dir, prepare_dir
from . import ingest


class SourceRefused(LoggerSystemError):
    """A HELLO whose source tag is not the one this client's directory holds."""


@dataclass
class Written:
    next_n: int
    received: int = 0
    duplicates: int = 0
    written: int = 0
    lost: int = 0
    sanitized: int = 0
    sanitize_dropped: int = 0


class ClientSink:
    def __init__(self, directory: Path, name: str, sealing: Sealing | None, policy: Policy,
                 rotation: RotationPolicy, keep: int | None = None, heads: Path | None = None) -> None:
        self.name = name
        self.heads = heads  # where the chain heads of this client's batches are appended
        self.dir = prepare_dir(directory)
        self._lock_fd = lock_dir(self.dir)  # `verify` tells a live directory by it
        self.lock = threading.Lock()
        self.format = format_of(sealing)
        self.source = self._source_of_files()
        self.files = RotatingFiles(self.dir, self.source or 0, rotation, keep, "batch", 1.0, self.format,
                                   keep_min_age=None)
        end = self.format.resume(self.dir, self.source or 0)
        for event, fields in end.events:
            say(event, client=name, **fields)
        self.next_n = end.next_n or 0
        self.format.next_n = self.next_n
        if self.source is None:
            self.source = self._source_of_files()  # resume may have removed or moved a file
        if self.format.opens_at_start():
            self.files._open()  # the header says where the crashed server's file ended, now
        self._lost = 0  # a loss marked for the next file and not yet in one
        self.sanitize = Sanitize(policy) if policy.enabled else None
        self.formatter = FormatJsonl(host=name)

    def _source_of_files(self) -> int | None:
        files = log_files(self.dir, self.format.suffix)
        return files[-1].ring_id if files else None

    def welcome(self, source: int) -> int:
        """The next_n for a HELLO of `source` (raises SourceRefused)."""
        with self.lock:
            self._claim(source)
            return self.next_n

    def _claim(self, source: int) -> None:
        if self.source is None:
            self.source = source
            self.files.ring_id = source
        elif self.source != source:
            raise SourceRefused(
                f"source {source:016x} is not the source {self.source:016x} whose records "
                f"{self.dir} holds: one directory holds one source; give each writer its own "
                "certificate name, or move the directory aside to start a new stream")

    def write(self, source: int, b: ls.Batch) -> Written:
        """Write the batch's records numbered next_n on (those below are a resend), fsynced;
        ProtocolError for a batch that is not well formed (nothing of it written)."""
        with self.lock:
            if self._lock_fd is None:  # closed (the server stops): no file is opened again
                raise OSError(errno.ESHUTDOWN, "the server is stopping")
            self._claim(source)
            out = Written(self.next_n, received=b.count)
            end_n = b.first_n + b.count
            if end_n <= self.next_n:
                out.duplicates = b.count
                return out
            skip = out.duplicates = max(self.next_n - b.first_n, 0)
            lines = b.lines
            if skip:
                cut = 0
                for _ in range(skip):
                    cut = lines.index(b"\n", cut) + 1
                lines = lines[cut:]
            first = b.first_n + skip
            batch = ingest.decode(lines, first, b.count - skip)
            lost = first - self.next_n if first > self.next_n else (b.gap if not skip else 0)
            if self.sanitize is not None:
                before = Batch(meta=batch.meta.copy(), buf=batch.buf, end=0, n=first)
                kept_before = batch.keep.copy()
                batch = self.sanitize(batch)
                batch = ingest.keep_numbered(batch, before, kept_before)
                out.sanitized = batch.delta.sanitized
                out.sanitize_dropped = batch.delta.sanitize_dropped
            batch = self.formatter(batch)
            if lost:
                self._mark_loss(first, lost)
            out.lost = lost
            self.files.rotate_if_due(time.monotonic())
            try:
                self.files.write(batch.out)  # fsync'd: RotatingFiles with fsync "batch"
            except OSError:
                self._written_part(batch.out[:self.files.progress])
                raise
            self.next_n = self.format.next_n = end_n
            self._lost = 0
            if b.head is not None and self.heads is not None:
                self._record_head(b.head, end_n)
            out.written = b.count - skip
            out.next_n = end_n
            return out

    HEAD_MAX = 1024  # bytes of a head kept; a longer one is a client's junk, not a chain head

    def _record_head(self, head: dict, next_n: int) -> None:
        line = json.dumps({"next_n": next_n, "head": head, "at": round(time.time(), 3)},
                          separators=(",", ":"), sort_keys=True)
        if len(line) > self.HEAD_MAX:
            line = json.dumps({"next_n": next_n, "head": None, "at": round(time.time(), 3),
                               "note": "head over the size limit, not kept"})
        self.heads.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.heads, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line.encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)

    def _written_part(self, data: bytes) -> None:
        """A write failed after part of the batch reached the files (a rotation between its
        pieces): next_n moves past what is there, or the resend would write it twice."""
        end = data.rfind(b"\n", 0, len(data) - 1) + 1
        m = SEQ_N.match(data, end)
        if m and m.group(2) is not None:
            self.next_n = self.format.next_n = int(m.group(2)) + 1
            self._lost = 0

    def _mark_loss(self, first: int, lost: int) -> None:
        """The next file starts with a header recording `lost` records just before `first`."""
        self.files.close()
        # set, not added: a loss still pending is of a write that failed, next_n did not move,
        # and this gap (measured from the same next_n) covers it
        self._lost = lost
        self.format.mark(sealed.PREV_LOSS, self._lost)
        say("records_lost", client=self.name, first_n=first - lost, count=lost,
            note="the client's stream skips these numbers: they never reached this server")

    def tick(self, now: float) -> None:
        with self.lock:
            if self._lock_fd is None:
                return
            self.files.tick(now)
            self.files.rotate_if_due(now)

    def close(self) -> None:
        with self.lock:
            try:
                self.files.close()
            except OSError as exc:
                say("close_failed", client=self.name, error=exc.strerror)
                self.files.abandon()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
