"""The writer process: drains the ring in batches into rotated files.

The only module that owns signals and files.  Its guarantee, kept by the
order of three steps for every batch:

    1. write the batch's lines to the current file (and fsync, per policy),
    2. release the batch in the ring: its totals (written, malformed, ...)
       are published together with the new head,
    3. only then are its bytes zeroed and reused by producers.

A writer killed anywhere leaves records either released (in a file) or still
in the ring.  The next writer reads the newest file's last complete line: a
record of this ring at or before that `seq` is in a file already and is not
written again; a torn last line is cut off, its records are still in the ring.

Every record written gets `n`, its number in the directory's stream: 0, 1, 2, ...
across files, rings and restarts.  Each release also publishes in the ring where
the stream stands (its tag, the last seq written, the next n), so a writer that
starts finds records the ring released but the files no longer hold (a cut
tail): it counts them as lost, says so, and numbers on past them, so that the
gap in `n` is exactly where they were.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import signal
import stat
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import sealed
from ._native import check, ffi, lib
from .access import AccessFilter
from .config import WriterConfig
from .health import WRITER_LOGGER, HealthMonitor
from .errors import ConfigError
from .keys import Keyring, Recipient, load_keyring, parse_recipient
from .pipeline import Batch, Delta, run
from .pipeline.sanitize import Sanitize, counter_names
from .pipeline.stages import FormatJsonl, LevelFilter, SkipWritten
from .policy import Policy
from .policy import load as load_policy
from .producer import Producer
from .record import META_DTYPE
from .ring import Ring
from .rotation import LogFile, RotationPolicy, next_file, to_delete

PLAIN_SUFFIX = "jsonl"


def path_of(directory: Path, f: LogFile) -> Path:
    return directory / f.name
_SEQ = re.compile(rb'\{"seq":(\d+),')  # match() anchors it where it is asked to look
_SEQ_N = re.compile(rb'\{"seq":(\d+),(?:"n":(\d+),)?')
_META_SIZE = META_DTYPE.itemsize


def _say(event: str, **fields) -> None:
    """The writer's own diagnostics: one JSON object per line on stderr."""
    fields = {"writer": event, **fields}
    print(json.dumps(fields, default=str), file=sys.stderr, flush=True)


