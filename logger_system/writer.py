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
import os
import signal
import stat
import time
from pathlib import Path

import numpy as np

from . import sealed
from ._native import check, ffi, lib
from .access import AccessFilter
from .config import WriterConfig
from .files.format import SEQ_N as _SEQ_N
from .files.format import PlainFormat, Sealing
from .files.format import of as format_of
from .files.rotating import RotatingFiles, last_line_in, log_files, move_aside
from .health import WRITER_LOGGER, HealthMonitor, say as _say
from .errors import ConfigError
from .keys import load_keyring, parse_recipient
from .pipeline import Batch, Delta, run
from .pipeline.sanitize import Sanitize, counter_names
from .pipeline.stages import FormatJsonl, LevelFilter, SkipWritten
from .policy import Policy
from .policy import load as load_policy
from .producer import Producer
from .record import META_DTYPE
from .ring import Ring
from .rotation import RotationPolicy

_META_SIZE = META_DTYPE.itemsize


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


def plain_stream_tag(directory: Path) -> int:
    """A plaintext directory stream's tag in the ring: from its resolved path."""
    tag = int.from_bytes(hashlib.sha256(str(Path(directory).resolve()).encode()).digest()[:8], "little")
    return tag or 1


def sealed_stream_tag(stream_id: bytes) -> int:
    return int.from_bytes(stream_id[:8], "little") or 1


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
            config.keep, config.fsync, config.fsync_interval, format_of(self.sealing),
            keep_age=config.keep_age, keep_bytes=config.keep_size)
        self.files.on_dir_recreated = self._relock_dir
        # what the files say of the stream: filled in by _resume_point
        self._files_next_n: int | None = 0      # None: the files' numbers cannot be read
        self._files_last: tuple[int, int] | None = None  # (ring id, seq) of the newest record
        self._newest: Path | None = None        # the newest file, where a cut tail would be
        self._crash_closed = False               # the newest sealed file had no final chunk
        self.resume_seq = self._resume_point()
        self.next_n, self.written_seq, n_from_ring = self._resume_stream()
        self.files.format.next_n = self.next_n
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
        files = [f for f in log_files(self.dir) if f.suffix == PlainFormat.suffix]
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
