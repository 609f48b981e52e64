"""The files a writer writes: the current one, rotation between lines, retention, fsync,
a file removed while open restored, ; what a restarted writer reads back from the files
is their format's (files/format.py).

Rotation and retention decide by the pure policy in rotation.py; what a file's bytes are
(a plain line or a sealed chunk) is its format's business (files/format.py).
"""
from __future__ import annotations

import errno
import fcntl
import os
import queue
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from ..health import say
from ..rotation import LogFile, RotationPolicy, next_file, retain
from .chain import log_files
from .format import FileFormat



def path_of(directory: Path, f: LogFile) -> Path:
    return directory / f.name




class _CloseBehind:
    """Finished files fsynced and closed by a thread of their own, in the order handed over,
    while the writer goes on with the next file (os.fsync releases the GIL).

    The first error of a job (EIO, ENOSPC from fsync or close) is kept until taken, so the
    writer can raise it from its next write, tick or close.  Which files are still pending
    is known, so retention never removes one and close waits for them.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._pending: dict[LogFile | None, int] = {}
        self._error: OSError | None = None
        self._thread: threading.Thread | None = None

    def submit(self, fd: int | None, f: LogFile | None, fsync: bool, directory: Path | None = None) -> None:
        """fd: fsync it (if fsync) and close it; None: fsync the directory instead."""
        with self._cond:
            self._pending[f] = self._pending.get(f, 0) + 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="close-behind", daemon=True)
                self._thread.start()
        self._jobs.put((fd, f, fsync, directory))

    def _run(self) -> None:
        while True:
            fd, f, fsync, directory = self._jobs.get()
            error = None
            try:
                if fd is None:
                    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                if fsync:
                    os.fsync(fd)
            except OSError as exc:
                error = exc
            finally:
                try:
                    if fd is not None:
                        os.close(fd)
                except OSError as exc:
                    error = error or exc
            with self._cond:
                if error is not None and self._error is None:
                    self._error = error
                left = self._pending[f] - 1
                if left:
                    self._pending[f] = left
                else:
                    del self._pending[f]
                self._cond.notify_all()

    def pending(self, f: LogFile) -> bool:
        with self._cond:
            return f in self._pending

    def wait(self, f: LogFile | None = None) -> None:
        """Until every job (or every job of file f) is done."""
        with self._cond:
            while self._pending if f is None else f in self._pending:
                self._cond.wait()

    def take_error(self) -> OSError | None:
        with self._cond:
            error, self._error = self._error, None
        return error


class RotatingFiles:
    """The current output file, rotation, retention and fsync; its bytes are the format's."""

    def __init__(self, directory: Path, ring_id: int, policy: RotationPolicy, keep: int | None,
                 fsync: str, fsync_interval: float, fmt: FileFormat,
                 keep_age: float | None = None, keep_bytes: int | None = None,
                 keep_min_age: float | None = None, keep_young: bool = False,
                 keep_ceiling: int | None = None) -> None:
        self.format = fmt
        self.keep_age = keep_age
        self.keep_bytes = keep_bytes
        self.keep_min_age = keep_min_age
        self.keep_young = keep_young
        self.keep_ceiling = keep_ceiling
        # warn(event, message, fields): a file younger than keep_min_age removed or kept
        self.warn = None
        self._warned: dict[str, tuple[float, int]] = {}  # event -> (when, files not yet told)
        self._told_kept: set[LogFile] = set()
        suffix = fmt.suffix
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
        # a file finished at rotation is fsynced and closed by a thread while the next one is
        # written (close() waits for it; not with fsync = "batch"); False: in line
        self.close_behind = True
        self._behind = _CloseBehind()
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
        before = self._last
        self.current = self._last = f
        self.size = 0
        self.opened = time.monotonic()
        try:
            self._begin(f)
        except OSError:
            # the file was removed again: its index is not used up, or the sequence would
            # show a missing file where none ever held a record
            self.current, self._last = None, before
            raise
        if self._behind_on():
            # the new name is made durable behind the file before it: a directory fsync now
            # would wait for that file's data (ext4 data=ordered commits it first)
            self._behind.submit(None, None, True, self.dir)
        else:
            self._sync_dir()
        self._retain()

    def _begin(self, f: LogFile) -> None:
        """What opens a file in this format (a sealed header); the file stays locked while
        this writer writes it, when the format says readers look for that."""
        assert self.fd is not None
        if self.format.locks:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        header = self.format.begin(f, self.ring_id)
        if not header:
            return
        try:
            self._write_all(memoryview(header))
        except OSError:
            os.close(self.fd)
            self.fd = None
            os.unlink(path_of(self.dir, f))
            raise
        self.size = len(header)
        self.format.begun()

    def _ensure_dir(self) -> None:
        """Create the directory again (0700) if it was removed while this writer ran."""
        if not self.dir.is_dir():
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            say("directory_recreated", dir=str(self.dir))
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
            if self.format.locks:
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
            say("removed_file_lost", file=str(path), bytes=self.size, error=exc.strerror)
            self.abandon()
            raise OSError(exc.errno or errno.ENOENT,
                          f"log file {path} was removed while open and could not be restored") from exc
        old, self.fd = self.fd, new
        os.close(old)
        say("removed_file_restored", file=str(path), bytes=copied)

    def _sync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _retain(self) -> None:
        """Remove the oldest files beyond the count, age and total size kept (never the current
        one); the decision, and which young files are kept or only warned about, is retain()'s."""
        files = log_files(self.dir)
        now = time.monotonic()
        offset_now = time.time() - now
        sizes, ages = {}, {}
        for f in files:
            try:
                st = os.stat(self.dir / f.name)
            except FileNotFoundError:
                continue
            sizes[f] = st.st_size
            written = now if f == self.current else self._closed_at.get(f)  # on the monotonic clock
            if written is None:
                written = st.st_mtime - self._clock_offset.setdefault(f, offset_now)
            ages[f] = now - written
        r = retain(files, sizes, ages, self.current, keep=self.keep, keep_bytes=self.keep_bytes,
                   keep_age=self.keep_age, min_age=self.keep_min_age, keep_young=self.keep_young,
                   ceiling=self.keep_ceiling)
        for old in r.delete:
            self._behind.wait(old)  # never remove a file whose fsync is still under way
            try:
                os.unlink(self.dir / old.name)
            except FileNotFoundError:
                pass
            self._clock_offset.pop(old, None)
            self._closed_at.pop(old, None)
        self._told_kept &= set(r.young_kept)
        new_kept = [f for f in r.young_kept if f not in self._told_kept]
        self._told_kept.update(new_kept)
        kept_bytes = sum(sizes[f] for f in sizes if f not in r.delete)
        for event, which in (("young_file_removed", r.young_removed), ("young_file_kept", new_kept),
                             ("keep_ceiling_reached", r.ceiling_removed)):
            if which:
                self._warn(event, which, ages, kept_bytes, now)

    # at most one warning of each kind this often (s); the next one counts the files between
    WARN_EVERY = 10.0

    def _warn(self, event: str, which, ages: dict, kept_bytes: int, now: float) -> None:
        last, untold = self._warned.get(event, (None, 0))
        count = untold + len(which)
        if self.warn is None or (last is not None and now - last < self.WARN_EVERY):
            self._warned[event] = (last, count)
            return
        self._warned[event] = (now, 0)
        youngest = min(ages[f] for f in which)
        limits = ", ".join(f"{k}={v}" for k, v in (("keep", self.keep), ("keep_size", self.keep_bytes))
                           if v is not None)
        min_age = f"keep_min_age {self.keep_min_age:g} s"
        if event == "young_file_removed":
            msg = (f"retention removed {count} file(s) younger than {min_age} to stay within {limits} "
                   f"(the youngest last written {youngest:.0f} s ago): records logged before a flood "
                   "may be gone; keep_young = true keeps such files, up to keep_ceiling")
        elif event == "young_file_kept":
            msg = (f"kept {count} file(s) younger than {min_age} beyond {limits} (keep_young): "
                   f"{kept_bytes} bytes of files, keep_ceiling {self.keep_ceiling}")
        else:
            msg = (f"keep_ceiling {self.keep_ceiling} bytes reached: removed {count} file(s) younger "
                   f"than {min_age} that keep_young would have kept (the youngest last written "
                   f"{youngest:.0f} s ago)")
        fields = {"retention": event, "count": count, "files": [f.name for f in which[:5]],
                  "youngest_age_s": round(youngest, 3), "keep_min_age_s": self.keep_min_age,
                  "keep": self.keep, "keep_size": self.keep_bytes, "keep_ceiling": self.keep_ceiling,
                  "kept_bytes": kept_bytes}
        self.warn(event, msg, fields)

    def rotate_if_due(self, now: float) -> None:
        if self.fd is not None and self.policy.due(self.size, self.opened, now):
            self._finish()

    def _raise_behind(self) -> None:
        """A finished file's fsync or close failed in the background: raise it here, as the
        write of that file would have (its records were released with it)."""
        error = self._behind.take_error()
        if error is not None:
            raise error

    def write(self, data: bytes) -> None:
        """Append lines, rotating between lines when a file reaches its size.

        Each piece is appended whole or not at all.  If a piece fails,
        `self.progress` tells how many bytes of data are safely in files.
        """
        self.progress = 0
        self._raise_behind()
        limit = self.policy.max_bytes
        pos = 0
        while pos < len(data):
            end = len(data)
            if limit is not None and self.size + (end - pos) > limit:
                cut = data.rfind(b"\n", pos, pos + max(limit - self.size, 0))
                if cut < 0 and self.size > 0:
                    self._finish()  # not one more line fits: rotate first
                    continue
                end = cut + 1 if cut >= 0 else data.find(b"\n", pos) + 1 or len(data)
            self._append(data, pos, end)
            self._check_linked()
            pos = self.progress = end
            if pos < len(data):
                self._finish()

    def _append(self, data: bytes, pos: int, end: int) -> None:
        if self.fd is None:
            self._open()
        self._write_all(self.format.piece(data, pos, end))
        self.format.wrote()

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
        self._raise_behind()
        if self.fd is not None and now - self._checked_linked >= 0.5:
            self._checked_linked = now
            self._check_linked()
        if self.dirty and self.fsync == "interval" and now - self.last_sync >= self.fsync_interval:
            self._behind.wait()  # the files before it are as durable as this one
            self._raise_behind()
            os.fsync(self.fd)  # type: ignore[arg-type]
            self.dirty = False
            self.last_sync = now

    def close(self) -> None:
        """Finish the current file (a sealed one with its final chunk) and close it, and wait
        until every file finished before is fsynced and closed too.

        If finishing fails, OSError is raised and the file stays open, so a later
        close() can finish it; abandon() closes it as it is.  A failed fsync of a file
        finished earlier is raised here too.
        """
        try:
            self._finish(behind=False)
        finally:
            self._behind.wait()
        self._raise_behind()

    def _finish(self, behind: bool = True) -> None:
        """Finish the current file; at a rotation (behind) its fsync and close are left to the
        close-behind thread, and the next file can open at once."""
        if self.fd is None:
            return
        self._check_linked()
        tail = self.format.end()
        if tail:
            self._write_all(memoryview(tail))
            self.format.ended(tail)
        if behind and self._behind_on():
            self._close_behind()
        else:
            self._close_fd(strict=True)

    def _behind_on(self) -> bool:
        """Whether a finished file's fsync and close, and the directory's fsync after a new
        file, are left to the close-behind thread.  Not with fsync = "batch": there each
        batch, the new file's name with it, is durable before its records are released."""
        return self.close_behind and self.fsync != "batch"

    def _close_behind(self) -> None:
        """Hand the finished file to the close-behind thread.  Its flock goes now: a reader
        tells a file being written by it, and this one has its final chunk."""
        fd, self.fd = self.fd, None
        assert fd is not None
        if self.format.locks:
            fcntl.flock(fd, fcntl.LOCK_UN)
        self._behind.submit(fd, self.current, self.fsync != "never")
        self.dirty = False
        self.size = 0
        if self.current is not None:
            self._closed_at[self.current] = time.monotonic()

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