def prepare_dir(path: Path) -> Path:
    """Create the log directory 0700, or tighten one we own; refuse one we do not."""
    path = Path(path)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"cannot use log directory {path}: {exc.strerror}") from None
    except ValueError as exc:  # a NUL in the path
        raise ConfigError(f"cannot use log directory {str(path)!r}: {exc}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"log directory {path} is not a directory")
    if st.st_uid != os.geteuid():
        raise ConfigError(f"log directory {path} belongs to uid {st.st_uid}, not to this user")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def lock_dir(directory: Path) -> int:
    """Hold the log directory for this writer: a second writer, of any ring, is refused
    (two would number, rotate and remove each other's files).  The lock is a flock on the
    directory itself, so nothing is added to it, and it goes with the process however it
    ends.  Returns the descriptor that holds it."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"cannot lock log directory {directory}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = _flock_holder(os.fstat(fd))
        os.close(fd)
        raise ConfigError(f"log directory {directory} is in use by another writer"
                          f"{f' (pid {holder})' if holder else ''}: one writer per directory") from None
    return fd


def _flock_holder(st: os.stat_result) -> int | None:
    """The pid holding a flock on the file of `st`, from /proc/locks (None if not found)."""
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            for line in f:
                parts = line.split()
                if "FLOCK" in parts and want in parts:
                    i = parts.index(want)
                    if parts[i - 1].isdecimal():
                        return int(parts[i - 1])
    except OSError:
        pass
    return None


def log_files(directory: Path, suffix: str | None = None) -> list[LogFile]:
    """The log files in a directory, in write order."""
    found = []
    for name in os.listdir(directory):
        f = LogFile.parse(name)
        if f is not None and (suffix is None or f.suffix == suffix):
            found.append(f)
    return sorted(found)


def _rfind_newline(f, before: int) -> int:
    """Index of the last newline before `before`, or -1."""
    pos = before
    while pos > 0:
        start = max(0, pos - (1 << 16))
        f.seek(start)
        i = f.read(pos - start).rfind(b"\n")
        if i >= 0:
            return start + i
        pos = start
    return -1


def last_seq_in(path: Path, repair: bool) -> int | None:
    """The seq of the last complete line of a file; with repair, cut a torn tail."""
    return last_line_in(path, repair)[0]


def last_line_in(path: Path, repair: bool) -> tuple[int | None, int | None]:
    """(seq, n) of the last complete line of a file (n None in a line written before
    records were numbered); with repair, cut a torn tail."""
    with open(path, "r+b" if repair else "rb") as f:
        size = f.seek(0, os.SEEK_END)
        end = _rfind_newline(f, size)
        if repair and end + 1 < size:
            f.truncate(end + 1)
            _say("cut_torn_tail", file=str(path), bytes=size - end - 1)
        while end >= 0:
            start = _rfind_newline(f, end) + 1
            f.seek(start)
            m = _SEQ_N.match(f.read(min(64, end - start)))
            if m:
                return int(m.group(1)), (int(m.group(2)) if m.group(2) is not None else None)
            end = start - 1
    return None, None


def n_of_last_line(text: bytes) -> int | None:
    """The n of the last line in text (JSONL lines, each ending in a newline)."""
    end = len(text) - 1 if text.endswith(b"\n") else len(text)
    while end > 0:
        start = text.rfind(b"\n", 0, end) + 1
        m = _SEQ_N.match(text, start)
        if m:
            return int(m.group(2)) if m.group(2) is not None else None
        end = start - 1
    return None


def plain_stream_tag(directory: Path) -> int:
    """A plaintext directory stream's tag in the ring: from its resolved path."""
    tag = int.from_bytes(hashlib.sha256(str(Path(directory).resolve()).encode()).digest()[:8], "little")
    return tag or 1


def sealed_stream_tag(stream_id: bytes) -> int:
    return int.from_bytes(stream_id[:8], "little") or 1


def move_aside(path: Path) -> Path:
    """Rename a damaged file to `<name>.damaged` (never over another file); returns the new path."""
    target = path.with_name(path.name + ".damaged")
    k = 1
    while target.exists():
        target = path.with_name(f"{path.name}.damaged.{k}")
        k += 1
    os.rename(path, target)
    return target


@dataclass
class Sealing:
    """How files are sealed, and where the sequence stands (the predecessor of the next file)."""

    keyring: Keyring | None = None
    recipients: tuple[Recipient, ...] = ()
    compress: bool = False
    stream_id: bytes = field(default_factory=lambda: os.urandom(16))
    prev: tuple[bytes, bytes, int, int] = (bytes(16), bytes(32), 0, 0)  # id, digest, chunks, flags
    lost: int = 0  # records lost just before the next file (prev flags then hold PREV_LOSS)


class RotatingFiles:
    """The current output file, rotation, retention and fsync; sealed when `sealing` is given."""

    def __init__(self, directory: Path, ring_id: int, policy: RotationPolicy, keep: int | None,
                 fsync: str, fsync_interval: float, suffix: str = PLAIN_SUFFIX,
                 sealing: Sealing | None = None, keep_age: float | None = None,
                 keep_bytes: int | None = None) -> None:
        self.sealing = sealing
        self._chunk_buf = bytearray()
        self._piece_last_seq: int | None = None
        self._piece_next_n = 0
        self.next_n = 0  # the stream's n after the last record in the files (the writer sets it)
        self.keep_age = keep_age
        self.keep_bytes = keep_bytes
        if sealing is not None:
            suffix = sealed.SUFFIX
        self.dir = directory
        self.ring_id = ring_id
        self.policy = policy
        self.keep = keep
        self.fsync = fsync
        self.fsync_interval = fsync_interval
        self.suffix = suffix
        self.fd: int | None = None
        self.current: LogFile | None = None
        self.size = 0
        self.opened = 0.0
        self.last_sync = time.monotonic()
        self.dirty = False
        self.on_dir_recreated = None  # called after the directory was made again
        self._checked_linked = 0.0
        # Retention by age must not follow steps of the wall clock.  A file this writer
        # wrote is as old as the monotonic time since it closed it; any other file's mtime
        # is read against the offset between the wall and monotonic clocks when this
        # writer first saw it (for the files already here: now).
        self._closed_at: dict[LogFile, float] = {}
        self._clock_offset: dict[LogFile, float] = {}
        existing = log_files(directory)
        offset = time.time() - time.monotonic()
        for f in existing:
            self._clock_offset[f] = offset
        self._last = existing[-1] if existing else None

    def _open(self) -> None:
        f = next_file(self._last, self.ring_id, datetime.now(timezone.utc), self.suffix)
        path = self.dir / f.name
        self._ensure_dir()
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self.current = self._last = f
        self.size = 0
        self.opened = time.monotonic()
        if self.sealing is not None:
            self._start_sealed(f)
        self._sync_dir()
        self._retain()

    def _start_sealed(self, f: LogFile) -> None:
        """Write the header; the file stays locked while this writer writes it."""
        sl = self.sealing
        assert sl is not None and self.fd is not None
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        prev_id, prev_digest, prev_chunks, prev_flags = sl.prev
        header, key = sealed.make_header(
            stream_id=sl.stream_id, index=f.index, ring_id=self.ring_id, created_ns=time.time_ns(),
            prev_id=prev_id, prev_digest=prev_digest, prev_chunks=prev_chunks, prev_flags=prev_flags,
            compress=sl.compress, keyring=sl.keyring, recipients=sl.recipients, lost=sl.lost)
        self._header = sealed.parse_header(header)
        self._aead = AESGCM(key)
        self._chunks = 0
        self._last_seq = sealed.NO_SEQ
        self._compressor = None
        if sl.compress:
            import zstandard

            self._compressor = zstandard.ZstdCompressor(level=3)
        try:
            self._write_all(memoryview(header))
        except OSError:
            os.close(self.fd)
            self.fd = None
            os.unlink(path_of(self.dir, f))
            raise
        self.size = len(header)
        sl.lost = 0  # told once, in this header

    def _ensure_dir(self) -> None:
        """Create the directory again (0700) if it was removed while this writer ran."""
        if not self.dir.is_dir():
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            _say("directory_recreated", dir=str(self.dir))
            if self.on_dir_recreated is not None:
                self.on_dir_recreated()

    def _check_linked(self) -> None:
        """Keep the current file in the directory.

        If the file was removed while open (its directory removed by a cleaner, by
        logrotate, by hand), what it holds would be lost when it is closed: copy it
        to a new file of the same name, in the directory made again, and go on
        appending there.  If that fails the file is closed and OSError raised, so
        the records not yet released are written again to a new file.
        """
        if self.fd is None or os.fstat(self.fd).st_nlink > 0:
            return
        assert self.current is not None
        path = self.dir / self.current.name
        new = None
        try:
            self._ensure_dir()
            new = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
            src = os.open(f"/proc/self/fd/{self.fd}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                copied = 0
                while chunk := os.read(src, 1 << 20):
                    while chunk:
                        n = os.write(new, chunk)
                        copied += n
                        chunk = chunk[n:]
            finally:
                os.close(src)
            if copied != self.size:
                raise OSError(errno.EIO, f"copied {copied} of {self.size} bytes of the removed file")
            if self.sealing is not None:
                fcntl.flock(new, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.fsync(new)
            self._sync_dir()
        except OSError as exc:
            if new is not None:
                os.close(new)
                try:
                    os.unlink(path)
                except OSError:
                    pass
            _say("removed_file_lost", file=str(path), bytes=self.size, error=exc.strerror)
            self.abandon()
            raise OSError(exc.errno or errno.ENOENT,
                          f"log file {path} was removed while open and could not be restored") from exc
        old, self.fd = self.fd, new
        os.close(old)
        _say("removed_file_restored", file=str(path), bytes=copied)

    def _sync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _retain(self) -> None:
        """Remove the oldest files beyond the count, age and total size kept (never the current one)."""
        files = log_files(self.dir)
        doomed = set(to_delete(files, self.keep))
        now = time.monotonic()
        offset_now = time.time() - now
        sizes = {}
        for f in files:
            try:
                st = os.stat(self.dir / f.name)
            except FileNotFoundError:
                continue
            sizes[f] = st.st_size
            if self.keep_age is not None and f != self.current:
                written = self._closed_at.get(f)  # on the monotonic clock
                if written is None:
                    written = st.st_mtime - self._clock_offset.setdefault(f, offset_now)
                if now - written > self.keep_age:
                    doomed.add(f)
        if self.keep_bytes is not None:
            total = sum(sizes.values())
            for f in files:  # oldest first
                if total <= self.keep_bytes:
                    break
                doomed.add(f)
                total -= sizes.get(f, 0)
        for old in sorted(doomed):
            if old != self.current:
                try:
                    os.unlink(self.dir / old.name)
                except FileNotFoundError:
                    pass
                self._clock_offset.pop(old, None)
                self._closed_at.pop(old, None)

    def rotate_if_due(self, now: float) -> None:
        if self.fd is not None and self.policy.due(self.size, self.opened, now):
            self.close()

    def write(self, data: bytes) -> None:
        """Append lines, rotating between lines when a file reaches its size.

        Each piece is appended whole or not at all.  If a piece fails,
        `self.progress` tells how many bytes of data are safely in files.
        """
        self.progress = 0
        limit = self.policy.max_bytes
        pos = 0
        while pos < len(data):
            end = len(data)
            if limit is not None and self.size + (end - pos) > limit:
                cut = data.rfind(b"\n", pos, pos + max(limit - self.size, 0))
                if cut < 0 and self.size > 0:
                    self.close()  # not one more line fits: rotate first
                    continue
                end = cut + 1 if cut >= 0 else data.find(b"\n", pos) + 1 or len(data)
            if self.sealing is not None:  # the seq and n of the piece's last line, for its chunk header
                m = _SEQ_N.match(data, max(data.rfind(b"\n", pos, end - 1), pos - 1) + 1)
                self._piece_last_seq = int(m.group(1)) if m else None
                self._piece_next_n = int(m.group(2)) + 1 if m and m.group(2) is not None else self.next_n
            self._append(memoryview(data)[pos:end])
            self._check_linked()
            pos = self.progress = end
            if pos < len(data):
                self.close()

    def _append(self, view: memoryview) -> None:
        if self.fd is None:
            self._open()
        if self.sealing is not None:
            last_seq = self._piece_last_seq if self._piece_last_seq is not None else self._last_seq
            chunk = sealed.seal_chunk(self._aead, self._header.digest, self._chunks, view,
                                      final=False, last_seq=last_seq, next_n=self._piece_next_n,
                                      compressor=self._compressor, out=self._chunk_buf)
            self._write_all(chunk)
            self._chunks += 1
            self._last_seq = last_seq
            self.next_n = self._piece_next_n
        else:
            self._write_all(view)

    def _write_all(self, view: memoryview) -> None:
        """Append all of view or nothing (a failed write is cut back off)."""
        assert self.fd is not None
        done = 0
        try:
            while done < len(view):
                done += os.write(self.fd, view[done:])
        except OSError:
            if done:
                try:
                    os.ftruncate(self.fd, self.size)
                except OSError:
                    self.abandon()  # the next write starts a new file; this one ends torn
            raise
        self.size += done
        self.dirty = True
        if self.fsync == "batch":
            os.fsync(self.fd)
            self.dirty = False

    def tick(self, now: float) -> None:
        if self.fd is not None and now - self._checked_linked >= 0.5:
            self._checked_linked = now
            self._check_linked()
        if self.dirty and self.fsync == "interval" and now - self.last_sync >= self.fsync_interval:
            os.fsync(self.fd)  # type: ignore[arg-type]
            self.dirty = False
            self.last_sync = now

    def close(self) -> None:
        """Finish the current file (a sealed one with its final chunk) and close it.

        If finishing fails, OSError is raised and the file stays open, so a later
        close() can finish it; abandon() closes it as it is.
        """
        if self.fd is None:
            return
        self._check_linked()
        if self.sealing is not None:
            final = sealed.seal_chunk(self._aead, self._header.digest, self._chunks, b"", final=True,
                                      last_seq=self._last_seq, next_n=self.next_n)
            self._write_all(memoryview(final))
            self.sealing.prev = (self._header.file_id, hashlib.sha256(final).digest(), self._chunks + 1, 0)
        self._close_fd(strict=True)

    def abandon(self) -> None:
        """Close the current file as it is: a sealed one without its final chunk (the next
        writer to start in this directory finishes it)."""
        self._close_fd(strict=False)

    def _close_fd(self, strict: bool) -> None:
        """strict: raise a failed fsync (after closing)."""
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            if self.fsync != "never":
                os.fsync(fd)
        except OSError:
            if strict:
                raise
        finally:
            os.close(fd)
            self.dirty = False
            self.size = 0
            if self.current is not None:
                self._closed_at[self.current] = time.monotonic()


class Writer:
    """Drain one ring into one directory until stopped."""

    def __init__(self, config: WriterConfig, stages=None, reload_config=None) -> None:
        """reload_config: called on SIGHUP for the new configuration (the CLI passes one that
        re-reads the file and applies the same flags); by default the file is re-read."""
        self.config = config
        self._stop = False
        self._reload = False
        self._reload_config = reload_config
        # from the first moment on, SIGTERM/SIGINT mean "drain and stop", never a kill mid-start
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        # a bad policy stops the writer before it touches the ring or the directory
        self.policy = self._policy_of(config)
        self.sealing = self._sealing(config)
        self.dir = prepare_dir(config.dir)
        self._dir_lock = lock_dir(self.dir)
        self.ring = Ring(config.ring, capacity=config.capacity, max_record=config.max_record)
        check(lib.lsr_writer_acquire(self.ring.ptr), f"ring {config.ring!r}")
        self._say_ring_size(config)
        self.files = RotatingFiles(
            self.dir, self.ring.ring_id, RotationPolicy(config.rotate_size, config.rotate_interval),
            config.keep, config.fsync, config.fsync_interval, sealing=self.sealing,
            keep_age=config.keep_age, keep_bytes=config.keep_size)
        self.files.on_dir_recreated = self._relock_dir
        # what the files say of the stream: filled in by _resume_point
        self._files_next_n: int | None = 0      # None: the files' numbers cannot be read
        self._files_last: tuple[int, int] | None = None  # (ring id, seq) of the newest record
        self._newest: Path | None = None        # the newest file, where a cut tail would be
        self._crash_closed = False               # the newest sealed file had no final chunk
        self.resume_seq = self._resume_point()
        self.next_n, self.written_seq, n_from_ring = self._resume_stream()
        self.files.next_n = self.next_n
        if self.sealing is not None and self.sealing.prev[3]:
            # its header vouches for where the previous file ended, and says what the writer
            # found at this start (a loss, a damaged file moved aside), now
            self.files._open()
        self.skip_written = SkipWritten(self.resume_seq, advance_n=n_from_ring)
        self._publish()
        self._custom_stages = stages is not None
        self.stages = stages if stages is not None else self._build_stages()
        self._alloc_batch(config.batch_records, max(config.batch_bytes, self.ring.max_record))
        # the writer's own warnings go through the ring like any record
        self._self_log = Producer(self.ring, name=WRITER_LOGGER, on_full="drop")
        self.health = self._health_of(config)
        self.metrics = None
        if config.metrics:
            from .metrics import serve

            self.metrics = serve(config.metrics, lambda: self.ring.stats().as_dict())
            _say("metrics", listen=config.metrics)

    def _relock_dir(self) -> None:
        """The directory was removed and made again: hold the new one (the lock was on the old)."""
        try:
            new = lock_dir(self.dir)
        except ConfigError as exc:  # another writer took it in between: say so, go on
            _say("directory_lock_lost", dir=str(self.dir), error=str(exc))
            return
        if self._dir_lock is not None:
            os.close(self._dir_lock)
        self._dir_lock = new

    @staticmethod
    def _policy_of(config: WriterConfig) -> Policy:
        if not config.sanitize:
            return Policy(enabled=False)
        if config.policy:
            return load_policy(config.policy)
        return config.sanitize_policy or Policy()

    def _build_stages(self) -> list:
        # SkipWritten after every stage that removes records: what it skips, and numbers
        # past, are exactly the records a file holds
        access = self.config.access
        return [LevelFilter(self.config.min_level, own_pid=os.getpid()),
                *([AccessFilter(access)] if access is not None and access.active else []),
                *self._sanitize_stage(), self.skip_written, FormatJsonl()]

    def _health_of(self, config: WriterConfig) -> HealthMonitor | None:
        t = config.thresholds
        if t is None or not t.any:
            return None
        return HealthMonitor(t, lambda: self.ring.stats().as_dict(),
                             lambda level, msg, fields: self._self_log.log(level, msg, **fields),
                             lambda: self.ring.count("warnings"))

    def _on_hup(self, *_args) -> None:
        self._reload = True

    # settings a running writer cannot take on: they need a restart
    _FIXED = ("ring", "dir", "plaintext", "capacity", "max_record", "batch_records", "batch_bytes",
              "metrics")

    def reload(self) -> bool:
        """Take on a new configuration between two batches: nothing in flight is lost.

        Policy, access rules, thresholds, keys, level, rotation and retention
        change; an invalid file, or a change that needs a restart, leaves the
        running configuration as it was and says why.
        """
        try:
            if self._reload_config is not None:
                new = self._reload_config()
            elif self.config.config_file is not None:
                from .config import build

                new = build(self.config.config_file)
            else:
                _say("reload_skipped", reason="no config file to read again")
                return False
            fixed = [k for k in self._FIXED if getattr(new, k) != getattr(self.config, k)]
            if fixed:
                raise ConfigError(f"{', '.join(fixed)} change only with a restart")
            if (new.key is None) != (self.config.key is None):
                raise ConfigError("switching between key and recipient sealing needs a restart")
            policy = self._policy_of(new)
            sealing = self._sealing(new)
        except ConfigError as exc:
            _say("reload_failed", error=str(exc), kept="the running configuration")
            return False
        old_sealing = self.sealing
        self.config, self.policy = new, policy
        if sealing is not None and old_sealing is not None:
            keys_changed = (sealing.keyring != old_sealing.keyring or
                            sealing.recipients != old_sealing.recipients or
                            sealing.compress != old_sealing.compress)
            old_sealing.keyring, old_sealing.recipients = sealing.keyring, sealing.recipients
            old_sealing.compress = sealing.compress
            if keys_changed:
                self.files.close()  # the next file is sealed with the new keys
        f = self.files
        f.policy = RotationPolicy(new.rotate_size, new.rotate_interval)
        f.keep, f.keep_age, f.keep_bytes = new.keep, new.keep_age, new.keep_size
        f.fsync, f.fsync_interval = new.fsync, new.fsync_interval
        if not self._custom_stages:
            self.stages = self._build_stages()
        if self.health is None or new.thresholds != self.health.t:
            self.health = self._health_of(new)
        # `written`: the records written before the new configuration applies
        _say("reloaded", config=str(new.config_file) if new.config_file else None,
             access_rules=len(new.access.rules) if new.access else 0,
             sanitizer="on" if policy.enabled else "off", written=self.ring.stats().written)
        return True

    def _sanitize_stage(self) -> list:
        """The sanitizer, with its hits per rule counted in the ring under each rule's name."""
        if not self.policy.enabled:
            return []
        names, self._rule_ids = counter_names(self.policy)
        self.ring.name_rules(names)
        return [Sanitize(self.policy, on_hits=self._count_hits)]

    def _count_hits(self, hits_by_rule: np.ndarray) -> None:
        self.ring.count_rule_hits(hits_by_rule[self._rule_ids])

    def _alloc_batch(self, records: int, nbytes: int) -> None:
        self._meta = ffi.new("lsr_meta[]", records)
        self._buf = ffi.new("uint8_t[]", nbytes)
        b = ffi.new("lsr_batch *")
        b.meta, b.buf, b.max_records, b.buf_cap = self._meta, self._buf, records, nbytes
        self._b = b

    @staticmethod
    def _sealing(config: WriterConfig) -> Sealing | None:
        """Key material first: a loose key file stops the writer before anything else."""
        if config.key is not None:
            return Sealing(keyring=load_keyring(config.key), compress=config.compress)
        if config.recipient:
            recipients = tuple(parse_recipient(r) for r in config.recipient.split(",") if r.strip())
            return Sealing(recipients=recipients, compress=config.compress)
        if config.compress:
            raise ConfigError("compress applies to sealed files: give --key or --recipient")
        return None

    def _resume_point(self) -> int | None:
        """The last seq of this ring that the files hold, repairing a torn newest file."""
        if self.sealing is not None:
            return self._resume_sealed()
        files = [f for f in log_files(self.dir) if f.suffix == PLAIN_SUFFIX]
        if files:
            self._newest = self.dir / files[-1].name
        resume, numbered = None, False
        for i, f in enumerate(reversed(files)):
            seq, n = last_line_in(self.dir / f.name, repair=(i == 0))
            if seq is None:
                continue
            if not numbered:  # the newest record: where the stream's numbers stand
                numbered = True
                self._files_next_n = n + 1 if n is not None else 0
                self._files_last = (f.ring_id, seq)
            if f.ring_id == self.ring.ring_id:
                resume = seq
            break  # older files hold older records; a record of another ring resumes nothing
        return resume

    def _resume_sealed(self) -> int | None:
        """Continue the newest sealed file's sequence: cut a torn chunk, and if the file has no
        final chunk (a crash), let the next file's header vouch for where it ends.  A newest
        file that is damaged is moved aside (`<name>.damaged`) and the sequence goes on from
        the last intact file before it."""
        sl = self.sealing
        assert sl is not None
        files = [f for f in log_files(self.dir) if f.suffix == sealed.SUFFIX]
        damaged = False
        scan = data = None
        while files:
            path = self.dir / files[-1].name
            data = path.read_bytes()
            try:
                scan = sealed.scan_chunks(data, str(path))
                break
            except sealed.SealError as exc:
                files.pop()
                if sealed.header_torn(data):
                    # a crash while the header was written: no record ever went into this file
                    _say("removed_torn_header", file=str(path), bytes=len(data))
                    path.unlink()
                    continue
                moved = move_aside(path)
                self.ring.count("damaged_files")
                _say("moved_damaged_file", file=str(path), to=str(moved), error=str(exc))
                damaged = True
                # the damaged file's successor is numbered after it (self.files names the
                # next file after the newest it saw at start, which the damaged one was)
        flags = sealed.PREV_DAMAGED if damaged else 0
        if scan is None or data is None:
            if damaged:
                sl.prev = (bytes(16), bytes(32), 0, flags)
            return None
        path = self.dir / files[-1].name
        self._newest = path
        if scan.torn_at is not None:
            with open(path, "r+b") as f:
                f.truncate(scan.torn_at)
            _say("cut_torn_chunk", file=str(path), bytes=len(data) - scan.torn_at)
            data = data[:scan.torn_at]
        h = scan.header
        if not scan.final:
            flags |= sealed.PREV_RECOVERED
            self._crash_closed = True
            _say("closing_unfinished_file", file=str(path), chunks=len(scan.chunks))
        sl.stream_id = h.stream_id
        sl.prev = (h.file_id, scan.digest_of_last(data), len(scan.chunks), flags)
        # the newest file may hold no record yet (a crash right after it was opened):
        # the resume point and the stream's numbers are then in the files before it
        self._files_next_n = 0
        for f in reversed(files):
            older = self.dir / f.name
            if older != path:
                data = older.read_bytes()
                try:
                    scan = sealed.scan_chunks(data, str(older))
                except sealed.SealError:
                    self._files_next_n = None  # the numbers before it cannot be read
                    return None
            if scan.last_seq is None:
                continue
            self._files_last = (scan.header.ring_id, scan.last_seq)
            self._files_next_n = self._sealed_next_n(data, scan, older)
            return scan.last_seq if scan.header.ring_id == self.ring.ring_id else None
        return None

    @staticmethod
    def _sealed_next_n(data: bytes, scan: sealed.Scan, path: Path) -> int:
        """The n after the last record of a sealed file: its chunk headers say it, so this
        needs no key (a writer sealing to recipients reads it too)."""
        return scan.next_n or 0

    def _stream_tag(self) -> int:
        if self.sealing is not None:
            return sealed_stream_tag(self.sealing.stream_id)
        return plain_stream_tag(self.dir)

    def _resume_stream(self) -> tuple[int, int | None, bool]:
        """Where the stream's numbers go on: (next n, last seq written in this ring, whether
        records skipped as written move the numbers on).  Compares what the ring published
        at its last release with what the files hold: records the ring released past the
        files' end are lost (a cut tail); they are counted and said, and the numbers go on
        past them."""
        self.stream_tag = self._stream_tag()
        st = self.ring.stats()
        files_next = self._files_next_n
        mine = st.stream_tag == self.stream_tag
        # the ring fed this stream and says where it stood: the files' end is confirmed by it
        told = mine and (st.next_n > 0 or st.last_seq is not None)
        written_seq = self.resume_seq
        lost, n_from_ring = 0, False
        self._lost_mark = 0
        if files_next is not None:
            next_n = files_next
            if mine and st.next_n > files_next:
                next_n = st.next_n
                self._lost_mark = files_next + 1
                if st.lost_mark == self._lost_mark:
                    # counted and said by a writer that then stopped before writing a record
                    # (a sealed file it began records it in its header)
                    _say("records_lost_before", first_n=files_next, count=st.next_n - files_next)
                else:
                    lost = st.next_n - files_next
        elif mine:
            # sealed to recipients: the files' numbers cannot be read, the ring's can; records
            # written after its last release are skipped as written, and numbered past
            next_n, n_from_ring = st.next_n, True
            last = self._files_last
            if st.last_seq is not None and (last is None or last[0] != self.ring.ring_id
                                            or last[1] < st.last_seq):
                told = False  # records the ring released are missing; how many cannot be known
                _say("records_lost", file=str(self._newest) if self._newest else None,
                     first_n=None, count=None, ring_last_seq=st.last_seq,
                     files_last_seq=last[1] if last else None,
                     note="sealed to recipients: the number lost cannot be read from the files")
        else:
            next_n = 0
            if self._files_last is not None:
                _say("numbering_restarted", dir=str(self.dir),
                     note="sealed to recipients and the ring does not know this stream: "
                          "its numbers start again at 0")
        if lost:
            self.ring.count("lost", lost)
            _say("records_lost", file=str(self._newest) if self._newest else None,
                 first_n=files_next, count=lost)
            if self.sealing is not None:
                prev = self.sealing.prev
                self.sealing.prev = (*prev[:3], prev[3] | sealed.PREV_LOSS)
                self.sealing.lost = min(lost, sealed.MAX_LOST)
            # a plaintext writer starts a new file anyway: the loss sits at a file boundary
        if self.sealing is not None and self._crash_closed and not told:
            prev = self.sealing.prev
            self.sealing.prev = (*prev[:3], prev[3] | sealed.PREV_UNCONFIRMED)
        return next_n, written_seq, n_from_ring

    def stop(self, *_args) -> None:
        self._stop = True

    def drain_once(self, cursor: int) -> tuple[int, int]:
        """Drain, process, write and release one batch; returns (new cursor, records written)."""
        b = self._b
        check(lib.lsr_drain(self.ring.ptr, cursor, b), "drain")
        n = b.n
        if b.end == cursor:
            return cursor, 0
        meta = np.frombuffer(ffi.buffer(self._meta, n * _META_SIZE), META_DTYPE) if n else \
            np.empty(0, META_DTYPE)
        batch = Batch(meta=meta, buf=ffi.buffer(self._buf, b.buf_len), end=b.end, n=self.next_n)
        batch.delta.malformed += b.malformed
        batch.delta.abandoned += b.abandoned
        if n:
            batch = run(self.stages, batch)
            if self.health is not None:
                self.health.errors_seen += int(((batch.meta["level"] >= 40) & (batch.keep != 0)).sum())
            if batch.out:
                self.files.rotate_if_due(time.monotonic())
                try:
                    self.files.write(batch.out)
                except OSError:
                    self._remember_progress(batch.out[:self.files.progress])
                    raise
            skip = self.skip_written
            if skip.last_seq is not None and int(batch.meta["seq"][-1]) > skip.last_seq:
                skip.last_seq = None  # written past the resume point: nothing more to skip
                skip.advance_n = False
            batch.delta.written += batch.kept
            self.next_n = batch.n + batch.kept
            if batch.kept:
                self._lost_mark = 0
            if batch.last_seq is not None:
                self.written_seq = batch.last_seq
        self._release(batch.end, batch.delta)
        return batch.end, batch.kept if n else 0

    def _remember_progress(self, written: bytes) -> None:
        """Part of a batch reached the files before a write failed: when the
        batch is drained again, those records count as written, not twice."""
        end = written.rfind(b"\n", 0, len(written) - 1) + 1
        m = _SEQ_N.match(written[end:])
        if m:
            seq = int(m.group(1))
            skip = self.skip_written
            if skip.last_seq is None or seq > skip.last_seq:
                skip.last_seq = seq
            # the records skipped when the batch comes again are those numbered up to here
            skip.advance_n = False
            self._lost_mark = 0
            if m.group(2) is not None:
                self.next_n = int(m.group(2)) + 1
            self.written_seq = seq

    def _release(self, upto: int, delta: Delta) -> None:
        d = ffi.new("lsr_totals *")
        d.written, d.malformed, d.abandoned = delta.written, delta.malformed, delta.abandoned
        d.filtered, d.sanitized, d.sanitize_dropped = delta.filtered, delta.sanitized, delta.sanitize_dropped
        d.denied = delta.denied
        d.stream_tag = self.stream_tag
        d.last_seq = lib.LSR_NO_SEQ if self.written_seq is None else self.written_seq
        d.next_n = self.next_n
        d.lost_mark = self._lost_mark
        check(lib.lsr_release(self.ring.ptr, upto, d), "release")

    def _publish(self) -> None:
        """Tell the ring where the stream stands now, moving nothing."""
        self._release(lib.lsr_head(self.ring.ptr), Delta())

    # after `ring rm`, how long the removed ring must stay empty before the writer moves on:
    # a producer that read the mark's old value just before it was set may still commit
    REMOVED_GRACE = 0.5

    def _move_ring(self, cursor: int) -> int:
        """The ring was removed (`ring rm`) and is drained: go on with the ring that has its
        name now (made with this writer's sizes if no producer has made it yet), where the
        producers have moved.  The current file ends; the next has the new ring's id."""
        cfg = self.config
        old = self.ring
        new = Ring(cfg.ring, capacity=cfg.capacity, max_record=cfg.max_record)
        if lib.lsr_removed(new.ptr):
            new.close()
            return cursor  # the same ring: its name is not gone yet; the next idle turn tries again
        try:
            self.files.close()
        except OSError:
            new.close()
            raise  # counted by the caller; the next idle turn tries again
        rc = lib.lsr_writer_acquire(new.ptr)
        if rc != 0:
            new.close()
            _say("ring_removed", ring=cfg.ring, ring_id=f"{old.ring_id:016x}",
                 reason="another writer drains the new ring: stopping")
            self._stop = True
            return cursor
        self._self_log.close()
        lib.lsr_writer_release(old.ptr)
        old.close()
        self.ring = new
        self.files.ring_id = new.ring_id
        self.skip_written.last_seq = None  # the new ring's positions start again
        self.skip_written.advance_n = False
        self.written_seq = None
        if not self._custom_stages:
            self.stages = self._build_stages()
        self._alloc_batch(cfg.batch_records, max(cfg.batch_bytes, new.max_record))
        self._self_log = Producer(new, name=WRITER_LOGGER, on_full="drop")
        self.health = self._health_of(cfg)
        self._publish()  # the stream goes on in the new ring: a writer starting on it knows where
        _say("ring_replaced", ring=cfg.ring, old_ring_id=f"{old.ring_id:016x}",
             ring_id=f"{new.ring_id:016x}")
        return lib.lsr_head(new.ptr)

    def _failed(self, event: str, exc: OSError) -> None:
        """A disk error: counted in writer_errors and said on stderr with its errno."""
        self.ring.count("writer_errors")
        _say(event, error=exc.strerror, errno=errno.errorcode.get(exc.errno, exc.errno))

    def _recover(self, cursor: int) -> int:
        skip_to = ffi.new("uint64_t *")
        reason = ffi.new("int *")
        if lib.lsr_recover(self.ring.ptr, cursor, 0, skip_to, reason) != 1:
            return cursor
        delta = Delta(abandoned=1) if reason[0] == 1 else Delta(malformed=1)
        self._release(skip_to[0], delta)
        _say("skipped", at=cursor, to=skip_to[0], reason="abandoned" if reason[0] == 1 else "malformed")
        return skip_to[0]

    def _say_ring_size(self, config: WriterConfig) -> None:
        """Sizes asked for apply only to a ring the writer creates: say so when they differ."""
        ring = self.ring
        if ring.created or not config.ring_size_given:
            return
        if (ring.capacity, ring.max_record) != (config.capacity, config.max_record):
            _say("ring_size_differs", ring=config.ring, capacity=ring.capacity, max_record=ring.max_record,
                 asked_capacity=config.capacity, asked_max_record=config.max_record,
                 note=f"the ring existed already and keeps its size; to resize it, stop its producers "
                      f"and writer and run `logger-system ring rm {config.ring}`")

    def run(self) -> int:
        cfg = self.config
        cursor = lib.lsr_head(self.ring.ptr)
        _say("started", ring=cfg.ring, dir=str(self.dir), pid=os.getpid(), resume_seq=self.resume_seq,
             ring_id=f"{self.ring.ring_id:016x}")
        idle = 0.0
        stalled_at, stalled_since = None, 0.0
        removed_since = None
        stop_deadline = None
        error_backoff = 0.0
        while True:
            lib.lsr_heartbeat(self.ring.ptr)
            now = time.monotonic()
            if self._reload:
                self._reload = False
                self.reload()
            if self.health is not None:
                self.health.tick(now)
            if self._stop and stop_deadline is None:
                stop_deadline = now + self.config.shutdown_timeout
            try:
                new_cursor, _ = self.drain_once(cursor)
                error_backoff = 0.0
            except OSError as exc:
                # the disk refused: keep the records in the ring and try again
                self._failed("write_failed", exc)
                error_backoff = min(max(error_backoff * 2, 0.05), 2.0)
                if stop_deadline is not None and now >= stop_deadline:
                    break
                time.sleep(error_backoff)
                continue
            if new_cursor != cursor:
                cursor = new_cursor
                idle = 0.0
                stalled_at = removed_since = None
                continue
            # nothing new: a claim in flight, or an empty ring
            if self._b.stalled:
                if stalled_at != cursor:
                    stalled_at, stalled_since = cursor, now
                elif now - stalled_since >= self.config.stall_grace:  # reload may change it
                    recovered = self._recover(cursor)
                    if recovered != cursor:
                        cursor = recovered
                        stalled_at = None
                        continue
            elif stop_deadline is not None:
                break  # drained everything committed
            elif lib.lsr_removed(self.ring.ptr):
                if removed_since is None:
                    removed_since = now
                elif now - removed_since >= self.REMOVED_GRACE:
                    removed_since = None
                    try:
                        cursor = self._move_ring(cursor)
                    except OSError as exc:  # the current file could not be finished
                        self._failed("write_failed", exc)
                    continue
            if stop_deadline is not None and now >= stop_deadline:
                _say("stopping_with_records_in_ring", at=cursor, reason="a live producer holds a claim")
                break
            self.files.tick(now)
            self.files.rotate_if_due(now)
            idle = min(max(idle * 2, 0.0002), 0.005)
            time.sleep(idle)
        counts = {k: v for k, v in self.ring.stats().as_dict().items()
                  if k in ("committed", "written", "dropped", "abandoned", "malformed")}
        self.close()
        _say("stopped", **counts)
        return 0

    def close(self) -> None:
        if self.metrics is not None:
            server, thread = self.metrics
            server.shutdown()
            server.server_close()
            self.metrics = None
        try:
            self.files.close()
        except OSError as exc:
            # e.g. no room for a sealed file's final chunk: the file stays unfinished, the
            # next writer finishes it; the records not released wait in the ring for it
            self._failed("close_failed", exc)
            self.files.abandon()
        finally:
            if not self.ring._closed:
                lib.lsr_writer_release(self.ring.ptr)
                self.ring.close()
            if self._dir_lock is not None:
                os.close(self._dir_lock)
                self._dir_lock = None
