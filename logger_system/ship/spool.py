"""A destination's durable spool: what the writer wrote, waiting to be acknowledged by a receiver.

The writer appends each batch's lines (sanitized and formatted, exactly the bytes of its log
files) to the spool of every destination *before* it writes them to its files and releases
them in the ring; a shipper thread reads them back and sends them.  So shipping never waits on
the network, and a record the files hold is in the spool too, across the writer's own crashes.

Rules this module keeps:
- Records are numbered by the directory stream's `n`.  A spool holds frames of consecutive
  numbers; an append whose records the spool holds already (a batch drained again after a
  crash) keeps only the part past the spool's end, so nothing is spooled twice.
- The spool is sealed: each frame with AES-256-GCM, its numbers in the associated data.  In key
  mode the spool key comes from the writer's key (HKDF, per destination); in recipient and
  plaintext mode from `spool.key` (32 random bytes, 0600) in the spool's directory, which holds
  only what is not acknowledged yet.  A frame that does not open (torn by a crash, or tampered
  with) ends its file: the newest file is cut there at open, and its records are counted as lost.
- Bounded: past `max_bytes` new records are not spooled (counted `overflow`) until
  acknowledgements have freed half of it: the receiver gets an unbroken stretch, then one
  counted gap.
- The cursor (`cursor`, written atomically) says the next `n` the destination acknowledged;
  files holding only records below it are removed.  Nothing unacknowledged is removed, except
  by the size bound, which counts it.

File: `spool-<first n, 20 digits>.lsp` = header (b"LSSP", version, key id, destination id)
then frames: length (u32) | first_n (u64) | count (u32) | nonce (12) | sealed lines.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import ConfigError

MAGIC = b"LSSP"
VERSION = 1
_FILE_HEAD = struct.Struct(">4sB3x8s16s")  # magic, version, key id, destination id
_FRAME = struct.Struct(">IQI12s")            # sealed length, first_n, count, nonce
LOCAL_KEY_ID = b"local\0\0\0"
DEFAULT_MAX_BYTES = 1 << 30
DEFAULT_SEGMENT_BYTES = 16 << 20
CURSOR_INTERVAL = 0.2  # seconds between cursor writes while acknowledgements stream in


def destination_id(url: str) -> bytes:
    """16 bytes naming a destination: the spool's directory name and part of every frame's AAD."""
    return hashlib.sha256(b"logger_system spool " + url.encode()).digest()[:16]


def spool_key(key: bytes, dest: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=dest, info=b"logger_system spool key").derive(key)


@dataclass(frozen=True)
class Frame:
    first_n: int
    count: int
    lines: bytes

    @property
    def end_n(self) -> int:
        return self.first_n + self.count


@dataclass
class _Segment:
    path: Path
    first_n: int
    end_n: int      # the n after its last record
    size: int       # bytes of whole frames (and the header)


class Spool:
    """One destination's spool directory.  append() is the writer's (one thread); frames(),
    acknowledge() and the counts are the shipper's; the two meet under a lock."""

    def __init__(self, directory: Path, url: str, *, keyring=None, max_bytes: int = DEFAULT_MAX_BYTES,
                 segment_bytes: int = DEFAULT_SEGMENT_BYTES, fsync: str = "interval",
                 fsync_interval: float = 1.0) -> None:
        self.url = url
        self.dest = destination_id(url)
        self.dir = Path(directory) / self.dest.hex()
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.fsync_interval = fsync_interval
        self._keys = self._load_keys(keyring)
        self._lock = threading.Lock()
        self._cursor_lock = threading.Lock()  # one cursor write at a time, outside _lock
        # per file, where frames() stopped reading: (offset, n): every frame before offset
        # ends at or below n, so a read from n on starts there, not at the file's start
        self._read_at: dict[Path, tuple[int, int]] = {}
        self.overflow = 0      # records not spooled because the spool was full
        self._full = False
        self.torn = 0          # records lost to a torn or damaged frame found at open
        self._fd: int | None = None
        self._last_sync = 0.0
        self._dirty = False
        self.acked_n = self._read_cursor()
        self._durable_n = self.acked_n  # what the cursor file says
        self._cursor_at = 0.0           # when it was last written (monotonic)
        self._segments = self._scan()
        self._prune()

    # ---- keys ---------------------------------------------------------------

    def _load_keys(self, keyring) -> dict[bytes, AESGCM]:
        keys: dict[bytes, AESGCM] = {}
        if keyring is not None:
            for key_id, key in keyring.keys.items():
                keys[key_id] = AESGCM(spool_key(key, self.dest))
            self._key_id = keyring.active
        else:
            path = self.dir / "spool.key"
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            except FileExistsError:
                raw = path.read_bytes()
                if len(raw) != 32:
                    raise ConfigError(f"spool key {path} is damaged ({len(raw)} bytes, not 32): remove the "
                                      "spool directory to start it again (its records are then not shipped)")
            else:
                raw = os.urandom(32)
                try:
                    os.write(fd, raw)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            keys[LOCAL_KEY_ID] = AESGCM(spool_key(raw, self.dest))
            self._key_id = LOCAL_KEY_ID
        return keys

    # ---- the files ------------------------------------------------------------

    def _name(self, first_n: int) -> Path:
        return self.dir / f"spool-{first_n:020d}.lsp"

    def _scan(self) -> list[_Segment]:
        segs = []
        names = sorted(p for p in self.dir.iterdir() if p.name.startswith("spool-") and p.suffix == ".lsp")
        for i, path in enumerate(names):
            seg, good = self._read_segment(path)
            if seg is None or (seg.end_n == seg.first_n and good == path.stat().st_size):
                path.unlink()  # a header torn at creation, or no frame: nothing in it was spooled
                continue
            if good < path.stat().st_size:
                lost = self._lost_after(path, good)
                self.torn += lost
                if i == len(names) - 1:  # the newest: cut at the last whole frame, append on
                    with open(path, "r+b") as f:
                        f.truncate(good)
                        os.fsync(f.fileno())
            segs.append(seg)
        return segs

    def _read_segment(self, path: Path) -> tuple[_Segment | None, int]:
        data = path.read_bytes()
        if len(data) < _FILE_HEAD.size:
            return None, 0
        magic, version, key_id, dest = _FILE_HEAD.unpack_from(data)
        if magic != MAGIC or version != VERSION or dest != self.dest:
            raise ConfigError(f"{path} is not a spool file of this destination: move it away")
        first = int(path.stem.split("-")[1])
        seg = _Segment(path, first, first, _FILE_HEAD.size)
        for frame, end in self._frames_in(data, key_id):
            seg.end_n = frame.end_n
            seg.size = end
        return seg, seg.size

    def _lost_after(self, path: Path, good: int) -> int:
        """Records in frames past `good` whose headers still read (a torn frame says its count)."""
        data = path.read_bytes()
        if len(data) - good >= _FRAME.size:
            return _FRAME.unpack_from(data, good)[2]
        return 0

    def _frames_in(self, data: bytes, key_id: bytes, start: int = _FILE_HEAD.size, limit: int | None = None):
        aead = self._keys.get(key_id)
        if aead is None:
            raise ConfigError(f"spool file sealed with key {key_id.hex()}, which the key file no longer holds")
        pos, end = start, len(data) if limit is None else limit
        while pos + _FRAME.size <= end:
            length, first_n, count, nonce = _FRAME.unpack_from(data, pos)
            body = pos + _FRAME.size
            if body + length > end:
                return
            aad = data[:_FILE_HEAD.size] + data[pos + 4:pos + 16]  # the file, first_n and count
            try:
                lines = aead.decrypt(nonce, bytes(data[body:body + length]), aad)
            except Exception:  # InvalidTag: torn or tampered: the file ends here
                return
            pos = body + length
            yield Frame(first_n, count, lines), pos

    # ---- the writer's side ------------------------------------------------------

    @property
    def end_n(self) -> int:
        """The n after the last record spooled (or acknowledged)."""
        with self._lock:
            return self._segments[-1].end_n if self._segments else self.acked_n

    def append(self, first_n: int, count: int, lines: bytes) -> int:
        """Spool `count` records numbered first_n on (`lines`: one per line).  Returns how many
        were spooled: records the spool holds already are skipped, and past max_bytes none
        are (counted in `overflow`)."""
        if count <= 0:
            return 0
        with self._lock:
            end = self._segments[-1].end_n if self._segments else self.acked_n
            if first_n + count <= end:
                return 0
            if first_n < end:  # the part spooled before a crash: keep the rest
                skip = end - first_n
                cut = 0
                for _ in range(skip):
                    cut = lines.index(b"\n", cut) + 1
                lines, first_n, count = lines[cut:], end, count - skip
            if self._full or self.pending_bytes_locked() + len(lines) > self.max_bytes:
                # full: nothing more until acknowledgements have freed half of it, so that
                # the receiver gets one unbroken stretch and then one counted gap
                self._full = True
                self.overflow += count
                return 0
            seg = self._segments[-1] if self._segments else None
            # a new file at each open (its key may be another) and past the segment size
            if seg is None or self._fd is None or seg.size >= self.segment_bytes:
                seg = self._new_segment(first_n)
            nonce = os.urandom(12)
            head = _FRAME.pack(0, first_n, count, nonce)
            aad = self._file_head() + head[4:16]
            sealed = self._keys[self._key_id].encrypt(nonce, bytes(lines), aad)
            frame = _FRAME.pack(len(sealed), first_n, count, nonce) + sealed
            self._write(frame)
            seg.size += len(frame)
            seg.end_n = first_n + count
            return count

    def _file_head(self) -> bytes:
        return _FILE_HEAD.pack(MAGIC, VERSION, self._key_id, self.dest)

    def _new_segment(self, first_n: int) -> _Segment:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
        path = self._name(first_n)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        os.write(self._fd, self._file_head())
        os.fsync(self._fd)
        _fsync_dir(self.dir)
        seg = _Segment(path, first_n, first_n, _FILE_HEAD.size)
        self._segments.append(seg)
        return seg

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self._dirty = True
        now = time.monotonic()
        if self.fsync == "batch" or (self.fsync == "interval" and now - self._last_sync >= self.fsync_interval):
            os.fsync(self._fd)
            self._last_sync, self._dirty = now, False

    def sync(self) -> None:
        with self._lock:
            if self._fd is not None and self._dirty:
                os.fsync(self._fd)
                self._dirty = False

    def close(self) -> None:
        self.flush_cursor()
        with self._lock:
            if self._fd is not None:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None

    # ---- the shipper's side ----------------------------------------------------

    def pending_bytes_locked(self) -> int:
        return sum(s.size for s in self._segments)

    @property
    def pending(self) -> int:
        """Records spooled and not acknowledged: the numbers from the acknowledged one to the
        last spooled (numbers the stream never had, lost before the spool, included)."""
        with self._lock:
            end = self._segments[-1].end_n if self._segments else self.acked_n
            return max(0, end - self.acked_n)

    def frames(self, from_n: int):
        """The spooled frames holding records from from_n on, cut to start there, in order.

        A file is read from where the last call left it when from_n is past that point, so
        a shipper that keeps up reads and decrypts each frame once, not the whole newest
        file every time it looks for more."""
        with self._lock:
            segs = [(s.path, s.size) for s in self._segments if s.end_n > from_n]
        for path, size in segs:
            offset, _ = at = self._read_at.get(path, (_FILE_HEAD.size, -1))
            if at[1] > from_n or offset > size:
                offset = _FILE_HEAD.size
            try:
                with open(path, "rb") as f:
                    head = f.read(_FILE_HEAD.size)
                    f.seek(offset)
                    data = head + f.read(size - offset)
            except FileNotFoundError:  # acknowledged and removed meanwhile
                continue
            key_id = _FILE_HEAD.unpack_from(data)[2]
            for frame, end in self._frames_in(data, key_id):
                self._read_at[path] = (offset + end - _FILE_HEAD.size, frame.end_n)
                if frame.end_n <= from_n:
                    continue
                if frame.first_n < from_n:
                    skip, cut = from_n - frame.first_n, 0
                    for _ in range(skip):
                        cut = frame.lines.index(b"\n", cut) + 1
                    frame = Frame(from_n, frame.count - skip, frame.lines[cut:])
                yield frame

    def acknowledge(self, next_n: int, *, persist: bool = False) -> None:
        """The destination holds every record below next_n.  acked_n moves at once; the
        cursor is written (fsynced, atomically) and the files it covers removed at most every
        CURSOR_INTERVAL (an fsync per answer would cost more than the sending), and always
        when persist is given: flush_cursor() and close() write one still owed.  A cursor
        behind acked_n after a crash only sends records again, never loses one; files are
        removed by the durable cursor only, so a restart never finds a hole before it.

        The cursor is written outside the lock append() takes: the writer's drain never
        waits on it."""
        with self._cursor_lock:
            if next_n > self.acked_n:
                with self._lock:
                    self.acked_n = next_n
            if self._durable_n >= self.acked_n:
                return
            if not persist and time.monotonic() - self._cursor_at < CURSOR_INTERVAL:
                return
            durable = self.acked_n
            tmp = self.dir / ".cursor.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, json.dumps({"next_n": durable}).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.dir / "cursor")
            _fsync_dir(self.dir)
            self._durable_n, self._cursor_at = durable, time.monotonic()
            with self._lock:
                self._prune()
                if self._full and self.pending_bytes_locked() <= self.max_bytes // 2:
                    self._full = False

    def flush_cursor(self) -> None:
        """Write the cursor now if acknowledgements moved since it was last written."""
        self.acknowledge(self.acked_n, persist=True)

    def tick(self) -> None:
        """Write the cursor if it is owed and CURSOR_INTERVAL has passed (a quiet shipper's)."""
        self.acknowledge(self.acked_n)

    def _prune(self) -> None:
        """Remove the files that hold only acknowledged records (never the newest: it is
        appended to)."""
        keep = []
        for i, s in enumerate(self._segments):
            if s.end_n <= self._durable_n and i < len(self._segments) - 1:
                s.path.unlink(missing_ok=True)
                self._read_at.pop(s.path, None)
            else:
                keep.append(s)
        self._segments = keep

    def _read_cursor(self) -> int:
        try:
            obj = json.loads((self.dir / "cursor").read_bytes())
        except FileNotFoundError:
            return 0
        except ValueError:
            raise ConfigError(f"{self.dir / 'cursor'} is damaged: remove it to ship this spool from its "
                              "start again (the receiver skips what it has)") from None
        n = obj.get("next_n") if isinstance(obj, dict) else None
        if type(n) is not int or n < 0:
            raise ConfigError(f"{self.dir / 'cursor'} holds no next_n")
        return n


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
