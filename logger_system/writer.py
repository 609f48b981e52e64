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
import os
import signal
import stat
import time
from pathlib import Path

import numpy as np

from . import sealed
from .access import AccessFilter
from .config import WriterConfig
from .files import chain
from .files.format import SEQ_N as _SEQ_N
from .files.format import Sealing
from .files.format import of as format_of
from .files.rotating import RotatingFiles
from .health import WRITER_LOGGER, HealthMonitor, say as _say
from .errors import ConfigError, RingError
from .keys import load_keyring, parse_recipient
from .pipeline import Batch, Delta, run
from .pipeline.sanitize import Sanitize, counter_names
from .pipeline.stages import FormatJsonl, LevelFilter, SkipWritten
from .policy import Policy
from .policy import load as load_policy
from .producer import Producer
from .ring import Consumer, Ring
from .rotation import RotationPolicy



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
        self.ring = Ring.for_writer(config.ring, capacity=config.capacity, max_record=config.max_record)
        if self.ring.discarded:
            self.ring.count("header_repairs")
            _say("ring_discarded", ring=config.ring, ring_id=f"{self.ring.ring_id:016x}",
                 reason="the segment with this name was not a ring of this version: replaced")
        self._condemned = False
        self.consumer = Consumer(self.ring, config.batch_records, max(config.batch_bytes, self.ring.max_record))
        self._say_ring_size(config)
        self._say_ring_mode()
        self.files = RotatingFiles(
            self.dir, self.ring.ring_id, RotationPolicy(config.rotate_size, config.rotate_interval),
            config.keep, config.fsync, config.fsync_interval, format_of(self.sealing),
            keep_age=config.keep_age, keep_bytes=config.keep_size,
            keep_min_age=config.keep_min_age or None, keep_young=config.keep_young,
            keep_ceiling=config.retention_ceiling)
        self.files.on_dir_recreated = self._relock_dir
        self.files.warn = self._warn_retention
        self._resume()
        self.files.format.next_n = self.next_n
        if self.files.format.opens_at_start():
            # its header vouches for where the previous file ended, and says what the writer
            # found at this start (a loss, a damaged file moved aside), now
            self.files._open()
        self.skip_written = SkipWritten(self.resume_seq, advance_n=self._n_from_ring)
        self._publish()
        self.shipping = None
        self.sinks: list = []  # besides the files: each takes every formatted batch (put)
        if config.ship:
            from .ship.shipper import Shipping

            self.shipping = Shipping(config.ship, self.dir, config.ring, self.stream_tag,
                                     keyring=self.sealing.keyring if self.sealing else None,
                                     fsync=config.fsync, fsync_interval=config.fsync_interval)
            self.files.format.track_heads = True
            resumed = getattr(self.files.format, "resumed_head", None)
            self.shipping.written(self.next_n, resumed() if resumed else None)
            self.shipping.start()
            self.sinks.append(self.shipping)
            for d in config.ship:
                _say("shipping", url=d.url)
        self._custom_stages = stages is not None
        self.stages = stages if stages is not None else self._build_stages()
        # the writer's own warnings go through the ring like any record
        self._self_log = Producer(self.ring, name=WRITER_LOGGER, on_full="drop")
        self.health = self._health_of(config)
        self.metrics = None
        if config.metrics:
            from .metrics import serve

            self.metrics = serve(config.metrics, self._report)
            _say("metrics", listen=config.metrics)

    def _report(self) -> dict:
        """What the metrics endpoint exports: the ring's report and the destinations' state."""
        d = self.ring.report()
        d["ship"] = [s.status() for s in self.shipping.shippers] if self.shipping is not None else []
        return d

    def _warn_retention(self, event: str, msg: str, fields: dict) -> None:
        """Retention removed (or kept) a file younger than keep_min_age: a WARNING record of
        the writer's own, counted in `warnings`, and a line on stderr."""
        _say(event, **{k: v for k, v in fields.items() if k != "retention"})
        log = getattr(self, "_self_log", None)  # not yet there for a file opened at start
        if log is not None:
            log.log(30, msg, **fields)
        self.ring.count("warnings")

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
              "metrics", "ship")

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
        self.config, self.policy = new, policy
        if self.files.format.rekey(sealing):
            self.files.close()  # the next file is sealed with the new keys
        f = self.files
        f.policy = RotationPolicy(new.rotate_size, new.rotate_interval)
        f.keep, f.keep_age, f.keep_bytes = new.keep, new.keep_age, new.keep_size
        f.keep_min_age, f.keep_young = new.keep_min_age or None, new.keep_young
        f.keep_ceiling = new.retention_ceiling
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

    def _resume(self) -> None:
        """Where the files end, against what the ring released (files/chain.py decides)."""
        fmt = self.files.format
        end = fmt.resume(self.dir, self.ring.ring_id)
        for event, fields in end.events:
            _say(event, **fields)
        if end.damaged:
            self.ring.count("damaged_files", end.damaged)
        self.stream_tag = fmt.stream_tag(self.dir)
        st = self.ring.stats()
        r = chain.resume(end, chain.RingEnd(st.stream_tag, st.last_seq, st.next_n, st.lost_mark),
                         self.stream_tag, self.ring.ring_id)
        newest = str(end.newest) if end.newest else None
        if r.lost:
            self.ring.count("lost", r.lost)
            _say("records_lost", file=newest, first_n=end.next_n, count=r.lost)
            fmt.mark(sealed.PREV_LOSS, r.lost)  # plaintext: the gap in n at a new file says it
        elif r.lost_before:
            # counted and said by a writer that then stopped before writing a record
            _say("records_lost_before", first_n=end.next_n, count=r.lost_before)
        if r.unknown_loss:
            _say("records_lost", file=newest, first_n=None, count=None, ring_last_seq=st.last_seq,
                 files_last_seq=end.last[1] if end.last else None,
                 note="the number lost cannot be read from the files")
        if r.restarted:
            _say("numbering_restarted", dir=str(self.dir),
                 note="the files' numbers cannot be read and the ring does not know this stream: "
                      "its numbers start again at 0")
        if r.unconfirmed:
            fmt.mark(sealed.PREV_UNCONFIRMED)
        self.resume_seq = end.resume_seq
        self.written_seq = end.resume_seq
        self.next_n = r.next_n
        self._lost_mark = r.lost_mark
        self._n_from_ring = r.n_from_ring

    def stop(self, *_args) -> None:
        self._stop = True

    def _check_header(self) -> bool:
        """Before a drain: the ring's header against what this writer knows; what was set
        right is counted (in C) and said.  False when the ring is past repair: it is
        condemned (its name removed, marked removed) and the writer moves to a new one
        once producers have had time to follow."""
        if self._condemned:
            self.consumer.stop_draining()
            return False
        repairs = self.consumer.check()
        if repairs is None:
            self._condemned = True
            _say("header_unrepairable", ring=self.config.ring, ring_id=f"{self.ring.ring_id:016x}",
                 action="moving to a new ring")
            self.ring.condemn()
            return False
        for field, found, to in repairs:
            _say("header_repaired", field=field, found=found, repaired_to=to)
        return True

    def drain_once(self, cursor: int) -> tuple[int, int]:
        """Drain, process, write and release one batch; returns (new cursor, records written)."""
        if not self._check_header():
            return cursor, 0
        meta, buf, end, malformed, abandoned = self.consumer.drain(cursor)
        n = len(meta)
        if end == cursor:
            return cursor, 0
        batch = Batch(meta=meta, buf=buf, end=end, n=self.next_n)
        batch.delta.malformed += malformed
        batch.delta.abandoned += abandoned
        if n:
            batch = run(self.stages, batch)
            if self.health is not None:
                self.health.errors_seen += int(((batch.meta["level"] >= 40) & (batch.keep != 0)).sum())
            if batch.out:
                # the ship sinks first: a batch drained again after a crash is spooled once
                # (by n), and nothing the files hold is missing from a spool
                for sink in self.sinks:
                    sink.put(batch)
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
            kept = batch.kept  # counted once: the stages are done with keep
            batch.delta.written += kept
            self.next_n = batch.n + kept
            if self.shipping is not None and kept:
                self.shipping.written(self.next_n, getattr(self.files.format, "head", None))
            if kept:
                self._lost_mark = 0
            if batch.last_seq is not None:
                self.written_seq = batch.last_seq
        else:
            kept = 0
        self._release(batch.end, batch.delta)
        return batch.end, kept

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
        self.consumer.release(upto, delta, stream_tag=self.stream_tag, last_seq=self.written_seq,
                              next_n=self.next_n, lost_mark=self._lost_mark)

    def _publish(self) -> None:
        """Tell the ring where the stream stands now, moving nothing."""
        self._release(self.consumer.head(), Delta())

    # after `ring rm`, how long the removed ring must stay empty before the writer moves on:
    # a producer that read the mark's old value just before it was set may still commit
    REMOVED_GRACE = 0.5

    def _move_ring(self, cursor: int) -> int:
        """The ring was removed (`ring rm`) and is drained: go on with the ring that has its
        name now (made with this writer's sizes if no producer has made it yet), where the
        producers have moved.  The current file ends; the next has the new ring's id."""
        cfg = self.config
        old = self.ring
        new = Ring.for_writer(cfg.ring, capacity=cfg.capacity, max_record=cfg.max_record)
        if new.removed:
            # the same ring: its name is not gone yet (a `ring rm` under way), or a removed mark
            # no `ring rm` set: then finish the removal; the next idle turn tries again
            if not self._condemned and new.discard_name():
                self._condemned = True  # counted in the ring that takes its place
                _say("header_repaired", field="removed", found=1, repaired_to="ring replaced")
            new.close()
            return cursor
        try:
            self.files.close()
        except OSError:
            new.close()
            raise  # counted by the caller; the next idle turn tries again
        try:
            consumer = Consumer(new, cfg.batch_records, max(cfg.batch_bytes, new.max_record))
        except RingError:
            new.close()
            _say("ring_removed", ring=cfg.ring, ring_id=f"{old.ring_id:016x}",
                 reason="another writer drains the new ring: stopping")
            self._stop = True
            return cursor
        self._self_log.close()
        self.consumer.close()
        old.close()
        self.ring, self.consumer = new, consumer
        self._say_ring_mode()
        if self._condemned:  # replaced for damage, not by `ring rm`: counted where it shows
            new.count("header_repairs")
        self._condemned = False
        self.files.ring_id = new.ring_id
        self.skip_written.last_seq = None  # the new ring's positions start again
        self.skip_written.advance_n = False
        self.written_seq = None
        if not self._custom_stages:
            self.stages = self._build_stages()
        self._self_log = Producer(new, name=WRITER_LOGGER, on_full="drop")
        self.health = self._health_of(cfg)
        self._publish()  # the stream goes on in the new ring: a writer starting on it knows where
        _say("ring_replaced", ring=cfg.ring, old_ring_id=f"{old.ring_id:016x}",
             ring_id=f"{new.ring_id:016x}")
        return consumer.head()

    def _failed(self, event: str, exc: OSError) -> None:
        """A disk error: counted in writer_errors and said on stderr with its errno."""
        self.ring.count("writer_errors")
        _say(event, error=exc.strerror, errno=errno.errorcode.get(exc.errno, exc.errno))

    def _recover(self, cursor: int) -> int:
        found = self.consumer.recover(cursor)
        if found is None:
            return cursor
        skip_to, reason = found
        self._release(skip_to, Delta(abandoned=1) if reason == "abandoned" else Delta(malformed=1))
        _say("skipped", at=cursor, to=skip_to, reason=reason)
        return skip_to

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

    def _say_ring_mode(self) -> None:
        """A ring whose segment others may read (or write) holds records not yet sanitized."""
        mode = self.ring.segment_mode
        if mode is None or not mode & 0o066:
            return
        name = self.ring.name
        _say("ring_mode_open", ring=name, segment=self.ring.segment_path, mode=f"{mode:04o}",
             note=f"group or others can {'read and write' if mode & 0o022 else 'read'} the ring, and "
                  f"records in it are not sanitized yet: run `chmod 600 {self.ring.segment_path}`, "
                  f"or stop the producers, run `logger-system ring rm {name}` and let them create "
                  "it again (mode 0600)")

    def run(self) -> int:
        cfg = self.config
        cursor = self.consumer.head()
        _say("started", ring=cfg.ring, dir=str(self.dir), pid=os.getpid(), resume_seq=self.resume_seq,
             ring_id=f"{self.ring.ring_id:016x}")
        idle = 0.0
        stalled_at, stalled_since = None, 0.0
        removed_since = None
        stop_deadline = None
        error_backoff = 0.0
        while True:
            self.consumer.heartbeat()
            now = time.monotonic()
            if self._reload:
                self._reload = False
                self.reload()
            if self.health is not None:
                self.health.tick(now)
            if self.shipping is not None:
                self.shipping.publish(now)
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
            if self.consumer.stalled:
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
            elif self.ring.removed:
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
            try:
                # an interval fsync, a rotation by time, or a finished file's fsync that failed
                # behind the writer (files/rotating.py): a disk error like a failed write
                self.files.tick(now)
                self.files.rotate_if_due(now)
            except OSError as exc:
                self._failed("write_failed", exc)
            idle = min(max(idle * 2, 0.0002), 0.005)
            time.sleep(idle)
        counts = {k: v for k, v in self.ring.stats().as_dict().items()
                  if k in ("committed", "written", "dropped", "abandoned", "malformed")}
        self.close()
        _say("stopped", **counts)
        return 0

    def close(self) -> None:
        if self.shipping is not None:
            self.shipping.close()
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
                self.consumer.close()
                self.ring.close()
            if self._dir_lock is not None:
                os.close(self._dir_lock)
                self._dir_lock = None
